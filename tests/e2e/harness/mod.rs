//! Shared test harness: start the real `switchyard` binary, talk to it over HTTP and WebSocket.
//!
//! Nothing here sleeps in place of synchronisation: every wait is for an event (a frame, a line
//! on stdout, a state visible over HTTP) and is bounded by a deadline that fails the test with a
//! message saying what was awaited and what was last seen.

pub mod agent;
pub mod api;
pub mod browser;
pub mod hub;
pub mod policy;
pub mod worker;

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use agent::{Agent, Assign};
pub use hub::{Hub, HubOpts};
pub use policy::{failure_counters, policy_counter, policy_file, skip_unless_default_policy};
pub use worker::{
    assert_each_completed_once, assignments_in_order, Crew, WorkerOpts, WorkerReport,
};

/// How long a single expected frame may take to arrive.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a state change visible over HTTP may take to appear.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(20);
/// Interval between two probes of a polled condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Probes `probe` every [`POLL_INTERVAL`] until it returns `Ok`, for at most `timeout`.
/// `Err` carries a description of the last observation, reported if the deadline passes.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("(never probed)");
    let mut probes = 0u64;
    while Instant::now() < deadline {
        probes += 1;
        match probe().await {
            Ok(v) => return v,
            Err(seen) => last = seen,
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
    panic!("timed out after {timeout:?} ({probes} probes) waiting for {what}; last seen: {last}");
}

/// The number of `completed` events in a task's history.
pub fn completed_events(task: &Value) -> usize {
    history(task)
        .iter()
        .filter(|e| e.get("event").and_then(Value::as_str) == Some("completed"))
        .count()
}

/// A task's `history` array (fails the test when it is missing or not an array).
pub fn history(task: &Value) -> &Vec<Value> {
    task.get("history")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("task has no `history` array: {task}"))
}

/// Integer field of a JSON object, failing the test with the whole object when absent.
pub fn u64_field(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("expected a non-negative integer `{key}` in {v}"))
}

/// String field of a JSON object, failing the test with the whole object when absent.
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("expected a string `{key}` in {v}"))
}
