//! The codes of the `{"type":"error","error":...}` frame, as types.
//!
//! The hub writes these codes and the sidecar reads them back; both go through [`ErrorCode`], so
//! neither side spells a code by hand. The texts are AgentCom's wire contract
//! (`docs/protocol.md`) and must not change: [`ErrorCode::parse`] reads back exactly what
//! `Display` writes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Why an agent's report about a task was refused, checked in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.as_str())]
pub enum Refusal {
    /// No such task.
    NotFound,
    /// The task is not assigned to anyone (queued, or finished).
    InvalidState,
    /// The task is assigned to another agent.
    NotAssignee,
    /// The task is assigned to this agent, at another generation.
    StaleGeneration,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::NotFound,
        Refusal::InvalidState,
        Refusal::NotAssignee,
        Refusal::StaleGeneration,
    ];

    /// The reason's text on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::InvalidState => "invalid_state",
            Refusal::NotAssignee => "not_assignee",
            Refusal::StaleGeneration => "stale_generation",
        }
    }

    fn parse(text: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Why a frame was refused before it reached the hub's engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.as_str())]
pub enum FrameError {
    /// A binary frame, invalid JSON, or JSON that is not an object.
    InvalidJson,
    /// An unknown `type`, or a known one missing a required field.
    UnknownMessageType,
    /// Over the frame size limit; the connection is then closed with
    /// [`CloseReason::FrameTooLarge`](super::CloseReason::FrameTooLarge).
    FrameTooLarge,
}

impl FrameError {
    const ALL: [FrameError; 3] = [
        FrameError::InvalidJson,
        FrameError::UnknownMessageType,
        FrameError::FrameTooLarge,
    ];

    /// The code's text on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            FrameError::InvalidJson => "invalid_json",
            FrameError::UnknownMessageType => "unknown_message_type",
            FrameError::FrameTooLarge => "frame_too_large",
        }
    }

    fn parse(text: &str) -> Option<FrameError> {
        FrameError::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// The agent's reports about its task that the hub can refuse (with a [`Refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskReport {
    /// `task_accepted`
    Accepted,
    /// `task_complete`
    Complete,
    /// `task_failed`
    Failed,
    /// `task_rejected`
    Rejected,
}

impl TaskReport {
    const ALL: [TaskReport; 4] = [
        TaskReport::Accepted,
        TaskReport::Complete,
        TaskReport::Failed,
        TaskReport::Rejected,
    ];

    /// What the error code of a refused report starts with (before `": "` and the reason).
    pub const fn refused_prefix(self) -> &'static str {
        match self {
            TaskReport::Accepted => "task_accept_failed",
            TaskReport::Complete => "task_complete_failed",
            TaskReport::Failed => "task_fail_failed",
            TaskReport::Rejected => "task_reject_failed",
        }
    }

    fn from_refused_prefix(text: &str) -> Option<TaskReport> {
        TaskReport::ALL
            .into_iter()
            .find(|r| r.refused_prefix() == text)
    }
}

/// The `error` of an error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame itself was refused.
    Frame(FrameError),
    /// A frame other than `identify` before the connection identified.
    NotIdentified,
    /// `identify` with a token that is unknown or being revoked.
    InvalidToken,
    /// `identify` with another agent's token.
    TokenAgentMismatch,
    /// `identify` with a client token: clients submit and read tasks over HTTP, they never run
    /// them.
    ClientTokenCannotIdentify,
    /// `identify` while the hub cannot read its tokens.
    StorageUnavailable,
    /// `identify` naming more capabilities than the hub takes (`serve --max-capabilities`).
    TooManyCapabilities,
    /// `identify` with a capability name longer than the hub takes
    /// (`serve --max-capability-bytes`).
    CapabilityNameTooLong,
    /// A report about a task was refused: `task_complete_failed: stale_generation` and the like.
    TaskReportRefused {
        report: TaskReport,
        refusal: Refusal,
    },
    /// A code this build does not know, as it was sent (a newer hub may add codes).
    Other(String),
}

impl ErrorCode {
    /// Reads an error code as the hub writes it. Never fails: what is not known is
    /// [`ErrorCode::Other`].
    pub fn parse(text: &str) -> ErrorCode {
        let fixed = match text {
            "not_identified" => Some(ErrorCode::NotIdentified),
            "invalid_token" => Some(ErrorCode::InvalidToken),
            "token_agent_mismatch" => Some(ErrorCode::TokenAgentMismatch),
            "client_token_cannot_identify" => Some(ErrorCode::ClientTokenCannotIdentify),
            "storage_unavailable" => Some(ErrorCode::StorageUnavailable),
            "too_many_capabilities" => Some(ErrorCode::TooManyCapabilities),
            "capability_name_too_long" => Some(ErrorCode::CapabilityNameTooLong),
            _ => FrameError::parse(text).map(ErrorCode::Frame),
        };
        fixed
            .or_else(|| {
                let (prefix, reason) = text.split_once(": ")?;
                Some(ErrorCode::TaskReportRefused {
                    report: TaskReport::from_refused_prefix(prefix)?,
                    refusal: Refusal::parse(reason)?,
                })
            })
            .unwrap_or_else(|| ErrorCode::Other(text.to_owned()))
    }
}

impl ErrorCode {
    /// The `code` label of the hub's count of refused frames: the fixed part of each code
    /// (a refused report by its prefix, without the reason). [`ErrorCode::label`] gives one.
    pub const LABELS: [&'static str; 15] = [
        FrameError::InvalidJson.as_str(),
        FrameError::UnknownMessageType.as_str(),
        FrameError::FrameTooLarge.as_str(),
        "not_identified",
        "invalid_token",
        "token_agent_mismatch",
        "client_token_cannot_identify",
        "storage_unavailable",
        "too_many_capabilities",
        "capability_name_too_long",
        TaskReport::Accepted.refused_prefix(),
        TaskReport::Complete.refused_prefix(),
        TaskReport::Failed.refused_prefix(),
        TaskReport::Rejected.refused_prefix(),
        "other",
    ];

    /// This code's entry in [`ErrorCode::LABELS`].
    pub fn label(&self) -> &'static str {
        match self {
            ErrorCode::Frame(error) => error.as_str(),
            ErrorCode::NotIdentified => "not_identified",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenAgentMismatch => "token_agent_mismatch",
            ErrorCode::ClientTokenCannotIdentify => "client_token_cannot_identify",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::TooManyCapabilities => "too_many_capabilities",
            ErrorCode::CapabilityNameTooLong => "capability_name_too_long",
            ErrorCode::TaskReportRefused { report, .. } => report.refused_prefix(),
            ErrorCode::Other(_) => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Frame(error) => f.write_str(error.as_str()),
            ErrorCode::NotIdentified => f.write_str("not_identified"),
            ErrorCode::InvalidToken => f.write_str("invalid_token"),
            ErrorCode::TokenAgentMismatch => f.write_str("token_agent_mismatch"),
            ErrorCode::ClientTokenCannotIdentify => f.write_str("client_token_cannot_identify"),
            ErrorCode::StorageUnavailable => f.write_str("storage_unavailable"),
            ErrorCode::TooManyCapabilities => f.write_str("too_many_capabilities"),
            ErrorCode::CapabilityNameTooLong => f.write_str("capability_name_too_long"),
            ErrorCode::TaskReportRefused { report, refusal } => {
                write!(f, "{}: {}", report.refused_prefix(), refusal.as_str())
            }
            ErrorCode::Other(text) => f.write_str(text),
        }
    }
}

impl From<FrameError> for ErrorCode {
    fn from(error: FrameError) -> ErrorCode {
        ErrorCode::Frame(error)
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ErrorCode, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&text))
    }
}

/// Every code the hub can send (for the round-trip tests here and in [`hub`](super::hub)).
#[cfg(test)]
pub(super) fn every_code() -> Vec<ErrorCode> {
    let mut codes = vec![
        ErrorCode::NotIdentified,
        ErrorCode::InvalidToken,
        ErrorCode::TokenAgentMismatch,
        ErrorCode::ClientTokenCannotIdentify,
        ErrorCode::StorageUnavailable,
        ErrorCode::TooManyCapabilities,
        ErrorCode::CapabilityNameTooLong,
    ];
    codes.extend(FrameError::ALL.map(ErrorCode::Frame));
    for report in TaskReport::ALL {
        for refusal in Refusal::ALL {
            codes.push(ErrorCode::TaskReportRefused { report, refusal });
        }
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_to_itself() {
        let codes = every_code();
        assert_eq!(codes.len(), 7 + 3 + 16);
        for code in codes {
            assert_eq!(ErrorCode::parse(&code.to_string()), code, "{code}");
        }
    }

    #[test]
    fn every_code_has_a_label_in_the_fixed_set() {
        let codes = [
            ErrorCode::Frame(FrameError::FrameTooLarge),
            ErrorCode::NotIdentified,
            ErrorCode::CapabilityNameTooLong,
            ErrorCode::TaskReportRefused {
                report: TaskReport::Rejected,
                refusal: Refusal::NotAssignee,
            },
            ErrorCode::Other("new_code".into()),
        ];
        for code in codes {
            assert!(ErrorCode::LABELS.contains(&code.label()), "{code}");
            // A label is the code's text, or the start of it.
            if !matches!(code, ErrorCode::Other(_)) {
                assert!(code.to_string().starts_with(code.label()), "{code}");
            }
        }
    }

    #[test]
    fn codes_have_the_wire_text() {
        let cases = [
            (FrameError::InvalidJson.into(), "invalid_json"),
            (
                FrameError::UnknownMessageType.into(),
                "unknown_message_type",
            ),
            (FrameError::FrameTooLarge.into(), "frame_too_large"),
            (ErrorCode::NotIdentified, "not_identified"),
            (ErrorCode::InvalidToken, "invalid_token"),
            (ErrorCode::TokenAgentMismatch, "token_agent_mismatch"),
            (
                ErrorCode::ClientTokenCannotIdentify,
                "client_token_cannot_identify",
            ),
            (ErrorCode::StorageUnavailable, "storage_unavailable"),
            (
                ErrorCode::TaskReportRefused {
                    report: TaskReport::Accepted,
                    refusal: Refusal::NotFound,
                },
                "task_accept_failed: not_found",
            ),
            (
                ErrorCode::TaskReportRefused {
                    report: TaskReport::Complete,
                    refusal: Refusal::StaleGeneration,
                },
                "task_complete_failed: stale_generation",
            ),
            (
                ErrorCode::TaskReportRefused {
                    report: TaskReport::Failed,
                    refusal: Refusal::InvalidState,
                },
                "task_fail_failed: invalid_state",
            ),
            (
                ErrorCode::TaskReportRefused {
                    report: TaskReport::Rejected,
                    refusal: Refusal::NotAssignee,
                },
                "task_reject_failed: not_assignee",
            ),
        ];
        for (code, text) in cases {
            assert_eq!(code.to_string(), text);
            assert_eq!(
                serde_json::to_value(&code).unwrap(),
                serde_json::json!(text)
            );
        }
    }

    #[test]
    fn unknown_codes_are_kept_as_sent() {
        for text in [
            "",
            "brand_new_code",
            "task_complete_failed: a_new_reason",
            "task_dance_failed: not_found",
            "task_complete_failed:not_found",
            "task_complete_failed: not_found ",
        ] {
            let code = ErrorCode::parse(text);
            assert_eq!(code, ErrorCode::Other(text.to_owned()));
            assert_eq!(code.to_string(), text);
        }
    }
}
