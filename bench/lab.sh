#!/usr/bin/env bash
# Boot time of one VM in a `drover lab` (smoltcp on a user-space switch, no root) against the
# same boot through `drover serve` on kernel sockets in a network namespace (issue 19): the
# marker image, BIOS, from nothing (state directory, image, server start, QEMU) to the marker
# on the console, rounds alternating. It runs the ignored test `bench_lab_against_kernel_sockets`
# of qemu-tests/boot.rs, which holds the lab harness.
#
# Usage: sudo bench/lab.sh [ROUNDS]   (default 3; needs what scripts/setup installs)
# Prints the markdown table on stdout; the per-boot lines (LABBENCH ...) go to stderr.
# Not part of `run`. Not measured yet: TFTP and HTTP throughput through smoltcp alone.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/lab.sh: needs root (the kernel-socket path's namespace)" >&2; exit 1; }
. scripts/rust-env.sh
DROVER_BENCH_ROUNDS=${1:-3} exec cargo test --release --quiet --test qemu -- \
  --ignored --exact bench_lab_against_kernel_sockets --nocapture --test-threads 1
