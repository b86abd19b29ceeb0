//! Task transitions that involve an agent and the policy as well as the task: an assignment
//! ending, a task going back to the queue, a task taken back from its agent. Reports, requests
//! and timers all end assignments, so they share these.

use crate::engine::state::EngineState;
use crate::engine::timers::Timer;
use crate::policy::Outcome;
use crate::task::{ReclaimReason, Requeue};
use crate::wire::agent::{AckStatus, ServerMessage};
use crate::wire::TaskId;

impl EngineState {
    /// The agent's assignment of `task` ended with `outcome`: it is free again.
    pub(super) fn release(&mut self, agent_id: &str, task: TaskId, outcome: Outcome, now: u64) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            let held_ms = agent.release(task, now);
            agent.touch(&mut self.touched_agents);
            if matches!(outcome, Outcome::Completed | Outcome::Failed) {
                agent.cooldown_until = None;
            }
            self.feed
                .task_finished(task, agent.handle, outcome, held_ms);
        }
        self.sync_ready(agent_id, now);
    }

    /// A task that left its agent is either queued again or dead-lettered; tell the policy.
    pub(super) fn after_return(&mut self, task: TaskId, requeue: Requeue) -> AckStatus {
        match requeue {
            Requeue::Queued => {
                self.feed.task_queued(&self.tasks[&task]);
                AckStatus::Retried
            }
            Requeue::DeadLetter => {
                self.stats.dead_lettered();
                AckStatus::DeadLetter
            }
        }
    }

    /// Records how long `task` ran, accepted to now, before its agent reported it finished.
    pub(super) fn observe_run(&self, task: TaskId, now: u64) {
        if let Some(accepted) = self.tasks.get(&task).and_then(|t| t.accepted_at) {
            self.stats.run.observe_ms(now.saturating_sub(accepted));
        }
    }

    /// Tells the holder of `task`, if it is connected, that the task is no longer its.
    pub(super) fn cancel_on_agent(&mut self, holder: &str, task: TaskId, generation: u64) {
        self.push_to_agent(
            holder,
            ServerMessage::TaskCancel {
                task_id: task.to_string(),
                generation,
            },
        );
    }

    /// Sets the timers of an accepted assignment: its run timeout, from acceptance, and its
    /// heartbeat window, from `since` (acceptance, or a restart: progress is not stored).
    pub(super) fn watch_run(&mut self, id: TaskId, since: u64) {
        let task = &self.tasks[&id];
        let generation = task.generation;
        if let Some(at) = task.run_deadline() {
            self.timers.at(
                at,
                Timer::Run {
                    task: id,
                    generation,
                },
            );
        }
        if let Some(window) = task.heartbeat_timeout_ms {
            self.timers.at(
                since + window,
                Timer::Heartbeat {
                    task: id,
                    generation,
                },
            );
        }
    }

    /// Takes a task back from its agent (a timeout, a lost connection), telling the agent if
    /// it is still connected. It counts toward the task's poison limit.
    pub(super) fn reclaim(&mut self, id: TaskId, why: ReclaimReason, now: u64) {
        let task = &self.tasks[&id];
        let (holder, generation) = (task.assigned_to.clone(), task.generation);
        if let Some(holder) = &holder {
            self.cancel_on_agent(holder, id, generation);
        }
        let max_reclaims = self.config.max_reclaims;
        let requeue = self.task_mut(id).reclaim(why, max_reclaims, now);
        tracing::info!(task = %id, %why, ?requeue, "took a task back from its agent");
        self.stats.reclaimed(why);
        if let Some(holder) = holder {
            self.release(&holder, id, Outcome::Returned, now);
        }
        self.after_return(id, requeue);
    }
}
