//! Frames from the hub to an agent.
//!
//! [`ServerMessage`] is every frame the hub writes; [`HubMessage`] is the sidecar's reading of
//! the ones an agent acts on.

use crate::wire::agent::{ErrorCode, Refusal, TaskReport};
use crate::wire::TaskId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most a `task_assign` frame adds to its task's description and metadata (each counted as
/// its JSON): the type, the task id, the generation and the time at their longest, the field
/// names and the punctuation, rounded up. A task within `serve --max-task-bytes` (which counts
/// the description and metadata as JSON, and more) makes a frame within that plus this; `serve`
/// refuses to start unless that fits `--max-frame-bytes`, the frame limit of the fleet.
pub const TASK_ASSIGN_OVERHEAD: usize = 256;

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
        error: ErrorCode,
    },
}

impl ServerMessage {
    pub fn error(code: impl Into<ErrorCode>) -> Self {
        ServerMessage::Error { error: code.into() }
    }

    /// The error frame that refuses an agent's report about a task.
    pub fn report_refused(report: TaskReport, refusal: Refusal) -> Self {
        ServerMessage::error(ErrorCode::TaskReportRefused { report, refusal })
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
        error: ErrorCode,
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

    #[test]
    fn a_task_assign_adds_at_most_its_overhead() {
        let frame = |description: &str, metadata: Value| {
            ServerMessage::TaskAssign {
                task_id: TaskId(u64::MAX).to_string(),
                description: description.into(),
                metadata,
                generation: u64::MAX,
                assigned_at: u64::MAX,
            }
            .to_json()
        };
        let json_len = |value: &Value| serde_json::to_string(value).unwrap().len();
        // Control characters are the costliest to encode (six bytes each, `\u0001`).
        let description = "\u{1}\"é".repeat(1000);
        let metadata = json!({"k\u{2}": ["\u{3}", 1.5e300, null]});
        for (description, metadata) in [("", json!({})), (description.as_str(), metadata)] {
            let content = json_len(&Value::from(description)) + json_len(&metadata);
            let overhead = frame(description, metadata).len() - content;
            assert!(overhead <= TASK_ASSIGN_OVERHEAD, "{overhead}");
        }
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
                ServerMessage::error(ErrorCode::InvalidToken),
                json!({"type": "error", "error": "invalid_token"}),
            ),
            (
                ServerMessage::report_refused(TaskReport::Accepted, Refusal::NotFound),
                json!({"type": "error", "error": "task_accept_failed: not_found"}),
            ),
        ];
        for (message, expected) in cases {
            let text = message.to_json();
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
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
                ServerMessage::report_refused(TaskReport::Complete, Refusal::StaleGeneration),
                HubMessage::Error {
                    error: ErrorCode::TaskReportRefused {
                        report: TaskReport::Complete,
                        refusal: Refusal::StaleGeneration,
                    },
                },
            ),
            (
                ServerMessage::error(ErrorCode::NotIdentified),
                HubMessage::Error {
                    error: ErrorCode::NotIdentified,
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
    fn the_sidecar_reads_every_error_code_the_hub_writes() {
        for code in crate::wire::agent::error::every_code() {
            let sent = ServerMessage::error(code.clone());
            assert_eq!(
                HubMessage::parse(&sent.to_json()).unwrap(),
                HubMessage::Error { error: code }
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
        assert_eq!(
            HubMessage::parse(r#"{"type":"error","error":"brand_new_code"}"#).unwrap(),
            HubMessage::Error {
                error: ErrorCode::Other("brand_new_code".into())
            }
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
