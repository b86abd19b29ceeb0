//! The agent protocol (`spec/agent-protocol.md`): one JSON object per text frame.
//!
//! [`parse_frame`] turns a frame into a [`ClientMessage`] or the exact protocol error to send
//! back; [`ServerMessage`] is every frame the hub sends. Field names and error strings are
//! AgentCom's wire contract and must not change.
//!
//! The other direction is here too, for the agent sidecar (`switchyard agent`):
//! [`ClientMessage::to_json`] writes a frame the hub's [`parse_frame`] reads back unchanged, and
//! [`HubMessage`] reads what the hub sends. Both sides share this one module so they cannot
//! drift apart.

use crate::wire::TaskId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Why an agent's report about a task was refused, checked in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not_found")]
    NotFound,
    #[error("invalid_state")]
    InvalidState,
    #[error("not_assignee")]
    NotAssignee,
    #[error("stale_generation")]
    StaleGeneration,
}

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

impl ClientMessage {
    /// The frame's text, as an agent sends it. [`parse_frame`] reads it back as `self`.
    pub fn to_json(&self) -> String {
        let value = match self {
            ClientMessage::Identify(identify) => {
                let mut fields = json!({
                    "type": "identify",
                    "agent_id": identify.agent_id,
                    "token": identify.token,
                    "capabilities": identify.capabilities,
                });
                if let Some(name) = &identify.name {
                    fields["name"] = json!(name);
                }
                if let Some(status) = &identify.status {
                    fields["status"] = status.clone();
                }
                fields
            }
            ClientMessage::Ping => json!({"type": "ping"}),
            ClientMessage::TaskAccepted {
                task_id,
                generation,
            } => match generation {
                Some(generation) => {
                    json!({"type": "task_accepted", "task_id": task_id, "generation": generation})
                }
                None => json!({"type": "task_accepted", "task_id": task_id}),
            },
            ClientMessage::TaskProgress { task_id } => {
                json!({"type": "task_progress", "task_id": task_id})
            }
            ClientMessage::TaskComplete {
                task_id,
                generation,
                result,
                tokens_used,
            } => {
                let mut fields = json!({
                    "type": "task_complete", "task_id": task_id,
                    "generation": generation, "result": result,
                });
                if let Some(tokens_used) = tokens_used {
                    fields["tokens_used"] = json!(tokens_used);
                }
                fields
            }
            ClientMessage::TaskFailed {
                task_id,
                generation,
                error,
            } => json!({
                "type": "task_failed", "task_id": task_id,
                "generation": generation, "error": error,
            }),
            ClientMessage::TaskRejected { task_id, reason } => match reason {
                Some(reason) => {
                    json!({"type": "task_rejected", "task_id": task_id, "reason": reason})
                }
                None => json!({"type": "task_rejected", "task_id": task_id}),
            },
            ClientMessage::TaskRecovering { task_id } => {
                json!({"type": "task_recovering", "task_id": task_id})
            }
            ClientMessage::Status { status } => json!({"type": "status", "status": status}),
            ClientMessage::ListAgents => json!({"type": "list_agents"}),
        };
        value.to_string()
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Accepted,
    Complete,
    Retried,
    DeadLetter,
    Rejected,
}

/// A frame from the hub, as the agent sidecar reads it: the [`ServerMessage`]s an agent acts on.
/// Task ids are checked here, once; frames of any other type (`agents`, `status_updated`, or a
/// type a newer hub adds) are [`HubMessage::Other`], which an agent may ignore.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubMessage {
    Identified {
        agent_id: String,
    },
    Pong {
        #[serde(default)]
        timestamp: u64,
    },
    TaskAck {
        task_id: TaskId,
        status: AckStatus,
    },
    TaskAssign {
        task_id: TaskId,
        #[serde(default)]
        description: String,
        #[serde(default = "empty_object")]
        metadata: Value,
        generation: u64,
        #[serde(default)]
        assigned_at: u64,
    },
    TaskCancel {
        task_id: TaskId,
        #[serde(default)]
        generation: u64,
    },
    TaskContinue {
        task_id: TaskId,
        generation: u64,
    },
    TaskReassign {
        task_id: TaskId,
    },
    Error {
        error: String,
    },
    #[serde(other)]
    Other,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl HubMessage {
    /// Parses one text frame from the hub.
    pub fn parse(text: &str) -> Result<HubMessage, serde_json::Error> {
        serde_json::from_str(text)
    }
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
    /// How often another connection with this agent id replaced this agent's (HTTP only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacements: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_replaced_at: Option<u64>,
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
    fn client_messages_round_trip_through_the_hub_parser() {
        let messages = [
            ClientMessage::Identify(Identify {
                agent_id: "a1".into(),
                token: "t".into(),
                name: Some("A one".into()),
                status: Some(json!("idle")),
                capabilities: vec!["rust".into(), "gpu".into()],
            }),
            ClientMessage::Identify(Identify {
                agent_id: "a2".into(),
                token: "t".into(),
                name: None,
                status: None,
                capabilities: vec![],
            }),
            ClientMessage::Ping,
            ClientMessage::TaskAccepted {
                task_id: "t".into(),
                generation: Some(3),
            },
            ClientMessage::TaskAccepted {
                task_id: "t".into(),
                generation: None,
            },
            ClientMessage::TaskProgress {
                task_id: "t".into(),
            },
            ClientMessage::TaskComplete {
                task_id: "t".into(),
                generation: 2,
                result: json!({"output": "$(rm -rf /) `x` \"q\""}),
                tokens_used: Some(7),
            },
            ClientMessage::TaskComplete {
                task_id: "t".into(),
                generation: 2,
                result: json!([1, 2]),
                tokens_used: None,
            },
            ClientMessage::TaskFailed {
                task_id: "t".into(),
                generation: 1,
                error: "exit code 3: boom".into(),
            },
            ClientMessage::TaskRejected {
                task_id: "t".into(),
                reason: Some("busy".into()),
            },
            ClientMessage::TaskRejected {
                task_id: "t".into(),
                reason: None,
            },
            ClientMessage::TaskRecovering {
                task_id: "t".into(),
            },
            ClientMessage::Status {
                status: json!({"load": 1}),
            },
            ClientMessage::ListAgents,
        ];
        for message in messages {
            assert_eq!(
                parse_frame(&message.to_json()),
                Ok(message.clone()),
                "{message:?}"
            );
        }
    }

    #[test]
    fn hub_messages_read_what_the_hub_writes() {
        let id = TaskId(0x2a);
        let wire = id.to_string();
        let cases = [
            (
                ServerMessage::Identified {
                    agent_id: "a".into(),
                },
                HubMessage::Identified {
                    agent_id: "a".into(),
                },
            ),
            (
                ServerMessage::Pong { timestamp: 5 },
                HubMessage::Pong { timestamp: 5 },
            ),
            (
                ServerMessage::TaskAck {
                    task_id: wire.clone(),
                    status: AckStatus::Retried,
                },
                HubMessage::TaskAck {
                    task_id: id,
                    status: AckStatus::Retried,
                },
            ),
            (
                ServerMessage::TaskAssign {
                    task_id: wire.clone(),
                    description: "d".into(),
                    metadata: json!({"k": 1}),
                    generation: 4,
                    assigned_at: 9,
                },
                HubMessage::TaskAssign {
                    task_id: id,
                    description: "d".into(),
                    metadata: json!({"k": 1}),
                    generation: 4,
                    assigned_at: 9,
                },
            ),
            (
                ServerMessage::TaskCancel {
                    task_id: wire.clone(),
                    generation: 2,
                },
                HubMessage::TaskCancel {
                    task_id: id,
                    generation: 2,
                },
            ),
            (
                ServerMessage::TaskContinue {
                    task_id: wire.clone(),
                    generation: 2,
                },
                HubMessage::TaskContinue {
                    task_id: id,
                    generation: 2,
                },
            ),
            (
                ServerMessage::TaskReassign {
                    task_id: wire.clone(),
                },
                HubMessage::TaskReassign { task_id: id },
            ),
            (ServerMessage::StatusUpdated, HubMessage::Other),
            (ServerMessage::Agents { agents: vec![] }, HubMessage::Other),
            (
                ServerMessage::error("task_complete_failed: stale_generation"),
                HubMessage::Error {
                    error: "task_complete_failed: stale_generation".into(),
                },
            ),
        ];
        for (sent, expected) in cases {
            assert_eq!(
                HubMessage::parse(&sent.to_json()).unwrap(),
                expected,
                "{sent:?}"
            );
        }
    }

    #[test]
    fn hub_messages_take_defaults_and_refuse_bad_ids() {
        let assign = HubMessage::parse(
            r#"{"type":"task_assign","task_id":"task-0000000000000001","generation":1,"extra":true}"#,
        )
        .unwrap();
        assert_eq!(
            assign,
            HubMessage::TaskAssign {
                task_id: TaskId(1),
                description: String::new(),
                metadata: json!({}),
                generation: 1,
                assigned_at: 0,
            }
        );
        assert_eq!(
            HubMessage::parse(r#"{"type":"brand_new"}"#).unwrap(),
            HubMessage::Other
        );
        assert!(HubMessage::parse(r#"{"type":"task_reassign","task_id":"../etc"}"#).is_err());
        assert!(
            HubMessage::parse(r#"{"type":"task_assign","task_id":"task-0000000000000001"}"#)
                .is_err()
        );
        assert!(HubMessage::parse("[]").is_err());
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
                replacements: None,
                last_replaced_at: None,
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
