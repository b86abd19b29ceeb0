//! Swapping the policy in force with `PUT /api/policy`: under load nothing is lost or assigned
//! twice; a bad component or configuration is refused with the reason and changes nothing; the
//! policy in force survives a crash, and its compiled code is not compiled again.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::agent::assert_one_task_at_a_time;
use crate::harness::{
    assert_each_completed_once, failure_counters, policy_file, skip_unless_default_policy,
    str_field, Crew, Hub, HubOpts, WorkerOpts, WorkerReport,
};

/// Why these tests do not run again for another policy under test.
const PINNED: &str = "it chooses and swaps its policies itself";

const LOAD_TASKS: usize = 10_000;
const LOAD_AGENTS: usize = 8;
/// Swaps during the load: after this many completions, to this built-in policy.
const SWAPS: [(usize, &str); 2] = [(2_000, "fair"), (6_000, "greedy")];
/// Bound on the whole load; it takes far less (see the test's output).
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// 10,000 tasks (one batch) flow through 8 agents that accept and complete at once, while the
/// policy is swapped greedy → fair → greedy after 2,000 and 6,000 completions. Every task is
/// assigned once and completed once (by the agents' own account, and by the hub's counts), no
/// agent ever holds two tasks, nothing fails, and each swap answers with the policy it swapped
/// in, while work is still queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swaps_under_load_lose_and_duplicate_nothing() {
    if skip_unless_default_policy("hot_swaps_under_load_lose_and_duplicate_nothing", PINNED) {
        return;
    }
    let hub = Hub::start(HubOpts::default().policy("builtin:greedy", None)).await;
    let api = hub.api();
    let mut crew = Crew::new();
    for i in 0..LOAD_AGENTS {
        crew.spawn(hub.agent(&format!("a{i}")).await, WorkerOpts::default());
    }

    let started = Instant::now();
    let tasks = (0..LOAD_TASKS)
        .map(|i| json!({"description": format!("swap load #{i}")}))
        .collect();
    let ids = api.submit_batch(tasks).await;
    eprintln!("submitted {LOAD_TASKS} tasks in {:?}", started.elapsed());

    for (after, policy) in SWAPS {
        crew.wait_completed(after, LOAD_TIMEOUT).await;
        let asked = Instant::now();
        let swapped = api
            .put_policy(&json!({"builtin": policy}))
            .await
            .expect(200, &format!("PUT /api/policy builtin:{policy}"));
        let done = crew.completed();
        eprintln!(
            "swapped to {policy} at {done} completions, {:?} in; the swap took {:?}",
            started.elapsed(),
            asked.elapsed()
        );
        assert_eq!(str_field(&swapped, "name"), policy, "{swapped}");
        assert_eq!(str_field(&swapped, "source"), format!("builtin:{policy}"));
        assert!(
            done < LOAD_TASKS,
            "the swap to {policy} came after all the work was done ({done} completed), so it \
             tested nothing: raise LOAD_TASKS"
        );
    }

    crew.wait_completed(LOAD_TASKS, LOAD_TIMEOUT).await;
    eprintln!(
        "{LOAD_TASKS} tasks through {LOAD_AGENTS} agents in {:?}",
        started.elapsed()
    );
    // `stop` fails on any worker violation, a second task_assign while holding one included.
    let out = crew.stop().await;
    for (agent, _) in &out {
        assert_one_task_at_a_time(agent);
    }
    let reports: Vec<&WorkerReport> = out.iter().map(|(_, r)| r).collect();
    assert_each_completed_once(&reports, &ids);
    let assigns: usize = reports.iter().map(|r| r.assigned.len()).sum();
    assert_eq!(
        assigns, LOAD_TASKS,
        "one task_assign per task, none repeated"
    );
    let per_agent: Vec<(&str, usize)> = reports
        .iter()
        .map(|r| (r.agent_id.as_str(), r.completed.len()))
        .collect();
    eprintln!("completions per agent: {per_agent:?}");

    let stats = api.task_stats().await;
    assert_eq!(stats["by_status"]["completed"], LOAD_TASKS, "{stats}");
    for status in ["queued", "assigned", "dead_letter", "cancelled"] {
        assert_eq!(stats["by_status"][status], 0, "{status}: {stats}");
    }
    let policy = api.policy().await;
    assert_eq!(policy["name"], "greedy", "{policy}");
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
}

/// The fields of `GET /api/policy` that identify the policy in force and its load.
fn identity(status: &Value) -> Value {
    json!({
        "name": status["name"],
        "version": status["version"],
        "digest": status["digest"],
        "source": status["source"],
        "config": status["config"],
        "loaded_at": status["loaded_at"],
    })
}

/// Each swap to something unusable gets 400 with the reason, and the policy in force is
/// untouched (same digest, source, configuration and load time) and still assigns: garbage
/// bytes, a core module, a truncated component, an unknown built-in, a missing file, and
/// configurations the policy refuses (greedy's unknown field, the hostile policy's unknown
/// mode, in a file and in an upload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_swap_is_refused_and_changes_nothing() {
    if skip_unless_default_policy("an_invalid_swap_is_refused_and_changes_nothing", PINNED) {
        return;
    }
    let hub = Hub::start(HubOpts::default().policy("builtin:greedy", None)).await;
    let api = hub.api();
    let before = identity(&api.policy().await);
    assert_eq!(before["name"], "greedy");

    let hostile = policy_file("hostile");
    let component = std::fs::read(&hostile).expect("read the hostile component");
    let uploads: [(&str, Vec<u8>, Option<Value>, &str); 4] = [
        (
            "garbage bytes",
            b"certainly not a component".to_vec(),
            None,
            "not a WebAssembly binary",
        ),
        (
            "a core module",
            b"\0asm\x01\0\0\0".to_vec(),
            None,
            "core WebAssembly module, not a component",
        ),
        (
            "a truncated component",
            component[..component.len() / 2].to_vec(),
            None,
            "",
        ),
        (
            "an upload with a configuration its policy refuses",
            component.clone(),
            Some(json!({"mode": "explode"})),
            "unknown mode `explode`",
        ),
    ];
    for (what, bytes, config, reason) in uploads {
        let resp = api.put_policy_wasm(bytes, config.as_ref()).await;
        assert_eq!(resp.status, 400, "{what}: {}", resp.text);
        assert!(
            !resp.error().is_empty() && resp.error().contains(reason),
            "{what}: the reason should mention {reason:?}, got {:?}",
            resp.error()
        );
        assert_eq!(
            identity(&api.policy().await),
            before,
            "{what} changed the policy"
        );
    }

    let references = [
        (json!({"builtin": "nope"}), "no built-in policy `nope`"),
        (
            json!({"path": "/nonexistent/switchyard/policy.wasm"}),
            "cannot read the policy file",
        ),
        (
            json!({"builtin": "greedy", "config": {"max_batch": 3}}),
            "unknown config field `max_batch`",
        ),
        (
            json!({"path": hostile, "config": {"mode": "explode"}}),
            "unknown mode `explode`",
        ),
    ];
    for (body, reason) in references {
        let resp = api.put_policy(&body).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text);
        assert!(
            resp.error().contains(reason),
            "{body}: the reason should mention {reason:?}, got {:?}",
            resp.error()
        );
        assert_eq!(
            identity(&api.policy().await),
            before,
            "{body} changed the policy"
        );
    }

    // The policy in force still hands out work.
    let mut a1 = hub.agent("a1").await;
    let id = api
        .submit(json!({"description": "after the refusals"}))
        .await;
    let a = a1.expect_assign().await;
    assert_eq!(a.task_id, id);
    a1.accept(&a).await;
    a1.complete(&id, a.generation).await;
    let status = api.policy().await;
    assert_eq!(identity(&status), before);
    assert_eq!(status["counters"]["assignments"], 1, "{status}");
}

/// Started without `--policy`, the hub keeps the policy swapped in: uploaded (source `bytes`),
/// then named by file, each time a hub killed with SIGKILL comes back with the same policy
/// (name, source, configuration, digest), loads its compiled code from the cache in its data
/// folder instead of compiling it, and schedules with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_in_force_survives_a_crash_without_recompiling() {
    if skip_unless_default_policy(
        "the_policy_in_force_survives_a_crash_without_recompiling",
        PINNED,
    ) {
        return;
    }
    let mut hub = Hub::start(HubOpts::default().persisted_policy()).await;
    assert_eq!(hub.api().policy().await["name"], "greedy");

    let hostile = policy_file("hostile");
    let component = std::fs::read(&hostile).expect("read the hostile component");
    let swaps: [(&str, Value, &str); 2] = [
        (
            "upload",
            json!({"mode": "well_behaved", "after": 1}),
            "bytes",
        ),
        ("file", json!({"mode": "well_behaved", "after": 2}), ""),
    ];
    for (round, (how, config, source)) in swaps.into_iter().enumerate() {
        let api = hub.api();
        let swapped = match how {
            "upload" => api.put_policy_wasm(component.clone(), Some(&config)).await,
            _ => {
                api.put_policy(&json!({"path": hostile, "config": config}))
                    .await
            }
        }
        .expect(200, &format!("swap by {how}"));
        let source = if source.is_empty() {
            hostile.display().to_string()
        } else {
            source.to_string()
        };
        assert_eq!(str_field(&swapped, "source"), source, "{swapped}");

        hub = Hub::restart_on(hub.kill9()).await;
        let api = hub.api();
        let status = api.policy().await;
        for field in ["name", "version", "digest", "source", "config"] {
            assert_eq!(
                status[field], swapped[field],
                "after the restart ({how}), `{field}` differs: before {swapped}, after {status}"
            );
        }
        assert_eq!(status["fallback_active"], false, "{status}");
        hub.wait_for_log(&["policy loaded", "policy=hostile", "code_from=\"disk\""])
            .await;

        let agent_id = format!("a{round}");
        let mut agent = hub.agent(&agent_id).await;
        let id = api
            .submit(json!({"description": format!("after restart {round}")}))
            .await;
        let a = agent.expect_assign().await;
        assert_eq!(a.task_id, id);
        agent.accept(&a).await;
        agent.complete(&id, a.generation).await;
        assert_eq!(api.policy().await["counters"]["assignments"], 1);
    }
}
