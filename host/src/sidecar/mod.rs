//! `switchyard agent`: the sidecar that runs tasks on an agent's machine.
//!
//! It holds the connection to the hub, takes tasks one at a time, runs the real worker for
//! each (a command, or AgentCom's file contract) and reports the outcome, and it survives a
//! crash or restart of either side without losing work: the task in flight and an unreported
//! result live in a state folder, written before anything is acknowledged to the hub.
//!
//! - [`config`]: the TOML file and the flags, checked at start-up.
//! - [`state`]: the durable state folder.
//! - [`process`]: workers as process groups, and what a crashed sidecar left running.
//! - [`runner`]: running one task, and mapping its end to an outcome.
//! - [`contract`]: AgentCom's file contract.
//! - [`backoff`]: reconnect delays.
//! - [`connection`]: the protocol, the reconnect loop and the task slot.

pub mod backoff;
pub mod config;
pub mod connection;
pub mod contract;
pub mod process;
pub mod runner;
pub mod state;

pub use config::{AgentArgs, AgentConfig};

use anyhow::Context;
use config::Worker;

/// Runs the sidecar until SIGTERM or Ctrl-C.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args).context("invalid agent configuration")?;
    if let Worker::Files(files) = &config.worker {
        std::fs::create_dir_all(&files.results_dir).with_context(|| {
            format!(
                "cannot create file_contract.results_dir {}",
                files.results_dir.display()
            )
        })?;
    }
    let (state, record) = state::StateDir::open(&config.state_dir)?;
    if let Some(mark) = record.as_ref().and_then(|r| r.worker.as_ref()) {
        let killed = process::kill_leftovers(mark);
        if killed > 0 {
            tracing::warn!(
                killed,
                pgid = mark.pgid,
                "killed worker processes a previous run of the agent left behind"
            );
        }
    }
    tracing::info!(
        agent_id = %config.agent_id,
        hub = %config.hub_url,
        state_dir = %state.path().display(),
        "switchyard agent starting"
    );
    connection::Sidecar::new(config, state, record)
        .run(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}
