#!/usr/bin/env bash
# NFSv4.1 throughput and metadata rates, drover against nfs-ganesha (VFS backend), measured by
# the Linux kernel client in one QEMU VM that mounts both servers and alternates between them:
#
#   drvbench-nfs-d  drvb-nfs-br 198.18.0.1/24 (bridge)  drover (NFS only, export b)
#                   drvb-nfs-tap (the VM's NIC, 198.18.0.10 inside), drvb-nfs-vd (to -g)
#   drvbench-nfs-g  drvb-nfs-vg 198.18.0.2/24           ganesha.nfsd (export /b, NFSv4 only)
#
# Both exports are empty directories side by side under BENCH_TMP (the same disk), root
# squashed, open to all (0777). The VM boots the lab kernel with lab/nfs-proto/base.cpio
# (busybox + the NFSv4 client modules, from scripts/lab-assets) plus bench/nfs-vm.sh as /init
# and bench/nfsclient.c (built statically here). In each of ROUNDS rounds, for each server
# (order flipped every round), it mounts with vers=4.1 and times: a MIB MiB sequential write
# ending in fsync, its read after dropping the client's caches, a MIB MiB write with O_DIRECT
# (dwrite: no client cache, each 1 MiB block sent as written), then FILES creates, stats,
# one readdir and FILES unlinks, the caches dropped before each. Medians of the rounds. The
# servers' CPU time per phase is read from /proc when the phase's start and result lines
# appear on the VM's console. Each export must end up holding the `marker` the VM wrote.
# Not here: several clients, NFSv4.0, random I/O, checking the data read (qemu-tests/nfs.rs).
#
# Usage: sudo bench/nfs.sh [--out FILE]     (FILE: markdown results; default stdout)
# Environment: NFS_ROUNDS (5), NFS_MIB (256), NFS_FILES (2000), NFS_TIMEOUT (2400 s for the
# whole VM run), NFS_SERVERS ("drover ganesha"), DROVER_QEMU_ACCEL (tcg), DROVER, BENCH_TMP,
# BENCH_SUMMARY.
# Exit status: 0 when every phase of every server completed and both markers are on disk, 1
# otherwise (the results still get written).

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

out_arg "$@"

ROUNDS=${NFS_ROUNDS:-5}
MIB=${NFS_MIB:-256}
FILES=${NFS_FILES:-2000}
TIMEOUT=${NFS_TIMEOUT:-2400}
SERVERS=${NFS_SERVERS:-drover ganesha}
ACCEL=${DROVER_QEMU_ACCEL:-tcg}
PHASES="write read dwrite create stat list remove"
declare -A UNIT=([write]=MB/s [read]=MB/s [dwrite]=MB/s [create]=creates/s [stat]=stats/s [list]=entries/s
  [remove]=unlinks/s)
declare -A HOST=([drover]=198.18.0.1 [ganesha]=198.18.0.2)
NS_D=drvbench-nfs-d
NS_G=drvbench-nfs-g
BR=drvb-nfs-br
KERNEL=$REPO_DIR/lab/kernel/vmlinuz
BASE=$REPO_DIR/lab/nfs-proto/base.cpio

need_root
need_cmd ip iproute2
need_cmd ss iproute2
need_cmd qemu-system-x86_64 qemu-system-x86
need_cmd cpio cpio
need_cmd cc gcc
{ [ -f "$KERNEL" ] && [ -f "$BASE" ]; } || die "no $KERNEL or $BASE: run scripts/lab-assets"
for s in $SERVERS; do
  case "$s" in
    ganesha)
      need_cmd ganesha.nfsd nfs-ganesha
      [ -f /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so ] ||
        die "no ganesha VFS backend: apt-get install nfs-ganesha-vfs"
      ;;
    drover) ;;
    *) die "unknown server $s (known: drover ganesha)" ;;
  esac
done

trap bench_cleanup EXIT
work='' # set by workdir
workdir work "${BENCH_TMP:-/var/tmp}"
chmod 0755 "$work"
ns_add "$NS_D"
ns_add "$NS_G"
ip -n "$NS_D" link add "$BR" type bridge
ip -n "$NS_D" addr add 198.18.0.1/24 dev "$BR"
ip -n "$NS_D" link set "$BR" up
veth_pair "$NS_D" drvb-nfs-vd 198.18.0.3/32 "$NS_G" drvb-nfs-vg 198.18.0.2/24
ip -n "$NS_D" addr flush dev drvb-nfs-vd
ip -n "$NS_D" link set drvb-nfs-vd master "$BR"
ip -n "$NS_D" tuntap add dev drvb-nfs-tap mode tap
ip -n "$NS_D" link set drvb-nfs-tap master "$BR"
ip -n "$NS_D" link set drvb-nfs-tap up

# wait_tcp NS ADDR PID SECS: waits for a listener on ADDR:2049 in NS (ganesha's socket is an
# IPv6 one, shown as [::ffff:ADDR]); fails if PID exits.
wait_tcp() {
  local i
  for i in $(seq $(($4 * 10))); do
    ip netns exec "$1" ss -Hltn "sport = :2049" | grep -Eq "[[:space:]](\\[::ffff:)?$2\\]?:2049[[:space:]]" && return 0
    alive "$3" || return 1
    sleep 0.1
  done
  return 1
}

declare -A failed=() pid=()
# start_server SERVER DIR: starts SERVER exporting DIR/export as /b; sets BG_PID or WHY.
start_server() {
  local d=$2
  mkdir -p "$d/export"
  chmod 0777 "$d/export"
  case "$1" in
    drover)
      drover_config "$d/drover.toml" nfs "enabled = true"
      [ -n "${drover:-}" ] || {
        WHY="no drover binary (cargo build --release, or set DROVER)"
        return 1
      }
      "$drover" --state-dir "$d/state" nfs export add b --path "$d/export" \
        --clients 198.18.0.0/24 --rw >"$d/export-add.log" 2>&1 || {
        WHY="nfs export add failed: $(tail -1 "$d/export-add.log")"
        return 1
      }
      start_drover "$NS_D" "$BR" "$d" "$d/drover.toml" || return 1
      wait_tcp "$NS_D" "${HOST[drover]}" "$BG_PID" 30 && return 0
      WHY="did not listen on ${HOST[drover]}:2049; last log line: $(tail -1 "$d/server.log")"
      ;;
    ganesha)
      mkdir -p "$d/recovery"
      cat >"$d/ganesha.conf" <<EOF
NFS_CORE_PARAM { Protocols = 4; NFS_Port = 2049; Bind_addr = ${HOST[ganesha]};
  Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { Graceless = true; Minor_Versions = 0, 1; RecoveryRoot = "$d/recovery"; }
EXPORT { Export_Id = 1; Path = "$d/export"; Pseudo = "/b"; Protocols = 4; Transports = TCP;
  Access_Type = RW; Squash = Root_Squash; SecType = sys; FSAL { Name = VFS; } }
EOF
      start_bg "$d/server.log" ip netns exec "$NS_G" ganesha.nfsd -F -L "$d/ganesha.log" \
        -f "$d/ganesha.conf" -p "$d/ganesha.pid" -N NIV_EVENT
      wait_tcp "$NS_G" "${HOST[ganesha]}" "$BG_PID" 30 && return 0
      WHY="did not listen on ${HOST[ganesha]}:2049; last log line: $(tail -1 "$d/ganesha.log")"
      ;;
  esac
  stop_pid "$BG_PID"
  return 1
}

drover_snapshot "$work/bin"
running=()
for s in $SERVERS; do
  if fresh_server "$s" "$work/$s"; then
    pid[$s]=$BG_PID
    running+=("$s=${HOST[$s]}")
  fi
done
[ ${#running[@]} -gt 0 ] || die "no server started: ${failed[*]}"
cpu0=()
for s in "${running[@]}"; do cpu0+=("$(cpu_seconds "${pid[${s%%=*}]}")"); done

log "building the VM's initramfs"
stage=$work/initramfs
mkdir -p "$stage"
cp "$BENCH_DIR/nfs-vm.sh" "$stage/init"
chmod 0755 "$stage/init"
cc -static -O2 -o "$stage/nfsclient" "$BENCH_DIR/nfsclient.c"
(cd "$stage" && printf 'init\nnfsclient\n' | cpio -o -H newc -R 0:0 --quiet) >"$work/extra.cpio"
cat "$BASE" "$work/extra.cpio" >"$work/initrd"

serial=$work/serial.log
list=$(
  IFS=,
  echo "${running[*]}"
)
log "VM: ${running[*]}, $ROUNDS rounds of $MIB MiB and $FILES files (accel $ACCEL)"
vm_start=$(date +%s)
start_bg "$work/qemu.log" ip netns exec "$NS_D" qemu-system-x86_64 -name nfs-bench -accel "$ACCEL" \
  -nodefaults -nographic -monitor none -no-reboot -serial "file:$serial" -m 768 -smp 1 \
  -kernel "$KERNEL" -initrd "$work/initrd" \
  -append "console=ttyS0 quiet panic=-1 nfsbench.ip=198.18.0.10/24 nfsbench.servers=$list nfsbench.rounds=$ROUNDS nfsbench.mib=$MIB nfsbench.files=$FILES" \
  -netdev tap,id=n0,ifname=drvb-nfs-tap,script=no,downscript=no \
  -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:41,romfile=
qemu=$BG_PID
# Every 0.1 s, the console's new complete lines: the server's CPU time is read at each
# phase's BEGIN line and at its result line (the VM pauses 0.5 s after BEGIN).
declare -A cpu_begin=() cpu_phase=()
seen=0 end=
while alive "$qemu" && [ -z "$end" ]; do
  if [ $(($(date +%s) - vm_start)) -gt "$TIMEOUT" ]; then
    log "the VM did not finish in $TIMEOUT s"
    break
  fi
  sleep 0.1
  [ -f "$serial" ] || continue
  total=$(wc -l <"$serial")
  [ "$total" -gt "$seen" ] || continue
  while read -r tag s r p _; do
    case "$tag" in
      NFSBENCH-BEGIN) [ -n "${pid[$s]:-}" ] && cpu_begin[$s.$r.$p]=$(cpu_seconds "${pid[$s]}") ;;
      NFSBENCH)
        if [ -n "${cpu_begin[$s.$r.$p]:-}" ]; then
          cpu_phase[$s.$r.$p]=$(awk -v a="$(cpu_seconds "${pid[$s]}")" \
            -v b="${cpu_begin[$s.$r.$p]}" 'BEGIN { printf "%.2f", a - b }')
        fi
        ;;
      NFSBENCH-END) end=1 ;;
    esac
  done < <(head -n "$total" "$serial" | tail -n +"$((seen + 1))" | grep -ao 'NFSBENCH[-A-Z]* .*\|NFSBENCH-END' | tr -d '\r')
  seen=$total
done
vm_secs=$(($(date +%s) - vm_start))
stop_pid "$qemu"
cpu=()
i=0
for s in "${running[@]}"; do
  c=$(cpu_seconds "${pid[${s%%=*}]}")
  cpu+=("$(awk -v a="$c" -v b="${cpu0[$i]}" 'BEGIN { printf "%.1f", a - b }')")
  i=$((i + 1))
done

# The console may put escape codes before a line's text.
lines=$work/results.txt
grep -ao 'NFSBENCH .*' "$serial" | tr -d '\r' >"$lines" || true
status=0
grep -q ' FAIL' "$lines" && status=1
grep -q NFSBENCH-END "$serial" || status=1
# What the VM wrote landed in each export on the server's disk.
for s in "${running[@]}"; do
  s=${s%%=*}
  if [ "$(cat "$work/$s/export/marker" 2>/dev/null)" != "$ROUNDS" ]; then
    echo "NFSBENCH $s - marker FAIL not in the export on disk" >>"$lines"
    status=1
  fi
done

# values SERVER PHASE: that phase's values (rounds in order).
values() { awk -v s="$1" -v p="$2" '$2 == s && $4 == p && $5 != "FAIL" { print $6 }' "$lines"; }
# cpu_values SERVER PHASE: the server's CPU time in that phase per unit of work (ms per MiB
# written or read, µs per file or entry), rounds in order.
cpu_values() {
  local r per
  case "$2" in
    write | read | dwrite) per=$(awk -v m="$MIB" 'BEGIN { print 1000 / m }') ;;
    list) per=$(awk -v f="$FILES" 'BEGIN { print 1e6 / (f + 2) }') ;;
    *) per=$(awk -v f="$FILES" 'BEGIN { print 1e6 / f }') ;;
  esac
  for r in $(seq "$ROUNDS"); do
    if [ -n "${cpu_phase[$1.$r.$2]:-}" ]; then
      awk -v c="${cpu_phase[$1.$r.$2]}" -v k="$per" 'BEGIN { printf "%.1f\n", c * k }'
    fi
  done
}
declare -A CPU_UNIT=([write]="ms/MiB" [read]="ms/MiB" [dwrite]="ms/MiB" [create]="µs/create"
  [stat]="µs/stat" [list]="µs/entry" [remove]="µs/unlink")
declare -A med=() cmed=()
{
  echo "_$(machine_line) at the end; VM: QEMU \`-accel $ACCEL\` (TCG: the client's CPU is"
  echo "emulated), 1 vCPU, 768 MiB, virtio-net on a tap; $ROUNDS rounds, $MIB MiB, $FILES files;"
  echo "the VM ran ${vm_secs} s._"
  echo
  echo "| phase | unit | $(for s in $SERVERS; do printf '%s (median; each round) | ' "$s"; done)drover / ganesha |"
  echo "|---|---|$(for s in $SERVERS; do printf -- '---|'; done)---|"
  for p in $PHASES; do
    row="| $p | ${UNIT[$p]} |"
    for s in $SERVERS; do
      mapfile -t v < <(values "$s" "$p")
      med[$s.$p]=$(median_of "${v[@]}")
      row="$row ${med[$s.$p]} ($(each_of "${v[@]}")) |"
    done
    echo "$row $(ratio "${med[drover.$p]:--}" "${med[ganesha.$p]:--}") |"
  done
  echo
  echo "Server CPU time (user + system, from /proc, read at each phase's start and end lines on"
  echo "the console; 10 ms ticks) per unit of work; below 1 is drover cheaper:"
  echo
  echo "| phase | unit | $(for s in $SERVERS; do printf '%s (median; each round) | ' "$s"; done)drover / ganesha |"
  echo "|---|---|$(for s in $SERVERS; do printf -- '---|'; done)---|"
  for p in $PHASES; do
    row="| $p | ${CPU_UNIT[$p]} |"
    for s in $SERVERS; do
      mapfile -t v < <(cpu_values "$s" "$p")
      cmed[$s.$p]=$(median_of "${v[@]}")
      row="$row ${cmed[$s.$p]} ($(each_of "${v[@]}")) |"
    done
    echo "$row $(ratio "${cmed[drover.$p]:--}" "${cmed[ganesha.$p]:--}") |"
  done
  echo
  i=0
  for s in "${running[@]}"; do
    echo "- ${s%%=*}: ${cpu[$i]} s of CPU (user + system) over the whole VM run"
    i=$((i + 1))
  done
  echo
  echo "The client's RPC counts over all rounds (from its /proc/self/mountstats): operations, and"
  echo "the mean milliseconds each waited in the client's queue and its mean round trip (request"
  echo "sent to reply received, the emulated client's own receive path included):"
  echo
  echo "| operation | $(for s in $SERVERS; do printf '%s: ops, queue ms, RTT ms | ' "$s"; done)RTT drover / ganesha |"
  echo "|---|$(for s in $SERVERS; do printf -- '---|'; done)---|"
  grep -ao 'NFSBENCH-RPC .*' "$serial" | tr -d '\r' | awk -v servers="$SERVERS" '
    { sub(/:$/, "", $4); k = $2 SUBSEP $4; ops[k] += $5; q[k] += $10; rtt[k] += $11; seen[$4] = 1 }
    END {
      n = split(servers, sv, " ")
      split("WRITE COMMIT READ OPEN CLOSE LOOKUP GETATTR READDIR REMOVE", order, " ")
      for (i = 1; i <= 9; i++) {
        op = order[i]
        if (!(op in seen)) continue
        line = "| " op " |"
        for (j = 1; j <= n; j++) {
          k = sv[j] SUBSEP op
          if (ops[k] > 0) line = line sprintf(" %d, %.2f, %.2f |", ops[k], q[k] / ops[k], rtt[k] / ops[k])
          else line = line " - |"
        }
        a = "drover" SUBSEP op; b = "ganesha" SUBSEP op
        if (ops[a] > 0 && ops[b] > 0 && rtt[b] > 0)
          line = line sprintf(" %.2f |", (rtt[a] / ops[a]) / (rtt[b] / ops[b]))
        else line = line " n/a |"
        print line
      }
    }'
  echo
  grep -ao 'NFSBENCH-MOUNT .*' "$serial" | tr -d '\r' |
    awk '{ printf "- %s mounted as: `%s`\n", $2, $6 }' || true
  for s in "${!failed[@]}"; do echo "- $s did not run: ${failed[$s]}"; done
  if grep -q ' FAIL' "$lines"; then
    echo "- failures:"
    grep ' FAIL' "$lines" | sed 's/^/  - /'
  fi
  grep -q NFSBENCH-END "$serial" || echo "- the VM did not finish: last console line: $(tail -1 "$serial" | tr -d '\r')"
} >"$out"

if [ -n "${BENCH_SUMMARY:-}" ]; then
  {
    rates=() cpus=()
    for p in $PHASES; do
      rates+=("$p $(ratio "${med[drover.$p]:--}" "${med[ganesha.$p]:--}")")
      cpus+=("$p $(ratio "${cmed[drover.$p]:--}" "${cmed[ganesha.$p]:--}")")
    done
    echo "- NFS (kernel client vers=4.1 in a TCG VM, against nfs-ganesha): rates $(each_of "${rates[@]}")" \
      "(above 1 drover faster); server CPU per unit $(each_of "${cpus[@]}") (below 1 drover cheaper)"
  } >>"$BENCH_SUMMARY"
fi
exit "$status"
