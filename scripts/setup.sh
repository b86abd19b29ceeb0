#!/usr/bin/env bash
# Installs what building Switchyard needs beyond a Rust toolchain: the wasm target that
# policies are compiled to. Safe to run again.
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
