#!/usr/bin/env bash
# The assistant's figures (issue 19), in-process (examples/assistantprobe.rs): retrieval build
# and search times over the repo's templates and a synthetic 200-article corpus, CPU and
# latency per assistant push on the passive path against an in-process fake model, and the
# memory jieba's dictionary and the index cost. Prints a markdown table.
#
#   scripts/bench/assistant.sh [PUSHES=10000] [MODEL_DELAY_MS=0]
#
# CPU per push is the whole process's (the fake model server and the HTTP client run in it):
# the table's "model call alone" row is their share, the keyword-push row the plain pipeline's.
# Release build; run it on a quiet machine (wall-clock figures swing on 2 shared cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
PUSHES=${1:-10000}
DELAY_MS=${2:-0}
cargo build --release --example assistantprobe >&2
CLK_TCK=$(getconf CLK_TCK) \
  "${CARGO_TARGET_DIR:-target}/release/examples/assistantprobe" "$PUSHES" "$DELAY_MS"
