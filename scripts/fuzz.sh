#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/, seeds their corpora, runs each for a bounded time and
# prints, per target, how many inputs libFuzzer executed and whether it crashed.
#
#   scripts/fuzz.sh [--smoke] [--secs N] [target...]
#
#   --smoke    CI's step: every target for 30 s (about 9 minutes with the build on 2 cores)
#   --secs N   every target for N seconds (default 60)
#   target...  some of: xml decrypt query rules template link admin_json pay_notify (default: all)
#
# The corpora (fuzz/corpus/<target>/, git-ignored) are seeded at each run from
# ../shared/conformance (pushes, sealed payloads, callback queries, pay notifications) and from
# the repository's own rules and templates; inputs libFuzzer finds are kept there for the next
# run. A crash (panic, overflow, timeout, out of memory) leaves its input in
# fuzz/artifacts/<target>/; the script then exits 1 after running the other targets. Replay one
# with `fuzz/target/x86_64-unknown-linux-gnu/release/<target> <artifact>`.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). libFuzzer's instrumentation asks for
# nightly; RUSTC_BOOTSTRAP=1 lets the stable toolchain build it. Built without a sanitizer
# (mpgate and its fuzz targets are `unsafe`-free; panics and overflow checks are what finds bugs
# here) and with 16 codegen units: both cut the build from a fresh clone by minutes. Set
# FUZZ_SANITIZER=address for a longer hunt that also watches the dependencies' unsafe code.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

ALL_TARGETS=(xml decrypt query rules template link admin_json pay_notify)
secs=60
targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --smoke) secs=30 ;;
    --secs)
      secs=${2:?--secs needs a number}
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "fuzz.sh: unknown option $1" >&2
      exit 2
      ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "fuzz.sh: --secs wants a positive number, not '$secs'" >&2; exit 2; }
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "fuzz.sh: no target '$t' (targets: ${ALL_TARGETS[*]})" >&2; exit 2; }
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 2
fi

export RUSTC_BOOTSTRAP=1
SANITIZER=${FUZZ_SANITIZER:-none}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
BIN_DIR=$REPO/fuzz/target/$TRIPLE/release

echo "fuzz.sh: building ${#targets[@]} target(s) (sanitizer: $SANITIZER) $(date -u +%H:%M:%S)"
build_start=$SECONDS
# `cargo fuzz build` takes one target or none (= all of them, sharing one dependency build).
one=()
[[ ${#targets[@]} -eq 1 ]] && one=("${targets[0]}")
(cd fuzz && cargo fuzz build --sanitizer "$SANITIZER" --codegen-units 16 "${one[@]}")
echo "fuzz.sh: built in $((SECONDS - build_start)) s"

# --- corpus seeds -------------------------------------------------------------------------
seed_repo() { # target, files... (the repository's own operator files)
  local t=$1 f
  shift
  [[ -d fuzz/corpus/$t ]] || return 0 # not one of this run's targets
  for f in "$@"; do
    [[ -f $f ]] && cp "$f" "fuzz/corpus/$t/seed-repo-$(basename "$f")"
  done
  return 0
}
for t in "${targets[@]}"; do mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"; done
seed_repo rules keywords.toml tests/fixtures/keywords/*.toml
# The template target's first byte picks the name: 0 inline, 1 .txt, 2 .html.
for f in templates/*.txt templates/*.html templates/articles/*.html; do
  [[ -f $f && -d fuzz/corpus/template ]] || continue
  case $f in *.html) pick='\x02' ;; *) pick='\x01' ;; esac
  { printf '%b' "$pick"; cat "$f"; } >"fuzz/corpus/template/seed-repo-$(basename "$f")"
done

CONFORMANCE=$REPO/../shared/conformance
if [[ -d $CONFORMANCE ]]; then
  python3 - "$CONFORMANCE" "${targets[@]}" <<'PY'
"""Seeds each target's corpus from the conformance data (read here, never copied into the repo)."""
import base64, glob, hashlib, hmac, json, os, struct, sys

conf, targets = sys.argv[1], set(sys.argv[2:])
# The decrypt target's fixed account (fuzz/fuzz_targets/decrypt.rs).
KEY, APP_ID = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx2c2769f8efd9abc2"
# The link target's secret (fuzz/fuzz_targets/link.rs).
LINK_SECRET, NOW = b"fuzz-secret-fuzz-secret-fuzz-32b", 1_767_225_600

def put(target, name, data):
    if target not in targets:
        return
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join("fuzz/corpus", target, "seed-" + name), "wb") as f:
        f.write(data)

vectors = json.load(open(os.path.join(conf, "vectors.json"), encoding="utf-8"))
messages = sorted(glob.glob(os.path.join(conf, "messages", "*.xml")))
for path in messages:
    name = os.path.basename(path)
    xml = open(path, "rb").read()
    put("xml", name, xml)
    put("decrypt", "seal-" + name, b"\x02" + xml)
    # A well-formed plaintext for the raw-structure mode: random ‖ len ‖ msg ‖ app id ‖ PKCS#7.
    body = bytes(16) + struct.pack(">I", len(xml)) + xml + APP_ID.encode()
    pad = 32 - len(body) % 32
    put("decrypt", "raw-" + name, b"\x03" + body + bytes([pad]) * pad)
    put("template", "text-" + name, b"\x00" + xml)

def query(**kv):
    return "&".join(f"{k}={v}" for k, v in kv.items() if v is not None)

for v in vectors.get("crypto_vectors", []):
    vid = v["id"]
    for field in ("request_xml", "plaintext_xml"):
        if v.get(field):
            put("xml", f"{vid}-{field}", v[field])
    if v.get("encrypted"):
        put("decrypt", f"encrypt-{vid}", b"\x01" + v["encrypted"].encode())
    if v.get("request_xml"):
        put("decrypt", f"body-{vid}", b"\x00" + v["request_xml"].encode())
    put("query", vid, query(signature=v.get("signature"), timestamp=v.get("timestamp"),
                            nonce=v.get("nonce"), openid="oFuzz_reader", encrypt_type="aes",
                            msg_signature=v.get("msg_signature")))
for v in vectors.get("signature_vectors", []):
    put("query", v["id"], query(signature=v.get("signature"), timestamp=v.get("timestamp"),
                                nonce=v.get("nonce"), echostr="echo%20str+1"))
for v in vectors.get("negative_cases", []):
    put("query", "neg-" + v["id"], query(timestamp=v.get("timestamp"), nonce=v.get("nonce"),
                                         encrypt_type="aes", msg_signature=v.get("msg_signature")))
    if v.get("encrypted"):
        put("decrypt", "neg-" + v["id"], b"\x01" + v["encrypted"].encode())

# Links: genuine ones signed as mpgate signs (src/paywall/link.rs), an expired one, a forged one.
def sign(article, openid, expires):
    msg = b"mpgate-link-v1"
    for field in (article.encode(), openid.encode()):
        msg += struct.pack(">I", len(field)) + field
    msg += struct.pack(">q", expires)
    return hmac.new(LINK_SECRET, msg, hashlib.sha256).hexdigest()
for i, (article, openid, expires) in enumerate([("rust-101", "o9AgO5Kd5ggOC-bXrbNODIiE3bGY", NOW + 3600),
                                                 ("go-concurrency", "oFuzz_reader", NOW - 1),
                                                 ("course%202026", "oA", NOW + 1)]):
    put("link", f"genuine-{i}", f"{article}?u={openid}&e={expires}&s={sign(article.replace('%20', ' '), openid, expires)}")
put("link", "forged", f"rust-101?u=oFuzz_reader&e={NOW + 60}&s={'0' * 64}")

# Admin bodies, and the pay notifications' JSON as JSON of a realistic shape.
for i, body in enumerate([
    {"openid": "o9AgO5Kd5ggOC-bXrbNODIiE3bGY", "article": "rust-101"},
    {"openid": "oFuzz_reader", "article": "rust-101", "source": "shop", "reference": "order-1", "create": True},
    {"openid": "o:bad", "article": ""},
]):
    put("admin_json", f"body-{i}", json.dumps(body, ensure_ascii=False))
pay = os.path.join(conf, "pay", "vectors.json")
if os.path.exists(pay):
    for i, n in enumerate(json.load(open(pay, encoding="utf-8")).get("notifications", [])):
        body = n.get("body") if isinstance(n, dict) else None
        if isinstance(body, str):
            put("admin_json", f"pay-notification-{i}", body)
            # fuzz/fuzz_targets/pay_notify.rs: 0 raw headers + body, 1 a body it signs itself,
            # 2 an event type and a plaintext resource it encrypts and signs.
            h = n.get("headers", {})
            raw = "\n".join(h.get(k, "") for k in ("Wechatpay-Serial", "Wechatpay-Signature",
                                                   "Wechatpay-Timestamp", "Wechatpay-Nonce"))
            put("pay_notify", f"raw-{n.get('id', i)}", "\x00" + raw + "\n" + body)
            put("pay_notify", f"body-{n.get('id', i)}", "\x01" + body)
            if isinstance(n.get("decrypted"), dict):
                event = json.loads(body).get("event_type", "TRANSACTION.SUCCESS")
                put("pay_notify", f"plain-{n.get('id', i)}",
                    "\x02" + event + "\n" + json.dumps(n["decrypted"], ensure_ascii=False))
PY
  echo "fuzz.sh: corpus seeded from $CONFORMANCE and the repository"
else
  echo "fuzz.sh: $CONFORMANCE is absent: seeding from the repository's files only"
fi

# --- runs -----------------------------------------------------------------------------------
crashed=()
summary=()
for t in "${targets[@]}"; do
  log=$(mktemp "${TMPDIR:-/tmp}/mpgate-fuzz-$t.XXXXXX")
  echo "fuzz.sh: $t for ${secs} s $(date -u +%H:%M:%S)"
  set +e
  # -timeout: one input taking 10 s is a hang (a push must be answered in 5 s);
  # -rss_limit_mb: libFuzzer's default, said out loud (an input that needs more is a crash).
  # fuzz/dicts/<target>.dict: the input language's tokens, so mutations speak it sooner.
  dict=()
  [[ -f fuzz/dicts/$t.dict ]] && dict=(-dict="fuzz/dicts/$t.dict")
  "$BIN_DIR/$t" "fuzz/corpus/$t" "${dict[@]}" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [[ $rc -eq 0 ]]; then
    summary+=("$(printf '%-11s %12s executions in %s s   ok' "$t" "${execs:-?}" "$secs")")
  else
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    summary+=("$(printf '%-11s %12s executions          CRASHED (exit %s): %s' "$t" "${execs:-?}" "$rc" "${artifact:-no artifact, see log}")")
    crashed+=("$t")
    echo "fuzz.sh: $t crashed; the end of its log:" >&2
    grep -v '^#[0-9]' "$log" | tail -40 >&2
  fi
  rm -f "$log"
done

echo
echo "fuzz.sh: results (libFuzzer's final stats)"
printf '  %s\n' "${summary[@]}"
if [[ ${#crashed[@]} -gt 0 ]]; then
  echo "fuzz.sh: FAILED: ${crashed[*]} crashed; inputs under fuzz/artifacts/" >&2
  exit 1
fi
echo "fuzz.sh: no crash"
