//! The `switchyard` command line: `serve` runs the hub; the other commands are clients of its
//! HTTP API.

mod author;
mod client;
mod custody;
mod lab;
mod serve;
mod shadow;
mod table;
mod tenant;
mod view;
mod watch;

pub use client::{exit, exit_code, ClientArgs};
pub use lab::LabArgs;
pub use serve::ServeArgs;

use anyhow::Context;
use clap::{Parser, Subcommand};
use client::{encode, print};
use serde_json::{json, Value};
use view::{show, OutputArgs};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A hub that hands tasks to agents, scheduled by a WebAssembly policy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run the hub.
    Serve(ServeArgs),
    /// Print the hub's event stream live, one line per event (Ctrl-C stops).
    Watch(watch::WatchArgs),
    /// Manage tenants (admin): the parties sharing the hub, their weights and quotas.
    Tenant(tenant::TenantArgs),
    /// Manage agent tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Submit a task.
    Submit {
        description: String,
        /// urgent, high, normal, low (or 0-3).
        #[arg(long, default_value = "normal")]
        priority: String,
        /// A capability the agent must have; repeat for several.
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        /// Metadata, a JSON object.
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tasks.
    Tasks {
        /// queued, assigned, completed, dead_letter or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Only this tenant's tasks (an admin's listing; a client or agent sees only its own
        /// tenant's anyway).
        #[arg(long)]
        tenant: Option<String>,
        /// Tasks per page, 1 to 1000.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after the page that gave this cursor (the table's last line names the next
        /// one; `--json` has it as `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the connected agents: state, current task, capabilities, connected since.
    Agents {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A one-screen summary of the hub: health, tasks by status and queued by priority, agents
    /// by state, the policy in force, its counters and fallback.
    Status {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one task (`task ID`), or act on it (`task requeue ID`).
    #[command(args_conflicts_with_subcommands = true)]
    Task {
        /// The task to show.
        id: Option<String>,
        #[command(subcommand)]
        command: Option<TaskCommand>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the built-in policies (the NAMEs of `--policy builtin:NAME`), one a line.
    Policies,
    /// Show or change the policy in force.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Copy a (running) hub's store to a file, compacted: a consistent online backup.
    Backup(custody::BackupArgs),
    /// Show the audit log of admin actions, newest first.
    Audit(custody::AuditArgs),
    /// Load-test a running hub with simulated agents (see BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Run the agent sidecar: hold the hub connection, run each task with a local worker.
    Agent(crate::sidecar::AgentArgs),
    /// Replay workloads in simulated time against policies side by side (docs/policy-lab.md).
    Lab(LabArgs),
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Put an assigned task back in the queue (admin): its agent gets `task_cancel`, and the
    /// take-back does not count against the task.
    Requeue {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token (shown once): an agent's of the `default` tenant unless --role and
    /// --tenant say otherwise.
    Create {
        /// The agent id (for a client or admin token: a name for whoever holds it, shown in
        /// `token list`, the audit log and the `submitted_by` of its tasks).
        agent_id: String,
        /// agent (identifies over /ws, runs tasks), client (submits and manages its tenant's
        /// tasks over HTTP) or admin (everything). Default: agent.
        #[arg(long, value_parser = parse_role)]
        role: Option<crate::wire::role::Role>,
        /// The tenant the token's tasks belong to and its reads are limited to. It must
        /// exist. Default: default.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tokens with their role and tenant (prefixes only).
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke every token of an agent (or only the one with --prefix) and close its
    /// connection. `revoke admin --prefix P` revokes one admin token; the last one cannot be.
    Revoke {
        agent_id: String,
        /// Only the token shown with this prefix by `token list`.
        #[arg(long)]
        prefix: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a new admin token and revoke the old ones; the hub writes it to admin.token in its
    /// data folder, and it is printed once.
    RotateAdmin {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the policy in force and its counters.
    Show {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Load a policy into the running hub: a component file (read by the hub) or builtin:NAME.
    Load {
        policy: String,
        /// The policy's configuration, JSON.
        #[arg(long)]
        config: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Load a component as the hub does and run a short simulated workload through it,
    /// reporting the proposals the hub would refuse and why (no hub needed).
    Check {
        /// A component file or builtin:NAME.
        file: String,
        /// The policy's configuration, JSON.
        #[arg(long)]
        config: Option<String>,
    },
    /// Write a new policy crate into DIR (missing or empty): a working FIFO policy, its tests,
    /// and the SDK and contract of this binary. Needs no Switchyard checkout.
    New(author::NewArgs),
    /// Build the policy crate in DIR for wasm32, wrap it as a component and check it as a hub
    /// would; prints the component's path, digest, size and contract.
    Build(author::BuildArgs),
    /// Run a candidate policy in the shadow of the policy in force (admin): it is told the
    /// same events and asked at the same moments, and its proposals are compared, never
    /// applied. `policy shadow SOURCE`, `policy shadow show`, `policy shadow stop`.
    Shadow(shadow::ShadowArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Commands::Serve(args) => serve::serve(args).await,
        Commands::Agent(args) => crate::sidecar::run(args).await,
        Commands::Policies => {
            crate::policy::builtin_names().for_each(|name| println!("{name}"));
            Ok(())
        }
        Commands::Bench(args) => crate::bench::run(args).await,
        Commands::Watch(args) => watch::run(args).await,
        Commands::Backup(args) => custody::backup(args),
        Commands::Audit(args) => custody::audit(args).await,
        Commands::Lab(args) => lab::run(args),
        Commands::Tenant(args) => tenant::run(args).await,
        Commands::Token { command } => match command {
            TokenCommand::Create {
                agent_id,
                role,
                tenant,
                client,
            } => {
                let mut body = json!({ "agent_id": agent_id });
                if let Some(role) = role {
                    body["role"] = json!(role);
                }
                if let Some(tenant) = tenant {
                    body["tenant"] = json!(tenant);
                }
                print(client.call("POST", "/admin/tokens", Some(body)).await?)
            }
            TokenCommand::List { output, client } => show(
                output,
                &client.call("GET", "/admin/tokens", None).await?,
                view::tokens,
            ),
            TokenCommand::Revoke {
                agent_id,
                prefix,
                client,
            } => {
                let mut path = format!("/admin/tokens/{}", encode(&agent_id));
                if let Some(prefix) = prefix {
                    path.push_str(&format!("?prefix={}", encode(&prefix)));
                }
                print(client.call("DELETE", &path, None).await?)
            }
            TokenCommand::RotateAdmin { client } => custody::rotate_admin(client).await,
        },
        Commands::Submit {
            description,
            priority,
            capabilities,
            metadata,
            client,
        } => {
            let metadata: Value = match metadata {
                Some(text) => serde_json::from_str(&text).context("--metadata must be JSON")?,
                None => json!({}),
            };
            let priority = priority
                .parse::<u8>()
                .map(Value::from)
                .unwrap_or(Value::String(priority));
            let body = json!({
                "description": description, "priority": priority,
                "needed_capabilities": capabilities, "metadata": metadata,
            });
            print(client.call("POST", "/api/tasks", Some(body)).await?)
        }
        Commands::Tasks {
            status,
            tenant,
            limit,
            cursor,
            output,
            client,
        } => {
            let mut path = format!("/api/tasks?limit={limit}");
            if let Some(status) = status {
                path.push_str(&format!("&status={}", encode(&status)));
            }
            if let Some(tenant) = tenant {
                path.push_str(&format!("&tenant={}", encode(&tenant)));
            }
            if let Some(cursor) = cursor {
                path.push_str(&format!("&cursor={}", encode(&cursor)));
            }
            show(output, &client.call("GET", &path, None).await?, view::tasks)
        }
        Commands::Agents { output, client } => show(
            output,
            &client.call("GET", "/api/agents", None).await?,
            view::agents,
        ),
        Commands::Status { output, client } => {
            show(output, &view::fetch_status(&client).await?, view::status)
        }
        Commands::Task {
            id,
            command,
            output,
            client,
        } => match (id, command) {
            (Some(id), None) => show(
                output,
                &client
                    .call("GET", &format!("/api/tasks/{}", encode(&id)), None)
                    .await?,
                view::task,
            ),
            (_, Some(TaskCommand::Requeue { id, client })) => print(
                client
                    .call("POST", &format!("/api/tasks/{}/requeue", encode(&id)), None)
                    .await?,
            ),
            (None, None) => Err(client::UsageError(
                "name a task: `switchyard task ID` or `task requeue ID`".into(),
            )
            .into()),
        },
        Commands::Policy { command } => match command {
            PolicyCommand::Show { output, client } => show(
                output,
                &client.call("GET", "/api/policy", None).await?,
                view::policy,
            ),
            PolicyCommand::Load {
                policy,
                config,
                client,
            } => {
                let config: Value = match config {
                    Some(text) => serde_json::from_str(&text).context("--config must be JSON")?,
                    None => Value::Null,
                };
                let body = match policy.strip_prefix("builtin:") {
                    Some(name) => json!({"builtin": name, "config": config}),
                    None => {
                        let path = std::fs::canonicalize(&policy)
                            .with_context(|| format!("cannot find policy file {policy}"))?;
                        json!({"path": path, "config": config})
                    }
                };
                print(client.call("PUT", "/api/policy", Some(body)).await?)
            }
            PolicyCommand::Check { file, config } => lab::check(&file, config.as_deref()),
            PolicyCommand::New(args) => author::new(args),
            PolicyCommand::Build(args) => author::build(args).await,
            PolicyCommand::Shadow(args) => shadow::run(args).await,
        },
    }
}

/// `--role`: a role by its name, or an error listing the roles.
fn parse_role(name: &str) -> Result<crate::wire::role::Role, String> {
    crate::wire::role::Role::parse(name).ok_or_else(|| {
        format!(
            "{name:?} is not a role: expected {}",
            crate::wire::role::Role::expected()
        )
    })
}
