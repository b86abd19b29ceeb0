//! The `switchyard` command line: `serve` runs the hub; the other commands are clients of its
//! HTTP API.

use crate::engine::{new_token, Engine, EngineConfig};
use crate::policy::{PolicyHost, PolicySource};
use crate::server::{self, AppState, WsLimits};
use crate::store::{Role, Store, TokenRecord, PREFIX_LEN};
use crate::wire::now_ms;
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
        #[arg(long, default_value_t = 100)]
        limit: usize,
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
        client: ClientArgs,
    },
    /// List the built-in policies (the NAMEs of `--policy builtin:NAME`), one a line.
    Policies,
    /// Show or change the policy in force.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Load-test a running hub with simulated agents (see BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Run the agent sidecar: hold the hub connection, run each task with a local worker.
    Agent(crate::sidecar::AgentArgs),
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
    /// Create a token for an agent (shown once).
    Create {
        agent_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List agent tokens (prefixes only).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke every token of an agent and close its connection.
    Revoke {
        agent_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the policy in force and its counters.
    Show {
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
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    /// Folder for the LMDB data and the admin token.
    #[arg(long, default_value = "switchyard-data")]
    pub data_dir: PathBuf,
    /// The policy: a component file, or builtin:NAME. Default: the policy in force when the hub
    /// last stopped, else builtin:greedy.
    #[arg(long)]
    pub policy: Option<String>,
    /// The policy's configuration, JSON.
    #[arg(long)]
    pub policy_config: Option<String>,
    /// An assigned task not accepted within this is taken back.
    #[arg(long, default_value_t = 60_000)]
    pub acceptance_timeout_ms: u64,
    /// A disconnected agent keeps its task this long.
    #[arg(long, default_value_t = 10_000)]
    pub reconnect_grace_ms: u64,
    /// A connection silent this long is closed.
    #[arg(long, default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// An agent that rejected a task is offered none for this long.
    #[arg(long, default_value_t = 30_000)]
    pub reject_cooldown_ms: u64,
    /// Take-backs after which a task is dead-lettered as poison.
    #[arg(long, default_value_t = 3)]
    pub max_reclaims: u32,
    /// How long an accepted task may run before it is taken back, for tasks that name no
    /// `run_timeout_ms` (milliseconds; 0: no limit). Default 30 minutes.
    #[arg(long = "run-timeout-ms", default_value_t = 1_800_000)]
    pub run_timeout_ms: u64,
    /// Largest WebSocket frame accepted.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_frame_bytes: usize,
    /// Completed and cancelled tasks are purged this many hours after they finish.
    #[arg(long, default_value_t = 168)]
    pub retention_hours: u64,
    /// The most the data may grow to, in MiB (address space, not memory).
    #[arg(long, default_value_t = 16 << 10)]
    pub map_size_mib: usize,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The hub's base URL.
    #[arg(long, env = "SWITCHYARD_HUB", default_value = "http://127.0.0.1:4000")]
    pub hub: String,
    /// The token to use (default: ./switchyard-data/admin.token when it exists).
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Commands::Serve(args) => serve(args).await,
        Commands::Agent(args) => crate::sidecar::run(args).await,
        Commands::Policies => {
            crate::policy::builtin_names().for_each(|name| println!("{name}"));
            Ok(())
        }
        Commands::Bench(args) => crate::bench::run(args).await,
        Commands::Token { command } => match command {
            TokenCommand::Create { agent_id, client } => print(
                client
                    .call(
                        "POST",
                        "/admin/tokens",
                        Some(json!({ "agent_id": agent_id })),
                    )
                    .await?,
            ),
            TokenCommand::List { client } => {
                print(client.call("GET", "/admin/tokens", None).await?)
            }
            TokenCommand::Revoke { agent_id, client } => {
                let path = format!("/admin/tokens/{}", encode(&agent_id));
                print(client.call("DELETE", &path, None).await?)
            }
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
            limit,
            client,
        } => {
            let mut path = format!("/api/tasks?limit={limit}");
            if let Some(status) = status {
                path.push_str(&format!("&status={}", encode(&status)));
            }
            print(client.call("GET", &path, None).await?)
        }
        Commands::Task {
            id,
            command,
            client,
        } => match (id, command) {
            (Some(id), None) => print(
                client
                    .call("GET", &format!("/api/tasks/{}", encode(&id)), None)
                    .await?,
            ),
            (_, Some(TaskCommand::Requeue { id, client })) => print(
                client
                    .call("POST", &format!("/api/tasks/{}/requeue", encode(&id)), None)
                    .await?,
            ),
            (None, None) => bail!("name a task: `switchyard task ID` or `task requeue ID`"),
        },
        Commands::Policy { command } => match command {
            PolicyCommand::Show { client } => print(client.call("GET", "/api/policy", None).await?),
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
        },
    }
}

fn print(value: Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Percent-encodes a path or query component: everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

impl ClientArgs {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let fallback = Path::new("switchyard-data").join("admin.token");
        std::fs::read_to_string(&fallback)
            .map(|t| t.trim().to_owned())
            .map_err(|_| anyhow::anyhow!("no token: pass --token, set SWITCHYARD_TOKEN, or run where switchyard-data/admin.token is"))
    }

    /// Calls the hub; a refusal becomes an error carrying the hub's message.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.hub.trim_end_matches('/'), path);
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(self.token()?)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the hub at {}", self.hub))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let why = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            bail!("the hub refused ({status}): {why}");
        }
        Ok(value)
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = Arc::new(
        Store::open(&args.data_dir, args.map_size_mib << 20)
            .with_context(|| format!("cannot open the data folder {}", args.data_dir.display()))?,
    );
    ensure_admin_token(&store, &args.data_dir)?;
    crate::policy::set_artifact_cache(args.data_dir.join("policy-cache"));
    let policy = load_policy(
        &store,
        args.policy.as_deref(),
        args.policy_config.as_deref(),
    )?;
    let config = EngineConfig {
        acceptance_timeout_ms: args.acceptance_timeout_ms,
        reconnect_grace_ms: args.reconnect_grace_ms,
        reject_cooldown_ms: args.reject_cooldown_ms,
        max_reclaims: args.max_reclaims.max(1),
        retention_ms: args.retention_hours.saturating_mul(3_600_000),
        run_timeout_ms: args.run_timeout_ms,
    };
    let (engine, _thread) =
        Engine::start(store.clone(), policy, config).context("cannot load the live state")?;
    let listener = server::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "switchyard listening");
    // Scripts and tests wait for this line.
    println!("switchyard listening on {addr}");
    std::io::stdout().flush()?;
    let limits = WsLimits {
        max_frame_bytes: args.max_frame_bytes,
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
    };
    let state = Arc::new(AppState { engine, store });
    server::serve(listener, state, limits, crate::wait::shutdown_signal()).await;
    tracing::info!("switchyard stopped");
    Ok(())
}

/// Makes sure an admin token exists: `SWITCHYARD_ADMIN_TOKEN` if set, else one made on first
/// start and written to `DIR/admin.token` (mode 0600).
fn ensure_admin_token(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    let record = |token: &str| TokenRecord {
        agent_id: "admin".into(),
        role: Role::Admin,
        token_prefix: token.chars().take(PREFIX_LEN).collect(),
        created_at: now_ms(),
    };
    if let Ok(token) = std::env::var("SWITCHYARD_ADMIN_TOKEN") {
        if token.trim().is_empty() {
            bail!("SWITCHYARD_ADMIN_TOKEN is set but empty");
        }
        let mut txn = store.write_txn()?;
        store.put_token(&mut txn, token.trim(), &record(token.trim()))?;
        txn.commit().map_err(crate::store::StoreError::from)?;
        tracing::info!("admin token taken from SWITCHYARD_ADMIN_TOKEN");
        return Ok(());
    }
    let path = data_dir.join("admin.token");
    let txn = store.read_txn()?;
    let exists = store.has_admin_token(&txn)?;
    drop(txn);
    if exists {
        tracing::info!(path = %path.display(), "admin token exists (written at first start)");
        return Ok(());
    }
    let token = new_token();
    write_secret(&path, &token)?;
    let mut txn = store.write_txn()?;
    store.put_token(&mut txn, &token, &record(&token))?;
    txn.commit().map_err(crate::store::StoreError::from)?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(())
}

fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    Ok(())
}

/// The policy to start with: the one named on the command line, else the one in force when the
/// hub stopped, else the bundled greedy.
fn load_policy(
    store: &Store,
    named: Option<&str>,
    config: Option<&str>,
) -> anyhow::Result<PolicyHost> {
    let config: Value = match config {
        Some(text) => serde_json::from_str(text).context("--policy-config must be JSON")?,
        None => Value::Null,
    };
    let txn = store.read_txn()?;
    let persisted = store.policy(&txn)?;
    drop(txn);
    let (source, config) = match named {
        Some(name) => (PolicySource::parse(name), config),
        None => match persisted {
            Some((persisted, Some(bytes))) if persisted.source == "upload" => {
                (PolicySource::Bytes(bytes), persisted.config)
            }
            Some((persisted, _)) => {
                tracing::info!(source = %persisted.source, "loading the policy in force when the hub stopped");
                (PolicySource::parse(&persisted.source), persisted.config)
            }
            None => (PolicySource::Builtin("greedy".into()), config),
        },
    };
    PolicyHost::load(source, config).context("cannot load the policy")
}
