//! Everything that crosses a socket: the agent protocol over WebSocket and the bodies of the
//! HTTP API. Frames and bodies are validated here, once; the rest of the hub sees typed values.

pub mod agent;
pub mod events;
pub mod http;
pub mod role;
mod task_id;
mod task_status;
pub mod tenant;

pub use task_id::TaskId;
pub use task_status::TaskStatus;

/// Milliseconds since the Unix epoch: the one clock of the wire protocol.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
