//! Scheduling: priorities, order within a priority, spreading work, no double assignment.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::agent::assert_one_task_at_a_time;
use crate::harness::{
    assert_each_completed_once, completed_events, u64_field, Assign, Crew, Hub, HubOpts,
    WorkerOpts, WorkerReport,
};

const CLASSES: [&str; 4] = ["urgent", "high", "normal", "low"];

/// The first `task_assign` of every task, over all workers.
fn first_assignments(reports: &[&WorkerReport]) -> HashMap<String, Assign> {
    let mut out = HashMap::new();
    for rep in reports {
        for a in &rep.assigned {
            out.entry(a.task_id.clone()).or_insert_with(|| a.clone());
        }
    }
    out
}

/// 4 agents, a batch of 20 tasks (4 urgent, 4 high, 8 normal, 4 low, lows submitted first):
/// all complete, each agent completes 3 to 7 (idle-longest spreads the work), and no task of a
/// class is assigned before every task two classes above it (urgent before normal and low,
/// high before low).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tasks_four_agents_priorities_and_spread() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut crew = Crew::new();
    for id in ["a1", "a2", "a3", "a4"] {
        crew.spawn(hub.agent(id).await, WorkerOpts::default());
    }

    // low, normal, high, urgent, normal — four times: lower priorities go in first.
    let pattern = [3usize, 2, 1, 0, 2];
    let classes: Vec<usize> = (0..4).flat_map(|_| pattern).collect();
    let tasks = classes
        .iter()
        .enumerate()
        .map(|(i, &c)| json!({"description": format!("{} #{i}", CLASSES[c]), "priority": CLASSES[c]}))
        .collect();
    let ids = api.submit_batch(tasks).await;
    crew.wait_completed(20, Duration::from_secs(60)).await;
    let out = crew.stop().await;
    let reports: Vec<&WorkerReport> = out.iter().map(|(_, r)| r).collect();

    assert_each_completed_once(&reports, &ids);
    let counts: Vec<(&str, usize)> = reports
        .iter()
        .map(|r| (r.agent_id.as_str(), r.completed.len()))
        .collect();
    for (agent, n) in &counts {
        assert!(
            (3..=7).contains(n),
            "agent {agent} completed {n} tasks; the spread was {counts:?}"
        );
    }
    for (agent, _) in &out {
        assert_one_task_at_a_time(agent);
    }

    let first = first_assignments(&reports);
    let mut arrivals: Vec<Vec<Instant>> = vec![Vec::new(); 4];
    for (id, &c) in ids.iter().zip(&classes) {
        let a = first
            .get(id)
            .unwrap_or_else(|| panic!("{id} never assigned"));
        arrivals[c].push(a.at);
    }
    for hi in 0..4 {
        for lo in hi + 2..4 {
            let last_hi = arrivals[hi].iter().max().expect("tasks of each class");
            let first_lo = arrivals[lo].iter().min().expect("tasks of each class");
            assert!(
                last_hi < first_lo,
                "a {} task was assigned before every {} task was",
                CLASSES[lo],
                CLASSES[hi]
            );
        }
    }
    for id in &ids {
        let task = api.get_task(id).await;
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(completed_events(&task), 1, "{task}");
    }
}

/// 12 tasks submitted one by one, alternating urgent and low, while 2 agents work (100 ms per
/// task): all complete exactly once and no low task starves (each is assigned within 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_urgent_and_low_no_low_starves() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut crew = Crew::new();
    let work = WorkerOpts {
        work: Duration::from_millis(100),
    };
    for id in ["a1", "a2"] {
        crew.spawn(hub.agent(id).await, work.clone());
    }
    let mut submitted = Vec::new();
    for i in 0..12 {
        let class = if i % 2 == 0 { "urgent" } else { "low" };
        let before = Instant::now();
        let id = api
            .submit(json!({"description": format!("{class} #{i}"), "priority": class}))
            .await;
        submitted.push((id, class, before));
    }
    crew.wait_completed(12, Duration::from_secs(60)).await;
    let out = crew.stop().await;
    let reports: Vec<&WorkerReport> = out.iter().map(|(_, r)| r).collect();
    let ids: Vec<String> = submitted.iter().map(|(id, _, _)| id.clone()).collect();
    assert_each_completed_once(&reports, &ids);

    let first = first_assignments(&reports);
    for (id, class, before) in &submitted {
        let waited = first[id].at.duration_since(*before);
        assert!(
            waited <= Duration::from_secs(10),
            "{class} task {id} waited {waited:?} to be assigned"
        );
        let task = api.get_task(id).await;
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(completed_events(&task), 1, "{task}");
    }
}

/// 200 tasks submitted by concurrent HTTP POSTs to 4 working agents: no agent ever gets a
/// second task_assign while it holds a task, every task is assigned once and completes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_submissions_no_double_assignment() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api().clone();
    let mut crew = Crew::new();
    for id in ["a1", "a2", "a3", "a4"] {
        crew.spawn(hub.agent(id).await, WorkerOpts::default());
    }

    let mut posts = tokio::task::JoinSet::new();
    for i in 0..200usize {
        let api = api.clone();
        posts.spawn(async move {
            let class = CLASSES[i % 4];
            api.submit(json!({"description": format!("concurrent #{i}"), "priority": class}))
                .await
        });
    }
    let mut ids = Vec::new();
    while let Some(joined) = posts.join_next().await {
        ids.push(joined.expect("submit task"));
    }
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        200,
        "200 submissions gave {} distinct ids",
        distinct.len()
    );

    crew.wait_completed(200, Duration::from_secs(180)).await;
    // `stop` fails on any violation, including a task_assign while holding a task.
    let out = crew.stop().await;
    let reports: Vec<&WorkerReport> = out.iter().map(|(_, r)| r).collect();
    assert_each_completed_once(&reports, &ids);

    let mut assigned_count: HashMap<&str, usize> = HashMap::new();
    for rep in &reports {
        for a in &rep.assigned {
            *assigned_count.entry(a.task_id.as_str()).or_default() += 1;
        }
        eprintln!(
            "{}: {} tasks, {} task_assign(s) before the previous completion's ack",
            rep.agent_id,
            rep.completed.len(),
            rep.assigns_before_ack
        );
    }
    for (agent, rep) in &out {
        assert_one_task_at_a_time(agent);
        // Stricter: the hub answers before it pushes (it commits, then "answers and pushes"),
        // so no new task_assign arrives between our task_complete and its ack either.
        assert_eq!(
            rep.assigns_before_ack, 0,
            "{}: a task_assign arrived before the ack of the previous task_complete",
            rep.agent_id
        );
    }
    let first = first_assignments(&reports);
    for id in &ids {
        assert_eq!(
            assigned_count.get(id.as_str()),
            Some(&1),
            "{id} assigned more than once"
        );
        let task = api.get_task(id).await;
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(completed_events(&task), 1, "{task}");
        assert_eq!(
            u64_field(&task, "generation"),
            first[id].generation,
            "{task}"
        );
    }
}

/// Queued before any agent connects, a mixed batch is handed out by priority, and within a
/// priority in submission order (a batch shares a millisecond: the order comes from a sequence
/// number, not a timestamp).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_first_then_submission_order() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let batch = [
        ("low", "L1"),
        ("normal", "N1"),
        ("urgent", "U1"),
        ("high", "H1"),
        ("normal", "N2"),
        ("urgent", "U2"),
        ("low", "L2"),
        ("normal", "N3"),
    ];
    let ids = api
        .submit_batch(
            batch
                .iter()
                .map(|(p, d)| json!({"description": d, "priority": p}))
                .collect(),
        )
        .await;
    let by_name: HashMap<&str, &String> = batch.iter().map(|(_, d)| *d).zip(&ids).collect();

    let mut a1 = hub.agent("a1").await;
    let mut order = Vec::new();
    for _ in 0..batch.len() {
        let a = a1.expect_assign().await;
        a1.accept(&a).await;
        a1.complete(&a.task_id, a.generation).await;
        order.push(a.description);
    }
    assert_eq!(order, ["U1", "U2", "H1", "N1", "N2", "N3", "L1", "L2"]);
    a1.expect_quiet().await;
    for d in order {
        let task = api.get_task(by_name[d.as_str()]).await;
        assert_eq!(task["status"], "completed", "{task}");
    }
}
