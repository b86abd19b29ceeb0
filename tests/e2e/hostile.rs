//! A policy that fails cannot stop the hub: the hostile test policy (tests/policies/hostile)
//! traps, runs forever, eats memory, proposes nonsense or fails now and then, and every time
//! the tasks still flow, each completed exactly once, and `GET /api/policy` counts what
//! happened. Three failures within a minute trip the crash-loop breaker: the hub switches to
//! its native greedy policy for good.
//!
//! The policy is loaded through every path an operator has: `--policy FILE --policy-config`,
//! `PUT /api/policy` naming a file, and `PUT /api/policy` uploading the component.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_hostile_policy::BAD_PROPOSALS_PER_DECISION;

use crate::harness::agent::assert_one_task_at_a_time;
use crate::harness::{
    assert_each_completed_once, failure_counters, policy_counter, policy_file,
    skip_unless_default_policy, str_field, Agent, Crew, Hub, HubOpts, WorkerOpts, WorkerReport,
};

const TASKS: usize = 20;

/// Why these tests do not run again for another policy under test.
const PINNED: &str = "it loads the hostile test policy itself";

fn hostile_path() -> String {
    policy_file("hostile").display().to_string()
}

/// A hub started with the hostile policy in `config`'s mode (`--policy FILE --policy-config`).
async fn hub_with_hostile(config: Value) -> Hub {
    Hub::start(HubOpts::default().policy(hostile_path(), Some(config))).await
}

/// `TASKS` tasks (a batch; those at odd positions need `gpu` when `gpu_tasks`) through workers
/// on `agents`, which accept and complete at once. Checks that every task completed exactly once,
/// no agent held two at a time, and the hub counts them all completed; returns the reports and
/// the task ids.
async fn flow_through(
    hub: &Hub,
    agents: Vec<Agent>,
    gpu_tasks: bool,
) -> (Vec<WorkerReport>, Vec<String>) {
    let api = hub.api();
    let mut crew = Crew::new();
    for agent in agents {
        crew.spawn(agent, WorkerOpts::default());
    }
    let tasks = (0..TASKS)
        .map(|i| {
            let needs: &[&str] = if gpu_tasks && i % 2 == 1 {
                &["gpu"]
            } else {
                &[]
            };
            json!({"description": format!("hostile flow #{i}"), "needed_capabilities": needs})
        })
        .collect();
    let ids = api.submit_batch(tasks).await;
    crew.wait_completed(TASKS, Duration::from_secs(60)).await;
    let out = crew.stop().await;
    for (agent, _) in &out {
        assert_one_task_at_a_time(agent);
    }
    let reports: Vec<WorkerReport> = out.into_iter().map(|(_, r)| r).collect();
    assert_each_completed_once(&reports.iter().collect::<Vec<_>>(), &ids);
    let stats = api.task_stats().await;
    assert_eq!(stats["by_status"]["completed"], TASKS, "{stats}");
    assert_eq!(stats["by_status"]["queued"], 0, "{stats}");
    assert_eq!(stats["by_status"]["assigned"], 0, "{stats}");
    (reports, ids)
}

async fn plain_agents(hub: &Hub, n: usize) -> Vec<Agent> {
    let mut agents = Vec::new();
    for i in 1..=n {
        agents.push(hub.agent(&format!("a{i}")).await);
    }
    agents
}

/// Asserts the policy's name, source and configuration, and the failure counters; returns the
/// status.
async fn assert_policy(
    hub: &Hub,
    source: &str,
    config: &Value,
    counters: [(&str, u64); 4],
    fallback_active: bool,
) -> Value {
    let status = hub.api().policy().await;
    assert_eq!(str_field(&status, "name"), "hostile", "{status}");
    assert_eq!(str_field(&status, "source"), source, "{status}");
    assert_eq!(&status["config"], config, "{status}");
    assert_eq!(failure_counters(&status), counters, "{status}");
    assert_eq!(status["fallback_active"], fallback_active, "{status}");
    assert_eq!(
        policy_counter(&status, "assignments"),
        TASKS as u64,
        "one accepted proposal per task: {status}"
    );
    status
}

/// Loaded with `--policy FILE --policy-config`, a policy whose every `decide` traps: the first
/// decision traps three times in a row (each failure discards the instance, the host restarts
/// it and asks again), the breaker trips, and the native greedy fallback hands out all 20 tasks
/// to 2 agents at once, without waiting for another event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_in_decide_trips_the_breaker_and_the_fallback_serves() {
    if skip_unless_default_policy(
        "trap_in_decide_trips_the_breaker_and_the_fallback_serves",
        PINNED,
    ) {
        return;
    }
    let config = json!({"mode": "trap_in_decide"});
    let hub = hub_with_hostile(config.clone()).await;
    let agents = plain_agents(&hub, 2).await;
    flow_through(&hub, agents, false).await;
    assert_policy(
        &hub,
        &hostile_path(),
        &config,
        [
            ("traps", 3),
            ("timeouts", 0),
            ("rejected_proposals", 0),
            ("fallbacks", 1),
        ],
        true,
    )
    .await;
}

/// Swapped in with `PUT /api/policy {"path", "config"}`, a policy whose `decide` never returns:
/// each call is stopped at its deadline (a timeout, not a trap), three of them trip the breaker,
/// and 20 tasks still go through 3 agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_in_decide_times_out_and_the_fallback_serves() {
    if skip_unless_default_policy("loop_in_decide_times_out_and_the_fallback_serves", PINNED) {
        return;
    }
    let hub = Hub::start(HubOpts::default()).await;
    let agents = plain_agents(&hub, 3).await;
    let config = json!({"mode": "loop_in_decide"});
    let swapped = hub
        .api()
        .put_policy(&json!({"path": hostile_path(), "config": config}))
        .await
        .expect(200, "PUT /api/policy naming the hostile component");
    assert_eq!(swapped["name"], "hostile", "{swapped}");
    assert_eq!(swapped["fallback_active"], false, "{swapped}");
    flow_through(&hub, agents, false).await;
    assert_policy(
        &hub,
        &hostile_path(),
        &config,
        [
            ("traps", 0),
            ("timeouts", 3),
            ("rejected_proposals", 0),
            ("fallbacks", 1),
        ],
        true,
    )
    .await;
}

/// Uploaded as `application/wasm` with its configuration in the query, a policy whose `decide`
/// allocates without end: the memory cap stops it (a trap), three times, then the fallback
/// serves 20 tasks through 4 agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausting_memory_traps_and_the_fallback_serves() {
    if skip_unless_default_policy("exhausting_memory_traps_and_the_fallback_serves", PINNED) {
        return;
    }
    let hub = Hub::start(HubOpts::default()).await;
    let agents = plain_agents(&hub, 4).await;
    let config = json!({"mode": "exhaust_memory"});
    let component = std::fs::read(policy_file("hostile")).expect("read the hostile component");
    let swapped = hub
        .api()
        .put_policy_wasm(component, Some(&config))
        .await
        .expect(200, "PUT /api/policy uploading the hostile component");
    assert_eq!(swapped["name"], "hostile", "{swapped}");
    assert_eq!(swapped["config"], config, "{swapped}");
    flow_through(&hub, agents, false).await;
    assert_policy(
        &hub,
        "bytes",
        &config,
        [
            ("traps", 3),
            ("timeouts", 0),
            ("rejected_proposals", 0),
            ("fallbacks", 1),
        ],
        true,
    )
    .await;
}

/// A policy that adds to every decision one proposal of each bad kind (unknown task, unknown
/// agent, a task not queued, a busy agent, an agent lacking a capability, the same task twice,
/// the same agent twice) next to its valid ones. The host drops exactly the bad ones: 20 tasks,
/// half needing `gpu`, go through 3 agents (one with `gpu`), every `gpu` task to the agent that
/// has it, each completed once; `rejected_proposals` is exactly the bad ones made, and nothing
/// failed (bad answers are refused, not punished).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proposals_are_dropped_exactly() {
    if skip_unless_default_policy("bad_proposals_are_dropped_exactly", PINNED) {
        return;
    }
    let config = json!({"mode": "bad_proposals"});
    let hub = hub_with_hostile(config.clone()).await;
    let agents = vec![
        hub.agent_with_capabilities("gpu-1", &["gpu"]).await,
        hub.agent("cpu-1").await,
        hub.agent("cpu-2").await,
    ];
    let (reports, ids) = flow_through(&hub, agents, true).await;

    let completed_by: HashMap<&str, &str> = reports
        .iter()
        .flat_map(|r| {
            r.completed
                .iter()
                .map(|id| (id.as_str(), r.agent_id.as_str()))
        })
        .collect();
    for id in ids.iter().skip(1).step_by(2) {
        assert_eq!(
            completed_by[id.as_str()],
            "gpu-1",
            "{id} needs gpu and went elsewhere"
        );
    }

    let status = hub.api().policy().await;
    let decisions = policy_counter(&status, "decisions");
    assert!(decisions > 0, "{status}");
    assert_policy(
        &hub,
        &hostile_path(),
        &config,
        [
            ("traps", 0),
            ("timeouts", 0),
            ("rejected_proposals", BAD_PROPOSALS_PER_DECISION * decisions),
            ("fallbacks", 0),
        ],
        false,
    )
    .await;
}

/// A policy that fails now and then: each instance traps in the `assigned` confirmation of its
/// 9th assignment (an event call, not `decide`). With 20 tasks that is two failures: each time
/// the host restarts it, replays the live state, and it carries on; two failures do not trip
/// the breaker, so the hostile policy itself assigns all 20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_occasional_trap_restarts_the_policy_without_falling_back() {
    if skip_unless_default_policy(
        "an_occasional_trap_restarts_the_policy_without_falling_back",
        PINNED,
    ) {
        return;
    }
    let config = json!({"mode": "trap_after_decisions", "after": 8});
    let hub = hub_with_hostile(config.clone()).await;
    let agents = plain_agents(&hub, 2).await;
    flow_through(&hub, agents, false).await;
    assert_policy(
        &hub,
        &hostile_path(),
        &config,
        [
            ("traps", 2),
            ("timeouts", 0),
            ("rejected_proposals", 0),
            ("fallbacks", 0),
        ],
        false,
    )
    .await;
}
