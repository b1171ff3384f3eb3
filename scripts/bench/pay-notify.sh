#!/usr/bin/env bash
# Load for POST /pay/notify: WeChat Pay notifications (TRANSACTION.SUCCESS, signed with the
# platform's test key, encrypted with the APIv3 key) at steady rates against the release
# server, each for a different unpaid order, plus duplicates one second later (every 10th).
# Prints p50/p99/max latency of fresh and duplicate notifications, answers other than 204,
# the server's CPU per notification, and the paid/anomaly counts the admin API shows after.
#
#   cargo build --release --bin mpgate --example paynotify
#   scripts/bench/pay-notify.sh [rates="50 200"] [secs=20] [port=39121]
#
# Orders are created in a fresh data dir with the library's store while the server is not
# running (`paynotify prepare`). Keys and ids come from ../shared/conformance/pay. Nothing
# answers at MPGATE_PAY_API_BASE: a notification never calls the platform, and reconciliation
# only asks about orders older than MPGATE_PAY_RECONCILE_AFTER_SECS (300 s), longer than a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
RATES=${1:-"50 200"} SECS=${2:-20} PORT=${3:-39121}
PAY=${MPGATE_CONFORMANCE_DIR:-$PWD/../shared/conformance}/pay
[[ -f $PAY/vectors.json ]] || { echo "pay-notify.sh: $PAY/vectors.json is missing" >&2; exit 2; }
T=${CARGO_TARGET_DIR:-target}/release
for b in "$T/mpgate" "$T/examples/paynotify"; do
  [[ -x $b ]] || { echo "pay-notify.sh: $b is missing: cargo build --release --bin mpgate --example paynotify" >&2; exit 2; }
done
setting() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["settings"][sys.argv[2]])' "$PAY/vectors.json" "$1"; }

export MPGATE_TOKEN=benchtoken2026 MPGATE_ENCODING_AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
export MPGATE_APP_ID=$(setting appid) MPGATE_ADMIN_TOKEN=benchadminbenchadmin
export MPGATE_PAY_MCH_ID=$(setting mchid) MPGATE_PAY_CERT_SERIAL=$(setting merchant_cert_serial)
export MPGATE_PAY_APIV3_KEY=$(setting apiv3_key) MPGATE_PAY_PUBLIC_KEY_ID=$(setting platform_public_key_id)
export MPGATE_PAY_PRIVATE_KEY_FILE=$PAY/merchant_private_key.pem MPGATE_PAY_PUBLIC_KEY_FILE=$PAY/platform_public_key.pem
export MPGATE_PAY_API_BASE=http://127.0.0.1:9 MPGATE_PUBLIC_URL=http://mp.bench.example

W=$(mktemp -d "${TMPDIR:-/tmp}/mpgate-paynotify.XXXXXX")
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$W"' EXIT
# The bench rules with rust-101 for sale at ¥19.90.
cp -r scripts/bench/templates "$W/templates"
# (The bench file already prices it; the price line of its block is replaced.)
awk '/^id = "rust-101"$/ { inblock = 1 } /^\[\[/ { inblock = 0 }
     inblock && /^price = / { print "price = \"19.90\""; next } { print }' \
  scripts/bench/keywords.toml >"$W/keywords.toml"
grep -q '^price = "19.90"' "$W/keywords.toml" || { echo "pay-notify.sh: no rust-101 article to price" >&2; exit 2; }

ticks() { sed 's/^.*) //' "/proc/$PID/stat" | awk '{ print $12 + $13 }'; }
hz=$(getconf CLK_TCK)
for rate in $RATES; do
  n=$((rate * SECS))
  data=$W/data-$rate
  "$T/examples/paynotify" prepare "$data" "$n" rust-101 1990 "$W/orders-$rate.tsv"
  MPGATE_LISTEN=127.0.0.1:$PORT MPGATE_DATA_DIR=$data MPGATE_KEYWORDS=$W/keywords.toml RUST_LOG=warn \
    "$T/mpgate" >"$W/server-$rate.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  kill -0 "$PID" 2>/dev/null || { echo "pay-notify.sh: the server did not start:" >&2; cat "$W/server-$rate.log" >&2; exit 1; }
  t0=$(ticks)
  "$T/examples/paynotify" send "http://127.0.0.1:$PORT/pay/notify" "$W/orders-$rate.tsv" "$rate" "$SECS" 10
  t1=$(ticks)
  sent=$((n + (n + 9) / 10))
  awk -v d=$((t1 - t0)) -v n="$sent" -v hz="$hz" -v r="$rate" \
    'BEGIN { printf "rate %s/s server CPU %.0f µs/notification (%d notifications)\n", r, d / hz * 1e6 / n, n }'
  curl -fs -H "Authorization: Bearer $MPGATE_ADMIN_TOKEN" "http://127.0.0.1:$PORT/admin/orders?state=paid" \
    | python3 -c 'import json, sys; d = json.load(sys.stdin); print("rate %s/s admin: %d paid of %s, %d anomalies" % (sys.argv[1], len(d["orders"]), sys.argv[2], len(d["anomalies"])))' "$rate" "$n" \
    || echo "rate $rate/s: GET /admin/orders failed"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  if grep -qiE '"level":"(ERROR)"|ERROR|panicked' "$W/server-$rate.log"; then
    echo "rate $rate/s: the server logged errors:"
    grep -iE 'ERROR|panicked' "$W/server-$rate.log" | head -5
  fi
done
