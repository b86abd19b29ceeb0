//! End-to-end suite: starts the real `switchyard` binary (one per test, each with its own data
//! folder and port) and drives it over loopback WebSocket and HTTP, checking the behaviour
//! written in docs/protocol.md and docs/http-api.md.
//!
//! `SWITCHYARD_TEST_POLICY=<policy>` runs every test against another scheduling policy
//! (passed as `--policy`); `scripts/test.sh` does so for every bundled policy. Tests that only
//! hold for the default policy, or that pick their policies themselves, skip such runs and say
//! so (`harness::skip_unless_default_policy`). `SWITCHYARD_E2E_KEEP=1` keeps the data folders.
//! `author` needs the wasm32 target and the registry's crates and says when it skips for want of
//! them; `SWITCHYARD_E2E_REQUIRE_AUTHOR=1` (set by `.ci/run`) makes that a failure instead.

mod harness;

mod agentcom;
mod author;
mod bad_input;
mod browser;
mod chaos;
mod cli;
mod contract;
mod custody;
mod dashboard;
mod durability;
mod events;
mod failures;
mod fairness;
mod flow;
mod hostile;
mod http;
mod lab;
mod limits;
mod metrics;
mod priority;
mod roles;
mod shadow;
mod sharing;
mod shutdown;
mod sidecar;
mod swap;
mod tenants;
