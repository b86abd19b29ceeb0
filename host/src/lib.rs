//! Switchyard: a hub that hands tasks to agents over WebSocket, keeps its queue durably in
//! LMDB, and decides which task goes to which agent with a WebAssembly policy.
//!
//! - [`wire`]: everything that crosses a socket, validated once.
//! - [`core`]: the single owner of scheduling state and its group-commit loop.
//! - [`store`]: LMDB storage.
//! - [`policy`]: the WebAssembly policy host.
//! - [`server`]: WebSocket and HTTP on warp.
//! - [`sidecar`]: `switchyard agent`, the sidecar that runs tasks on an agent's machine.
//! - [`cli`]: the `switchyard` command line.
//! - [`bench`]: `switchyard bench`, a load generator for a running hub.
//! - [`wait`]: the shutdown signal and optional deadlines, shared by hub and sidecar.

pub mod bench;
pub mod cli;
pub mod engine;
pub mod policy;
pub mod server;
pub mod sidecar;
pub mod store;
pub mod task;
pub mod wait;
pub mod wire;
