//! `switchyard policy shadow`: start, show and stop a shadow run of a candidate policy beside
//! the policy in force (`/api/policy/shadow`).

use super::client::{encode, print, ClientArgs};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// The route of the shadow run.
const SHADOW: &str = "/api/policy/shadow";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ShadowArgs {
    /// The candidate: builtin:NAME, or a component file (uploaded to the hub).
    pub source: Option<String>,
    /// The candidate's configuration, JSON.
    #[arg(long)]
    pub config: Option<String>,
    #[command(subcommand)]
    pub command: Option<ShadowCommand>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Show the shadow run's report: agreement with the policy in force, the proposals the hub
    /// would refuse, the share of each fairness group, and whether it stopped and why.
    Show {
        #[command(flatten)]
        output: super::view::OutputArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End the shadow run at once and show its final report.
    Stop {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn run(args: ShadowArgs) -> anyhow::Result<()> {
    match (args.command, args.source) {
        (Some(ShadowCommand::Show { output, client }), None) => super::view::show(
            output,
            &client.call("GET", SHADOW, None).await?,
            super::view::shadow,
        ),
        (Some(ShadowCommand::Stop { client }), None) => {
            print(client.call("DELETE", SHADOW, None).await?)
        }
        (None, Some(source)) => start(&args.client, &source, args.config.as_deref()).await,
        (None, None) => bail!(
            "name a candidate (`switchyard policy shadow builtin:NAME` or `... shadow FILE`), \
             or `policy shadow show` / `policy shadow stop`"
        ),
        (Some(_), Some(source)) => {
            bail!("give a candidate ({source}) or a subcommand (show, stop), not both")
        }
    }
}

async fn start(client: &ClientArgs, source: &str, config: Option<&str>) -> anyhow::Result<()> {
    let config: Value = match config {
        Some(text) => serde_json::from_str(text).context("--config must be JSON")?,
        None => Value::Null,
    };
    let report = match source.strip_prefix("builtin:") {
        Some(name) => {
            let body = json!({"builtin": name, "config": config});
            client.call("PUT", SHADOW, Some(body)).await?
        }
        None => {
            let bytes = std::fs::read(source)
                .with_context(|| format!("cannot read the policy component {source}"))?;
            let query = match config {
                Value::Null => String::new(),
                config => format!("config={}", encode(&config.to_string())),
            };
            client
                .upload("PUT", SHADOW, &query, "application/wasm", bytes)
                .await?
        }
    };
    print(report)
}
