//! Running a policy component under wasmtime: one shared engine, compiled components cached by
//! content (in memory, and on disk when the hub has a cache folder), and instances confined by
//! an epoch deadline and a memory cap.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};

use super::artifacts::{self, ArtifactKey, Provenance};
use super::{
    AgentId, AgentView, Assignment, Backend, CallError, Outcome, PolicyError, TaskId, TaskView,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-component",
        // Events pass a task's capability list and key by reference: no copy per event.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use bindings::exports::switchyard::policy::scheduler as wit;
use bindings::{PolicyComponent, PolicyComponentPre};

/// How often the background thread advances the engine's epoch.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How many epoch ticks one policy call may run for: 50 ticks of 10 ms, so a call is stopped
/// after 490 to 500 ms. A decision takes microseconds (a few milliseconds with 100,000 queued
/// tasks), so a call near the deadline is stuck. The deadline is wall-clock time, though, and on
/// a loaded machine a healthy call can be descheduled for tens of milliseconds: a tighter deadline
/// would count those stalls as timeouts and trip the crash-loop breaker on a good policy.
pub const CALL_DEADLINE_TICKS: u64 = 50;

/// The most linear memory one policy instance may use. Policies hold integer handles and small
/// records, so this leaves ample room while bounding what a leaking policy can take from the hub.
pub const MEMORY_LIMIT_BYTES: usize = 256 << 20;

/// The most elements one table of a policy instance may hold (8 bytes each at most).
const TABLE_ELEMENTS_LIMIT: usize = 1 << 20;

/// How many compiled components the in-memory cache keeps. Loads are rare (startup and swaps);
/// the cache saves recompiling when an operator swaps back to a policy used before.
const CACHE_ENTRIES: usize = 8;

/// The engine every policy runs on. Compiling is per engine, so one shared engine lets compiled
/// components be reused across loads and swaps.
pub(crate) fn engine() -> Result<&'static Engine, PolicyError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.epoch_interruption(true);
            let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
            // The engine lives in a static, so in practice the ticker runs for the life of the
            // process, at the cost of one wake-up per tick; the weak reference only keeps it
            // from holding the engine alive should that ever change.
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("policy-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|e| format!("cannot start the epoch ticker thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| PolicyError::Engine(e.clone()))
}

/// What each instance's store carries: only its resource limits (the policy has no imports).
pub(crate) struct GuestState {
    limits: StoreLimits,
}

/// A compiled, type-checked policy component, ready to be instantiated any number of times.
#[derive(Clone)]
pub(crate) struct Compiled {
    pre: PolicyComponentPre<GuestState>,
}

impl Compiled {
    /// Compiles `bytes` (or takes the cached compilation of identical bytes, from memory or from
    /// `cache_dir`) and checks that it is a policy component: it imports nothing and exports the
    /// scheduler interface. Also says where the compiled code came from.
    pub(crate) fn new(
        bytes: &[u8],
        digest: &[u8; 32],
        cache_dir: Option<&Path>,
    ) -> Result<(Self, Provenance), PolicyError> {
        check_is_component(bytes)?;
        let engine = engine()?;
        let (component, provenance) = cached_compile(engine, bytes, digest, cache_dir)?;
        Ok((Self::from_component(engine, &component)?, provenance))
    }

    /// Checks a compiled component against the contract and prepares its instantiation.
    pub(crate) fn from_component(
        engine: &Engine,
        component: &Component,
    ) -> Result<Self, PolicyError> {
        // An empty linker: a policy gets no host functions at all, so any import is refused here.
        let linker: Linker<GuestState> = Linker::new(engine);
        let instance_pre = linker.instantiate_pre(component).map_err(|e| {
            PolicyError::WrongContract(format!(
                "it imports something the hub does not provide (a policy may import nothing): \
                 {e:#}"
            ))
        })?;
        let pre = PolicyComponentPre::new(instance_pre).map_err(|e| {
            PolicyError::WrongContract(format!(
                "it does not export the `{INTERFACE}` interface this hub speaks: {e:#}"
            ))
        })?;
        Ok(Self { pre })
    }

    /// Checks every function of the contract by name and type on a throwaway instance, so a
    /// component built against another version of the contract is refused with the function
    /// at fault, then returns the policy's name and version from its `about`.
    pub(crate) fn probe(&self) -> Result<(String, String), PolicyError> {
        let mut store = new_store(self.pre.engine());
        let instance = self
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| PolicyError::Instantiate(format!("{e:#}")))?;
        check_contract(&mut store, &instance)?;
        let exports = PolicyComponent::new(&mut store, &instance)
            .map_err(|e| PolicyError::WrongContract(format!("{e:#}")))?;
        store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        let about = exports
            .switchyard_policy_scheduler()
            .call_about(&mut store)
            .map_err(|e| PolicyError::Instantiate(format!("its `about` call failed: {e:#}")))?;
        Ok((about.name, about.version))
    }

    /// A fresh instance with a policy built from `config` (a JSON document).
    pub(crate) fn instantiate(&self, config: &str) -> Result<WasmInstance, PolicyError> {
        let mut store = new_store(self.pre.engine());
        let exports = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| PolicyError::Instantiate(format!("{e:#}")))?;
        store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        let created = exports
            .switchyard_policy_scheduler()
            .policy()
            .call_create(&mut store, config)
            .map_err(|e| PolicyError::Instantiate(format!("its `create` call failed: {e:#}")))?;
        let policy = created.map_err(PolicyError::ConfigRejected)?;
        Ok(WasmInstance {
            deadline_ticks: CALL_DEADLINE_TICKS,
            store,
            exports,
            policy,
        })
    }
}

/// The interface a policy exports, as named in `wit/policy.wit` (a test checks it against
/// [`super::contract::contract_interface`], which reads the WIT).
pub const INTERFACE: &str = "switchyard:policy/scheduler@0.2.0";

/// Type-checks each function of the contract on its own, naming the one that does not match.
/// The generated bindings check the same things, but all at once and without saying which.
fn check_contract(
    store: &mut Store<GuestState>,
    instance: &wasmtime::component::Instance,
) -> Result<(), PolicyError> {
    let interface = instance
        .get_export_index(&mut *store, None, INTERFACE)
        .ok_or_else(|| PolicyError::WrongContract(format!("it does not export `{INTERFACE}`")))?;
    macro_rules! check {
        ($name:literal, $params:ty, $results:ty) => {{
            let index = instance
                .get_export_index(&mut *store, Some(&interface), $name)
                .ok_or_else(|| {
                    PolicyError::WrongContract(format!("`{INTERFACE}` has no function `{}`", $name))
                })?;
            instance
                .get_typed_func::<$params, $results>(&mut *store, &index)
                .map_err(|e| {
                    PolicyError::WrongContract(format!(
                        "`{INTERFACE}` function `{}` has another type than this hub expects \
                         (built against a different contract version?): {e:#}",
                        $name
                    ))
                })?;
        }};
    }
    check!("about", (), (wit::PolicyInfo,));
    check!(
        "[static]policy.create",
        (&str,),
        (Result<ResourceAny, String>,)
    );
    check!(
        "[method]policy.task-queued",
        (ResourceAny, wit::Task<'_>),
        ()
    );
    check!("[method]policy.task-dequeued", (ResourceAny, TaskId), ());
    check!(
        "[method]policy.agent-ready",
        (ResourceAny, wit::Agent<'_>),
        ()
    );
    check!("[method]policy.agent-unready", (ResourceAny, AgentId), ());
    check!(
        "[method]policy.assigned",
        (ResourceAny, TaskId, AgentId),
        ()
    );
    check!(
        "[method]policy.task-finished",
        (ResourceAny, TaskId, AgentId, wit::Outcome, u64),
        ()
    );
    check!("[method]policy.tenant-weight", (ResourceAny, &str, f64), ());
    check!("[method]policy.tenant-removed", (ResourceAny, &str), ());
    check!(
        "[method]policy.decide",
        (ResourceAny, u64),
        (Vec<wit::Assignment>,)
    );
    Ok(())
}

fn new_store(engine: &Engine) -> Store<GuestState> {
    let limits = StoreLimitsBuilder::new()
        .memory_size(MEMORY_LIMIT_BYTES)
        // Tables hold function references; a Rust policy needs a few hundred entries. The cap
        // stops a component from taking memory through tables instead of linear memory.
        .table_elements(TABLE_ELEMENTS_LIMIT)
        // A refused `memory.grow` traps instead of returning -1: the policy would abort on the
        // failed allocation anyway, and the trap says why.
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(engine, GuestState { limits });
    store.limiter(|state| &mut state.limits);
    // A new store's deadline is epoch 0, already past: without this, instantiating a component
    // that runs code at start-up would be interrupted at once.
    store.set_epoch_deadline(CALL_DEADLINE_TICKS);
    store
}

/// Refuses, with a message that says what the file is, anything that is not a component.
fn check_is_component(bytes: &[u8]) -> Result<(), PolicyError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE_VERSION: &[u8] = &[1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        return Err(PolicyError::NotAComponent(
            "it is not a WebAssembly binary (no \\0asm header)".into(),
        ));
    }
    if bytes.get(4..8) == Some(CORE_MODULE_VERSION) {
        return Err(PolicyError::NotAComponent(
            "it is a core WebAssembly module, not a component; build the policy crate with \
             `switchyard policy build`, which wraps the module as a component"
                .into(),
        ));
    }
    Ok(())
}

/// The compiled component for `bytes`: from this process's memory when it compiled identical
/// bytes before, else from the artifact files in `cache_dir` (when given), else compiled now.
/// Entries are keyed by (content digest, engine compatibility hash), the same key as the files.
fn cached_compile(
    engine: &Engine,
    bytes: &[u8],
    digest: &[u8; 32],
    cache_dir: Option<&Path>,
) -> Result<(Component, Provenance), PolicyError> {
    static CACHE: Mutex<Vec<(ArtifactKey, Component)>> = Mutex::new(Vec::new());
    let key = ArtifactKey::new(engine, digest);

    if let Some(component) = lock(&CACHE)
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, c)| c.clone())
    {
        return Ok((component, Provenance::Memory));
    }
    // Compiling takes milliseconds to a fraction of a second; the lock is not held meanwhile.
    let (component, provenance) = match cache_dir {
        Some(dir) => artifacts::load_or_compile(engine, bytes, &key, dir)?,
        None => (
            Component::new(engine, bytes).map_err(|e| PolicyError::Compile(format!("{e:#}")))?,
            Provenance::Compiled,
        ),
    };
    let mut cache = lock(&CACHE);
    if !cache.iter().any(|(k, _)| *k == key) {
        if cache.len() == CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((key, component.clone()));
    }
    Ok((component, provenance))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The cache holds no invariant a panicking holder could break.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A live policy instance. One store and instance are reused across calls (a call costs well
/// under a microsecond that way); after a failed call the instance is unusable and is dropped.
pub(crate) struct WasmInstance {
    /// Epoch ticks each call may run for ([`CALL_DEADLINE_TICKS`] unless the host says).
    deadline_ticks: u64,
    store: Store<GuestState>,
    exports: PolicyComponent,
    policy: ResourceAny,
}

impl WasmInstance {
    fn call<R>(
        &mut self,
        f: impl FnOnce(wit::GuestPolicy<'_>, &mut Store<GuestState>, ResourceAny) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let policy = self.exports.switchyard_policy_scheduler().policy();
        f(policy, &mut self.store, self.policy).map_err(classify)
    }
}

/// Sorts a failed call into a timeout (the epoch deadline passed) or any other trap.
fn classify(error: wasmtime::Error) -> CallError {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout,
        _ => CallError::Trap(format!("{error:#}")),
    }
}

impl Backend for WasmInstance {
    fn set_deadline_ticks(&mut self, ticks: u64) {
        self.deadline_ticks = ticks;
    }

    fn task_queued(&mut self, task: &TaskView) -> Result<(), CallError> {
        let task = wit::Task {
            id: task.id,
            priority: task.priority,
            needed_capabilities: &task.needed_capabilities,
            tenant: &task.tenant,
            fairness_key: &task.fairness_key,
            weight: task.weight,
            retry_count: task.retry_count,
            queued_at: task.queued_at,
        };
        self.call(|p, store, me| p.call_task_queued(store, me, task))
    }

    fn task_dequeued(&mut self, task: TaskId) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_task_dequeued(store, me, task))
    }

    fn agent_ready(&mut self, agent: &AgentView) -> Result<(), CallError> {
        let agent = wit::Agent {
            id: agent.id,
            capabilities: &agent.capabilities,
            idle_since: agent.idle_since,
        };
        self.call(|p, store, me| p.call_agent_ready(store, me, agent))
    }

    fn agent_unready(&mut self, agent: AgentId) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_agent_unready(store, me, agent))
    }

    fn assigned(&mut self, task: TaskId, agent: AgentId) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_assigned(store, me, task, agent))
    }

    fn task_finished(
        &mut self,
        task: TaskId,
        agent: AgentId,
        outcome: Outcome,
        held_ms: u64,
    ) -> Result<(), CallError> {
        let outcome = match outcome {
            Outcome::Completed => wit::Outcome::Completed,
            Outcome::Failed => wit::Outcome::Failed,
            Outcome::Returned => wit::Outcome::Returned,
            Outcome::Cancelled => wit::Outcome::Cancelled,
        };
        self.call(|p, store, me| p.call_task_finished(store, me, task, agent, outcome, held_ms))
    }

    fn tenant_weight(&mut self, tenant: &str, weight: f64) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_tenant_weight(store, me, tenant, weight))
    }

    fn tenant_removed(&mut self, tenant: &str) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_tenant_removed(store, me, tenant))
    }

    fn decide(&mut self, now: u64) -> Result<Vec<Assignment>, CallError> {
        let proposals = self.call(|p, store, me| p.call_decide(store, me, now))?;
        Ok(proposals
            .into_iter()
            .map(|a| Assignment {
                task: a.task,
                agent: a.agent,
            })
            .collect())
    }
}
