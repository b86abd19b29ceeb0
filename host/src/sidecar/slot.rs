//! The task slot: the one task the sidecar holds, from its assignment until the hub has its
//! result.
//!
//! The slot outlives connections: a worker keeps running while the hub is unreachable, and its
//! result waits on disk until a connection is back. After every identify the slot settles with
//! the hub what became of its task: a finished result is sent as it is (the hub's fencing
//! refuses it if the task moved on), a task still in flight is announced with
//! `task_recovering` and continues only once the hub answers `task_continue`.
//!
//! Every frame that acknowledges something to the hub (`task_accepted`, the result) is sent
//! only after the state folder holds what it acknowledges.

use crate::sidecar::config::Worker;
use crate::sidecar::contract::ContractFiles;
use crate::sidecar::link::{HubLink, LinkError};
use crate::sidecar::runner::{self, Run, RunEvent};
use crate::sidecar::state::{StateDir, TaskRecord, Verdict};
use crate::wire::agent::{AckStatus, ClientMessage, ErrorCode, HubMessage, TaskReport};
use crate::wire::TaskId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A result the hub has not acknowledged this long is sent again over a new connection.
const REPORT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// The task held, in memory; `record` is what the state folder has.
struct Held {
    record: TaskRecord,
    /// The worker, while it runs.
    run: Option<Run>,
    /// On this connection, the hub has not yet said the task is still ours (the sidecar
    /// restarted or reconnected): nothing is started or reported until it does.
    unconfirmed: bool,
    /// When the result was sent on this connection (until the hub acknowledges it).
    reported_at: Option<Instant>,
}

/// The sidecar's one task, its worker and its record in the state folder.
pub struct TaskSlot {
    agent_id: String,
    worker: Arc<Worker>,
    state: StateDir,
    held: Option<Held>,
    /// Where runs report; the sidecar's loop reads the other end and hands each event to
    /// [`TaskSlot::on_run_event`].
    events: mpsc::UnboundedSender<RunEvent>,
    /// Runs started so far, which numbers them: an event from a run stopped since is ignored.
    runs: u64,
}

impl TaskSlot {
    /// `record`: the task a previous run of the sidecar left in the state folder.
    pub fn new(
        agent_id: String,
        worker: Worker,
        state: StateDir,
        record: Option<TaskRecord>,
        events: mpsc::UnboundedSender<RunEvent>,
    ) -> TaskSlot {
        let worker = Arc::new(worker);
        let held = record.map(|record| {
            match &record.verdict {
                Some(_) => {
                    tracing::info!(task_id = %record.task_id, generation = record.generation,
                        "a finished result is waiting to be delivered");
                    // Saved, so the contract's files are no longer needed (a crash may have
                    // come between the save and their removal).
                    if let Worker::Files(files) = &*worker {
                        ContractFiles::new(files, record.task_id).remove();
                    }
                }
                None => tracing::info!(task_id = %record.task_id, generation = record.generation,
                    "a task was in flight when the agent stopped; will ask the hub whether to continue"),
            }
            Held {
                record,
                run: None,
                unconfirmed: true,
                reported_at: None,
            }
        });
        TaskSlot {
            agent_id,
            worker,
            state,
            held,
            events,
            runs: 0,
        }
    }

    /// When the connection is given up if the hub has not acknowledged the result sent on it.
    pub fn report_ack_deadline(&self) -> Option<Instant> {
        self.held
            .as_ref()
            .and_then(|held| held.reported_at)
            .map(|at| at + REPORT_ACK_TIMEOUT)
    }

    /// Settles the held task with the hub on a new connection.
    pub async fn after_identify(&mut self, link: &mut HubLink) -> Result<(), LinkError> {
        let Some(held) = &mut self.held else {
            return Ok(());
        };
        held.reported_at = None;
        if held.record.verdict.is_some() {
            // Sent with the generation it was run under: the hub takes it if the task is
            // still ours at that generation, and refuses it (fenced) otherwise.
            held.unconfirmed = false;
            tracing::info!(task_id = %held.record.task_id, "delivering a result finished while away");
            self.send_report(link).await
        } else {
            held.unconfirmed = true;
            tracing::info!(task_id = %held.record.task_id, "asking the hub whether the task is still ours");
            let task_id = held.record.task_id.to_string();
            link.send(&ClientMessage::TaskRecovering { task_id }).await
        }
    }

    /// Acts on a frame from the hub. `Err` when the connection failed while answering it.
    pub async fn on_hub_message(
        &mut self,
        message: HubMessage,
        link: &mut HubLink,
    ) -> Result<(), LinkError> {
        match message {
            HubMessage::TaskAssign {
                task_id,
                description,
                metadata,
                generation,
                assigned_at,
            } => {
                let record = TaskRecord {
                    task_id,
                    generation,
                    description,
                    metadata,
                    assigned_at,
                    attempt: 1,
                    worker: None,
                    verdict: None,
                };
                self.on_assign(record, link).await
            }
            HubMessage::TaskContinue {
                task_id,
                generation,
            } => self.on_continue(task_id, generation, link).await,
            HubMessage::TaskAck { task_id, status } => {
                self.on_ack(task_id, status);
                Ok(())
            }
            HubMessage::TaskCancel {
                task_id,
                generation,
            } => {
                if self.holds(task_id).is_some_and(|held| generation >= held) {
                    tracing::info!(%task_id, "the hub cancelled the task; stopping its worker");
                    self.forget().await;
                }
                Ok(())
            }
            HubMessage::TaskReassign { task_id } => {
                if self.holds(task_id).is_some() {
                    tracing::info!(%task_id, "the task was given to another agent; dropping it");
                    self.forget().await;
                }
                Ok(())
            }
            HubMessage::Error { error } => {
                self.on_error(error).await;
                Ok(())
            }
            HubMessage::Identified { .. } | HubMessage::Pong { .. } | HubMessage::Other => Ok(()),
        }
    }

    /// The generation of the task held, if it is `task_id`.
    fn holds(&self, task_id: TaskId) -> Option<u64> {
        self.held
            .as_ref()
            .filter(|held| held.record.task_id == task_id)
            .map(|held| held.record.generation)
    }

    async fn on_assign(&mut self, record: TaskRecord, link: &mut HubLink) -> Result<(), LinkError> {
        if let Some(held) = &mut self.held {
            if held.record.task_id == record.task_id && held.record.generation == record.generation
            {
                // Pushed again: the hub never saw our acceptance (we restarted or lost the
                // connection before it arrived). It is still ours, as it was.
                held.unconfirmed = false;
                let accepted = ClientMessage::TaskAccepted {
                    task_id: record.task_id.to_string(),
                    generation: Some(record.generation),
                };
                link.send(&accepted).await?;
                if held.record.verdict.is_some() {
                    return self.send_report(link).await;
                }
                if held.run.is_none() {
                    self.start_run(true);
                }
                return Ok(());
            }
            // The hub gives an agent one task at a time: a new assignment means it no longer
            // counts the old one as ours. Normal when the result was sent and the new task
            // overtook its ack (the protocol does not order them); otherwise the old task was
            // taken back while we were away, and its result would be refused.
            if held.reported_at.is_none() {
                tracing::warn!(held = %held.record.task_id, held_generation = held.record.generation,
                    task_id = %record.task_id, generation = record.generation,
                    "the hub assigned a new task; dropping the one held");
            }
            self.forget().await;
        }
        self.take(record, link).await
    }

    /// Takes a new task: on disk, then `task_accepted`, then the worker.
    async fn take(&mut self, record: TaskRecord, link: &mut HubLink) -> Result<(), LinkError> {
        let task_id = record.task_id.to_string();
        if let Err(error) = self.state.save(&record) {
            // Never accept what would be lost in a crash: give it back instead.
            tracing::error!(%error, %task_id, "cannot save the task; rejecting it");
            return link.send(&cannot_save(task_id)).await;
        }
        tracing::info!(%task_id, generation = record.generation, "task accepted");
        let generation = Some(record.generation);
        self.held = Some(Held {
            record,
            run: None,
            unconfirmed: false,
            reported_at: None,
        });
        link.send(&ClientMessage::TaskAccepted {
            task_id,
            generation,
        })
        .await?;
        self.start_run(false);
        Ok(())
    }

    async fn on_continue(
        &mut self,
        task_id: TaskId,
        generation: u64,
        link: &mut HubLink,
    ) -> Result<(), LinkError> {
        let Some(held) = &mut self.held else {
            return Ok(());
        };
        if held.record.task_id != task_id {
            return Ok(());
        }
        if held.record.generation != generation {
            // The task went back to the queue and came back to us: a new attempt, from the start.
            tracing::info!(%task_id, generation, "the task came back with a new generation; starting it again");
            let record = TaskRecord {
                generation,
                attempt: 1,
                worker: None,
                verdict: None,
                ..held.record.clone()
            };
            self.forget().await;
            if let Err(error) = self.state.save(&record) {
                tracing::error!(%error, %task_id, "cannot save the task; rejecting it");
                return link.send(&cannot_save(task_id.to_string())).await;
            }
            self.held = Some(Held {
                record,
                run: None,
                unconfirmed: false,
                reported_at: None,
            });
            self.start_run(false);
            return Ok(());
        }
        held.unconfirmed = false;
        if held.record.verdict.is_some() {
            return self.send_report(link).await;
        }
        if held.run.is_none() {
            tracing::info!(%task_id, "the hub says continue; running the task again");
            self.start_run(true);
        }
        Ok(())
    }

    fn on_ack(&mut self, task_id: TaskId, status: AckStatus) {
        if status == AckStatus::Accepted {
            return;
        }
        let reported = self
            .held
            .as_ref()
            .is_some_and(|held| held.record.task_id == task_id && held.reported_at.is_some());
        if reported {
            tracing::info!(%task_id, ?status, "the hub has the result");
            self.held = None;
            if let Err(error) = self.state.clear() {
                tracing::error!(%error, "cannot clear the state folder");
            }
        }
    }

    /// Every [`Refusal`](crate::wire::agent::Refusal) means the hub will never take that report:
    /// the task is finished, gone, or someone else's now (`docs/protocol.md`, "Generations and
    /// fencing"). So a refused report ends the task here.
    async fn on_error(&mut self, code: ErrorCode) {
        match code {
            ErrorCode::TaskReportRefused {
                report: TaskReport::Accepted,
                refusal,
            } => {
                if let Some(held) = self
                    .held
                    .as_ref()
                    .filter(|held| held.record.verdict.is_none())
                {
                    tracing::warn!(task_id = %held.record.task_id, reason = %refusal,
                        "the hub refused our acceptance; stopping the task");
                    self.forget().await;
                }
            }
            ErrorCode::TaskReportRefused {
                report: TaskReport::Complete | TaskReport::Failed | TaskReport::Rejected,
                refusal,
            } => {
                if let Some(held) = self.held.as_ref().filter(|held| held.reported_at.is_some()) {
                    tracing::warn!(task_id = %held.record.task_id, reason = %refusal,
                        "the hub refused the result: the task is no longer ours; dropping it");
                    self.forget().await;
                }
            }
            code => tracing::warn!(error = %code, "the hub reported an error"),
        }
    }

    /// Takes what a run reports. `link`: the connection, when there is one; without it a
    /// finished result waits on disk for the next.
    pub async fn on_run_event(
        &mut self,
        event: RunEvent,
        link: Option<&mut HubLink>,
    ) -> Result<(), LinkError> {
        let run_id = match &event {
            RunEvent::Spawned { run, .. } | RunEvent::Finished { run, .. } => *run,
        };
        let Some(held) = self
            .held
            .as_mut()
            .filter(|held| held.run.as_ref().is_some_and(|run| run.id == run_id))
        else {
            return Ok(()); // from a run stopped since
        };
        match event {
            RunEvent::Spawned { mark, .. } => {
                held.record.worker = Some(mark);
                if let Err(error) = self.state.save(&held.record) {
                    tracing::error!(%error, "cannot save the worker's process group");
                }
                Ok(())
            }
            RunEvent::Finished { verdict, .. } => {
                held.run = None;
                match &verdict {
                    Verdict::Success { .. } => {
                        tracing::info!(task_id = %held.record.task_id, "the worker finished the task")
                    }
                    Verdict::Failure { error } => {
                        tracing::warn!(task_id = %held.record.task_id, %error, "the task failed")
                    }
                    Verdict::Rejected { reason } => {
                        tracing::error!(task_id = %held.record.task_id, %reason, "the worker cannot start")
                    }
                }
                held.record.worker = None;
                held.record.verdict = Some(verdict);
                match self.state.save(&held.record) {
                    Ok(()) => {
                        if let Worker::Files(files) = &*self.worker {
                            ContractFiles::new(files, held.record.task_id).remove();
                        }
                    }
                    // Still reported: a result kept in memory only beats no result.
                    Err(error) => {
                        tracing::error!(%error, "cannot save the result; it is kept in memory only")
                    }
                }
                match link {
                    Some(link) => self.send_report(link).await,
                    None => Ok(()),
                }
            }
        }
    }

    /// Sends the held result, once per connection, when the hub has confirmed the task.
    async fn send_report(&mut self, link: &mut HubLink) -> Result<(), LinkError> {
        let Some(held) = &mut self.held else {
            return Ok(());
        };
        let Some(verdict) = &held.record.verdict else {
            return Ok(());
        };
        if held.unconfirmed || held.reported_at.is_some() {
            return Ok(());
        }
        let task_id = held.record.task_id.to_string();
        let generation = held.record.generation;
        let message = match verdict {
            Verdict::Success { result } => ClientMessage::TaskComplete {
                task_id,
                generation,
                result: result.clone(),
                tokens_used: None,
            },
            Verdict::Failure { error } => ClientMessage::TaskFailed {
                task_id,
                generation,
                error: error.clone(),
            },
            Verdict::Rejected { reason } => ClientMessage::TaskRejected {
                task_id,
                reason: Some(reason.clone()),
            },
        };
        held.reported_at = Some(Instant::now());
        link.send(&message).await
    }

    /// Tells the hub the task is being worked on, while its worker runs.
    pub async fn send_progress(&mut self, link: &mut HubLink) -> Result<(), LinkError> {
        match &self.held {
            Some(held) if held.run.is_some() && !held.unconfirmed => {
                let task_id = held.record.task_id.to_string();
                link.send(&ClientMessage::TaskProgress { task_id }).await
            }
            _ => Ok(()),
        }
    }

    /// Starts the worker for the held task. `resume`: the task was in flight before a restart
    /// or a lost acceptance (counted as another attempt).
    fn start_run(&mut self, resume: bool) {
        let Some(held) = &mut self.held else { return };
        if resume {
            held.record.attempt += 1;
            if let Err(error) = self.state.save(&held.record) {
                tracing::error!(%error, "cannot save the task's attempt count");
            }
        }
        self.runs += 1;
        tracing::debug!(task_id = %held.record.task_id, attempt = held.record.attempt, "starting the worker");
        held.run = Some(runner::start(
            self.worker.clone(),
            &self.agent_id,
            &held.record,
            resume,
            self.runs,
            self.events.clone(),
        ));
    }

    /// Forgets the held task: stops its worker, removes its files and its record.
    async fn forget(&mut self) {
        let Some(held) = self.held.take() else { return };
        if let Some(run) = held.run {
            run.stop().await;
        }
        if let Worker::Files(files) = &*self.worker {
            ContractFiles::new(files, held.record.task_id).remove();
        }
        if let Err(error) = self.state.clear() {
            tracing::error!(%error, "cannot clear the state folder");
        }
    }

    /// Shutting down: a running worker is killed, and its task stays on disk to be taken up
    /// again (`task_recovering`) at the next start.
    pub async fn stop_worker(&mut self) {
        if let Some(run) = self.held.as_mut().and_then(|held| held.run.take()) {
            tracing::info!("stopping the worker; its task resumes at the next start");
            run.stop().await;
        }
    }
}

/// Gives back a task the state folder cannot hold: accepting it would risk losing it in a crash.
fn cannot_save(task_id: String) -> ClientMessage {
    ClientMessage::TaskRejected {
        task_id,
        reason: Some("the agent cannot write its state folder".to_owned()),
    }
}
