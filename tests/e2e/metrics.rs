//! `/metrics` after a short load: the output parses as OpenMetrics text, every histogram has
//! cumulative buckets ending in `+Inf` that agree with its count, and the counts agree with
//! what the test did (tasks assigned per priority, runs reported, one dead letter).

use std::collections::HashMap;

use serde_json::json;

use crate::harness::{Hub, HubOpts};

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
