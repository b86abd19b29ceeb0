//! The agent protocol (`spec/agent-protocol.md`): one JSON object per text frame.
//!
//! [`parse_frame`] turns a frame into a [`ClientMessage`] or the exact protocol error to send
//! back; [`ServerMessage`] is every frame the hub sends. Field names and error strings are
//! AgentCom's wire contract and must not change.

use serde::Serialize;
use serde_json::{Map, Value};

/// A frame from an agent, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Identify(Identify),
    Ping,
    /// `generation` is optional here; when given it must match.
    TaskAccepted {
        task_id: String,
        generation: Option<u64>,
    },
    /// A sign of life for the task's lease; never answered.
    TaskProgress {
        task_id: String,
    },
    TaskComplete {
        task_id: String,
        /// A missing generation counts as 0, which never matches an assigned task.
        generation: u64,
        result: Value,
        tokens_used: Option<u64>,
    },
    TaskFailed {
        task_id: String,
        generation: u64,
        error: String,
    },
    TaskRejected {
        task_id: String,
        reason: Option<String>,
    },
    TaskRecovering {
        task_id: String,
    },
    Status {
        status: Value,
    },
    ListAgents,
}

/// The `identify` handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct Identify {
    pub agent_id: String,
    pub token: String,
    pub name: Option<String>,
    pub status: Option<Value>,
    /// Capability names; an object capability contributes its `name`.
    pub capabilities: Vec<String>,
}

/// Why a frame was refused before it reached the hub's core. `as_str` is the wire error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A binary frame, invalid JSON, or JSON that is not an object.
    #[error("invalid_json")]
    InvalidJson,
    /// An unknown `type`, or a known one missing a required field.
    #[error("unknown_message_type")]
    UnknownMessageType,
    /// Over the frame size limit; the connection is closed with 1009 after the reply.
    #[error("frame_too_large")]
    FrameTooLarge,
}

impl FrameError {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameError::InvalidJson => "invalid_json",
            FrameError::UnknownMessageType => "unknown_message_type",
            FrameError::FrameTooLarge => "frame_too_large",
        }
    }
}

/// Parses one text frame.
pub fn parse_frame(text: &str) -> Result<ClientMessage, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|_| FrameError::InvalidJson)?;
    let Value::Object(fields) = value else {
        return Err(FrameError::InvalidJson);
    };
    parse_message(&fields).ok_or(FrameError::UnknownMessageType)
}

fn parse_message(fields: &Map<String, Value>) -> Option<ClientMessage> {
    let message = match str_field(fields, "type")? {
        "identify" => ClientMessage::Identify(Identify {
            agent_id: str_field(fields, "agent_id")?.to_owned(),
            token: str_field(fields, "token")?.to_owned(),
            name: str_field(fields, "name").map(str::to_owned),
            status: fields.get("status").cloned(),
            capabilities: capabilities(fields.get("capabilities")),
        }),
        "ping" => ClientMessage::Ping,
        "task_accepted" => ClientMessage::TaskAccepted {
            task_id: task_id(fields)?,
            generation: generation(fields),
        },
        "task_progress" => ClientMessage::TaskProgress {
            task_id: task_id(fields)?,
        },
        "task_complete" => {
            let result = fields
                .get("result")
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            let tokens_used = fields
                .get("tokens_used")
                .and_then(Value::as_u64)
                .or_else(|| result.get("tokens_used").and_then(Value::as_u64));
            ClientMessage::TaskComplete {
                task_id: task_id(fields)?,
                generation: generation(fields).unwrap_or(0),
                result,
                tokens_used,
            }
        }
        "task_failed" => ClientMessage::TaskFailed {
            task_id: task_id(fields)?,
            generation: generation(fields).unwrap_or(0),
            error: str_field(fields, "error")
                .or_else(|| str_field(fields, "reason"))
                .unwrap_or("unknown")
                .to_owned(),
        },
        "task_rejected" => ClientMessage::TaskRejected {
            task_id: task_id(fields)?,
            reason: str_field(fields, "reason").map(str::to_owned),
        },
        "task_recovering" => ClientMessage::TaskRecovering {
            task_id: task_id(fields)?,
        },
        "status" => ClientMessage::Status {
            status: fields.get("status")?.clone(),
        },
        "list_agents" => ClientMessage::ListAgents,
        _ => return None,
    };
    Some(message)
}

fn str_field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    fields.get(name)?.as_str()
}

fn task_id(fields: &Map<String, Value>) -> Option<String> {
    str_field(fields, "task_id").map(str::to_owned)
}

fn generation(fields: &Map<String, Value>) -> Option<u64> {
    fields.get("generation")?.as_u64()
}

/// `capabilities` is a list of names or of objects with a `name`; other entries are ignored.
fn capabilities(value: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(name) => Some(name.clone()),
            Value::Object(object) => object.get("name")?.as_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// Every frame the hub sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Identified {
        agent_id: String,
    },
    Pong {
        timestamp: u64,
    },
    TaskAck {
        task_id: String,
        status: AckStatus,
    },
    TaskAssign {
        task_id: String,
        description: String,
        metadata: Value,
        generation: u64,
        assigned_at: u64,
    },
    TaskCancel {
        task_id: String,
        generation: u64,
    },
    TaskContinue {
        task_id: String,
        generation: u64,
    },
    TaskReassign {
        task_id: String,
    },
    StatusUpdated,
    Agents {
        agents: Vec<AgentSummary>,
    },
    Error {
        error: String,
    },
}

impl ServerMessage {
    pub fn error(error: impl Into<String>) -> Self {
        ServerMessage::Error {
            error: error.into(),
        }
    }

    /// The frame's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

/// The `status` of a `task_ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Accepted,
    Complete,
    Retried,
    DeadLetter,
    Rejected,
}

/// One agent in `list_agents` and `GET /api/agents`. The last two fields are the HTTP API's only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSummary {
    pub agent_id: String,
    pub name: String,
    pub status: Value,
    pub capabilities: Vec<String>,
    pub connected_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsm_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_task_id: Option<Option<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<ClientMessage, FrameError> {
        parse_frame(&value.to_string())
    }

    #[test]
    fn identify_takes_defaults_and_object_capabilities() {
        let message = parse(json!({
            "type": "identify", "agent_id": "a1", "token": "t",
            "protocol_version": 1, "client_type": "sidecar",
            "capabilities": ["rust", {"name": "gpu", "vram": 24}, 7]
        }))
        .unwrap();
        assert_eq!(
            message,
            ClientMessage::Identify(Identify {
                agent_id: "a1".into(),
                token: "t".into(),
                name: None,
                status: None,
                capabilities: vec!["rust".into(), "gpu".into()],
            })
        );
    }

    #[test]
    fn bad_frames_get_the_spec_errors() {
        assert_eq!(parse_frame("{"), Err(FrameError::InvalidJson));
        assert_eq!(parse_frame("[1,2]"), Err(FrameError::InvalidJson));
        assert_eq!(parse_frame("\"ping\""), Err(FrameError::InvalidJson));
        assert_eq!(
            parse(json!({"type": "dance"})),
            Err(FrameError::UnknownMessageType)
        );
        assert_eq!(
            parse(json!({"no": "type"})),
            Err(FrameError::UnknownMessageType)
        );
        assert_eq!(
            parse(json!({"type": 3})),
            Err(FrameError::UnknownMessageType)
        );
        assert_eq!(
            parse(json!({"type": "task_complete", "generation": 1})),
            Err(FrameError::UnknownMessageType)
        );
        assert_eq!(
            parse(json!({"type": "identify", "agent_id": "a"})),
            Err(FrameError::UnknownMessageType)
        );
        assert_eq!(
            parse(json!({"type": "status"})),
            Err(FrameError::UnknownMessageType)
        );
    }

    #[test]
    fn task_complete_defaults() {
        let message = parse(json!({"type": "task_complete", "task_id": "t"})).unwrap();
        assert_eq!(
            message,
            ClientMessage::TaskComplete {
                task_id: "t".into(),
                generation: 0,
                result: json!({}),
                tokens_used: None
            }
        );
        let message = parse(json!({
            "type": "task_complete", "task_id": "t", "generation": 4,
            "result": {"tokens_used": 12, "text": "done"}
        }))
        .unwrap();
        let ClientMessage::TaskComplete {
            generation,
            tokens_used,
            ..
        } = message
        else {
            panic!("not a task_complete");
        };
        assert_eq!((generation, tokens_used), (4, Some(12)));
    }

    #[test]
    fn task_failed_takes_error_or_reason() {
        let from = |value| match parse(value).unwrap() {
            ClientMessage::TaskFailed { error, .. } => error,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            from(json!({"type": "task_failed", "task_id": "t", "error": "boom"})),
            "boom"
        );
        assert_eq!(
            from(json!({"type": "task_failed", "task_id": "t", "reason": "oom"})),
            "oom"
        );
        assert_eq!(
            from(json!({"type": "task_failed", "task_id": "t"})),
            "unknown"
        );
    }

    #[test]
    fn server_messages_have_the_wire_shape() {
        let cases = [
            (
                ServerMessage::Identified {
                    agent_id: "a".into(),
                },
                json!({"type": "identified", "agent_id": "a"}),
            ),
            (
                ServerMessage::Pong { timestamp: 5 },
                json!({"type": "pong", "timestamp": 5}),
            ),
            (
                ServerMessage::TaskAck {
                    task_id: "t".into(),
                    status: AckStatus::DeadLetter,
                },
                json!({"type": "task_ack", "task_id": "t", "status": "dead_letter"}),
            ),
            (
                ServerMessage::TaskAssign {
                    task_id: "t".into(),
                    description: "d".into(),
                    metadata: json!({}),
                    generation: 1,
                    assigned_at: 9,
                },
                json!({"type": "task_assign", "task_id": "t", "description": "d",
                       "metadata": {}, "generation": 1, "assigned_at": 9}),
            ),
            (
                ServerMessage::TaskCancel {
                    task_id: "t".into(),
                    generation: 2,
                },
                json!({"type": "task_cancel", "task_id": "t", "generation": 2}),
            ),
            (
                ServerMessage::TaskContinue {
                    task_id: "t".into(),
                    generation: 2,
                },
                json!({"type": "task_continue", "task_id": "t", "generation": 2}),
            ),
            (
                ServerMessage::TaskReassign {
                    task_id: "t".into(),
                },
                json!({"type": "task_reassign", "task_id": "t"}),
            ),
            (
                ServerMessage::StatusUpdated,
                json!({"type": "status_updated"}),
            ),
            (
                ServerMessage::error("invalid_token"),
                json!({"type": "error", "error": "invalid_token"}),
            ),
        ];
        for (message, expected) in cases {
            let text = message.to_json();
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        }
    }

    #[test]
    fn list_agents_omits_http_only_fields() {
        let message = ServerMessage::Agents {
            agents: vec![AgentSummary {
                agent_id: "a".into(),
                name: "A".into(),
                status: Value::Null,
                capabilities: vec![],
                connected_at: Some(3),
                fsm_state: None,
                current_task_id: None,
            }],
        };
        assert_eq!(
            serde_json::from_str::<Value>(&message.to_json()).unwrap(),
            json!({"type": "agents", "agents": [
                {"agent_id": "a", "name": "A", "status": null, "capabilities": [], "connected_at": 3}
            ]})
        );
    }
}
