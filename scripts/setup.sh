#!/usr/bin/env bash
# Installs what building and testing Switchyard needs beyond a Rust toolchain: the wasm target
# that policies are compiled to, and headless Chromium with its WebDriver (Debian packages
# `chromium` and `chromium-driver`) for the dashboard's browser tests (tests/e2e/browser.rs).
# Safe to run again.
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if command -v apt-get >/dev/null; then
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: no apt-get here: install Chromium and chromedriver as /usr/bin/chromium and" \
      "/usr/bin/chromedriver, or the browser tests skip (and fail under CI=true)" >&2
  fi
fi
