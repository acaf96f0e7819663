#!/usr/bin/env bash
# Boot time of one VM in a `drover lab` (smoltcp on a user-space switch, no root) against the
# same boot through `drover serve` on kernel sockets in a network namespace (issue 19): the
# marker image, BIOS, from nothing (state directory, image, server start, QEMU) to the marker
# on the console, rounds alternating. It runs the ignored test `bench_lab_against_kernel_sockets`
# of qemu-tests/lab.rs, which holds the lab harness.
#
# Usage: sudo bench/lab.sh [ROUNDS]   (default 3; needs what scripts/setup installs)
# Prints the markdown table on stdout; the per-boot lines (LABBENCH ...) go to stderr.
# Not part of `run`. Not measured yet: TFTP and HTTP throughput through smoltcp alone.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
lab_bench qemu_lab bench_lab_against_kernel_sockets "${1:-3}"
