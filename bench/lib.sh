# shellcheck shell=bash
# Helpers shared by bench/dhcp.sh, tftp.sh, dns.sh, ntp.sh and nfs.sh: network namespaces, processes
# tracked by PID, the drover binary, CPU pinning and accounting, logging. Sourced, not run.
#
# Everything a script creates is registered here and torn down by `bench_cleanup` (an EXIT
# trap): the processes it started (by PID, with their direct children, which is how in.tftpd
# forks its transfers), the namespaces it added (all named `drvbench-*`) and its temporary
# directories. Traffic stays inside those namespaces, on 198.18.0.0/15.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

BENCH_PIDS=()
BENCH_NETNS=()
BENCH_DIRS=()

log() { echo "[$(date -u +%H:%M:%S)] $(basename "$0"): $*" >&2; }
die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

need_root() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces): sudo bench/run"
}

# lab_bench TEST_BINARY TEST ROUNDS: runs the ignored lab test TEST of qemu-tests/ (it holds
# the QEMU harness) as a bench, DROVER_BENCH_ROUNDS=ROUNDS, its table on stdout.
lab_bench() {
  need_root
  # shellcheck source=../scripts/rust-env.sh
  . "$REPO_DIR/scripts/rust-env.sh"
  cd "$REPO_DIR"
  DROVER_BENCH_ROUNDS=$3 exec cargo test --release --quiet --test "$1" -- \
    --ignored --exact "$2" --nocapture --test-threads 1
}

# need_cmd CMD PACKAGE: fails with the Debian package to install.
need_cmd() {
  command -v "$1" >/dev/null ||
    die "$1 not found: apt-get install $2 (or sudo scripts/setup)"
}

# The drover binary: $DROVER, else the release build of the host target, else target/release.
drover_bin() {
  local c
  for c in "${DROVER:-}" \
    "$REPO_DIR/target/x86_64-unknown-linux-gnu/release/drover" \
    "$REPO_DIR/target/release/drover"; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

# snapshot_drover DIR: copies the drover binary into DIR and prints the copy's path, so that
# a rebuild during the run (other people share this tree) cannot swap it mid-benchmark.
snapshot_drover() {
  local src
  src=$(drover_bin) || return 1
  mkdir -p "$1"
  cp "$src" "$1/drover"
  echo "$1/drover"
}

# drover_config FILE SERVICE [TOML]: a drover config with every service but SERVICE turned
# off (a benchmark measures one service alone), then TOML: SERVICE's own keys.
drover_config() {
  local s
  {
    echo "# Only $2: the services not benchmarked are off."
    for s in dhcp tftp http ra dns ntp; do
      [ "$s" = "$2" ] || printf '[%s]\nenabled = false\n' "$s"
    done
    printf '[%s]\n%s\n' "$2" "${3:-}"
  } >"$1"
}

# drover_snapshot DIR: drover = snapshot_drover DIR when $SERVERS names drover and a binary is
# found; else empty (start_server then gives drover up with the reason).
drover_snapshot() {
  drover=
  if [[ " $SERVERS " == *" drover "* ]]; then
    # shellcheck disable=SC2034 # the calling script's
    drover=$(snapshot_drover "$1") || drover=
  fi
}

# start_drover NS IFACE DIR CONFIG [pinned]: `$drover serve` on IFACE in namespace NS with its
# state in DIR/state and output in DIR/server.log, with SERVER_PIN when asked; sets BG_PID, or
# WHY and fails when there is no binary.
start_drover() {
  local pin=()
  if [ -z "${drover:-}" ]; then
    WHY="no drover binary (cargo build --release, or set DROVER)"
    return 1
  fi
  [ "${5:-}" = pinned ] && pin=("${SERVER_PIN[@]}")
  start_bg "$3/server.log" ip netns exec "$1" "${pin[@]}" "$drover" --state-dir "$3/state" \
    serve --interface "$2" --config "$4"
}

# workdir VAR BASE: VAR = a fresh temporary directory under BASE, removed at exit. (Not a
# command substitution: the registration must happen in this shell.)
workdir() {
  local d
  d=$(mktemp -d "$2/drvbench.XXXXXX")
  BENCH_DIRS+=("$d")
  printf -v "$1" '%s' "$d"
}

# ns_add NAME: a fresh namespace with loopback up. A stale one of ours (same name, left by a
# killed run) is deleted first.
ns_add() {
  case "$1" in drvbench-*) ;; *) die "namespace $1: ours are named drvbench-*" ;; esac
  if ip netns list | grep -qw "^$1"; then
    ip netns del "$1"
  fi
  ip netns add "$1"
  BENCH_NETNS+=("$1")
  ip -n "$1" link set lo up
}

# veth_pair NS_A IF_A ADDR_A NS_B IF_B ADDR_B: a veth between two namespaces, addressed, up.
veth_pair() {
  local nsa=$1 ifa=$2 addra=$3 nsb=$4 ifb=$5 addrb=$6
  ip link add "$ifa" type veth peer name "$ifb"
  ip link set "$ifa" netns "$nsa"
  ip link set "$ifb" netns "$nsb"
  ip -n "$nsa" addr add "$addra" dev "$ifa"
  ip -n "$nsb" addr add "$addrb" dev "$ifb"
  ip -n "$nsa" link set "$ifa" up
  ip -n "$nsb" link set "$ifb" up
}

# start_bg LOG CMD...: starts CMD in the background with output to LOG; sets BG_PID.
# (`ip netns exec` execs its command, so the PID is the server's own.)
start_bg() {
  local out=$1
  shift
  "$@" >"$out" 2>&1 &
  BG_PID=$!
  BENCH_PIDS+=("$BG_PID")
}

alive() { kill -0 "$1" 2>/dev/null; }

# Two cores: the server under test on one, the load generator on the other, so that the
# generator does not steal the server's core. dns.sh and ntp.sh run their servers as
# `ip netns exec NS "${SERVER_PIN[@]}" SERVER...` and their clients with CLIENT_PIN (taskset,
# and nice with BENCH_NICE, exec their command: the PID stays the server's); dhcp.sh and
# tftp.sh do not pin. BENCH_NICE (e.g. -10) raises both sides above the machine's other work,
# for a shared machine whose builds would otherwise take the benchmark's cores.
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
SERVER_PIN=(taskset -c "$SERVER_CPU")
CLIENT_PIN=(taskset -c "$CLIENT_CPU")
if [ -n "${BENCH_NICE:-}" ]; then
  SERVER_PIN=(nice -n "$BENCH_NICE" "${SERVER_PIN[@]}")
  CLIENT_PIN=(nice -n "$BENCH_NICE" "${CLIENT_PIN[@]}")
fi

# pinning_line: how the servers and clients were placed, for the results.
pinning_line() {
  printf 'server pinned to CPU %s, client to CPU %s' "$SERVER_CPU" "$CLIENT_CPU"
  if [ -n "${BENCH_NICE:-}" ]; then printf ', both at nice %s' "$BENCH_NICE"; fi
}

# timed OUT CMD...: runs CMD (output as the caller redirects it) and writes its user + system
# CPU seconds (its own and its waited-for children's) to OUT. Returns CMD's status.
timed() {
  local out=$1 rc=0 TIMEFORMAT='%U %S'
  shift
  { time "$@" 2>&3 3>&-; } 3>&2 2>"$out.t" || rc=$?
  awk '{ printf "%.2f\n", $1 + $2 }' "$out.t" >"$out"
  rm -f "$out.t"
  return "$rc"
}

# cpu_seconds PID: user + system CPU seconds used so far by PID itself (all its threads).
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' \
    "/proc/$1/stat" 2>/dev/null || echo 0
}

# child_cpu_sampler PID OUT: until the file OUT.stop exists, samples every 20 ms the CPU
# time of PID's children (in.tftpd forks one per transfer and lets the kernel reap it, so the
# children's time never reaches its own cutime), then writes the sum of each child's last
# sample, in seconds, to OUT. Reads /proc with builtins only, to stay light; time a child
# uses in its last 20 ms is missed. Run it in the background; see stop_sampler.
child_cpu_sampler() {
  local pid=$1 out=$2 hz c line total=0 kids=() f=()
  local -A last=()
  hz=$(getconf CLK_TCK)
  while [ ! -e "$out.stop" ] && kill -0 $$ 2>/dev/null; do # $$: the script, if it dies
    kids=()
    # No newline at the end of this file: read fails but fills kids.
    read -ra kids 2>/dev/null <"/proc/$pid/task/$pid/children" || true
    for c in "${kids[@]}"; do
      if read -r line 2>/dev/null <"/proc/$c/stat"; then
        read -ra f <<<"${line##*) }"
        last[$c]=$((f[11] + f[12]))
      fi
    done
    sleep 0.02
  done
  for c in "${!last[@]}"; do
    total=$((total + last[$c]))
  done
  awk -v t="$total" -v hz="$hz" 'BEGIN { printf "%.2f\n", t / hz }' >"$out"
}

# stop_sampler VAR SAMPLER_PID OUT: stops a child_cpu_sampler; VAR = what it measured. (Not a
# command substitution: only this shell can wait for the sampler.)
stop_sampler() {
  local v
  touch "$3.stop"
  wait "$2" 2>/dev/null || true
  v=$(cat "$3" 2>/dev/null || echo 0)
  rm -f "$3" "$3.stop"
  printf -v "$1" '%s' "$v"
}

# stop_pid PID: SIGTERM to PID and its direct children, SIGKILL after 5 s, then reap.
stop_pid() {
  local pid=$1 kids i
  alive "$pid" || {
    wait "$pid" 2>/dev/null || true
    return 0
  }
  kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  for i in $kids; do
    kill -TERM "$i" 2>/dev/null || true
  done
  wait "$pid" 2>/dev/null || true
}

# wait_udp NS FILTER PID [SECONDS]: until a UDP socket matching the ss FILTER (e.g.
# "sport = :67") listens in NS. Fails if PID exits first or nothing listens in time.
wait_udp() {
  local ns=$1 filter=$2 pid=$3 secs=${4:-10} i
  for i in $(seq $((secs * 10))); do
    alive "$pid" || return 1
    if [ -n "$(ip netns exec "$ns" ss -Hlun "$filter" 2>/dev/null)" ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# out_arg ARGS...: the scripts' one option, `--out FILE` (their markdown results; default
# stdout). Sets out.
out_arg() {
  out=/dev/stdout
  while [ $# -gt 0 ]; do
    case "$1" in
      --out)
        out=$2
        shift 2
        ;;
      *) die "usage: $0 [--out FILE]" ;;
    esac
  done
}

# await_udp NS PORT PID SECONDS LOG: wait_udp for UDP PORT; on failure stops PID if it still
# runs and sets WHY to the reason, with LOG's last line.
await_udp() {
  local ns=$1 port=$2 pid=$3 secs=$4 rc=0
  wait_udp "$ns" "sport = :$port" "$pid" "$secs" && return 0
  if alive "$pid"; then
    stop_pid "$pid"
    WHY="did not listen on UDP $port within $secs s"
  else
    wait "$pid" || rc=$?
    WHY="exited (status $rc) before listening on UDP $port"
  fi
  WHY="$WHY; last log line: $(tail -1 "$5")"
  return 1
}

# alternate_order N: the words of $SERVERS, reversed when N is odd (the servers take turns at
# going first).
alternate_order() {
  if [ $(($1 % 2)) = 1 ]; then
    echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' '
  else
    echo "$SERVERS"
  fi
}

# fresh_server SERVER DIR: creates DIR and runs the script's own `start_server SERVER DIR`
# (which sets BG_PID, or WHY on failure); on failure records WHY in the script's failed[SERVER]
# and fails.
fresh_server() {
  mkdir -p "$2"
  start_server "$1" "$2" && return 0
  # shellcheck disable=SC2034 # the calling script's table
  failed[$1]=$WHY
  log "$1: $WHY"
  return 1
}

bench_cleanup() {
  local pid ns d
  set +e
  for pid in "${BENCH_PIDS[@]}"; do
    stop_pid "$pid"
  done
  for ns in "${BENCH_NETNS[@]}"; do
    ip netns del "$ns" 2>/dev/null
  done
  for d in "${BENCH_DIRS[@]}"; do
    if [ -n "${BENCH_KEEP:-}" ]; then
      echo "$(basename "$0"): kept $d (BENCH_KEEP)" >&2
    else
      rm -rf "$d"
    fi
  done
}

# udp_drops NS: UDP datagrams the kernel of namespace NS dropped so far because a socket's
# receive buffer was full (RcvbufErrors in /proc/net/snmp).
udp_drops() {
  # shellcheck disable=SC2016 # awk's own $
  ip netns exec "$1" awk '/^Udp:/ { if (!n++) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i } else print $c }' \
    /proc/net/snmp
}

# ratio A B: A/B to two decimals, or n/a (a missing side, or B = 0).
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "-" || b == "-" || a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'
}

# bounded_ratio A A_BOUND B B_BOUND: A/B to two decimals with "≥"/"≤" when one side is a lower
# bound (BOUND ">=": that server's capacity was not reached), "n/a" when both are.
bounded_ratio() {
  awk -v a="$1" -v ab="$2" -v b="$3" -v bb="$4" 'BEGIN {
    if (a == "-" || b == "-" || b + 0 == 0) { print "n/a"; exit }
    if (ab == ">=" && bb == ">=") { print "n/a (neither saturated)"; exit }
    p = (ab == ">=") ? "≥ " : (bb == ">=") ? "≤ " : ""
    printf "%s%.2f\n", p, a / b }'
}

# mark BOUND VALUE: VALUE, as "≥ VALUE" when BOUND is ">=" (a lower bound: capacity not reached).
mark() { [ "$1" = ">=" ] && [ "$2" != "-" ] && echo "≥ $2" || echo "$2"; }

# median_of VALUES...: the median of numbers ("-" when none).
median_of() {
  printf '%s\n' "$@" | awk '$1 != "-" && $1 != "" { v[n++] = $1 + 0 }
    END {
      if (n == 0) { print "-"; exit }
      for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
      printf (m == int(m) ? "%d\n" : "%.2f\n"), m
    }'
}

# each_of VALUES...: the values as a comma-separated list (the spread behind a median).
each_of() {
  local IFS=,
  local list="$*"
  echo "${list//,/, }"
}

# machine_line: one line naming the machine and its load, for the results.
machine_line() {
  printf 'nproc %s, kernel %s, load average %s' "$(nproc)" "$(uname -r)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
}
