#!/usr/bin/env bash
# NFS-root boot of one node with read delegations off and on (issue 14): drover serves the
# lab's NFS-root image to one QEMU VM (TCG) in a network namespace, once per setting per round,
# settings alternating, each boot on a fresh server. Reports per setting the median time from
# QEMU's start to the image's marker (DROVER-NFSROOT-OK), the COMPOUNDs and operations the
# server answered during the boot (drover's /metrics), and the delegations the node's client
# held at the end. It runs the ignored test `bench_delegations` of qemu-tests/nfsroot.rs,
# which holds the lab harness (namespace, bridge, VM, markers).
#
# Usage: sudo bench/nfs-deleg.sh [ROUNDS]   (default 2; needs what scripts/setup installs)
# Prints the markdown table on stdout; the per-boot lines (NFSDELEG ...) go to stderr.
# Not part of `run`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/nfs-deleg.sh: needs root (network namespaces)" >&2; exit 1; }
. scripts/rust-env.sh
DROVER_BENCH_ROUNDS=${1:-2} exec cargo test --release --quiet --test qemu_nfsroot -- \
  --ignored --exact bench_delegations --nocapture --test-threads 1
