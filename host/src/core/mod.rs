//! The core: one thread that owns all scheduling state (design principle 1).
//!
//! Connections and HTTP handlers send [`Command`]s and await answers. The thread takes every
//! command waiting, applies them together, commits them in one LMDB transaction and only then
//! answers and pushes (group commit, principle 2). It runs on its own OS thread because both
//! LMDB writes and policy calls block.

pub mod agent;
pub mod command;
pub mod config;
mod hub;
pub mod outbox;
pub mod task;
pub mod timers;

pub use command::{Command, CoreError, Reply, Submitted};
pub use config::CoreConfig;
pub use hub::new_token;

use crate::policy::PolicyHost;
use crate::store::{Store, StoreError};
use crate::wire::now_ms;
use hub::Hub;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// Commands applied in one batch at most, so one commit never grows without bound.
const MAX_BATCH: usize = 4096;

/// A handle to the core thread. Cloning it is cheap; the thread stops when every handle is gone.
#[derive(Clone)]
pub struct Core {
    commands: mpsc::Sender<Command>,
    connected: Arc<AtomicUsize>,
}

impl Core {
    /// Loads the live state from `store` into `policy` and starts the core thread.
    pub fn start(
        store: Arc<Store>,
        policy: PolicyHost,
        config: CoreConfig,
    ) -> Result<(Core, JoinHandle<()>), StoreError> {
        let connected = Arc::new(AtomicUsize::new(0));
        let hub = Hub::load(store, policy, config, connected.clone(), now_ms())?;
        let (commands, inbox) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("switchyard-core".into())
            .spawn(move || run(hub, inbox))
            .expect("the core thread starts");
        Ok((
            Core {
                commands,
                connected,
            },
            thread,
        ))
    }

    /// Sends a command whose answer, if any, travels another way.
    pub fn send(&self, command: Command) {
        // The core only stops when every handle is dropped, so this cannot fail while `self` lives.
        let _ = self.commands.send(command);
    }

    /// Sends a command and awaits its answer.
    pub async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, CoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply));
        answer.await.unwrap_or(Err(CoreError::Stopped))
    }

    /// Agents with an identified connection.
    pub fn agents_connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }
}

fn run(mut hub: Hub, inbox: mpsc::Receiver<Command>) {
    loop {
        let first = match hub.next_timer() {
            Some(at) => inbox.recv_timeout(Duration::from_millis(at.saturating_sub(now_ms()))),
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut batch = Vec::new();
        match first {
            Ok(command) => batch.push(command),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let now = now_ms();
        hub.apply(batch, now);
        hub.commit(now);
    }
    tracing::info!("core stopped");
}
