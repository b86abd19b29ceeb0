//! `switchyard lab` and `switchyard policy check`, run as the real binary.
//!
//! The lab must predict what the live hub does: for the built-in `skew` and `weighted`
//! scenarios, each group's share of the assignments the lab predicts for `builtin:greedy` and
//! `builtin:fair` is within 3 points of the share measured here on a running hub given the
//! same workload. The workload is read from the lab's own JSON report (the scenario it ran), so
//! the two cannot drift apart: both scenarios queue every task at time zero, and with tasks of
//! equal length the order of assignments is the policy's alone, so the first N assignments on
//! the live hub (workers that complete at once) are compared with the N the lab made.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    assert_each_completed_once, assignments_in_order, hub::unique_name, policy_file,
    skip_unless_default_policy, Crew, Hub, HubOpts, WorkerOpts, WorkerReport,
};

/// Why these tests do not run again for another policy under test.
const PINNED: &str = "it compares builtin:greedy and builtin:fair, which it names itself";
const TIMEOUT: Duration = Duration::from_secs(120);
/// How far the live shares may be from the lab's, in points.
const AGREEMENT: f64 = 0.03;

/// Runs the binary with `args` and waits for it (off the async runtime's threads).
async fn switchyard(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the switchyard binary")
    })
    .await
    .expect("the command's thread")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `switchyard lab --scenario SCENARIO` against greedy and fair, its JSON report.
async fn lab_report(scenario: &str) -> Value {
    let json: PathBuf = std::env::temp_dir().join(format!("{}.json", unique_name("lab")));
    let out = switchyard(vec![
        "lab".into(),
        "--scenario".into(),
        scenario.into(),
        "--policy".into(),
        "builtin:greedy".into(),
        "--policy".into(),
        "builtin:fair".into(),
        "--json".into(),
        json.display().to_string(),
    ])
    .await;
    assert!(
        out.status.success(),
        "switchyard lab failed: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains(&format!("scenario {scenario}:")),
        "the table names the scenario: {}",
        text(&out.stdout)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).unwrap();
    let _ = std::fs::remove_file(&json);
    report["scenarios"][0].clone()
}

/// Each group's share of the first `window` assignments on a live hub running `policy`, given
/// the scenario's tasks (all queued at time zero) and as many agents as its fleet.
async fn live_shares(policy: &str, scenario: &Value, window: usize) -> HashMap<String, f64> {
    let hub = Hub::start(HubOpts::default().policy(policy, None)).await;
    let mut tasks = Vec::new();
    let mut group_of = Vec::new();
    for group in scenario["groups"].as_array().unwrap() {
        let name = group["name"].as_str().unwrap();
        let arrival = &group["arrival"];
        assert!(
            arrival["kind"] == "burst" && arrival["at"] == "0s" && group["keys"] == 1,
            "the live replay only knows bursts at time zero on one key: {group}"
        );
        assert!(group["capabilities"].as_array().unwrap().is_empty());
        for i in 0..arrival["count"].as_u64().unwrap() {
            tasks.push(json!({
                "description": format!("{name} #{i}"),
                "fairness_key": name,
                "weight": group["weight"],
                "priority": group["priority"],
            }));
            group_of.push(name.to_string());
        }
    }
    let ids = hub.api().submit_batch(tasks).await;
    let group_of: HashMap<String, String> = ids.iter().cloned().zip(group_of).collect();

    let agents: u64 = scenario["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["count"].as_u64().unwrap())
        .sum();
    let mut crew = Crew::new();
    for i in 0..agents {
        crew.spawn(hub.agent(&format!("lab{i}")).await, WorkerOpts::default());
    }
    crew.wait_completed(window, TIMEOUT).await;
    let out = crew.stop().await;
    let reports: Vec<&WorkerReport> = out.iter().map(|(_, r)| r).collect();
    let order = assignments_in_order(&reports);
    assert!(order.len() >= window, "only {} assignments", order.len());
    let completed: Vec<String> = reports
        .iter()
        .flat_map(|r| r.completed.iter().cloned())
        .collect();
    assert_each_completed_once(&reports, &completed);

    let mut counts: HashMap<String, usize> = HashMap::new();
    for (_, id) in order.iter().take(window) {
        *counts.entry(group_of[id].clone()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(group, n)| (group, n as f64 / window as f64))
        .collect()
}

async fn lab_agrees_with_the_hub_on(scenario_name: &str) {
    let report = lab_report(scenario_name).await;
    for run in report["runs"].as_array().unwrap() {
        let policy = run["policy"]["label"].as_str().unwrap();
        let window = run["assignments"].as_u64().unwrap() as usize;
        let live = live_shares(policy, &report["scenario"], window).await;
        for group in run["groups"].as_array().unwrap() {
            let name = group["name"].as_str().unwrap();
            let predicted = group["share_of_assignments"].as_f64().unwrap();
            let measured = live.get(name).copied().unwrap_or(0.0);
            eprintln!(
                "{scenario_name} × {policy}: {name}: lab {:.1} %, live hub {:.1} % of the first \
                 {window} assignments",
                predicted * 100.0,
                measured * 100.0
            );
            assert!(
                (predicted - measured).abs() <= AGREEMENT,
                "{scenario_name} × {policy}: group {name}: the lab predicts {:.1} % of the \
                 assignments, the live hub gave {:.1} %",
                predicted * 100.0,
                measured * 100.0
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_agrees_with_the_live_hub_on_skew() {
    if skip_unless_default_policy("lab_agrees_with_the_live_hub_on_skew", PINNED) {
        return;
    }
    lab_agrees_with_the_hub_on("skew").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_agrees_with_the_live_hub_on_weighted() {
    if skip_unless_default_policy("lab_agrees_with_the_live_hub_on_weighted", PINNED) {
        return;
    }
    lab_agrees_with_the_hub_on("weighted").await;
}

/// The HTML report is one self-contained page with a chart per policy; errors name the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_writes_a_self_contained_report_and_names_bad_input() {
    if skip_unless_default_policy("lab_writes_a_self_contained_report", PINNED) {
        return;
    }
    let dir = std::env::temp_dir().join(unique_name("lab-report"));
    let out = switchyard(vec![
        "lab".into(),
        "--scenario".into(),
        "capabilities".into(),
        "--policy".into(),
        "builtin:greedy".into(),
        "--policy".into(),
        r#"builtin:fair={"aging_ms": 5000}"#.into(),
        "--report".into(),
        dir.display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("capabilities × builtin:greedy: "),
        "progress on stderr: {}",
        text(&out.stderr)
    );
    let html = std::fs::read_to_string(dir.join("index.html")).expect("index.html");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(html.matches("<svg").count(), 4, "two charts per policy");
    assert!(
        html.contains("gpu-train") && html.contains(r#"builtin:fair={&quot;aging_ms&quot;: 5000}"#)
    );
    assert!(!html.contains("<script") && !html.contains("src="));

    let out = switchyard(vec![
        "lab".into(),
        "--scenario".into(),
        "skwe".into(),
        "--policy".into(),
        "builtin:greedy".into(),
    ])
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no built-in scenario `skwe`") && err.contains("weighted"),
        "{err}"
    );
}

fn hostile() -> String {
    policy_file("hostile").display().to_string()
}

async fn check(file: String, config: Option<Value>) -> Output {
    let mut args = vec!["policy".into(), "check".into(), file];
    if let Some(config) = config {
        args.extend(["--config".into(), config.to_string()]);
    }
    switchyard(args).await
}

/// `policy check` on a well-behaved policy reports it and succeeds; on one that proposes
/// nonsense it lists the refusals by reason (and still succeeds: the hub would run it); on one
/// that traps, or a file that is not there, it fails and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_check_reports_refusals_and_failures() {
    if skip_unless_default_policy("policy_check_reports_refusals_and_failures", PINNED) {
        return;
    }
    let out = check("builtin:fair".into(), None).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for expected in [
        "policy    fair ",
        "digest    sha256:",
        "contract  switchyard:policy/scheduler@0.2.0\n",
        "refused   none",
        "0 traps, 0 timeouts",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }

    let out = check(hostile(), Some(json!({"mode": "bad_proposals"}))).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for reason in [
        "unknown_task",
        "task_not_queued",
        "agent_not_ready",
        "missing_capability",
    ] {
        assert!(
            stdout.contains(&format!(" × {reason}: ")),
            "{reason} in {stdout}"
        );
    }

    let out = check(hostile(), Some(json!({"mode": "trap_in_decide"}))).await;
    assert!(!out.status.success(), "a trapping policy fails the check");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("calls trapped"), "{stderr}");
    assert!(text(&out.stdout).contains("native greedy fallback"));

    // A policy that traps in an event call after 10 assignments: the lab restarts it and
    // replays the state into the new instance, as the hub does, so work keeps flowing through
    // the restarts and, once the breaker trips, through the native fallback.
    let out = check(
        hostile(),
        Some(json!({"mode": "trap_after_decisions", "after": 10})),
    )
    .await;
    assert!(!out.status.success(), "a policy that traps fails the check");
    let stdout = text(&out.stdout);
    let assigned: u64 = stdout
        .split(" proposals, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the smoke run's assignments in {stdout}"));
    assert!(
        assigned >= 70,
        "work kept flowing through the restarts: {assigned} assigned; {stdout}"
    );

    let missing = std::env::temp_dir()
        .join(unique_name("missing"))
        .join("p.wasm");
    let out = check(missing.display().to_string(), None).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot read the policy file"),
        "{}",
        text(&out.stderr)
    );
}
