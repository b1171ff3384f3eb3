#!/usr/bin/env bash
# Instructions per push, counted by callgrind: deterministic where this machine's wall-clock
# figures swing ±10 %, so changes worth a few per cent of a push can be compared.
#
#   scripts/bench/instructions.sh [N]     N pushes (default 2000) of the bench mix
#   PIPEPROBE=saved/pipeprobe scripts/bench/instructions.sh   count another build's probe
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
valgrind --tool=callgrind --collect-atstart=no \
  --toggle-collect='pipeprobe::push' --toggle-collect='pipeprobe::write_step' \
  --callgrind-out-file="$WORK/cg.out" \
  "${PIPEPROBE:-target/release/examples/pipeprobe}" "$WORK/set/pushes.tsv" "$N" >&2 2>"$WORK/valgrind.log" \
  || { cat "$WORK/valgrind.log" >&2; exit 1; }
callgrind_annotate --inclusive=yes "$WORK/cg.out" 2>/dev/null \
  | awk -v n="$N" '/pipeprobe::(push|write_step) \[/ {
      gsub(",", "", $1); split($NF, _, ""); name = ($0 ~ /pipeprobe::push/) ? "push" : "write_step";
      printf "%-10s %8.0f instructions per push\n", name, $1 / n }'
