#!/bin/sh
# /init of the benchmark VM of bench/nfs.sh (busybox, the lab kernel and its NFSv4 client
# modules). For each round, and in each round for each server (the order flips every round),
# mounts that server's export /b with NFSv4.1 and runs the timed phases of /nfsclient
# (bench/nfsclient.c) on it, dropping the client's caches before every phase that must reach
# the server: write of MIB MiB then fsync, read of it, an O_DIRECT write of MIB MiB, create of FILES empty files, stat of each,
# readdir, unlink of each. Every phase prints `NFSBENCH SERVER ROUND PHASE SECONDS VALUE UNIT`
# (or `NFSBENCH SERVER ROUND PHASE FAIL detail`) on the serial console; `NFSBENCH-END` last.
# Before each umount, `NFSBENCH-RPC SERVER ROUND OP: ...`: that mount's lines of
# /proc/self/mountstats for the operations the phases use. Each mount leaves a file `marker` holding the round number at the top of its export.
# Before each phase, `NFSBENCH-BEGIN SERVER ROUND PHASE` and half a second's pause, so that
# the host can read the server's CPU time before the phase starts.
# Kernel command line: nfsbench.ip=IP/PREFIX nfsbench.servers=NAME=IP,NAME=IP
# nfsbench.rounds=N nfsbench.mib=MIB nfsbench.files=N.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
ip= ; servers= ; rounds=3 ; mib=256 ; files=2000
# shellcheck disable=SC2013 # the words of one line
for w in $(cat /proc/cmdline); do
  case "$w" in
    nfsbench.ip=*) ip=${w#*=} ;;
    nfsbench.servers=*) servers=${w#*=} ;;
    nfsbench.rounds=*) rounds=${w#*=} ;;
    nfsbench.mib=*) mib=${w#*=} ;;
    nfsbench.files=*) files=${w#*=} ;;
  esac
done
for m in virtio_pci virtio_net nfsv4; do modprobe "$m" || echo "NFSBENCH - 0 modprobe-$m FAIL"; done
ip link set lo up
ip link set eth0 up
ip addr add "$ip" dev eth0
hostname nfsbench
servers=$(echo "$servers" | tr , ' ')
reversed=
for s in $servers; do reversed="$s $reversed"; done

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

phase() { # NAME ROUND PHASE ARGS...
  n=$1 r=$2 p=$3
  shift 3
  # For the host, which samples the server's CPU time on this line and on the result line.
  echo "NFSBENCH-BEGIN $n $r $p"
  sleep 0.5
  if out=$(/nfsclient "$p" "$@" 2>&1); then
    echo "NFSBENCH $n $r $p ${out#RESULT "$p" }"
  else
    echo "NFSBENCH $n $r $p FAIL $(echo "$out" | tr '\n' ' ' | cut -c1-200)"
  fi
}

r=1
while [ "$r" -le "$rounds" ]; do
  if [ $((r % 2)) = 1 ]; then order=$servers; else order=$reversed; fi
  for s in $order; do
    n=${s%%=*} a=${s#*=}
    m=/mnt/$n
    mkdir -p "$m"
    if ! mount -t nfs4 -o "vers=4.1,addr=$a,proto=tcp" "$a:/b" "$m"; then
      echo "NFSBENCH $n $r mount FAIL"
      continue
    fi
    [ "$r" = 1 ] && echo "NFSBENCH-MOUNT $n $(grep " $m " /proc/mounts)"
    d=$m/run$r
    mkdir -p "$d/meta" || echo "NFSBENCH $n $r mkdir FAIL"
    drop
    phase "$n" "$r" write "$d/big" "$mib"
    drop
    phase "$n" "$r" read "$d/big"
    rm -f "$d/big"
    drop
    phase "$n" "$r" dwrite "$d/direct" "$mib"
    rm -f "$d/direct"
    drop
    phase "$n" "$r" create "$d/meta" "$files"
    drop
    phase "$n" "$r" stat "$d/meta" "$files"
    drop
    phase "$n" "$r" list "$d/meta"
    drop
    phase "$n" "$r" remove "$d/meta" "$files"
    rmdir "$d/meta" "$d"
    echo "$r" >"$m/marker" || echo "NFSBENCH $n $r marker FAIL"
    # The client's own per-operation counts and times for this mount (ops, transmissions,
    # timeouts, bytes sent, bytes received, queue ms, round-trip ms, execute ms).
    awk -v m="$m" -v n="$n" -v r="$r" '$1 == "device" { on = ($5 == m) }
      on && $1 ~ /^(READ|WRITE|COMMIT|OPEN|CLOSE|LOOKUP|GETATTR|REMOVE|READDIR):$/ {
        print "NFSBENCH-RPC", n, r, $0 }' /proc/self/mountstats
    umount "$m" || echo "NFSBENCH $n $r umount FAIL"
  done
  r=$((r + 1))
done
echo "NFSBENCH-END"
sync
poweroff -f
