#!/usr/bin/env bash
# Builds Switchyard and starts the hub with its default policy (greedy) on 127.0.0.1:4000,
# data in ./switchyard-data. Extra arguments go to `switchyard serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p switchyard
exec target/release/switchyard serve "$@"
