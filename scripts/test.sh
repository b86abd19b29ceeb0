#!/usr/bin/env bash
# Runs every test: unit tests of every crate (policies natively, the host), and the end-to-end
# suites, which start the real binary and drive it over loopback WebSockets and HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets "$@"
