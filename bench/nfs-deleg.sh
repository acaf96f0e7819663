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
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
lab_bench qemu_nfsroot bench_delegations "${1:-2}"
