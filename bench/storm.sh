#!/usr/bin/env bash
# Boot storm: NODES simulated nodes power on at once and boot through a drover pool of 1 or 3
# members. Each node is `drover agent simulate` (drover's own agent minus the kernel parts: DHCP
# as iPXE, the iPXE script, kernel and initramfs, the agent's own image download, boot
# events) in a network namespace of its own, with one veth into a bridge:
#
#   drvbench-storm-sw      bridge stbr: the segment (one port per member and per node)
#   drvbench-storm-m1..3   eth0 198.18.0.11..13/16   drover members (`pool init` / `pool join`)
#   drvbench-storm-nK      eth0 (MAC 52:54:5t:KK:KK:KK, address by DHCP)   simulated node K
#
# Links are shaped with HTB (one class per link and direction: the bridge port's egress is the
# link's download, the namespace side's egress its upload); there is no netem here, so time is
# not scaled: sizes and rates are. With --scale F the image is 1 GiB / F and every link runs at
# 1 Gbit/s / F, so a boot takes as long as a 1 GiB image on 1 Gbit/s links would (the report
# says so). The kernel and drover's initramfs are not scaled (the initramfs is the agent
# binary itself); the report gives their sizes.
#
# Output (markdown, --out FILE or stdout): nodes ready, time to the last node ready and the
# median (from the moment all nodes were started), bytes sent by the members (their eth0
# counters) and received by the nodes, errors (first lines), and duplicate addresses: the
# nodes' own reports and every lease in every member's store (must be zero).
#
# Usage: sudo bench/storm.sh NODES [--members 1|3] [--scale F] [--out FILE]
# Environment: DROVER (the binary; default the release build), STORM_TIMEOUT (s, 900: nodes
# not ready by then are counted as failed and stopped), STORM_KEEP=1 keeps the work dir.
# Bounds: NODES 1..1000. Cleans up only the namespaces, processes and files it made.

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() { die "usage: $0 NODES [--members 1|3] [--scale F] [--out FILE]"; }
[ $# -ge 1 ] || usage
NODES=$1
shift
MEMBERS=1
SCALE=32
out=/dev/stdout
while [ $# -gt 0 ]; do
  case "$1" in
    --members) MEMBERS=$2 && shift 2 ;;
    --scale) SCALE=$2 && shift 2 ;;
    --out) out=$2 && shift 2 ;;
    *) usage ;;
  esac
done
[[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 1 ] && [ "$NODES" -le 1000 ] ||
  die "NODES must be 1..1000"
[ "$MEMBERS" = 1 ] || [ "$MEMBERS" = 3 ] || die "--members must be 1 or 3"
[[ "$SCALE" =~ ^[0-9]+$ ]] && [ "$SCALE" -ge 1 ] && [ "$SCALE" -le 1024 ] ||
  die "--scale must be an integer 1..1024"
TIMEOUT=${STORM_TIMEOUT:-900}

need_root
need_cmd ip iproute2
need_cmd tc iproute2
need_cmd curl curl
trap bench_cleanup EXIT

# 1 GiB and 1 Gbit/s, divided by the scale.
IMAGE_BYTES=$((1024 * 1024 * 1024 / SCALE))
RATE_KBIT=$((1000000 / SCALE))
SW=drvbench-storm-sw
member_ns() { echo "drvbench-storm-m$1"; }
member_ip() { echo "198.18.0.1$1"; }
node_ns() { echo "drvbench-storm-n$1"; }
node_mac() { printf '52:54:5a:%02x:%02x:%02x' $(($1 >> 16)) $((($1 >> 8) & 255)) $(($1 & 255)); }

workdir work "${BENCH_TMP:-/var/tmp}"
[ -n "${STORM_KEEP:-}" ] && BENCH_KEEP=1
drover=$(snapshot_drover "$work") || die "no drover binary (cargo build --release, or DROVER)"
log "drover $drover, $NODES nodes, $MEMBERS member(s), scale 1/$SCALE (image $((IMAGE_BYTES >> 20)) MiB, links $RATE_KBIT kbit/s), work $work"

# shape NS DEV: one HTB class at the scaled link rate as DEV's root qdisc in NS.
shape() {
  echo "qdisc add dev $2 root handle 1: htb default 10"
  echo "class add dev $2 parent 1: classid 1:10 htb rate ${RATE_KBIT}kbit ceil ${RATE_KBIT}kbit quantum 60000"
}

# --- the segment -------------------------------------------------------------------------------
# A member has a neighbour entry per node (LAB.md: raise these for 1,000 clients). They exist
# only in the initial namespace; where this runs in another one, the defaults (1024) stay.
sysctl -qw net.ipv4.neigh.default.gc_thresh1=4096 net.ipv4.neigh.default.gc_thresh2=16384 \
  net.ipv4.neigh.default.gc_thresh3=32768 2>/dev/null || true
ns_add "$SW"
ip -n "$SW" link add stbr type bridge stp_state 0 forward_delay 0
ip -n "$SW" link set stbr up
t0=$(date +%s)
for i in $(seq "$NODES"); do ns_add "$(node_ns "$i")"; done
for i in $(seq "$MEMBERS"); do ns_add "$(member_ns "$i")"; done
{
  for i in $(seq "$MEMBERS"); do
    echo "link add stm$i netns $SW type veth peer name eth0 netns $(member_ns "$i")"
  done
  for i in $(seq "$NODES"); do
    echo "link add stn$i netns $SW type veth peer name eth0 netns $(node_ns "$i") address $(node_mac "$i")"
  done
} | ip -batch -
{
  for i in $(seq "$MEMBERS"); do
    echo "link set stm$i master stbr up"
  done
  for i in $(seq "$NODES"); do echo "link set stn$i master stbr up"; done
} | ip -n "$SW" -batch -
{
  for i in $(seq "$MEMBERS"); do shape "$SW" "stm$i"; done
  for i in $(seq "$NODES"); do shape "$SW" "stn$i"; done
} | tc -n "$SW" -batch -
for i in $(seq "$MEMBERS"); do
  ns=$(member_ns "$i")
  ip -n "$ns" addr add "$(member_ip "$i")/16" dev eth0
  ip -n "$ns" link set eth0 up
  shape "$ns" eth0 | tc -n "$ns" -batch -
done
for i in $(seq "$NODES"); do
  shape "$(node_ns "$i")" eth0 | tc -n "$(node_ns "$i")" -batch -
done
log "segment with $NODES node namespaces in $(($(date +%s) - t0)) s"

# --- the pool ---------------------------------------------------------------------------------
# The image: incompressible files, 1 GiB / SCALE in all; a small stand-in kernel.
mkdir -p "$work/rootfs/sbin" "$work/rootfs/data"
printf '#!/bin/sh\n' >"$work/rootfs/sbin/init"
chmod 755 "$work/rootfs/sbin/init"
files=$(((IMAGE_BYTES + (1 << 20) - 1) >> 20))
for f in $(seq "$files"); do
  head -c $((IMAGE_BYTES / files)) /dev/urandom >"$work/rootfs/data/f$f"
done
head -c $((8 * 1024 * 1024 / SCALE)) /dev/urandom >"$work/vmlinuz"
m1=$work/m1/state
mkdir -p "$work/m1"
{
  "$drover" --state-dir "$m1" pool init
  "$drover" --state-dir "$m1" network add storm --subnet 198.18.0.0/16 \
    --range 198.18.1.0-198.18.8.255
  "$drover" --state-dir "$m1" image add storm --kernel "$work/vmlinuz" --rootfs "$work/rootfs"
  {
    echo "name,mac,ip,image,group"
    for i in $(seq "$NODES"); do echo "n$i,$(node_mac "$i"),,storm,"; done
  } >"$work/nodes.csv"
  "$drover" --state-dir "$m1" node import "$work/nodes.csv"
} >"$work/m1/setup.log" 2>&1 || die "setting up member 1: $(tail -3 "$work/m1/setup.log")"
for i in $(seq 2 "$MEMBERS"); do
  mkdir -p "$work/m$i"
  "$drover" --state-dir "$work/m$i/state" pool join "$(member_ip 1)" \
    --key-file "$m1/cluster.key" >"$work/m$i/setup.log" 2>&1 ||
    die "member $i join: $(tail -1 "$work/m$i/setup.log")"
done
rm -rf "$work/rootfs"
printf '[ra]\nenabled = false\n' >"$work/drover.toml"
MEMBER_PIDS=()
for i in $(seq "$MEMBERS"); do
  start_bg "$work/m$i/server.log" ip netns exec "$(member_ns "$i")" "$drover" \
    --state-dir "$work/m$i/state" serve --interface eth0 --config "$work/drover.toml"
  MEMBER_PIDS+=("$BG_PID")
done
# Every member must own its DHCP address share before the storm: one that does not yet see
# the whole roster (and a majority of it) serves nobody, and a storm started then is one
# member's storm, whatever --members says.
if [ "$MEMBERS" -gt 1 ]; then
  for i in $(seq "$MEMBERS"); do
    deadline=$((SECONDS + 300))
    until [ "$("$drover" --state-dir "$work/m$i/state" pool status --json 2>/dev/null |
      python3 -c 'import json, sys
s = json.load(sys.stdin)
print(len(s.get("roster", [])) if s.get("majority") else 0)' 2>/dev/null)" = "$MEMBERS" ]; do
      alive "${MEMBER_PIDS[$((i - 1))]}" || die "member $i exited: $(tail -2 "$work/m$i/server.log")"
      [ "$SECONDS" -lt "$deadline" ] || die "member $i does not see a roster of $MEMBERS after 300 s"
      sleep 1
    done
  done
  log "every member owns a DHCP address share"
fi
# Every member must serve the whole image before the storm (the others pull it from member 1;
# a member that has the image's record but not yet all its chunks answers 500): a full GET
# from each, which must deliver the same byte count as member 1's.
rootfs_size=
for i in $(seq "$MEMBERS"); do
  deadline=$((SECONDS + 600))
  until size=$(ip netns exec "$(member_ns 1)" curl -sf -o /dev/null -w '%{size_download}' \
    "http://$(member_ip "$i")/images/storm/rootfs.tar" 2>/dev/null) &&
    [ "${rootfs_size:-$size}" = "$size" ] && [ "$size" -gt 0 ]; do
    alive "${MEMBER_PIDS[$((i - 1))]}" || die "member $i exited: $(tail -2 "$work/m$i/server.log")"
    [ "$SECONDS" -lt "$deadline" ] || die "member $i does not serve the whole image after 600 s"
    sleep 1
  done
  rootfs_size=$size
done
initramfs_size=$(ip netns exec "$(member_ns 1)" curl -sfI "http://$(member_ip 1)/images/storm/initramfs" |
  tr -d '\r' | awk 'tolower($1) == "content-length:" { print $2 }')
log "members up; rootfs.tar $rootfs_size bytes, initramfs $initramfs_size bytes"

tx_bytes() { ip netns exec "$(member_ns "$1")" cat /sys/class/net/eth0/statistics/tx_bytes; }
declare -A tx0
for i in $(seq "$MEMBERS"); do tx0[$i]=$(tx_bytes "$i"); done

# --- the storm --------------------------------------------------------------------------------
mkdir -p "$work/nodes"
start=$(date +%s.%N)
for i in $(seq "$NODES"); do
  (
    rc=0
    timeout -k 5 "$TIMEOUT" ip netns exec "$(node_ns "$i")" "$drover" agent simulate \
      --iface eth0 >"$work/nodes/$i.json" 2>"$work/nodes/$i.log" || rc=$?
    echo "$rc $(date +%s.%N)" >"$work/nodes/$i.end"
  ) &
  BENCH_PIDS+=("$!")
done
log "started $NODES nodes in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
for pid in "${BENCH_PIDS[@]: -$NODES}"; do wait "$pid" 2>/dev/null || true; done
log "all nodes done after $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"

# --- the report -------------------------------------------------------------------------------
ready=()
failed=0
errors=()
for i in $(seq "$NODES"); do
  read -r rc end <"$work/nodes/$i.end"
  if [ "$rc" = 0 ] && [ -s "$work/nodes/$i.json" ]; then
    ready+=("$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')")
  else
    failed=$((failed + 1))
    [ ${#errors[@]} -lt 5 ] && errors+=("n$i (status $rc): $(tail -1 "$work/nodes/$i.log")")
  fi
done
last=$(printf '%s\n' "${ready[@]}" | sort -g | tail -1)
median=$(median_of "${ready[@]}")
received=$(cat "$work"/nodes/*.json 2>/dev/null | tr -d '{}"' | tr ',' '\n' |
  awk -F: '$1 ~ /_bytes$/ { s += $2 } END { print s + 0 }')
sent=0
for i in $(seq "$MEMBERS"); do sent=$((sent + $(tx_bytes "$i") - tx0[$i])); done
short=$(cat "$work"/nodes/*.json 2>/dev/null | tr -d '{}"' | tr ',' '\n' |
  awk -F: -v want="$rootfs_size" '$1 == "image_bytes" && $2 != want { n++ } END { print n + 0 }')
dup_reports=$(cat "$work"/nodes/*.json 2>/dev/null | tr -d '{}"' | tr ',' '\n' |
  awk -F: '$1 == "ip" { print $2 }' | sort | uniq -d | wc -l)
# Each node's (MAC, address) from its own report, against every member's lease table: an
# address twice in a table, a MAC with two addresses, or a lease whose MAC is not the MAC of
# the node that reported the address all count as duplicates.
cat "$work"/nodes/*.json 2>/dev/null | tr -d '{}"' | tr ',' '\n' |
  awk -F: '$1 == "mac" { m = substr($0, 5) } $1 == "ip" { print $2, m }' >"$work/reported.txt"
dup_leases=0
lease_count=0
for i in $(seq "$MEMBERS"); do
  "$drover" --state-dir "$work/m$i/state" lease list >"$work/m$i/leases.txt" 2>&1 || true
  n=$(grep -cE '^198\.18\.' "$work/m$i/leases.txt" || true)
  [ "$n" -gt "$lease_count" ] && lease_count=$n
  d=$(awk 'NR == FNR { mac[$1] = $2; next }
    $1 ~ /^198\.18\./ {
      if (seen[$1]++) bad++
      if (ips[$2]++) bad++
      if (($1 in mac) && mac[$1] != $2) bad++
    }
    END { print bad + 0 }' "$work/reported.txt" "$work/m$i/leases.txt")
  dup_leases=$((dup_leases + d))
done
# The image phase alone (rootfs.tar, after kernel and initramfs), per node, in seconds.
image_s=$(cat "$work"/nodes/*.json 2>/dev/null | tr -d '{}"' | tr ',' '\n' |
  awk -F: '$1 == "files_ms" { f = $2 } $1 == "image_ms" { printf "%.2f\n", ($2 - f) / 1000 }')
for pid in "${MEMBER_PIDS[@]}"; do
  alive "$pid" || errors+=("a member died during the storm")
done

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
{
  echo "### Boot storm: $NODES node(s), $MEMBERS member(s), members-only HTTP, scale 1/$SCALE"
  echo
  echo "- Ran $(date -u '+%Y-%m-%d %H:%M UTC'); $(machine_line); drover $drover"
  echo "- Scale: image $(mib "$rootfs_size") (rootfs.tar) on $RATE_KBIT kbit/s links (nodes and members,"
  echo "  HTB per link and direction) behaves like $(awk -v b="$rootfs_size" -v f="$SCALE" 'BEGIN { printf "%.2f GiB", b * f / 1073741824 }') on 1 Gbit/s. Not scaled: kernel"
  echo "  $(mib $((8 * 1024 * 1024 / SCALE))) (stand-in), drover's initramfs $(mib "${initramfs_size:-0}") (the agent binary; at full scale it counts $SCALE times larger)."
  echo "- Nodes ready: ${#ready[@]} of $NODES; failed: $failed; image byte count wrong: $short"
  echo "- Time to last node ready: ${last:--} s; median: $median s (from the start of the storm;"
  echo "  starting the $NODES node processes took part of it)"
  # shellcheck disable=SC2086 # one number per line
  echo "- Image download alone (rootfs.tar, per node): median $(median_of $image_s) s, longest $(printf '%s\n' $image_s - | sort -g | tail -1) s"
  echo "- Bytes sent by the members (eth0): $(mib "$sent"); received by the nodes (script, kernel,"
  echo "  initramfs, image): $(mib "$received"); by peers: 0 (members-only)"
  echo "- Duplicate addresses: $dup_reports among the nodes' reports, $dup_leases in the members'"
  echo "  lease tables ($lease_count leases)"
  for e in "${errors[@]}"; do echo "- Error: $e"; done
  echo
} >>"$out"
[ "$failed" = 0 ] && [ "$dup_reports" = 0 ] && [ "$dup_leases" = 0 ] && [ "$short" = 0 ]
