//! Every resource bounded: task and page sizes, connections, identify and header timeouts, the
//! auth throttle, deadlines already past. Each hub gets small limits through its flags so the
//! limits are reached quickly.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::harness::agent::Incoming;
use crate::harness::{poll_until, Agent, Hub, HubOpts, STATE_TIMEOUT};

/// Now, in milliseconds since the Unix epoch (the hub's clock, on the same machine).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sends raw bytes on a fresh connection and reads the answer until the hub closes it (bounded).
async fn raw_exchange(hub: &Hub, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(hub.addr()).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(STATE_TIMEOUT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the hub did not close the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A task over `--max-task-bytes` (measured as JSON, so escapes count what they cost) is
/// refused with 413 naming the limit, alone or in a batch; one at the limit is accepted, and
/// its `task_assign` fits the frame limit the fleet uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_over_the_size_limit_get_413_and_assigns_fit_the_frame_limit() {
    let (frame, task_bytes) = (8192usize, 8192 - 256);
    let hub = Hub::start(
        HubOpts::default()
            .max_frame_bytes(frame as u64)
            .flag("--max-task-bytes", task_bytes),
    )
    .await;
    let api = hub.api();
    // Description, metadata and capabilities count as JSON: the description's quotes, `{}` and
    // `[]` are 6 bytes; a control character is 6 more (`\u0001`), an `x` one.
    let content = task_bytes - 6;
    let at_limit = "\u{1}".repeat(content / 6) + &"x".repeat(content % 6);
    let over = format!("{at_limit}x");
    let refused = api
        .request(
            Method::POST,
            "/api/tasks",
            Some(api.admin_token()),
            Some(&json!({"description": over})),
        )
        .await;
    assert_eq!(refused.status, 413, "{}", refused.text);
    assert!(
        refused.error().contains("--max-task-bytes"),
        "{}",
        refused.text
    );
    assert_eq!(refused.body["limit"], task_bytes, "{}", refused.text);

    let batch = json!({"tasks": [{"description": "small"}, {"description": over}]});
    let refused = api
        .request(
            Method::POST,
            "/api/tasks/batch",
            Some(api.admin_token()),
            Some(&batch),
        )
        .await;
    assert_eq!(refused.status, 413, "{}", refused.text);
    assert!(
        refused.error().starts_with("tasks[1]: "),
        "{}",
        refused.text
    );
    assert_eq!(
        api.list_tasks("").await["count"],
        0,
        "a refused batch adds nothing"
    );

    // A body larger than any task within the limit could need is refused before it is read.
    let body_limit = task_bytes * 6 + (64 << 10);
    let huge = format!("{{\"description\":\"{}\"}}", "y".repeat(body_limit));
    let refused = api
        .request_raw(Method::POST, "/api/tasks", Some(api.admin_token()), &huge)
        .await;
    assert_eq!(refused.status, 413, "{}", refused.text);
    assert_eq!(refused.body["limit"], body_limit, "{}", refused.text);

    let id = api.submit(json!({"description": at_limit})).await;
    let mut agent = hub.agent("a1").await;
    let assign = agent.expect_type("task_assign").await;
    assert_eq!(assign["task_id"], id);
    assert_eq!(assign["description"], at_limit);
    // The hub writes JSON as serde_json does: the same value encodes to the same length.
    let text = serde_json::to_string(&assign).unwrap();
    assert!(
        text.len() <= frame,
        "task_assign of {} bytes over the frame limit {frame}",
        text.len()
    );
}

/// `serve` refuses a task limit whose `task_assign` would not fit the frame limit, naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_limit_that_does_not_fit_the_frame_limit_is_refused_at_start() {
    let dir = std::env::temp_dir().join(crate::harness::hub::unique_name("switchyard-limits"));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .args(["--max-frame-bytes", "65536", "--max-task-bytes", "65536"])
        .env(
            "SWITCHYARD_ADMIN_TOKEN",
            "limits-admin-token-limits-admin-token",
        )
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STATE_TIMEOUT, output)
        .await
        .expect("serve exits")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--max-task-bytes 65536 does not fit --max-frame-bytes 65536"),
        "{stderr}"
    );
}

/// Listing pages stop at `--max-page-bytes` (but hold one task at least) and hand on a cursor:
/// following it yields every task exactly once. Small pages are as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_are_bounded_by_bytes() {
    let hub = Hub::start(HubOpts::default().flag("--max-page-bytes", 20_000)).await;
    let api = hub.api();
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(
            api.submit(json!({"description": format!("{n}{}", "d".repeat(6000))}))
                .await,
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..ids.len() {
        let query = match &cursor {
            Some(cursor) => format!("limit=100&cursor={cursor}"),
            None => "limit=100".to_string(),
        };
        let page = api.list_tasks(&query).await;
        let tasks = page["tasks"].as_array().unwrap();
        assert!(
            !tasks.is_empty() && tasks.len() <= 3,
            "{} tasks in a page",
            tasks.len()
        );
        assert!(serde_json::to_string(tasks).unwrap().len() <= 20_000 + 200);
        seen.extend(tasks.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every task once, in order");
    // One task larger than a page still comes, alone.
    let hub = Hub::start(HubOpts::default().flag("--max-page-bytes", 100)).await;
    hub.api()
        .submit(json!({"description": "x".repeat(500)}))
        .await;
    hub.api().submit(json!({"description": "y"})).await;
    let page = hub.api().list_tasks("").await;
    assert_eq!(page["count"], 1, "{page}");
    assert!(page["next_cursor"].is_string(), "{page}");
}

/// Item 13: a `complete_by` already past is refused with 400 naming the field, and queues
/// nothing; alone or in a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_in_the_past_is_refused() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let past = now_ms() - 1_000;
    let refused = api
        .post(
            "/api/tasks",
            &json!({"description": "late", "complete_by": past}),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.error().starts_with("complete_by is in the past"),
        "{}",
        refused.text
    );
    let batch =
        json!({"tasks": [{"description": "ok"}, {"description": "late", "complete_by": past}]});
    let refused = api.post("/api/tasks/batch", &batch).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.error().starts_with("tasks[1]: complete_by"),
        "{}",
        refused.text
    );
    let stats = api.task_stats().await;
    assert_eq!(stats["by_status"]["queued"], 0, "{stats}");
    assert_eq!(stats["dead_letter"], 0, "{stats}");
    let future = now_ms() + 3_600_000;
    api.submit(json!({"description": "on time", "complete_by": future}))
        .await;
}

/// Item 2: past `--max-connections` open sockets, a new connection is answered 503 naming the
/// limit; once one closes, the hub serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_get_503() {
    let hub = Hub::start(HubOpts::default().flag("--max-connections", 3)).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(hub.addr()).await.unwrap());
    }
    // The hub counts a socket once it accepts it; the three are accepted by the time a
    // fourth's answer comes back, whatever the order the kernel queued them in.
    let answer = poll_until("a 503 for the fourth connection", STATE_TIMEOUT, || async {
        let answer = raw_exchange(
            &hub,
            b"GET /health HTTP/1.1\r\nhost: hub\r\nconnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 503") {
            Ok(answer)
        } else {
            Err(answer)
        }
    })
    .await;
    assert!(answer.contains("too_many_connections"), "{answer}");
    assert!(answer.contains("\"limit\":3"), "{answer}");
    drop(idle);
    poll_until(
        "/health once the idle sockets closed",
        STATE_TIMEOUT,
        || async {
            let answer = raw_exchange(
                &hub,
                b"GET /health HTTP/1.1\r\nhost: hub\r\nconnection: close\r\n\r\n",
            )
            .await;
            if answer.starts_with("HTTP/1.1 200") {
                Ok(())
            } else {
                Err(answer)
            }
        },
    )
    .await;
}

/// Item 2: one address may hold `--max-unidentified-per-ip` WebSocket connections that have not
/// identified; the next upgrade is refused with 429. Identifying frees the place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unidentified_websockets_per_address_are_capped() {
    let hub = Hub::start(HubOpts::default().flag("--max-unidentified-per-ip", 2)).await;
    let token = hub.api().create_token("a1").await;
    let mut first = Agent::open(&hub.ws_url(), "a1", &token).await;
    let _second = Agent::open(&hub.ws_url(), "a2", "unused").await;
    match tokio_tungstenite::connect_async(hub.ws_url()).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("too_many_unidentified_connections"), "{body}");
        }
        other => panic!("a third unidentified connection: expected 429, got {other:?}"),
    }
    first.identify().await;
    let _third = Agent::open(&hub.ws_url(), "a3", "unused").await;
}

/// Item 2: a connection that does not identify is closed at `--identify-timeout-ms`, however
/// busily it pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identify_timeout_is_not_extended_by_pings() {
    let hub = Hub::start(HubOpts::default().flag("--identify-timeout-ms", 500)).await;
    let mut agent = Agent::open(&hub.ws_url(), "a1", "unused").await;
    let opened = Instant::now();
    // Pings every 50 ms or so, for 10 s at most: without the timeout nothing would close it.
    let give_up = opened + Duration::from_secs(10);
    while Instant::now() < give_up {
        agent.send(json!({"type": "ping"})).await;
        let window = Instant::now() + Duration::from_millis(50);
        loop {
            let left = window.saturating_duration_since(Instant::now());
            match agent.next_incoming(left).await {
                Some(Incoming::Close(code, reason)) => {
                    assert_eq!((code, reason.as_str()), (Some(1008), "identify_timeout"));
                    assert!(opened.elapsed() >= Duration::from_millis(450));
                    return;
                }
                Some(Incoming::Json(frame)) => {
                    assert_eq!(frame["error"], "not_identified", "{frame}")
                }
                None => break,
                Some(other) => panic!("unexpected {other:?}"),
            }
        }
    }
    panic!("still open {:?} after it opened", opened.elapsed());
}

/// Item 2: a client that starts a request and never finishes its headers (slowloris) is
/// disconnected at `--header-read-timeout-ms`; so is one that sends nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let hub = Hub::start(HubOpts::default().flag("--header-read-timeout-ms", 300)).await;
    for start in [&b"GET /health HTTP/1.1\r\nhost: hub\r\n"[..], b""] {
        let opened = Instant::now();
        let answer = raw_exchange(&hub, start).await;
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(opened.elapsed() >= Duration::from_millis(250));
    }
    assert_eq!(hub.api().health().await["status"], "ok");
}

/// Item 8: bad bearer tokens from one address are answered more slowly, then the address is
/// refused (429 with Retry-After), valid token or not, and WebSocket upgrades too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_slowed_then_refused() {
    let hub = Hub::start(
        HubOpts::default()
            .flag("--auth-max-failures", 5)
            .flag("--auth-lockout-ms", 60_000),
    )
    .await;
    let api = hub.api();
    for n in 1..=5 {
        let started = Instant::now();
        let answer = api
            .request(Method::GET, "/api/tasks", Some("guess"), None)
            .await;
        assert_eq!(answer.status, 401, "guess {n}: {}", answer.text);
        if n == 5 {
            // Past three failures each answer waits 100 ms more: the fifth waits 200 ms.
            assert!(
                started.elapsed() >= Duration::from_millis(200),
                "{:?}",
                started.elapsed()
            );
        }
    }
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = client
        .get(format!("http://{}/api/tasks", hub.addr()))
        .bearer_auth(api.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 429);
    let retry_after: u64 = answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "too_many_auth_failures", "{body}");
    match tokio_tungstenite::connect_async(hub.ws_url()).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 429),
        other => panic!("a WebSocket from a locked-out address: expected 429, got {other:?}"),
    }
    assert_eq!(
        api.health().await["status"],
        "ok",
        "public routes still answer"
    );
}

/// Item 8 over WebSocket: failed identifies count too; the one that reaches the limit closes
/// the connection with 1008 `too_many_auth_failures`, and HTTP is refused as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_identifies_lock_the_address_out() {
    let hub = Hub::start(HubOpts::default().flag("--auth-max-failures", 3)).await;
    let mut agent = Agent::open(&hub.ws_url(), "a1", "wrong").await;
    for _ in 0..2 {
        agent
            .send(json!({"type": "identify", "agent_id": "a1", "token": "wrong"}))
            .await;
        agent.expect_error("invalid_token").await;
    }
    agent
        .send(json!({"type": "identify", "agent_id": "a1", "token": "wrong"}))
        .await;
    let (code, reason, _) = agent.expect_close(STATE_TIMEOUT).await;
    assert_eq!(
        (code, reason.as_str()),
        (Some(1008), "too_many_auth_failures")
    );
    let answer = hub.api().get("/api/tasks").await;
    assert_eq!(answer.status, 429, "{}", answer.text);
}

/// Item 14: a client that hangs up in the middle of a request is logged at debug, never at
/// ERROR (anyone could fill the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_request_is_not_an_error() {
    let hub = Hub::start(HubOpts::default().env("RUST_LOG", "info,switchyard::server=debug")).await;
    for _ in 0..3 {
        let mut stream = TcpStream::connect(hub.addr()).await.unwrap();
        stream
            .write_all(b"POST /api/tasks HTTP/1.1\r\nhost: hub\r\ncontent-le")
            .await
            .unwrap();
        drop(stream);
    }
    hub.wait_for_log(&["HTTP connection ended with an error"])
        .await;
    assert_eq!(hub.api().health().await["status"], "ok");
    let errors: Vec<String> = hub
        .log_lines()
        .into_iter()
        .filter(|line| line.contains("ERROR"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
