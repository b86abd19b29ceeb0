//! The normal path: tasks flow to idle agents and complete; connections and identities.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::agent::assert_one_task_at_a_time;
use crate::harness::{
    completed_events, poll_until, str_field, u64_field, Agent, Crew, Hub, HubOpts, WorkerOpts,
    RECV_TIMEOUT, STATE_TIMEOUT,
};

/// 10 tasks, 2 agents: every task completes exactly once, each is assigned within 5 s of its
/// submission, both agents do work, and the stored result is the one the agent sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tasks_across_two_agents_complete_promptly() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut crew = Crew::new();
    for id in ["a1", "a2"] {
        crew.spawn(hub.agent(id).await, WorkerOpts::default());
    }

    let mut submitted = Vec::new();
    for i in 0..10 {
        let before = Instant::now();
        let id = api
            .submit(json!({"description": format!("flow task {i}"), "metadata": {"n": i}}))
            .await;
        submitted.push((id, before));
    }
    crew.wait_completed(10, Duration::from_secs(60)).await;
    let out = crew.stop().await;

    let mut first_assign = HashMap::new();
    let mut completer = HashMap::new();
    for (agent, rep) in &out {
        assert!(
            !rep.completed.is_empty(),
            "agent {} did no work; assignments went to {:?}",
            rep.agent_id,
            out.iter()
                .map(|(_, r)| (&r.agent_id, r.completed.len()))
                .collect::<Vec<_>>()
        );
        assert_one_task_at_a_time(agent);
        for a in &rep.assigned {
            first_assign.entry(a.task_id.clone()).or_insert(a.clone());
        }
        for id in &rep.completed {
            let previous = completer.insert(id.clone(), rep.agent_id.clone());
            assert!(previous.is_none(), "{id} completed twice");
        }
    }
    for (i, (id, before)) in submitted.iter().enumerate() {
        let a = first_assign
            .get(id)
            .unwrap_or_else(|| panic!("task {id} was never assigned"));
        let waited = a.at.duration_since(*before);
        assert!(
            waited <= Duration::from_secs(5),
            "task {id} assigned {waited:?} after submission (limit 5 s)"
        );
        assert_eq!(a.description, format!("flow task {i}"));
        assert_eq!(a.metadata, json!({"n": i}));

        let task = api.get_task(id).await;
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(completed_events(&task), 1, "exactly one completion: {task}");
        // The same bound on the hub's own clock.
        let created_at = u64_field(&task, "created_at");
        assert!(
            a.assigned_at >= created_at && a.assigned_at - created_at <= 5000,
            "task {id}: created_at {created_at}, task_assign.assigned_at {}",
            a.assigned_at
        );
        let by = &completer[id];
        assert_eq!(task["result"], json!({"by": by, "task_id": id}), "{task}");
        assert_eq!(
            u64_field(&task, "generation"),
            a.generation,
            "assigned once: {task}"
        );
    }
}

/// A second connection identifying as the same agent supersedes the first (close 4000,
/// "superseded"); the accepted task stays with the agent and is continued, not pushed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_supersedes_first_and_keeps_the_task() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let token = api.create_token("a1").await;
    let mut first = Agent::connect(&hub.ws_url(), "a1", &token).await;
    let id = api
        .submit(json!({"description": "held across supersede"}))
        .await;
    let a = first.expect_assign().await;
    assert_eq!(a.task_id, id);
    first.accept(&a).await;

    let mut second = Agent::connect(&hub.ws_url(), "a1", &token).await;
    let (code, reason, _) = first.expect_close(RECV_TIMEOUT).await;
    assert_eq!(
        code,
        Some(4000),
        "the superseded connection is closed with 4000"
    );
    assert_eq!(reason, "superseded");

    let task = api.get_task(&id).await;
    assert_eq!(task["status"], "assigned", "{task}");
    assert_eq!(task["assigned_to"], "a1", "{task}");
    assert_eq!(u64_field(&task, "generation"), a.generation, "{task}");

    second.recover(&id, a.generation).await;
    second.complete(&id, a.generation).await;
    second.expect_quiet().await;
    let task = api.get_task(&id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(completed_events(&task), 1, "{task}");

    poll_until("one connected agent", STATE_TIMEOUT, || async {
        let health = api.health().await;
        if health["agents_connected"] == 1 {
            Ok(())
        } else {
            Err(health.to_string())
        }
    })
    .await;
}

/// Extra identify fields are ignored, `name` defaults to the agent id, capabilities may be
/// strings or objects; `list_agents`, `status` and `GET /api/agents` report the agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_extras_list_agents_and_status() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let t1 = api.create_token("a1").await;
    let mut a1 = Agent::open(&hub.ws_url(), "a1", &t1).await;
    a1.identify_with(json!({
        "type": "identify",
        "agent_id": "a1",
        "token": t1,
        "name": "Alpha",
        "status": {"mood": "fine"},
        "capabilities": ["code", {"name": "gpu", "vram": 24}],
        "protocol_version": 1,
        "client_type": "sidecar"
    }))
    .await;
    let mut a2 = hub.agent("a2").await;

    a2.send(json!({"type": "list_agents"})).await;
    let reply = a2.expect_reply().await;
    assert_eq!(reply["type"], "agents", "{reply}");
    let agents = reply["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("`agents` must be an array: {reply}"));
    let by_id: HashMap<&str, &Value> = agents
        .iter()
        .map(|a| (str_field(a, "agent_id"), a))
        .collect();
    assert_eq!(by_id.len(), 2, "both agents listed: {reply}");
    for a in agents {
        for key in ["agent_id", "name", "status", "capabilities", "connected_at"] {
            assert!(
                a.get(key).is_some(),
                "list_agents entry without `{key}`: {a}"
            );
        }
        assert!(a["connected_at"].is_u64(), "connected_at is ms: {a}");
    }
    assert_eq!(by_id["a1"]["name"], "Alpha");
    assert_eq!(by_id["a2"]["name"], "a2", "name defaults to the agent id");
    assert_eq!(
        by_id["a2"]["capabilities"],
        json!([]),
        "capabilities default to []"
    );

    a1.send(json!({"type": "status", "status": {"mood": "busy"}}))
        .await;
    assert_eq!(a1.expect_reply().await, json!({"type": "status_updated"}));
    a1.ping().await;

    let resp = api
        .request(Method::GET, "/api/agents", Some(&t1), None)
        .await
        .expect(200, "GET /api/agents with an agent token");
    let agents = resp["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("`agents` must be an array: {resp}"));
    assert_eq!(agents.len(), 2, "{resp}");
    for a in agents {
        for key in [
            "agent_id",
            "name",
            "status",
            "capabilities",
            "connected_at",
            "fsm_state",
            "current_task_id",
        ] {
            assert!(
                a.get(key).is_some(),
                "GET /api/agents entry without `{key}`: {a}"
            );
        }
        assert_eq!(a["fsm_state"], "idle", "{a}");
        assert!(a["current_task_id"].is_null(), "{a}");
    }
}

/// `needed_capabilities` are matched against string capabilities and, by `name`, against
/// object capabilities; a task nobody can run stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_match_strings_and_objects_by_name() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    // a1 first: it is the agent idle longest, so a policy ignoring capabilities would pick it.
    let mut plain = hub.agent("a1").await;
    let t2 = api.create_token("a2").await;
    let mut gpu = Agent::open(&hub.ws_url(), "a2", &t2).await;
    gpu.identify_with(json!({
        "type": "identify",
        "agent_id": "a2",
        "token": t2,
        "capabilities": [{"name": "gpu", "vram": 24}, "linux"]
    }))
    .await;

    for cap in ["gpu", "linux"] {
        let id = api
            .submit(json!({"description": format!("needs {cap}"), "needed_capabilities": [cap]}))
            .await;
        let a = gpu.expect_assign().await;
        assert_eq!(
            a.task_id, id,
            "the task needing {cap} goes to the agent that has it"
        );
        gpu.accept(&a).await;
        gpu.complete(&id, a.generation).await;
    }

    let nobody = api
        .submit(json!({"description": "needs tpu", "needed_capabilities": ["tpu"]}))
        .await;
    plain.expect_quiet().await;
    gpu.expect_quiet().await;
    let task = api.get_task(&nobody).await;
    assert_eq!(task["status"], "queued", "nobody has `tpu`: {task}");
    assert_eq!(task["needed_capabilities"], json!(["tpu"]), "{task}");
    let seen: HashSet<&str> = plain
        .log
        .iter()
        .filter(|e| e.msg["type"] == "task_assign")
        .map(|e| str_field(&e.msg, "task_id"))
        .collect();
    assert!(
        seen.is_empty(),
        "the agent without capabilities got {seen:?}"
    );
}

/// Replies keep the order of the frames they answer, even when the second one writes nothing
/// and the first is still being committed: `task_complete` then `status`, sent back to back,
/// are answered `task_ack` then `status_updated`, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_keep_the_order_of_the_frames() {
    let hub = Hub::start(HubOpts::default()).await;
    let mut agent = hub.agent("orderly").await;
    for round in 0..40 {
        let id = hub
            .api()
            .submit(json!({"description": format!("round {round}")}))
            .await;
        let assign = agent.expect_assign().await;
        assert_eq!(assign.task_id, id);
        agent.accept(&assign).await;
        agent
            .send(json!({
                "type": "task_complete",
                "task_id": id,
                "generation": assign.generation,
            }))
            .await;
        agent
            .send(json!({"type": "status", "status": {"round": round}}))
            .await;
        let first = agent.recv_json().await;
        assert_eq!(
            (first["type"].as_str(), first["task_id"].as_str()),
            (Some("task_ack"), Some(id.as_str())),
            "round {round}: the complete is answered first, got {first}"
        );
        let second = agent.recv_json().await;
        assert_eq!(second["type"], "status_updated", "round {round}: {second}");
    }
}
