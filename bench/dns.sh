#!/usr/bin/env bash
# DNS queries per second, drover against dnsmasq, unbound and Knot DNS serving the same
# 10,000-host zone (A records and their PTRs), measured with dnsperf in two network
# namespaces joined by a veth:
#
#   drvbench-dns-s  drvb-dns-s  198.18.0.1/16   the server (one at a time), pinned to CPU 1
#   drvbench-dns-c  drvb-dns-c  198.18.0.2/16   dnsperf, pinned to CPU 0
#
# The zone: HOSTS nodes node00001.bench.test ... with addresses 198.18.16.1 onwards (250 per
# /24), the same data in each server's own form: drover's store (`node import` of a CSV, one
# network with domain bench.test), a dnsmasq hosts file (--addn-hosts, with --local for both
# zones so that misses are NXDOMAIN and nothing is forwarded), unbound local-data /
# local-data-ptr in static local zones, and Knot zone files for bench.test and
# 18.198.in-addr.arpa. No server forwards anything (no upstream: the namespaces have no route
# out). Before its first run, each server must give the right answer to one A, one PTR and one
# NXDOMAIN query (dig), else it is given up.
#
# Queries: a fixed file of 100,000 queries drawn (fixed seed) from the mix MIX = "A PTR NX"
# percentages (default 60 25 15): A of a random node, PTR of a random node's address, A of a
# name under bench.test that does not exist (NXDOMAIN). dnsperf loops over the file for
# SECONDS seconds with OUTSTANDING queries in flight (throughput at saturation; UDP, no EDNS).
# Each server gets REPEATS runs, starting fresh each time, servers alternating order from pass
# to pass. Reported: median queries/s, lost %, mean latency, response codes, the server's user +
# system CPU time per answered query, and dnsperf's own CPU time (the client's ceiling: near
# SECONDS CPU seconds means dnsperf, not the server, was the limit).
#
# Usage: sudo bench/dns.sh [--out FILE]     (FILE: markdown results; default stdout)
# Environment: DNS_SECONDS (10), DNS_REPEATS (5), DNS_HOSTS (10000), DNS_OUTSTANDING (100),
# DNS_MIX ("60 25 15"), DNS_SERVERS ("drover dnsmasq unbound knot"), DROVER, BENCH_TMP,
# BENCH_SERVER_CPU (1), BENCH_CLIENT_CPU (0), BENCH_SUMMARY (a file to append summary lines to).
# Exit status: 0 when every server answered right, 1 otherwise (the results still get written).

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

out_arg "$@"

SECS=${DNS_SECONDS:-10}
REPEATS=${DNS_REPEATS:-5}
HOSTS=${DNS_HOSTS:-10000}
OUTSTANDING=${DNS_OUTSTANDING:-100}
MIX=${DNS_MIX:-60 25 15}
SERVERS=${DNS_SERVERS:-drover dnsmasq unbound knot}
DOMAIN=bench.test
REVERSE=18.198.in-addr.arpa
QUERIES=100000

NS_S=drvbench-dns-s
NS_C=drvbench-dns-c
IF_S=drvb-dns-s
IF_C=drvb-dns-c
ADDR=198.18.0.1

if [ "$HOSTS" -lt 1 ] || [ "$HOSTS" -gt 59750 ]; then die "DNS_HOSTS must be 1 to 59750"; fi
need_root
need_cmd dnsperf dnsperf
need_cmd dig bind9-dnsutils
need_cmd ip iproute2
need_cmd ss iproute2
need_cmd taskset util-linux
for s in $SERVERS; do
  case "$s" in
    dnsmasq) need_cmd dnsmasq dnsmasq-base ;;
    unbound) need_cmd unbound unbound ;;
    knot) need_cmd knotd knot ;;
    drover) ;;
    *) die "unknown server $s (known: drover dnsmasq unbound knot)" ;;
  esac
done

trap bench_cleanup EXIT
work='' # set by workdir
workdir work "${BENCH_TMP:-/var/tmp}"
chmod 0755 "$work"
ns_add "$NS_S"
ns_add "$NS_C"
veth_pair "$NS_S" "$IF_S" "$ADDR/16" "$NS_C" "$IF_C" 198.18.0.2/16

# ---- the zone, in every server's form --------------------------------------------------------

# host I: "NAME IP REVERSE-NAME" of node I (1-based).
log "writing the $HOSTS-host zone for each server and $QUERIES queries"
awk -v n="$HOSTS" -v d="$DOMAIN" 'BEGIN {
  for (i = 1; i <= n; i++) {
    c = 16 + int((i - 1) / 250); h = (i - 1) % 250 + 1
    printf "node%05d.%s 198.18.%d.%d %d.%d.18.198.in-addr.arpa\n", i, d, c, h, h, c
  }
}' >"$work/hosts.txt"

{
  echo "name,mac,ip,image,group"
  awk -F'[ .]' '{ printf "%s,02:00:00:00:%02x:%02x,%s.%s.%s.%s,,\n", $1, int(NR / 256), NR % 256, $4, $5, $6, $7 }' \
    "$work/hosts.txt"
} >"$work/nodes.csv"

awk '{ print $2, $1 }' "$work/hosts.txt" >"$work/dnsmasq.hosts"

{
  cat <<EOF
server:
  interface: $ADDR
  port: 53
  num-threads: 1
  so-reuseport: no
  module-config: "iterator"
  access-control: 198.18.0.0/15 allow
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: ""
  use-syslog: no
  logfile: ""
  do-daemonize: no
  verbosity: 0
  do-ip6: no
  local-zone: "$DOMAIN." static
  local-zone: "$REVERSE." static
EOF
  awk '{ printf "  local-data: \"%s. 3600 IN A %s\"\n  local-data-ptr: \"%s 3600 %s.\"\n", $1, $2, $2, $1 }' \
    "$work/hosts.txt"
  cat <<EOF
remote-control:
  control-enable: no
EOF
} >"$work/unbound.conf"

mkdir -p "$work/knot"
soa() { echo "\$ORIGIN $1."
  echo "\$TTL 3600"
  echo "@ SOA ns.$DOMAIN. hostmaster.$DOMAIN. 1 3600 600 86400 3600"
  echo "@ NS ns.$DOMAIN."; }
{
  soa "$DOMAIN"
  echo "ns A $ADDR"
  awk -v d=".$DOMAIN" '{ n = $1; sub(d "$", "", n); print n, "A", $2 }' "$work/hosts.txt"
} >"$work/knot/$DOMAIN.zone"
{
  soa "$REVERSE"
  awk '{ print $3 ".", "PTR", $1 "." }' "$work/hosts.txt"
} >"$work/knot/$REVERSE.zone"
cat >"$work/knot.conf" <<EOF
server:
  listen: $ADDR@53
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
  rundir: "$work/knot"
database:
  storage: "$work/knot/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$work/knot"
    semantic-checks: off
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: $DOMAIN
    file: $DOMAIN.zone
  - domain: $REVERSE
    file: $REVERSE.zone
EOF

# Authoritative only: no upstreams, nothing is forwarded.
drover_config "$work/drover.toml" dns "port = 53
upstreams = []"

# The queries: the mix, drawn with a fixed seed.
read -r pct_a pct_ptr pct_nx <<<"$MIX"
[ $((pct_a + pct_ptr + pct_nx)) = 100 ] || die "DNS_MIX must add up to 100: $MIX"
awk -v q="$QUERIES" -v a="$pct_a" -v p="$pct_ptr" -v n="$HOSTS" -v d="$DOMAIN" '
  { name[NR] = $1; rev[NR] = $3 }
  END {
    srand(1)
    for (i = 0; i < q; i++) {
      r = rand() * 100; k = int(rand() * n) + 1
      if (r < a) print name[k], "A"
      else if (r < a + p) print rev[k], "PTR"
      else printf "nohost%05d.%s A\n", k, d
    }
  }' "$work/hosts.txt" >"$work/queries.txt"

# ---- servers -----------------------------------------------------------------------------------

declare -A failed=() # server -> why it was given up
drover_snapshot "$work/bin"

# start_server SERVER DIR: starts SERVER on ADDR:53 (pinned to SERVER_CPU), fresh, logs in
# DIR; sets BG_PID, or fails with the reason in WHY.
start_server() {
  local srv=$1 dir=$2
  case "$srv" in
    dnsmasq)
      start_bg "$dir/server.log" ip netns exec "$NS_S" "${SERVER_PIN[@]}" dnsmasq \
        --no-daemon --conf-file=/dev/null --port=53 --interface="$IF_S" --bind-interfaces \
        --no-resolv --no-hosts --addn-hosts="$work/dnsmasq.hosts" --local="/$DOMAIN/" \
        --local="/$REVERSE/" --pid-file= --user=root --group=root
      ;;
    unbound)
      start_bg "$dir/server.log" ip netns exec "$NS_S" "${SERVER_PIN[@]}" unbound -d \
        -c "$work/unbound.conf"
      ;;
    knot)
      rm -rf "$work/knot/db"
      start_bg "$dir/server.log" ip netns exec "$NS_S" "${SERVER_PIN[@]}" knotd \
        -c "$work/knot.conf"
      ;;
    drover)
      if [ -n "$drover" ] && ! { "$drover" --state-dir "$dir/state" network add bench \
        --subnet 198.18.0.0/16 --domain "$DOMAIN" &&
        "$drover" --state-dir "$dir/state" node import "$work/nodes.csv"; } >"$dir/setup.log" 2>&1; then
        WHY="store setup failed: $(tail -1 "$dir/setup.log")"
        return 1
      fi
      start_drover "$NS_S" "$IF_S" "$dir" "$work/drover.toml" pinned || return 1
      ;;
  esac
  await_udp "$NS_S" 53 "$BG_PID" 30 "$dir/server.log"
}

# ask ARGS...: dig from the client namespace; prints "STATUS ANSWER..." (answers' data).
ask() {
  ip netns exec "$NS_C" dig +tries=2 +time=2 +noall +comments +answer @"$ADDR" "$@" 2>&1 |
    awk '/status:/ { s = $6; sub(",", "", s) } /^[^;]/ && NF >= 5 { a = a " " $5 }
      END { print (s == "" ? "NO-ANSWER" : s) a }'
}

# verify: the running server answers one A, one PTR and one NXDOMAIN query right; else WHY.
verify() {
  local mid got
  mid=$(((HOSTS + 1) / 2))
  read -r name ip rev < <(sed -n "${mid}p" "$work/hosts.txt")
  got=$(ask "$name" A)
  [ "$got" = "NOERROR $ip" ] || { WHY="A $name: got '$got', want 'NOERROR $ip'"; return 1; }
  got=$(ask "$rev" PTR)
  [ "$got" = "NOERROR $name." ] || { WHY="PTR $rev: got '$got', want 'NOERROR $name.'"; return 1; }
  got=$(ask "nohost00001.$DOMAIN" A)
  [ "${got%% *}" = NXDOMAIN ] || { WHY="A nohost00001.$DOMAIN: got '$got', want NXDOMAIN"; return 1; }
}

# parse_dnsperf LOG: "SENT COMPLETED LOST_PCT QPS AVG_LATENCY_MS NOERROR NXDOMAIN OTHER
# AVG_RESPONSE_BYTES"
parse_dnsperf() {
  awk '
    /Queries sent:/ { sent = $3 }
    /Queries completed:/ { done = $3 }
    /Queries lost:/ { lost = $3 }
    /Queries per second:/ { qps = $4 }
    /Average Latency/ { lat = $4 * 1000 }
    /Average packet size:/ { size = $7 }
    /Response codes:/ {
      sub(/.*Response codes: */, "")
      n = split($0, f, /, */)
      for (i = 1; i <= n; i++) { split(f[i], w, " "); if (w[1] == "NOERROR") ne = w[2]; else if (w[1] == "NXDOMAIN") nx = w[2]; else other += w[2] }
    }
    END {
      printf "%d %d %.2f %.1f %.3f %d %d %d %d\n", sent, done, (sent ? 100 * lost / sent : 100),
        qps, lat, ne, nx, other, size
    }' "$1"
}

# raw: server rep sent completed lost_pct qps latency_ms noerror nxdomain other server_cpu_s client_cpu_s
# response_bytes
raw=$work/raw.tsv
: >"$raw"
declare -A verified=()
for rep in $(seq "$REPEATS"); do
  for srv in $(alternate_order $((rep - 1))); do
    [ -n "${failed[$srv]:-}" ] && continue
    dir="$work/$srv-$rep"
    fresh_server "$srv" "$dir" || continue
    pid=$BG_PID
    if [ -z "${verified[$srv]:-}" ]; then
      if ! verify; then
        failed[$srv]="wrong answer: $WHY"
        log "$srv: ${failed[$srv]}"
        stop_pid "$pid"
        continue
      fi
      verified[$srv]=1
    fi
    log "$srv (pass $rep/$REPEATS): dnsperf for ${SECS}s, $OUTSTANDING outstanding"
    cpu0=$(cpu_seconds "$pid")
    rc=0
    timed "$dir/client-cpu" timeout $((SECS + 30)) ip netns exec "$NS_C" \
      "${CLIENT_PIN[@]}" dnsperf -s "$ADDR" -d "$work/queries.txt" -l "$SECS" \
      -q "$OUTSTANDING" -t 2 >"$dir/dnsperf.log" 2>&1 || rc=$?
    server_alive=1
    alive "$pid" || server_alive=0
    cpu=$(awk -v a="$(cpu_seconds "$pid")" -v b="$cpu0" 'BEGIN { printf "%.2f\n", a - b }')
    stop_pid "$pid"
    [ "$rc" = 0 ] || die "dnsperf failed (exit $rc): $(tail -3 "$dir/dnsperf.log")"
    read -r sent completed lost qps lat ne nx other size < <(parse_dnsperf "$dir/dnsperf.log")
    printf '%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\n' "$srv" "$rep" "$sent" "$completed" \
      "$lost" "$qps" "$lat" "$ne" "$nx" "$other" "$cpu" "$(cat "$dir/client-cpu")" "$size" >>"$raw"
    if [ "$server_alive" = 0 ]; then
      failed[$srv]="exited during pass $rep: $(tail -1 "$dir/server.log")"
      log "$srv: ${failed[$srv]}"
    fi
    log "$srv: $qps queries/s, $lost% lost, server $cpu CPU s, dnsperf $(cat "$dir/client-cpu") CPU s"
  done
done

# ---- report ----------------------------------------------------------------------------------

# col SERVER N: the values of column N of SERVER's runs.
col() { awk -F'\t' -v s="$1" -v c="$2" '$1 == s { print $c }' "$raw"; }

# stat SERVER: "QPS LOST_PCT LATENCY_MS SERVER_CPU_US_PER_QUERY CLIENT_CPU_S" (medians).
stat() {
  local cpuq
  cpuq=$(awk -F'\t' -v s="$1" '$1 == s && $4 > 0 { printf "%.2f\n", 1e6 * $11 / $4 }' "$raw")
  # Word splitting of the lists is intended: one value per line.
  # shellcheck disable=SC2046,SC2086
  echo "$(median_of $(col "$1" 6)) $(median_of $(col "$1" 5)) $(median_of $(col "$1" 7))" \
    "$(median_of $cpuq) $(median_of $(col "$1" 12))"
}

label() {
  case "$1" in
    drover) echo "drover" ;;
    dnsmasq) echo "dnsmasq $(dnsmasq --version | awk 'NR == 1 { print $3 }')" ;;
    unbound) echo "unbound $(unbound -V 2>/dev/null | awk '/^Version/ { print $2 }')" ;;
    knot) echo "Knot DNS $(knotd -V 2>/dev/null | awk '{ print $NF }')" ;;
  esac
}

peers=()
for s in $SERVERS; do [ "$s" != drover ] && peers+=("$s"); done
read -r dq _ _ dc _ < <(stat drover)

{
  echo "### DNS: queries per second (dnsperf, UDP, authoritative data only)"
  echo
  echo "dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ { print $2 }'), $REPEATS runs per server of" \
    "${SECS} s, $OUTSTANDING queries outstanding, a $HOSTS-host zone" \
    "(A + PTR); query mix: $pct_a % A of existing hosts, $pct_ptr % PTR of their addresses," \
    "$pct_nx % A of missing names in the zone (NXDOMAIN); $(pinning_line); medians over the runs."
  echo "Machine during the run: $(machine_line)."
  echo
  echo "| server | queries/s | queries/s of each run | drover / server | lost % | mean latency ms | server CPU µs / query | dnsperf CPU s per ${SECS} s run |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|"
  for s in $SERVERS; do
    if ! grep -q "^$s"$'\t' "$raw"; then
      echo "| $(label "$s") | failed: ${failed[$s]//|/\\|} | | | | | | |"
      continue
    fi
    read -r q l lat c cc < <(stat "$s")
    r=$(ratio "$dq" "$q")
    [ "$s" = drover ] && r=1
    # shellcheck disable=SC2046 # one value per line
    echo "| $(label "$s") | $q | $(each_of $(col "$s" 6)) | **$r** | $l | $lat | $c | $cc |"
  done
  echo
  line=""
  for p in "${peers[@]}"; do
    read -r q _ _ c _ < <(stat "$p")
    line="$line${line:+; }$(label "$p") **$(ratio "$dq" "$q")** (CPU per query $(ratio "$dc" "$c"))"
  done
  echo "**Ratio drover / peer** (queries/s; CPU time per query, below 1: drover cheaper): $line."
  if [ -n "${BENCH_SUMMARY:-}" ]; then
    echo "- DNS, drover / peer, queries/s (CPU per query): $line; drover $dq queries/s" \
      "($dc µs CPU per query)" >>"$BENCH_SUMMARY"
  fi
  for s in $SERVERS; do
    if [ -n "${failed[$s]:-}" ] && grep -q "^$s"$'\t' "$raw"; then
      echo
      echo "$(label "$s") was given up: ${failed[$s]}"
    fi
  done
  echo
  echo "<details><summary>Every run (response codes as dnsperf counted them)</summary>"
  echo
  echo "| pass | server | sent | completed | lost % | queries/s | mean latency ms | NOERROR | NXDOMAIN | other | mean response bytes | server CPU s | dnsperf CPU s |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  sort -t$'\t' -k2,2n -k1,1 "$raw" |
    while IFS=$'\t' read -r s rep sent completed lost qps lat ne nx other cpu ccpu size; do
      echo "| $rep | $(label "$s") | $sent | $completed | $lost | $qps | $lat | $ne | $nx | $other | $size | $cpu | $ccpu |"
    done
  echo
  echo "</details>"
  echo
} >"$out"

[ ${#failed[@]} = 0 ]
