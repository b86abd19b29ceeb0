//! What each timer does when it fires. A timer acts only if what it was set for still holds.

use crate::engine::outbox::Outbound;
use crate::engine::state::EngineState;
use crate::engine::timers::Timer;
use crate::policy::Outcome;
use crate::task::{ReclaimReason, TaskStatus};
use crate::wire::TaskId;

/// How often finished tasks past their retention are purged.
const PURGE_INTERVAL_MS: u64 = 60_000;

impl EngineState {
    /// A timer fired; it acts only if what it was set for still holds.
    pub(super) fn timer(&mut self, timer: Timer, now: u64) {
        match timer {
            Timer::Acceptance { task, generation } => self.acceptance_due(task, generation, now),
            Timer::Grace { agent, disconnects } => {
                let lost = self.agents.get(&agent).and_then(|a| {
                    (a.connection.is_none() && a.disconnects == disconnects)
                        .then_some(a.holding.task())
                        .flatten()
                });
                if let Some(task) = lost {
                    self.reclaim(task, ReclaimReason::Disconnected, now);
                }
            }
            Timer::Run { task, generation } => {
                let overdue = self.accepted_at(task, generation).is_some()
                    && self.tasks[&task].run_deadline().is_some_and(|at| at <= now);
                if overdue {
                    self.reclaim(task, ReclaimReason::RunTimeout, now);
                }
            }
            Timer::Heartbeat { task, generation } => self.heartbeat_due(task, generation, now),
            Timer::Deadline { task } => self.deadline_due(task, now),
            Timer::Cooldown { agent } => self.sync_ready(&agent, now),
            // Retention 0 keeps everything: no purge, and no timer for one.
            Timer::Purge if self.config.retention_ms == 0 => {}
            Timer::Purge => {
                self.writes.purge_before = Some(now.saturating_sub(self.config.retention_ms));
                self.timers.at(now + PURGE_INTERVAL_MS, Timer::Purge);
            }
            Timer::Stats => {
                self.stats_tick(now);
                self.timers
                    .at(now + self.config.stats_interval_ms, Timer::Stats);
            }
        }
    }

    /// The task, pushed at `generation`, was not accepted in time: its agent is marked
    /// unresponsive and the task taken back.
    fn acceptance_due(&mut self, task: TaskId, generation: u64, now: u64) {
        let overdue = self.tasks.get(&task).is_some_and(|t| {
            t.status == TaskStatus::Assigned
                && t.generation == generation
                && t.accepted_at.is_none()
        });
        if !overdue {
            return;
        }
        if let Some(holder) = self.tasks[&task].assigned_to.clone() {
            if let Some(agent) = self.agents.get_mut(&holder) {
                agent.unresponsive = true;
                if let Some(connection) = &agent.connection {
                    let outbox = connection.outbox.clone();
                    self.pushes.push((outbox, Outbound::Unresponsive));
                }
            }
        }
        self.reclaim(task, ReclaimReason::AcceptanceTimeout, now);
    }

    /// When the task was accepted, if it is still the accepted assignment at `generation`.
    fn accepted_at(&self, task: TaskId, generation: u64) -> Option<u64> {
        self.tasks
            .get(&task)
            .filter(|t| t.status == TaskStatus::Assigned && t.generation == generation)
            .and_then(|t| t.accepted_at)
    }

    /// The heartbeat window of an accepted task ended: taken back if its agent reported no
    /// progress within it, else watched again from its last report.
    fn heartbeat_due(&mut self, task: TaskId, generation: u64, now: u64) {
        let Some(accepted_at) = self.accepted_at(task, generation) else {
            return;
        };
        let live = &self.tasks[&task];
        let Some(window) = live.heartbeat_timeout_ms else {
            return;
        };
        let last_progress = live
            .assigned_to
            .as_ref()
            .and_then(|holder| self.agents.get(holder))
            .map_or(accepted_at, |agent| agent.last_progress_at.max(accepted_at));
        if last_progress + window <= now {
            self.reclaim(task, ReclaimReason::HeartbeatTimeout, now);
        } else {
            self.timers.at(
                last_progress + window,
                Timer::Heartbeat { task, generation },
            );
        }
    }

    /// The task's `complete_by` passed: running it now would be wasted work, so it goes to
    /// the dead letter, taken from its agent if one holds it.
    fn deadline_due(&mut self, task: TaskId, now: u64) {
        let Some(live) = self.tasks.get(&task) else {
            return;
        };
        if live.complete_by.is_none_or(|at| at > now) {
            return;
        }
        match (live.status, live.assigned_to.clone()) {
            (TaskStatus::Assigned, Some(holder)) => {
                let generation = live.generation;
                self.cancel_on_agent(&holder, task, generation);
                self.task_mut(task).expire(now);
                self.release(&holder, task, Outcome::Cancelled, now);
            }
            (TaskStatus::Queued, _) => {
                self.task_mut(task).expire(now);
                self.feed.task_dequeued(task);
            }
            // Finished (kept in memory until its commit is reported) or already in the dead
            // letter: nothing left to run late.
            _ => return,
        }
        tracing::info!(task = %task, "deadline passed; task moved to the dead letter");
    }
}
