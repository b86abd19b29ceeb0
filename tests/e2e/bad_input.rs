//! Malformed and hostile input over WebSocket and HTTP: exact replies, and the connection and
//! the hub keep working.

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Agent, Hub, HubOpts, RECV_TIMEOUT};

const UNKNOWN_TASK: &str = "task-0000000000000000";

async fn assert_hub_serves(hub: &Hub) {
    let health = hub.api().health().await;
    assert_eq!(health["status"], "ok", "{health}");
}

/// After identify: each bad frame gets exactly its error, and the same connection still
/// answers ping with pong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_exact_errors_and_the_connection_survives() {
    let hub = Hub::start(HubOpts::default()).await;
    let mut a1 = hub.agent("a1").await;

    a1.send_binary(br#"{"type":"ping"}"#).await;
    a1.expect_error("invalid_json").await;
    a1.ping().await;

    for text in [
        "{not json",
        "{\"type\":\"ping\"",
        "",
        "[1,2,3]",
        "\"ping\"",
        "42",
        "null",
        "true",
    ] {
        a1.send_text(text).await;
        a1.expect_error("invalid_json").await;
        a1.ping().await;
    }

    let unknown: [Value; 9] = [
        json!({"type": "teleport"}),
        json!({"type": "PING"}),
        json!({"type": "task_complete", "generation": 1, "result": {}}),
        json!({"type": "task_accepted"}),
        json!({"type": "task_failed", "generation": 1, "error": "x"}),
        json!({"type": "task_progress"}),
        json!({"type": "task_rejected"}),
        json!({"type": "task_recovering"}),
        json!({"type": "status"}),
    ];
    for msg in unknown {
        a1.send(msg).await;
        a1.expect_error("unknown_message_type").await;
        a1.ping().await;
    }

    // A missing generation is not a missing required field: it counts as 0.
    a1.send(json!({"type": "task_complete", "task_id": UNKNOWN_TASK}))
        .await;
    a1.expect_error("task_complete_failed: not_found").await;
    a1.ping().await;
    a1.send(json!({"type": "task_failed", "task_id": UNKNOWN_TASK, "generation": 1}))
        .await;
    a1.expect_error("task_fail_failed: not_found").await;
    a1.ping().await;
    a1.send(json!({"type": "task_recovering", "task_id": UNKNOWN_TASK}))
        .await;
    assert_eq!(
        a1.expect_reply().await,
        json!({"type": "task_reassign", "task_id": UNKNOWN_TASK})
    );
    a1.ping().await;

    // Unknown extra fields are ignored.
    a1.send(json!({"type": "ping", "protocol_version": 1, "client_type": "sidecar", "x": [1]}))
        .await;
    let pong = a1.recv_json().await;
    assert_eq!(pong["type"], "pong", "{pong}");
    a1.send(json!({"type": "status", "status": "idle", "extra": true}))
        .await;
    assert_eq!(a1.expect_reply().await, json!({"type": "status_updated"}));
    a1.expect_quiet().await;
    assert_hub_serves(&hub).await;
}

/// Before identify everything gets `not_identified`; a wrong token `invalid_token`, another
/// agent's token `token_agent_mismatch`; the connection stays open and a correct identify then
/// succeeds on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_identify_and_failed_identifies() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let t1 = api.create_token("a1").await;
    let t2 = api.create_token("a2").await;
    let mut conn = Agent::open(&hub.ws_url(), "a1", &t1).await;

    for msg in [
        json!({"type": "list_agents"}),
        json!({"type": "task_complete", "task_id": UNKNOWN_TASK, "generation": 1}),
        json!({"type": "status", "status": "idle"}),
    ] {
        conn.send(msg).await;
        conn.expect_error("not_identified").await;
    }

    conn.send(json!({"type": "identify", "agent_id": "a1", "token": "not-a-token"}))
        .await;
    conn.expect_error("invalid_token").await;
    conn.send(json!({"type": "identify", "agent_id": "a1", "token": t2}))
        .await;
    conn.expect_error("token_agent_mismatch").await;
    conn.send(json!({"type": "identify", "agent_id": "nobody", "token": t1}))
        .await;
    conn.expect_error("token_agent_mismatch").await;

    conn.identify().await;
    conn.ping().await;
    assert_hub_serves(&hub).await;
}

/// "The first message must be identify; anything else before it gets not_identified": that
/// includes `ping` (kept apart from the test above so a failure here does not hide the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_before_identify_is_not_identified() {
    let hub = Hub::start(HubOpts::default()).await;
    let token = hub.api().create_token("a1").await;
    let mut conn = Agent::open(&hub.ws_url(), "a1", &token).await;
    conn.send(json!({"type": "ping"})).await;
    conn.expect_error("not_identified").await;
    conn.identify().await;
    conn.ping().await;
}

/// Five failed identifies on one connection close it with 1008 (not before the fifth); a new
/// connection can still identify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failed_identifies_close_with_1008() {
    let hub = Hub::start(HubOpts::default()).await;
    let token = hub.api().create_token("a1").await;
    let mut conn = Agent::open(&hub.ws_url(), "a1", &token).await;
    for i in 1..=4 {
        conn.send(json!({"type": "identify", "agent_id": "a1", "token": format!("guess-{i}")}))
            .await;
        conn.expect_error("invalid_token").await;
    }
    conn.send(json!({"type": "identify", "agent_id": "a1", "token": "guess-5"}))
        .await;
    let (code, _reason, before) = conn.expect_close(RECV_TIMEOUT).await;
    assert!(
        before.is_empty() || before == [json!({"type": "error", "error": "invalid_token"})],
        "only an invalid_token error may precede the close: {before:?}"
    );
    assert_eq!(code, Some(1008), "policy violation close code");

    let mut again = Agent::connect(&hub.ws_url(), "a1", &token).await;
    again.ping().await;
    assert_hub_serves(&hub).await;
}

/// A frame over --max-frame-bytes gets `frame_too_large` and close 1009; a frame under it is
/// served normally; the hub keeps serving other connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_gets_frame_too_large_and_1009() {
    let hub = Hub::start(HubOpts::default().max_frame_bytes(4096)).await;
    let mut a1 = hub.agent("a1").await;

    a1.send(json!({"type": "ping", "pad": "x".repeat(2000)}))
        .await;
    let pong = a1.recv_json().await;
    assert_eq!(
        pong["type"], "pong",
        "a frame under the limit is served: {pong}"
    );

    a1.send(json!({"type": "ping", "pad": "x".repeat(8192)}))
        .await;
    let (code, _reason, before) = a1.expect_close(RECV_TIMEOUT).await;
    assert_eq!(
        before,
        [json!({"type": "error", "error": "frame_too_large"})],
        "exactly one frame_too_large error before the close"
    );
    assert_eq!(code, Some(1009), "message too big close code");

    let mut a2 = hub.agent("a2").await;
    a2.ping().await;
    assert_hub_serves(&hub).await;
}

/// Bad HTTP bodies: 400 with an `error` naming the field; a batch with one bad task creates
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bad_bodies_are_400_naming_the_field() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let admin = Some(api.admin_token());

    for raw in [
        "{\"description\": ",
        "not json",
        "",
        "[1,",
        "{\"description\": \"x\",}",
    ] {
        let resp = api
            .request_raw(Method::POST, "/api/tasks", admin, raw)
            .await;
        assert_eq!(resp.status, 400, "malformed body {raw:?}: {}", resp.text);
        resp.error();
    }

    let cases: [(Value, &str); 12] = [
        (json!({}), "description"),
        (json!({"priority": "high"}), "description"),
        (json!({"description": 5}), "description"),
        (json!({"description": null}), "description"),
        (
            json!({"description": "x", "priority": "critical"}),
            "priority",
        ),
        (
            json!({"description": "x", "priority": "URGENT!"}),
            "priority",
        ),
        (json!({"description": "x", "priority": 7}), "priority"),
        (json!({"description": "x", "priority": -1}), "priority"),
        (json!({"description": "x", "metadata": [1, 2]}), "metadata"),
        (json!({"description": "x", "max_retries": 0}), "max_retries"),
        (json!({"description": "x", "weight": 0}), "weight"),
        (
            json!({"description": "x", "needed_capabilities": "gpu"}),
            "needed_capabilities",
        ),
    ];
    for (body, field) in &cases {
        let resp = api.post("/api/tasks", body).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text);
        assert!(
            resp.error().contains(field),
            "the error for {body} must name `{field}`: {}",
            resp.text
        );
    }
    for body in [json!([1, 2]), json!("description"), json!(null)] {
        let resp = api.post("/api/tasks", &body).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text);
        resp.error();
    }

    let resp = api
        .post(
            "/api/tasks/batch",
            &json!({"tasks": [{"description": "fine"}, {"priority": "normal"}]}),
        )
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text);
    assert!(resp.error().contains("description"), "{}", resp.text);
    for body in [
        json!({"tasks": "nope"}),
        json!({}),
        json!({"tasks": [{"description": "x", "priority": "meh"}]}),
    ] {
        let resp = api.post("/api/tasks/batch", &body).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text);
        resp.error();
    }
    let listed = api.list_tasks("limit=100").await;
    assert_eq!(
        listed["count"], 0,
        "a rejected batch creates nothing: {listed}"
    );
    assert_eq!(listed["tasks"], json!([]), "{listed}");

    let resp = api.post("/admin/tokens", &json!({})).await;
    assert_eq!(resp.status, 400, "{}", resp.text);
    assert!(resp.error().contains("agent_id"), "{}", resp.text);

    assert_hub_serves(&hub).await;
}

/// Auth and routing: no or bad token → 401 unauthorized (checked before the body); an agent
/// token on an admin route → 403; unknown route → 404 not_found with or without a token;
/// unknown task → 404 task_not_found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_auth_and_unknown_routes() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let agent = api.create_token("a1").await;
    let unauthorized = json!({"error": "unauthorized"});

    let cases: [(Method, &str, Option<Value>); 6] = [
        (
            Method::POST,
            "/api/tasks",
            Some(json!({"description": "x"})),
        ),
        (Method::GET, "/api/tasks", None),
        (Method::GET, "/api/agents", None),
        (Method::GET, "/api/tasks/stats", None),
        (
            Method::POST,
            "/admin/tokens",
            Some(json!({"agent_id": "x"})),
        ),
        (Method::GET, "/admin/tokens", None),
    ];
    for (method, path, body) in &cases {
        for token in [None, Some("wrong-token"), Some("")] {
            let resp = api
                .request(method.clone(), path, token, body.as_ref())
                .await;
            assert_eq!(
                resp.status, 401,
                "{method} {path} with {token:?}: {}",
                resp.text
            );
            assert_eq!(resp.body, unauthorized, "{method} {path} with {token:?}");
        }
    }
    let resp = api
        .request_raw(Method::POST, "/api/tasks", None, "{broken")
        .await;
    assert_eq!(
        resp.status, 401,
        "auth is checked before the body: {}",
        resp.text
    );
    assert_eq!(resp.body, unauthorized);

    let existing = api.submit(json!({"description": "exists"})).await;
    for (method, path, body) in [
        (
            Method::POST,
            "/admin/tokens".to_string(),
            Some(json!({"agent_id": "x"})),
        ),
        (Method::GET, "/admin/tokens".to_string(), None),
        (Method::DELETE, "/admin/tokens/a1".to_string(), None),
        (Method::POST, format!("/api/tasks/{existing}/retry"), None),
        (Method::POST, format!("/api/tasks/{existing}/cancel"), None),
    ] {
        let resp = api
            .request(method.clone(), &path, Some(&agent), body.as_ref())
            .await;
        assert_eq!(
            resp.status, 403,
            "{method} {path} with an agent token: {}",
            resp.text
        );
    }
    // The agent role may submit and read.
    let resp = api
        .request(
            Method::POST,
            "/api/tasks",
            Some(&agent),
            Some(&json!({"description": "by a1"})),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let resp = api
        .request(Method::GET, "/api/tasks", Some(&agent), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);

    let not_found = json!({"error": "not_found"});
    for path in ["/nope", "/api/nope", "/api/tasks/x/y/z", "/admin/nope"] {
        for token in [None, Some(agent.as_str()), Some(api.admin_token())] {
            let resp = api.request(Method::GET, path, token, None).await;
            assert_eq!(resp.status, 404, "GET {path} with {token:?}: {}", resp.text);
            assert_eq!(resp.body, not_found, "GET {path} with {token:?}");
        }
    }
    let resp = api.get(&format!("/api/tasks/{UNKNOWN_TASK}")).await;
    assert_eq!(resp.status, 404, "{}", resp.text);
    assert_eq!(
        resp.body,
        json!({"error": "task_not_found", "task_id": UNKNOWN_TASK})
    );

    assert_hub_serves(&hub).await;
}
