//! Running a policy component under wasmtime: one shared engine, compiled components cached by
//! content (in memory, and on disk when the hub has a cache folder), and instances confined by
//! an epoch deadline and a memory cap.
//!
//! A component speaks one version of the contract, read from the interface it exports: the
//! current one ([`v0_2`]) or 0.1.0 ([`v0_1`], behind an adapter). Both run behind the same
//! [`Backend`] trait, so nothing outside this module knows which.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, ComponentExportIndex, Instance, Linker};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};

use super::artifacts::{self, ArtifactKey, Provenance};
use super::contract::ContractVersion;
use super::{Backend, CallError, PolicyError};

/// Type-checks one function of a contract's interface on its own, naming it when it does not
/// match. The generated bindings check the same things, but all at once and without saying which.
/// Defined before the version modules, which use it.
macro_rules! check_function {
    ($store:ident, $instance:ident, $index:ident, $interface:expr, $name:literal, $params:ty, $results:ty) => {{
        let index = $instance
            .get_export_index(&mut *$store, Some(&$index), $name)
            .ok_or_else(|| {
                PolicyError::WrongContract(format!("`{}` has no function `{}`", $interface, $name))
            })?;
        $instance
            .get_typed_func::<$params, $results>(&mut *$store, &index)
            .map_err(|e| {
                PolicyError::WrongContract(format!(
                    "`{}` function `{}` has another type than this hub expects \
                     (built against a different contract version?): {e:#}",
                    $interface, $name
                ))
            })?;
    }};
}

mod v0_1;
mod v0_2;

#[cfg(test)]
pub(crate) mod tests;

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

/// A compiled policy component, type-checked against the contract version it exports, ready to
/// be instantiated any number of times.
#[derive(Clone)]
pub(crate) struct Compiled {
    pre: Pre,
}

/// A component's instantiation, prepared with the bindings of the version it speaks.
#[derive(Clone)]
enum Pre {
    V0_1(v0_1::Pre),
    V0_2(v0_2::Pre),
}

impl Compiled {
    /// Compiles `bytes` (or takes the cached compilation of identical bytes, from memory or from
    /// `cache_dir`) and checks that it is a policy component: it imports nothing and exports the
    /// scheduler interface of a contract version the hub speaks. Also says where the compiled
    /// code came from.
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

    /// Checks a compiled component against the contract version it exports and prepares its
    /// instantiation.
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
        let version = contract_of(engine, component)?;
        let pre = match version {
            ContractVersion::V0_1_0 => Pre::V0_1(v0_1::prepare(instance_pre)?),
            ContractVersion::V0_2_0 => Pre::V0_2(v0_2::prepare(instance_pre)?),
        };
        Ok(Self { pre })
    }

    /// The contract version the component speaks.
    pub(crate) fn contract(&self) -> ContractVersion {
        match self.pre {
            Pre::V0_1(_) => ContractVersion::V0_1_0,
            Pre::V0_2(_) => ContractVersion::V0_2_0,
        }
    }

    /// Checks every function of the contract by name and type on a throwaway instance, so a
    /// component built against another version of the contract is refused with the function
    /// at fault, then returns the policy's name and version from its `about`.
    pub(crate) fn probe(&self) -> Result<(String, String), PolicyError> {
        let instance_pre = match &self.pre {
            Pre::V0_1(pre) => pre.instance_pre(),
            Pre::V0_2(pre) => pre.instance_pre(),
        };
        let mut store = new_store(instance_pre.engine());
        let instance = instance_pre
            .instantiate(&mut store)
            .map_err(|e| PolicyError::Instantiate(format!("{e:#}")))?;
        match &self.pre {
            Pre::V0_1(_) => v0_1::probe(&mut store, &instance),
            Pre::V0_2(_) => v0_2::probe(&mut store, &instance),
        }
    }

    /// A fresh instance with a policy built from `config` (a JSON document).
    pub(crate) fn instantiate(&self, config: &str) -> Result<Box<dyn Backend>, PolicyError> {
        Ok(match &self.pre {
            Pre::V0_1(pre) => Box::new(v0_1::instantiate(pre, config)?),
            Pre::V0_2(pre) => Box::new(v0_2::instantiate(pre, config)?),
        })
    }
}

/// The interface a policy of the current contract exports, as named in `wit/policy.wit` (a
/// test in `wasm/tests.rs` checks it against the WIT).
pub const INTERFACE: &str = "switchyard:policy/scheduler@0.2.0";

/// The contract version `component` speaks, from the scheduler interface it exports. Anything
/// else is refused with what it exports and what the hub speaks.
fn contract_of(engine: &Engine, component: &Component) -> Result<ContractVersion, PolicyError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    // The newest version it exports, should it export several.
    if let Some(&version) = ContractVersion::ALL
        .iter()
        .rev()
        .find(|version| exports.iter().any(|name| name == version.interface()))
    {
        return Ok(version);
    }
    let spoken = ContractVersion::ALL
        .map(ContractVersion::interface)
        .join("` or `");
    let what = match exports
        .iter()
        .filter(|name| name.starts_with("switchyard:policy/"))
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] if exports.is_empty() => "exports nothing".to_string(),
        [] => format!("exports `{}` but no scheduler", exports.join("`, `")),
        found => format!(
            "exports `{}`, a contract version this hub does not speak",
            found
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("`, `")
        ),
    };
    Err(PolicyError::WrongContract(format!(
        "it {what}; this hub loads policies that export `{spoken}` (contract {})",
        ContractVersion::spoken()
    )))
}

/// The export index of `interface` in `instance`, for [`check_function!`].
fn interface_index(
    store: &mut Store<GuestState>,
    instance: &Instance,
    interface: &str,
) -> Result<ComponentExportIndex, PolicyError> {
    instance
        .get_export_index(&mut *store, None, interface)
        .ok_or_else(|| PolicyError::WrongContract(format!("it does not export `{interface}`")))
}

/// Calls `about` on a checked instance: the policy's name and version.
fn about_of(
    store: &mut Store<GuestState>,
    call: impl FnOnce(&mut Store<GuestState>) -> wasmtime::Result<(String, String)>,
) -> Result<(String, String), PolicyError> {
    store.set_epoch_deadline(CALL_DEADLINE_TICKS);
    call(store).map_err(|e| PolicyError::Instantiate(format!("its `about` call failed: {e:#}")))
}

/// Runs a component's `create` with `config` on a fresh store: the policy resource, or why not.
fn create_in<T>(
    store: &mut Store<GuestState>,
    call: impl FnOnce(&mut Store<GuestState>) -> wasmtime::Result<Result<T, String>>,
) -> Result<T, PolicyError> {
    store.set_epoch_deadline(CALL_DEADLINE_TICKS);
    let created = call(store)
        .map_err(|e| PolicyError::Instantiate(format!("its `create` call failed: {e:#}")))?;
    created.map_err(PolicyError::ConfigRejected)
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

/// Sorts a failed call into a timeout (the epoch deadline passed) or any other trap.
fn classify(error: wasmtime::Error) -> CallError {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout,
        _ => CallError::Trap(format!("{error:#}")),
    }
}
