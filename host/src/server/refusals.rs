//! Counts of requests and connections refused by a limit, for `/metrics`
//! (`switchyard_limit_refusals_total{limit=...}`).
//!
//! The refusals happen in places that share nothing else (the accept loop, the WebSocket
//! upgrade, authentication, body reading), so the counts are process-wide atomics: counting is
//! one relaxed add, and nothing needs handing around.

use std::sync::atomic::{AtomicU64, Ordering};

/// A limit that refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `--max-connections`: 503 `too_many_connections`.
    Connections,
    /// `--max-unidentified-per-ip`: 429 `too_many_unidentified_connections`.
    UnidentifiedPerIp,
    /// The authentication throttle: 429 `too_many_auth_failures`, or a WebSocket closed with
    /// `too_many_auth_failures`.
    AuthThrottled,
    /// A size limit: 413 (a body, a task, a batch, a policy component).
    TooLarge,
}

impl Limit {
    pub const ALL: [Limit; 4] = [
        Limit::Connections,
        Limit::UnidentifiedPerIp,
        Limit::AuthThrottled,
        Limit::TooLarge,
    ];

    /// The metric's `limit` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Connections => "connections",
            Limit::UnidentifiedPerIp => "unidentified_per_ip",
            Limit::AuthThrottled => "auth_throttled",
            Limit::TooLarge => "too_large",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

static COUNTS: [AtomicU64; Limit::ALL.len()] = [const { AtomicU64::new(0) }; Limit::ALL.len()];

/// Counts one refusal by `limit`.
pub fn refused(limit: Limit) {
    COUNTS[limit.index()].fetch_add(1, Ordering::Relaxed);
}

/// Refusals by limit since the process started.
pub fn counts() -> impl Iterator<Item = (Limit, u64)> {
    Limit::ALL
        .into_iter()
        .map(|limit| (limit, COUNTS[limit.index()].load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_counts_on_its_own() {
        let before: Vec<u64> = counts().map(|(_, n)| n).collect();
        refused(Limit::TooLarge);
        refused(Limit::TooLarge);
        let after: Vec<u64> = counts().map(|(_, n)| n).collect();
        // Other tests of this process may count too: at least ours landed, on the right one.
        assert!(after[3] >= before[3] + 2);
        for (limit, i) in Limit::ALL.iter().zip(0..) {
            assert_eq!(limit.index(), i);
        }
    }
}
