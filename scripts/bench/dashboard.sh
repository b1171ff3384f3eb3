#!/usr/bin/env bash
# The operators' dashboard over a big store (issue 18, item 5): fills a data dir with N
# subscribers and a year of history through the real pipeline (examples/dashfill.rs; once, cached
# under target/), starts the release server on it, signs in, fetches every dashboard page and its
# CSV RUNS times, and prints a markdown table (status, bytes, median and max ms; the budget is
# 300 ms a page) and the server's RSS (VmRSS, VmHWM) after start-up on the filled store and after
# the pages. Pages that do not exist (yet) show their status (404, or 401 while /admin has no
# dashboard) and do not fail the run. The JSON admin API's year of /admin/stats (bearer) is timed
# too, as a baseline, and each analytics report in-process (`dashfill --reports`), the figures'
# cost without HTML and HTTP.
#
#   scripts/bench/dashboard.sh [subscribers=100000] [days=365] [seed=18] [runs=5] [port=39131]
#
# Environment: DASHBENCH_NO_BUILD=1 skips `cargo build --release --bin mpgate --example
# dashfill`; DASHBENCH_END=YYYY-MM-DD fixes the history's last day (default: today in the
# account's time zone, Asia/Shanghai, so "today" on the overview has data). The fill is cached in
# $CARGO_TARGET_DIR/dashbench/ (default target/) by subscribers, days, seed, end day and a hash of
# what decides its content (src/, examples/dashfill.rs, the bench rules); a new fill removes the
# older ones there (a million subscribers take a few GB). The server runs on the cached dir.
# DASHBENCH_DATA=$CARGO_TARGET_DIR/dashbench/fill-… reuses that finished fill whatever the hash
# (for a change that cannot alter what the fill writes).
set -euo pipefail
cd "$(dirname "$0")/../.."
SUBS=${1:-100000} DAYS=${2:-365} SEED=${3:-18} RUNS=${4:-5} PORT=${5:-39131}
T=${CARGO_TARGET_DIR:-target}
KEYWORDS=scripts/bench/keywords.toml
ADMIN=dashbench-admin-token-0123456789
END=${DASHBENCH_END:-$(TZ=Asia/Shanghai date +%F)}

if [[ -z ${DASHBENCH_NO_BUILD:-} ]]; then
  cargo build --release --bin mpgate --example dashfill >&2
fi
for b in "$T/release/mpgate" "$T/release/examples/dashfill"; do
  [[ -x $b ]] || { echo "dashboard.sh: $b is missing: cargo build --release --bin mpgate --example dashfill" >&2; exit 2; }
done

# What the fill's content depends on: the library (but src/http, which the fill never runs: the
# dashboard's pages do not make a new fill), the generator, the rules.
content=$(find src examples/dashfill.rs "$KEYWORDS" scripts/bench/templates -path src/http -prune \
  -o -type f -print0 | sort -z | xargs -0 sha1sum | sha1sum | cut -c1-10)
CACHE=$T/dashbench
KEY=fill-$SUBS-$DAYS-$SEED-$END-$content
DATA=$CACHE/$KEY
mkdir -p "$CACHE"
if [[ -n ${DASHBENCH_DATA:-} ]]; then
  # An earlier fill named by hand (e.g. kept across a change the fill does not depend on).
  [[ -f $DASHBENCH_DATA.done ]] || { echo "dashboard.sh: $DASHBENCH_DATA is not a finished fill" >&2; exit 2; }
  DATA=$DASHBENCH_DATA KEY=$(basename "$DATA") CACHE=$(dirname "$DATA")
elif [[ ! -f $CACHE/$KEY.done ]]; then
  # Older fills go: they are big, and only this one is wanted now.
  find "$CACHE" -mindepth 1 -maxdepth 1 -name 'fill-*' -exec rm -rf {} +
  echo "dashboard.sh: filling $DATA ($SUBS subscribers, $DAYS days, seed $SEED, ending $END)…" >&2
  "$T/release/examples/dashfill" --data-dir "$DATA" --subscribers "$SUBS" --days "$DAYS" \
    --seed "$SEED" --end "$END" --keywords "$KEYWORDS" 2> >(tee "$CACHE/$KEY.log" >&2) >"$CACHE/$KEY.out"
  touch "$CACHE/$KEY.done"
fi
summary=$(grep '^DASHFILL' "$CACHE/$KEY.out" || true)
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$summary"; }
BUYER=$(field sample_buyer)

# The analytics reports alone, in-process, before the server takes the data dir's lock.
"$T/release/examples/dashfill" --reports --data-dir "$DATA" --keywords "$KEYWORDS" --runs "$RUNS" \
  >"$CACHE/$KEY.reports" || echo "(the analytics reports could not be timed)" >"$CACHE/$KEY.reports"

W=$(mktemp -d "${TMPDIR:-/tmp}/mpgate-dashbench.XXXXXX")
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$W"' EXIT
MPGATE_LISTEN=127.0.0.1:$PORT MPGATE_DATA_DIR=$DATA MPGATE_KEYWORDS=$KEYWORDS \
  MPGATE_ADMIN_TOKEN=$ADMIN MPGATE_PUBLIC_URL=http://127.0.0.1:$PORT RUST_LOG=warn \
  "$T/release/mpgate" >"$W/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
kill -0 "$PID" 2>/dev/null || { echo "dashboard.sh: the server did not start:" >&2; cat "$W/server.log" >&2; exit 1; }
rss() { awk '/^VmRSS|^VmHWM/ { printf "%s %d MiB  ", $1, $2 / 1024 }' "/proc/$PID/status"; }
rss_start=$(rss)

# Sign in as a browser does: the session cookie goes into the jar.
JAR=$W/cookies
signin=$(curl -s -o /dev/null -w '%{http_code}' -c "$JAR" -X POST --data-urlencode "token=$ADMIN" \
  "http://127.0.0.1:$PORT/admin/sign-in" || echo 000)

# One row: label, then the curl arguments after the URL path.
row() {
  local label=$1 path=$2; shift 2
  local times=() code=000 bytes=0
  for _ in $(seq 1 "$RUNS"); do
    read -r code bytes t < <(curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' \
      "$@" "http://127.0.0.1:$PORT$path" || echo "000 0 0")
    times+=("$t")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk -v label="$label" -v code="$code" -v bytes="$bytes" '
    { t[NR] = $1 * 1000 }
    END {
      med = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
      ok = (code != 200) ? "–" : (t[NR] <= 300 ? "yes" : "NO")
      printf "| %s | %s | %d | %.1f | %.1f | %s |\n", label, code, bytes, med, t[NR], ok
    }'
}
page() { row "$1" "$1" -b "$JAR"; }

FROM=$(TZ=Asia/Shanghai date -d "$END -364 days" +%F 2>/dev/null || echo "")
echo
echo "### Dashboard at $SUBS subscribers, $DAYS days (seed $SEED, ending $END)"
echo
echo "$summary" | sed 's/^DASHFILL /fill: /'
echo "data dir: $(du -sh "$DATA" | cut -f1) ($DATA); sign-in: HTTP $signin; $RUNS runs a page"
echo
echo "| page | status | bytes | median ms | max ms | ≤ 300 ms |"
echo "|---|---|---|---|---|---|"
# A page with several tables downloads each as CSV with `table=` (names from the pages).
for p in /admin/dashboard "/admin/dashboard?format=csv&table=windows" "/admin/dashboard?format=csv&table=days"; do
  page "$p"
done
for base in channels retention articles unanswered; do
  for d in 7 30 90 365; do
    page "/admin/dashboard/$base?days=$d"
    case $base in
      articles) tables="funnel sales" ;;
      *) tables="" ;;
    esac
    if [[ -z $tables ]]; then
      page "/admin/dashboard/$base?days=$d&format=csv"
    else
      for t in $tables; do page "/admin/dashboard/$base?days=$d&format=csv&table=$t"; done
    fi
  done
done
for base in handoffs outbox; do
  page "/admin/dashboard/$base"
  page "/admin/dashboard/$base?format=csv"
done
page "/admin/dashboard/orders"
for t in orders anomalies; do page "/admin/dashboard/orders?format=csv&table=$t"; done
page "/admin/dashboard/subscribers?openid=${BUYER:-oNobody}"
# The JSON admin API (bearer), unchanged by the dashboard: the baseline.
bearer=(-H "Authorization: Bearer $ADMIN")
[[ -n $FROM ]] && row "/admin/stats?from=$FROM&to=$END (JSON)" "/admin/stats?from=$FROM&to=$END" "${bearer[@]}"
row "/admin/unanswered?days=30&limit=50 (JSON)" "/admin/unanswered?days=30&limit=50" "${bearer[@]}"
row "/admin/orders?state=paid (JSON)" "/admin/orders?state=paid" "${bearer[@]}"
echo
cat "$CACHE/$KEY.reports"
echo
echo "server RSS after start-up on the filled store: $rss_start"
echo "server RSS after the pages:                     $(rss)"
if grep -qE 'ERROR|panicked' "$W/server.log"; then
  echo "the server logged errors:"
  grep -E 'ERROR|panicked' "$W/server.log" | head -5
fi
