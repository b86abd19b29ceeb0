//! Malformed and hostile input over WebSocket and HTTP: exact replies, and the connection and
//! the hub keep working.

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::{history, Agent, Hub, HubOpts, RECV_TIMEOUT};

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

/// A socket that can send what the harness's [`Agent`] cannot: a text frame that is not UTF-8.
struct RawSocket(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl RawSocket {
    async fn connect(url: &str) -> RawSocket {
        let connecting = tokio_tungstenite::connect_async(url);
        match tokio::time::timeout(RECV_TIMEOUT, connecting).await {
            Ok(Ok((socket, _response))) => RawSocket(socket),
            other => panic!("websocket connect to {url} failed: {other:?}"),
        }
    }

    async fn send(&mut self, message: Message) {
        let sent = tokio::time::timeout(RECV_TIMEOUT, self.0.send(message)).await;
        assert!(matches!(sent, Ok(Ok(()))), "send failed: {sent:?}");
    }

    async fn send_json(&mut self, value: Value) {
        self.send(Message::text(value.to_string())).await;
    }

    /// A text frame holding exactly `bytes`, UTF-8 or not.
    async fn send_text_bytes(&mut self, bytes: &[u8]) {
        let frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), true);
        self.send(Message::Frame(frame)).await;
    }

    async fn recv_json(&mut self) -> Value {
        match tokio::time::timeout(RECV_TIMEOUT, self.0.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                serde_json::from_str(text.as_str()).unwrap_or_else(|_| panic!("not JSON: {text}"))
            }
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// Reads until the connection ends: the JSON frames before its end, and the close frame's
    /// code and reason (`None`: it ended without one).
    async fn until_closed(&mut self) -> (Vec<Value>, Option<(u16, String)>) {
        let mut before = Vec::new();
        loop {
            match tokio::time::timeout(RECV_TIMEOUT, self.0.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => before.push(
                    serde_json::from_str(text.as_str())
                        .unwrap_or_else(|_| panic!("not JSON: {text}")),
                ),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    return (before, close);
                }
                Ok(Some(Ok(_))) => continue,
                Ok(None | Some(Err(_))) => return (before, None),
                Err(_) => panic!("the connection did not end within {RECV_TIMEOUT:?}: {before:?}"),
            }
        }
    }
}

/// A text frame that is not UTF-8 used to drop the connection with no reply and no close frame
/// (issue 11, item 11). The socket layer cannot hand such a frame over to be answered and
/// forgotten, so the hub answers `invalid_json` and then fails the connection as RFC 6455 asks:
/// close 1007 `invalid_utf8`. The agent's task outlives the connection: it reconnects and
/// continues it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_gets_invalid_json_then_close_1007() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let token = api.create_token("a1").await;
    let mut raw = RawSocket::connect(&hub.ws_url()).await;
    raw.send_json(json!({"type": "identify", "agent_id": "a1", "token": token}))
        .await;
    assert_eq!(
        raw.recv_json().await,
        json!({"type": "identified", "agent_id": "a1"})
    );
    let task_id = api
        .submit(json!({"description": "outlives a bad frame"}))
        .await;
    let assign = raw.recv_json().await;
    assert_eq!(assign["type"], "task_assign", "{assign}");
    assert_eq!(assign["task_id"], task_id.as_str(), "{assign}");
    let generation = assign["generation"].as_u64().expect("a generation");
    raw.send_json(json!({"type": "task_accepted", "task_id": task_id, "generation": generation}))
        .await;
    assert_eq!(
        raw.recv_json().await,
        json!({"type": "task_ack", "task_id": task_id, "status": "accepted"})
    );

    // JSON, but for one byte that is never UTF-8.
    raw.send_text_bytes(b"{\"type\":\"ping\",\"pad\":\"\xff\"}")
        .await;
    let (before, close) = raw.until_closed().await;
    assert_eq!(
        before,
        [json!({"type": "error", "error": "invalid_json"})],
        "exactly one invalid_json error before the close"
    );
    assert_eq!(
        close,
        Some((1007, "invalid_utf8".to_owned())),
        "invalid UTF-8 fails the connection with 1007"
    );

    let mut a1 = Agent::connect(&hub.ws_url(), "a1", &token).await;
    a1.recover(&task_id, generation).await;
    a1.complete(&task_id, generation).await;
    assert_hub_serves(&hub).await;
}

/// A `generation` that is present but malformed (`-1`, `"1"`, `1.5`, `2^64`) can never be the
/// task's, so the report is refused with `stale_generation`, as a well-formed wrong number is,
/// and after the same checks: from another agent it is `not_assignee`. `task_accepted` used to
/// take a malformed generation for none and accept (issue 11, item 12). A `null` generation is
/// none, as an absent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_generations_are_refused_as_stale() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let task_id = api.submit(json!({"description": "fenced"})).await;
    let assign = a1.expect_assign().await;
    assert_eq!(assign.task_id, task_id);
    let mut a2 = hub.agent("a2").await;

    let malformed = ["-1", "\"1\"", "1.5", "18446744073709551616"];
    let reports = [
        ("task_accepted", "task_accept_failed"),
        ("task_complete", "task_complete_failed"),
        ("task_failed", "task_fail_failed"),
    ];
    for (report, refused) in reports {
        for generation in malformed {
            let frame =
                format!(r#"{{"type":"{report}","task_id":"{task_id}","generation":{generation}}}"#);
            a1.send_text(&frame).await;
            a1.expect_error(&format!("{refused}: stale_generation"))
                .await;
            a2.send_text(&frame).await;
            a2.expect_error(&format!("{refused}: not_assignee")).await;
        }
    }
    let task = api.get_task(&task_id).await;
    assert_eq!(task["status"], "assigned", "{task}");
    assert!(
        history(&task).iter().all(|e| e["event"] != "accepted"),
        "no refused report may accept the task: {task}"
    );

    a1.send(json!({"type": "task_accepted", "task_id": task_id, "generation": null}))
        .await;
    a1.expect_ack(&task_id, "accepted").await;
    a1.complete(&task_id, assign.generation).await;
    a2.expect_quiet().await;
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
