//! `switchyard serve`: opens the data folder, makes sure an admin token exists, loads the
//! policy, and runs the engine and the server until a shutdown signal.

use crate::engine::{new_token, Engine, EngineConfig};
use crate::policy::{PolicyHost, PolicySource, StartupFallback};
use crate::server::conns::ConnLimits;
use crate::server::listen::ListenLimits;
use crate::server::throttle::{AuthLimits, AuthThrottle};
use crate::server::{self, AppState, HttpLimits, ServeLimits, WsLimits};
use crate::store::{
    write_admin_token, PersistedPolicy, Role, Store, TokenRecord, ADMIN_AGENT_ID, ADMIN_TOKEN_FILE,
    PREFIX_LEN,
};
use crate::wire::agent::hub::TASK_ASSIGN_OVERHEAD;
use crate::wire::http::DEFAULT_MAX_TASK_BYTES;
use crate::wire::now_ms;
use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;
use sha2::Digest as _;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// How long finished tasks (completed, cancelled, dead-lettered) are kept before they are
    /// pruned: a number with s, m, h or d (`7d`, `12h`); 0 keeps everything.
    #[arg(long, default_value = "7d", value_parser = parse_retain)]
    pub retain: Duration,
    /// The former spelling of `--retain`, in hours; wins over it when given.
    #[arg(long, hide = true)]
    pub retention_hours: Option<u64>,
    /// The largest policy component read from a file or uploaded, in bytes.
    #[arg(long, default_value_t = crate::policy::DEFAULT_MAX_COMPONENT_BYTES)]
    pub max_policy_bytes: u64,
    /// The most capabilities an agent may name in `identify`.
    #[arg(long, default_value_t = crate::engine::DEFAULT_MAX_CAPABILITIES)]
    pub max_capabilities: usize,
    /// The longest capability name an agent may give, in bytes.
    #[arg(long, default_value_t = crate::engine::DEFAULT_MAX_CAPABILITY_BYTES)]
    pub max_capability_bytes: usize,
    /// Events kept for resuming `GET /api/events` (`?after=`); older resume points get `reset`.
    #[arg(long, default_value_t = crate::engine::events::DEFAULT_EVENT_RING)]
    pub event_ring: usize,
    /// Events buffered per `GET /api/events` subscriber; one that falls this far behind is
    /// dropped (`dropped`).
    #[arg(long, default_value_t = crate::engine::events::DEFAULT_EVENT_BUFFER)]
    pub event_buffer: usize,
    /// How often the event stream's `stats` event is sent while something changes (`1s`,
    /// `500ms`; at least 100ms); with nothing changed, every ten of these. 0 sends none.
    #[arg(long, default_value = "1s", value_parser = parse_stats_interval)]
    pub stats_interval: Duration,
    /// The most the data may grow to, in MiB (address space, not memory).
    #[arg(long, default_value_t = 16 << 10)]
    pub map_size_mib: usize,
    /// Largest task: its description, metadata, needed capabilities and fairness key as JSON.
    /// Must leave room in --max-frame-bytes for the `task_assign` that carries it. Default:
    /// 262144 (256 KiB), or --max-frame-bytes - 256 if that is less.
    #[arg(long)]
    pub max_task_bytes: Option<usize>,
    /// Largest body of `POST /api/tasks/batch`.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_batch_bytes: usize,
    /// Largest listing page (`GET /api/tasks`, the dead letter), its tasks as JSON; a page
    /// holds one task whatever its size.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_page_bytes: usize,
    /// Open connections at most (HTTP and WebSocket); beyond, 503. Keep it below `ulimit -n`.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// WebSocket connections that have not identified, per source address; beyond, 429.
    #[arg(long, default_value_t = 256)]
    pub max_unidentified_per_ip: usize,
    /// A WebSocket connection that has not identified this long after opening is closed
    /// (1008 identify_timeout); pings do not extend it.
    #[arg(long, default_value_t = 10_000)]
    pub identify_timeout_ms: u64,
    /// A request whose headers take longer than this to arrive is dropped; an idle keep-alive
    /// connection is closed after this long.
    #[arg(long, default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// On SIGTERM or SIGINT, how long to wait for connections to close before exiting anyway.
    #[arg(long, default_value_t = 5_000)]
    pub shutdown_timeout_ms: u64,
    /// Failed authentications (bad bearer token, failed identify) from one address within
    /// --auth-lockout-ms after which the address is refused (429, or close 1008) until the
    /// lockout ends; 0 turns the throttle off. Past 3, each refusal is answered more slowly.
    #[arg(long, default_value_t = 20)]
    pub auth_max_failures: u32,
    /// How long failed authentications are counted, and how long a lockout lasts.
    #[arg(long, default_value_t = 60_000)]
    pub auth_lockout_ms: u64,
}

impl ServeArgs {
    /// The task size limit: as given, else the default within what the frame limit allows.
    fn max_task_bytes(&self) -> usize {
        self.max_task_bytes.unwrap_or_else(|| {
            DEFAULT_MAX_TASK_BYTES.min(self.max_frame_bytes.saturating_sub(TASK_ASSIGN_OVERHEAD))
        })
    }

    /// The limits that must agree with each other, checked before anything is opened.
    fn check_limits(&self) -> anyhow::Result<()> {
        if self.max_frame_bytes <= TASK_ASSIGN_OVERHEAD {
            bail!("--max-frame-bytes must be more than {TASK_ASSIGN_OVERHEAD}: a task_assign needs that much besides its task");
        }
        let task_bytes = self.max_task_bytes();
        let frame = task_bytes.saturating_add(TASK_ASSIGN_OVERHEAD);
        if frame > self.max_frame_bytes {
            bail!(
                "--max-task-bytes {task_bytes} does not fit --max-frame-bytes {}: a task_assign \
                 carrying such a task would be up to {frame} bytes, which agents would refuse \
                 (keep --max-task-bytes at most --max-frame-bytes - {TASK_ASSIGN_OVERHEAD})",
                self.max_frame_bytes
            );
        }
        for (flag, value) in [
            ("--max-task-bytes", task_bytes),
            ("--max-batch-bytes", self.max_batch_bytes),
            ("--max-page-bytes", self.max_page_bytes),
            ("--max-connections", self.max_connections),
            ("--max-unidentified-per-ip", self.max_unidentified_per_ip),
            ("--event-ring", self.event_ring),
            ("--event-buffer", self.event_buffer),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        for (flag, value) in [
            ("--identify-timeout-ms", self.identify_timeout_ms),
            ("--header-read-timeout-ms", self.header_read_timeout_ms),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        Ok(())
    }

    fn serve_limits(&self) -> ServeLimits {
        ServeLimits {
            ws: WsLimits {
                max_frame_bytes: self.max_frame_bytes,
                idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                identify_timeout: Duration::from_millis(self.identify_timeout_ms),
            },
            conns: ConnLimits {
                max_connections: self.max_connections,
                max_unidentified_per_ip: self.max_unidentified_per_ip,
            },
            listen: ListenLimits {
                header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
                shutdown_timeout: Duration::from_millis(self.shutdown_timeout_ms),
            },
        }
    }
}

pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.check_limits()?;
    let store = Arc::new(
        Store::open(&args.data_dir, args.map_size_mib << 20)
            .with_context(|| format!("cannot open the data folder {}", args.data_dir.display()))?,
    );
    ensure_admin_token(&store, &args.data_dir)?;
    crate::policy::set_artifact_cache(args.data_dir.join("policy-cache"));
    crate::policy::set_max_component_bytes(args.max_policy_bytes);
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
        retention_ms: match args.retention_hours {
            Some(hours) => hours.saturating_mul(3_600_000),
            None => u64::try_from(args.retain.as_millis()).unwrap_or(u64::MAX),
        },
        run_timeout_ms: args.run_timeout_ms,
        max_capabilities: args.max_capabilities,
        max_capability_bytes: args.max_capability_bytes,
        event_ring: args.event_ring,
        event_buffer: args.event_buffer,
        stats_interval_ms: u64::try_from(args.stats_interval.as_millis()).unwrap_or(u64::MAX),
    };
    let (engine, engine_thread) =
        Engine::start(store.clone(), policy, config).context("cannot load the live state")?;
    let listener = server::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "switchyard listening");
    // Scripts and tests wait for this line.
    println!("switchyard listening on {addr}");
    std::io::stdout().flush()?;
    let limits = args.serve_limits();
    let state = Arc::new(AppState {
        engine,
        store,
        limits: HttpLimits {
            max_task_bytes: args.max_task_bytes(),
            max_batch_bytes: args.max_batch_bytes,
            max_page_bytes: args.max_page_bytes,
        },
        throttle: Arc::new(AuthThrottle::new(AuthLimits {
            max_failures: args.auth_max_failures,
            lockout: Duration::from_millis(args.auth_lockout_ms),
        })),
    });
    let shutdown_timeout = Duration::from_millis(args.shutdown_timeout_ms);
    let (signalled, deadline) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        crate::wait::shutdown_signal().await;
        let _ = signalled.send(tokio::time::Instant::now() + shutdown_timeout);
    };
    server::serve(listener, state, limits, shutdown).await;
    // Every connection is closed (or abandoned at the deadline): with the last engine handle
    // gone the engine stops, and the writer finishes the commit in hand before it does. Wait
    // for that until the deadline; past it, exit anyway (a commit is atomic: cut short, it is
    // simply not there, and nothing in it was acknowledged). A plain thread waits for the
    // join, so an engine that does not stop cannot hold the process.
    let deadline = deadline
        .await
        .unwrap_or_else(|_| tokio::time::Instant::now() + shutdown_timeout);
    let (joined, engine_stopped) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = engine_thread.join();
        let _ = joined.send(());
    });
    if tokio::time::timeout_at(deadline, engine_stopped)
        .await
        .is_err()
    {
        tracing::warn!("the engine had not stopped at the shutdown deadline; exiting anyway");
    }
    tracing::info!("switchyard stopped");
    Ok(())
}

/// The shortest `SWITCHYARD_ADMIN_TOKEN` taken: 32 characters, as long as the hub's own tokens
/// are in bytes, so a chosen token is no easier to guess than a made one.
const MIN_ENV_TOKEN_LEN: usize = 32;

/// Makes sure an admin token exists. `SWITCHYARD_ADMIN_TOKEN`, if set, is the admin token: it
/// replaces every other admin token (an earlier one from the environment, a rotated one, the
/// one made at first start). Otherwise one is made on first start and written to
/// `DIR/admin.token` (mode 0600, never through a link).
fn ensure_admin_token(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    let record = |token: &str| TokenRecord {
        tenant: crate::wire::tenant::default_tenant(),
        agent_id: ADMIN_AGENT_ID.into(),
        role: Role::Admin,
        token_prefix: token.chars().take(PREFIX_LEN).collect(),
        created_at: now_ms(),
    };
    if let Ok(token) = std::env::var("SWITCHYARD_ADMIN_TOKEN") {
        let token = token.trim();
        if token.chars().count() < MIN_ENV_TOKEN_LEN {
            bail!(
                "SWITCHYARD_ADMIN_TOKEN is {} characters long; it must have at least \
                 {MIN_ENV_TOKEN_LEN} (e.g. `openssl rand -hex 32`)",
                token.chars().count()
            );
        }
        let keep = crate::store::hash_token(token);
        let mut txn = store.write_txn()?;
        let mut replaced = 0;
        for (hash, old) in store.token_entries(&txn)? {
            if old.role == Role::Admin && hash != keep {
                store.delete_token(&mut txn, &hash)?;
                replaced += 1;
            }
        }
        if store.find_token(&txn, token)?.is_none() {
            store.put_token(&mut txn, token, &record(token))?;
        }
        txn.commit().map_err(crate::store::StoreError::from)?;
        tracing::info!(
            replaced,
            "admin token taken from SWITCHYARD_ADMIN_TOKEN (other admin tokens revoked)"
        );
        let file = data_dir.join(ADMIN_TOKEN_FILE);
        if file.exists() {
            tracing::warn!(
                path = %file.display(),
                "admin.token is left from before SWITCHYARD_ADMIN_TOKEN was used and no longer \
                 holds a valid token unless it is the same one"
            );
        }
        return Ok(());
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let txn = store.read_txn()?;
    let exists = store.has_admin_token(&txn)?;
    drop(txn);
    if exists {
        tracing::info!(path = %path.display(), "admin token exists (written at first start or rotated)");
        return Ok(());
    }
    let token = new_token();
    write_admin_token(data_dir, &token)?;
    let mut txn = store.write_txn()?;
    store.put_token(&mut txn, &token, &record(&token))?;
    txn.commit().map_err(crate::store::StoreError::from)?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(())
}

/// `--stats-interval`: `0` (no `stats` events), or a duration of at least
/// [`MIN_STATS_INTERVAL_MS`](crate::engine::tally::MIN_STATS_INTERVAL_MS).
fn parse_stats_interval(text: &str) -> Result<Duration, String> {
    let interval = crate::duration::parse(text)?;
    let min = Duration::from_millis(crate::engine::tally::MIN_STATS_INTERVAL_MS);
    if !interval.is_zero() && interval < min {
        return Err(format!(
            "`{}` is too short: at least {}ms, or 0 for no stats events",
            text.trim(),
            min.as_millis()
        ));
    }
    Ok(interval)
}

/// `--retain`: `0`, or a duration with its unit ([`crate::duration::parse`]). A bare number
/// other than 0 is refused: `--retain 7` meaning seconds would delete what was meant to stay.
fn parse_retain(text: &str) -> Result<Duration, String> {
    if text.trim() != "0" && !crate::duration::has_unit(text) {
        return Err(format!(
            "`{}` needs a unit: ms, s, m, h or d (e.g. 7d, 12h), or 0",
            text.trim()
        ));
    }
    crate::duration::parse(text)
}

/// The policy to start with: the one named on the command line, else the one in force when the
/// hub stopped (from the component kept in the data folder), else the bundled greedy.
///
/// A policy named on the command line must load: the operator asked for it. The policy in
/// force when the hub stopped may not (its kept component damaged, an older folder whose file
/// is gone): the hub then starts on greedy rather than not at all, logs why, and
/// `GET /api/policy` says so in `startup_fallback`. The record is left as it is, so a later
/// restart tries that policy again.
fn load_policy(
    store: &Store,
    named: Option<&str>,
    config: Option<&str>,
) -> anyhow::Result<PolicyHost> {
    let config: Value = match config {
        Some(text) => serde_json::from_str(text).context("--policy-config must be JSON")?,
        None => Value::Null,
    };
    if let Some(name) = named {
        return PolicyHost::load(PolicySource::parse(name), config)
            .with_context(|| format!("cannot load the policy {name}"));
    }
    let txn = store.read_txn()?;
    let persisted = store.policy(&txn)?;
    drop(txn);
    let Some((persisted, kept)) = persisted else {
        return PolicyHost::load(PolicySource::Builtin("greedy".into()), config)
            .context("cannot load the policy");
    };
    tracing::info!(source = %persisted.source, "loading the policy in force when the hub stopped");
    match load_persisted(&persisted, kept) {
        Ok(policy) => Ok(policy),
        Err(reason) => {
            tracing::error!(
                policy = %persisted.source,
                %reason,
                "cannot load the policy in force when the hub stopped; starting on builtin:greedy"
            );
            let mut policy = PolicyHost::load(PolicySource::Builtin("greedy".into()), Value::Null)
                .context("cannot load the fallback policy builtin:greedy")?;
            policy.set_startup_fallback(StartupFallback {
                wanted: persisted.source.clone(),
                reason,
            });
            Ok(policy)
        }
    }
}

/// Loads a persisted policy: a built-in by name, else its kept component (checked against its
/// digest), else, for a record from before components were kept, its file.
fn load_persisted(
    persisted: &PersistedPolicy,
    kept: Option<Vec<u8>>,
) -> Result<PolicyHost, String> {
    let config = persisted.config.clone();
    if persisted.source.starts_with("builtin:") {
        return PolicyHost::load(PolicySource::parse(&persisted.source), config)
            .map_err(|e| e.to_string());
    }
    let mut policy = match kept {
        Some(bytes) => {
            let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
            if persisted
                .digest
                .as_ref()
                .is_some_and(|want| *want != digest)
            {
                return Err(format!(
                    "the component kept in the data folder does not match its digest {} \
                     (it is damaged)",
                    persisted.digest.as_deref().unwrap_or_default()
                ));
            }
            PolicyHost::load(PolicySource::Bytes(bytes), config).map_err(|e| e.to_string())?
        }
        None if persisted.source == "upload" => {
            return Err("the uploaded component is missing from the data folder".into())
        }
        None => PolicyHost::load(PolicySource::parse(&persisted.source), config)
            .map_err(|e| e.to_string())?,
    };
    // Reported as it was before the restart: an upload as `bytes`, a file by its path.
    policy.set_source_label(match persisted.source.as_str() {
        "upload" => "bytes".to_string(),
        path => path.to_string(),
    });
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn args(flags: &[&str]) -> ServeArgs {
        let argv = std::iter::once("serve").chain(flags.iter().copied());
        Serve::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn the_task_limit_defaults_to_what_the_frame_limit_allows() {
        assert_eq!(args(&[]).max_task_bytes(), DEFAULT_MAX_TASK_BYTES);
        let small = args(&["--max-frame-bytes", "4096"]);
        assert_eq!(small.max_task_bytes(), 4096 - TASK_ASSIGN_OVERHEAD);
        assert!(small.check_limits().is_ok());
    }

    #[test]
    fn a_task_limit_over_the_frame_limit_is_refused_naming_both() {
        let error = args(&["--max-frame-bytes", "65536", "--max-task-bytes", "65536"])
            .check_limits()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--max-task-bytes 65536 does not fit --max-frame-bytes 65536"),
            "{error}"
        );
        let error = args(&["--max-connections", "0"])
            .check_limits()
            .unwrap_err();
        assert!(error.to_string().contains("--max-connections"), "{error}");
    }
}
