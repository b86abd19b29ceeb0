//! `switchyard agent`: the sidecar that runs tasks on an agent's machine.
//!
//! It holds the connection to the hub, takes tasks one at a time, runs the real worker for
//! each (a command, or AgentCom's file contract) and reports how it ended, and it survives a
//! crash or restart of either side without losing work: the task in flight and an unreported
//! result live in a state folder, written before anything is acknowledged to the hub.
//!
//! - [`config`]: the TOML file and the flags, checked at start-up.
//! - [`state`]: the durable state folder.
//! - [`connection`]: the loop that connects, serves and reconnects.
//! - [`link`]: one WebSocket connection to the hub, and why it was lost.
//! - [`backoff`]: reconnect delays.
//! - [`slot`]: the one task held, settled with the hub after every reconnect.
//! - [`runner`]: running one task with the configured worker, and its verdict.
//! - [`contract`]: AgentCom's file contract.
//! - [`program`]: running one worker program, as a process group.
//! - [`process`]: workers as process groups, and what a crashed sidecar left running.

pub mod backoff;
pub mod config;
pub mod connection;
pub mod contract;
pub mod link;
pub mod process;
pub mod program;
pub mod runner;
pub mod slot;
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
        .run(crate::wait::shutdown_signal())
        .await
}
