//! Switchyard: a hub that hands tasks to agents over WebSocket, keeps its queue durably in
//! LMDB, and decides which task goes to which agent with a WebAssembly policy.
//!
//! The modules, lowest layer first (a module imports only from layers below it; see
//! `docs/architecture.md` and `tests/layers.rs`, which checks it):
//!
//! - [`wire`]: everything that crosses a socket, validated once.
//! - [`task`]: the task model and its state machine.
//! - [`store`]: LMDB storage. [`policy`]: the WebAssembly policy host.
//! - [`lab`]: the policy lab, policies against simulated workloads in simulated time.
//! - [`engine`]: the single owner of scheduling state and its group-commit loop.
//! - [`server`]: WebSocket and HTTP on warp.
//! - [`sidecar`]: `switchyard agent`, the sidecar that runs tasks on an agent's machine.
//! - [`cli`]: the `switchyard` command line.
//! - [`bench`]: `switchyard bench`, a load generator for a running hub.
//! - [`author`]: `switchyard policy new` and `policy build`, for policy crates outside this
//!   repository.
//! - [`wait`]: the shutdown signal and optional deadlines, shared by hub and sidecar.
//! - [`duration`]: durations as people write them (`30s`, `7d`), for flags and files.

pub mod author;
pub mod bench;
pub mod cli;
pub mod duration;
pub mod engine;
pub mod lab;
pub mod policy;
pub mod server;
pub mod sidecar;
pub mod store;
pub mod task;
#[cfg(test)]
mod test_support;
pub mod wait;
pub mod wire;
