//! What HTTP callers ask of tasks: submit, cancel, retry from the dead letter.

use crate::engine::command::{EngineError, Submitted};
use crate::engine::state::EngineState;
use crate::engine::timers::Timer;
use crate::policy::Outcome;
use crate::task::{Requeue, Task, TaskStatus};
use crate::wire::http::NewTask;
use crate::wire::TaskId;

impl EngineState {
    pub(super) fn submit(
        &mut self,
        tasks: Vec<NewTask>,
        submitted_by: &str,
        tenant: &str,
        now: u64,
    ) -> Result<Vec<Submitted>, EngineError> {
        self.admit(tenant, tasks.len(), now)?;
        let mut submitted = Vec::with_capacity(tasks.len());
        for mut new in tasks {
            // A task that names no run timeout gets the hub's (0 there, or here: none).
            new.run_timeout_ms = new.run_timeout_ms.or(Some(self.config.run_timeout_ms));
            let id = TaskId(self.next_seq);
            self.next_seq += 1;
            let task = Task::new(id, new, submitted_by, tenant, now);
            if let Some(at) = task.complete_by {
                self.timers.at(at, Timer::Deadline { task: id });
            }
            submitted.push(Submitted {
                task_id: id,
                priority: task.priority,
                created_at: now,
            });
            self.feed.task_queued(&task);
            self.tasks.insert(id, Box::new(task));
            self.dirty.insert(id, None);
        }
        self.writes.next_seq = Some(self.next_seq);
        Ok(submitted)
    }

    /// Loads a task that is not live (dead-lettered or finished) into the batch.
    fn load_task(&mut self, id: TaskId) -> Result<&mut Task, EngineError> {
        if !self.tasks.contains_key(&id) {
            let stored = self
                .store
                .read_txn()
                .and_then(|txn| self.store.task(&txn, id))
                .map_err(|_| EngineError::Unavailable)?
                .ok_or(EngineError::TaskNotFound(id))?;
            self.tasks.insert(id, Box::new(stored));
        }
        Ok(self.task_mut(id))
    }

    pub(super) fn cancel(&mut self, id: TaskId, now: u64) -> Result<(), EngineError> {
        let task = self.load_task(id)?;
        let (status, holder, generation) = (task.status, task.assigned_to.clone(), task.generation);
        match status {
            TaskStatus::Completed | TaskStatus::Cancelled => {
                return Err(EngineError::InvalidState(status.as_str()))
            }
            TaskStatus::Queued => self.feed.task_dequeued(id),
            TaskStatus::Assigned | TaskStatus::DeadLetter => {}
        }
        self.task_mut(id).cancel(now);
        if let Some(holder) = holder {
            self.cancel_on_agent(&holder, id, generation);
            self.release(&holder, id, Outcome::Cancelled, now);
        }
        Ok(())
    }

    /// An admin puts an assigned task back in the queue; its agent gets `task_cancel`. Not
    /// counted against the task (it is the operator's call, not the agent's failure).
    pub(super) fn requeue_by_hand(&mut self, id: TaskId, now: u64) -> Result<(), EngineError> {
        let task = self.load_task(id)?;
        let (status, holder, generation) = (task.status, task.assigned_to.clone(), task.generation);
        task.requeue_by_hand(now)
            .map_err(|_| EngineError::InvalidState(status.as_str()))?;
        tracing::info!(task = %id, "requeued by hand");
        if let Some(holder) = holder {
            self.cancel_on_agent(&holder, id, generation);
            self.release(&holder, id, Outcome::Returned, now);
        }
        self.after_return(id, Requeue::Queued);
        Ok(())
    }

    pub(super) fn retry_dead_letter(&mut self, id: TaskId, now: u64) -> Result<u8, EngineError> {
        let task = self.load_task(id)?;
        let status = task.status;
        task.retry_from_dead_letter(now)
            .map_err(|_| EngineError::InvalidState(status.as_str()))?;
        let priority = task.priority;
        self.after_return(id, Requeue::Queued);
        Ok(priority)
    }
}
