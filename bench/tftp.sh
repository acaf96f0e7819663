#!/usr/bin/env bash
# TFTP download throughput, drover against tftpd-hpa, with three real clients, in two network
# namespaces joined by two identical veths (one per server, so both servers run side by side
# and the runs can alternate):
#
#   drvbench-tftp-s  drvb-tftp-as 198.18.0.1/24  drover (its TFTP on the interface, port 69)
#                    drvb-tftp-bs 198.18.1.1/24  tftpd-hpa (in.tftpd --address 198.18.1.1:69)
#   drvbench-tftp-c  drvb-tftp-ac 198.18.0.2/24, drvb-tftp-bc 198.18.1.2/24   the clients
#
# The file: SIZE_MIB MiB of random bytes, the same inode for both servers (hard link, so the
# same page cache), read once before the runs. Clients, each RUNS times per server, alternating
# which server goes first:
#   curl     --tftp-blksize 1468          (curl sends blksize and tsize, no windowsize)
#   atftp    blksize 1468, windowsize 16  (tftpd-hpa ignores windowsize: lock-step for it)
#   tftp-hpa no options: 512-byte blocks, lock-step (the block number wraps past 65535)
# then RUNS times per server, CONCURRENT curl clients at the same time (aggregate throughput).
# Every download lands in /dev/shm (RAM: the client's disk is not measured) and its SHA-256
# must equal the source's; a wrong byte, a client error or a timeout fails that run.
# MB/s = 10^6 bytes per second of wall time, client start to client exit.
#
# Usage: sudo bench/tftp.sh [--out FILE]     (FILE: markdown results; default stdout)
# Environment: TFTP_RUNS (5: sequential runs per client and server, and concurrent runs),
# TFTP_SIZE_MIB (64), TFTP_CONCURRENT (8), TFTP_TIMEOUT (300 s per download), TFTP_SERVERS
# ("tftpd-hpa drover"), DROVER (path of the binary), BENCH_TMP,
# BENCH_SUMMARY (a file to append one summary line per client to).
# Exit status: 0 when every download of every server was right, 1 otherwise (the results still
# get written).

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

out_arg "$@"

RUNS=${TFTP_RUNS:-5}
SIZE_MIB=${TFTP_SIZE_MIB:-64}
CONCURRENT=${TFTP_CONCURRENT:-8}
TIMEOUT=${TFTP_TIMEOUT:-300}
SERVERS=${TFTP_SERVERS:-tftpd-hpa drover}
CLIENTS="curl atftp tftp-hpa"
FILE=bench.bin
SIZE=$((SIZE_MIB * 1024 * 1024))

NS_S=drvbench-tftp-s
NS_C=drvbench-tftp-c
declare -A HOST=([drover]=198.18.0.1 [tftpd-hpa]=198.18.1.1)

need_root
need_cmd ip iproute2
need_cmd ss iproute2
need_cmd curl curl
need_cmd atftp atftp
need_cmd tftp tftp-hpa
need_cmd sha256sum coreutils
for s in $SERVERS; do
  case "$s" in
    tftpd-hpa) need_cmd in.tftpd tftpd-hpa ;;
    drover) ;;
    *) die "unknown server $s (known: tftpd-hpa drover)" ;;
  esac
done

trap bench_cleanup EXIT
work='' dl='' # set by workdir
workdir work "${BENCH_TMP:-/var/tmp}"
workdir dl /dev/shm
chmod 0755 "$work"
ns_add "$NS_S"
ns_add "$NS_C"
veth_pair "$NS_S" drvb-tftp-as 198.18.0.1/24 "$NS_C" drvb-tftp-ac 198.18.0.2/24
veth_pair "$NS_S" drvb-tftp-bs 198.18.1.1/24 "$NS_C" drvb-tftp-bc 198.18.1.2/24

log "making a $SIZE_MIB MiB random file"
mkdir -p "$work/tftpd-root" "$work/drover/tftp"
chmod 0755 "$work/tftpd-root"
head -c "$SIZE" /dev/urandom >"$work/tftpd-root/$FILE"
chmod 0644 "$work/tftpd-root/$FILE"
ln "$work/tftpd-root/$FILE" "$work/drover/tftp/$FILE"
sum=$(sha256sum <"$work/tftpd-root/$FILE" | cut -d' ' -f1)
head -c 65536 /dev/urandom >"$work/tftpd-root/probe.bin"
chmod 0644 "$work/tftpd-root/probe.bin"
ln "$work/tftpd-root/probe.bin" "$work/drover/tftp/probe.bin"

drover_config "$work/drover.toml" tftp "port = 69"

declare -A failed=()  # server -> why it was given up
declare -A server_pid=() # server -> PID
bad=0                 # downloads that failed

start_servers() {
  local srv drover
  for srv in $SERVERS; do
    case "$srv" in
      tftpd-hpa)
        start_bg "$work/tftpd-hpa.log" ip netns exec "$NS_S" in.tftpd --foreground \
          --address "${HOST[tftpd-hpa]}:69" --secure "$work/tftpd-root"
        ;;
      drover)
        if ! drover=$(snapshot_drover "$work/bin"); then
          failed[drover]="no drover binary (cargo build --release, or set DROVER)"
          continue
        fi
        start_bg "$work/drover.log" ip netns exec "$NS_S" "$drover" --state-dir "$work/drover" \
          serve --interface drvb-tftp-as --config "$work/drover.toml"
        ;;
    esac
    server_pid[$srv]=$BG_PID
  done
  for srv in $SERVERS; do
    [ -n "${failed[$srv]:-}" ] && continue
    if ! wait_udp "$NS_S" "src ${HOST[$srv]}:69 or src 0.0.0.0:69" "${server_pid[$srv]}" 10; then
      if alive "${server_pid[$srv]}"; then
        failed[$srv]="did not listen on ${HOST[$srv]}:69 within 10 s"
      else
        failed[$srv]="exited before listening on UDP 69"
      fi
      failed[$srv]="${failed[$srv]}; last log line: $(tail -1 "$work/$srv.log")"
      stop_pid "${server_pid[$srv]}"
      log "$srv: ${failed[$srv]}"
    fi
  done
}

# fetch CLIENT HOST OUT: one download with CLIENT; its own exit status.
fetch() {
  local client=$1 host=$2 o=$3
  case "$client" in
    curl)
      timeout "$TIMEOUT" ip netns exec "$NS_C" curl -sS --fail --tftp-blksize 1468 \
        -o "$o" "tftp://$host/$FILE"
      ;;
    atftp)
      timeout "$TIMEOUT" ip netns exec "$NS_C" atftp --option "blksize 1468" \
        --option "windowsize 16" --get -r "$FILE" -l "$o" "$host" 69
      ;;
    tftp-hpa)
      timeout "$TIMEOUT" ip netns exec "$NS_C" tftp -m binary "$host" 69 -c get "$FILE" "$o"
      ;;
  esac
}

now() { date +%s.%N; }

# acked_options SERVER: the options SERVER acknowledged (OACK) when atftp asked for blksize
# 1468 and windowsize 16, from atftp's packet trace of a 64 KiB download.
acked_options() {
  timeout 30 ip netns exec "$NS_C" atftp --trace --option "blksize 1468" \
    --option "windowsize 16" --get -r probe.bin -l "$dl/probe" "${HOST[$1]}" 69 \
    >"$work/$1-probe.log" 2>&1 || true
  rm -f "$dl/probe"
  grep -m1 -i 'oack' "$work/$1-probe.log" || echo "no OACK seen"
}

# check OUT LOG: the download's SHA-256 is the source's; removes OUT.
check() {
  local got
  got=$(sha256sum <"$1" 2>/dev/null | cut -d' ' -f1 || true)
  rm -f "$1"
  if [ "$got" != "$sum" ]; then
    echo "checksum mismatch" >>"$2"
    return 1
  fi
}

raw=$work/raw.tsv # server client run seconds mb_s status server_cpu_ms_per_mb
: >"$raw"

# record SERVER CLIENT RUN T0 T1 BYTES STATUS CPU0 CPU1: one line of raw.
record() {
  awk -v s="$1" -v c="$2" -v r="$3" -v t0="$4" -v t1="$5" -v n="$6" -v st="$7" -v c0="$8" \
    -v c1="$9" 'BEGIN {
      printf "%s\t%s\t%s\t%.3f\t%.2f\t%s\t%.1f\n", s, c, r, t1 - t0, n / 1e6 / (t1 - t0), st,
        1000 * (c1 - c0) / (n / 1e6)
    }' >>"$raw"
}

# one_run SERVER CLIENT RUN
one_run() {
  local srv=$1 client=$2 run=$3 o="$dl/$1-$2-$3" lg="$work/$1-$2-$3.log" t0 t1 rc=0 st=ok c0 c1
  local sampler kids
  c0=$(cpu_seconds "${server_pid[$srv]}")
  child_cpu_sampler "${server_pid[$srv]}" "$work/sampler" &
  sampler=$!
  t0=$(now)
  fetch "$client" "${HOST[$srv]}" "$o" >"$lg" 2>&1 || rc=$?
  t1=$(now)
  stop_sampler kids "$sampler" "$work/sampler"
  c1=$(awk -v a="$(cpu_seconds "${server_pid[$srv]}")" -v k="$kids" 'BEGIN { print a + k }')
  if [ "$rc" != 0 ]; then
    st="exit $rc$( [ "$rc" = 124 ] && echo ' (timeout)'): $(tail -1 "$lg" | tr '\t|' '  ')"
    rm -f "$o"
  elif ! check "$o" "$lg"; then
    st="checksum mismatch"
  fi
  [ "$st" = ok ] || bad=$((bad + 1))
  record "$srv" "$client" "$run" "$t0" "$t1" "$SIZE" "$st" "$c0" "$c1"
  log "$srv / $client #$run: $(tail -1 "$raw" | cut -f4) s, $(tail -1 "$raw" | cut -f5) MB/s," \
    "$(tail -1 "$raw" | cut -f7) server CPU ms/MB, $st"
}

# concurrent_run SERVER RUN: CONCURRENT curl downloads at once.
concurrent_run() {
  local srv=$1 run=$2 i t0 t1 pids=() rcs=() st=ok errs=0 c0 c1 sampler kids
  c0=$(cpu_seconds "${server_pid[$srv]}")
  child_cpu_sampler "${server_pid[$srv]}" "$work/sampler" &
  sampler=$!
  t0=$(now)
  for i in $(seq "$CONCURRENT"); do
    fetch curl "${HOST[$srv]}" "$dl/$srv-conc-$i" >"$work/$srv-conc-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    rcs[i]=0
    wait "${pids[$i]}" || rcs[i]=$?
  done
  t1=$(now)
  stop_sampler kids "$sampler" "$work/sampler"
  c1=$(awk -v a="$(cpu_seconds "${server_pid[$srv]}")" -v k="$kids" 'BEGIN { print a + k }')
  for i in $(seq "$CONCURRENT"); do
    if [ "${rcs[$((i - 1))]}" != 0 ]; then
      errs=$((errs + 1))
      rm -f "$dl/$srv-conc-$i"
    elif ! check "$dl/$srv-conc-$i" "$work/$srv-conc-$i.log"; then
      errs=$((errs + 1))
    fi
  done
  if [ "$errs" != 0 ]; then
    st="$errs of $CONCURRENT downloads failed: $(tail -1 "$work/$srv-conc-1.log" | tr '\t|' '  ')"
    bad=$((bad + 1))
  fi
  record "$srv" "curl x$CONCURRENT" "$run" "$t0" "$t1" "$((SIZE * CONCURRENT))" "$st" "$c0" "$c1"
  log "$srv / curl x$CONCURRENT: $(tail -1 "$raw" | cut -f4) s, $(tail -1 "$raw" | cut -f5) MB/s aggregate, $st"
}

cat "$work/tftpd-root/$FILE" >/dev/null # into the page cache
start_servers
live=()
for s in $SERVERS; do
  [ -z "${failed[$s]:-}" ] && live+=("$s")
done

declare -A acked=()
for srv in "${live[@]}"; do
  acked[$srv]=$(acked_options "$srv")
  log "$srv: atftp asked for blksize 1468 + windowsize 16, got: ${acked[$srv]}"
done

for client in $CLIENTS; do
  for run in $(seq "$RUNS"); do
    order=("${live[@]}")
    if [ $((run % 2)) = 0 ] && [ ${#live[@]} = 2 ]; then
      order=("${live[1]}" "${live[0]}")
    fi
    for srv in "${order[@]}"; do
      one_run "$srv" "$client" "$run"
    done
  done
done
for run in $(seq "$RUNS"); do
  order=("${live[@]}")
  if [ $((run % 2)) = 0 ] && [ ${#live[@]} = 2 ]; then
    order=("${live[1]}" "${live[0]}")
  fi
  for srv in "${order[@]}"; do
    concurrent_run "$srv" "$run"
  done
done
for srv in "${live[@]}"; do
  if ! alive "${server_pid[$srv]}"; then
    failed[$srv]="exited during the runs; last log line: $(tail -1 "$work/$srv.log")"
  fi
  stop_pid "${server_pid[$srv]}"
done

# ---- report -------------------------------------------------------------------------------

# median SERVER CLIENT [COLUMN]: median of COLUMN (5: MB/s, 7: CPU ms/MB) over the successful
# runs ("-" when none), and "k/n" runs ok.
median() {
  awk -F'\t' -v s="$1" -v c="$2" -v col="${3:-5}" '
    $1 == s && $2 == c { n++; if ($6 == "ok") v[k++] = $col }
    END {
      if (k == 0) { printf "- 0/%d\n", n; exit }
      # insertion sort: k is small
      for (i = 1; i < k; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      m = (k % 2) ? v[int(k / 2)] : (v[k / 2 - 1] + v[k / 2]) / 2
      printf "%.2f %d/%d\n", m, k, n
    }' "$raw"
}

describe() {
  case "$1" in
    curl) echo "curl $(curl --version | awk 'NR == 1 {print $2}'), blksize 1468" ;;
    atftp) echo "atftp $(dpkg-query -W -f='${Version}' atftp 2>/dev/null), blksize 1468 + windowsize 16" ;;
    tftp-hpa) echo "tftp-hpa $(dpkg-query -W -f='${Version}' tftp-hpa 2>/dev/null), no options (512-byte blocks)" ;;
    "curl x$CONCURRENT") echo "$CONCURRENT concurrent curl, blksize 1468 (aggregate)" ;;
  esac
}

{
  echo "### TFTP: download of a $SIZE_MIB MiB file"
  echo
  echo "Median MB/s (10^6 bytes/s) of $RUNS runs per client and server, every download" \
    "checked by SHA-256."
  echo "Machine during the run: $(machine_line)."
  echo
  echo "| client | tftpd-hpa MB/s | drover MB/s | drover / tftpd-hpa | server CPU ms per MB: tftpd-hpa | drover | drover / tftpd-hpa (below 1: drover cheaper) |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for c in $CLIENTS "curl x$CONCURRENT"; do
    read -r th thn < <(median tftpd-hpa "$c")
    read -r dr drn < <(median drover "$c")
    read -r thc _ < <(median tftpd-hpa "$c" 7)
    read -r drc _ < <(median drover "$c" 7)
    echo "| $(describe "$c") | $th ($thn ok) | $dr ($drn ok) | **$(ratio "$dr" "$th")** |" \
      "$thc | $drc | $(ratio "$drc" "$thc") |"
    if [ -n "${BENCH_SUMMARY:-}" ]; then
      echo "- TFTP $SIZE_MIB MiB, $(describe "$c"), drover / tftpd-hpa: **$(ratio "$dr" "$th")**" \
        "($dr vs $th MB/s; server CPU per MB $(ratio "$drc" "$thc"): $drc vs $thc ms)" \
        >>"$BENCH_SUMMARY"
    fi
  done
  echo
  for s in "${live[@]}"; do
    echo "- $s answered atftp's request for blksize 1468 + windowsize 16 with:" \
      "\`${acked[$s]}\`"
  done
  for s in $SERVERS; do
    if [ -n "${failed[$s]:-}" ]; then
      echo "- $s was given up: ${failed[$s]}"
    fi
  done
  echo
  echo "<details><summary>Every run</summary>"
  echo
  echo "| server | client | run | seconds | MB/s | server CPU ms/MB | result |"
  echo "|---|---|---:|---:|---:|---:|---|"
  while IFS=$'\t' read -r s c r t m st cpu; do
    echo "| $s | $c | $r | $t | $m | $cpu | $st |"
  done <"$raw"
  echo
  echo "</details>"
  echo
} >"$out"

[ ${#failed[@]} = 0 ] && [ "$bad" = 0 ]
