#!/usr/bin/env bash
# Content-addressed image store: bytes stored for two versions of an image that differ by one
# Debian package, against two plain tarballs of the same trees, and the bytes a second pool
# member fetches for the new version. No root: both members run on loopback.
#
# The trees are made of real packages: `apt-get download` of BASE_PACKAGES (unpacked with
# dpkg-deb -x) for version 1, plus EXTRA_PACKAGE for version 2. Each version's rootfs tar is
# what drover packs from the tree; the initramfs drover builds (the agent binary) is the same
# blob for both versions and is reported apart.
#
# Also: `image import` of a tar against Warewulf-style unpacking (`tar -xf` into a directory)
# of the same tar, and, as root, `image build` against its bare bootstrap (BUILD=0 skips it).
#
# Usage: bench/images.sh [--out FILE]   (DROVER=path/to/drover; default: the release build)
set -euo pipefail

BASE_PACKAGES=${BASE_PACKAGES:-"coreutils bash grep sed tar gzip findutils util-linux \
  libc6 libssl3 openssh-client curl libcurl4 perl-base python3.11-minimal \
  libpython3.11-minimal systemd"}
EXTRA_PACKAGE=${EXTRA_PACKAGE:-vim-tiny}
out=/dev/stdout
[ "${1:-}" != --out ] || out=$2

repo=$(cd "$(dirname "$0")/.." && pwd)
drover=${DROVER:-$repo/target/x86_64-unknown-linux-gnu/release/drover}
[ -x "$drover" ] || { echo "no drover at $drover (cargo build --release, or DROVER=)" >&2; exit 1; }
for c in apt-get dpkg-deb tar curl; do
  command -v "$c" >/dev/null || { echo "$c missing: sudo scripts/setup" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/drover-bench-images.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "images: $*" >&2; }

log "downloading packages"
mkdir -p "$work/debs"
# shellcheck disable=SC2086
(cd "$work/debs" && apt-get download $BASE_PACKAGES "$EXTRA_PACKAGE" >/dev/null 2>&1)
tree1=$work/tree1 tree2=$work/tree2
mkdir -p "$tree1/boot"
printf 'not a real kernel\n' >"$tree1/boot/vmlinuz-6.1.0-bench"
n=0
for deb in "$work"/debs/*.deb; do
  case $(basename "$deb") in "${EXTRA_PACKAGE}"_*) continue ;; esac
  dpkg-deb -x "$deb" "$tree1"
  n=$((n + 1))
done
cp -a "$tree1" "$tree2"
dpkg-deb -x "$work"/debs/"${EXTRA_PACKAGE}"_*.deb "$tree2"
tar -C "$tree1" -cf "$work/v1.tar" .
tar -C "$tree2" -cf "$work/v2.tar" .
size() { stat -c %s "$1"; }
tars=$(($(size "$work/v1.tar") + $(size "$work/v2.tar")))
gzip -k -1 "$work/v1.tar" "$work/v2.tar"
tgz=$(($(size "$work/v1.tar.gz") + $(size "$work/v2.tar.gz")))

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa=$(port) pb=$(port) ha=$(port) hb=$(port)
conf() {
  local s
  for s in dhcp tftp ra dns ntp; do printf '[%s]\nenabled = false\n' "$s"; done
  printf '[http]\nport = %s\n' "$2"
  printf '[pool]\naddress = "127.0.0.1"\nport = %s\n' "$1"
}
a=$work/a b=$work/b
mkdir -p "$a" "$b"
"$drover" --state-dir "$a" pool init >/dev/null
"$drover" --state-dir "$b" pool join "127.0.0.1:$pa" --key-file "$a/cluster.key" >/dev/null
conf "$pa" "$ha" >"$work/a.toml"
conf "$pb" "$hb" >"$work/b.toml"
"$drover" --state-dir "$a" serve --interface lo --config "$work/a.toml" >"$work/a.log" 2>&1 &
pids+=($!)
"$drover" --state-dir "$b" serve --interface lo --config "$work/b.toml" >"$work/b.log" 2>&1 &
pids+=($!)

# Waits until B serves version $1's rootfs with the bytes A serves.
replicated() {
  local i
  for i in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$ha/images/bench@$1/rootfs.tar" -o "$work/a.rootfs" &&
      curl -sf "http://127.0.0.1:$hb/images/bench@$1/rootfs.tar" -o "$work/b.rootfs" &&
      cmp -s "$work/a.rootfs" "$work/b.rootfs"; then
      return 0
    fi
    sleep 1
  done
  echo "version $1 did not replicate" >&2
  tail -20 "$work/b.log" >&2
  exit 1
}
fetched() { grep 'fetched image files' "$work/b.log" | grep -o 'bytes=[0-9]*' | cut -d= -f2 |
  awk '{s += $1} END {print s + 0}'; }

log "importing version 1 ($n packages)"
t0=$(date +%s.%N)
"$drover" --state-dir "$a" image import bench "$tree1" >/dev/null
t1=$(date +%s.%N)
replicated 1
sent1=$(fetched)
log "importing version 2 (+ $EXTRA_PACKAGE)"
"$drover" --state-dir "$a" image import bench "$tree2" >/dev/null
replicated 2
sent2=$(($(fetched) - sent1))
history=$("$drover" --state-dir "$a" image history bench)
store=$("$drover" --state-dir "$a" image list | tail -1)
disk=$(du -sb "$a/blobs" "$a/chunks" | awk '{s += $1} END {print s}')
rootfs1=$(curl -sf "http://127.0.0.1:$ha/images/bench@1/rootfs.tar" | wc -c)
rootfs2=$(curl -sf "http://127.0.0.1:$ha/images/bench@2/rootfs.tar" | wc -c)
initramfs=$(curl -sf "http://127.0.0.1:$ha/images/bench@2/initramfs" | wc -c)
mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b / 1e6}'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1fx", (b > 0) ? a / b : 0}'; }

# Import against Warewulf-style unpacking (a plain tar into a directory) of the same tar, in
# a store of its own (the figures above stay those of the two members).
log "import of v2.tar against tar -x of it"
c=$work/c
mkdir -p "$c" "$work/unpacked"
u0=$(date +%s.%N)
"$drover" --state-dir "$c" image import tarred "$work/v2.tar" >/dev/null
u1=$(date +%s.%N)
tar -C "$work/unpacked" -xf "$work/v2.tar"
sync
u2=$(date +%s.%N)
import_s=$(secs "$u0" "$u1") untar_s=$(secs "$u1" "$u2")
# image build against the bare bootstrap (what a Warewulf-style flow runs before unpacking):
# needs root and the machine's Debian mirror; BUILD=0 skips it.
build_line="- image build: skipped (needs root; BUILD=0 skips it too)"
if [ "$(id -u)" = 0 ] && [ "${BUILD:-1}" != 0 ]; then
  log "image build bookworm"
  u0=$(date +%s.%N)
  built=$("$drover" --state-dir "$c" image build built --suite bookworm)
  u1=$(date +%s.%N)
  boot_s=$(echo "$built" | sed -n 's/.* took \([0-9]*\) s.*/\1/p')
  build_s=$(secs "$u0" "$u1")
  build_line="- image build bookworm (minbase + kernel): ${build_s} s in all, of which the \
bootstrap ${boot_s} s: $(ratio "$build_s" "$boot_s") the bootstrap alone"
fi

{
  echo "## Images (bench/images.sh)"
  echo
  echo "- Ran $(date -u +'%Y-%m-%d %H:%M UTC') with \`${drover#"$repo"/}\`"
  echo "- Version 1: $n Debian packages unpacked (\`$(echo "$BASE_PACKAGES" | tr -s ' ')\`);"
  echo "  version 2: the same plus \`$EXTRA_PACKAGE\`"
  echo "- Rootfs tars drover packed: $(mb "$rootfs1") and $(mb "$rootfs2");"
  echo "  plain tarballs (GNU tar): $(mb "$tars") together, gzip -1 $(mb "$tgz") together"
  echo "- drover's initramfs (the agent, the same blob in both versions): $(mb "$initramfs")"
  echo "- Store on disk after both versions (chunks, manifests): $(mb "$disk");"
  echo "  without the initramfs: $(mb $((disk - initramfs))) against $(mb "$tars") of plain tars"
  echo "- Bytes the second member fetched: version 1 $(mb "$sent1"), version 2 $(mb "$sent2")"
  echo "  (manifests and missing chunks; version 2's rootfs is $(mb "$rootfs2"))"
  echo "- Import of version 1 (pack, chunk, initramfs): $(awk -v a="$t0" -v b="$t1" \
    'BEGIN {printf "%.1f s", b - a}')"
  echo "- Import of v2.tar (a $(mb "$(size "$work/v2.tar")") tar: check, chunk, kernel,"
  echo "  initramfs): ${import_s} s; Warewulf-style \`tar -xf\` into a directory: ${untar_s} s"
  echo "  ($(ratio "$import_s" "$untar_s") the unpacking)"
  echo "$build_line"
  echo
  echo '```'
  echo "$history"
  echo "$store"
  echo '```'
} >"$out"
