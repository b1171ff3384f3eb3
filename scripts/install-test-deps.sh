#!/usr/bin/env bash
# System packages the test suite uses, installed when missing (Debian). .ci/run calls this;
# `cargo test` never does: without Chromium (or ChromeDriver) the page tests skip their browser
# checks (and fail under CI=true, where this script has run).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# ChromeDriver, for the paywall buy-flow test (tests/api/paybrowser.rs drives Chromium through it).
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# A CJK font, so screenshots of the Chinese pages show glyphs rather than boxes.
dpkg -s fonts-wqy-zenhei >/dev/null 2>&1 || need+=(fonts-wqy-zenhei)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing ${need[*]} (run as root to install); tests needing them will say so" >&2
    exit 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
