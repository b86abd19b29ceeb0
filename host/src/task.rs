//! A task and its state machine: `queued` → `assigned` → `completed`, or → `dead_letter`;
//! `cancelled` is terminal too.
//!
//! Every transition here is pure (no I/O), records itself in the task's history and keeps the
//! fencing rule: `generation` goes up by exactly one on every assignment and on every return to
//! the queue, and a result is accepted only from the assignee at the current generation.

use crate::wire::agent::{Refusal, ServerMessage};
use crate::wire::http::NewTask;
use crate::wire::TaskId;
pub use crate::wire::TaskStatus;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::VecDeque;

/// History entries kept per task, newest first.
pub const HISTORY_LIMIT: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// A name from a fixed set, so not an allocation per entry (a stored one is read back owned).
    pub event: Cow<'static, str>,
    pub timestamp: u64,
    pub details: Details,
}

/// What a history entry says besides its event and time.
///
/// It serializes to the same JSON object the entry always had: keys in alphabetical order (as
/// a `serde_json` object orders them, so the fields are declared in that order), absent keys
/// left out, and an agent id or reason that was asked for but missing written as `null`
/// (`Some(None)`). Typed rather than a `serde_json::Value` because every queued task keeps its
/// history in the engine's memory, and a `Value` object of even one key is a B-tree node of about
/// 640 bytes: that was most of a queued task's footprint (see BENCHMARKS.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Details {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub agent_id: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub reason: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
}

/// A stored history, without the spare room the decoder leaves (it grows the buffer as it reads,
/// to four entries for a task that has one): every live task is held in memory.
fn compact_history<'de, D>(deserializer: D) -> Result<VecDeque<HistoryEntry>, D::Error>
where
    D: Deserializer<'de>,
{
    let mut history = VecDeque::<HistoryEntry>::deserialize(deserializer)?;
    history.shrink_to_fit();
    Ok(history)
}

/// A key that is present, even as `null`, reads as `Some`: `Some(None)` is an explicit `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A task as stored and as shown by the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub description: String,
    pub metadata: Value,
    pub priority: u8,
    pub status: TaskStatus,
    pub assigned_to: Option<String>,
    pub assigned_at: Option<u64>,
    /// When the assignee sent `task_accepted` for the current assignment.
    pub accepted_at: Option<u64>,
    pub generation: u64,
    pub retry_count: u32,
    pub reclaim_count: u32,
    pub max_retries: u32,
    pub needed_capabilities: Vec<String>,
    pub fairness_key: String,
    pub weight: f64,
    pub last_error: Option<String>,
    pub complete_by: Option<u64>,
    /// How long an accepted task may run before it is taken back (none: no limit).
    #[serde(default)]
    pub run_timeout_ms: Option<u64>,
    /// How long an accepted task may go without a `task_progress` before it is taken back
    /// (none: progress is not required).
    #[serde(default)]
    pub heartbeat_timeout_ms: Option<u64>,
    pub result: Option<Value>,
    pub tokens_used: Option<u64>,
    pub submitted_by: String,
    /// The tenant of the token that submitted it (never a field of the request). Fair share,
    /// quotas and visibility follow it.
    #[serde(default = "crate::wire::tenant::default_tenant")]
    pub tenant: String,
    pub created_at: u64,
    pub updated_at: u64,
    /// When the task last entered the queue.
    pub queued_at: u64,
    #[serde(deserialize_with = "compact_history")]
    pub history: VecDeque<HistoryEntry>,
}

/// Why a task was taken back from its agent. Each counts toward the task's poison limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReclaimReason {
    /// Pushed but not accepted within the acceptance timeout.
    AcceptanceTimeout,
    /// The agent's connection was gone for longer than the reconnect grace.
    Disconnected,
    /// Accepted, but not finished within its run timeout.
    RunTimeout,
    /// Accepted, but no `task_progress` within its heartbeat timeout.
    HeartbeatTimeout,
}

impl ReclaimReason {
    pub const ALL: [ReclaimReason; 4] = [
        ReclaimReason::AcceptanceTimeout,
        ReclaimReason::Disconnected,
        ReclaimReason::RunTimeout,
        ReclaimReason::HeartbeatTimeout,
    ];

    /// The name in the task's history and in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReclaimReason::AcceptanceTimeout => "acceptance_timeout",
            ReclaimReason::Disconnected => "disconnected",
            ReclaimReason::RunTimeout => "run_timeout",
            ReclaimReason::HeartbeatTimeout => "heartbeat_timeout",
        }
    }
}

impl std::fmt::Display for ReclaimReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a failure report or a take-back leaves the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Back in the queue at its original place, generation + 1.
    Queued,
    /// Out of attempts: moved to the dead letter.
    DeadLetter,
}

impl Task {
    /// The `task_assign` frame for the task's current assignment.
    pub fn assign_message(&self) -> ServerMessage {
        ServerMessage::TaskAssign {
            task_id: self.id.to_string(),
            description: self.description.clone(),
            metadata: self.metadata.clone(),
            generation: self.generation,
            assigned_at: self.assigned_at.unwrap_or(self.updated_at),
        }
    }

    pub fn new(id: TaskId, new: NewTask, submitted_by: &str, tenant: &str, now: u64) -> Task {
        let mut task = Task {
            id,
            description: new.description,
            metadata: new.metadata,
            priority: new.priority,
            status: TaskStatus::Queued,
            assigned_to: None,
            assigned_at: None,
            accepted_at: None,
            generation: 0,
            retry_count: 0,
            reclaim_count: 0,
            max_retries: new.max_retries,
            needed_capabilities: new.needed_capabilities,
            fairness_key: new.fairness_key.unwrap_or_else(|| submitted_by.to_owned()),
            weight: new.weight,
            last_error: None,
            complete_by: new.complete_by,
            run_timeout_ms: new.run_timeout_ms.filter(|&ms| ms > 0),
            heartbeat_timeout_ms: new.heartbeat_timeout_ms.filter(|&ms| ms > 0),
            result: None,
            tokens_used: None,
            submitted_by: submitted_by.to_owned(),
            tenant: tenant.to_owned(),
            created_at: now,
            updated_at: now,
            queued_at: now,
            // Room for the one entry a queued task has; most never get a second.
            history: VecDeque::with_capacity(1),
        };
        let details = Details {
            priority: Some(task.priority),
            ..Details::default()
        };
        task.record("submitted", now, details);
        task
    }

    fn record(&mut self, event: &'static str, now: u64, details: Details) {
        self.updated_at = now;
        self.history.push_front(HistoryEntry {
            event: Cow::Borrowed(event),
            timestamp: now,
            details,
        });
        self.history.truncate(HISTORY_LIMIT);
    }

    /// Details naming the current holder (`null` when there is none) and generation.
    fn holder_details(&self) -> Details {
        Details {
            agent_id: Some(self.assigned_to.clone()),
            generation: Some(self.generation),
            ..Details::default()
        }
    }

    /// Whether `agent` holds this task at `generation` (when one is given): the check in front
    /// of every report an agent makes about its task, in the spec's order.
    pub fn check_holder(&self, agent: &str, generation: Option<u64>) -> Result<(), Refusal> {
        if self.status != TaskStatus::Assigned {
            return Err(Refusal::InvalidState);
        }
        if self.assigned_to.as_deref() != Some(agent) {
            return Err(Refusal::NotAssignee);
        }
        match generation {
            Some(g) if g != self.generation => Err(Refusal::StaleGeneration),
            _ => Ok(()),
        }
    }

    /// Queued → assigned to `agent`.
    pub fn assign(&mut self, agent: &str, now: u64) {
        debug_assert_eq!(self.status, TaskStatus::Queued);
        self.status = TaskStatus::Assigned;
        self.generation += 1;
        self.assigned_to = Some(agent.to_owned());
        self.assigned_at = Some(now);
        self.accepted_at = None;
        let details = self.holder_details();
        self.record("assigned", now, details);
    }

    /// The assignee confirmed it started. Accepting twice is harmless.
    pub fn accept(&mut self, now: u64) {
        if self.accepted_at.is_none() {
            self.accepted_at = Some(now);
            let details = self.holder_details();
            self.record("accepted", now, details);
        }
    }

    /// Assigned → completed. The caller has checked the holder.
    pub fn complete(&mut self, result: Value, tokens_used: Option<u64>, now: u64) {
        self.status = TaskStatus::Completed;
        self.result = Some(result);
        self.tokens_used = tokens_used;
        let details = self.holder_details();
        self.record("completed", now, details);
    }

    /// The assignee reported a failure: failure number `max_retries` dead-letters the task.
    pub fn fail(&mut self, error: &str, now: u64) -> Requeue {
        self.retry_count += 1;
        self.last_error = Some(error.to_owned());
        let details = Details {
            error: Some(error.to_owned()),
            retry_count: Some(self.retry_count),
            ..self.holder_details()
        };
        self.record("failed", now, details);
        if self.retry_count >= self.max_retries {
            self.dead_letter(&format!("failed {} times", self.retry_count), now);
            Requeue::DeadLetter
        } else {
            self.requeue(now);
            Requeue::Queued
        }
    }

    /// The assignee declined the task: back to its place, counted neither as a failure nor as
    /// a reclaim.
    pub fn reject(&mut self, reason: Option<&str>, now: u64) {
        let details = Details {
            reason: Some(reason.map(str::to_owned)),
            ..self.holder_details()
        };
        self.record("rejected", now, details);
        self.requeue(now);
    }

    /// Taken back from its assignee (disconnect, a timeout): counted, and after
    /// `max_reclaims` such returns the task is poison and goes to the dead letter.
    pub fn reclaim(&mut self, why: ReclaimReason, max_reclaims: u32, now: u64) -> Requeue {
        self.reclaim_count += 1;
        let details = Details {
            reason: Some(Some(why.as_str().to_owned())),
            reclaim_count: Some(self.reclaim_count),
            ..self.holder_details()
        };
        self.record("reclaimed", now, details);
        if self.reclaim_count >= max_reclaims {
            self.last_error = Some(format!(
                "poison: lost its agent {} times ({why})",
                self.reclaim_count
            ));
            self.dead_letter("poison", now);
            Requeue::DeadLetter
        } else {
            self.requeue(now);
            Requeue::Queued
        }
    }

    /// An admin put the assigned task back in the queue by hand: not counted against it.
    pub fn requeue_by_hand(&mut self, now: u64) -> Result<(), Refusal> {
        if self.status != TaskStatus::Assigned {
            return Err(Refusal::InvalidState);
        }
        let details = self.holder_details();
        self.record("requeued", now, details);
        self.requeue(now);
        Ok(())
    }

    /// When the accepted assignment must be finished by, if the task has a run timeout.
    pub fn run_deadline(&self) -> Option<u64> {
        Some(self.accepted_at? + self.run_timeout_ms?)
    }

    /// The task's `complete_by` passed before it completed. Running it later is pointless, so
    /// it goes to the dead letter (counted as a reclaim when an agent held it).
    pub fn expire(&mut self, now: u64) {
        if self.status == TaskStatus::Assigned {
            self.reclaim_count += 1;
        }
        self.last_error = Some("deadline_exceeded".to_owned());
        self.dead_letter("deadline_exceeded", now);
    }

    /// Any active task → cancelled.
    pub fn cancel(&mut self, now: u64) {
        self.status = TaskStatus::Cancelled;
        let details = Details {
            agent_id: Some(self.assigned_to.clone()),
            ..Details::default()
        };
        self.record("cancelled", now, details);
        self.assigned_to = None;
    }

    /// Dead letter → queued, with fresh attempt counts.
    pub fn retry_from_dead_letter(&mut self, now: u64) -> Result<(), Refusal> {
        if self.status != TaskStatus::DeadLetter {
            return Err(Refusal::InvalidState);
        }
        self.retry_count = 0;
        self.reclaim_count = 0;
        self.record("retried", now, Details::default());
        self.requeue(now);
        Ok(())
    }

    fn requeue(&mut self, now: u64) {
        self.status = TaskStatus::Queued;
        self.generation += 1;
        self.assigned_to = None;
        self.assigned_at = None;
        self.accepted_at = None;
        self.queued_at = now;
        let details = Details {
            generation: Some(self.generation),
            ..Details::default()
        };
        self.record("queued", now, details);
    }

    fn dead_letter(&mut self, why: &str, now: u64) {
        self.status = TaskStatus::DeadLetter;
        self.assigned_to = None;
        self.assigned_at = None;
        self.accepted_at = None;
        let details = Details {
            reason: Some(Some(why.to_owned())),
            ..Details::default()
        };
        self.record("dead_letter", now, details);
    }

    /// How many times `event` appears in the history.
    pub fn count_events(&self, event: &str) -> usize {
        self.history.iter().filter(|e| e.event == event).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tenant::DEFAULT_TENANT;
    use serde_json::json;

    fn task(max_retries: u32) -> Task {
        let new = NewTask {
            max_retries,
            ..NewTask::with_description("d")
        };
        Task::new(TaskId(1), new, "alice", DEFAULT_TENANT, 100)
    }

    #[test]
    fn new_task_is_queued_at_generation_zero_keyed_by_submitter() {
        let t = task(3);
        assert_eq!((t.status, t.generation), (TaskStatus::Queued, 0));
        assert_eq!(t.fairness_key, "alice");
        assert_eq!(t.history[0].event, "submitted");
    }

    #[test]
    fn assign_complete_fences_by_holder_and_generation() {
        let mut t = task(3);
        assert_eq!(t.check_holder("a", Some(0)), Err(Refusal::InvalidState));
        t.assign("a", 101);
        assert_eq!(t.generation, 1);
        assert_eq!(t.check_holder("b", Some(1)), Err(Refusal::NotAssignee));
        assert_eq!(t.check_holder("a", Some(0)), Err(Refusal::StaleGeneration));
        assert_eq!(
            t.check_holder("b", Some(0)),
            Err(Refusal::NotAssignee),
            "assignee checked first"
        );
        assert_eq!(t.check_holder("a", Some(1)), Ok(()));
        t.complete(json!({"ok": true}), Some(5), 102);
        assert_eq!(t.status, TaskStatus::Completed);
        assert_eq!(t.check_holder("a", Some(1)), Err(Refusal::InvalidState));
        assert_eq!(t.count_events("completed"), 1);
    }

    #[test]
    fn failures_retry_then_dead_letter_at_max_retries() {
        let mut t = task(2);
        t.assign("a", 1);
        assert_eq!(t.fail("boom", 2), Requeue::Queued);
        assert_eq!(
            (t.status, t.generation, t.retry_count),
            (TaskStatus::Queued, 2, 1)
        );
        assert_eq!(t.assigned_to, None);
        t.assign("a", 3);
        assert_eq!(t.generation, 3);
        assert_eq!(t.fail("boom again", 4), Requeue::DeadLetter);
        assert_eq!(t.status, TaskStatus::DeadLetter);
        assert_eq!(t.last_error.as_deref(), Some("boom again"));
        t.retry_from_dead_letter(5).unwrap();
        assert_eq!(
            (t.status, t.generation, t.retry_count),
            (TaskStatus::Queued, 4, 0)
        );
        assert_eq!(t.retry_from_dead_letter(6), Err(Refusal::InvalidState));
    }

    #[test]
    fn rejection_requeues_without_counting() {
        let mut t = task(3);
        t.assign("a", 1);
        t.reject(Some("busy"), 2);
        assert_eq!((t.status, t.generation), (TaskStatus::Queued, 2));
        assert_eq!((t.retry_count, t.reclaim_count), (0, 0));
    }

    #[test]
    fn repeated_reclaims_make_a_task_poison() {
        let mut t = task(3);
        for round in 1..=3u32 {
            t.assign("a", round as u64);
            let outcome = t.reclaim(ReclaimReason::Disconnected, 3, round as u64);
            if round < 3 {
                assert_eq!(outcome, Requeue::Queued);
                assert_eq!(t.generation, 2 * round as u64);
            } else {
                assert_eq!(outcome, Requeue::DeadLetter);
            }
        }
        assert_eq!(t.status, TaskStatus::DeadLetter);
        assert_eq!(t.reclaim_count, 3);
        assert!(t.last_error.unwrap().starts_with("poison"));
    }

    #[test]
    fn history_is_newest_first_and_bounded() {
        let mut t = task(1000);
        for i in 0..100 {
            t.assign("a", i);
            t.reject(None, i);
        }
        assert_eq!(t.history.len(), HISTORY_LIMIT);
        assert_eq!(t.history[0].event, "queued");
        assert_eq!(t.history[1].event, "rejected");
    }

    #[test]
    fn expiry_dead_letters_and_counts_a_held_task_as_reclaimed() {
        let mut t = task(3);
        t.assign("a", 1);
        t.expire(2);
        assert_eq!((t.status, t.reclaim_count), (TaskStatus::DeadLetter, 1));
        assert_eq!(t.last_error.as_deref(), Some("deadline_exceeded"));
    }

    /// The history reads exactly as when its details were built with `json!`, so stored tasks
    /// and API clients see no difference.
    #[test]
    fn history_details_keep_their_json_shape() {
        let mut t = task(1);
        t.assign("a", 1);
        t.accept(2);
        t.reject(None, 3);
        t.assign("b", 4);
        t.reclaim(ReclaimReason::Disconnected, 3, 5);
        t.assign("c", 6);
        t.fail("boom", 7);
        t.retry_from_dead_letter(8).unwrap();
        t.cancel(9);
        // Serialized directly (a `Value` would sort the keys and hide a change of order).
        let details: Vec<(String, String)> = t
            .history
            .iter()
            .rev()
            .map(|e| {
                (
                    e.event.to_string(),
                    serde_json::to_string(&e.details).unwrap(),
                )
            })
            .collect();
        let expected = [
            ("submitted", json!({"priority": 2})),
            ("assigned", json!({"agent_id": "a", "generation": 1})),
            ("accepted", json!({"agent_id": "a", "generation": 1})),
            (
                "rejected",
                json!({"agent_id": "a", "generation": 1, "reason": null}),
            ),
            ("queued", json!({"generation": 2})),
            ("assigned", json!({"agent_id": "b", "generation": 3})),
            (
                "reclaimed",
                json!({"agent_id": "b", "generation": 3, "reason": "disconnected", "reclaim_count": 1}),
            ),
            ("queued", json!({"generation": 4})),
            ("assigned", json!({"agent_id": "c", "generation": 5})),
            (
                "failed",
                json!({"agent_id": "c", "error": "boom", "generation": 5, "retry_count": 1}),
            ),
            ("dead_letter", json!({"reason": "failed 1 times"})),
            ("retried", json!({})),
            ("queued", json!({"generation": 6})),
            ("cancelled", json!({"agent_id": null})),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(event, details)| (event.to_string(), details.to_string()))
            .collect();
        assert_eq!(details, expected);
        let stored = serde_json::to_vec(&t.history).unwrap();
        let back: VecDeque<HistoryEntry> = serde_json::from_slice(&stored).unwrap();
        assert_eq!(back, t.history);
    }

    #[test]
    fn stored_form_round_trips() {
        let mut t = task(3);
        t.assign("a", 1);
        let bytes = serde_json::to_vec(&t).unwrap();
        assert_eq!(serde_json::from_slice::<Task>(&bytes).unwrap(), t);
        let value = serde_json::to_value(&t).unwrap();
        assert_eq!(value["id"], "task-0000000000000001");
        assert_eq!(value["status"], "assigned");
    }
}
