//! Sharing one fleet between tenants with `builtin:fair`: agents go to backlogged tenants in
//! proportion to their weights, counted in agent time, whatever keys and weights their tasks
//! name. Three tenants of weights 3, 2 and 1; the lightest spreads its work over 30 fairness keys
//! and asks for weight 1000 on each, which may only reorder its own work.
//!
//! Agent time is read from the hub's own records: a task held its agent from `assigned_at` to
//! `updated_at` (completed) or to the moment the workers stopped (still assigned).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::api::Api;
use crate::harness::{skip_unless_default_policy, Crew, Hub, HubOpts, WorkerOpts};

/// Why these tests do not run again for another policy under test.
const PINNED: &str = "it measures builtin:fair, which it loads itself";

/// (tenant, weight): the shares are 50, 33.3 and 16.7 %.
const TENANTS: [(&str, f64); 3] = [("alpha", 3.0), ("beta", 2.0), ("gamma", 1.0)];
/// How far a measured share may be from its target, in percentage points.
const TOLERANCE: f64 = 3.0;

/// Tasks of one tenant: how many, and how long each holds its agent.
struct Backlog {
    tenant: &'static str,
    tasks: usize,
    work_ms: fn(usize) -> u64,
    /// Spread over 30 keys at weight 1000 (the gaming tenant), or submitted plainly.
    gaming: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Creates the tenants and a client token for each; returns an API client per tenant.
async fn tenants_with_clients(hub: &Hub) -> BTreeMap<&'static str, Api> {
    let api = hub.api();
    let mut clients = BTreeMap::new();
    for (name, weight) in TENANTS {
        api.post("/admin/tenants", &json!({"name": name, "weight": weight}))
            .await
            .expect(201, "POST /admin/tenants");
        let token = api
            .create_token_as(&format!("client-{name}"), "client", name)
            .await;
        clients.insert(name, Api::new(hub.addr(), &token));
    }
    clients
}

/// Every task of `tenant`, paged through as admin.
async fn tasks_of(api: &Api, tenant: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    // Bounded: the backlogs are far below 1,000 pages.
    for _ in 0..1_000 {
        let query = match &cursor {
            Some(c) => format!("tenant={tenant}&limit=1000&cursor={c}"),
            None => format!("tenant={tenant}&limit=1000"),
        };
        let page = api.list_tasks(&query).await;
        all.extend(page["tasks"].as_array().expect("tasks").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return all,
        }
    }
    panic!("more than 1,000 pages of tasks of {tenant}");
}

/// Each tenant's share of the agent time its tasks held up to `until`, in percent.
async fn agent_time_shares(api: &Api, until: u64) -> BTreeMap<String, f64> {
    let mut held = BTreeMap::new();
    for (tenant, _) in TENANTS {
        let tasks = tasks_of(api, tenant).await;
        let mut ms = 0u64;
        for task in &tasks {
            assert_eq!(
                task["tenant"], tenant,
                "listed under ?tenant={tenant}: {task}"
            );
            let Some(from) = task["assigned_at"].as_u64() else {
                continue;
            };
            let to = match task["status"].as_str() {
                Some("completed") => task["updated_at"].as_u64().expect("updated_at"),
                _ => until,
            };
            ms += to.min(until).saturating_sub(from);
        }
        held.insert(tenant.to_string(), ms as f64);
    }
    let total: f64 = held.values().sum();
    assert!(total > 0.0, "no agent time was used");
    held.into_iter()
        .map(|(tenant, ms)| (tenant, 100.0 * ms / total))
        .collect()
}

/// Submits every backlog (each tenant through its own client token), lets `agents` workers run
/// for `run`, stops them, and returns each tenant's share of agent time.
async fn run_shares(backlogs: &[Backlog], agents: usize, run: Duration) -> BTreeMap<String, f64> {
    let hub = Hub::start(HubOpts::default().policy("builtin:fair", None)).await;
    let clients = tenants_with_clients(&hub).await;
    for backlog in backlogs {
        let tasks: Vec<Value> = (0..backlog.tasks)
            .map(|i| {
                let mut task = json!({
                    "description": format!("{} #{i}", backlog.tenant),
                    "metadata": {"work_ms": (backlog.work_ms)(i)},
                });
                if backlog.gaming {
                    task["fairness_key"] = json!(format!("spread-{}", i % 30));
                    task["weight"] = json!(1000);
                }
                task
            })
            .collect();
        let ids = clients[backlog.tenant].submit_batch(tasks).await;
        let first = hub.api().get_task(&ids[0]).await;
        assert_eq!(
            first["tenant"], backlog.tenant,
            "a task takes its submitting token's tenant: {first}"
        );
    }
    // Every tenant is backlogged before the first agent connects.
    let mut crew = Crew::new();
    for i in 0..agents {
        crew.spawn(hub.agent(&format!("a{i}")).await, WorkerOpts::default());
    }
    tokio::time::sleep(run).await;
    let until = now_ms();
    let reports = crew.stop().await;
    assert!(
        reports.iter().all(|(_, r)| !r.completed.is_empty()),
        "every agent worked"
    );
    let shares = agent_time_shares(hub.api(), until).await;
    // Nobody ran dry: every tenant still has queued work, so all were backlogged throughout.
    for (tenant, _) in TENANTS {
        let queued = hub
            .api()
            .list_tasks(&format!("tenant={tenant}&status=queued&limit=1"))
            .await;
        assert!(
            !queued["tasks"].as_array().expect("tasks").is_empty(),
            "{tenant} ran out of queued tasks: the run is too long for its backlog"
        );
    }
    shares
}

fn assert_shares(shares: &BTreeMap<String, f64>, what: &str) {
    let total_weight: f64 = TENANTS.iter().map(|(_, w)| w).sum();
    for (tenant, weight) in TENANTS {
        let target = 100.0 * weight / total_weight;
        let got = shares[tenant];
        assert!(
            (got - target).abs() <= TOLERANCE,
            "{what}: {tenant} (weight {weight}) had {got:.1} % of agent time, not {target:.1} \
             ± {TOLERANCE}: {shares:?}"
        );
    }
    eprintln!("{what}: agent-time shares {shares:.1?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_share_agents_by_weight_whatever_keys_and_weights_their_tasks_name() {
    if skip_unless_default_policy("sharing::weights", PINNED) {
        return;
    }
    let even = |_| 20;
    let backlogs = [
        Backlog {
            tenant: "alpha",
            tasks: 2_000,
            work_ms: even,
            gaming: false,
        },
        Backlog {
            tenant: "beta",
            tasks: 2_000,
            work_ms: even,
            gaming: false,
        },
        Backlog {
            tenant: "gamma",
            tasks: 2_000,
            work_ms: even,
            gaming: true,
        },
    ];
    let shares = run_shares(&backlogs, 6, Duration::from_secs(6)).await;
    assert_shares(&shares, "20 ms tasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_share_agent_time_when_their_tasks_run_200_ms_or_10_ms() {
    if skip_unless_default_policy("sharing::agent_time", PINNED) {
        return;
    }
    let backlogs = [
        // The heaviest tenant runs short tasks, the middle one long ones, and the gaming one
        // a mix: counting tasks instead of time would hand the long tasks most of the fleet.
        Backlog {
            tenant: "alpha",
            tasks: 8_000,
            work_ms: |_| 10,
            gaming: false,
        },
        Backlog {
            tenant: "beta",
            tasks: 600,
            work_ms: |_| 200,
            gaming: false,
        },
        Backlog {
            tenant: "gamma",
            tasks: 1_500,
            work_ms: |i| if i % 2 == 0 { 200 } else { 10 },
            gaming: true,
        },
    ];
    let shares = run_shares(&backlogs, 8, Duration::from_secs(12)).await;
    assert_shares(&shares, "200 ms and 10 ms tasks");
}
