#!/usr/bin/env bash
# The long fuzzing run: every target of drover::fuzz (DHCP, DNS, NTP, TFTP, NFS RPC/COMPOUND,
# layer shipments, IPMI replies, pool frames, SWIM, agent events and API JSON, node CSV, TOML
# config, BMC and switch data) under AFL++ until it has made 10^7 executions or SECONDS have
# passed, one target at a time. Prints executions, executions/s, paths and crashes per target;
# a crashing input lands in fuzz/regressions/<target>/ (replayed by cargo test) and the exit
# status is 1.
#
# Usage: bench/fuzz.sh [SECONDS]   (default 3600 per target; FUZZ_EXECS overrides 10^7)
# Needs cargo-afl (scripts/setup). No root, no network: everything runs in memory.
set -euo pipefail
exec "$(dirname "$0")/../scripts/fuzz" "${1:-3600}" "${FUZZ_EXECS:-10000000}"
