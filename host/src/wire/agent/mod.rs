//! The agent protocol (`docs/protocol.md`): one JSON object per text frame.
//!
//! Both ends of it live here, the hub's and the agent sidecar's (`switchyard agent`), so they
//! cannot drift apart: every frame, error code and close reason either side speaks is a type in
//! this module, and the sidecar reads back exactly what the hub writes. Field names, error codes
//! and close reasons are AgentCom's wire contract and must not change.
//!
//! - [`client`]: frames from an agent; [`parse_frame`] for the hub, [`ClientMessage::to_json`]
//!   for the sidecar.
//! - [`hub`]: frames from the hub; [`ServerMessage`] for the hub, [`HubMessage`] for the sidecar.
//! - [`error`]: the codes of the `error` frame ([`ErrorCode`]), among them why a report about a
//!   task was refused ([`Refusal`]).
//! - [`close`]: why the hub closes a connection ([`CloseReason`]).

pub mod client;
pub mod close;
pub mod error;
pub mod hub;

pub use client::{parse_frame, ClientMessage, Identify};
pub use close::CloseReason;
pub use error::{ErrorCode, FrameError, Refusal, TaskReport};
pub use hub::{AckStatus, AgentSummary, HubMessage, ServerMessage};
