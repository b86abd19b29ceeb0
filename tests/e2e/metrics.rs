//! `/metrics` after a short load: the output parses as OpenMetrics text, every histogram has
//! cumulative buckets ending in `+Inf` that agree with its count, and the counts agree with
//! what the test did (tasks assigned per priority, runs reported, one dead letter).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{policy_counter, policy_file, poll_until, Agent, Hub, HubOpts};

/// One sample line: the series (name and labels as written) and its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: String,
    value: f64,
}

/// A strict reading of the text format: `# HELP`/`# TYPE` lines, samples whose name belongs to
/// the family last typed (with the suffixes its type allows), and a closing `# EOF`.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut family: Option<(String, String)> = None;
    let lines = text.lines();
    let mut saw_eof = false;
    for line in lines {
        assert!(!saw_eof, "text after # EOF: {line}");
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unknown type in {line}"
            );
            family = Some((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                assert!(labels.ends_with('}'), "unclosed labels: {line}");
                (name, labels.trim_end_matches('}'))
            }
            None => (series, ""),
        };
        let (family, kind) = family.as_ref().expect("a sample before any # TYPE");
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            _ => &["_bucket", "_sum", "_count", "_created"],
        };
        assert!(
            allowed.iter().any(|s| name == format!("{family}{s}")),
            "{name} is not a sample of {kind} {family}"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels: labels.to_string(),
            value,
        });
    }
    assert!(saw_eof, "no # EOF at the end");
    samples
}

/// A histogram's series with `labels` (besides `le`): its buckets in order, sum and count.
fn histogram(samples: &[Sample], name: &str, labels: &str) -> (Vec<(String, f64)>, f64, f64) {
    let same = |s: &Sample| {
        let rest: Vec<&str> = s
            .labels
            .split(',')
            .filter(|l| !l.is_empty() && !l.starts_with("le="))
            .collect();
        rest.join(",") == labels
    };
    let buckets: Vec<(String, f64)> = samples
        .iter()
        .filter(|s| s.name == format!("{name}_bucket") && same(s))
        .map(|s| (s.labels.clone(), s.value))
        .collect();
    let one = |suffix: &str| {
        samples
            .iter()
            .find(|s| s.name == format!("{name}{suffix}") && same(s))
            .unwrap_or_else(|| panic!("no {name}{suffix}{{{labels}}}"))
            .value
    };
    assert!(buckets.len() > 5, "{name}{{{labels}}} has too few buckets");
    assert!(
        buckets.last().unwrap().0.contains("le=\"+Inf\""),
        "{name}{{{labels}}} does not end with +Inf: {buckets:?}"
    );
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{name}{{{labels}}} buckets are not cumulative: {buckets:?}"
    );
    let count = one("_count");
    assert_eq!(
        buckets.last().unwrap().1,
        count,
        "{name}: +Inf bucket != count"
    );
    (buckets, one("_sum"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_histograms_and_counts_after_a_short_load() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut agent = hub.agent("metered").await;

    // Four tasks at priority 2 and three at priority 0, each run to completion one at a time.
    let mut by_priority = HashMap::new();
    for (priority, n) in [(2u8, 4), (0, 3)] {
        for i in 0..n {
            api.submit(
                json!({"description": format!("load {priority}/{i}"), "priority": priority}),
            )
            .await;
            let a = agent.expect_assign().await;
            agent.accept(&a).await;
            agent.complete(&a.task_id, a.generation).await;
            *by_priority.entry(priority).or_insert(0.0) += 1.0;
        }
    }
    // One task failed until it is dead-lettered (max_retries 1: two attempts).
    let dead = api
        .submit(json!({"description": "fail me", "max_retries": 1}))
        .await;
    let mut attempts = 0.0;
    for attempt in 0.. {
        assert!(attempt < 5, "not dead-lettered after {attempt} failures");
        let a = agent.expect_assign().await;
        assert_eq!(a.task_id, dead);
        agent.accept(&a).await;
        agent
            .send(json!({"type": "task_failed", "task_id": dead, "generation": a.generation, "error": "no"}))
            .await;
        agent.expect_type("task_ack").await;
        attempts += 1.0;
        if api.get_task(&dead).await["status"] == "dead_letter" {
            break;
        }
    }

    let resp = api.get("/metrics").await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let samples = parse(&resp.text);

    // The failing task has the default priority, normal (2).
    let (waits, _, p2) = histogram(&samples, "switchyard_task_wait_seconds", "priority=\"2\"");
    assert!(
        waits.iter().any(|(le, n)| !le.contains("+Inf") && *n > 0.0),
        "no wait fell in a finite bucket: {waits:?}"
    );
    let (_, _, p0) = histogram(&samples, "switchyard_task_wait_seconds", "priority=\"0\"");
    let (_, _, p3) = histogram(&samples, "switchyard_task_wait_seconds", "priority=\"3\"");
    assert_eq!(p2, by_priority[&2] + attempts);
    assert_eq!(p0, by_priority[&0]);
    assert_eq!(p3, 0.0);

    let (_, _, runs) = histogram(&samples, "switchyard_task_run_seconds", "");
    assert_eq!(
        runs,
        7.0 + attempts,
        "every completion and failure is a run"
    );

    let (_, _, decisions) = histogram(&samples, "switchyard_policy_decision_seconds", "");
    assert!(decisions >= 7.0 + attempts, "{decisions} decisions");

    let (buckets, sum, commits) = histogram(&samples, "switchyard_commit_seconds", "");
    assert!(commits >= 8.0, "{commits} commits");
    assert!(sum > 0.0);
    assert!(
        buckets
            .iter()
            .any(|(le, n)| !le.contains("+Inf") && *n > 0.0),
        "no commit fell in a finite bucket: {buckets:?}"
    );

    let value = |name: &str, labels: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}}"))
            .value
    };
    assert_eq!(value("switchyard_dead_letters_total", ""), 1.0);
    assert_eq!(value("switchyard_tasks", "status=\"completed\""), 7.0);
    assert_eq!(value("switchyard_tasks", "status=\"dead_letter\""), 1.0);
    assert_eq!(value("switchyard_agents_connected", ""), 1.0);
    assert_eq!(
        value("switchyard_policy_assignments_total", ""),
        7.0 + attempts
    );
    assert_eq!(value("switchyard_policy_fallbacks_total", ""), 0.0);
    assert_eq!(
        value("switchyard_reclaims_total", "reason=\"run_timeout\""),
        0.0
    );
}

/// The value of one counter or gauge series in a scrape (0 when the series is absent).
async fn scrape(hub: &Hub) -> Vec<Sample> {
    let resp = hub.api().get("/metrics").await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    parse(&resp.text)
}

fn series(samples: &[Sample], name: &str, labels: &str) -> f64 {
    samples
        .iter()
        .find(|s| s.name == name && s.labels == labels)
        .unwrap_or_else(|| panic!("no {name}{{{labels}}}"))
        .value
}

/// Each kind of refusal counts: agent frames by code, policy proposals by reason, limits by
/// which one; reassignments count; and agents are counted by state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_count_by_kind_and_agents_by_state() {
    let hub = Hub::start(
        HubOpts::default()
            .flag("--max-task-bytes", 1024)
            .flag("--max-connections", 8)
            .flag("--max-unidentified-per-ip", 2)
            .flag("--auth-max-failures", 2)
            .flag("--auth-lockout-ms", 60_000),
    )
    .await;
    let api = hub.api();
    let before = scrape(&hub).await;
    let frame = |samples: &[Sample], code: &str| {
        series(
            samples,
            "switchyard_agent_frame_refusals_total",
            &format!("code=\"{code}\""),
        )
    };
    let limit = |samples: &[Sample], limit: &str| {
        series(
            samples,
            "switchyard_limit_refusals_total",
            &format!("limit=\"{limit}\""),
        )
    };
    for code in ["invalid_json", "not_identified", "invalid_token"] {
        assert_eq!(frame(&before, code), 0.0, "{code}");
    }

    // Agent frames: one not identified, one bad token (refused by the engine), then, once
    // identified, invalid JSON and a report about a task that does not exist.
    let mut stranger = Agent::open(&hub.ws_url(), "stranger", "not-a-token").await;
    stranger
        .send(json!({"type": "task_accepted", "task_id": "task-1"}))
        .await;
    stranger.expect_error("not_identified").await;
    stranger
        .send(json!({"type": "identify", "agent_id": "stranger", "token": "not-a-token"}))
        .await;
    stranger.expect_error("invalid_token").await;
    stranger.close().await;
    let mut agent = hub.agent("counted").await;
    agent.send_text("{not json").await;
    agent.expect_error("invalid_json").await;
    agent
        .send(json!({"type": "task_complete", "task_id": "task-00000000000000ff", "generation": 1, "result": {}}))
        .await;
    agent.expect_error("task_complete_failed: not_found").await;

    // A reassignment: a task failed once is queued again and assigned again.
    let task = api
        .submit(json!({"description": "fail once", "max_retries": 2}))
        .await;
    let first = agent.expect_assign().await;
    agent.accept(&first).await;
    agent
        .send(json!({"type": "task_failed", "task_id": task, "generation": first.generation, "error": "once"}))
        .await;
    agent.expect_type("task_ack").await;
    let again = agent.expect_assign().await;
    assert_eq!(again.task_id, task);
    agent.accept(&again).await;

    let during = scrape(&hub).await;
    assert_eq!(frame(&during, "not_identified"), 1.0);
    assert_eq!(frame(&during, "invalid_token"), 1.0);
    assert_eq!(frame(&during, "invalid_json"), 1.0);
    assert_eq!(frame(&during, "task_complete_failed"), 1.0);
    assert_eq!(series(&during, "switchyard_reassignments_total", ""), 1.0);
    // The agent works on the task; the one that gave a bad token never identified.
    assert_eq!(
        series(&during, "switchyard_agents", "state=\"working\""),
        1.0
    );
    assert_eq!(series(&during, "switchyard_agents", "state=\"idle\""), 0.0);

    // Proposals: the hostile policy adds bad proposals to every decision; the hub's count by
    // reason adds up to the policy's count of rejected proposals.
    api.put_policy(&json!({"path": policy_file("hostile"), "config": {"mode": "bad_proposals"}}))
        .await
        .expect(200, "load the hostile policy");
    agent.complete(&task, again.generation).await;
    let next = api.submit(json!({"description": "after the swap"})).await;
    let assigned = agent.expect_assign().await;
    assert_eq!(assigned.task_id, next);
    let rejected = policy_counter(&api.policy().await, "rejected_proposals") as f64;
    assert!(rejected > 0.0);
    let samples = scrape(&hub).await;
    let by_reason: Vec<f64> = [
        "unknown_task",
        "unknown_agent",
        "task_not_queued",
        "agent_not_ready",
        "missing_capability",
    ]
    .iter()
    .map(|reason| {
        series(
            &samples,
            "switchyard_proposal_refusals_total",
            &format!("reason=\"{reason}\""),
        )
    })
    .collect();
    assert_eq!(by_reason.iter().sum::<f64>(), rejected, "{by_reason:?}");
    assert!(by_reason[0] > 0.0 && by_reason[1] > 0.0, "{by_reason:?}");

    // Limits: a task over --max-task-bytes (413), a third unidentified WebSocket (429).
    let big = api
        .request(
            reqwest::Method::POST,
            "/api/tasks",
            Some(api.admin_token()),
            Some(&json!({"description": "x".repeat(2048)})),
        )
        .await;
    assert_eq!(big.status, 413, "{}", big.text);
    let mut waiting = Vec::new();
    for id in ["waiting-1", "waiting-2"] {
        waiting.push(Agent::open(&hub.ws_url(), id, "unused").await);
    }
    match tokio_tungstenite::connect_async(hub.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429)
        }
        other => panic!("a third unidentified connection: expected 429, got {other:?}"),
    }
    for mut socket in waiting {
        socket.close().await;
    }
    // The auth throttle: bad tokens until the address is locked out (the failed identify above
    // counted as one), then even the admin token is refused.
    let mut locked = false;
    for _ in 0..5 {
        let answer = api
            .request(reqwest::Method::GET, "/api/tasks", Some("guess"), None)
            .await;
        if answer.status == 429 {
            locked = true;
            break;
        }
        assert_eq!(answer.status, 401, "{}", answer.text);
    }
    assert!(locked, "never locked out");
    let refused_admin = api
        .request(
            reqwest::Method::GET,
            "/api/tasks",
            Some(api.admin_token()),
            None,
        )
        .await;
    assert_eq!(refused_admin.status, 429, "{}", refused_admin.text);
    // Past --max-connections: idle sockets until a request is answered 503.
    let mut idle = Vec::new();
    let mut refused = false;
    for _ in 0..16 {
        let mut probe = TcpStream::connect(hub.addr()).await.unwrap();
        probe
            .write_all(b"GET /health HTTP/1.1\r\nhost: hub\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), probe.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the hub did not answer");
        if String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503") {
            refused = true;
            break;
        }
        idle.push(TcpStream::connect(hub.addr()).await.unwrap());
    }
    assert!(refused, "never refused past --max-connections");
    drop(idle);
    // /metrics needs no token, so the locked-out address can still read it once the idle
    // sockets are gone.
    let after = poll_until(
        "a scrape after the cap",
        Duration::from_secs(10),
        || async {
            let resp = hub.api().get("/metrics").await;
            if resp.status == 200 {
                Ok(parse(&resp.text))
            } else {
                Err(format!("{} {}", resp.status, resp.text))
            }
        },
    )
    .await;
    assert!(limit(&after, "connections") >= 1.0);
    assert_eq!(limit(&after, "too_large"), 1.0);
    assert_eq!(limit(&after, "unidentified_per_ip"), 1.0);
    // The 429s of this test: the lockout's first, and the admin token's.
    assert_eq!(limit(&after, "auth_throttled"), 2.0);
}
