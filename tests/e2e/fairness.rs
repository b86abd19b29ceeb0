//! Fair sharing between fairness keys with `builtin:fair` (policies/fair documents the
//! discipline: start-time fair queueing across keys, a key's weight from the configuration's
//! `weights` or else from its tasks' `weight`), against `builtin:greedy`, which serves first
//! come, first served. Shares are counted in assignments, in the order the agents receive them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{
    assert_each_completed_once, assignments_in_order, skip_unless_default_policy, Crew, Hub,
    HubOpts, WorkerOpts, WorkerReport,
};

/// Why these tests do not run again for another policy under test.
const PINNED: &str = "it compares builtin:fair and builtin:greedy, which it loads itself";

const AGENTS: usize = 4;
const FLOOD: usize = 1_000;
const LIGHT: usize = 20;
/// Completions of the flood before the light key submits: the flood is flowing, not queued.
const FLOOD_HEAD_START: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(120);

async fn hub_with(policy: &str, config: Option<Value>) -> (Hub, Crew) {
    let hub = Hub::start(HubOpts::default().policy(format!("builtin:{policy}"), config)).await;
    let mut crew = Crew::new();
    for i in 0..AGENTS {
        crew.spawn(hub.agent(&format!("a{i}")).await, WorkerOpts::default());
    }
    (hub, crew)
}

/// What the agents saw around the light key's submission.
struct AfterLight {
    /// Flood tasks not yet assigned when the light key submitted.
    flood_remaining: usize,
    /// Flood tasks assigned from the submission's start to the first light task.
    flood_before_light: usize,
    /// Flood tasks received after the submission was answered and before the first light task.
    /// Assignments decided before the light tasks were queued can still arrive in that window
    /// (frames on different connections are not ordered), at most one per agent: an agent gets
    /// its next task only after completing the previous one.
    flood_after_answer_before_light: usize,
    /// Assignments from the first light task to the last, both included.
    light_span: usize,
}

/// Key `heavy` submits `FLOOD` tasks in one batch to 4 agents that complete at once; once the
/// flood flows, key `light` submits `LIGHT` tasks. Every task completes exactly once.
async fn light_key_behind_a_flood(policy: &str) -> AfterLight {
    let (hub, mut crew) = hub_with(policy, None).await;
    let api = hub.api();
    let flood = (0..FLOOD)
        .map(|i| json!({"description": format!("flood #{i}"), "fairness_key": "heavy"}))
        .collect();
    let mut ids = api.submit_batch(flood).await;
    crew.wait_completed(FLOOD_HEAD_START, TIMEOUT).await;

    let submitted_at = Instant::now();
    let light = (0..LIGHT)
        .map(|i| json!({"description": format!("light #{i}"), "fairness_key": "light"}))
        .collect();
    let light_ids = api.submit_batch(light).await;
    let answered_at = Instant::now();
    ids.extend(light_ids.iter().cloned());
    crew.wait_completed(FLOOD + LIGHT, TIMEOUT).await;
    let out = crew.stop().await;
    let reports: Vec<&WorkerReport> = out.iter().map(|(_, r)| r).collect();
    assert_each_completed_once(&reports, &ids);

    let order = assignments_in_order(&reports);
    let is_light = |id: &String| light_ids.contains(id);
    let first_light = order
        .iter()
        .position(|(_, id)| is_light(id))
        .expect("light assigned");
    let last_light = order
        .iter()
        .rposition(|(_, id)| is_light(id))
        .expect("light assigned");
    let flood_between = |from: Instant| {
        order[..first_light]
            .iter()
            .filter(|(at, _)| *at >= from)
            .count()
    };
    let after = AfterLight {
        flood_remaining: FLOOD - order.iter().filter(|(at, _)| *at < submitted_at).count(),
        flood_before_light: flood_between(submitted_at),
        flood_after_answer_before_light: flood_between(answered_at),
        light_span: last_light - first_light + 1,
    };
    // Otherwise the flood was (nearly) over and the test shows nothing.
    assert!(
        after.flood_remaining >= 4 * LIGHT,
        "only {} flood tasks were left when the light key submitted",
        after.flood_remaining
    );
    after
}

/// Under `builtin:fair`, a key that submits 20 tasks while another key's flood of 1,000 is
/// being served gets all 20 assigned within about the next 40 assignments: the first goes out
/// at once (no more flood tasks arrive after the submission is answered than the agents may
/// already have been sent), and from the first to the last light task fair alternates the two
/// equal keys, 40 assignments (one more per agent allowed: frames of one decision reach the
/// agents over separate connections, in no set order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_serves_a_light_key_promptly_behind_a_flood() {
    if skip_unless_default_policy("fair_serves_a_light_key_promptly_behind_a_flood", PINNED) {
        return;
    }
    let after = light_key_behind_a_flood("fair").await;
    eprintln!(
        "fair: {} flood tasks left at the light submission; {} flood tasks from the submission \
         to the first light task ({} of them after the answer); {} assignments from the first \
         light task to the last",
        after.flood_remaining,
        after.flood_before_light,
        after.flood_after_answer_before_light,
        after.light_span
    );
    assert!(
        after.flood_after_answer_before_light <= AGENTS,
        "under fair the first light task should go out at once, but {} flood tasks arrived \
         after the submission was answered and before it",
        after.flood_after_answer_before_light
    );
    assert!(
        after.light_span <= 2 * LIGHT + AGENTS,
        "under fair the {LIGHT} light tasks should be assigned within about {} assignments, \
         but {} went from the first to the last",
        2 * LIGHT,
        after.light_span
    );
}

/// Under `builtin:greedy` (first come, first served within a priority) the same light key
/// waits behind the flood: at least 90 % of the flood tasks still queued when it submitted are
/// assigned before its first task (with greedy's strict order, all of them are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_makes_a_light_key_wait_behind_a_flood() {
    if skip_unless_default_policy("greedy_makes_a_light_key_wait_behind_a_flood", PINNED) {
        return;
    }
    let after = light_key_behind_a_flood("greedy").await;
    let flood_first = after.flood_before_light;
    eprintln!(
        "greedy: {} flood tasks left at the light submission, {flood_first} assigned before the \
         first light task",
        after.flood_remaining
    );
    assert!(
        flood_first * 10 >= after.flood_remaining * 9,
        "under greedy the flood goes first: only {flood_first} of the {} remaining flood tasks \
         were assigned before the first light task",
        after.flood_remaining
    );
}

/// Tasks queued per key for the weighted tests: more than any key gets in the counted window.
const PER_KEY: usize = 400;
/// Assignments counted.
const WINDOW: usize = 600;
const WEIGHTS: [(&str, f64); 3] = [("w5", 5.0), ("w3", 3.0), ("w2", 2.0)];

/// Queues `PER_KEY` tasks of each key (in one batch, key by key, heaviest first: the order a
/// first come, first served policy would serve them), then lets 4 agents that complete at once
/// work through them; returns each key's share of the first `WINDOW` assignments.
///
/// Shares are of assignments, so the fair policy charges by assignment (`"charge": "tasks"`):
/// agents that complete at once hold a task for a few milliseconds of scheduling noise, which
/// charging by agent time would count.
async fn shares_under_saturation(config: Option<Value>, task_weights: bool) -> Vec<(String, f64)> {
    let mut config = config.unwrap_or_else(|| json!({}));
    config["charge"] = json!("tasks");
    let hub = Hub::start(HubOpts::default().policy("builtin:fair", Some(config))).await;
    let api = hub.api();
    let mut key_of = HashMap::new();
    let mut tasks = Vec::new();
    for (key, weight) in WEIGHTS {
        for i in 0..PER_KEY {
            let mut task = json!({"description": format!("{key} #{i}"), "fairness_key": key});
            if task_weights {
                task["weight"] = json!(weight);
            }
            tasks.push(task);
        }
    }
    let ids = api.submit_batch(tasks).await;
    for (i, id) in ids.iter().enumerate() {
        key_of.insert(id.clone(), WEIGHTS[i / PER_KEY].0);
    }

    let mut crew = Crew::new();
    for i in 0..AGENTS {
        crew.spawn(hub.agent(&format!("a{i}")).await, WorkerOpts::default());
    }
    crew.wait_completed(ids.len(), TIMEOUT).await;
    let out = crew.stop().await;
    let reports: Vec<&WorkerReport> = out.iter().map(|(_, r)| r).collect();
    assert_each_completed_once(&reports, &ids);

    let order = assignments_in_order(&reports);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, id) in order.iter().take(WINDOW) {
        *counts.entry(key_of[id]).or_default() += 1;
    }
    WEIGHTS
        .iter()
        .map(|(key, _)| {
            let share = *counts.get(key).unwrap_or(&0) as f64 / WINDOW as f64;
            (key.to_string(), share)
        })
        .collect()
}

fn assert_shares(how: &str, shares: &[(String, f64)]) {
    let total: f64 = WEIGHTS.iter().map(|(_, w)| w).sum();
    eprintln!("{how}: shares of the first {WINDOW} assignments: {shares:?}");
    for ((key, share), (_, weight)) in shares.iter().zip(WEIGHTS) {
        let expected = weight / total;
        assert!(
            (share - expected).abs() <= 0.05,
            "{how}: key {key} (weight {weight}) got {:.1} % of the first {WINDOW} assignments, \
             expected {:.1} % ± 5 points; all shares: {shares:?}",
            share * 100.0,
            expected * 100.0
        );
    }
}

/// Keys weighted 5, 3 and 2 by fair's configuration (`weights`), each with more work queued
/// than it can get: of the first 600 assignments they receive 50, 30 and 20 %, within 5 points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_shares_follow_the_configured_weights() {
    if skip_unless_default_policy("fair_shares_follow_the_configured_weights", PINNED) {
        return;
    }
    let weights: serde_json::Map<String, Value> = WEIGHTS
        .iter()
        .map(|(k, w)| (k.to_string(), json!(w)))
        .collect();
    let shares = shares_under_saturation(Some(json!({"weights": weights})), false).await;
    assert_shares("configured weights", &shares);
}

/// The same shares when the weights come from the tasks themselves (`weight` 5, 3 or 2 on
/// every task of a key) and the configuration names none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_shares_follow_the_task_weights() {
    if skip_unless_default_policy("fair_shares_follow_the_task_weights", PINNED) {
        return;
    }
    let shares = shares_under_saturation(None, true).await;
    assert_shares("task weights", &shares);
}
