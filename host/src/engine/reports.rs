//! What agents say about their tasks: accepted, complete, failed, rejected, recovering. Each
//! report is checked against the task's holder and generation first (the fencing rule), then
//! applied; the agent gets a `task_ack` (or `task_continue`) or the refusal, in that order.

use crate::engine::outbox::Outbox;
use crate::engine::state::EngineState;
use crate::engine::timers::Timer;
use crate::policy::Outcome;
use crate::task::Requeue;
use crate::wire::agent::{AckStatus, ClientMessage, Refusal, ServerMessage, TaskReport};
use crate::wire::TaskId;

impl EngineState {
    /// A frame from an identified connection.
    pub(super) fn message(
        &mut self,
        conn: u64,
        agent_id: &str,
        outbox: &Outbox,
        message: ClientMessage,
        now: u64,
    ) {
        let current = self
            .agents
            .get(agent_id)
            .and_then(|a| a.connection.as_ref())
            .is_some_and(|c| c.id == conn);
        if !current {
            tracing::debug!(agent_id, "ignoring a frame from a superseded connection");
            return;
        }
        let reply = match message {
            ClientMessage::TaskAccepted {
                task_id,
                generation,
            } => match self.holder_check(&task_id, agent_id, generation) {
                Ok(id) => {
                    self.accept(agent_id, id, now);
                    ServerMessage::TaskAck {
                        task_id,
                        status: AckStatus::Accepted,
                    }
                }
                Err(refusal) => ServerMessage::report_refused(TaskReport::Accepted, refusal),
            },
            ClientMessage::TaskComplete {
                task_id,
                generation,
                result,
                tokens_used,
            } => match self.holder_check(&task_id, agent_id, Some(generation)) {
                Ok(id) => {
                    self.observe_run(id, now);
                    self.task_mut(id).complete(result, tokens_used, now);
                    self.release(agent_id, id, Outcome::Completed, now);
                    ServerMessage::TaskAck {
                        task_id,
                        status: AckStatus::Complete,
                    }
                }
                Err(refusal) => ServerMessage::report_refused(TaskReport::Complete, refusal),
            },
            ClientMessage::TaskFailed {
                task_id,
                generation,
                error,
            } => match self.holder_check(&task_id, agent_id, Some(generation)) {
                Ok(id) => {
                    self.observe_run(id, now);
                    let requeue = self.task_mut(id).fail(&error, now);
                    self.release(agent_id, id, Outcome::Failed, now);
                    let status = self.after_return(id, requeue);
                    ServerMessage::TaskAck { task_id, status }
                }
                Err(refusal) => ServerMessage::report_refused(TaskReport::Failed, refusal),
            },
            ClientMessage::TaskRejected { task_id, reason } => {
                match self.holder_check(&task_id, agent_id, None) {
                    Ok(id) => {
                        self.task_mut(id).reject(reason.as_deref(), now);
                        self.cool_down(agent_id, now);
                        self.release(agent_id, id, Outcome::Returned, now);
                        self.after_return(id, Requeue::Queued);
                        ServerMessage::TaskAck {
                            task_id,
                            status: AckStatus::Rejected,
                        }
                    }
                    Err(refusal) => ServerMessage::report_refused(TaskReport::Rejected, refusal),
                }
            }
            ClientMessage::TaskRecovering { task_id } => {
                match self.holder_check(&task_id, agent_id, None) {
                    Ok(id) => {
                        // The agent says it is working on the task: that is an acceptance.
                        self.accept(agent_id, id, now);
                        ServerMessage::TaskContinue {
                            task_id,
                            generation: self.tasks[&id].generation,
                        }
                    }
                    Err(_) => ServerMessage::TaskReassign { task_id },
                }
            }
            ClientMessage::Status { status } => {
                if let Some(agent) = self.agents.get_mut(agent_id) {
                    agent.status = status;
                }
                ServerMessage::StatusUpdated
            }
            ClientMessage::ListAgents => ServerMessage::Agents {
                agents: self.summaries(true),
            },
            ClientMessage::TaskProgress { task_id } => {
                self.progress(agent_id, &task_id, now);
                return;
            }
            // Answered by the connection itself; they never reach the engine.
            ClientMessage::Identify(_) | ClientMessage::Ping => return,
        };
        if let ServerMessage::Error { error } = &reply {
            self.stats.refused_frame(error);
        }
        self.push(outbox, reply);
    }

    /// Resolves `task_id` and checks that `agent_id` holds it, refusing in the spec's order.
    fn holder_check(
        &self,
        task_id: &str,
        agent_id: &str,
        generation: Option<u64>,
    ) -> Result<TaskId, Refusal> {
        let id = TaskId::parse(task_id).ok_or(Refusal::NotFound)?;
        match self.tasks.get(&id) {
            Some(task) => task.check_holder(agent_id, generation).map(|()| id),
            None => {
                // Not live: it is finished (a state nobody holds) or does not exist.
                let exists = self
                    .store
                    .read_txn()
                    .and_then(|txn| self.store.task(&txn, id))
                    .map(|t| t.is_some())
                    .unwrap_or(false);
                Err(if exists {
                    Refusal::InvalidState
                } else {
                    Refusal::NotFound
                })
            }
        }
    }

    /// The holder of `id` is working on it. The first acceptance of an assignment starts its
    /// run timeout and heartbeat window.
    fn accept(&mut self, agent_id: &str, id: TaskId, now: u64) {
        let first = self.tasks[&id].accepted_at.is_none();
        self.task_mut(id).accept(now);
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.accept(id);
            agent.last_progress_at = now;
            agent.touch(&mut self.touched_agents);
        }
        if first {
            self.watch_run(id, now);
        }
    }

    /// A sign of life from the holder of a task: its heartbeat window starts again. Never
    /// answered (the protocol's `task_progress` has no reply), and ignored from anyone else.
    fn progress(&mut self, agent_id: &str, task_id: &str, now: u64) {
        if self.holder_check(task_id, agent_id, None).is_ok() {
            if let Some(agent) = self.agents.get_mut(agent_id) {
                agent.last_progress_at = now;
            }
        }
    }

    /// An agent that rejected a task is offered none for the cool-down.
    fn cool_down(&mut self, agent_id: &str, now: u64) {
        let until = now + self.config.reject_cooldown_ms;
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.cooldown_until = Some(until);
        }
        self.timers.at(
            until,
            Timer::Cooldown {
                agent: agent_id.to_owned(),
            },
        );
    }
}
