//! The connection to the hub, and the one task the sidecar holds.
//!
//! The sidecar outlives its connections: a worker keeps running while the hub is unreachable,
//! and its result waits on disk until a connection is back. After every identify the sidecar
//! settles with the hub what became of its task: a finished result is sent as it is (the hub's
//! fencing refuses it if the task moved on), a task still in flight is announced with
//! `task_recovering` and continues only once the hub answers `task_continue`.
//!
//! Every frame that acknowledges something to the hub (`task_accepted`, the result) is sent
//! only after the state folder holds what it acknowledges.

use crate::sidecar::backoff::Backoff;
use crate::sidecar::config::{AgentConfig, Worker};
use crate::sidecar::contract::ContractFiles;
use crate::sidecar::runner::{self, Run, RunEvent};
use crate::sidecar::state::{StateDir, TaskRecord, Verdict};
use crate::wire::agent::{AckStatus, ClientMessage, HubMessage, Identify};
use crate::wire::TaskId;
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opening the socket and the identify handshake, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame that cannot be written this long means the connection is dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A result the hub has not acknowledged this long is sent again over a new connection.
const REPORT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The refusals that mean the hub will never take this result (the task is finished, gone,
/// or someone else's now): `spec/agent-protocol.md`, "Failure reasons".
const FENCED: [&str; 4] = [
    "not_found",
    "invalid_state",
    "not_assignee",
    "stale_generation",
];

/// Why a session with the hub ended.
enum End {
    Shutdown,
    Lost(String),
}

/// The task held, in memory; `record` is what the state folder has.
struct Slot {
    record: TaskRecord,
    /// The worker, while it runs.
    run: Option<Run>,
    /// On this connection, the hub has not yet said the task is still ours (the sidecar
    /// restarted or reconnected): nothing is started or reported until it does.
    unconfirmed: bool,
    /// When the result was sent on this connection (until the hub acknowledges it).
    reported_at: Option<Instant>,
}

/// The sidecar: configuration, state folder, the task slot and the reconnect loop.
pub struct Sidecar {
    config: AgentConfig,
    worker: Arc<Worker>,
    state: StateDir,
    slot: Option<Slot>,
    backoff: Backoff,
    events_tx: mpsc::UnboundedSender<RunEvent>,
    events_rx: mpsc::UnboundedReceiver<RunEvent>,
    runs: u64,
}

impl Sidecar {
    /// `record`: the task a previous run of the sidecar left in the state folder.
    pub fn new(config: AgentConfig, state: StateDir, record: Option<TaskRecord>) -> Sidecar {
        let worker = Arc::new(config.worker.clone());
        let backoff = Backoff::new(config.timing.reconnect_min, config.timing.reconnect_max);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let slot = record.map(|record| {
            match &record.outcome {
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
            Slot {
                record,
                run: None,
                unconfirmed: true,
                reported_at: None,
            }
        });
        Sidecar {
            config,
            worker,
            state,
            slot,
            backoff,
            events_tx,
            events_rx,
            runs: 0,
        }
    }

    /// Connects, serves, reconnects, until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut delay = Duration::ZERO;
        loop {
            // Between connections a run may finish: its result goes to disk at once.
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    Some(event) = self.events_rx.recv() => {
                        let _ = self.on_run_event(event, None).await;
                    }
                    _ = shutdown.as_mut() => return self.stop(None).await,
                }
            }
            let connected = tokio::select! {
                connected = self.connect() => connected,
                _ = shutdown.as_mut() => return self.stop(None).await,
            };
            match connected {
                Ok(ws) => {
                    self.backoff.reset();
                    tracing::info!(hub = %self.config.hub_url, agent_id = %self.config.agent_id, "connected to the hub");
                    match self.session(ws, &mut shutdown).await {
                        End::Shutdown => return Ok(()),
                        End::Lost(why) => {
                            tracing::warn!(reason = %why, "lost the connection to the hub")
                        }
                    }
                }
                Err(why) => {
                    tracing::warn!(reason = %why, hub = %self.config.hub_url, "cannot connect to the hub")
                }
            }
            delay = self.backoff.next_delay();
            tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
        }
    }

    /// Opens the socket and identifies. A refused identify is a failed attempt like any other,
    /// so it backs off too.
    async fn connect(&self) -> Result<Ws, String> {
        let url = self.config.hub_url.as_str();
        let (mut ws, _) = timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let identify = ClientMessage::Identify(Identify {
            agent_id: self.config.agent_id.clone(),
            token: self.config.token.clone(),
            name: self.config.name.clone(),
            status: None,
            capabilities: self.config.capabilities.clone(),
        });
        send(&mut ws, &identify).await?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            let frame = timeout_at(deadline, ws.next())
                .await
                .map_err(|_| "no answer to identify".to_owned())?;
            match frame {
                None => return Err("the hub closed the connection during identify".into()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(Message::Close(frame))) => return Err(closed(frame)),
                Some(Ok(Message::Text(text))) => match HubMessage::parse(text.as_str()) {
                    Ok(HubMessage::Identified { .. }) => return Ok(ws),
                    Ok(HubMessage::Error { error }) => {
                        let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
                        return Err(format!(
                            "the hub refused to identify agent {}: {error}",
                            self.config.agent_id
                        ));
                    }
                    _ => continue,
                },
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Serves one identified connection until it is lost or the sidecar stops.
    async fn session<F: Future<Output = ()>>(
        &mut self,
        mut ws: Ws,
        shutdown: &mut Pin<&mut F>,
    ) -> End {
        if let Err(why) = self.after_identify(&mut ws).await {
            return End::Lost(why);
        }
        let timing = self.config.timing;
        let mut ping =
            tokio::time::interval_at(Instant::now() + timing.ping_interval, timing.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut progress = tokio::time::interval_at(
            Instant::now() + timing.progress_interval,
            timing.progress_interval,
        );
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pong_deadline: Option<Instant> = None;
        loop {
            let report_deadline = self
                .slot
                .as_ref()
                .and_then(|slot| slot.reported_at)
                .map(|at| at + REPORT_ACK_TIMEOUT);
            let result = tokio::select! {
                frame = ws.next() => match frame {
                    None => Err("the hub closed the connection".to_owned()),
                    Some(Err(e)) => Err(e.to_string()),
                    Some(Ok(Message::Close(frame))) => Err(closed(frame)),
                    Some(Ok(Message::Text(text))) => match HubMessage::parse(text.as_str()) {
                        Ok(HubMessage::Pong { .. }) => {
                            pong_deadline = None;
                            Ok(())
                        }
                        Ok(message) => self.on_hub_message(message, &mut ws).await,
                        Err(error) => {
                            tracing::warn!(%error, frame = %text.as_str(), "ignoring a frame the agent cannot read");
                            Ok(())
                        }
                    },
                    Some(Ok(_)) => Ok(()),
                },
                Some(event) = self.events_rx.recv() => self.on_run_event(event, Some(&mut ws)).await,
                _ = ping.tick() => {
                    pong_deadline.get_or_insert(Instant::now() + timing.pong_timeout);
                    send(&mut ws, &ClientMessage::Ping).await
                }
                _ = sleep_until(pong_deadline) => Err(format!("no pong within {:?}", timing.pong_timeout)),
                _ = sleep_until(report_deadline) => Err("the hub did not acknowledge the result".to_owned()),
                _ = progress.tick() => self.send_progress(&mut ws).await,
                _ = shutdown.as_mut() => {
                    let _ = self.stop(Some(&mut ws)).await;
                    return End::Shutdown;
                }
            };
            if let Err(why) = result {
                return End::Lost(why);
            }
        }
    }

    /// Settles the held task with the hub on a new connection.
    async fn after_identify(&mut self, ws: &mut Ws) -> Result<(), String> {
        let Some(slot) = &mut self.slot else {
            return Ok(());
        };
        slot.reported_at = None;
        if slot.record.outcome.is_some() {
            // Sent with the generation it was run under: the hub takes it if the task is
            // still ours at that generation, and refuses it (fenced) otherwise.
            slot.unconfirmed = false;
            tracing::info!(task_id = %slot.record.task_id, "delivering a result finished while away");
            self.send_report(ws).await
        } else {
            slot.unconfirmed = true;
            tracing::info!(task_id = %slot.record.task_id, "asking the hub whether the task is still ours");
            let task_id = slot.record.task_id.to_string();
            send(ws, &ClientMessage::TaskRecovering { task_id }).await
        }
    }

    async fn on_hub_message(&mut self, message: HubMessage, ws: &mut Ws) -> Result<(), String> {
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
                    outcome: None,
                };
                self.on_assign(record, ws).await
            }
            HubMessage::TaskContinue {
                task_id,
                generation,
            } => self.on_continue(task_id, generation, ws).await,
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
                    self.drop_slot().await;
                }
                Ok(())
            }
            HubMessage::TaskReassign { task_id } => {
                if self.holds(task_id).is_some() {
                    tracing::info!(%task_id, "the task was given to another agent; dropping it");
                    self.drop_slot().await;
                }
                Ok(())
            }
            HubMessage::Error { error } => self.on_error(&error).await,
            HubMessage::Identified { .. } | HubMessage::Pong { .. } | HubMessage::Other => Ok(()),
        }
    }

    /// The generation of the task held, if it is `task_id`.
    fn holds(&self, task_id: TaskId) -> Option<u64> {
        self.slot
            .as_ref()
            .filter(|slot| slot.record.task_id == task_id)
            .map(|slot| slot.record.generation)
    }

    async fn on_assign(&mut self, record: TaskRecord, ws: &mut Ws) -> Result<(), String> {
        if let Some(slot) = &mut self.slot {
            if slot.record.task_id == record.task_id && slot.record.generation == record.generation
            {
                // Pushed again: the hub never saw our acceptance (we restarted or lost the
                // connection before it arrived). It is still ours, as it was.
                slot.unconfirmed = false;
                let accepted = ClientMessage::TaskAccepted {
                    task_id: record.task_id.to_string(),
                    generation: Some(record.generation),
                };
                send(ws, &accepted).await?;
                if slot.record.outcome.is_some() {
                    return self.send_report(ws).await;
                }
                if slot.run.is_none() {
                    self.start_run(true);
                }
                return Ok(());
            }
            // The hub gives an agent one task at a time: a new assignment means it no longer
            // counts the old one as ours. Normal when the result was sent and the new task
            // overtook its ack (the protocol does not order them); otherwise the old task was
            // taken back while we were away, and its result would be refused.
            if slot.reported_at.is_none() {
                tracing::warn!(held = %slot.record.task_id, held_generation = slot.record.generation,
                    task_id = %record.task_id, generation = record.generation,
                    "the hub assigned a new task; dropping the one held");
            }
            self.drop_slot().await;
        }
        self.take(record, ws).await
    }

    /// Takes a new task: on disk, then `task_accepted`, then the worker.
    async fn take(&mut self, record: TaskRecord, ws: &mut Ws) -> Result<(), String> {
        let task_id = record.task_id.to_string();
        if let Err(error) = self.state.save(&record) {
            // Never accept what would be lost in a crash: give it back instead.
            tracing::error!(%error, %task_id, "cannot save the task; rejecting it");
            let reason = Some("the agent cannot write its state folder".to_owned());
            return send(ws, &ClientMessage::TaskRejected { task_id, reason }).await;
        }
        tracing::info!(%task_id, generation = record.generation, "task accepted");
        let generation = Some(record.generation);
        self.slot = Some(Slot {
            record,
            run: None,
            unconfirmed: false,
            reported_at: None,
        });
        send(
            ws,
            &ClientMessage::TaskAccepted {
                task_id,
                generation,
            },
        )
        .await?;
        self.start_run(false);
        Ok(())
    }

    async fn on_continue(
        &mut self,
        task_id: TaskId,
        generation: u64,
        ws: &mut Ws,
    ) -> Result<(), String> {
        let Some(slot) = &mut self.slot else {
            return Ok(());
        };
        if slot.record.task_id != task_id {
            return Ok(());
        }
        if slot.record.generation != generation {
            // The task went back to the queue and came back to us: a new attempt, from the start.
            tracing::info!(%task_id, generation, "the task came back with a new generation; starting it again");
            let record = TaskRecord {
                generation,
                attempt: 1,
                worker: None,
                outcome: None,
                ..slot.record.clone()
            };
            self.drop_slot().await;
            if let Err(error) = self.state.save(&record) {
                tracing::error!(%error, %task_id, "cannot save the task; rejecting it");
                let reason = Some("the agent cannot write its state folder".to_owned());
                let task_id = task_id.to_string();
                return send(ws, &ClientMessage::TaskRejected { task_id, reason }).await;
            }
            self.slot = Some(Slot {
                record,
                run: None,
                unconfirmed: false,
                reported_at: None,
            });
            self.start_run(false);
            return Ok(());
        }
        slot.unconfirmed = false;
        if slot.record.outcome.is_some() {
            return self.send_report(ws).await;
        }
        if slot.run.is_none() {
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
            .slot
            .as_ref()
            .is_some_and(|slot| slot.record.task_id == task_id && slot.reported_at.is_some());
        if reported {
            tracing::info!(%task_id, ?status, "the hub has the result");
            self.slot = None;
            if let Err(error) = self.state.clear() {
                tracing::error!(%error, "cannot clear the state folder");
            }
        }
    }

    async fn on_error(&mut self, error: &str) -> Result<(), String> {
        let (kind, reason) = error.split_once(": ").unwrap_or((error, ""));
        let fenced = FENCED.contains(&reason.trim());
        match kind {
            "task_complete_failed" | "task_fail_failed" | "task_reject_failed" => {
                let Some(slot) = self.slot.as_ref().filter(|slot| slot.reported_at.is_some())
                else {
                    return Ok(());
                };
                if fenced {
                    tracing::warn!(task_id = %slot.record.task_id, %reason,
                        "the hub refused the result: the task is no longer ours; dropping it");
                    self.drop_slot().await;
                    Ok(())
                } else {
                    Err(format!(
                        "the hub could not take the result ({error}); will send it again"
                    ))
                }
            }
            "task_accept_failed" if fenced => {
                if let Some(slot) = self
                    .slot
                    .as_ref()
                    .filter(|slot| slot.record.outcome.is_none())
                {
                    tracing::warn!(task_id = %slot.record.task_id, %reason,
                        "the hub refused our acceptance; stopping the task");
                    self.drop_slot().await;
                }
                Ok(())
            }
            _ => {
                tracing::warn!(%error, "the hub reported an error");
                Ok(())
            }
        }
    }

    async fn on_run_event(&mut self, event: RunEvent, ws: Option<&mut Ws>) -> Result<(), String> {
        let run_id = match &event {
            RunEvent::Spawned { run, .. } | RunEvent::Finished { run, .. } => *run,
        };
        let Some(slot) = self
            .slot
            .as_mut()
            .filter(|slot| slot.run.as_ref().is_some_and(|run| run.id == run_id))
        else {
            return Ok(()); // from a run stopped since
        };
        match event {
            RunEvent::Spawned { mark, .. } => {
                slot.record.worker = Some(mark);
                if let Err(error) = self.state.save(&slot.record) {
                    tracing::error!(%error, "cannot save the worker's process group");
                }
                Ok(())
            }
            RunEvent::Finished { outcome, .. } => {
                slot.run = None;
                match &outcome {
                    Verdict::Success { .. } => {
                        tracing::info!(task_id = %slot.record.task_id, "the worker finished the task")
                    }
                    Verdict::Failure { error } => {
                        tracing::warn!(task_id = %slot.record.task_id, %error, "the task failed")
                    }
                    Verdict::Rejected { reason } => {
                        tracing::error!(task_id = %slot.record.task_id, %reason, "the worker cannot start")
                    }
                }
                slot.record.worker = None;
                slot.record.outcome = Some(outcome);
                match self.state.save(&slot.record) {
                    Ok(()) => {
                        if let Worker::Files(files) = &*self.worker {
                            ContractFiles::new(files, slot.record.task_id).remove();
                        }
                    }
                    // Still reported: a result kept in memory only beats no result.
                    Err(error) => {
                        tracing::error!(%error, "cannot save the result; it is kept in memory only")
                    }
                }
                match ws {
                    Some(ws) => self.send_report(ws).await,
                    None => Ok(()),
                }
            }
        }
    }

    /// Sends the held result, once per connection, when the hub has confirmed the task.
    async fn send_report(&mut self, ws: &mut Ws) -> Result<(), String> {
        let Some(slot) = &mut self.slot else {
            return Ok(());
        };
        let Some(outcome) = &slot.record.outcome else {
            return Ok(());
        };
        if slot.unconfirmed || slot.reported_at.is_some() {
            return Ok(());
        }
        let task_id = slot.record.task_id.to_string();
        let generation = slot.record.generation;
        let message = match outcome {
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
        slot.reported_at = Some(Instant::now());
        send(ws, &message).await
    }

    async fn send_progress(&mut self, ws: &mut Ws) -> Result<(), String> {
        match &self.slot {
            Some(slot) if slot.run.is_some() && !slot.unconfirmed => {
                let task_id = slot.record.task_id.to_string();
                send(ws, &ClientMessage::TaskProgress { task_id }).await
            }
            _ => Ok(()),
        }
    }

    /// Starts the worker for the held task. `resume`: the task was in flight before a restart
    /// or a lost acceptance (counted as another attempt).
    fn start_run(&mut self, resume: bool) {
        let Some(slot) = &mut self.slot else { return };
        if resume {
            slot.record.attempt += 1;
            if let Err(error) = self.state.save(&slot.record) {
                tracing::error!(%error, "cannot save the task's attempt count");
            }
        }
        self.runs += 1;
        tracing::debug!(task_id = %slot.record.task_id, attempt = slot.record.attempt, "starting the worker");
        slot.run = Some(runner::start(
            self.worker.clone(),
            &self.config.agent_id,
            &slot.record,
            resume,
            self.runs,
            self.events_tx.clone(),
        ));
    }

    /// Forgets the held task: stops its worker, removes its files and its record.
    async fn drop_slot(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        if let Some(run) = slot.run {
            run.stop().await;
        }
        if let Worker::Files(files) = &*self.worker {
            ContractFiles::new(files, slot.record.task_id).remove();
        }
        if let Err(error) = self.state.clear() {
            tracing::error!(%error, "cannot clear the state folder");
        }
    }

    /// Shutting down: a running worker is killed, and its task stays on disk to be taken up
    /// again (`task_recovering`) at the next start.
    async fn stop(&mut self, ws: Option<&mut Ws>) -> anyhow::Result<()> {
        // A run that finished a moment ago: its result is saved, not run again next time.
        while let Ok(event) = self.events_rx.try_recv() {
            let _ = self.on_run_event(event, None).await;
        }
        if let Some(run) = self.slot.as_mut().and_then(|slot| slot.run.take()) {
            tracing::info!("stopping the worker; its task resumes at the next start");
            run.stop().await;
        }
        if let Some(ws) = ws {
            let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
        }
        tracing::info!("switchyard agent stopped");
        Ok(())
    }
}

async fn send(ws: &mut Ws, message: &ClientMessage) -> Result<(), String> {
    match timeout(SEND_TIMEOUT, ws.send(Message::text(message.to_json()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("sending to the hub timed out".to_owned()),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn closed(frame: Option<CloseFrame>) -> String {
    match frame {
        Some(frame) => format!(
            "the hub closed the connection ({} {})",
            u16::from(frame.code),
            frame.reason.as_str()
        ),
        None => "the hub closed the connection".to_owned(),
    }
}
