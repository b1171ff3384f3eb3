#!/usr/bin/env bash
# The assistant's figures (issue 19), in-process (examples/assistantprobe.rs): retrieval build
# and search times over the repo's templates and a synthetic 200-article corpus, CPU and
# latency per assistant push on the passive path against an in-process fake model, and the
# memory jieba's dictionary and the index cost. Prints a markdown table.
#
#   scripts/bench/assistant.sh [PUSHES=10000] [MODEL_DELAY_MS=0]
#   ASSISTANT_PIN=none scripts/bench/assistant.sh     do not pin the probe to one CPU
#
# CPU per push is the whole process's (the fake model server and the HTTP client run in it):
# the table's "model call alone" rows are their share, the keyword-push row the plain
# pipeline's. The probe is pinned to one CPU (the last, or ASSISTANT_PIN=N): an assistant push
# is a ping-pong between the runtime's thread and the fake's over loopback TCP, and across the
# two cores of an idle machine each wake-up costs about twice as much CPU (idle exits,
# cross-core wake-ups), so unpinned runs swing 2× where pinned ones agree within ~20 %.
set -euo pipefail
cd "$(dirname "$0")/../.."
PUSHES=${1:-10000}
DELAY_MS=${2:-0}
cargo build --release --example assistantprobe >&2
PIN=()
if [[ ${ASSISTANT_PIN:-} != none ]] && command -v taskset >/dev/null; then
  PIN=(taskset -c "${ASSISTANT_PIN:-$(($(nproc) - 1))}")
fi
CLK_TCK=$(getconf CLK_TCK) \
  "${PIN[@]}" "${CARGO_TARGET_DIR:-target}/release/examples/assistantprobe" "$PUSHES" "$DELAY_MS"
