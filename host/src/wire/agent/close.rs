//! Why the hub closes an agent's connection: the code and reason of its close frame.

use std::fmt;

/// Every close the hub initiates. Codes and reasons are part of the wire contract
/// (`docs/protocol.md`): agents, and AgentCom's sidecars, may act on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The connection sent nothing for the idle timeout.
    IdleTimeout,
    /// The hub is stopping.
    ShuttingDown,
    /// Too many failed `identify` attempts on one connection (no unbounded token guessing).
    TooManyFailedIdentifies,
    /// The agent's tokens were revoked.
    TokenRevoked,
    /// A frame over the size limit (after a `frame_too_large` error frame).
    FrameTooLarge,
    /// A text frame that is not UTF-8 (after an `invalid_json` error frame). RFC 6455 makes
    /// the receiver fail the connection, and the socket layer reads no further frames after
    /// one, so unlike other bad frames this one cannot be answered and forgotten.
    InvalidUtf8,
    /// A commit failed: every connection is closed and the hub reloads what is on disk.
    StorageUnavailable,
    /// A newer connection identified as the same agent.
    Superseded,
    /// The connection did not identify within the identify timeout (pings do not extend it).
    IdentifyTimeout,
    /// The connection's source address failed to authenticate too often and is refused for a
    /// while (the hub's auth throttle).
    TooManyAuthFailures,
}

impl CloseReason {
    const ALL: [CloseReason; 10] = [
        CloseReason::IdleTimeout,
        CloseReason::ShuttingDown,
        CloseReason::TooManyFailedIdentifies,
        CloseReason::TokenRevoked,
        CloseReason::FrameTooLarge,
        CloseReason::InvalidUtf8,
        CloseReason::StorageUnavailable,
        CloseReason::Superseded,
        CloseReason::IdentifyTimeout,
        CloseReason::TooManyAuthFailures,
    ];

    /// The close frame's code.
    pub const fn code(self) -> u16 {
        match self {
            CloseReason::IdleTimeout => 1000,
            CloseReason::ShuttingDown => 1001,
            CloseReason::TooManyFailedIdentifies
            | CloseReason::TokenRevoked
            | CloseReason::IdentifyTimeout
            | CloseReason::TooManyAuthFailures => 1008,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::FrameTooLarge => 1009,
            CloseReason::StorageUnavailable => 1011,
            CloseReason::Superseded => 4000,
        }
    }

    /// The close frame's reason text.
    pub const fn reason(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ShuttingDown => "hub shutting down",
            CloseReason::TooManyFailedIdentifies => "too many failed identifies",
            CloseReason::TokenRevoked => "token_revoked",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::StorageUnavailable => "storage_unavailable",
            CloseReason::Superseded => "superseded",
            CloseReason::IdentifyTimeout => "identify_timeout",
            CloseReason::TooManyAuthFailures => "too_many_auth_failures",
        }
    }

    /// Reads a close frame the hub sent; `None` for a code and reason this build does not know.
    /// Both must match, since some reasons share a code.
    pub fn parse(code: u16, reason: &str) -> Option<CloseReason> {
        CloseReason::ALL
            .into_iter()
            .find(|known| known.code() == code && known.reason() == reason)
    }
}

/// `1001 hub shutting down`: the code, then the reason.
impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_have_the_wire_code_and_reason() {
        let expected = [
            (CloseReason::IdleTimeout, 1000, "idle_timeout"),
            (CloseReason::ShuttingDown, 1001, "hub shutting down"),
            (
                CloseReason::TooManyFailedIdentifies,
                1008,
                "too many failed identifies",
            ),
            (CloseReason::TokenRevoked, 1008, "token_revoked"),
            (CloseReason::FrameTooLarge, 1009, "frame_too_large"),
            (CloseReason::InvalidUtf8, 1007, "invalid_utf8"),
            (CloseReason::StorageUnavailable, 1011, "storage_unavailable"),
            (CloseReason::Superseded, 4000, "superseded"),
            (CloseReason::IdentifyTimeout, 1008, "identify_timeout"),
            (
                CloseReason::TooManyAuthFailures,
                1008,
                "too_many_auth_failures",
            ),
        ];
        assert_eq!(expected.len(), CloseReason::ALL.len());
        for (close, code, reason) in expected {
            assert_eq!((close.code(), close.reason()), (code, reason));
        }
    }

    #[test]
    fn every_close_parses_back_to_itself() {
        for close in CloseReason::ALL {
            assert_eq!(
                CloseReason::parse(close.code(), close.reason()),
                Some(close)
            );
        }
        assert_eq!(CloseReason::parse(1008, "superseded"), None);
        assert_eq!(CloseReason::parse(1000, ""), None);
    }
}
