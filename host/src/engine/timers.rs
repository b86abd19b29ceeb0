//! Deadlines the engine keeps: a min-heap of timers that are checked when they fire, so a timer
//! made stale by later events (the task moved on, the agent came back) is simply ignored. What
//! each does when it fires is in `deadlines`.

use crate::wire::TaskId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The task, assigned at `generation`, must be accepted by now.
    Acceptance { task: TaskId, generation: u64 },
    /// The agent's reconnect grace after its `disconnects`-th disconnect ends.
    Grace { agent: String, disconnects: u64 },
    /// The task, accepted at `generation`, must be finished by now (its run timeout).
    Run { task: TaskId, generation: u64 },
    /// The task, accepted at `generation`, must have reported progress since this was set.
    Heartbeat { task: TaskId, generation: u64 },
    /// The task's `complete_by` passed.
    Deadline { task: TaskId },
    /// The agent's rejection cool-down ends.
    Cooldown { agent: String },
    /// Time to purge finished tasks past their retention.
    Purge,
    /// Time to see whether a `stats` event is due (`engine::tally`).
    Stats,
}

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(u64, Timer)>>,
}

impl Timers {
    pub fn at(&mut self, when: u64, timer: Timer) {
        self.heap.push(Reverse((when, timer)));
    }

    /// When the earliest timer fires.
    pub fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((when, _))| *when)
    }

    /// Removes and returns a timer due at `now`, earliest first.
    pub fn pop_due(&mut self, now: u64) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((when, _))) if *when <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }

    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_order_and_only_when_due() {
        let mut timers = Timers::default();
        timers.at(30, Timer::Purge);
        timers.at(10, Timer::Deadline { task: TaskId(1) });
        timers.at(20, Timer::Cooldown { agent: "a".into() });
        assert_eq!(timers.next(), Some(10));
        assert_eq!(timers.pop_due(5), None);
        assert_eq!(
            timers.pop_due(25),
            Some(Timer::Deadline { task: TaskId(1) })
        );
        assert_eq!(
            timers.pop_due(25),
            Some(Timer::Cooldown { agent: "a".into() })
        );
        assert_eq!(timers.pop_due(25), None);
        assert_eq!(timers.next(), Some(30));
    }
}
