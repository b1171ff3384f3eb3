#!/usr/bin/env bash
# Instructions per push, counted by callgrind: deterministic where this machine's wall-clock
# figures swing ±10 %, so changes worth a few per cent of a push can be compared.
#
#   scripts/bench/instructions.sh [N]     N pushes (default 2000) of the bench mix
#   PIPEPROBE=saved/pipeprobe scripts/bench/instructions.sh   count another build's probe
#   CACHE_SIM=1 scripts/bench/instructions.sh 20000           also simulate the caches
#
# With CACHE_SIM=1, callgrind also simulates 32 KiB L1 instruction and data caches and a 1 MiB
# last level, and the script prints the misses per push and a rough cycle estimate
# (instructions + 12 per L1 miss + 60 per last-level miss). A push runs ~75 KB of distinct
# code, more than the L1i holds, so instruction-cache misses are a large part of its cost that
# the instruction count does not show (docs/performance-history.md, "The code a push runs"). Use enough
# pushes (20000) that the set-up's misses wash out.
#
# Counts inside one `Gateway::post` (decrypt, dedupe, state, rules, reply, seal; no HTTP) and
# inside the writer's step (every 4,000 pushes, as the server's 100 ms step at ~40k pushes/s),
# each divided by N. Caveat: valgrind hides SHA-NI from the program, so SHA-1 runs its portable
# code here (~26k of the count) where the server uses the SHA extensions; compare counts of two
# builds, not a count with a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --example loadgen --example pipeprobe >&2
export MPGATE_TOKEN=benchtoken2026
export MPGATE_APP_ID=wxbench000000001
export MPGATE_ENCODING_AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
export MPGATE_PUBLIC_URL=http://mp.bench.example
export MPGATE_REPLAY_WINDOW_SECS=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mpgate-ir.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
target/release/examples/loadgen gen --out-dir "$WORK/set" -n "$N" --seq-base 1 >/dev/null 2>&1
SIM=()
if [[ ${CACHE_SIM:-0} == 1 ]]; then
  SIM=(--cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=1048576,16,64)
fi
valgrind --tool=callgrind "${SIM[@]}" --collect-atstart=no \
  --toggle-collect='pipeprobe::push' --toggle-collect='pipeprobe::write_step' \
  --callgrind-out-file="$WORK/cg.out" \
  "${PIPEPROBE:-target/release/examples/pipeprobe}" "$WORK/set/pushes.tsv" "$N" >&2 2>"$WORK/valgrind.log" \
  || { cat "$WORK/valgrind.log" >&2; exit 1; }
if [[ ${CACHE_SIM:-0} == 1 ]]; then
  callgrind_annotate --inclusive=yes --show=Ir,I1mr,D1mr,D1mw,ILmr,DLmr,DLmw "$WORK/cg.out" 2>/dev/null \
    | awk -v n="$N" '/pipeprobe::(push|write_step) \[/ {
        name = ($0 ~ /pipeprobe::push/) ? "push" : "write_step"
        gsub(/\([^)]*\)/, ""); gsub(",", "")
        ir = $1 / n; i1 = $2 / n; d1 = ($3 + $4) / n; ll = ($5 + $6 + $7) / n
        printf "%-10s %8.0f instructions, %5.0f L1i misses, %5.0f L1d misses, %5.1f LL misses per push (~%.0f cycles)\n",
          name, ir, i1, d1, ll, ir + 12 * (i1 + d1) + 60 * ll }'
else
  callgrind_annotate --inclusive=yes "$WORK/cg.out" 2>/dev/null \
    | awk -v n="$N" '/pipeprobe::(push|write_step) \[/ {
        gsub(",", "", $1); name = ($0 ~ /pipeprobe::push/) ? "push" : "write_step";
        printf "%-10s %8.0f instructions per push\n", name, $1 / n }'
fi
