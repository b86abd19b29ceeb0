//! Frames from an agent to the hub.
//!
//! [`parse_frame`] is the hub's reading of a frame: a [`ClientMessage`], or the [`FrameError`] to
//! answer with. [`ClientMessage::to_json`] is the sidecar's writing of one, which
//! [`parse_frame`] reads back unchanged.

use crate::wire::agent::FrameError;
use serde_json::{json, Map, Value};

/// A frame from an agent, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Identify(Identify),
    Ping,
    /// `generation` is optional here; when given it must match (a malformed one never does).
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
        /// A missing or malformed generation is [`UNASSIGNED_GENERATION`], which never matches.
        generation: u64,
        result: Value,
        tokens_used: Option<u64>,
    },
    TaskFailed {
        task_id: String,
        /// As in `TaskComplete`.
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
                generation: generation(fields).unwrap_or(UNASSIGNED_GENERATION),
                result,
                tokens_used,
            }
        }
        "task_failed" => ClientMessage::TaskFailed {
            task_id: task_id(fields)?,
            generation: generation(fields).unwrap_or(UNASSIGNED_GENERATION),
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

/// A task's generation before its first assignment. No assignment has it (assigning makes a
/// task's generation at least 1), so a report that names it is always refused with
/// `stale_generation`: a report whose generation is malformed, or missing where it is
/// required, is read as naming this one.
pub const UNASSIGNED_GENERATION: u64 = 0;

/// A report's `generation`: `None` when it is absent, or `null` (how many JSON encoders write
/// an optional field that is not set). A value that is not a JSON integer from 0 to 2^64 - 1
/// (`-1`, `"1"`, `1.5`, `2^64`) cannot be the task's generation, so it is read as
/// [`UNASSIGNED_GENERATION`], never as "no generation given": the report is refused just as a
/// well-formed wrong number is, and in the same order of checks.
fn generation(fields: &Map<String, Value>) -> Option<u64> {
    match fields.get("generation")? {
        Value::Null => None,
        given => Some(given.as_u64().unwrap_or(UNASSIGNED_GENERATION)),
    }
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

    /// A malformed generation is refused like a wrong one (issue 11, item 12): it reads as
    /// the generation no assignment has, never as "none given".
    #[test]
    fn malformed_generations_never_match() {
        let generation_of = |text: &str| match parse_frame(text).unwrap() {
            ClientMessage::TaskAccepted { generation, .. } => generation,
            ClientMessage::TaskComplete { generation, .. }
            | ClientMessage::TaskFailed { generation, .. } => Some(generation),
            other => panic!("{other:?}"),
        };
        for malformed in [
            "-1",
            "\"1\"",
            "1.5",
            "1.0",
            "18446744073709551616",
            "[1]",
            "true",
        ] {
            for kind in ["task_accepted", "task_complete", "task_failed"] {
                let text = format!(r#"{{"type":"{kind}","task_id":"t","generation":{malformed}}}"#);
                assert_eq!(generation_of(&text), Some(UNASSIGNED_GENERATION), "{text}");
            }
        }
        let largest = r#"{"type":"task_accepted","task_id":"t","generation":18446744073709551615}"#;
        assert_eq!(generation_of(largest), Some(u64::MAX));
        for absent in [
            r#"{"type":"task_accepted","task_id":"t"}"#,
            r#"{"type":"task_accepted","task_id":"t","generation":null}"#,
        ] {
            assert_eq!(generation_of(absent), None, "{absent}");
        }
        let complete = r#"{"type":"task_complete","task_id":"t","generation":null}"#;
        assert_eq!(generation_of(complete), Some(UNASSIGNED_GENERATION));
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

    /// Found by the agent frame fuzz target: with serde_json's default number parser, a float of
    /// many digits read, written and read again came back one unit in the last place off, so
    /// the sidecar's writing of a frame was not read back unchanged (and a result's float
    /// changed on its way into the store).
    #[test]
    fn floats_read_back_unchanged() {
        let frame = r#"{"type":"identify","agent_id":"a1","token":"t","status":{"load":0.123456789412345678901234567890}}"#;
        let message = parse_frame(frame).unwrap();
        assert_eq!(parse_frame(&message.to_json()).unwrap(), message);
        let complete = parse(
            json!({"type": "task_complete", "task_id": "t", "generation": 1,
                                    "result": {"x": 0.12345678941234567}}),
        )
        .unwrap();
        assert_eq!(parse_frame(&complete.to_json()).unwrap(), complete);
    }
}
