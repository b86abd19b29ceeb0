//! The policy host: loads a scheduling policy component, feeds it events, asks it for
//! decisions, and survives it failing.
//!
//! The engine thread owns one [`PolicyHost`]. It calls the event methods as the live state
//! changes and [`PolicyHost::decide`] once per batch, and validates every proposal itself (the
//! policy proposes, the host disposes).
//!
//! # Failure model
//!
//! Every call into the component runs under an epoch deadline ([`CALL_DEADLINE`]) and the
//! instance's memory is capped ([`MEMORY_LIMIT_BYTES`]); the component gets no imports at all.
//! A call that traps, times out or runs out of memory leaves the instance unusable, so the host
//! drops it: later events are ignored, `decide` returns nothing, and [`PolicyHost::needs_replay`]
//! turns true. The engine then calls [`PolicyHost::restart`] and replays its live state through
//! the event methods. A policy that fails [`BREAKER_FAILURES`] times within [`BREAKER_WINDOW`]
//! is not restarted again: the host switches to the built-in native greedy policy for good, so
//! a crash-looping policy cannot stall scheduling.
//!
//! # Compiled code
//!
//! Compiling a component is the slow part of a load. Compiled components are kept in memory
//! for the life of the process and, once [`set_artifact_cache`] names a folder, on disk, so a
//! restart loads the compiled code instead of compiling again.

mod artifacts;
mod component_file;
pub mod contract;
mod native;
mod proposal;
mod wasm;

#[cfg(test)]
mod tests;

/// A 0.1.0 component that echoes what it is told of a task, for tests of the adapter.
#[cfg(test)]
pub(crate) use wasm::tests::echo_v0_1;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use switchyard_greedy::Greedy;
use tracing::{error, info, warn};

pub use contract::ContractVersion;

pub use switchyard_policy_sdk::{AgentId, Assignment, Capability, Outcome, TaskId};

/// What a policy is told of a queued task: its handle (the submission sequence number) and what
/// scheduling needs, with capabilities interned. Not the hub's task, [`crate::task::Task`].
pub type TaskView = switchyard_policy_sdk::Task;

/// What a policy is told of a ready agent: its handle, its interned capabilities and since when
/// it is idle. Not the engine's record of an agent.
pub type AgentView = switchyard_policy_sdk::Agent;

pub use component_file::{
    max_component_bytes, read_component_file, set_max_component_bytes, DEFAULT_MAX_COMPONENT_BYTES,
    READ_DEADLINE,
};
pub use proposal::{check_proposal, ProposalRefusal, ProposedAgent, ProposedTask};
pub use wasm::{CALL_DEADLINE_TICKS, EPOCH_TICK, MEMORY_LIMIT_BYTES};

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_policies.rs"));
}

/// The longest a single policy call may run (deadline ticks × tick), for documentation and logs.
pub const CALL_DEADLINE: Duration = Duration::from_millis(10 * CALL_DEADLINE_TICKS);

/// How many failed calls within [`BREAKER_WINDOW`] make the host give up on a policy. Three,
/// so that a rare trap (a bug on an unusual input) costs a restart, not the policy.
pub const BREAKER_FAILURES: usize = 3;

/// The window the crash-loop breaker counts failures in.
pub const BREAKER_WINDOW: Duration = Duration::from_secs(60);

/// The policy the hub runs when none is named.
pub const DEFAULT_POLICY: &str = "builtin:greedy";

/// Where a policy component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// One of the policies built into the binary, by name (`greedy`).
    Builtin(String),
    /// A component file.
    File(PathBuf),
    /// Component bytes already in memory (an upload, a test).
    Bytes(Vec<u8>),
}

impl PolicySource {
    /// `builtin:NAME` names a built-in policy; anything else is a file path.
    pub fn parse(s: &str) -> Self {
        match s.strip_prefix("builtin:") {
            Some(name) => PolicySource::Builtin(name.to_string()),
            None => PolicySource::File(PathBuf::from(s)),
        }
    }

    /// How the source is reported in [`PolicyStatus::source`].
    fn label(&self) -> String {
        match self {
            PolicySource::Builtin(name) => format!("builtin:{name}"),
            PolicySource::File(path) => path.display().to_string(),
            PolicySource::Bytes(_) => "bytes".to_string(),
        }
    }
}

/// The names of the policies built into this binary (`builtin:NAME`).
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    builtin::BUILTIN_POLICIES.iter().map(|(name, _)| *name)
}

/// The folder compiled policies are cached in, once set.
static ARTIFACT_CACHE: OnceLock<PathBuf> = OnceLock::new();

/// Keeps compiled policies in `dir` (created owner-only when first written), so that later
/// loads of the same component by this binary, in this process or after a restart, skip
/// compiling. `serve` calls it once with `<data-dir>/policy-cache` before loading the first
/// policy: the cache belongs to one data folder, as trusted as the hub's other data. Only the
/// first call has an effect (a process serves one data folder); it returns whether it was it.
/// Without a call, compiled code is only reused within the process.
pub fn set_artifact_cache(dir: PathBuf) -> bool {
    let set = ARTIFACT_CACHE.set(dir).is_ok();
    if !set {
        warn!("the policy artifact cache folder was already set; keeping the first one");
    }
    set
}

fn artifact_cache() -> Option<&'static Path> {
    ARTIFACT_CACHE.get().map(PathBuf::as_path)
}

/// What a component is, as the hub sees it when it loads one: for `switchyard policy build` to
/// report before any hub is involved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentInfo {
    /// The policy's name, from its `about`.
    pub name: String,
    /// The policy's version, from its `about`.
    pub version: String,
    /// `sha256:<hex>` of the component's bytes, as [`PolicyStatus::digest`] shows it.
    pub digest: String,
    /// The component's size in bytes.
    pub size: usize,
    /// The contract version the component speaks (`"0.2.0"`; `"0.1.0"` runs behind an adapter).
    pub contract: ContractVersion,
}

/// Written as the version alone, `"0.2.0"`, in `GET /api/policy` and every other report.
impl Serialize for ContractVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Checks `bytes` as [`PolicyHost::load`] does (a component, the contract's every function by
/// name and type, no imports, a sane `about`) without creating a policy, which would need its
/// configuration.
pub fn inspect_component(bytes: &[u8]) -> Result<ComponentInfo, PolicyError> {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let (compiled, _) = wasm::Compiled::new(bytes, &digest, None)?;
    let (name, version) = compiled.probe()?;
    check_about(&name, &version)?;
    Ok(ComponentInfo {
        name,
        version,
        digest: format!("sha256:{}", hex::encode(digest)),
        size: bytes.len(),
        contract: compiled.contract(),
    })
}

/// Why a policy could not be loaded. Each message is meant for the operator who named it.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("there is no built-in policy `{name}` (built in: {available})")]
    UnknownBuiltin { name: String, available: String },
    #[error("cannot read the policy file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the policy file {path} is {what}; a policy must be a regular file")]
    NotARegularFile { path: PathBuf, what: &'static str },
    #[error("the policy component {what} is larger than the limit of {limit} bytes (serve --max-policy-bytes)")]
    ComponentTooLarge { what: String, limit: u64 },
    #[error("reading the policy file {path} took longer than {seconds} s")]
    ReadTimeout { path: PathBuf, seconds: f64 },
    #[error("not a policy component: {0}")]
    NotAComponent(String),
    #[error("the component is not a Switchyard policy: {0}")]
    WrongContract(String),
    #[error("the policy component failed to compile: {0}")]
    Compile(String),
    #[error("the policy's `about` is unusable: {0}")]
    BadAbout(String),
    #[error("the policy configuration is not valid JSON: {0}")]
    InvalidConfig(String),
    #[error("the policy rejected its configuration: {0}")]
    ConfigRejected(String),
    #[error("the policy failed to start: {0}")]
    Instantiate(String),
    #[error("the WebAssembly engine could not be set up: {0}")]
    Engine(String),
}

/// Parses a policy configuration given as text (a command-line flag, a file). Empty text means
/// no configuration, which policies see as `null`.
pub fn parse_config(text: &str) -> Result<serde_json::Value, PolicyError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(text).map_err(|e| PolicyError::InvalidConfig(e.to_string()))
}

/// Why a call into a policy failed. Either way the instance is discarded.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The call ran past its epoch deadline.
    Timeout,
    /// Any other trap (including running out of memory), with wasmtime's description.
    Trap(String),
}

/// One running policy instance, whichever kind. Object safe so the host can switch between a
/// component and the native fallback at runtime.
pub(crate) trait Backend: Send {
    fn task_queued(&mut self, task: &TaskView) -> Result<(), CallError>;
    fn task_dequeued(&mut self, task: TaskId) -> Result<(), CallError>;
    fn agent_ready(&mut self, agent: &AgentView) -> Result<(), CallError>;
    fn agent_unready(&mut self, agent: AgentId) -> Result<(), CallError>;
    fn assigned(&mut self, task: TaskId, agent: AgentId) -> Result<(), CallError>;
    fn task_finished(
        &mut self,
        task: TaskId,
        agent: AgentId,
        outcome: Outcome,
        held_ms: u64,
    ) -> Result<(), CallError>;
    fn tenant_weight(&mut self, tenant: &str, weight: f64) -> Result<(), CallError>;
    fn tenant_removed(&mut self, tenant: &str) -> Result<(), CallError>;
    fn decide(&mut self, now: u64) -> Result<Vec<Assignment>, CallError>;
    /// How many epoch ticks each later call may run for; the native fallback has no deadline.
    fn set_deadline_ticks(&mut self, _ticks: u64) {}
}

/// The body of `GET /api/policy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyStatus {
    /// The loaded policy's name, from its `about`.
    pub name: String,
    /// The loaded policy's version, from its `about`.
    pub version: String,
    /// The contract version the loaded component speaks; built-in policies speak the current
    /// one ([`ContractVersion::CURRENT`]).
    pub contract: ContractVersion,
    /// `sha256:<hex>` of the component's bytes.
    pub digest: String,
    /// The file path, `builtin:<name>`, or `bytes`.
    pub source: String,
    /// The configuration the policy was created with.
    pub config: serde_json::Value,
    /// When the policy was loaded, milliseconds since the Unix epoch.
    pub loaded_at: u64,
    /// True once the crash-loop breaker has switched to the built-in native greedy policy; the
    /// fields above still describe the policy that was loaded.
    pub fallback_active: bool,
    /// Set when the hub started on built-in greedy because the policy in force when it
    /// stopped could not be loaded: which policy that was and why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_fallback: Option<StartupFallback>,
    pub counters: PolicyCounters,
}

/// The policy a hub was meant to start with, and why it runs greedy instead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartupFallback {
    /// The policy in force when the hub stopped (its source).
    pub wanted: String,
    /// Why it could not be loaded.
    pub reason: String,
}

/// What the policy host has counted since the policy was loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicyCounters {
    /// `decide` calls made on a live instance.
    pub decisions: u64,
    /// Proposals the host accepted (`assigned` calls).
    pub assignments: u64,
    /// Proposals the host refused ([`PolicyHost::record_rejected`]).
    pub rejected_proposals: u64,
    /// Calls that trapped (including running out of memory).
    pub traps: u64,
    /// Calls stopped at their deadline.
    pub timeouts: u64,
    /// Times the host switched to the native fallback (0 or 1: it stays there).
    pub fallbacks: u64,
    /// Duration of policy calls (events and decisions).
    pub call_latency_us: LatencySummary,
}

/// Summary of call durations, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub max: f64,
}

/// Running totals behind [`LatencySummary`]: two additions and a compare per call.
#[derive(Debug, Default)]
struct Latency {
    count: u64,
    total_ns: u128,
    max_ns: u64,
}

impl Latency {
    fn record(&mut self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.count += 1;
        self.total_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    fn summary(&self) -> LatencySummary {
        let mean_ns = if self.count == 0 {
            0.0
        } else {
            self.total_ns as f64 / self.count as f64
        };
        LatencySummary {
            count: self.count,
            mean: mean_ns / 1_000.0,
            max: self.max_ns as f64 / 1_000.0,
        }
    }
}

/// A loaded policy and everything needed to restart it.
pub struct PolicyHost {
    /// The running instance; `None` after a failed call, until [`PolicyHost::restart`].
    backend: Option<Box<dyn Backend>>,
    compiled: wasm::Compiled,
    /// The configuration as the JSON text `create` receives, kept for restarts.
    config_text: String,
    fallback_active: bool,
    /// When recent calls failed, oldest first; only the last [`BREAKER_WINDOW`] matters.
    failures: VecDeque<Instant>,
    status: PolicyStatus,
    latency: Latency,
    /// Epoch ticks each call may run for: [`CALL_DEADLINE_TICKS`] unless
    /// [`PolicyHost::set_call_deadline`] said otherwise.
    deadline_ticks: u64,
}

impl std::fmt::Debug for PolicyHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHost")
            .field("name", &self.status.name)
            .field("source", &self.status.source)
            .field("broken", &self.backend.is_none())
            .field("fallback_active", &self.fallback_active)
            .finish_non_exhaustive()
    }
}

impl PolicyHost {
    /// Compiles the component (or reuses an identical compiled one), checks it speaks the
    /// policy contract and reports a sane `about`, and creates the policy with `config`.
    pub fn load(source: PolicySource, config: serde_json::Value) -> Result<Self, PolicyError> {
        let label = source.label();
        let owned;
        let bytes: &[u8] = match &source {
            PolicySource::Builtin(name) => builtin::BUILTIN_POLICIES
                .iter()
                .find(|(builtin, _)| builtin == name)
                .map(|(_, bytes)| *bytes)
                .ok_or_else(|| PolicyError::UnknownBuiltin {
                    name: name.clone(),
                    available: builtin_names().collect::<Vec<_>>().join(", "),
                })?,
            PolicySource::File(path) => {
                owned = read_component_file(path)?;
                &owned
            }
            PolicySource::Bytes(bytes) => bytes,
        };

        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let started = Instant::now();
        let (compiled, provenance) = wasm::Compiled::new(bytes, &digest, artifact_cache())?;
        let prepared_in = started.elapsed();
        let (name, version) = compiled.probe()?;
        check_about(&name, &version)?;

        let config_text = serde_json::to_string(&config)
            .map_err(|e| PolicyError::InvalidConfig(e.to_string()))?;
        let instance = compiled.instantiate(&config_text)?;

        let status = PolicyStatus {
            name,
            version,
            contract: compiled.contract(),
            digest: format!("sha256:{}", hex::encode(digest)),
            source: label,
            config,
            loaded_at: crate::wire::now_ms(),
            fallback_active: false,
            startup_fallback: None,
            counters: PolicyCounters::default(),
        };
        info!(
            policy = %status.name,
            version = %status.version,
            contract = %status.contract,
            source = %status.source,
            digest = %status.digest,
            code_from = provenance.as_str(),
            prepare_ms = prepared_in.as_secs_f64() * 1e3,
            "policy loaded"
        );
        Ok(Self {
            backend: Some(instance),
            compiled,
            config_text,
            fallback_active: false,
            failures: VecDeque::new(),
            status,
            latency: Latency::default(),
            deadline_ticks: CALL_DEADLINE_TICKS,
        })
    }

    /// Reports `source` as where the component came from (a component kept in the data folder
    /// is loaded from its bytes, but came from a file).
    pub fn set_source_label(&mut self, source: String) {
        self.status.source = source;
    }

    /// Marks this policy as the one the hub fell back to at start, and why.
    pub fn set_startup_fallback(&mut self, fallback: StartupFallback) {
        self.status.startup_fallback = Some(fallback);
    }

    /// Gives every later call of this host's instances `deadline` (rounded up to whole epoch
    /// ticks) instead of [`CALL_DEADLINE`]. A shadow run's candidate gets a longer one: its
    /// thread runs at a low priority, and must not be judged stuck for waiting for a CPU.
    pub fn set_call_deadline(&mut self, deadline: Duration) {
        let tick = EPOCH_TICK.as_nanos();
        let ticks = deadline.as_nanos().div_ceil(tick).max(1);
        self.deadline_ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        if let Some(backend) = self.backend.as_mut() {
            backend.set_deadline_ticks(self.deadline_ticks);
        }
    }

    /// The longest one call may run.
    pub fn call_deadline(&self) -> Duration {
        EPOCH_TICK * u32::try_from(self.deadline_ticks).unwrap_or(u32::MAX)
    }

    /// A task entered the queue.
    pub fn task_queued(&mut self, task: &TaskView) {
        self.event("task-queued", |b| b.task_queued(task));
    }

    /// A queued task left the queue without being assigned.
    pub fn task_dequeued(&mut self, task: TaskId) {
        self.event("task-dequeued", |b| b.task_dequeued(task));
    }

    /// An agent became ready. Call in the order agents became ready.
    pub fn agent_ready(&mut self, agent: &AgentView) {
        self.event("agent-ready", |b| b.agent_ready(agent));
    }

    /// A ready agent stopped being ready without being assigned.
    pub fn agent_unready(&mut self, agent: AgentId) {
        self.event("agent-unready", |b| b.agent_unready(agent));
    }

    /// The engine accepted a proposal.
    pub fn assigned(&mut self, task: TaskId, agent: AgentId) {
        self.status.counters.assignments += 1;
        self.event("assigned", |b| b.assigned(task, agent));
    }

    /// An assignment ended, after holding its agent for `held_ms` milliseconds.
    pub fn task_finished(&mut self, task: TaskId, agent: AgentId, outcome: Outcome, held_ms: u64) {
        self.event("task-finished", |b| {
            b.task_finished(task, agent, outcome, held_ms)
        });
    }

    /// A tenant's weight: for every tenant after a load or restart, and on every change.
    pub fn tenant_weight(&mut self, tenant: &str, weight: f64) {
        self.event("tenant-weight", |b| b.tenant_weight(tenant, weight));
    }

    /// A tenant was deleted.
    pub fn tenant_removed(&mut self, tenant: &str) {
        self.event("tenant-removed", |b| b.tenant_removed(tenant));
    }

    /// The policy's proposals for `now` (milliseconds since the Unix epoch); empty when the
    /// instance is broken or the call failed. Proposals are unchecked: the caller validates them.
    pub fn decide(&mut self, now: u64) -> Vec<Assignment> {
        if self.backend.is_some() {
            self.status.counters.decisions += 1;
        }
        self.call("decide", |b| b.decide(now)).unwrap_or_default()
    }

    /// Whether the instance was discarded after a failed call. The caller must then call
    /// [`PolicyHost::restart`] and replay the live state through the event methods.
    pub fn needs_replay(&self) -> bool {
        self.backend.is_none()
    }

    /// Replaces the instance with a fresh one that knows nothing yet (the caller replays the
    /// live state next). A fresh instance of the loaded component with the same configuration,
    /// unless the crash-loop breaker has tripped or the component no longer starts: then the
    /// native greedy policy, for the rest of the host's life.
    pub fn restart(&mut self) {
        // Drop the old instance first, so two instances' memory is never held at once.
        self.backend = None;
        if !self.fallback_active {
            let now = Instant::now();
            while self
                .failures
                .front()
                .is_some_and(|&t| now.duration_since(t) > BREAKER_WINDOW)
            {
                self.failures.pop_front();
            }
            if self.failures.len() >= BREAKER_FAILURES {
                error!(
                    policy = %self.status.name,
                    failures = self.failures.len(),
                    window_s = BREAKER_WINDOW.as_secs(),
                    "policy keeps failing; switching to the built-in native greedy policy for good"
                );
                self.engage_fallback();
            }
        }
        self.start_fresh(true);
    }

    /// Replaces a healthy instance with a fresh one that knows nothing (the caller replays
    /// next), for a reason of the engine's own: it renumbered capability handles. Not a
    /// failure: the breaker does not count it. A component that no longer starts gives way to
    /// the native fallback, as in [`PolicyHost::restart`].
    pub fn renew(&mut self) {
        self.backend = None;
        self.start_fresh(false);
    }

    /// Puts a fresh instance of the component in place (or the native greedy policy, once the
    /// fallback is engaged or if the component no longer starts, which engages it).
    fn start_fresh(&mut self, after_failure: bool) {
        if !self.fallback_active {
            match self.compiled.instantiate(&self.config_text) {
                Ok(mut instance) => {
                    if after_failure {
                        warn!(policy = %self.status.name, "policy restarted after a failure");
                    } else {
                        info!(policy = %self.status.name, "policy instance renewed");
                    }
                    instance.set_deadline_ticks(self.deadline_ticks);
                    self.backend = Some(instance);
                    return;
                }
                Err(e) => {
                    error!(
                        policy = %self.status.name,
                        error = %e,
                        "policy cannot be started again; switching to the built-in native \
                         greedy policy for good"
                    );
                    self.engage_fallback();
                }
            }
        }
        self.backend = Some(Box::new(native::Native(Greedy::default())));
    }

    /// A fresh instance of the loaded component with the same configuration, whatever the
    /// crash-loop breaker has counted, and never the native fallback: for a caller that keeps
    /// a breaker of its own and stops rather than fall back (a shadow run). The instance knows
    /// nothing yet; the caller replays next. On an error the instance stays discarded.
    pub fn restart_without_fallback(&mut self) -> Result<(), PolicyError> {
        self.backend = None;
        let mut instance = self.compiled.instantiate(&self.config_text)?;
        instance.set_deadline_ticks(self.deadline_ticks);
        self.backend = Some(instance);
        Ok(())
    }

    /// Counts proposals the engine refused (not queued, agent not idle, capabilities unmet,
    /// duplicates). A policy that is often refused is wrong or racing; the counter shows it.
    pub fn record_rejected(&mut self, n: u64) {
        self.status.counters.rejected_proposals += n;
    }

    /// The body of `GET /api/policy`.
    pub fn status(&self) -> PolicyStatus {
        let mut status = self.status.clone();
        status.fallback_active = self.fallback_active;
        status.counters.call_latency_us = self.latency.summary();
        status
    }

    /// Whether the crash-loop breaker has switched to the native fallback (what
    /// [`PolicyHost::status`] says, without building the status).
    pub fn fallback_active(&self) -> bool {
        self.fallback_active
    }

    fn engage_fallback(&mut self) {
        self.fallback_active = true;
        self.status.counters.fallbacks += 1;
    }

    fn event(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut dyn Backend) -> Result<(), CallError>,
    ) {
        self.call(what, f);
    }

    /// Runs one call on the live instance, timing it; a failure discards the instance.
    fn call<R>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut dyn Backend) -> Result<R, CallError>,
    ) -> Option<R> {
        let backend = self.backend.as_mut()?;
        let started = Instant::now();
        let result = f(backend.as_mut());
        self.latency.record(started.elapsed());
        match result {
            Ok(value) => Some(value),
            Err(failure) => {
                self.backend = None;
                self.failures.push_back(Instant::now());
                match failure {
                    CallError::Timeout => {
                        self.status.counters.timeouts += 1;
                        warn!(
                            policy = %self.status.name,
                            call = what,
                            deadline_ms = self.call_deadline().as_millis() as u64,
                            "policy call timed out; instance discarded"
                        );
                    }
                    CallError::Trap(message) => {
                        self.status.counters.traps += 1;
                        warn!(
                            policy = %self.status.name,
                            call = what,
                            error = %message,
                            "policy call trapped; instance discarded"
                        );
                    }
                }
                None
            }
        }
    }
}

/// A name and version an operator can read: non-empty, short, printable.
fn check_about(name: &str, version: &str) -> Result<(), PolicyError> {
    for (what, value) in [("name", name), ("version", version)] {
        if value.is_empty() {
            return Err(PolicyError::BadAbout(format!("its {what} is empty")));
        }
        if value.len() > 64 {
            return Err(PolicyError::BadAbout(format!(
                "its {what} is longer than 64 bytes"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(PolicyError::BadAbout(format!(
                "its {what} contains control characters"
            )));
        }
    }
    Ok(())
}
