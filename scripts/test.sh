#!/usr/bin/env bash
# Runs every test: unit tests of every crate (policies natively, the host), and the end-to-end
# suites, which start the real binary and drive it over loopback WebSockets and HTTP. The
# attacking tests run in their bounded forms (README.md, "Attacking the hub"): the SIGKILL chaos
# test in the e2e suite, the engine's property tests, and the fuzz targets (fuzz/).
#
# Then the end-to-end suite again for each other policy bundled into the binary (each crate
# under policies/), with SWITCHYARD_TEST_POLICY=builtin:NAME: a new policy is smoke-tested by
# every end-to-end test with no further wiring. Tests that only hold for the default policy
# (greedy) skip those runs and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets "$@"

# The binary the tests just built knows what it bundles (host/build.rs decides). It is asked
# directly, and the suite is selected with the same `--workspace` as above: `cargo run` or
# `-p switchyard` would resolve dependency features differently and recompile wasmtime.
switchyard="${CARGO_TARGET_DIR:-target}/debug/switchyard"
for policy in $("$switchyard" policies); do
  if [ "$policy" = greedy ]; then
    continue # the default: the run above tested it
  fi
  echo "== end-to-end suite with SWITCHYARD_TEST_POLICY=builtin:$policy"
  SWITCHYARD_TEST_POLICY="builtin:$policy" cargo test --workspace --test e2e "$@"
done
