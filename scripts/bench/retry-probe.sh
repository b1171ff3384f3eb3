#!/usr/bin/env bash
# Retry-path probe: sends one set of pushes for DURATION s at 64 connections, then the same set
# again, so the second run is answered entirely from the dedupe memory (as platform retries
# are). Prints server CPU per request for both. Needs a release build and wrk:
#   cargo build --release --bin mpgate --example loadgen
#   scripts/bench/retry-probe.sh [pushes=100000] [duration=3] [port=39111]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000} DURATION=${2:-3} PORT=${3:-39111}
export MPGATE_TOKEN=benchtoken2026 MPGATE_APP_ID=wxbench000000001
export MPGATE_ENCODING_AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
W=$(mktemp -d "${TMPDIR:-/tmp}/mpgate-retry.XXXXXX")
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$W"' EXIT
target/release/examples/loadgen gen --out-dir "$W/set" -n "$N" --seq-base 1 2>/dev/null
MPGATE_LISTEN=127.0.0.1:$PORT MPGATE_DATA_DIR=$W/data MPGATE_KEYWORDS=scripts/bench/keywords.toml \
  MPGATE_PUBLIC_URL=http://mp.bench.example MPGATE_REPLAY_WINDOW_SECS=0 RUST_LOG=warn \
  target/release/mpgate >"$W/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
ticks() { sed 's/^.*) //' "/proc/$PID/stat" | awk '{ print $12 + $13 }'; }
hz=$(getconf CLK_TCK)
for run in fresh retries; do
  t0=$(ticks)
  WRK_THREADS=2 wrk -t 2 -c 64 -d "${DURATION}s" -s scripts/bench/push.lua \
    "http://127.0.0.1:$PORT" -- "$W/set/pushes.tsv" >"$W/wrk.txt" 2>&1
  t1=$(ticks)
  reqs=$(grep -oE 'requests=[0-9]+' "$W/wrk.txt" | head -1 | cut -d= -f2)
  awk -v r="$run" -v d=$((t1 - t0)) -v n="$reqs" -v hz="$hz" \
    'BEGIN { printf "%s: %d requests, server CPU %.1f µs/request\n", r, n, d / hz * 1e6 / n }'
done
