#!/usr/bin/env bash
# NTP requests per second, drover against chrony (chronyd as a server: `local stratum 10`,
# `allow`), measured with bench/ntpload.c (a bounded load client, compiled here with the
# system's cc) in two network namespaces joined by a veth:
#
#   drvbench-ntp-s  drvb-ntp-s  198.18.0.1/16   the server (one at a time), pinned to CPU 1;
#                                               route to 198.19.0.0/16 via the client
#   drvbench-ntp-c  drvb-ntp-c  198.18.0.2/16   ntpload, pinned to CPU 0; owns 198.19.0.0/16
#                                               (`ip route add local ... dev lo`)
#
# drover rate-limits per client address (kiss-o'-death RATE, then silence: a burst of 32
# requests, then one per 250 ms; the limits are built in, not configurable). So the load comes
# from SOURCES addresses (198.19.0.1 onwards, round robin): at 65,534 addresses no address
# exceeds its allowance below about 260,000 requests/s however long the step, so the limiter
# is consulted on every request (its cost is in the numbers) but never refuses; the KoD
# column shows that it did not. A separate single-address run shows the policy
# itself: one client sending 100 requests/s for SECONDS s to each server.
#
# Method: a ladder of fixed offered rates, walked REPEATS times; at each step each server is
# started fresh, gets RATE mode-3 requests per second for SECONDS s, and 1 s more for late
# replies. A request counts as answered when a mode-4 reply echoing its transmit timestamp
# comes back (a KoD counts apart). Reported per step as the median over the passes: answered/s,
# unanswered %, mean round trip, the server's user + system CPU time per answered request, and
# the client's own CPU time and achieved send rate (its ceiling: on 2 cores it shares the
# machine with the server). Summary: the highest step with at most 1 % unanswered
# ("sustained"), the best answered/s of any step ("peak"), CPU per request at the lowest step.
#
# Usage: sudo bench/ntp.sh [--out FILE]     (FILE: markdown results; default stdout)
# Environment: NTP_RATES ("10000 20000 40000 60000 80000 120000"), NTP_SECONDS (10),
# NTP_REPEATS (5), NTP_SOURCES (65534), NTP_SERVERS ("chrony drover"), DROVER, BENCH_TMP,
# BENCH_SERVER_CPU (1), BENCH_CLIENT_CPU (0), BENCH_SUMMARY (a file to append a summary to).
# Exit status: 0 when every server answered, 1 otherwise (the results still get written).

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

out_arg "$@"

RATES=${NTP_RATES:-10000 20000 40000 60000 80000 120000}
SECS=${NTP_SECONDS:-10}
REPEATS=${NTP_REPEATS:-5}
SOURCES=${NTP_SOURCES:-65534}
SERVERS=${NTP_SERVERS:-chrony drover}
MAX_LOSS=1 # % of requests that may go unanswered at a "sustained" step
SINGLE_RATE=100

NS_S=drvbench-ntp-s
NS_C=drvbench-ntp-c
IF_S=drvb-ntp-s
IF_C=drvb-ntp-c
ADDR=198.18.0.1
SRC_NET=198.19.0.0/16
SRC_BASE=198.19.0.1

if [ "$SOURCES" -lt 1 ] || [ "$SOURCES" -gt 65534 ]; then die "NTP_SOURCES must be 1 to 65534"; fi
need_root
need_cmd cc gcc
need_cmd ip iproute2
need_cmd ss iproute2
need_cmd taskset util-linux
for s in $SERVERS; do
  case "$s" in
    chrony) need_cmd chronyd chrony ;;
    drover) ;;
    *) die "unknown server $s (known: chrony drover)" ;;
  esac
done

trap bench_cleanup EXIT
work='' # set by workdir
workdir work "${BENCH_TMP:-/var/tmp}"
cc -O2 -Wall -o "$work/ntpload" "$BENCH_DIR/ntpload.c" || die "cannot compile ntpload.c"
ns_add "$NS_S"
ns_add "$NS_C"
veth_pair "$NS_S" "$IF_S" "$ADDR/16" "$NS_C" "$IF_C" 198.18.0.2/16
ip -n "$NS_C" route add local "$SRC_NET" dev lo
ip -n "$NS_S" route add "$SRC_NET" via 198.18.0.2

cat >"$work/chrony.conf" <<EOF
# A server of its own clock for the cluster (as drover with ntp.local-reference = true).
local stratum 10
allow 198.18.0.0/15
bindaddress $ADDR
port 123
cmdport 0
pidfile $work/chronyd.pid
EOF

# The host clock announced as the cluster's reference (stratum 10, like chrony's `local
# stratum 10`).
drover_config "$work/drover.toml" ntp "port = 123
local-reference = true"

declare -A failed=() # server -> why it was given up
drover_snapshot "$work/bin"

# start_server SERVER DIR: starts SERVER fresh on ADDR:123 (pinned to SERVER_CPU), logs in
# DIR; sets BG_PID, or fails with the reason in WHY.
start_server() {
  local srv=$1 dir=$2
  case "$srv" in
    chrony)
      start_bg "$dir/server.log" ip netns exec "$NS_S" "${SERVER_PIN[@]}" chronyd -d -x \
        -u root -f "$work/chrony.conf"
      ;;
    drover)
      start_drover "$NS_S" "$IF_S" "$dir" "$work/drover.toml" pinned || return 1
      ;;
  esac
  await_udp "$NS_S" 123 "$BG_PID" 10 "$dir/server.log"
}

# load RATE SECONDS BASE NSRC [DRAIN_MS]: ntpload from the client namespace, pinned to
# CLIENT_CPU, under a timeout; prints its line (sent answered kod other blocked elapsed rtt_us
# user_s sys_s).
load() {
  timeout $(($2 + 30)) ip netns exec "$NS_C" "${CLIENT_PIN[@]}" "$work/ntpload" "$ADDR" 123 "$@"
}

# The per-address policy first: each server fresh, one address (the client's own) sending
# SINGLE_RATE requests/s for SECS s. single: server sent answered kod
single=$work/single.tsv
: >"$single"
for srv in $SERVERS; do
  fresh_server "$srv" "$work/$srv-single" || continue
  log "$srv: one address, $SINGLE_RATE requests/s for ${SECS}s"
  read -r s a k _ < <(load "$SINGLE_RATE" "$SECS" 198.18.0.2 0 || true)
  stop_pid "$BG_PID"
  printf '%s\t%s\t%s\t%s\n' "$srv" "${s:-0}" "${a:-0}" "${k:-0}" >>"$single"
  if [ "${a:-0}" = 0 ]; then
    failed[$srv]="answered none of ${s:-0} requests: $(tail -1 "$work/$srv-single/server.log")"
    log "$srv: ${failed[$srv]}"
  fi
done

# raw: server rate rep sent answered kod other blocked rtt_us server_cpu_s client_cpu_s
# server_rcvbuf_drops client_rcvbuf_drops
raw=$work/raw.tsv
: >"$raw"
step=0
for rep in $(seq "$REPEATS"); do
  for rate in $RATES; do
    order=$(alternate_order "$step")
    step=$((step + 1))
    for srv in $order; do
      [ -n "${failed[$srv]:-}" ] && continue
      dir="$work/$srv-$rate-$rep"
      fresh_server "$srv" "$dir" || continue
      pid=$BG_PID
      # A warm-up that also checks the server answers (from the client's own address, which
      # the load does not use).
      read -r s a _ < <(load 10 1 198.18.0.2 0 200 || true)
      if [ "${a:-0}" -lt "${s:-10}" ]; then
        failed[$srv]="answered ${a:-0} of ${s:-10} warm-up requests: $(tail -1 "$dir/server.log")"
        log "$srv: ${failed[$srv]}"
        stop_pid "$pid"
        continue
      fi
      log "$srv (pass $rep/$REPEATS): $rate requests/s for ${SECS}s from $SOURCES addresses"
      cpu0=$(cpu_seconds "$pid")
      sd0=$(udp_drops "$NS_S") cd0=$(udp_drops "$NS_C")
      line=$(load "$rate" "$SECS" "$SRC_BASE" "$SOURCES" || true)
      cpu=$(awk -v a="$(cpu_seconds "$pid")" -v b="$cpu0" 'BEGIN { printf "%.2f\n", a - b }')
      sdrop=$(($(udp_drops "$NS_S") - sd0)) cdrop=$(($(udp_drops "$NS_C") - cd0))
      server_alive=1
      alive "$pid" || server_alive=0
      stop_pid "$pid"
      read -r sent ans kod other blocked _ rtt cu cs <<<"$line"
      [ -n "${cs:-}" ] || die "ntpload failed: $line"
      printf '%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%d\n' "$srv" "$rate" "$rep" "$sent" \
        "$ans" "$kod" "$other" "$blocked" "$rtt" "$cpu" \
        "$(awk -v u="$cu" -v s="$cs" 'BEGIN { printf "%.2f", u + s }')" "$sdrop" "$cdrop" >>"$raw"
      if [ "$server_alive" = 0 ]; then
        failed[$srv]="exited during the run at $rate/s: $(tail -1 "$dir/server.log")"
        log "$srv: ${failed[$srv]}"
      elif [ "$ans" = 0 ]; then
        failed[$srv]="answered nothing at $rate/s: $(tail -1 "$dir/server.log")"
        log "$srv: ${failed[$srv]}"
      fi
      log "$srv @ $rate/s: sent $sent, answered $ans, KoD $kod, server $cpu CPU s," \
        "receive buffer drops: server side $sdrop, client side $cdrop"
    done
  done
done

# ---- report ----------------------------------------------------------------------------------

# agg: server rate answered_s unanswered_pct sent_s rtt_us cpu_us_per_answer client_cpu_s kod
# server_socket_drop_pct answered_s_of_each_pass (medians over the passes; kod: the sum)
agg=$work/agg.tsv
for s in $SERVERS; do
  for rate in $RATES; do
    rows=$(awk -F'\t' -v s="$s" -v r="$rate" '$1 == s && $2 == r' "$raw")
    [ -n "$rows" ] || continue
    # Word splitting of the lists is intended: one value per line.
    # shellcheck disable=SC2046
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$rate" \
      "$(median_of $(awk -F'\t' -v t="$SECS" '{ printf "%.1f\n", $5 / t }' <<<"$rows"))" \
      "$(median_of $(awk -F'\t' '{ printf "%.2f\n", ($4 ? 100 * ($4 - $5) / $4 : 100) }' <<<"$rows"))" \
      "$(median_of $(awk -F'\t' -v t="$SECS" '{ printf "%.1f\n", $4 / t }' <<<"$rows"))" \
      "$(median_of $(cut -f9 <<<"$rows"))" \
      "$(median_of $(awk -F'\t' '$5 > 0 { printf "%.2f\n", 1e6 * $10 / $5 }' <<<"$rows"))" \
      "$(median_of $(cut -f11 <<<"$rows"))" \
      "$(awk -F'\t' '{ k += $6 } END { print k + 0 }' <<<"$rows")" \
      "$(median_of $(awk -F'\t' '{ printf "%.2f\n", ($4 ? 100 * $12 / $4 : 0) }' <<<"$rows"))" \
      "$(each_of $(awk -F'\t' -v t="$SECS" '{ printf "%.0f\n", $5 / t }' <<<"$rows"))"
  done
done >"$agg"

TOP=$(echo "$RATES" | tr ' ' '\n' | sort -n | tail -1)
LOW=$(echo "$RATES" | tr ' ' '\n' | sort -n | head -1)

# summary SERVER: "SUSTAINED_RATE ANSWERED_THERE PEAK BOUND CPU_US_AT_LOW" ("-" when none);
# BOUND ">=" when the top step was still sustained (capacity not reached).
summary() {
  awk -F'\t' -v s="$1" -v m="$MAX_LOSS" -v top="$TOP" -v low="$LOW" '
    $1 == s {
      if ($4 <= m && $2 > sr) { sr = $2; sa = $3 }
      if ($3 > pk) pk = $3
      if ($2 == low) c = $7
    }
    END {
      printf "%s %s %s %s %s\n", (sr ? sr : "-"), (sr ? sa : "-"), (pk ? pk : "-"),
        (sr == top ? ">=" : "="), (c == "" ? "-" : c)
    }' "$agg"
}

label() {
  case "$1" in
    chrony) echo "chrony $(chronyd -v 2>/dev/null | awk '{ print $4 }')" ;;
    drover) echo "drover" ;;
  esac
}

{
  echo "### NTP: requests per second"
  echo
  echo "bench/ntpload.c, $REPEATS passes over the ladder, ${SECS} s per step, requests from" \
    "$SOURCES source addresses round robin, a fresh server for every step; $(pinning_line);" \
    "the summary uses each step's median over the passes."
  echo "Machine during the run: $(machine_line)."
  echo
  echo "| server | sustained offered rate (≤ ${MAX_LOSS}% unanswered) | answered/s there | peak answered/s | server CPU µs per request at $LOW/s |"
  echo "|---|---:|---:|---:|---:|"
  for s in $SERVERS; do
    if ! grep -q "^$s"$'\t' "$agg"; then
      echo "| $(label "$s") | failed: ${failed[$s]//|/\\|} | | | |"
      continue
    fi
    read -r sr sa pk bd c < <(summary "$s")
    echo "| $(label "$s") | $(mark "$bd" "$sr") | $(mark "$bd" "$sa") | $(mark "$bd" "$pk") | $c |"
  done
  echo
  read -r _ ca cp cb cc < <(summary chrony)
  read -r _ da dp db dc < <(summary drover)
  rs=$(bounded_ratio "$da" "$db" "$ca" "$cb") rp=$(bounded_ratio "$dp" "$db" "$cp" "$cb")
  rc=$(ratio "$dc" "$cc")
  line="sustained answered/s **$rs**, peak answered/s **$rp**; server CPU time per request at"
  line="$line $LOW/s (below 1: drover cheaper) **$rc**"
  echo "**Ratio drover / chrony**: $line."
  if [ -n "${BENCH_SUMMARY:-}" ]; then
    echo "- NTP, drover / chrony: $line (sustained: chrony $(mark "$cb" "$ca"), drover" \
      "$(mark "$db" "$da") answered/s; peak: chrony $cp, drover $dp; CPU µs per request at" \
      "$LOW/s: chrony $cc, drover $dc)" >>"$BENCH_SUMMARY"
  fi
  for s in $SERVERS; do
    if [ -n "${failed[$s]:-}" ]; then
      echo
      echo "$(label "$s") was given up: ${failed[$s]}"
    fi
  done
  echo
  echo "One client address sending $SINGLE_RATE requests/s for ${SECS} s to a fresh server (the" \
    "per-client policy):"
  echo
  echo "| server | sent | answered | kiss-o'-death RATE | no reply |"
  echo "|---|---:|---:|---:|---:|"
  while IFS=$'\t' read -r s n a k; do
    echo "| $(label "$s") | $n | $a | $k | $((n - a - k)) |"
  done <"$single"
  echo
  echo "Per step, medians of $REPEATS passes (client CPU: ntpload's own user + system time over" \
    "the ${SECS} s step; near ${SECS} s, or sent/s below the offered rate, the client was the limit):"
  echo
  echo "| offered/s | server | answered/s | answered/s of each pass | unanswered % | of which dropped at the server's full socket buffer, % of sent | sent/s | mean round trip µs | server CPU µs / request | client CPU s | KoD (all passes) |"
  echo "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  sort -t$'\t' -k2,2n -k1,1 "$agg" | while IFS=$'\t' read -r s rt a u sn rtt c cc k sd each; do
    echo "| $rt | $(label "$s") | $a | $each | $u | $sd | $sn | $rtt | $c | $cc | $k |"
  done
  echo
  echo "<details><summary>Every run</summary>"
  echo
  echo "| pass | offered/s | server | sent | answered | KoD | stray replies | client send buffer full | mean round trip µs | server CPU s | client CPU s | requests dropped at the server's socket | replies dropped at the client's socket |"
  echo "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  sort -t$'\t' -k3,3n -k2,2n -k1,1 "$raw" |
    while IFS=$'\t' read -r s rt rep sent ans kod other bl rtt cpu ccpu sdr cdr; do
      echo "| $rep | $rt | $(label "$s") | $sent | $ans | $kod | $other | $bl | $rtt | $cpu | $ccpu | $sdr | $cdr |"
    done
  echo
  echo "</details>"
  echo
} >"$out"

[ ${#failed[@]} = 0 ]
