//! Shadow runs (`/api/policy/shadow`): a candidate policy told the same events as the policy
//! in force and asked at the same moments, whose proposals are judged and compared but never
//! applied. A shadow of the policy in force agrees fully; another policy's disagreement and its
//! shares per fairness key are reported; proposals the hub would refuse are counted by reason;
//! a shadow that traps or loops is stopped by its own breaker while tasks flow as before and
//! the policy in force counts no failure; removing a run is instant; only admins start or stop
//! one.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use switchyard::policy::contract::{wrap_core_module_for, ContractVersion};
use switchyard_hostile_policy::BAD_PROPOSALS_PER_DECISION;

use crate::harness::api::Api;
use crate::harness::policy::{policy_under_test, CABI_REALLOC};
use crate::harness::{
    assert_each_completed_once, failure_counters, policy_file, poll_until,
    skip_unless_default_policy, str_field, Crew, Hub, HubOpts, WorkerOpts, WorkerReport,
};

const SHADOW: &str = "/api/policy/shadow";
/// Why most of these tests do not run again for another policy under test.
const PINNED: &str = "it compares builtin:greedy with shadows it chooses itself";
const AGENTS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(120);
/// How long a shadow's report may take to catch up with what the hub did.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// The policy in force's deadline for one call (`policy::CALL_DEADLINE`).
const CALL_DEADLINE: Duration = Duration::from_millis(500);
/// A stall of service this long fails a test: a shadow running on the engine's thread would
/// hold service up for each of its failing calls, 2 s (`engine::shadow::CALL_DEADLINE`, less
/// one 10 ms epoch tick at least) for one that loops. Beside a healthy hub, service moves every
/// few milliseconds; on a two-core machine loaded ten times over, gaps of 370 ms were seen with
/// no shadow at all.
const STALL: Duration = Duration::from_millis(1500);

/// A hub running `policy` with `AGENTS` workers that accept and complete at once.
async fn hub_and_crew(policy: Option<&str>) -> (Hub, Crew) {
    let opts = match policy {
        Some(policy) => HubOpts::default().policy(policy, None),
        None => HubOpts::default(),
    };
    let hub = Hub::start(opts).await;
    let mut crew = Crew::new();
    for i in 0..AGENTS {
        crew.spawn(hub.agent(&format!("a{i}")).await, WorkerOpts::default());
    }
    (hub, crew)
}

async fn put_shadow(api: &Api, body: Value) -> Value {
    api.request(Method::PUT, SHADOW, Some(api.admin_token()), Some(&body))
        .await
        .expect(200, &format!("PUT {SHADOW} {body}"))
}

async fn shadow_report(api: &Api) -> Value {
    api.get(SHADOW).await.expect(200, &format!("GET {SHADOW}"))
}

/// `count` tasks of fairness key `key`, submitted as one batch; their ids.
async fn submit(api: &Api, key: &str, count: usize) -> Vec<String> {
    let tasks = (0..count)
        .map(|i| json!({"description": format!("{key} #{i}"), "fairness_key": key}))
        .collect();
    api.submit_batch(tasks).await
}

/// Waits until the shadow's report has compared `assignments` live assignments.
async fn report_after(api: &Api, assignments: u64) -> Value {
    poll_until(
        &format!("the shadow to compare {assignments} live assignments"),
        REPORT_TIMEOUT,
        || async {
            let report = shadow_report(api).await;
            match report["agreement"]["live_assignments"].as_u64() {
                Some(n) if n >= assignments => Ok(report),
                _ => Err(report.to_string()),
            }
        },
    )
    .await
}

/// Stops the crew and checks every id completed exactly once; the workers' reports.
async fn finish(crew: Crew, ids: &[String]) -> Vec<WorkerReport> {
    let out = crew.stop().await;
    let reports: Vec<WorkerReport> = out.into_iter().map(|(_, r)| r).collect();
    assert_each_completed_once(&reports.iter().collect::<Vec<_>>(), ids);
    reports
}

/// The policy in force counted no trap, timeout, refusal or fallback, and none of its calls
/// came near the deadline: nothing of the shadow reached it.
async fn assert_live_policy_untouched(api: &Api) {
    let policy = api.policy().await;
    assert_eq!(
        failure_counters(&policy),
        [
            ("traps", 0),
            ("timeouts", 0),
            ("rejected_proposals", 0),
            ("fallbacks", 0)
        ],
        "{policy}"
    );
    let slowest_us = policy["counters"]["call_latency_us"]["max"]
        .as_f64()
        .expect("call_latency_us.max");
    assert!(
        slowest_us < CALL_DEADLINE.as_micros() as f64 / 2.0,
        "a call of the policy in force took {slowest_us} µs: {policy}"
    );
}

fn refused_total(report: &Value) -> u64 {
    report["refused"]
        .as_object()
        .expect("refused is an object")
        .values()
        .map(|n| n.as_u64().expect("a count"))
        .sum()
}

/// A shadow of the policy in force (whichever the suite tests), started from the live state
/// with the agents already waiting, agrees on every assignment: the same task to the same
/// agent in every pass, no refusal, equal shares per fairness key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_of_the_policy_in_force_agrees_fully() {
    let (hub, mut crew) = hub_and_crew(None).await;
    let api = hub.api();
    let under_test = policy_under_test();
    let body = match under_test.strip_prefix("builtin:") {
        Some(name) => json!({"builtin": name}),
        None => json!({"path": under_test}),
    };
    let started = put_shadow(api, body).await;
    assert_eq!(started["state"], "running", "{started}");
    assert_eq!(started["name"], api.policy().await["name"], "{started}");
    assert_eq!(started["decisions_compared"], 0, "{started}");

    let mut ids = submit(api, "alpha", 150).await;
    ids.extend(submit(api, "beta", 50).await);
    crew.wait_completed(ids.len(), TIMEOUT).await;
    let report = report_after(api, ids.len() as u64).await;
    eprintln!("shadow of {under_test}: {report:#}");

    let agreement = &report["agreement"];
    assert_eq!(agreement["live_assignments"], ids.len(), "{report}");
    assert_eq!(agreement["shadow_assignments"], ids.len(), "{report}");
    assert_eq!(agreement["agreed"], ids.len(), "{report}");
    assert_eq!(agreement["ratio"], 1.0, "{report}");
    assert!(
        str_field(&report, "digest").starts_with("sha256:"),
        "{report}"
    );
    assert!(
        report["decisions_compared"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["decisions_failed"], 0, "{report}");
    assert_eq!(refused_total(&report), 0, "{report}");
    for key in ["alpha", "beta"] {
        let group = &report["groups"][key];
        assert_eq!(
            group["live_assignments"], group["shadow_assignments"],
            "{report}"
        );
        assert_eq!(group["difference_points"], 0.0, "{report}");
    }
    assert_eq!(
        report["groups"]["alpha"]["live_assignments"], 150,
        "{report}"
    );
    assert_eq!(report["state"], "running", "{report}");
    finish(crew, &ids).await;
}

/// With greedy in force and fair in the shadow, a heavy key's flood followed by a light key's
/// few tasks: greedy serves the flood first, fair would interleave the light key. The report
/// shows the disagreement, and the light key's share larger in the shadow than live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_policys_disagreement_and_shares_are_reported() {
    if skip_unless_default_policy(
        "another_policys_disagreement_and_shares_are_reported",
        PINNED,
    ) {
        return;
    }
    let (hub, mut crew) = hub_and_crew(Some("builtin:greedy")).await;
    let api = hub.api();
    let started = put_shadow(api, json!({"builtin": "fair"})).await;
    assert_eq!(started["name"], "fair", "{started}");
    assert_eq!(started["source"], "builtin:fair", "{started}");

    let mut ids = submit(api, "heavy", 300).await;
    ids.extend(submit(api, "light", 30).await);
    crew.wait_completed(ids.len(), TIMEOUT).await;
    let report = report_after(api, ids.len() as u64).await;
    eprintln!("fair in the shadow of greedy: {report:#}");

    let agreement = &report["agreement"];
    let agreed = agreement["agreed"].as_u64().unwrap();
    assert!(agreed < ids.len() as u64, "{report}");
    assert!(agreement["ratio"].as_f64().unwrap() < 1.0, "{report}");
    let light = &report["groups"]["light"];
    assert_eq!(light["live_assignments"], 30, "{report}");
    assert!(
        light["shadow_share"].as_f64().unwrap() > light["live_share"].as_f64().unwrap(),
        "fair would give the light key more than greedy did: {report}"
    );
    assert!(
        light["difference_points"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["groups"]["heavy"]["difference_points"]
            .as_f64()
            .unwrap()
            < 0.0,
        "{report}"
    );
    assert_live_policy_untouched(api).await;
    finish(crew, &ids).await;
}

/// The hostile policy in `bad_proposals` mode adds one invalid proposal of each kind to every
/// decision. In the shadow, each is judged with the hub's own check: the refusals counted by
/// reason add up to that many per decision compared, and the policy in force refuses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_the_hub_would_refuse_are_counted_by_reason() {
    if skip_unless_default_policy(
        "proposals_the_hub_would_refuse_are_counted_by_reason",
        PINNED,
    ) {
        return;
    }
    let (hub, mut crew) = hub_and_crew(Some("builtin:greedy")).await;
    let api = hub.api();
    let path = policy_file("hostile").display().to_string();
    put_shadow(
        api,
        json!({"path": path, "config": {"mode": "bad_proposals"}}),
    )
    .await;
    let ids = submit(api, "k", 100).await;
    crew.wait_completed(ids.len(), TIMEOUT).await;
    let report = report_after(api, ids.len() as u64).await;
    eprintln!("hostile bad_proposals in the shadow: {report:#}");

    let decisions = report["decisions_compared"].as_u64().unwrap();
    assert!(decisions > 0, "{report}");
    assert_eq!(
        refused_total(&report),
        BAD_PROPOSALS_PER_DECISION * decisions,
        "{report}"
    );
    for reason in [
        "unknown_task",
        "unknown_agent",
        "task_not_queued",
        "agent_not_ready",
    ] {
        assert!(
            report["refused"][reason].as_u64().unwrap() > 0,
            "{reason}: {report}"
        );
    }
    assert_live_policy_untouched(api).await;
    finish(crew, &ids).await;
}

/// A flow of tasks: when it was submitted, how long until its last completion, its ids.
struct Flow {
    submitted: Instant,
    took: Duration,
    ids: Vec<String>,
}

impl Flow {
    /// The longest the agents went without receiving one of this flow's tasks, from its
    /// submission to its last assignment: the longest service stood still for it.
    fn longest_gap(&self, reports: &[WorkerReport]) -> Duration {
        let ids: HashSet<&str> = self.ids.iter().map(String::as_str).collect();
        let mut arrivals: Vec<Instant> = reports
            .iter()
            .flat_map(|r| &r.assigned)
            .filter(|a| ids.contains(a.task_id.as_str()))
            .map(|a| a.at)
            .collect();
        arrivals.push(self.submitted);
        arrivals.sort();
        arrivals
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

/// Runs `count` tasks of key `key` through the crew (which has completed `done` so far).
async fn timed_flow(api: &Api, crew: &mut Crew, key: &str, count: usize, done: usize) -> Flow {
    let submitted = Instant::now();
    let ids = submit(api, key, count).await;
    crew.wait_completed(done + count, TIMEOUT).await;
    Flow {
        submitted,
        took: submitted.elapsed(),
        ids,
    }
}

/// Waits until the shadow stopped on its own; its report.
async fn report_when_stopped(api: &Api) -> Value {
    poll_until("the shadow to stop", REPORT_TIMEOUT, || async {
        let report = shadow_report(api).await;
        if report["state"] == "stopped" {
            Ok(report)
        } else {
            Err(report.to_string())
        }
    })
    .await
}

/// A shadow whose `decide` fails (`decide_body`, see [`failing_component`]) is set, then tasks
/// flow beside it: service never stands still for as long as one failing call (no gap that
/// long between assignments), the policy in force counts no failure and none of its calls was
/// slow, and the shadow is stopped as failing after the breaker's three failures, with no
/// fallback in its place. Returns the final report.
///
/// Had the shadow run on the engine's thread, each of its failing calls would have held every
/// assignment up for the call's length: for a call that runs until its deadline, three gaps of
/// 2 s. The flow's total time, beside the same flow before the shadow, is
/// printed, not asserted: on a loaded machine it varies by more than the shadow could cost.
async fn a_failing_shadow_leaves_service_alone(decide_body: &str) -> Value {
    let (hub, mut crew) = hub_and_crew(Some("builtin:greedy")).await;
    let api = hub.api();
    const TASKS: usize = 150;
    let before = timed_flow(api, &mut crew, "before", TASKS, 0).await;

    let started = api
        .put_wasm(SHADOW, failing_component(decide_body), None)
        .await
        .expect(200, "PUT the failing shadow");
    assert_eq!(started["source"], "upload", "{started}");
    assert_eq!(started["name"], "failing", "{started}");
    assert_eq!(started["contract"], "0.1.0", "{started}");
    let during = timed_flow(api, &mut crew, "during", TASKS, TASKS).await;

    let report = report_when_stopped(api).await;
    eprintln!("failing shadow: {report:#}");
    assert_eq!(report["stopped"]["reason"], "failing", "{report}");
    let failures = report["traps"].as_u64().unwrap() + report["timeouts"].as_u64().unwrap();
    assert_eq!(
        failures, 3,
        "the breaker stops it at the third failure: {report}"
    );
    assert_eq!(report["restarts"], 2, "{report}");
    assert_eq!(report["decisions_compared"], 0, "{report}");

    // Stopped for good: more work flows, and the report does not move.
    let after = timed_flow(api, &mut crew, "after", 20, 2 * TASKS).await;
    assert_eq!(shadow_report(api).await, report);
    assert_live_policy_untouched(api).await;
    let ids: Vec<String> = [&before, &during, &after]
        .iter()
        .flat_map(|flow| flow.ids.iter().cloned())
        .collect();
    let reports = finish(crew, &ids).await;
    let (gap_before, gap_during) = (before.longest_gap(&reports), during.longest_gap(&reports));
    eprintln!(
        "{TASKS} tasks without a shadow: {:?}, longest gap {gap_before:?}; beside a failing \
         one: {:?}, longest gap {gap_during:?}",
        before.took, during.took
    );
    assert!(
        gap_during < STALL,
        "service stood still for {gap_during:?} beside a failing shadow ({gap_before:?} before it)"
    );
    report
}

/// A shadow whose `decide` traps at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_shadow_is_stopped_and_service_is_unaffected() {
    if skip_unless_default_policy(
        "a_trapping_shadow_is_stopped_and_service_is_unaffected",
        PINNED,
    ) {
        return;
    }
    let report = a_failing_shadow_leaves_service_alone("unreachable").await;
    assert_eq!(report["traps"], 3, "{report}");
    assert!(
        str_field(&report["stopped"], "detail").contains("trapped"),
        "{report}"
    );
}

/// A shadow whose `decide` never returns: each call is stopped at its deadline, on the
/// shadow's thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_shadow_is_stopped_and_service_is_unaffected() {
    if skip_unless_default_policy(
        "a_looping_shadow_is_stopped_and_service_is_unaffected",
        PINNED,
    ) {
        return;
    }
    let report =
        a_failing_shadow_leaves_service_alone("(loop $forever (br $forever)) unreachable").await;
    assert_eq!(report["timeouts"], 3, "{report}");
    assert!(
        str_field(&report["stopped"], "detail").contains("deadline"),
        "{report}"
    );
}

/// `DELETE` ends a run at once, even while the shadow is stuck in a call that only its
/// deadline will end, and answers its last report; then it is gone (404 for `GET` and another
/// `DELETE`), and work flows on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_shadow_is_instant() {
    if skip_unless_default_policy("removing_a_shadow_is_instant", PINNED) {
        return;
    }
    let (hub, mut crew) = hub_and_crew(Some("builtin:greedy")).await;
    let api = hub.api();
    let admin = Some(api.admin_token());
    api.put_wasm(
        SHADOW,
        failing_component("(loop $forever (br $forever)) unreachable"),
        None,
    )
    .await
    .expect(200, "PUT the looping shadow");
    // One decision pass: the shadow's first `decide` now runs until its deadline.
    let first = timed_flow(api, &mut crew, "k", 1, 0).await;

    let asked = Instant::now();
    let removed = api.request(Method::DELETE, SHADOW, admin, None).await;
    let took = asked.elapsed();
    let removed = removed.expect(200, "DELETE the shadow");
    eprintln!("DELETE took {took:?}: {removed:#}");
    assert!(
        took < CALL_DEADLINE / 2,
        "DELETE took {took:?}: it waited for the shadow"
    );
    assert_eq!(removed["name"], "failing", "{removed}");

    for method in [Method::GET, Method::DELETE] {
        let gone = api.request(method.clone(), SHADOW, admin, None).await;
        assert_eq!(gone.status, 404, "{method} after DELETE: {}", gone.text);
        assert_eq!(gone.error(), "no_shadow_policy");
    }
    let then = timed_flow(api, &mut crew, "k", 20, 1).await;
    assert_live_policy_untouched(api).await;
    finish(crew, &[first.ids, then.ids].concat()).await;
}

/// Starting and stopping a shadow needs an admin token (an agent's may read the report, as it
/// may read the policy in force); a candidate that cannot be loaded is refused with the
/// reason and sets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_start_or_stop_a_shadow_and_bad_candidates_are_refused() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let agent_token = api.create_token("some-agent").await;
    let body = json!({"builtin": "greedy"});

    for (token, status) in [(None, 401), (Some(agent_token.as_str()), 403)] {
        let put = api.request(Method::PUT, SHADOW, token, Some(&body)).await;
        assert_eq!(put.status, status, "PUT: {}", put.text);
        let delete = api.request(Method::DELETE, SHADOW, token, None).await;
        assert_eq!(delete.status, status, "DELETE: {}", delete.text);
    }
    let get = api
        .request(Method::GET, SHADOW, Some(&agent_token), None)
        .await;
    assert_eq!(get.status, 404, "{}", get.text);
    assert_eq!(get.error(), "no_shadow_policy");

    for (body, why) in [
        (json!({"builtin": "nope"}), "no built-in policy `nope`"),
        (json!({}), "give exactly one of path"),
        (
            json!({"builtin": "greedy", "config": {"no_such_field": 1}}),
            "rejected its configuration",
        ),
    ] {
        let refused = api
            .request(Method::PUT, SHADOW, Some(api.admin_token()), Some(&body))
            .await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
        assert!(refused.error().contains(why), "{body}: {}", refused.text);
    }
    let garbage = api
        .put_wasm(SHADOW, b"not a component".to_vec(), None)
        .await;
    assert_eq!(garbage.status, 400, "{}", garbage.text);
    let get = api.get(SHADOW).await;
    assert_eq!(
        get.status, 404,
        "a refused candidate set nothing: {}",
        get.text
    );

    let started = put_shadow(api, body).await;
    assert_eq!(started["state"], "running", "{started}");
    let seen = api
        .request(Method::GET, SHADOW, Some(&agent_token), None)
        .await
        .expect(200, "GET with an agent's token");
    assert_eq!(seen["name"], "greedy", "{seen}");
}

/// A policy component whose `decide` runs `decide_body` (a core function returning a pointer
/// to a (pointer, length) list), built from WAT and wrapped in the policy contract: a core
/// module with the canonical-ABI exports wit-bindgen would produce for contract 0.1.0, wrapped
/// by the hub's own helper. Its name is `failing`.
fn failing_component(decide_body: &str) -> Vec<u8> {
    const IFACE: &str = "switchyard:policy/scheduler@0.1.0";
    let wat = format!(
        r#"(module
  (import "[export]{IFACE}" "[resource-new]policy" (func $new (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (data (i32.const 1024) "failing")
  (data (i32.const 2048) "0.0.1")
{CABI_REALLOC}
  (func (export "{IFACE}#about") (result i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 7))
    (i32.store (i32.const 8) (i32.const 2048))
    (i32.store (i32.const 12) (i32.const 5))
    (i32.const 0))
  (func (export "{IFACE}#[static]policy.create") (param i32 i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (call $new (i32.const 7)))
    (i32.const 16))
  (func (export "{IFACE}#[method]policy.task-queued")
    (param i32 i64 i32 i32 i32 i32 i32 f64 i32 i64))
  (func (export "{IFACE}#[method]policy.task-dequeued") (param i32 i64))
  (func (export "{IFACE}#[method]policy.agent-ready") (param i32 i32 i32 i32 i64))
  (func (export "{IFACE}#[method]policy.agent-unready") (param i32 i32))
  (func (export "{IFACE}#[method]policy.assigned") (param i32 i64 i32))
  (func (export "{IFACE}#[method]policy.task-finished") (param i32 i64 i32 i32))
  (func (export "{IFACE}#[method]policy.decide") (param i32 i64) (result i32)
    {decide_body})
)"#
    );
    let module = wat::parse_str(&wat).expect("the WAT assembles");
    wrap_core_module_for(ContractVersion::V0_1_0, &module)
        .expect("the module becomes a policy component")
}
