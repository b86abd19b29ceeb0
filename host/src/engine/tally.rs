//! Running counts behind the event stream's `stats` event.
//!
//! Dashboards must not fetch task lists to draw a queue, and the hub must not scan a million
//! queued tasks every second to tell them: the engine moves these counts as tasks change state
//! (at sealing, from the batch's changed tasks and their status before it) and as assignments
//! are made, and a timer turns them into a `stats` event once a second (`serve
//! --stats-interval`) when something changed, and every ten intervals regardless. The counts
//! start from the store's at load.

use crate::task::TaskStatus;
use crate::wire::events::{AgentStates, StatsEvent, WaitSummary};
use std::collections::BTreeMap;

/// How often the engine looks whether a `stats` event is due, unless `serve --stats-interval`
/// says otherwise.
pub const DEFAULT_STATS_INTERVAL_MS: u64 = 1_000;
/// The shortest `serve --stats-interval` other than 0 (off).
pub const MIN_STATS_INTERVAL_MS: u64 = 100;
/// With nothing changed, a `stats` event is still sent every this many intervals.
pub const QUIET_INTERVALS: u64 = 10;

/// Task priorities are 0 to 3.
const PRIORITIES: usize = 4;

#[derive(Debug, Default)]
pub struct Tally {
    /// Tasks by status, in [`TaskStatus::ALL`]'s order.
    by_status: [u64; TaskStatus::ALL.len()],
    queued_by_priority: [u64; PRIORITIES],
    /// Since the last `stats` event.
    assigned: u64,
    completed: u64,
    /// Queued-to-assigned waits (ms) of the assignments since the last `stats` event. Cleared,
    /// not freed, at each event, so a steady load allocates nothing.
    waits: Vec<u64>,
    /// Whether anything counted here (or an agent's state) changed since the last event.
    changed: bool,
    /// When the last `stats` event was made.
    last_sent: u64,
}

fn index(status: TaskStatus) -> usize {
    TaskStatus::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in ALL")
}

impl Tally {
    /// Starts over from counts read from the store (at load, and after a failed commit).
    pub fn reset(&mut self, by_status: &BTreeMap<&'static str, u64>, by_priority: [u64; 4]) {
        for status in TaskStatus::ALL {
            self.by_status[index(status)] = by_status.get(status.as_str()).copied().unwrap_or(0);
        }
        self.queued_by_priority = by_priority;
        self.changed = true;
    }

    /// A task of `priority` went from `from` (None: it is new) to `to` in a sealed batch.
    pub fn moved(&mut self, priority: u8, from: Option<TaskStatus>, to: TaskStatus) {
        if from == Some(to) {
            return;
        }
        let priority = usize::from(priority).min(PRIORITIES - 1);
        if let Some(from) = from {
            let count = &mut self.by_status[index(from)];
            *count = count.saturating_sub(1);
            if from == TaskStatus::Queued {
                let queued = &mut self.queued_by_priority[priority];
                *queued = queued.saturating_sub(1);
            }
        }
        self.by_status[index(to)] += 1;
        if to == TaskStatus::Queued {
            self.queued_by_priority[priority] += 1;
        }
        if to == TaskStatus::Completed {
            self.completed += 1;
        }
        self.changed = true;
    }

    /// Finished tasks of `status` deleted past their retention.
    pub fn purged(&mut self, status: TaskStatus, n: u64) {
        if n > 0 {
            let count = &mut self.by_status[index(status)];
            *count = count.saturating_sub(n);
            self.changed = true;
        }
    }

    /// A task was assigned after waiting `waited_ms` in the queue.
    pub fn assigned(&mut self, waited_ms: u64) {
        self.assigned += 1;
        self.waits.push(waited_ms);
        self.changed = true;
    }

    /// Something outside the task counts changed (an agent's state).
    pub fn touch(&mut self) {
        self.changed = true;
    }

    /// The `stats` event due at `now`, if one is: something changed, or `quiet_ms` passed
    /// since the last one.
    pub fn due(
        &mut self,
        now: u64,
        quiet_ms: u64,
        agents: AgentStates,
        connected: u64,
    ) -> Option<StatsEvent> {
        if !self.changed && now < self.last_sent + quiet_ms {
            return None;
        }
        // At least a millisecond, so that two events in one millisecond divide by something.
        let seconds = now.saturating_sub(self.last_sent).max(1) as f64 / 1000.0;
        let first = self.last_sent == 0;
        let per_second = |n: u64| if first { 0.0 } else { n as f64 / seconds };
        let event = StatsEvent {
            at: now,
            by_status: TaskStatus::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), self.by_status[index(*s)]))
                .collect(),
            queued_by_priority: self.queued_by_priority,
            agents,
            connected,
            assigned_per_s: per_second(self.assigned),
            completed_per_s: per_second(self.completed),
            wait_ms: summarize(&mut self.waits),
        };
        self.waits.clear();
        self.assigned = 0;
        self.completed = 0;
        self.changed = false;
        self.last_sent = now;
        Some(event)
    }
}

/// p50, p99 (nearest rank) and max of `waits`, reordering them.
fn summarize(waits: &mut [u64]) -> WaitSummary {
    if waits.is_empty() {
        return WaitSummary::default();
    }
    waits.sort_unstable();
    let rank = |q: f64| {
        let r = (q * waits.len() as f64).ceil() as usize;
        waits[r.clamp(1, waits.len()) - 1]
    };
    WaitSummary {
        p50: rank(0.50),
        p99: rank(0.99),
        max: waits[waits.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_moves_and_events_come_when_due() {
        let mut tally = Tally::default();
        let stored = BTreeMap::from([("queued", 2), ("completed", 5)]);
        tally.reset(&stored, [0, 2, 0, 0]);
        let first = tally.due(1_000, 10_000, AgentStates::default(), 0).unwrap();
        assert_eq!(first.by_status["queued"], 2);
        assert_eq!(first.by_status["cancelled"], 0);
        assert_eq!(first.assigned_per_s, 0.0, "no rate before a first interval");
        assert!(tally
            .due(2_000, 10_000, AgentStates::default(), 0)
            .is_none());
        tally.moved(1, None, TaskStatus::Queued);
        tally.moved(1, Some(TaskStatus::Queued), TaskStatus::Assigned);
        tally.assigned(40);
        tally.moved(1, Some(TaskStatus::Assigned), TaskStatus::Completed);
        tally.moved(3, Some(TaskStatus::DeadLetter), TaskStatus::Queued);
        tally.purged(TaskStatus::Completed, 2);
        let event = tally.due(3_000, 10_000, AgentStates::default(), 0).unwrap();
        assert_eq!(event.by_status["queued"], 3);
        assert_eq!(event.by_status["assigned"], 0);
        assert_eq!(event.by_status["completed"], 4);
        assert_eq!(event.queued_by_priority, [0, 2, 0, 1]);
        assert_eq!(event.assigned_per_s, 0.5);
        assert_eq!(event.completed_per_s, 0.5);
        assert_eq!(event.wait_ms.max, 40);
        // Quiet: the next one only after the quiet interval.
        assert!(tally
            .due(12_999, 10_000, AgentStates::default(), 0)
            .is_none());
        let quiet = tally
            .due(13_000, 10_000, AgentStates::default(), 0)
            .unwrap();
        assert_eq!(quiet.wait_ms, WaitSummary::default());
        assert_eq!(quiet.assigned_per_s, 0.0);
    }

    #[test]
    fn wait_percentiles_are_nearest_rank() {
        let mut waits: Vec<u64> = (1..=100).rev().collect();
        let s = summarize(&mut waits);
        assert_eq!((s.p50, s.p99, s.max), (50, 99, 100));
        let s = summarize(&mut [7]);
        assert_eq!((s.p50, s.p99, s.max), (7, 7, 7));
    }
}
