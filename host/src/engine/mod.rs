//! The engine: one thread that owns all scheduling state (design principle 1).
//!
//! Connections and HTTP handlers send [`Command`]s and await answers. The thread takes every
//! command waiting, applies them together, and hands what they changed to the [`writer`],
//! which commits it in one LMDB transaction and only then answers and pushes (group commit,
//! principle 2). While the writer commits, the engine applies the commands that arrive into the
//! next batch. Both run on OS threads of their own because LMDB writes and policy calls block.

pub mod agent;
pub mod command;
pub mod config;
mod deadlines;
pub mod events;
mod feed;
pub mod histogram;
mod lifecycle;
mod observe;
pub mod outbox;
mod reports;
mod requests;
mod roster;
mod schedule;
pub mod shadow;
mod state;
pub mod stats;
pub mod tally;
mod tenant_requests;
mod tenants;
pub mod timers;
mod writer;

#[cfg(test)]
mod tests;

pub use command::{Command, EngineError, Reply, Submitted};
pub use config::{EngineConfig, DEFAULT_MAX_CAPABILITIES, DEFAULT_MAX_CAPABILITY_BYTES};
pub use roster::new_token;
pub use stats::EngineStats;
pub use writer::CommitStats;

use crate::policy::PolicyHost;
use crate::store::{Store, StoreError};
use crate::wire::now_ms;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use state::EngineState;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use writer::Writer;

/// Commands taken from the channel at once, between looks at the writer's report.
const MAX_BATCH: usize = 4096;
/// Commands applied into one open batch at most while the writer is busy; past this the engine
/// waits for the writer, so a stalled disk holds commands back instead of growing one commit.
const MAX_OPEN: usize = 4 * MAX_BATCH;
/// How long the engine sleeps when no timer is due; it wakes earlier for any command.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// A handle to the engine thread. Cloning it is cheap; the thread stops when every handle is gone.
#[derive(Clone)]
pub struct Engine {
    commands: Sender<Command>,
    stats: Arc<EngineStats>,
    commit_stats: Arc<CommitStats>,
    events: Arc<events::EventHub>,
}

impl Engine {
    /// Loads the live state from `store` into `policy` and starts the engine thread.
    pub fn start(
        store: Arc<Store>,
        policy: PolicyHost,
        config: EngineConfig,
    ) -> Result<(Engine, JoinHandle<()>), StoreError> {
        let stats = Arc::new(EngineStats::default());
        let state = EngineState::load(store.clone(), policy, config, stats.clone(), now_ms())?;
        let events = state.hub.clone();
        let (commands, inbox) = crossbeam_channel::unbounded();
        let commit_stats = Arc::new(CommitStats::default());
        let writer = Writer::start(store, commit_stats.clone());
        let thread = std::thread::Builder::new()
            .name("switchyard-engine".into())
            .spawn(move || run(state, inbox, writer))
            .expect("the engine thread starts");
        Ok((
            Engine {
                commands,
                stats,
                commit_stats,
                events,
            },
            thread,
        ))
    }

    /// Sends a command whose answer, if any, travels another way.
    pub fn send(&self, command: Command) {
        // The engine only stops when every handle is dropped, so this cannot fail while `self` lives.
        let _ = self.commands.send(command);
    }

    /// Sends a command and awaits its answer.
    pub async fn ask<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply));
        answer.await.unwrap_or(Err(EngineError::Stopped))
    }

    /// [`Engine::ask`], recording `record` in the audit log if the command succeeds, in the
    /// same commit as what it did.
    pub async fn ask_audited<T>(
        &self,
        record: crate::wire::http::AuditRecord,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, EngineError> {
        self.ask(|reply| Command::Audited {
            record,
            command: Box::new(command(reply)),
        })
        .await
    }

    /// The fan-out of the event stream.
    pub fn events(&self) -> &Arc<events::EventHub> {
        &self.events
    }

    /// What the writer has committed so far.
    pub fn commit_stats(&self) -> &CommitStats {
        &self.commit_stats
    }

    /// Agents with an identified connection.
    pub fn agents_connected(&self) -> usize {
        self.stats.connected()
    }

    /// The engine's counters (take-backs, replaced connections).
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
}

fn run(mut state: EngineState, inbox: Receiver<Command>, writer: Writer) {
    // Whether a sealed batch is with the writer, and how many commands were applied since.
    let mut writing = false;
    let mut open = 0;
    loop {
        let mut batch = Vec::new();
        let mut report = None;
        if writing && open >= MAX_OPEN {
            report = Some(writer.reports.recv().unwrap_or_else(|_| writer_gone()));
        } else {
            let wait = state.next_timer().map_or(IDLE_WAIT, |at| {
                Duration::from_millis(at.saturating_sub(now_ms()))
            });
            crossbeam_channel::select! {
                recv(inbox) -> command => match command {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                },
                recv(writer.reports) -> received => {
                    report = Some(received.unwrap_or_else(|_| writer_gone()));
                }
                default(wait) => {}
            }
        }
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        // Looked at after taking the commands: one sent by a client the commit just answered
        // is then applied after the engine has taken the commit into account.
        if report.is_none() {
            report = match writer.reports.try_recv() {
                Ok(received) => Some(received),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => writer_gone(),
            };
        }
        let now = now_ms();
        if let Some(report) = report {
            writing = false;
            state.committed(report, now);
        }
        open += batch.len();
        state.apply(batch, now);
        if !writing {
            let sealed = state.seal();
            open = 0;
            if sealed.answers_only() {
                // Nothing to make durable or push (a read, a refusal): answer now.
                sealed.release();
            } else {
                writer.send(sealed);
                writing = true;
            }
        }
    }
    writer.finish();
    tracing::info!("engine stopped");
}

/// The writer thread only ends when the engine drops its handle, so it is gone only if it
/// panicked: a bug. Nothing more can be made durable, so nothing more may be acknowledged;
/// stop the process (everything acknowledged is on disk) for its supervisor to restart.
fn writer_gone() -> ! {
    tracing::error!("the writer thread stopped; stopping the hub");
    std::process::abort();
}
