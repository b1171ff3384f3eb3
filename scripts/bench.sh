#!/usr/bin/env bash
# Load benchmark of the release binary: GET /healthz and the encrypted POST /wechat mix, each
# at 1 connection (1 wrk thread) and 64 connections (2 threads), with server CPU per request
# and peak RSS; then a correctness check of live replies (loadgen verify).
#
#   scripts/bench.sh            full run (BENCH_DURATION seconds per wrk run, default 10)
#   scripts/bench.sh --smoke    2 s runs; fails on any non-200, socket error or wrong reply (CI)
#
# Environment:
#   BENCH_DURATION=10           seconds per wrk run
#   BENCH_SUBSCRIBERS=1000000   also pre-fill a store with N subscribers and
#                               BENCH_ENTITLEMENTS (default 100000) grants, then rerun
#   BENCH_PUSHES_C1 / BENCH_PUSHES_C64   pushes generated per push run (default 24000/80000 per
#                               second of run: a push sent twice is answered from dedupe)
#   BENCH_ROTATION_PUSHES=3000  distinct pushes of the rotation run (the issue's literal standard
#                               run: a few thousand pushes sent round and round, so all but the
#                               first pass are retries answered from dedupe); 0 skips it
#   BENCH_FLOOR=1               after the rotation run, the same 64-connection healthz and push
#                               runs against examples/leanpipe.rs: the protocol alone (verify,
#                               decrypt, parse, one fixed reply, seal) with none of mpgate's
#                               features, so the ratio shows what the features cost (full runs
#                               only; default 1)
#   BENCH_PERF=1                after the measured runs, profile one 64-connection push run
#                               with `perf record -g` (report in the results dir)
#   BENCH_OUT=dir               where logs and results go (default target/bench/<time>)
#   BENCH_KEEP=1                keep the temp data dirs
#   BENCH_BODIES=0|1            check every response's status in Lua (default: 1 with --smoke, 0
#                               otherwise; wrk's own 4xx/5xx count is used when 0)
#
# The pushes are generated before each run with the current timestamp and sent for up to a
# minute, so the server runs with MPGATE_REPLAY_WINDOW_SECS=0 (replay check off).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
if [[ ${1:-} == --smoke ]]; then MODE=smoke; fi
if [[ $MODE == smoke ]]; then DURATION=${BENCH_DURATION:-2}; else DURATION=${BENCH_DURATION:-10}; fi
SUBSCRIBERS=${BENCH_SUBSCRIBERS:-0}
ENTITLEMENTS=${BENCH_ENTITLEMENTS:-100000}
if [[ $MODE == smoke ]]; then
  PUSHES_C1=${BENCH_PUSHES_C1:-12000}
  PUSHES_C64=${BENCH_PUSHES_C64:-16000}
else
  PUSHES_C1=${BENCH_PUSHES_C1:-$((24000 * DURATION))}
  PUSHES_C64=${BENCH_PUSHES_C64:-$((80000 * DURATION))}
fi
OUT=${BENCH_OUT:-target/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }

# ── tools ────────────────────────────────────────────────────────────────────
if ! command -v wrk >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "bench: installing wrk"
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
  else
    die "wrk is not installed (apt-get install wrk)"
  fi
fi
command -v curl >/dev/null || die "curl is needed"
CLK_TCK=$(getconf CLK_TCK)

FLOOR=${BENCH_FLOOR:-1}
if [[ $MODE == smoke ]]; then FLOOR=0; fi
# Lua checks of every response's status: on in the smoke run (correctness only), off in timed
# runs, where wrk's response hook made the load generator stall (scripts/bench/report.lua).
if [[ $MODE == smoke ]]; then export BENCH_BODIES=${BENCH_BODIES:-1}; else export BENCH_BODIES=${BENCH_BODIES:-0}; fi
log "bench: building release binary and load generator"
EXAMPLES=(--example loadgen)
if [[ $FLOOR == 1 ]]; then EXAMPLES+=(--example leanpipe); fi
cargo build --release --bin mpgate "${EXAMPLES[@]}" >&2
BIN=target/release/mpgate
SERVER_BIN=$BIN
LOADGEN=target/release/examples/loadgen
RULES=scripts/bench/keywords.toml
"$LOADGEN" rules --check "$RULES"
"$BIN" check "$RULES" >&2

export MPGATE_TOKEN=benchtoken2026
export MPGATE_APP_ID=wxbench000000001
export MPGATE_ENCODING_AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
PUBLIC_URL=http://mp.bench.example

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mpgate-bench.XXXXXX")
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$WORK"; else log "bench: kept $WORK"; fi
}
trap cleanup EXIT

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

start_server() { # data_dir
  PORT=$(free_port)
  ADDR=127.0.0.1:$PORT
  MPGATE_LISTEN=$ADDR MPGATE_DATA_DIR=$1 MPGATE_KEYWORDS=$RULES MPGATE_PUBLIC_URL=$PUBLIC_URL \
    MPGATE_REPLAY_WINDOW_SECS=0 RUST_LOG=warn \
    "$SERVER_BIN" >>"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if curl -fs "http://$ADDR/healthz" >/dev/null 2>&1; then return; fi
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited at start-up; see $OUT/server.log"
    sleep 0.1
  done
  die "server did not answer /healthz within 10 s"
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

cpu_ticks() { # utime + stime (fields 14, 15); split after the `)` so a space in comm is harmless
  local rest
  rest=$(sed 's/^.*) //' "/proc/$SERVER_PID/stat")
  awk '{ print $12 + $13 }' <<<"$rest"
}
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }

gen_set() { # name count seq_base
  "$LOADGEN" gen --out-dir "$WORK/$1" -n "$2" --seq-base "$3" 2>>"$OUT/loadgen.log"
  tail -1 "$OUT/loadgen.log" >&2
}

RESULTS=$OUT/results.tsv
printf 'label\tendpoint\tconns\trequests\trps\tp50_us\tp99_us\tmax_us\tnon200\tsocket_errors\tcpu_us_per_req\thwm_mib\trss_mib\trepeats\n' >"$RESULTS"
FAILED=0

run_wrk() { # label endpoint conns threads -- wrk args…
  local label=$1 endpoint=$2 conns=$3 threads=$4
  shift 5
  local raw="$OUT/wrk-$label-$endpoint-c$conns.txt"
  local t0 t1
  t0=$(cpu_ticks)
  WRK_THREADS=$threads wrk -t "$threads" -c "$conns" -d "${DURATION}s" --latency --timeout 5s "$@" >"$raw" 2>&1 \
    || { log "wrk failed:"; cat "$raw" >&2; FAILED=1; return; }
  t1=$(cpu_ticks)
  local line
  line=$(grep '^BENCH requests=' "$raw" || true)
  [[ -n $line ]] || { log "no BENCH line in $raw"; cat "$raw" >&2; FAILED=1; return; }
  local requests rps p50 p99 max non200 sockerr repeats
  kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${line#BENCH }"; }
  requests=$(kv requests); rps=$(kv rps); p50=$(kv p50_us); p99=$(kv p99_us); max=$(kv max_us)
  # With BENCH_BODIES=1 the scripts check every status in Lua; otherwise wrk's own count of
  # 4xx/5xx answers stands in (mpgate answers nothing but 200, 4xx and 5xx).
  if [[ $(kv bodies) == 1 ]]; then non200=$(kv non200); else non200=$(kv status_err); fi
  sockerr=$(($(kv connect_err) + $(kv read_err) + $(kv write_err) + $(kv timeouts)))
  repeats=$(kv repeats_sent); repeats=${repeats:--}
  local cpu
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", n ? d / hz / n * 1e6 : 0 }')
  local hwm rss
  hwm=$(awk -v k="$(hwm_kib)" 'BEGIN { printf "%.1f", k / 1024 }')
  rss=$(awk -v k="$(rss_kib)" 'BEGIN { printf "%.1f", k / 1024 }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$endpoint" "$conns" "$requests" "$rps" \
    "$p50" "$p99" "$max" "$non200" "$sockerr" "$cpu" "$hwm" "$rss" "$repeats" >>"$RESULTS"
  log "bench: $label $endpoint c$conns: $rps req/s, p50 ${p50} µs, p99 ${p99} µs, non-200 $non200, socket errors $sockerr, CPU ${cpu} µs/req, peak RSS ${hwm} MiB, repeats $repeats"
  grep '^BENCH first non-200' "$raw" >&2 || true
  if [[ $non200 != 0 || $sockerr != 0 ]]; then FAILED=1; fi
  if [[ $label != rotation && $label != floor && $repeats != - && $repeats != 0 ]]; then
    log "bench: note: $repeats pushes were sent a second time (answered from dedupe); raise BENCH_PUSHES_C$conns"
  fi
}

measure_all() { # label seq_offset
  local label=$1 seq=$2
  gen_set "$label-c1" "$PUSHES_C1" "$seq"
  gen_set "$label-c64" "$PUSHES_C64" "$((seq + 1000000))"
  run_wrk "$label" healthz 1 1 -- -s scripts/bench/healthz.lua "http://$ADDR/healthz"
  run_wrk "$label" healthz 64 2 -- -s scripts/bench/healthz.lua "http://$ADDR/healthz"
  run_wrk "$label" push 1 1 -- -s scripts/bench/push.lua "http://$ADDR" -- "$WORK/$label-c1/pushes.tsv"
  run_wrk "$label" push 64 2 -- -s scripts/bench/push.lua "http://$ADDR" -- "$WORK/$label-c64/pushes.tsv"
  log "bench: verifying replies ($label)"
  if ! "$LOADGEN" verify --addr "$ADDR" --pushes-dir "$WORK/$label-c64" --sample 50 --fresh 50 \
      --fresh-seq-base "$((seq + 9000000))" --public-url "$PUBLIC_URL" 2>&1 | tee -a "$OUT/verify.log" >&2; then
    FAILED=1
  fi
}

ratio() { # label: cpu/request(push) ÷ cpu/request(healthz) at 64 connections
  awk -F'\t' -v l="$1" '$1 == l && $3 == 64 { c[$2] = $11 } END { if (c["healthz"] > 0) printf "%.1f", c["push"] / c["healthz"]; else print "n/a" }' "$RESULTS"
}

# ── standard run ─────────────────────────────────────────────────────────────
start_server "$WORK/data"
log "bench: server pid $SERVER_PID on $ADDR, ${DURATION} s per run, $PUSHES_C1 / $PUSHES_C64 pushes per push run"
measure_all standard 0
RATIO_STD=$(ratio standard)
DISK_STD=$(du -sh "$WORK/data" | cut -f1)

if [[ ${BENCH_PERF:-0} == 1 && $MODE == full ]]; then
  if command -v perf >/dev/null; then
    gen_set perf "$PUSHES_C64" 5000000
    log "bench: profiling a 64-connection push run with perf"
    perf record -g -o "$WORK/perf.data" -p "$SERVER_PID" -- sleep "$((DURATION > 2 ? DURATION - 1 : DURATION))" >"$OUT/perf-record.log" 2>&1 &
    PERF_PID=$!
    WRK_THREADS=2 wrk -t 2 -c 64 -d "${DURATION}s" -s scripts/bench/push.lua "http://$ADDR" -- "$WORK/perf/pushes.tsv" >"$OUT/wrk-perf.txt" 2>&1 || true
    wait "$PERF_PID" || log "bench: perf record failed (see $OUT/perf-record.log)"
    perf report -i "$WORK/perf.data" --no-children --percent-limit 2 --stdio 2>/dev/null | head -120 >"$OUT/perf-report.txt" || true
    log "bench: perf report in $OUT/perf-report.txt"
  else
    log "bench: perf not installed; skipping the profile"
  fi
fi
stop_server

# ── rotation run ─────────────────────────────────────────────────────────────
# What the issue describes literally: a few thousand distinct pushes, rotated. After the first
# pass every request is a retry answered from the dedupe memory (most from sled batches), with
# no side effects; the fresh-push runs above are the ones with dedupe, counters and subscriber
# updates all working. Its own server and data dir, so its memory is its own.
ROTATION=${BENCH_ROTATION_PUSHES:-3000}
RATIO_ROT=
if [[ $ROTATION -gt 0 ]]; then
  start_server "$WORK/rotation"
  gen_set rotation-c64 "$ROTATION" 30000000
  run_wrk rotation healthz 64 2 -- -s scripts/bench/healthz.lua "http://$ADDR/healthz"
  run_wrk rotation push 64 2 -- -s scripts/bench/push.lua "http://$ADDR" -- "$WORK/rotation-c64/pushes.tsv"
  log "bench: verifying replies (rotation)"
  if ! "$LOADGEN" verify --addr "$ADDR" --pushes-dir "$WORK/rotation-c64" --sample 50 --fresh 0 \
      --fresh-seq-base 39000000 --public-url "$PUBLIC_URL" 2>&1 | tee -a "$OUT/verify.log" >&2; then
    FAILED=1
  fi
  RATIO_ROT=$(ratio rotation)
  stop_server
fi

# ── the floor ────────────────────────────────────────────────────────────────
# examples/leanpipe.rs serves the same pushes with the protocol only. It keeps nothing, so the
# standard run's set is simply sent again; no replies are verified (it answers one fixed text).
RATIO_FLOOR=
if [[ $FLOOR == 1 ]]; then
  SERVER_BIN=target/release/examples/leanpipe
  start_server "$WORK/floor"
  run_wrk floor healthz 64 2 -- -s scripts/bench/healthz.lua "http://$ADDR/healthz"
  run_wrk floor push 64 2 -- -s scripts/bench/push.lua "http://$ADDR" -- "$WORK/standard-c64/pushes.tsv"
  RATIO_FLOOR=$(ratio floor)
  stop_server
  SERVER_BIN=$BIN
fi

# ── pre-filled store ─────────────────────────────────────────────────────────
RATIO_BIG=
if [[ $SUBSCRIBERS -gt 0 ]]; then
  log "bench: pre-filling $SUBSCRIBERS subscribers and $ENTITLEMENTS entitlements"
  PREFILL_T0=$(date +%s.%N)
  "$LOADGEN" prefill --data-dir "$WORK/big" --subscribers "$SUBSCRIBERS" --entitlements "$ENTITLEMENTS" \
    >"$OUT/prefill.txt" 2>>"$OUT/loadgen.log"
  PREFILL_SECS=$(awk -v a="$PREFILL_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  tail -2 "$OUT/loadgen.log" >&2
  DISK_BIG_BEFORE=$(du -sh "$WORK/big" | cut -f1)
  start_server "$WORK/big"
  STARTUP_RSS=$(awk -v k="$(rss_kib)" 'BEGIN { printf "%.1f", k / 1024 }')
  measure_all prefilled 20000000
  RATIO_BIG=$(ratio prefilled)
  stop_server
  DISK_BIG=$(du -sh "$WORK/big" | cut -f1)
fi

# ── summary ──────────────────────────────────────────────────────────────────
{
  echo "## mpgate load benchmark ($MODE, ${DURATION} s per run, $(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r); wrk runs on the same machine"
  echo
  echo "| store | endpoint | conns | requests | req/s | p50 µs | p99 µs | max µs | non-200 | socket errors | server CPU µs/req | peak RSS MiB | repeats |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  tail -n +2 "$RESULTS" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14 }'
  echo
  echo "CPU per request, push ÷ healthz at 64 connections: $RATIO_STD (standard store; data dir $DISK_STD after the run)"
  if [[ -n $RATIO_ROT ]]; then
    echo "Rotation run ($ROTATION distinct pushes sent round and round: all but the first pass are retries answered from dedupe): CPU ratio $RATIO_ROT"
  fi
  if [[ -n $RATIO_FLOOR ]]; then
    echo "Floor (examples/leanpipe: verify, decrypt, parse, one fixed reply, seal; no dedupe, state, counters or rules): CPU ratio $RATIO_FLOOR"
  fi
  if [[ -n $RATIO_BIG ]]; then
    echo "Pre-filled store: $SUBSCRIBERS subscribers + $ENTITLEMENTS entitlements written in ${PREFILL_SECS} s ($(cat "$OUT/prefill.txt")); data dir $DISK_BIG_BEFORE before serving, $DISK_BIG after; RSS right after start-up $STARTUP_RSS MiB; CPU ratio $RATIO_BIG"
  fi
  echo
  grep -h '^verify:' "$OUT/verify.log" | sed 's/^/    /'
} | tee "$OUT/results.md"

if [[ $FAILED != 0 ]]; then
  die "FAILED: errors, non-200 responses or wrong replies (logs in $OUT)"
fi
log "bench: ok (logs and raw wrk output in $OUT)"
