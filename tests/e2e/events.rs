//! `GET /api/events` and `switchyard watch`: events leave after their commit, in order, resume
//! without gap, and a subscriber that does not read is dropped without slowing the hub.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::wire::events::{Parser, Received};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{Hub, HubOpts, RECV_TIMEOUT};

/// One subscriber, read as a test would read it.
struct Stream {
    response: reqwest::Response,
    parser: Parser,
    ready: std::collections::VecDeque<Received>,
}

impl Stream {
    async fn open(hub: &Hub, query: &str) -> Stream {
        let response = get(
            hub,
            &format!("/api/events{query}"),
            Some(hub.api().admin_token()),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Stream {
            response,
            parser: Parser::default(),
            ready: Default::default(),
        }
    }

    /// The next event; `None` once the stream has ended.
    async fn next(&mut self) -> Option<Received> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let chunk = tokio::time::timeout(RECV_TIMEOUT, self.response.chunk())
                .await
                .expect("an event within the timeout")
                .expect("the stream reads")?;
            self.ready
                .extend(self.parser.feed(&String::from_utf8_lossy(&chunk)));
        }
    }

    async fn expect(&mut self, kind: &str) -> (Option<u64>, Value) {
        let event = self.next().await.expect("the stream goes on");
        assert_eq!(event.event, kind, "{event:?}");
        (
            event.id,
            serde_json::from_str(&event.data).expect("data is JSON"),
        )
    }

    /// Task events until one of `task_id` says `event`, keeping those of `task_id`.
    async fn task_until(&mut self, task_id: &str, event: &str) -> Vec<(u64, Value)> {
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let (id, data) = self.expect_any().await;
            if data["task_id"] == task_id {
                let done = data["event"] == event;
                seen.push((id.expect("task events have ids"), data));
                if done {
                    return seen;
                }
            }
        }
        panic!("no {event} event for {task_id}; saw {seen:?}");
    }

    async fn expect_any(&mut self) -> (Option<u64>, Value) {
        let event = self.next().await.expect("the stream goes on");
        (
            event.id,
            serde_json::from_str(&event.data).expect("data is JSON"),
        )
    }
}

async fn get(hub: &Hub, path: &str, token: Option<&str>) -> reqwest::Response {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client.get(format!("http://{}{path}", hub.addr()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the hub answers")
}

/// A task's events arrive after its HTTP answer, in order, with ids growing by one; agents'
/// connections and departures are events too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_events_arrive_in_order_after_its_answer() {
    // No `stats` events: this test reads the kinds it expects one after another.
    let hub = Hub::start(HubOpts::default().flag("--stats-interval", 0)).await;
    let mut stream = Stream::open(&hub, "").await;
    let (id, hello) = stream.expect("hello").await;
    assert_eq!(id, None);
    assert_eq!(hello["role"], "admin");
    assert_eq!(hello["seq"], 0);

    let mut agent = hub.agent("ev-agent").await;
    let (_, connected) = stream.expect("agent").await;
    assert_eq!(connected["agent_id"], "ev-agent");
    assert_eq!(connected["event"], "connected");
    assert_eq!(connected["fsm_state"], "idle");

    let task_id = hub.api().submit(json!({"description": "watched"})).await;
    let assign = agent.expect_assign().await;
    assert_eq!(assign.task_id, task_id);
    agent.accept(&assign).await;
    agent.complete(&task_id, assign.generation).await;
    let events = stream.task_until(&task_id, "completed").await;
    let names: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["event"].as_str().unwrap())
        .collect();
    // Submission and assignment may share a commit: then one event names the assignment.
    assert!(
        names[0] == "submitted" || names[0] == "assigned",
        "{names:?}"
    );
    assert!(names.contains(&"accepted"), "{names:?}");
    let statuses: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.last(), Some(&"completed"));
    let (last, completed) = events.last().unwrap();
    assert_eq!(completed["assigned_to"], "ev-agent");
    for pair in events.windows(2) {
        assert!(pair[0].0 < pair[1].0, "ids grow: {events:?}");
    }

    agent.close().await;
    let (gone_id, gone) = stream.expect("agent").await;
    assert_eq!(gone["event"], "disconnected");
    assert_eq!(gone["fsm_state"], "offline");
    assert!(gone_id.unwrap() > *last);
}

/// `?after=` and `Last-Event-ID` replay exactly the missed events; a point the ring no longer
/// holds gets `reset` first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_exactly_the_missed_events_or_resets() {
    // No `stats` events: they would take ids between the tasks' and fill the small ring.
    let hub = Hub::start(
        HubOpts::default()
            .flag("--event-ring", 4)
            .flag("--stats-interval", 0),
    )
    .await;
    let mut live = Stream::open(&hub, "").await;
    live.expect("hello").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let task_id = hub
            .api()
            .submit(json!({"description": format!("r{i}")}))
            .await;
        let (id, event) = live.expect("task").await;
        assert_eq!(event["task_id"], task_id);
        ids.push(id.unwrap());
    }
    assert_eq!(ids, (ids[0]..ids[0] + 6).collect::<Vec<_>>());

    // The ring holds the last four: resume after the third.
    let mut resumed = Stream::open(&hub, &format!("?after={}", ids[2])).await;
    let (_, hello) = resumed.expect("hello").await;
    assert_eq!(hello["seq"], ids[5]);
    assert_eq!(hello["oldest"], ids[2]);
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(resumed.expect("task").await.0.unwrap());
    }
    assert_eq!(replayed, ids[3..].to_vec());
    // Then live ones, with no gap.
    hub.api().submit(json!({"description": "after"})).await;
    assert_eq!(resumed.expect("task").await.0, Some(ids[5] + 1));

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(format!("http://{}/api/events", hub.addr()))
        .bearer_auth(hub.api().admin_token())
        .header("Last-Event-ID", ids[4].to_string())
        .send()
        .await
        .unwrap();
    let mut by_header = Stream {
        response,
        parser: Parser::default(),
        ready: Default::default(),
    };
    by_header.expect("hello").await;
    assert_eq!(by_header.expect("task").await.0, Some(ids[5]));

    let mut old = Stream::open(&hub, &format!("?after={}", ids[0])).await;
    old.expect("hello").await;
    let (id, reset) = old.expect("reset").await;
    assert_eq!(id, None);
    assert_eq!(reset["reason"], "resume_point_too_old");
    assert_eq!(reset["oldest"], ids[3]);

    let bad = get(
        &hub,
        "/api/events?after=soon",
        Some(hub.api().admin_token()),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(body.to_string().contains("after"), "{body}");
}

/// A subscriber that does not read is dropped with `dropped`, and submissions keep being
/// answered promptly meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_dropped_without_slowing_the_hub() {
    let hub = Hub::start(HubOpts::default().flag("--event-buffer", 8)).await;
    let mut slow = Stream::open(&hub, "").await;
    let mut dropped = false;
    for round in 0..60 {
        let tasks: Vec<Value> = (0..200)
            .map(|i| json!({"description": format!("load {round}-{i}")}))
            .collect();
        let started = Instant::now();
        hub.api().submit_batch(tasks).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a batch took {:?}",
            started.elapsed()
        );
        if hub
            .log_lines()
            .iter()
            .any(|line| line.contains("event subscriber too slow"))
        {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the slow subscriber was never dropped");
    let mut last = None;
    while let Some(event) = slow.next().await {
        last = Some(event);
    }
    let last = last.expect("the slow stream had events");
    assert_eq!(last.event, "dropped");
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data, json!({"reason": "subscriber_too_slow", "limit": 8}));
}

/// Without a token the stream is refused with 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_needs_a_token() {
    let hub = Hub::start(HubOpts::default()).await;
    assert_eq!(get(&hub, "/api/events", None).await.status(), 401);
    assert_eq!(get(&hub, "/api/events", Some("nope")).await.status(), 401);
    let token = hub.api().create_token("reader").await;
    let mut stream = Stream {
        response: get(&hub, "/api/events", Some(&token)).await,
        parser: Parser::default(),
        ready: Default::default(),
    };
    assert_eq!(stream.expect("hello").await.1["role"], "agent");
}

/// `switchyard watch` prints a line for a submitted task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_a_line_per_event() {
    let hub = Hub::start(HubOpts::default().flag("--stats-interval", 0)).await;
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["watch", "--hub", &format!("http://{}", hub.addr())])
        .args(["--token", hub.api().admin_token()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("watch starts");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let hello = tokio::time::timeout(RECV_TIMEOUT, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("a hello line");
    assert!(hello.contains("hello"), "{hello}");
    let task_id = hub.api().submit(json!({"description": "seen"})).await;
    let line = tokio::time::timeout(RECV_TIMEOUT, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("a task line");
    assert!(
        line.contains(&format!("task {task_id} submitted")),
        "{line}"
    );
    assert!(line.contains("status=queued"), "{line}");
    watch.kill().await.unwrap();
}

/// The next event of `kind`, skipping others (at most 1,000 of them).
async fn next_of(stream: &mut Stream, kind: &str) -> Value {
    for _ in 0..1000 {
        let event = stream.next().await.expect("the stream goes on");
        if event.event == kind {
            return serde_json::from_str(&event.data).expect("data is JSON");
        }
    }
    panic!("no {kind} event among 1000");
}

/// The first `stats` event (of at most 100) for which `wanted` holds; the last one seen in the
/// panic message otherwise.
async fn stats_until(stream: &mut Stream, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = next_of(stream, "stats").await;
        if wanted(&last) {
            return last;
        }
    }
    panic!("no stats event with {what}; the last said {last}");
}

/// `stats` events count what the test did: tasks by status and queued by priority, agents by
/// state, assignments with their waits, completions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_events_count_what_happened() {
    let hub = Hub::start(HubOpts::default().flag("--stats-interval", "200ms")).await;
    let mut stream = Stream::open(&hub, "").await;
    stream.expect("hello").await;
    for priority in ["urgent", "low", "low"] {
        hub.api()
            .submit(json!({"description": "counted", "priority": priority}))
            .await;
    }
    let queued = stats_until(&mut stream, "three queued", |s| {
        s["by_status"]["queued"] == 3
    })
    .await;
    assert_eq!(
        queued["queued_by_priority"],
        json!([1, 0, 0, 2]),
        "{queued}"
    );
    assert_eq!(queued["by_status"]["completed"], 0, "{queued}");
    assert_eq!(queued["connected"], 0, "{queued}");
    for field in ["p50", "p99", "max"] {
        assert!(queued["wait_ms"][field].is_u64(), "{queued}");
    }

    let mut agent = hub.agent("counted-agent").await;
    let first = agent.expect_assign().await;
    agent.accept(&first).await;
    agent.complete(&first.task_id, first.generation).await;
    // The urgent one first; then the agent is given the next and holds it, unaccepted.
    let second = agent.expect_assign().await;
    let after = stats_until(&mut stream, "one completed and one assigned", |s| {
        s["by_status"]["completed"] == 1 && s["by_status"]["assigned"] == 1
    })
    .await;
    assert_eq!(after["by_status"]["queued"], 1, "{after}");
    assert_eq!(after["queued_by_priority"], json!([0, 0, 0, 1]), "{after}");
    assert_eq!(after["connected"], 1, "{after}");
    assert_eq!(after["agents"]["assigned"], 1, "{after}");
    assert_eq!(after["agents"]["idle"], 0, "{after}");
    assert_ne!(second.task_id, first.task_id);

    // Rates and waits cover the interval since the event before: some event saw the
    // assignments and the completion.
    let mut stream = Stream::open(&hub, "").await;
    stream.expect("hello").await;
    agent.accept(&second).await;
    agent.complete(&second.task_id, second.generation).await;
    let third = agent.expect_assign().await;
    let busy = stats_until(&mut stream, "an assignment and a completion", |s| {
        s["assigned_per_s"].as_f64().unwrap() > 0.0 && s["completed_per_s"].as_f64().unwrap() > 0.0
    })
    .await;
    // The last task was queued since the start of the test, at least as long as the test ran
    // to here; its wait is the interval's maximum.
    assert!(busy["wait_ms"]["max"].as_u64().unwrap() > 0, "{busy}");
    assert_eq!(busy["by_status"]["queued"], 0, "{busy}");
    assert_eq!(busy["by_status"]["completed"], 2, "{busy}");
    let task = hub.api().get_task(&third.task_id).await;
    assert_eq!(task["status"], "assigned");
}

/// An agent going idle → assigned → working → idle gives `state` events in that order, each
/// naming the task it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_state_changes_are_events_in_order() {
    let hub = Hub::start(HubOpts::default()).await;
    let mut stream = Stream::open(&hub, "").await;
    stream.expect("hello").await;
    let mut agent = hub.agent("stately").await;
    let connected = next_of(&mut stream, "agent").await;
    assert_eq!(connected["event"], "connected");
    assert_eq!(connected["fsm_state"], "idle");
    let task_id = hub.api().submit(json!({"description": "stateful"})).await;
    let assign = agent.expect_assign().await;
    agent.accept(&assign).await;
    agent.complete(&task_id, assign.generation).await;
    let mut states = Vec::new();
    while states.len() < 3 {
        let event = next_of(&mut stream, "agent").await;
        assert_eq!(event["agent_id"], "stately", "{event}");
        assert_eq!(event["event"], "state", "{event}");
        states.push((
            event["fsm_state"].as_str().unwrap().to_owned(),
            event["current_task_id"].as_str().map(str::to_owned),
        ));
    }
    let held = Some(task_id.clone());
    assert_eq!(
        states,
        [
            ("assigned".to_owned(), held.clone()),
            ("working".to_owned(), held),
            ("idle".to_owned(), None),
        ]
    );
    agent.close().await;
    let gone = next_of(&mut stream, "agent").await;
    assert_eq!(gone["event"], "disconnected");
    assert_eq!(gone["fsm_state"], "offline");
}

/// Swapping the policy gives a `policy` event naming the one now in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_swap_is_an_event() {
    let hub = Hub::start(HubOpts::default()).await;
    let mut stream = Stream::open(&hub, "").await;
    stream.expect("hello").await;
    let in_force = hub
        .api()
        .put_policy(&json!({"builtin": "fair"}))
        .await
        .expect(200, "swap to fair");
    let event = next_of(&mut stream, "policy").await;
    assert_eq!(event["event"], "swapped", "{event}");
    assert_eq!(event["source"], "builtin:fair", "{event}");
    assert_eq!(event["digest"], in_force["digest"], "{event}");
    assert_eq!(event["name"], in_force["name"], "{event}");
    assert_eq!(event["fallback_active"], false, "{event}");
}
