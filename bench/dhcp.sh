#!/usr/bin/env bash
# DHCPv4 throughput, drover against dnsmasq, measured with perfdhcp (Kea) in two network
# namespaces joined by a veth:
#
#   drvbench-dhcp-s  drvb-dhcp-s  198.18.0.1/16   the server (one at a time)
#   drvbench-dhcp-c  drvb-dhcp-c  198.18.0.2/16   perfdhcp (it needs an address: it acts as a
#                                                 relay, giaddr 198.18.0.2, so the servers
#                                                 answer it by unicast on port 67)
#
# Method: a ladder of fixed offered rates, walked REPEATS times. At each step every server gets
# a fresh, empty lease store, then perfdhcp offers RATE new 4-way exchanges (DISCOVER-OFFER-
# REQUEST-ACK) per second for PERIOD seconds from CLIENTS simulated clients (random MACs out of
# CLIENTS; a client seen again gets its lease back), and waits 1 s for late answers. An
# exchange counts as completed when its ACK arrives within perfdhcp's drop time (1 s).
# Reported per step and server, as the median over the passes: completed exchanges per second
# (leases/s = ACKs / PERIOD), drop % (offered exchanges that did not complete) and the server's
# CPU time per lease. Summary: the highest step whose median drop is at most 1 % ("sustained")
# and the best median leases/s of any step ("peak"), and their drover/dnsmasq ratios. Servers
# alternate order from step to step, and passes are spread over time, so that the load of
# whatever else runs on the machine (fsync latency above all) does not favour one of them.
#
# Servers: dnsmasq (lease file on disk, as shipped), drover, and dnsmasq-ro (`--leasefile-ro`:
# no lease file at all, an upper bound that shows what dnsmasq's per-lease file write costs).
# Server state lives under $BENCH_TMP (default /var/tmp: a real disk, so fsync costs what it
# costs in production).
#
# Usage: sudo bench/dhcp.sh [--out FILE]     (FILE: markdown results; default stdout)
# Environment: DHCP_RATES ("100 200 300 400 600 800 1200 1600 3200"), DHCP_PERIOD (5),
# DHCP_REPEATS (3), DHCP_CLIENTS (10000), DHCP_SERVERS ("dnsmasq drover dnsmasq-ro"), DROVER
# (path of the binary), BENCH_TMP, BENCH_SUMMARY (a file to append a one-line summary to).
# Exit status: 0 when every server answered, 1 otherwise (the results still get written).

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

out_arg "$@"

RATES=${DHCP_RATES:-100 200 300 400 600 800 1200 1600 3200}
PERIOD=${DHCP_PERIOD:-5}
REPEATS=${DHCP_REPEATS:-3}
CLIENTS=${DHCP_CLIENTS:-10000}
SERVERS=${DHCP_SERVERS:-dnsmasq drover dnsmasq-ro}
MAX_DROP=1 # % of offered exchanges that may fail at a "sustained" step

NS_S=drvbench-dhcp-s
NS_C=drvbench-dhcp-c
IF_S=drvb-dhcp-s
IF_C=drvb-dhcp-c
RANGE_FIRST=198.18.1.0
RANGE_LAST=198.18.200.255 # 51,200 addresses; excludes the server (.0.1) and perfdhcp (.0.2)

need_root
need_cmd perfdhcp kea-admin
need_cmd ip iproute2
need_cmd ss iproute2
for s in $SERVERS; do
  case "$s" in
    dnsmasq | dnsmasq-ro) need_cmd dnsmasq dnsmasq-base ;;
    drover) ;;
    *) die "unknown server $s (known: dnsmasq drover dnsmasq-ro)" ;;
  esac
done

trap bench_cleanup EXIT
work='' # set by workdir
workdir work "${BENCH_TMP:-/var/tmp}"
ns_add "$NS_S"
ns_add "$NS_C"
veth_pair "$NS_S" "$IF_S" 198.18.0.1/16 "$NS_C" "$IF_C" 198.18.0.2/16

drover_config "$work/drover.toml" dhcp

declare -A failed=() # server -> why it was given up
drover_snapshot "$work/bin"

# start_server SERVER DIR: starts SERVER with a fresh state in DIR; sets BG_PID, or fails
# with the reason in WHY.
start_server() {
  local srv=$1 dir=$2
  case "$srv" in
    dnsmasq | dnsmasq-ro)
      local leases=(--dhcp-leasefile="$dir/leases")
      [ "$srv" = dnsmasq-ro ] && leases=(--leasefile-ro)
      start_bg "$dir/server.log" ip netns exec "$NS_S" dnsmasq --no-daemon \
        --conf-file=/dev/null --port=0 --interface="$IF_S" --bind-interfaces \
        --dhcp-range="$RANGE_FIRST,$RANGE_LAST,1h" --dhcp-lease-max=100000 --no-ping \
        --quiet-dhcp --pid-file= --user=root --group=root "${leases[@]}"
      ;;
    drover)
      if [ -n "$drover" ] && ! "$drover" --state-dir "$dir/state" network add bench \
        --subnet 198.18.0.0/16 --range "$RANGE_FIRST-$RANGE_LAST" >"$dir/network-add.log" 2>&1; then
        WHY="network add failed: $(tail -1 "$dir/network-add.log")"
        return 1
      fi
      start_drover "$NS_S" "$IF_S" "$dir" "$work/drover.toml" || return 1
      ;;
  esac
  await_udp "$NS_S" 67 "$BG_PID" 10 "$dir/server.log"
}

# leases_held SERVER DIR: leases the server holds on disk after the run ("-" for none kept).
leases_held() {
  case "$1" in
    dnsmasq) wc -l <"$2/leases" 2>/dev/null || echo "-" ;;
    dnsmasq-ro) echo "-" ;;
    drover) "$drover" --state-dir "$2/state" lease list 2>/dev/null | tail -n +2 | grep -c . || true ;;
  esac
}

# parse_perfdhcp LOG: "DISCOVERS OFFERS REQUESTS ACKS AVG_DO_MS AVG_RA_MS"
parse_perfdhcp() {
  awk '
    /Statistics for: DISCOVER-OFFER/ { s = "do" }
    /Statistics for: REQUEST-ACK/ { s = "ra" }
    /^sent packets:/ { sent[s] = $3 }
    /^received packets:/ { recv[s] = $3 }
    /^avg delay:/ { avg[s] = $3 }
    END {
      printf "%d %d %d %d %s %s\n", sent["do"], recv["do"], sent["ra"], recv["ra"],
        (avg["do"] == "" ? "-" : avg["do"]), (avg["ra"] == "" ? "-" : avg["ra"])
    }' "$1"
}

# raw: server rate rep discovers offers requests acks avg_do avg_ra leases_s drop_pct held cpu_s
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
      cpu0=$(cpu_seconds "$pid")
      log "$srv (pass $rep/$REPEATS): offering $rate exchanges/s for ${PERIOD}s from $CLIENTS clients"
      rc=0
      timeout $((PERIOD + 60)) ip netns exec "$NS_C" perfdhcp -4 -l "$IF_C" -r "$rate" \
        -R "$CLIENTS" -p "$PERIOD" -W 1000000 >"$dir/perfdhcp.log" 2>&1 || rc=$?
      server_alive=1
      alive "$pid" || server_alive=0
      cpu=$(awk -v a="$(cpu_seconds "$pid")" -v b="$cpu0" 'BEGIN { printf "%.2f\n", a - b }')
      stop_pid "$pid"
      # perfdhcp: 0 all exchanges completed, 3 some did not; anything else is its own failure.
      if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
        die "perfdhcp failed (exit $rc): $(tail -3 "$dir/perfdhcp.log")"
      fi
      read -r d o r a ado ara < <(parse_perfdhcp "$dir/perfdhcp.log")
      held=$(leases_held "$srv" "$dir")
      if [ "$server_alive" = 0 ]; then
        failed[$srv]="exited during the run at $rate/s: $(tail -1 "$dir/server.log")"
        log "$srv: ${failed[$srv]}"
      elif [ "$a" = 0 ]; then
        failed[$srv]="answered no exchange at $rate/s: $(tail -1 "$dir/server.log")"
        log "$srv: ${failed[$srv]}"
      fi
      awk -v s="$srv" -v rate="$rate" -v rep="$rep" -v p="$PERIOD" -v d="$d" -v o="$o" \
        -v r="$r" -v a="$a" -v ado="$ado" -v ara="$ara" -v held="$held" -v cpu="$cpu" 'BEGIN {
          printf "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%.1f\t%.2f\t%s\t%s\n", s, rate, rep,
            d, o, r, a, ado, ara, a / p, (d > 0 ? 100 * (d - a) / d : 100), held, cpu
        }' >>"$raw"
      rm -rf "$dir/state" "$dir/leases" # keep the logs only
      log "$srv @ $rate/s: $(tail -1 "$raw" | cut -f10) leases/s," \
        "$(tail -1 "$raw" | cut -f11)% dropped, $cpu CPU s"
    done
  done
done

# agg: server rate median_leases_s median_drop_pct leases_s_of_each_pass median_cpu_ms_per_lease
agg=$work/agg.tsv
sort -t$'\t' -k1,1 -k2,2n -k3,3n "$raw" | awk -F'\t' '
  function median(list,   n, v, i, j, x) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++) { x = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function flush() {
    if (key == "") return
    printf "%s\t%.1f\t%.2f\t%s\t%s\n", key, median(ls), median(dp), lsl,
      (cpul == "" ? "-" : sprintf("%.2f", median(cpul)))
  }
  {
    k = $1 "\t" $2
    if (k != key) { flush(); key = k; ls = dp = lsl = cpul = "" }
    ls = ls " " $10; dp = dp " " $11; lsl = lsl (lsl == "" ? "" : ", ") $10
    if ($7 > 0) cpul = cpul " " 1000 * $13 / $7
  }
  END { flush() }' >"$agg"

# ---- report -------------------------------------------------------------------------------

label() {
  case "$1" in
    dnsmasq) echo "dnsmasq" ;;
    dnsmasq-ro) echo "dnsmasq --leasefile-ro" ;;
    drover) echo "drover" ;;
  esac
}

TOP=$(echo "$RATES" | tr ' ' '\n' | sort -n | tail -1)

# summary SERVER: "SUSTAINED_RATE LEASES_AT_IT PEAK BOUND" ("-" when none). BOUND is ">=" when
# the server still had at most MAX_DROP % drops at the ladder's top step: its capacity was not
# reached, so the numbers are lower bounds.
summary() {
  awk -F'\t' -v s="$1" -v m="$MAX_DROP" -v top="$TOP" '
    $1 == s {
      if ($4 <= m && $2 > sr) { sr = $2; sl = $3 }
      if ($3 > pk) pk = $3
    }
    END {
      printf "%s %s %s %s\n", (sr ? sr : "-"), (sr ? sl : "-"), (pk ? pk : "-"),
        (sr == top ? ">=" : "=")
    }' "$agg"
}

LOW=$(echo "$RATES" | tr ' ' '\n' | sort -n | head -1)

# cpu_low SERVER: median server CPU ms per lease at the lowest step.
cpu_low() {
  awk -F'\t' -v s="$1" -v low="$LOW" '$1 == s && $2 == low { c = $6 } END { print (c == "" ? "-" : c) }' "$agg"
}

{
  echo "### DHCPv4: 4-way exchanges (DORA) per second"
  echo
  echo "perfdhcp $(perfdhcp -v 2>&1 | awk '{print $2}'), $REPEATS passes over the ladder," \
    "${PERIOD} s per step, $CLIENTS simulated clients, drop time 1 s, a fresh empty lease" \
    "store for every run; the summary uses each step's median over the passes."
  echo "Machine during the run: $(machine_line)."
  echo
  echo "| server | sustained offered rate (≤ ${MAX_DROP}% drops) | leases/s there | peak leases/s | CPU ms per lease at $LOW/s |"
  echo "|---|---:|---:|---:|---:|"
  for s in $SERVERS; do
    if [ -n "${failed[$s]:-}" ] && ! grep -q "^$s"$'\t' "$raw"; then
      echo "| $(label "$s") | failed: ${failed[$s]//|/\\|} | | | |"
      continue
    fi
    read -r sr sl pk bd < <(summary "$s")
    echo "| $(label "$s") | $(mark "$bd" "$sr") | $(mark "$bd" "$sl") | $(mark "$bd" "$pk") |" \
      "$(cpu_low "$s") |"
  done
  echo
  read -r _ dn_l dn_p dn_b < <(summary dnsmasq)
  read -r _ dr_l dr_p dr_b < <(summary drover)
  line="sustained leases/s **$(bounded_ratio "$dr_l" "$dr_b" "$dn_l" "$dn_b")**, peak leases/s"
  line="$line **$(bounded_ratio "$dr_p" "$dr_b" "$dn_p" "$dn_b")**; CPU time per lease at $LOW/s"
  cpu_ratio=$(ratio "$(cpu_low drover)" "$(cpu_low dnsmasq)")
  line="$line (below 1: drover cheaper) **$cpu_ratio**"
  echo "**Ratio drover / dnsmasq**: $line."
  if [ -n "${BENCH_SUMMARY:-}" ]; then
    echo "- DHCP, drover / dnsmasq: $line (sustained: dnsmasq $(mark "$dn_b" "$dn_l")," \
      "drover $(mark "$dr_b" "$dr_l") leases/s; peak: dnsmasq $(mark "$dn_b" "$dn_p")," \
      "drover $(mark "$dr_b" "$dr_p") leases/s; CPU ms per lease at $LOW/s: dnsmasq" \
      "$(cpu_low dnsmasq), drover $(cpu_low drover))" >>"$BENCH_SUMMARY"
  fi
  for s in $SERVERS; do
    # Goodput under overload: leases/s at the top step against the peak.
    awk -F'\t' -v s="$s" -v l="$(label "$s")" '
      $1 == s { if ($3 > pk) { pk = $3; pr = $2 } if ($2 >= tr) { tr = $2; tl = $3 } }
      END {
        if (pk > 0 && tr > pr && tl < 0.8 * pk)
          printf "\n%s: under overload its completed exchanges fall from %.1f/s (offered %d/s) to %.1f/s (offered %d/s).\n", l, pk, pr, tl, tr
      }' "$agg"
    if [ -n "${failed[$s]:-}" ]; then
      echo
      echo "$(label "$s") was given up: ${failed[$s]}"
    fi
  done
  echo
  echo "Per step, medians of $REPEATS passes (leases/s = completed exchanges / ${PERIOD} s;" \
    "drops = offered exchanges that did not complete; CPU = the server's user + system CPU" \
    "time per completed exchange):"
  echo
  echo "| offered/s | server | leases/s (median) | leases/s of each pass | drops % (median) | server CPU ms / lease |"
  echo "|---:|---|---:|---|---:|---:|"
  sort -t$'\t' -k2,2n -k1,1 "$agg" | while IFS=$'\t' read -r s rt ls dp each cpu; do
    echo "| $rt | $(label "$s") | $ls | $each | $dp | $cpu |"
  done
  echo
  echo "<details><summary>Every run: perfdhcp's counters (avg = its mean DISCOVER→OFFER /" \
    "REQUEST→ACK delay)</summary>"
  echo
  echo "| pass | offered/s | server | DISCOVER sent | OFFER recv | REQUEST sent | ACK recv | leases/s | drops % | avg D→O ms | avg R→A ms | leases on disk after | server CPU s |"
  echo "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  sort -t$'\t' -k3,3n -k2,2n -k1,1 "$raw" |
    while IFS=$'\t' read -r s rt rep d o r a ado ara ls dp held cpu; do
      echo "| $rep | $rt | $(label "$s") | $d | $o | $r | $a | $ls | $dp | $ado | $ara | $held | $cpu |"
    done
  echo
  echo "</details>"
  echo
} >"$out"

[ ${#failed[@]} = 0 ]
