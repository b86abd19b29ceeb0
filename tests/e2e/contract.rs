//! Contract versions: built-in policies speak 0.2.0, and a component built against 0.1.0 (here
//! a FIFO policy written in WAT, wrapped by the hub's own helper against
//! wit/compat/0.1.0) loads on the hub, reports `"contract": "0.1.0"`, completes tasks, and
//! loads again after a restart.

use std::time::Duration;

use switchyard::policy::contract::{wrap_core_module_for, ContractVersion};

use crate::harness::policy::CABI_REALLOC;
use crate::harness::{assert_each_completed_once, Crew, Hub, HubOpts, WorkerOpts, WorkerReport};

/// How long the crew may take to complete a test's tasks.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A first-in-first-out policy of contract 0.1.0: queued task ids in one array, ready agent
/// handles in another, both in the order the host announced them; `decide` pairs the first
/// task with the first agent, the second with the second, and so on. It ignores capabilities
/// (the tasks here need none) and priorities. Its name is `fifo-v0-1`.
fn fifo_v0_1() -> Vec<u8> {
    const IFACE: &str = "switchyard:policy/scheduler@0.1.0";
    // Memory: 0x10000 queued task ids (i64), 0x20000 ready agents (i32), 0x30000 the list
    // `decide` returns (16-byte records), from 0x40000 the host's allocations.
    let wat = format!(
        r#"(module
  (import "[export]{IFACE}" "[resource-new]policy" (func $new (param i32) (result i32)))
  (memory (export "memory") 5)
  (global $heap (mut i32) (i32.const 0x40000))
  (global $tasks (mut i32) (i32.const 0))
  (global $agents (mut i32) (i32.const 0))
  (data (i32.const 1024) "fifo-v0-1")
  (data (i32.const 2048) "1.0.0")
{CABI_REALLOC}
  (func $drop_task (param $id i64)
    (local $i i32)
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (global.get $tasks)))
        (if (i64.eq (i64.load (i32.add (i32.const 0x10000) (i32.shl (local.get $i) (i32.const 3))))
                    (local.get $id))
          (then
            (memory.copy
              (i32.add (i32.const 0x10000) (i32.shl (local.get $i) (i32.const 3)))
              (i32.add (i32.const 0x10008) (i32.shl (local.get $i) (i32.const 3)))
              (i32.shl (i32.sub (i32.sub (global.get $tasks) (local.get $i)) (i32.const 1))
                       (i32.const 3)))
            (global.set $tasks (i32.sub (global.get $tasks) (i32.const 1)))
            (br $done)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan))))
  (func $drop_agent (param $id i32)
    (local $i i32)
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (global.get $agents)))
        (if (i32.eq (i32.load (i32.add (i32.const 0x20000) (i32.shl (local.get $i) (i32.const 2))))
                    (local.get $id))
          (then
            (memory.copy
              (i32.add (i32.const 0x20000) (i32.shl (local.get $i) (i32.const 2)))
              (i32.add (i32.const 0x20004) (i32.shl (local.get $i) (i32.const 2)))
              (i32.shl (i32.sub (i32.sub (global.get $agents) (local.get $i)) (i32.const 1))
                       (i32.const 2)))
            (global.set $agents (i32.sub (global.get $agents) (i32.const 1)))
            (br $done)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan))))
  (func (export "{IFACE}#about") (result i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 9))
    (i32.store (i32.const 8) (i32.const 2048))
    (i32.store (i32.const 12) (i32.const 5))
    (i32.const 0))
  (func (export "{IFACE}#[static]policy.create") (param i32 i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (call $new (i32.const 7)))
    (i32.const 16))
  (func (export "{IFACE}#[method]policy.task-queued")
    (param $self i32) (param $id i64) (param i32 i32 i32 i32 i32 f64 i32 i64)
    (i64.store (i32.add (i32.const 0x10000) (i32.shl (global.get $tasks) (i32.const 3)))
               (local.get $id))
    (global.set $tasks (i32.add (global.get $tasks) (i32.const 1))))
  (func (export "{IFACE}#[method]policy.task-dequeued") (param $self i32) (param $id i64)
    (call $drop_task (local.get $id)))
  (func (export "{IFACE}#[method]policy.agent-ready")
    (param $self i32) (param $id i32) (param i32 i32 i64)
    (i32.store (i32.add (i32.const 0x20000) (i32.shl (global.get $agents) (i32.const 2)))
               (local.get $id))
    (global.set $agents (i32.add (global.get $agents) (i32.const 1))))
  (func (export "{IFACE}#[method]policy.agent-unready") (param $self i32) (param $id i32)
    (call $drop_agent (local.get $id)))
  (func (export "{IFACE}#[method]policy.assigned") (param $self i32) (param $task i64) (param $agent i32)
    (call $drop_task (local.get $task))
    (call $drop_agent (local.get $agent)))
  (func (export "{IFACE}#[method]policy.task-finished") (param i32 i64 i32 i32))
  (func (export "{IFACE}#[method]policy.decide") (param $self i32) (param $now i64) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (select (global.get $tasks) (global.get $agents)
                          (i32.lt_u (global.get $tasks) (global.get $agents))))
    (block $done
      (loop $pair
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i64.store (i32.add (i32.const 0x30000) (i32.shl (local.get $i) (i32.const 4)))
                   (i64.load (i32.add (i32.const 0x10000) (i32.shl (local.get $i) (i32.const 3)))))
        (i32.store (i32.add (i32.const 0x30008) (i32.shl (local.get $i) (i32.const 4)))
                   (i32.load (i32.add (i32.const 0x20000) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $pair)))
    (i32.store (i32.const 24) (i32.const 0x30000))
    (i32.store (i32.const 28) (local.get $n))
    (i32.const 24))
)"#
    );
    let module = wat::parse_str(&wat).expect("the FIFO WAT assembles");
    wrap_core_module_for(ContractVersion::V0_1_0, &module)
        .expect("the FIFO module becomes a 0.1.0 policy component")
}

async fn crew_of(hub: &Hub, agents: usize) -> Crew {
    let mut crew = Crew::new();
    for i in 0..agents {
        crew.spawn(hub.agent(&format!("w{i}")).await, WorkerOpts::default());
    }
    crew
}

async fn submit(hub: &Hub, from: usize, count: usize) -> Vec<String> {
    let tasks = (from..from + count)
        .map(|i| {
            serde_json::json!({
                "description": format!("contract task {i}"),
                "fairness_key": format!("key-{}", i % 3),
            })
        })
        .collect();
    hub.api().submit_batch(tasks).await
}

async fn finish(crew: Crew, ids: &[String]) {
    let out = crew.stop().await;
    let reports: Vec<WorkerReport> = out.into_iter().map(|(_, r)| r).collect();
    assert_each_completed_once(&reports.iter().collect::<Vec<_>>(), ids);
}

/// The policy in force speaks `contract`, has assigned at least `assignments`, and nothing
/// of it failed.
async fn assert_policy(hub: &Hub, name: &str, contract: &str, assignments: u64) {
    let status = hub.api().policy().await;
    assert_eq!(status["name"], name, "{status}");
    assert_eq!(status["contract"], contract, "{status}");
    assert_eq!(status["fallback_active"], false, "{status}");
    let counters = &status["counters"];
    assert_eq!(counters["traps"], 0, "{status}");
    assert_eq!(counters["timeouts"], 0, "{status}");
    assert!(
        counters["assignments"].as_u64().unwrap() >= assignments,
        "{status}"
    );
}

/// A 0.1.0 component is uploaded in place of the built-in policy (which speaks 0.2.0),
/// schedules every task to completion in submission order, and is loaded again, still as
/// 0.1.0, when the hub restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v0_1_component_loads_and_completes_tasks() {
    // Started without `--policy` (greedy on a new folder), so the restart below loads the
    // component kept in the data folder, whatever policy the suite runs under.
    let hub = Hub::start(HubOpts::default().persisted_policy()).await;
    let before = hub.api().policy().await;
    assert_eq!(
        before["contract"], "0.2.0",
        "built-ins speak 0.2.0: {before}"
    );

    let swapped = hub
        .api()
        .put_policy_wasm(fifo_v0_1(), None)
        .await
        .expect(200, "PUT the 0.1.0 FIFO policy");
    assert_eq!(swapped["name"], "fifo-v0-1", "{swapped}");
    assert_eq!(swapped["contract"], "0.1.0", "{swapped}");

    let mut crew = crew_of(&hub, 3).await;
    let ids = submit(&hub, 0, 60).await;
    crew.wait_completed(ids.len(), TIMEOUT).await;
    finish(crew, &ids).await;
    assert_policy(&hub, "fifo-v0-1", "0.1.0", ids.len() as u64).await;

    // The component is kept in the data folder and loaded again at start.
    let hub = Hub::restart_on(hub.kill9()).await;
    assert_policy(&hub, "fifo-v0-1", "0.1.0", 0).await;
    let mut crew = crew_of(&hub, 2).await;
    let ids = submit(&hub, 60, 20).await;
    crew.wait_completed(ids.len(), TIMEOUT).await;
    finish(crew, &ids).await;
    assert_policy(&hub, "fifo-v0-1", "0.1.0", ids.len() as u64).await;
}

/// One agent takes the tasks one at a time: the 0.1.0 FIFO hands them out in submission order,
/// which shows the adapter passed every event through in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v0_1_fifo_serves_in_submission_order() {
    let hub = Hub::start(HubOpts::default()).await;
    hub.api()
        .put_policy_wasm(fifo_v0_1(), None)
        .await
        .expect(200, "PUT the 0.1.0 FIFO policy");
    let ids = submit(&hub, 0, 12).await;
    let mut crew = crew_of(&hub, 1).await;
    crew.wait_completed(ids.len(), TIMEOUT).await;
    let out = crew.stop().await;
    let reports: Vec<&WorkerReport> = out.iter().map(|(_, r)| r).collect();
    assert_each_completed_once(&reports, &ids);
    let order: Vec<String> = reports[0]
        .assigned
        .iter()
        .map(|a| a.task_id.clone())
        .collect();
    assert_eq!(order, ids, "FIFO order");
}
