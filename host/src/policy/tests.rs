//! Tests of the policy host against the real built-in greedy component and against hostile
//! components assembled here from WAT.

use std::time::Instant;

use serde_json::json;
use switchyard_greedy::Greedy;
use switchyard_policy_sdk::testing::{agent, pairs, task, MiniHost, XorShift};
use switchyard_policy_sdk::Policy;

use super::*;

fn greedy_wasm() -> PolicyHost {
    PolicyHost::load(
        PolicySource::Builtin("greedy".into()),
        serde_json::Value::Null,
    )
    .expect("the built-in greedy policy loads")
}

// ---------------------------------------------------------------------------------------------
// Hostile components

/// The pieces of a hand-written policy component that tests vary (here and in the tests of
/// `contract`).
pub(super) struct Hostile<'a> {
    pub(super) name: &'a str,
    /// `None`: `create` succeeds. `Some(message)`: it returns that error.
    pub(super) create_error: Option<&'a str>,
    /// Body of `decide`, a core function `(param $self i32) (param $now i64) (result i32)`
    /// returning a pointer to a (pointer, length) pair. 24 holds an empty list.
    pub(super) decide: &'a str,
    /// A (from, to) replacement applied to the contract's WIT before wrapping: a component
    /// built against a contract that differs from the hub's.
    pub(super) wit_edit: Option<(&'a str, &'a str)>,
    /// The contract version the module exports and embeds.
    pub(super) contract: ContractVersion,
}

/// A `decide` that proposes nothing.
pub(super) const DECIDE_NOTHING: &str = "(i32.const 24)";
/// A `decide` that never returns.
const DECIDE_LOOP: &str = "(loop $forever (br $forever)) unreachable";
/// A `decide` that traps at once.
const DECIDE_TRAP: &str = "unreachable";
/// A `decide` that grows its memory until refused.
const DECIDE_HOG: &str =
    "(loop $more (br_if $more (i32.ne (memory.grow (i32.const 1024)) (i32.const -1)))) unreachable";

impl Hostile<'_> {
    /// Assembles a component implementing the policy contract: [`Hostile::core_module`],
    /// wrapped by wit-component.
    fn build(&self) -> Vec<u8> {
        let (component, version) = contract::wrap_core_module(&self.core_module())
            .expect("the hostile module becomes a policy component");
        assert_eq!(version, self.contract);
        component
    }

    /// A core module written in WAT with the canonical-ABI exports wit-bindgen would produce
    /// and the contract's world embedded (edited by `wit_edit`), as cargo leaves a policy crate.
    pub(super) fn core_module(&self) -> Vec<u8> {
        let iface = self.contract.interface();
        // The functions whose signature differs between versions: 0.2.0 passes a task's tenant
        // and a finished task's held time, and has the two tenant events.
        let (task_queued_params, task_finished_params, tenant_events) = match self.contract {
            ContractVersion::V0_1_0 => (
                "i32 i64 i32 i32 i32 i32 i32 f64 i32 i64",
                "i32 i64 i32 i32",
                String::new(),
            ),
            ContractVersion::V0_2_0 => (
                "i32 i64 i32 i32 i32 i32 i32 i32 i32 f64 i32 i64",
                "i32 i64 i32 i32 i64",
                format!(
                    r#"(func (export "{iface}#[method]policy.tenant-weight") (param i32 i32 i32 f64))
  (func (export "{iface}#[method]policy.tenant-removed") (param i32 i32 i32))"#
                ),
            ),
        };
        let (create_tag, create_payload) = match self.create_error {
            None => (
                0,
                "(i32.store (i32.const 20) (call $new (i32.const 7)))".to_string(),
            ),
            Some(message) => (
                1,
                format!(
                    "(i32.store (i32.const 20) (i32.const 3072)) \
                     (i32.store (i32.const 24) (i32.const {}))",
                    message.len()
                ),
            ),
        };
        let wat = format!(
            r#"(module
  (import "[export]{iface}" "[resource-new]policy" (func $new (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (data (i32.const 1024) "{name}")
  (data (i32.const 2048) "6.6.6")
  (data (i32.const 3072) "{create_error}")
  ;; A bump allocator: enough for the host to pass a few events.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.const 16)))))
    (local.get $p))
  (func (export "{iface}#about") (result i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const {name_len}))
    (i32.store (i32.const 8) (i32.const 2048))
    (i32.store (i32.const 12) (i32.const 5))
    (i32.const 0))
  (func (export "{iface}#[static]policy.create") (param i32 i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const {create_tag}))
    {create_payload}
    (i32.const 16))
  (func (export "{iface}#[method]policy.task-queued") (param {task_queued_params}))
  (func (export "{iface}#[method]policy.task-dequeued") (param i32 i64))
  (func (export "{iface}#[method]policy.agent-ready") (param i32 i32 i32 i32 i64))
  (func (export "{iface}#[method]policy.agent-unready") (param i32 i32))
  (func (export "{iface}#[method]policy.assigned") (param i32 i64 i32))
  (func (export "{iface}#[method]policy.task-finished") (param {task_finished_params}))
  {tenant_events}
  (func (export "{iface}#[method]policy.decide") (param i32 i64) (result i32)
    (i32.store (i32.const 24) (i32.const 32))
    (i32.store (i32.const 28) (i32.const 0))
    {decide})
)"#,
            name = self.name,
            name_len = self.name.len(),
            create_error = self.create_error.unwrap_or(""),
            decide = self.decide,
        );
        let mut module = wat::parse_str(&wat).expect("hostile WAT assembles");

        let mut wit = self.contract.wit().to_string();
        if let Some((from, to)) = self.wit_edit {
            assert!(wit.contains(from), "the WIT no longer contains {from:?}");
            wit = wit.replace(from, to);
        }
        contract::embed_world(&mut module, &wit).expect("the world embeds");
        module
    }

    pub(super) fn load(&self) -> Result<PolicyHost, PolicyError> {
        PolicyHost::load(PolicySource::Bytes(self.build()), serde_json::Value::Null)
    }
}

fn hostile(decide: &str) -> PolicyHost {
    Hostile {
        name: "hostile",
        create_error: None,
        decide,
        wit_edit: None,
        contract: ContractVersion::CURRENT,
    }
    .load()
    .expect("the hostile component loads")
}

// ---------------------------------------------------------------------------------------------
// Loading

#[test]
fn the_builtin_greedy_loads_and_describes_itself() {
    let host = greedy_wasm();
    let status = host.status();
    assert_eq!(status.name, "greedy");
    assert_eq!(status.version, Greedy::VERSION);
    assert_eq!(status.source, "builtin:greedy");
    assert!(status.digest.starts_with("sha256:"), "{}", status.digest);
    assert_eq!(status.digest.len(), "sha256:".len() + 64);
    assert_eq!(status.config, serde_json::Value::Null);
    assert!(!status.fallback_active);
    assert!(status.loaded_at > 1_600_000_000_000);
    assert!(!host.needs_replay());
    let builtins: Vec<&str> = builtin_names().collect();
    assert!(builtins.contains(&"greedy"), "{builtins:?}");
    // host/build.rs builds the policies under tests/policies/ too, but never ships them.
    assert!(!builtins.contains(&"hostile"), "{builtins:?}");
}

#[test]
fn status_serializes_to_the_api_shape() {
    let value = serde_json::to_value(greedy_wasm().status()).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "name",
        "version",
        "digest",
        "source",
        "config",
        "loaded_at",
        "fallback_active",
        "counters",
    ] {
        assert!(keys.contains(&key), "missing {key} in {value}");
    }
    let counters = &value["counters"];
    for key in [
        "decisions",
        "assignments",
        "rejected_proposals",
        "traps",
        "timeouts",
        "fallbacks",
    ] {
        assert_eq!(counters[key], 0, "{key} in {value}");
    }
    // Loading (`about`, `create`) is not a scheduling call and is not counted.
    assert_eq!(counters["call_latency_us"]["count"], 0, "{value}");
}

#[test]
fn a_file_source_loads_the_same_component() {
    let path = concat!(env!("OUT_DIR"), "/policies/greedy.wasm");
    let host = PolicyHost::load(PolicySource::parse(path), json!({})).unwrap();
    let status = host.status();
    assert_eq!(status.source, path);
    assert_eq!(status.config, json!({}));
    assert_eq!(status.digest, greedy_wasm().status().digest);
}

#[test]
fn sources_parse_builtin_names_and_paths() {
    assert_eq!(
        PolicySource::parse("builtin:greedy"),
        PolicySource::Builtin("greedy".into())
    );
    assert_eq!(
        PolicySource::parse("./p/fair.wasm"),
        PolicySource::File("./p/fair.wasm".into())
    );
    assert_eq!(
        PolicySource::parse(DEFAULT_POLICY),
        PolicySource::Builtin("greedy".into())
    );
}

#[test]
fn config_text_parses_with_empty_meaning_null() {
    assert_eq!(parse_config("").unwrap(), serde_json::Value::Null);
    assert_eq!(parse_config("  ").unwrap(), serde_json::Value::Null);
    assert_eq!(parse_config(r#"{"a":1}"#).unwrap(), json!({"a": 1}));
    let err = parse_config("{a:1}").unwrap_err();
    assert!(matches!(err, PolicyError::InvalidConfig(_)), "{err}");
}

#[test]
fn an_unknown_builtin_is_refused_with_the_list() {
    let err = PolicyHost::load(PolicySource::Builtin("fiar".into()), json!(null)).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, PolicyError::UnknownBuiltin { .. }),
        "{message}"
    );
    assert!(
        message.contains("fiar") && message.contains("greedy"),
        "{message}"
    );
}

#[test]
fn an_unreadable_file_is_refused_with_its_path() {
    let err =
        PolicyHost::load(PolicySource::parse("/nonexistent/p.wasm"), json!(null)).unwrap_err();
    assert!(matches!(err, PolicyError::ReadFile { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/p.wasm"), "{err}");
}

#[test]
fn a_bad_config_is_refused_with_the_policys_message() {
    let err = PolicyHost::load(
        PolicySource::Builtin("greedy".into()),
        json!({"max_batch": 4}),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, PolicyError::ConfigRejected(_)), "{message}");
    assert!(
        message.contains("unknown config field `max_batch`"),
        "{message}"
    );

    let err = Hostile {
        name: "picky",
        create_error: Some("picky wants a `limit`"),
        decide: DECIDE_NOTHING,
        wit_edit: None,
        contract: ContractVersion::CURRENT,
    }
    .load()
    .unwrap_err();
    assert!(
        matches!(&err, PolicyError::ConfigRejected(m) if m == "picky wants a `limit`"),
        "{err}"
    );
}

#[test]
fn files_that_are_not_policy_components_are_refused_clearly() {
    // Printed so `--nocapture` shows what an operator would read.
    let load = |bytes: Vec<u8>| {
        let err = PolicyHost::load(PolicySource::Bytes(bytes), json!(null))
            .map(|_| ())
            .unwrap_err();
        eprintln!("refused: {err}");
        err
    };

    let err = load(b"#!/bin/sh\necho policy\n".to_vec());
    assert!(matches!(err, PolicyError::NotAComponent(_)), "{err}");
    assert!(
        err.to_string().contains("not a WebAssembly binary"),
        "{err}"
    );

    let err = load(wat::parse_str("(module)").unwrap());
    assert!(matches!(err, PolicyError::NotAComponent(_)), "{err}");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let err = load(wat::parse_str("(component)").unwrap());
    assert!(matches!(err, PolicyError::WrongContract(_)), "{err}");
    assert!(
        err.to_string().contains("switchyard:policy/scheduler"),
        "{err}"
    );

    let err = load(
        wat::parse_str(
            r#"(component
                 (import "wasi:cli/environment@0.2.0"
                   (instance (export "get-arguments" (func (result (list string)))))))"#,
        )
        .unwrap(),
    );
    assert!(matches!(err, PolicyError::WrongContract(_)), "{err}");
    assert!(err.to_string().contains("imports"), "{err}");

    // Built against a contract whose `decide` returns something else: the error names it.
    let err = Hostile {
        name: "stale",
        create_error: None,
        decide: DECIDE_NOTHING,
        wit_edit: Some((
            "decide: func(now: u64) -> list<assignment>;",
            "decide: func(now: u64) -> u32;",
        )),
        contract: ContractVersion::CURRENT,
    }
    .load()
    .map(|_| ())
    .unwrap_err();
    eprintln!("refused: {err}");
    assert!(matches!(err, PolicyError::WrongContract(_)), "{err}");
    assert!(err.to_string().contains("decide"), "{err}");

    let err = load(b"\0asm\x0d\0\x01\0garbage".to_vec());
    assert!(matches!(err, PolicyError::Compile(_)), "{err}");
}

#[test]
fn an_unreadable_about_is_refused() {
    let err = Hostile {
        name: "",
        create_error: None,
        decide: DECIDE_NOTHING,
        wit_edit: None,
        contract: ContractVersion::CURRENT,
    }
    .load()
    .unwrap_err();
    assert!(matches!(err, PolicyError::BadAbout(_)), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Behaviour

/// Drives the wasm greedy through the host and the native greedy directly with the same
/// scripted events, and requires the same decisions every time.
#[test]
fn wasm_greedy_and_native_greedy_decide_identically() {
    let mut wasm = greedy_wasm();
    let mut native = MiniHost::new(Greedy::new(&serde_json::Value::Null).unwrap());
    let mut rng = XorShift::new(0x2545_f491_4f6c_dd1d);
    let mut next_task = 0;
    let mut next_agent = 0;
    let mut decisions = 0;
    let mut proposals_seen = 0;
    for step in 0..3_000 {
        match rng.below(12) {
            0..=3 => {
                let t = task(next_task, rng.below(4) as u8, &rng.capabilities());
                next_task += 1;
                wasm.task_queued(&t);
                native.task_queued(t);
            }
            4 if !native.queued_tasks().is_empty() => {
                let queued = native.queued_tasks();
                let id = *queued
                    .keys()
                    .nth(rng.below(queued.len() as u64) as usize)
                    .unwrap();
                wasm.task_dequeued(id);
                native.task_dequeued(id);
            }
            5..=6 => {
                let a = agent(next_agent, &rng.capabilities());
                next_agent += 1;
                wasm.agent_ready(&a);
                native.agent_ready(a);
            }
            7 if !native.ready_agents().is_empty() => {
                let ready = native.ready_agents();
                let id = ready[rng.below(ready.len() as u64) as usize].id;
                wasm.agent_unready(id);
                native.agent_unready(id);
            }
            _ => {
                let now = 1_700_000_000_000 + step;
                let from_wasm = wasm.decide(now);
                let from_native = native.decide(now);
                assert_eq!(from_wasm, from_native, "step {step}");
                decisions += 1;
                proposals_seen += from_wasm.len();
                // Accept two in three, as a host that refuses some would.
                for a in from_wasm {
                    if rng.below(3) != 0 {
                        wasm.assigned(a.task, a.agent);
                        assert!(native.confirm(a), "{a:?}");
                        let outcome = [Outcome::Completed, Outcome::Failed][rng.below(2) as usize];
                        wasm.task_finished(a.task, a.agent, outcome, 10);
                        native.policy.task_finished(a.task, a.agent, outcome, 10);
                    } else {
                        wasm.record_rejected(1);
                    }
                }
            }
        }
    }
    assert!(
        decisions > 100 && proposals_seen > 100,
        "{decisions} {proposals_seen}"
    );
    let status = wasm.status();
    assert_eq!(status.counters.decisions, decisions);
    assert_eq!(status.counters.traps + status.counters.timeouts, 0);
    assert!(!wasm.needs_replay());
}

#[test]
fn a_healthy_restart_gives_a_fresh_instance_of_the_same_policy() {
    let mut host = greedy_wasm();
    host.task_queued(&task(1, 0, &[]));
    host.agent_ready(&agent(1, &[]));
    assert_eq!(pairs(&host.decide(0)), [(1, 1)]);
    host.restart();
    assert!(!host.needs_replay());
    assert!(
        host.decide(0).is_empty(),
        "a restarted instance starts empty"
    );
    assert!(!host.status().fallback_active);
}

#[test]
fn a_policy_that_never_returns_is_stopped_and_counted_as_a_timeout() {
    let mut host = hostile(DECIDE_LOOP);
    host.task_queued(&task(1, 0, &[]));
    host.agent_ready(&agent(1, &[]));
    let started = Instant::now();
    assert!(host.decide(0).is_empty());
    let took = started.elapsed();
    assert!(
        took >= CALL_DEADLINE - EPOCH_TICK && took < CALL_DEADLINE * 4,
        "stopped after {took:?}"
    );
    assert!(host.needs_replay());
    let status = host.status();
    assert_eq!((status.counters.timeouts, status.counters.traps), (1, 0));

    // A broken instance is not called again: had it been, the loop would time out once more.
    host.task_queued(&task(2, 0, &[]));
    assert!(host.decide(0).is_empty());
    assert_eq!(host.status().counters.timeouts, 1);
}

#[test]
fn a_trapping_policy_is_counted_as_a_trap() {
    let mut host = hostile(DECIDE_TRAP);
    host.agent_ready(&agent(1, &[2, 3]));
    assert!(host.decide(0).is_empty());
    assert!(host.needs_replay());
    let status = host.status();
    assert_eq!((status.counters.traps, status.counters.timeouts), (1, 0));
}

#[test]
fn a_policy_that_hoards_memory_is_stopped_at_the_cap() {
    let mut host = hostile(DECIDE_HOG);
    assert!(host.decide(0).is_empty());
    assert!(host.needs_replay());
    assert_eq!(host.status().counters.traps, 1);
}

#[test]
fn a_healthy_hostile_component_answers() {
    let mut host = hostile(DECIDE_NOTHING);
    host.task_queued(&task(1, 0, &[1]));
    host.agent_ready(&agent(1, &[1]));
    host.assigned(1, 1);
    host.task_finished(1, 1, Outcome::Cancelled, 0);
    host.task_dequeued(1);
    host.agent_unready(1);
    assert!(host.decide(0).is_empty());
    assert!(!host.needs_replay());
    let status = host.status();
    assert_eq!(status.name, "hostile");
    assert_eq!(status.version, "6.6.6");
    assert_eq!(status.counters.call_latency_us.count, 7);
}

#[test]
fn the_breaker_switches_to_native_greedy_after_three_failures() {
    let mut host = hostile(DECIDE_TRAP);
    for failure in 1..=3 {
        host.task_queued(&task(1, 0, &[]));
        host.agent_ready(&agent(1, &[]));
        assert!(host.decide(0).is_empty());
        assert!(host.needs_replay(), "failure {failure}");
        host.restart();
        assert!(!host.needs_replay());
        assert_eq!(
            host.status().fallback_active,
            failure == 3,
            "failure {failure}"
        );
    }
    let status = host.status();
    assert_eq!((status.counters.traps, status.counters.fallbacks), (3, 1));
    assert_eq!(
        status.name, "hostile",
        "the status still names the loaded policy"
    );

    // The caller replays; the native greedy decides from then on.
    host.task_queued(&task(1, 0, &[]));
    host.task_queued(&task(2, 1, &[]));
    host.agent_ready(&agent(1, &[]));
    assert_eq!(pairs(&host.decide(0)), [(1, 1)]);
    host.assigned(1, 1);

    // It stays there: a restart gives a fresh native greedy, never the broken component.
    host.restart();
    assert!(host.status().fallback_active);
    assert!(host.decide(0).is_empty());
    host.task_queued(&task(2, 1, &[]));
    host.agent_ready(&agent(4, &[]));
    assert_eq!(pairs(&host.decide(0)), [(2, 4)]);
    assert_eq!(host.status().counters.fallbacks, 1);
}

#[test]
fn timeouts_feed_the_breaker_too() {
    let mut host = hostile(DECIDE_LOOP);
    for _ in 0..3 {
        assert!(host.decide(0).is_empty());
        host.restart();
    }
    let status = host.status();
    assert!(status.fallback_active);
    assert_eq!(status.counters.timeouts, 3);
}

#[test]
fn a_host_can_give_its_calls_another_deadline_which_restarts_keep() {
    let mut host = hostile(DECIDE_LOOP);
    let deadline = Duration::from_millis(100);
    host.set_call_deadline(deadline);
    assert_eq!(host.call_deadline(), deadline);
    for attempt in 0..2 {
        let started = Instant::now();
        assert!(host.decide(0).is_empty());
        let took = started.elapsed();
        // The default deadline would have let the loop run past CALL_DEADLINE - EPOCH_TICK.
        assert!(
            took >= deadline - EPOCH_TICK && took < CALL_DEADLINE - EPOCH_TICK,
            "attempt {attempt}: stopped after {took:?}"
        );
        host.restart_without_fallback().unwrap();
    }
    assert_eq!(host.status().counters.timeouts, 2);
}

#[test]
fn a_restart_without_fallback_ignores_the_breaker() {
    let mut host = hostile(DECIDE_TRAP);
    for failure in 1..=5 {
        assert!(host.decide(0).is_empty());
        assert!(host.needs_replay(), "failure {failure}");
        host.restart_without_fallback().unwrap();
        assert!(!host.needs_replay());
    }
    let status = host.status();
    assert!(!status.fallback_active);
    assert_eq!((status.counters.traps, status.counters.fallbacks), (5, 0));
}

#[test]
fn the_host_is_send_so_the_engine_can_own_it_on_any_thread() {
    fn is_send<T: Send>() {}
    is_send::<PolicyHost>();
    is_send::<PolicyError>();
}
