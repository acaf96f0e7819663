#!/usr/bin/env bash
# DHCPv4 across several servers on one segment: a drover pool of 1, 2 and 3 members against a
# Kea HA pair in load-balancing mode, measured with perfdhcp; then the time from a member's
# death (SIGKILL) to the first answer its clients get from a survivor. Every server sits in its
# own network namespace, with a veth into one bridge (in a namespace of its own) where the
# clients' namespace also sits:
#
#   drvbench-pool-br   bridge drvb-pbr: the segment
#   drvbench-pool-m1   eth0 198.18.0.11/16   drover member 1 (pool init) / Kea server1 (primary)
#   drvbench-pool-m2   eth0 198.18.0.12/16   drover member 2 (pool join) / Kea server2 (secondary)
#   drvbench-pool-m3   eth0 198.18.0.13/16   drover member 3 (pool join)
#   drvbench-pool-c    eth0 198.18.0.2/16    perfdhcp and bench/dhcpprobe.c: relay agents
#                                            (giaddr 198.18.0.2) that broadcast to port 67, so
#                                            every server hears every client and answers
#                                            198.18.0.2:67 by unicast
#
# Method, throughput: for each setup (drover-1, drover-2, drover-3, kea-ha), in turn and in
# alternating order, REPEATS times: fresh servers with empty stores; wait until every server
# has handed out a lease (dhcpprobe: ACKs from N distinct server identifiers; a drover pool
# hands out nothing until its members have settled and pulled from each other); then a ladder
# of offered rates, PERIOD s each, perfdhcp with CLIENTS simulated clients per step, each step
# with its own MAC base (so no client recurs across steps; the stores grow over the ladder).
# leases/s = ACKs / PERIOD; drops = offered exchanges that did not complete within 1 s; CPU =
# user + system time of all the setup's server processes per lease.
#
# Method, failover: one fresh pool of 3 drover members and one fresh Kea pair (with Kea's
# default failure detection, and with a fast one: see KEA_TIMINGS); dhcpprobe starts
# FAILOVER_RATE new clients per second (each a new MAC asking for a new lease, retrying every
# 250 ms); at FAILOVER_KILL_AT s one server (drover member 2, Kea server2) gets SIGKILL; the
# clients go on for FAILOVER_AFTER s more (for Kea: plus its max-response-delay). Clients whose first attempt after the kill went unanswered for over a
# second belonged to the dead server ("orphans"); the report gives the time from the kill to
# the first ACK an orphan got (from a survivor), and the longest any client waited.
#
# Usage: sudo bench/pool.sh [--out FILE]     (FILE: markdown results; default stdout)
# Environment: POOL_RATES ("200 400 800 1600 3200"), POOL_PERIOD (5), POOL_REPEATS (3),
# POOL_CLIENTS (5000), POOL_SETUPS ("drover-1 drover-2 drover-3 kea-ha"), POOL_FAILOVER
# ("drover kea"; empty: skip), FAILOVER_RATE (20), FAILOVER_KILL_AT (10), FAILOVER_AFTER (30),
# KEA_TIMINGS ("default fast"), DROVER, BENCH_TMP, BENCH_SUMMARY.
# Exit status: 0 when every setup answered, 1 otherwise (the results still get written).

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

out_arg "$@"

RATES=${POOL_RATES:-200 400 800 1600 3200}
PERIOD=${POOL_PERIOD:-5}
REPEATS=${POOL_REPEATS:-3}
CLIENTS=${POOL_CLIENTS:-5000}
SETUPS=${POOL_SETUPS:-drover-1 drover-2 drover-3 kea-ha}
FAILOVER=${POOL_FAILOVER-drover kea}
F_RATE=${FAILOVER_RATE:-20}
F_AFTER=${FAILOVER_AFTER:-30}
F_KILL=${FAILOVER_KILL_AT:-10}
KEA_TIMINGS=${KEA_TIMINGS:-default fast}
READY_SECONDS=150 # a drover pool needs ~45 s to settle; give up after this
MAX_DROP=1

NS_BR=drvbench-pool-br
NS_C=drvbench-pool-c
BR=drvb-pbr
SUBNET=198.18.0.0/16
RANGE_FIRST=198.18.1.0
RANGE_LAST=198.18.254.255 # 65,024 addresses
GIADDR=198.18.0.2
KEA_HOOKS=/usr/lib/x86_64-linux-gnu/kea/hooks
# Kea HA failure detection: heartbeat-delay max-response-delay max-ack-delay
# max-unacked-clients (ms, ms, ms, count). "default": Kea 2.2's defaults; "fast": a heartbeat
# every second, partner down after 3 s without an answer, no wait for unanswered clients
# (close to drover's membership, which notices a death in 3-4 s and is not configurable).
declare -A KEA_TIMING=([default]="10000 60000 10000 10" [fast]="1000 3000 1000 0")

need_root
need_cmd perfdhcp kea-admin
need_cmd ip iproute2
need_cmd ss iproute2
need_cmd cc gcc
for s in $SETUPS; do
  case "$s" in
    drover-1 | drover-2 | drover-3) ;;
    kea-ha) need_cmd kea-dhcp4 kea-dhcp4-server ;;
    *) die "unknown setup $s (known: drover-1 drover-2 drover-3 kea-ha)" ;;
  esac
done
for f in $FAILOVER; do
  case "$f" in
    drover) ;;
    kea) need_cmd kea-dhcp4 kea-dhcp4-server ;;
    *) die "unknown failover setup $f (known: drover kea)" ;;
  esac
done
for t in $KEA_TIMINGS; do
  [ -n "${KEA_TIMING[$t]:-}" ] || die "unknown Kea timing $t (known: default fast)"
done
if [[ " $SETUPS $FAILOVER " == *" kea"* ]]; then
  for h in libdhcp_ha.so libdhcp_lease_cmds.so; do
    [ -f "$KEA_HOOKS/$h" ] || die "$KEA_HOOKS/$h not found: apt-get install kea-common"
  done
fi

trap bench_cleanup EXIT
work='' # set by workdir
workdir work "${BENCH_TMP:-/var/tmp}"
cc -O2 -Wall -o "$work/dhcpprobe" "$BENCH_DIR/dhcpprobe.c" || die "cannot compile dhcpprobe.c"

# The segment: a bridge in its own namespace, the clients' namespace and three server
# namespaces on it. Server namespaces keep their interface (eth0) for the whole run; the
# servers come and go.
ns_add "$NS_BR"
ip -n "$NS_BR" link add "$BR" type bridge
ip -n "$NS_BR" link set "$BR" up
# port NS ADDR PORT: a veth from the bridge into NS, eth0 with ADDR there.
port() {
  ip link add "$3" type veth peer name drvb-tmp0
  ip link set "$3" netns "$NS_BR"
  ip link set drvb-tmp0 netns "$1"
  ip -n "$1" link set drvb-tmp0 name eth0
  ip -n "$1" addr add "$2" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$NS_BR" link set "$3" master "$BR"
  ip -n "$NS_BR" link set "$3" up
}
ns_add "$NS_C"
port "$NS_C" "$GIADDR/16" drvb-pc
for i in 1 2 3; do
  ns_add "drvbench-pool-m$i"
  port "drvbench-pool-m$i" "198.18.0.1$i/16" "drvb-pm$i"
done
member_ns() { echo "drvbench-pool-m$1"; }
member_ip() { echo "198.18.0.1$1"; }

drover_config "$work/drover.toml" dhcp
SERVERS=drover # drover_snapshot's test
drover_snapshot "$work/bin"

declare -A failed=() # setup -> why it was given up
RUN_PIDS=()          # the servers of the current setup

# start_drover_pool N DIR: N drover members with fresh stores in DIR/mI, the first created
# with `pool init` and holding the network, the others `pool join`ed to it; sets RUN_PIDS, or
# WHY and fails.
start_drover_pool() {
  local n=$1 dir=$2 i s
  [ -n "$drover" ] || {
    WHY="no drover binary (cargo build --release, or set DROVER)"
    return 1
  }
  for i in $(seq "$n"); do
    s=$dir/m$i
    mkdir -p "$s"
    if [ "$i" = 1 ]; then
      "$drover" --state-dir "$s/state" pool init >"$s/setup.log" 2>&1 &&
        "$drover" --state-dir "$s/state" network add bench --subnet "$SUBNET" \
          --range "$RANGE_FIRST-$RANGE_LAST" >>"$s/setup.log" 2>&1
    else
      "$drover" --state-dir "$s/state" pool join "$(member_ip 1)" \
        --key-file "$dir/m1/state/cluster.key" >"$s/setup.log" 2>&1
    fi || {
      WHY="member $i setup failed: $(tail -1 "$s/setup.log")"
      return 1
    }
  done
  RUN_PIDS=()
  for i in $(seq "$n"); do
    start_drover "$(member_ns "$i")" eth0 "$dir/m$i" "$work/drover.toml" || return 1
    RUN_PIDS+=("$BG_PID")
  done
  for i in $(seq "$n"); do
    await_udp "$(member_ns "$i")" 67 "${RUN_PIDS[$((i - 1))]}" 10 "$dir/m$i/server.log" || {
      WHY="member $i $WHY"
      return 1
    }
  done
}

# kea_config FILE NAME TIMING DIR SEVERITY: kea-dhcp4's configuration for HA peer NAME
# (server1 or server2) in load-balancing mode, each with half of the range, memfile leases in
# DIR, its log in DIR/kea.log at SEVERITY (INFO logs every lease; WARN does not).
kea_config() {
  local hb mr ma mu
  read -r hb mr ma mu <<<"${KEA_TIMING[$3]}"
  cat >"$1" <<EOF
{
  "Dhcp4": {
    "interfaces-config": { "interfaces": [ "eth0" ] },
    "lease-database": { "type": "memfile", "persist": true, "name": "$4/leases4.csv", "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64 },
    "hooks-libraries": [
      { "library": "$KEA_HOOKS/libdhcp_lease_cmds.so" },
      {
        "library": "$KEA_HOOKS/libdhcp_ha.so",
        "parameters": {
          "high-availability": [ {
            "this-server-name": "$2",
            "mode": "load-balancing",
            "heartbeat-delay": $hb,
            "max-response-delay": $mr,
            "max-ack-delay": $ma,
            "max-unacked-clients": $mu,
            "multi-threading": { "enable-multi-threading": true, "http-dedicated-listener": true,
                                 "http-listener-threads": 1, "http-client-threads": 1 },
            "peers": [
              { "name": "server1", "url": "http://$(member_ip 1):8001/", "role": "primary" },
              { "name": "server2", "url": "http://$(member_ip 2):8001/", "role": "secondary" }
            ]
          } ]
        }
      }
    ],
    "subnet4": [ {
      "id": 1,
      "subnet": "$SUBNET",
      "pools": [
        { "pool": "$RANGE_FIRST - 198.18.127.255", "client-class": "HA_server1" },
        { "pool": "198.18.128.0 - $RANGE_LAST", "client-class": "HA_server2" }
      ]
    } ],
    "loggers": [ {
      "name": "kea-dhcp4",
      "output_options": [ { "output": "$4/kea.log" } ],
      "severity": "$5"
    } ]
  }
}
EOF
}

# start_kea_pair TIMING DIR SEVERITY: the two HA peers with fresh lease files in DIR/mI; sets
# RUN_PIDS, or WHY and fails.
start_kea_pair() {
  local i s
  RUN_PIDS=()
  for i in 1 2; do
    s=$2/m$i
    mkdir -p "$s"
    kea_config "$s/kea.json" "server$i" "$1" "$s" "$3"
    if ! kea-dhcp4 -t "$s/kea.json" >"$s/check.log" 2>&1; then
      WHY="kea-dhcp4 -t rejected the configuration: $(grep -m1 -i error "$s/check.log" || tail -1 "$s/check.log")"
      return 1
    fi
    KEA_PIDFILE_DIR=$s KEA_LOCKFILE_DIR=$s start_bg "$s/server.log" \
      ip netns exec "$(member_ns "$i")" kea-dhcp4 -c "$s/kea.json"
    RUN_PIDS+=("$BG_PID")
  done
  for i in 1 2; do
    await_udp "$(member_ns "$i")" 67 "${RUN_PIDS[$((i - 1))]}" 10 "$2/m$i/server.log" || {
      WHY="server$i $WHY"
      return 1
    }
  done
}

# start_setup SETUP DIR [KEA_TIMING]: fresh servers of SETUP, ready to hand out leases (an ACK
# seen from each); sets RUN_PIDS and READY_S (seconds from start to ready), or WHY and fails.
# With KEA_TIMING (a failover run), Kea logs at INFO (its HA state changes); else at WARN.
start_setup() {
  local n t0 rc=0
  t0=$(date +%s)
  case "$1" in
    drover-*)
      n=${1#drover-}
      start_drover_pool "$n" "$2" || return 1
      ;;
    kea-ha)
      n=2
      if [ -n "${3:-}" ]; then
        start_kea_pair "$3" "$2" INFO || return 1
      else
        start_kea_pair default "$2" WARN || return 1
      fi
      ;;
  esac
  # Readiness: new clients (MAC base 02:ff:..) until ACKs came from all n servers.
  timeout $((READY_SECONDS + 30)) ip netns exec "$NS_C" "$work/dhcpprobe" eth0 "$GIADDR" 10 \
    "$READY_SECONDS" ffff "$n" >"$2/ready.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    WHY="not every server answered within $READY_SECONDS s (ACKs from:"
    WHY="$WHY $(awk '$1 == "ack" { print $6 }' "$2/ready.log" | sort -u | tr '\n' ' '))"
    return 1
  fi
  READY_S=$(($(date +%s) - t0))
}

stop_setup() {
  local p
  for p in "${RUN_PIDS[@]}"; do stop_pid "$p"; done
  RUN_PIDS=()
}

# setup_cpu: user + system CPU seconds so far of the current setup's servers.
setup_cpu() {
  local p t=0
  for p in "${RUN_PIDS[@]}"; do
    t=$(awk -v a="$t" -v b="$(cpu_seconds "$p")" 'BEGIN { printf "%.2f\n", a + b }')
  done
  echo "$t"
}

# parse_perfdhcp LOG: "DISCOVERS OFFERS REQUESTS ACKS"
parse_perfdhcp() {
  awk '
    /Statistics for: DISCOVER-OFFER/ { s = "do" }
    /Statistics for: REQUEST-ACK/ { s = "ra" }
    /^sent packets:/ { sent[s] = $3 }
    /^received packets:/ { recv[s] = $3 }
    END { printf "%d %d %d %d\n", sent["do"], recv["do"], sent["ra"], recv["ra"] }' "$1"
}

# ---- throughput ---------------------------------------------------------------------------

# raw: setup rep rate discovers offers requests acks leases_s drop_pct cpu_s ready_s
raw=$work/raw.tsv
: >"$raw"
round=0
for rep in $(seq "$REPEATS"); do
  order=$SETUPS
  if [ $((round % 2)) = 1 ]; then order=$(echo "$SETUPS" | tr ' ' '\n' | tac | tr '\n' ' '); fi
  round=$((round + 1))
  for s in $order; do
    [ -n "${failed[$s]:-}" ] && continue
    dir=$work/$s-$rep
    mkdir -p "$dir"
    log "$s (pass $rep/$REPEATS): starting"
    if ! start_setup "$s" "$dir"; then
      failed[$s]=$WHY
      log "$s: $WHY"
      stop_setup
      continue
    fi
    log "$s: every server answered after $READY_S s"
    step=0
    for rate in $RATES; do
      step=$((step + 1))
      base=$(printf '02:%02x:%02x:00:00:00' "$rep" "$step")
      cpu0=$(setup_cpu)
      rc=0
      timeout $((PERIOD + 60)) ip netns exec "$NS_C" perfdhcp -4 -l eth0 -r "$rate" \
        -R "$CLIENTS" -b "mac=$base" -p "$PERIOD" -W 1000000 >"$dir/perfdhcp-$rate.log" 2>&1 || rc=$?
      cpu=$(awk -v a="$(setup_cpu)" -v b="$cpu0" 'BEGIN { printf "%.2f\n", a - b }')
      if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
        die "perfdhcp failed (exit $rc): $(tail -3 "$dir/perfdhcp-$rate.log")"
      fi
      read -r d o r a < <(parse_perfdhcp "$dir/perfdhcp-$rate.log")
      for p in "${RUN_PIDS[@]}"; do
        alive "$p" || failed[$s]="a server exited during the run at $rate/s"
      done
      awk -v s="$s" -v rep="$rep" -v rate="$rate" -v p="$PERIOD" -v d="$d" -v o="$o" -v r="$r" \
        -v a="$a" -v cpu="$cpu" -v ready="$READY_S" 'BEGIN {
          printf "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.2f\t%s\t%s\n", s, rep, rate, d, o, r, a,
            a / p, (d > 0 ? 100 * (d - a) / d : 100), cpu, ready }' >>"$raw"
      log "$s @ $rate/s: $(tail -1 "$raw" | cut -f8) leases/s, $(tail -1 "$raw" | cut -f9)% dropped, $cpu CPU s"
      [ -n "${failed[$s]:-}" ] && break
    done
    stop_setup
    rm -rf "$dir"/m*/state "$dir"/m*/leases4.csv* # keep the logs only
  done
done

# ---- failover -----------------------------------------------------------------------------

# fail: setup kill_ms orphans first_orphan_ack_ms worst_wait_ms lost clients acks_after
# addresses_acked_to_two_clients
fail=$work/failover.tsv
: >"$fail"
# failover NAME SETUP VICTIM SECONDS [KEA_TIMING]: a fresh SETUP, dhcpprobe's client stream
# for SECONDS, SIGKILL to server VICTIM (1-based) at F_KILL s.
failover() {
  local name=$1 dir=$work/failover-$1 victim=$3 secs=$4 probe kill_ms start_ms
  mkdir -p "$dir"
  log "failover $name: starting"
  if ! start_setup "$2" "$dir" "${5:-}"; then
    failed[failover-$name]=$WHY
    log "failover $name: $WHY"
    stop_setup
    return
  fi
  ip netns exec "$NS_C" "$work/dhcpprobe" eth0 "$GIADDR" "$F_RATE" "$secs" 0f0f \
    >"$dir/probe.log" 2>&1 &
  probe=$!
  BENCH_PIDS+=("$probe")
  sleep "$F_KILL"
  kill_ms=$(date +%s%3N)
  kill -KILL "${RUN_PIDS[$((victim - 1))]}"
  { wait "${RUN_PIDS[$((victim - 1))]}" || true; } 2>/dev/null # (and no "Killed" line)
  log "failover $name: killed server $victim (PID ${RUN_PIDS[$((victim - 1))]})"
  wait "$probe" || true
  stop_setup
  start_ms=$(awk '$1 == "start" { print $2 }' "$dir/probe.log")
  # A client is an orphan when it was waiting at the kill or started after it, and its ACK
  # came over 1 s after max(its first try, the kill): its server was the dead one.
  awk -v name="$name" -v k=$((kill_ms - start_ms)) '
    $1 == "ack" { if (($7 in holder) && holder[$7] != $2) dup++; holder[$7] = $2 }
    $1 == "ack" || $1 == "lost" {
      n++
      f = $3 + 0; from = (f > k ? f : k)
      if ($1 == "lost") { lost++; next }
      a = $4 + 0
      if (a < k) next
      after++
      w = a - from
      if (w > worst) worst = w
      if (w > 1000) { orphans++; if (first == "" || a < first) first = a }
    }
    END {
      printf "%s\t%d\t%d\t%s\t%.0f\t%d\t%d\t%d\t%d\n", name, k, orphans,
        (first == "" ? "-" : sprintf("%.0f", first - k)), worst, lost, n, after, dup
    }' "$dir/probe.log" >>"$fail"
  log "failover $name: $(tail -1 "$fail")"
}
for f in $FAILOVER; do
  case "$f" in
    drover) failover drover drover-3 2 $((F_KILL + F_AFTER)) ;;
    kea)
      for t in $KEA_TIMINGS; do
        # Long enough for Kea's max-response-delay to run out, then F_AFTER s.
        read -r _ mr _ _ <<<"${KEA_TIMING[$t]}"
        failover "kea-$t" kea-ha 2 $((F_KILL + mr / 1000 + F_AFTER)) "$t"
      done
      ;;
  esac
done

# ---- report -------------------------------------------------------------------------------

label() {
  case "$1" in
    drover-1) echo "drover, 1 member" ;;
    drover-2) echo "drover pool, 2 members" ;;
    drover-3) echo "drover pool, 3 members" ;;
    kea-ha) echo "Kea HA pair (load-balancing)" ;;
    drover) echo "drover pool of 3, member 2 killed" ;;
    kea-*) echo "Kea HA pair, server2 killed, ${1#kea-} failure detection (${KEA_TIMING[${1#kea-}]// /\/} ms/ms/ms/clients)" ;;
  esac
}

# agg: setup rate median_leases_s median_drop leases_s_each median_cpu_ms_per_lease
agg=$work/agg.tsv
sort -t$'\t' -k1,1 -k3,3n -k2,2n "$raw" | awk -F'\t' '
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
    k = $1 "\t" $3
    if (k != key) { flush(); key = k; ls = dp = lsl = cpul = "" }
    ls = ls " " $8; dp = dp " " $9; lsl = lsl (lsl == "" ? "" : ", ") $8
    if ($7 > 0) cpul = cpul " " 1000 * $10 / $7
  }
  END { flush() }' >"$agg"

TOP=$(echo "$RATES" | tr ' ' '\n' | sort -n | tail -1)
# summary SETUP: "SUSTAINED_RATE LEASES_AT_IT PEAK BOUND" (as in dhcp.sh)
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
# cpu_at SETUP RATE: median CPU ms per lease at RATE.
cpu_at() {
  awk -F'\t' -v s="$1" -v r="$2" '$1 == s && $2 == r { c = $6 } END { print (c == "" ? "-" : c) }' "$agg"
}
LOW=$(echo "$RATES" | tr ' ' '\n' | sort -n | head -1)

{
  echo "### DHCPv4 across servers: leases/s of a drover pool of 1, 2, 3 members and of a Kea HA pair"
  echo
  echo "perfdhcp $(perfdhcp -v 2>&1 | awk '{print $2}'), Kea $(kea-dhcp4 -v 2>/dev/null || echo '-')," \
    "$REPEATS passes (setups in alternating order), ${PERIOD} s per step, $CLIENTS simulated" \
    "clients per step (a new MAC base at every step), drop time 1 s; every setup starts from" \
    "empty stores and serves only once each of its servers has handed out a lease. All" \
    "servers, perfdhcp and the machine's other work share its $(nproc) cores."
  echo "Machine during the run: $(machine_line)."
  echo
  echo "| setup | ready after (s, each pass) | sustained offered rate (≤ ${MAX_DROP}% drops) | leases/s there | peak leases/s | CPU ms per lease at $LOW/s (all servers) |"
  echo "|---|---|---:|---:|---:|---:|"
  for s in $SETUPS; do
    if ! grep -q "^$s"$'\t' "$raw"; then
      echo "| $(label "$s") | failed: ${failed[$s]//|/\\|} | | | | |"
      continue
    fi
    ready=$(awk -F'\t' -v s="$s" '$1 == s && !seen[$2]++ { l = l (l == "" ? "" : ", ") $11 } END { print l }' "$raw")
    read -r sr sl pk bd < <(summary "$s")
    echo "| $(label "$s") | $ready | $(mark "$bd" "$sr") | $(mark "$bd" "$sl") | $(mark "$bd" "$pk") | $(cpu_at "$s" "$LOW") |"
  done
  echo
  read -r _ k_l k_p k_b < <(summary kea-ha)
  line=""
  for n in 1 2 3; do
    read -r _ d_l d_p d_b < <(summary "drover-$n")
    line="$line${line:+; }$n member$([ "$n" = 1 ] || echo s): sustained **$(bounded_ratio "$d_l" "$d_b" "$k_l" "$k_b")**, peak **$(bounded_ratio "$d_p" "$d_b" "$k_p" "$k_b")**, CPU per lease at $LOW/s $(ratio "$(cpu_at "drover-$n" "$LOW")" "$(cpu_at kea-ha "$LOW")")"
  done
  echo "**Ratio drover / Kea HA pair** (leases/s; CPU per lease: below 1 is drover cheaper): $line."
  for s in $SETUPS; do
    if [ -n "${failed[$s]:-}" ] && grep -q "^$s"$'\t' "$raw"; then
      echo
      echo "$(label "$s") was given up: ${failed[$s]}"
    fi
  done
  echo
  echo "Per step, medians of $REPEATS passes (CPU: user + system time of all the setup's server" \
    "processes per completed exchange):"
  echo
  echo "| offered/s | setup | leases/s (median) | leases/s of each pass | drops % (median) | CPU ms / lease |"
  echo "|---:|---|---:|---|---:|---:|"
  sort -t$'\t' -k2,2n -k1,1 "$agg" | while IFS=$'\t' read -r s rt ls dp each cpu; do
    echo "| $rt | $(label "$s") | $ls | $each | $dp | $cpu |"
  done
  echo
  echo "<details><summary>Every run: perfdhcp's counters</summary>"
  echo
  echo "| pass | offered/s | setup | DISCOVER sent | OFFER recv | REQUEST sent | ACK recv | leases/s | drops % | server CPU s |"
  echo "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  sort -t$'\t' -k2,2n -k3,3n -k1,1 "$raw" |
    while IFS=$'\t' read -r s rep rt d o r a ls dp cpu _; do
      echo "| $rep | $rt | $(label "$s") | $d | $o | $r | $a | $ls | $dp | $cpu |"
    done
  echo
  echo "</details>"
  echo
  if [ -n "$FAILOVER" ]; then
    echo "### Failover: from a server's death to its clients' first answer"
    echo
    echo "bench/dhcpprobe.c: $F_RATE new clients per second (each a new MAC asking for a new" \
      "lease: DISCOVER, REQUEST; retried every 250 ms, secs field counting), SIGKILL to one" \
      "server $F_KILL s in, clients for $F_AFTER s more (Kea: plus its max-response-delay). *Orphans*: clients waiting at the kill or started" \
      "after it whose ACK came over 1 s after that (their server was the dead one)." \
      "*First orphan answered*: from the kill to the first ACK an orphan got (from a" \
      "survivor). *Longest wait*: the longest any client waited after the kill." \
      "*Addresses ACKed twice*: addresses that two different clients of the run were given."
    echo
    echo "| setup | orphans | first orphan answered after (ms) | longest wait (ms) | clients | never answered | addresses ACKed twice |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for f in $FAILOVER; do
      names=$f
      [ "$f" = kea ] && names=$(for t in $KEA_TIMINGS; do printf 'kea-%s ' "$t"; done)
      for n in $names; do
        if [ -n "${failed[failover-$n]:-}" ]; then
          echo "| $(label "$n") | failed: ${failed[failover-$n]//|/\\|} | | | | | |"
          continue
        fi
        awk -F'\t' -v n="$n" -v l="$(label "$n")" '$1 == n {
          printf "| %s | %d | %s | %s | %d | %d | %d |\n", l, $3, $4, $5, $7, $6, $9 }' "$fail"
      done
    done
    echo
  fi
} >"$out"

if [ -n "${BENCH_SUMMARY:-}" ]; then
  fo=""
  while IFS=$'\t' read -r n _ _ first worst _ _ _ dup; do
    fo="$fo${fo:+; }$n $first ms (longest wait $worst ms, addresses ACKed twice: $dup)"
  done <"$fail"
  echo "- Pool, DHCP leases/s, drover / Kea HA pair: $line. Failover, kill to first answer for the dead server's clients: ${fo:-not run}" >>"$BENCH_SUMMARY"
fi

[ ${#failed[@]} = 0 ]
