//! Tests of loading components by contract version: a 0.1.0 component runs behind the adapter
//! and sees each tenant as one fairness key, a version the hub does not speak is refused with
//! what it exports.

use serde_json::json;
use switchyard_policy_sdk::testing::{agent, task};

use crate::policy::contract::{wrap_core_module_for, ContractVersion};
use crate::policy::tests::{Hostile, DECIDE_NOTHING};
use crate::policy::{Outcome, PolicyError, PolicyHost, PolicySource, TaskView};

/// A 0.1.0 policy that shows what it was told of the last task queued: `decide` proposes one
/// assignment whose task is that task's weight × 1000 and whose agent is the length of its
/// fairness key (nothing while no task was queued). Not a scheduler: a probe of the adapter.
pub(crate) fn echo_v0_1() -> Vec<u8> {
    const IFACE: &str = "switchyard:policy/scheduler@0.1.0";
    let wat = format!(
        r#"(module
  (import "[export]{IFACE}" "[resource-new]policy" (func $new (param i32) (result i32)))
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 0x20000))
  (global $queued (mut i32) (i32.const 0))
  (global $weight (mut f64) (f64.const 0))
  (global $key_len (mut i32) (i32.const 0))
  (data (i32.const 1024) "echo")
  (data (i32.const 2048) "0.0.1")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.const 16)))))
    (local.get $p))
  (func (export "{IFACE}#about") (result i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4))
    (i32.store (i32.const 8) (i32.const 2048))
    (i32.store (i32.const 12) (i32.const 5))
    (i32.const 0))
  (func (export "{IFACE}#[static]policy.create") (param i32 i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (call $new (i32.const 7)))
    (i32.const 16))
  (func (export "{IFACE}#[method]policy.task-queued")
    (param $self i32) (param $id i64) (param $priority i32) (param $caps i32) (param $caps_len i32)
    (param $key i32) (param $key_len i32) (param $weight f64) (param $retries i32)
    (param $queued_at i64)
    (global.set $queued (i32.const 1))
    (global.set $weight (local.get $weight))
    (global.set $key_len (local.get $key_len)))
  (func (export "{IFACE}#[method]policy.task-dequeued") (param i32 i64))
  (func (export "{IFACE}#[method]policy.agent-ready") (param i32 i32 i32 i32 i64))
  (func (export "{IFACE}#[method]policy.agent-unready") (param i32 i32))
  (func (export "{IFACE}#[method]policy.assigned") (param i32 i64 i32))
  (func (export "{IFACE}#[method]policy.task-finished") (param i32 i64 i32 i32))
  (func (export "{IFACE}#[method]policy.decide") (param i32 i64) (result i32)
    (i64.store (i32.const 0x10000)
      (i64.trunc_f64_u (f64.mul (global.get $weight) (f64.const 1000))))
    (i32.store (i32.const 0x10008) (global.get $key_len))
    (i32.store (i32.const 24) (i32.const 0x10000))
    (i32.store (i32.const 28) (global.get $queued))
    (i32.const 24))
)"#
    );
    let module = wat::parse_str(&wat).expect("the echo WAT assembles");
    wrap_core_module_for(ContractVersion::V0_1_0, &module).expect("the echo module wraps")
}

/// What the echo policy was told of the last task: (weight × 1000, fairness key length).
fn told(host: &mut PolicyHost) -> Option<(u64, u32)> {
    let proposals = host.decide(0);
    assert!(proposals.len() <= 1, "{proposals:?}");
    proposals.first().map(|a| (a.task, a.agent))
}

fn task_of(id: u64, tenant: &str, key: &str, weight: f64) -> TaskView {
    let mut view = task(id, 0, &[]);
    view.tenant = tenant.to_string();
    view.fairness_key = key.to_string();
    view.weight = weight;
    view
}

#[test]
fn the_current_interface_is_the_one_the_wit_declares() {
    assert_eq!(
        super::INTERFACE,
        crate::policy::contract::contract_interface()
    );
    assert_eq!(super::INTERFACE, ContractVersion::CURRENT.interface());
}

#[test]
fn a_v0_1_policy_sees_each_tenant_as_one_key_weighted_by_the_tenant() {
    let mut host = PolicyHost::load(PolicySource::Bytes(echo_v0_1()), json!(null)).unwrap();
    let status = host.status();
    assert_eq!(status.contract, ContractVersion::V0_1_0);
    assert_eq!(serde_json::to_value(&status).unwrap()["contract"], "0.1.0");
    assert_eq!(told(&mut host), None);

    host.tenant_weight("default", 1.0);
    host.tenant_weight("team-a", 2.5);
    // The submitter's own key and weight (1000) are not what the policy sees.
    host.task_queued(&task_of(1, "team-a", "spread-17", 1000.0));
    assert_eq!(told(&mut host), Some((2_500, "team-a".len() as u32)));
    host.task_queued(&task_of(2, "default", "k", 7.0));
    assert_eq!(told(&mut host), Some((1_000, "default".len() as u32)));

    // A weight change applies to tasks queued after it.
    host.tenant_weight("team-a", 4.0);
    host.task_queued(&task_of(3, "team-a", "k", 1.0));
    assert_eq!(told(&mut host), Some((4_000, 6)));

    // A tenant the adapter was not told of (or no longer knows) weighs 1.
    host.tenant_removed("team-a");
    host.task_queued(&task_of(4, "team-a", "k", 1.0));
    assert_eq!(told(&mut host), Some((1_000, 6)));

    // held-ms is dropped, and nothing above failed.
    host.task_finished(1, 1, Outcome::Completed, 250);
    assert!(!host.needs_replay());
    assert_eq!(host.status().counters.traps, 0);
}

#[test]
fn a_restarted_v0_1_instance_knows_no_weights_until_told_again() {
    let mut host = PolicyHost::load(PolicySource::Bytes(echo_v0_1()), json!(null)).unwrap();
    host.tenant_weight("team-a", 3.0);
    host.restart();
    // The engine tells every weight again before it replays tasks; the adapter of the fresh
    // instance starts empty, as the fresh instance does.
    host.task_queued(&task_of(1, "team-a", "k", 1.0));
    assert_eq!(told(&mut host), Some((1_000, 6)));
    host.tenant_weight("team-a", 3.0);
    host.task_queued(&task_of(2, "team-a", "k", 1.0));
    assert_eq!(told(&mut host), Some((3_000, 6)));
}

#[test]
fn hostile_components_of_either_version_load_and_answer_every_event() {
    for contract in ContractVersion::ALL {
        let mut host = Hostile {
            name: "hostile",
            create_error: None,
            decide: DECIDE_NOTHING,
            wit_edit: None,
            contract,
        }
        .load()
        .unwrap_or_else(|e| panic!("{contract}: {e}"));
        assert_eq!(host.status().contract, contract);
        host.tenant_weight("default", 1.0);
        host.task_queued(&task(1, 0, &[1]));
        host.agent_ready(&agent(1, &[1]));
        host.assigned(1, 1);
        host.task_finished(1, 1, Outcome::Completed, 12);
        host.tenant_removed("default");
        assert!(host.decide(0).is_empty());
        assert!(!host.needs_replay(), "{contract}");
        assert_eq!(host.status().counters.traps, 0, "{contract}");
    }
}

#[test]
fn a_component_of_a_version_the_hub_does_not_speak_is_refused_naming_both() {
    let component = wat::parse_str(
        r#"(component
             (instance $scheduler)
             (export "switchyard:policy/scheduler@0.9.0" (instance $scheduler)))"#,
    )
    .unwrap();
    let err = PolicyHost::load(PolicySource::Bytes(component), json!(null))
        .map(|_| ())
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, PolicyError::WrongContract(_)), "{message}");
    for expected in [
        "switchyard:policy/scheduler@0.9.0",
        "switchyard:policy/scheduler@0.1.0",
        "switchyard:policy/scheduler@0.2.0",
        "0.1.0 and 0.2.0",
    ] {
        assert!(message.contains(expected), "{expected} in {message}");
    }

    // A component that exports something else entirely says so, with what the hub wants.
    let other = wat::parse_str(
        r#"(component (instance $x) (export "acme:tools/hammer@1.0.0" (instance $x)))"#,
    )
    .unwrap();
    let message = PolicyHost::load(PolicySource::Bytes(other), json!(null))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("acme:tools/hammer@1.0.0") && message.contains("no scheduler"),
        "{message}"
    );
}
