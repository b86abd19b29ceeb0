//! HTTP surface: health, tokens, the task JSON.

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::api::check_submit_answer;
use crate::harness::{poll_until, u64_field, Agent, Hub, HubOpts, RECV_TIMEOUT, STATE_TIMEOUT};

async fn wait_connected(hub: &Hub, n: u64) {
    let api = hub.api();
    let expected = json!({"status": "ok", "service": "switchyard", "agents_connected": n});
    poll_until(
        &format!("/health with {n} agents"),
        STATE_TIMEOUT,
        || async {
            let health = api.health().await;
            if health == expected {
                Ok(())
            } else {
                Err(health.to_string())
            }
        },
    )
    .await;
}

/// GET /health needs no token and reports the number of connected (identified) agents, going
/// down on a clean close and on a cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflects_connected_agents() {
    let hub = Hub::start(HubOpts::default()).await;
    assert_eq!(
        hub.api().health().await,
        json!({"status": "ok", "service": "switchyard", "agents_connected": 0})
    );
    let mut a1 = hub.agent("a1").await;
    wait_connected(&hub, 1).await;
    let mut a2 = hub.agent("a2").await;
    wait_connected(&hub, 2).await;
    a1.close().await;
    wait_connected(&hub, 1).await;
    a2.cut();
    wait_connected(&hub, 0).await;
    a1.reconnect().await;
    wait_connected(&hub, 1).await;
}

/// Tokens: listed by prefix only; revoking one closes that agent's open connection and the
/// token no longer identifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_closes_the_connection() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let mut a2 = hub.agent("a2").await;

    let listed = api
        .get("/admin/tokens")
        .await
        .expect(200, "GET /admin/tokens");
    let tokens = listed["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("`tokens` must be an array: {listed}"));
    for agent in [&a1, &a2] {
        let entry = tokens
            .iter()
            .find(|t| t["agent_id"] == agent.id.as_str())
            .unwrap_or_else(|| panic!("{} not listed: {listed}", agent.id));
        let prefix = entry["token_prefix"].as_str().unwrap_or("");
        assert!(
            !prefix.is_empty()
                && prefix.len() < agent.token.len()
                && agent.token.starts_with(prefix),
            "token_prefix must be a proper prefix of the token: {entry}"
        );
    }
    assert!(
        !listed.to_string().contains(&a1.token),
        "the token itself must never be listed: {listed}"
    );

    let revoked = api
        .request(
            Method::DELETE,
            "/admin/tokens/a1",
            Some(api.admin_token()),
            None,
        )
        .await
        .expect(200, "DELETE /admin/tokens/a1");
    assert_eq!(revoked, json!({"status": "revoked", "agent_id": "a1"}));
    a1.expect_close(RECV_TIMEOUT).await;

    let mut retry = Agent::open(&hub.ws_url(), "a1", &a1.token).await;
    retry
        .send(json!({"type": "identify", "agent_id": "a1", "token": a1.token}))
        .await;
    retry.expect_error("invalid_token").await;
    let resp = api
        .request(Method::GET, "/api/tasks", Some(&a1.token), None)
        .await;
    assert_eq!(
        resp.status, 401,
        "a revoked token is refused over HTTP: {}",
        resp.text
    );

    a2.ping().await;
    wait_connected(&hub, 1).await;
}

/// The submit answer, the priority names and numbers, the defaults, the full task JSON, and
/// what a completion stores (result, tokens_used taken from the result).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_answer_priorities_and_task_json() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();

    // Names map to 0 (urgent) .. 3 (low), numbers are taken as they are, default is normal.
    let mut ids = Vec::new();
    for (priority, expected) in [
        (json!("urgent"), 0),
        (json!("high"), 1),
        (json!("normal"), 2),
        (json!("low"), 3),
        (json!(0), 0),
        (json!(3), 3),
        (Value::Null, 2),
    ] {
        let mut body = json!({"description": "priority check"});
        if !priority.is_null() {
            body["priority"] = priority.clone();
        }
        let answer = api.post("/api/tasks", &body).await.expect(201, "submit");
        let obj = answer.as_object().expect("object answer");
        assert_eq!(
            obj.len(),
            4,
            "answer is {{status, task_id, priority, created_at}}: {answer}"
        );
        assert_eq!(
            answer["priority"], expected,
            "priority {priority}: {answer}"
        );
        ids.push(check_submit_answer(&answer));
    }

    let body = json!({
        "description": "full task",
        "priority": "high",
        "metadata": {"repo": "switchyard", "n": 1},
        "max_retries": 5,
        "needed_capabilities": [],
        "fairness_key": "team-a",
        "weight": 2.5,
        "complete_by": 4_102_444_800_000u64
    });
    let answer = api
        .post("/api/tasks", &body)
        .await
        .expect(201, "submit full task");
    let id = check_submit_answer(&answer);
    let task = api.get_task(&id).await;
    for key in [
        "id",
        "description",
        "metadata",
        "priority",
        "status",
        "assigned_to",
        "assigned_at",
        "generation",
        "retry_count",
        "reclaim_count",
        "max_retries",
        "needed_capabilities",
        "fairness_key",
        "weight",
        "last_error",
        "complete_by",
        "result",
        "tokens_used",
        "submitted_by",
        "created_at",
        "updated_at",
        "history",
    ] {
        assert!(task.get(key).is_some(), "task JSON without `{key}`: {task}");
    }
    assert_eq!(task["description"], "full task");
    assert_eq!(task["metadata"], body["metadata"]);
    assert_eq!(task["priority"], 1);
    assert_eq!(task["status"], "queued");
    assert_eq!(task["generation"], 0, "generation starts at 0");
    assert_eq!(task["retry_count"], 0);
    assert_eq!(task["reclaim_count"], 0);
    assert_eq!(task["max_retries"], 5);
    assert_eq!(task["fairness_key"], "team-a");
    assert_eq!(task["weight"], 2.5);
    assert_eq!(task["complete_by"], body["complete_by"]);
    assert_eq!(task["created_at"], answer["created_at"]);
    assert!(task["assigned_to"].is_null(), "{task}");
    assert!(crate::harness::history(&task).len() <= 50, "{task}");
    let default = api.get_task(&ids[2]).await;
    assert_eq!(
        default["max_retries"], 3,
        "max_retries defaults to 3: {default}"
    );

    let stats = api.get("/api/tasks/stats").await.expect(200, "stats");
    for key in ["by_status", "by_priority", "dead_letter"] {
        assert!(stats.get(key).is_some(), "stats without `{key}`: {stats}");
    }

    // Run the full task (urgent ones first, so drain those too) and check what is stored.
    let mut a1 = hub.agent("a1").await;
    let total = ids.len() + 1;
    let mut full_done = false;
    for _ in 0..total {
        let a = a1.expect_assign().await;
        a1.accept(&a).await;
        if a.task_id == id {
            assert_eq!(a.description, "full task");
            assert_eq!(a.metadata, body["metadata"]);
            a1.send(json!({
                "type": "task_complete",
                "task_id": id,
                "generation": a.generation,
                "result": {"answer": 42, "tokens_used": 1234}
            }))
            .await;
            a1.expect_ack(&id, "complete").await;
            full_done = true;
        } else {
            // No result: the stored result defaults to {}.
            a1.send(
                json!({"type": "task_complete", "task_id": a.task_id, "generation": a.generation}),
            )
            .await;
            a1.expect_ack(&a.task_id, "complete").await;
            let t = api.get_task(&a.task_id).await;
            assert_eq!(t["result"], json!({}), "result defaults to {{}}: {t}");
        }
    }
    assert!(full_done);
    a1.expect_quiet().await;
    let task = api.get_task(&id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        task["result"],
        json!({"answer": 42, "tokens_used": 1234}),
        "{task}"
    );
    assert_eq!(
        task["tokens_used"], 1234,
        "tokens_used defaults to result.tokens_used: {task}"
    );
    assert!(
        u64_field(&task, "updated_at") >= u64_field(&task, "created_at"),
        "{task}"
    );
}

/// `GET /metrics` needs no token and speaks Prometheus text: the commit counters move with
/// the work (a submission is one committed transaction writing one task record), and the task
/// gauge counts by status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_commits_and_tasks() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let scrape = || async {
        let resp = api.request(Method::GET, "/metrics", None, None).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        resp.text
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
            .parse()
            .unwrap_or_else(|e| panic!("`{series}`: {e}"))
    };
    let before = scrape().await;
    assert!(
        before.contains("# TYPE switchyard_commits counter"),
        "{before}"
    );
    assert!(
        before.contains("# TYPE switchyard_agents_connected gauge"),
        "{before}"
    );
    api.submit(json!({"description": "counted"})).await;
    let after = scrape().await;
    let commits =
        value(&after, "switchyard_commits_total") - value(&before, "switchyard_commits_total");
    let writes = value(&after, "switchyard_task_writes_total")
        - value(&before, "switchyard_task_writes_total");
    assert!(commits >= 1.0, "commits moved by {commits}");
    assert_eq!(writes, 1.0, "one task written");
    assert!(value(&after, "switchyard_commit_seconds_sum") > 0.0);
    assert_eq!(value(&after, "switchyard_commit_failures_total"), 0.0);
    assert_eq!(value(&after, "switchyard_tasks{status=\"queued\"}"), 1.0);
}
