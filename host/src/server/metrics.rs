//! `GET /metrics`: the hub's histograms, counters and gauges, encoded by `prometheus-client` in
//! the OpenMetrics text format (which Prometheus scrapes natively).
//!
//! The engine and the writer record into lock-free atomics as things happen
//! (`engine::stats`, `engine::histogram`); a scrape only reads a snapshot of them and encodes
//! it, so measuring never waits on a scrape and a scrape never stops the engine.

use super::reply::ApiResult;
use super::AppState;
use crate::engine::histogram::HistogramSnapshot;
use crate::engine::Command;
use crate::task::ReclaimReason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use warp::Reply;

/// The content type of the OpenMetrics text format that `prometheus-client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label set: names and their values.
type Labels = Vec<(&'static str, String)>;

/// One family's samples. Counter names are given without `_total`, which the encoder adds.
#[derive(Debug)]
enum Samples {
    Counter(Vec<(Option<Labels>, f64)>),
    Gauge(Vec<(Option<Labels>, f64)>),
    Histogram(Vec<(Option<Labels>, HistogramSnapshot)>),
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Samples,
}

/// Everything one scrape read, handed to the registry as a collector.
#[derive(Debug, Default)]
struct Scrape(Vec<Family>);

impl Scrape {
    fn add(&mut self, name: &'static str, help: &'static str, samples: Samples) {
        self.0.push(Family {
            name,
            help,
            samples,
        });
    }

    fn counter(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.add(name, help, Samples::Counter(vec![(None, value)]));
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.add(name, help, Samples::Gauge(vec![(None, value)]));
    }

    fn histogram(&mut self, name: &'static str, help: &'static str, value: HistogramSnapshot) {
        self.add(name, help, Samples::Histogram(vec![(None, value)]));
    }

    fn text(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// One sample's value, encoded as its family's type.
enum Value<'a> {
    Counter(f64),
    Gauge(f64),
    Histogram(&'a HistogramSnapshot),
}

impl Value<'_> {
    fn encode(&self, encoder: &mut MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Value::Counter(v) => encoder.encode_counter::<NoLabelSet, _, u64>(v, None),
            Value::Gauge(v) => encoder.encode_gauge(v),
            Value::Histogram(h) => {
                // The encoder sums the buckets itself: give it each bucket's own count.
                let mut below = 0;
                let per_bucket: Vec<(f64, u64)> = h
                    .buckets
                    .iter()
                    .map(|&(bound, cumulative)| {
                        let own = cumulative.saturating_sub(below);
                        below = cumulative;
                        (bound, own)
                    })
                    .collect();
                encoder.encode_histogram::<NoLabelSet>(h.sum, h.count, &per_bucket, None)
            }
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let (kind, samples): (MetricType, Vec<(&Option<Labels>, Value)>) = match &family.samples
            {
                Samples::Counter(s) => (
                    MetricType::Counter,
                    s.iter().map(|(l, v)| (l, Value::Counter(*v))).collect(),
                ),
                Samples::Gauge(s) => (
                    MetricType::Gauge,
                    s.iter().map(|(l, v)| (l, Value::Gauge(*v))).collect(),
                ),
                Samples::Histogram(s) => (
                    MetricType::Histogram,
                    s.iter().map(|(l, h)| (l, Value::Histogram(h))).collect(),
                ),
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            for (labels, value) in samples {
                match labels {
                    Some(labels) => value.encode(&mut metric.encode_family(labels)?)?,
                    None => value.encode(&mut metric)?,
                }
            }
        }
        Ok(())
    }
}

/// Public, like `/health`. What cannot be read right now (the task counts when the store fails,
/// the policy's counters when the engine has stopped) is left out rather than failing the scrape.
pub async fn metrics(state: &AppState) -> ApiResult {
    let mut out = Scrape::default();
    let engine = state.engine.stats();
    out.gauge(
        "switchyard_agents_connected",
        "Agents with an identified connection.",
        state.engine.agents_connected() as f64,
    );
    let waits = engine
        .wait
        .iter()
        .enumerate()
        .map(|(p, h)| (Some(vec![("priority", p.to_string())]), h.snapshot()))
        .collect();
    out.add(
        "switchyard_task_wait_seconds",
        "Time from queued (or queued again) to assigned, by task priority.",
        Samples::Histogram(waits),
    );
    out.histogram(
        "switchyard_task_run_seconds",
        "Time from the agent accepting a task to its report of complete or failed.",
        engine.run.snapshot(),
    );
    out.histogram(
        "switchyard_policy_decision_seconds",
        "Time of one call of the policy's decide.",
        engine.decision.snapshot(),
    );
    let commits = state.engine.commit_stats();
    out.histogram(
        "switchyard_commit_seconds",
        "Time to write and commit one store transaction, disk flush included.",
        commits.latency.snapshot(),
    );
    out.counter(
        "switchyard_commits",
        "Store transactions committed.",
        commits.commits() as f64,
    );
    out.counter(
        "switchyard_commit_failures",
        "Store transactions that failed; their requests were refused.",
        commits.failures() as f64,
    );
    out.counter(
        "switchyard_task_writes",
        "Task records written by committed transactions.",
        commits.task_writes() as f64,
    );
    out.counter(
        "switchyard_tasks_pruned",
        "Finished tasks (completed, cancelled, dead-lettered) deleted after their retention (serve --retain).",
        commits.pruned() as f64,
    );
    out.counter(
        "switchyard_dead_letters",
        "Tasks moved to the dead letter, their retries or take-backs exhausted.",
        engine.dead_letters() as f64,
    );
    out.gauge(
        "switchyard_capability_names",
        "Capability names interned for the policy; names no longer in use are released as the table grows.",
        engine.capability_names() as f64,
    );
    let reclaims = ReclaimReason::ALL
        .iter()
        .map(|r| {
            (
                Some(vec![("reason", r.to_string())]),
                engine.reclaims(*r) as f64,
            )
        })
        .collect();
    out.add(
        "switchyard_reclaims",
        "Tasks taken back from their agents, by reason (each counts toward poison).",
        Samples::Counter(reclaims),
    );
    let states = engine.agents();
    out.add(
        "switchyard_agents",
        "Agents the hub knows by state: idle, assigned, working, offline (identified once, no connection now).",
        Samples::Gauge(
            [
                ("idle", states.idle),
                ("assigned", states.assigned),
                ("working", states.working),
                ("offline", states.offline),
            ]
            .into_iter()
            .map(|(state, n)| (Some(vec![("state", state.to_owned())]), n as f64))
            .collect(),
        ),
    );
    out.add(
        "switchyard_agent_frame_refusals",
        "Agent frames answered with an error, by code (a refused task report by its prefix).",
        Samples::Counter(
            engine
                .frame_refusals()
                .map(|(code, n)| (Some(vec![("code", code.to_owned())]), n as f64))
                .collect(),
        ),
    );
    out.add(
        "switchyard_proposal_refusals",
        "Policy proposals the hub refused, by reason, since the hub started.",
        Samples::Counter(
            engine
                .proposal_refusals()
                .map(|(reason, n)| (Some(vec![("reason", reason.as_str().to_owned())]), n as f64))
                .collect(),
        ),
    );
    out.add(
        "switchyard_limit_refusals",
        "Requests and connections refused by a limit: connections (503), unidentified_per_ip (429), auth_throttled (429), too_large (413).",
        Samples::Counter(
            super::refusals::counts()
                .map(|(limit, n)| (Some(vec![("limit", limit.as_str().to_owned())]), n as f64))
                .collect(),
        ),
    );
    out.counter(
        "switchyard_reassignments",
        "Tasks assigned again after going back to the queue (a take-back, failure, rejection, or requeue or retry by hand).",
        engine.reassignments() as f64,
    );
    out.counter(
        "switchyard_agent_replacements",
        "Connections replaced by a newer one with the same agent id (two processes, one id).",
        engine.replacements() as f64,
    );
    let refusals = engine
        .quota_refusals()
        .into_iter()
        .map(|(tenant, limit, n)| {
            let labels = vec![("tenant", tenant), ("limit", limit.as_str().to_owned())];
            (Some(labels), n as f64)
        })
        .collect();
    out.add(
        "switchyard_quota_refusals",
        "Submissions refused by a tenant's quota (max_queued or submit_rate), by tenant and limit.",
        Samples::Counter(refusals),
    );
    if let Ok(tenants) = state
        .engine
        .ask(|reply| Command::ListTenants { reply })
        .await
    {
        let by_tenant = |count: fn(&crate::wire::tenant::TenantView) -> u64| {
            tenants
                .iter()
                .map(|t| {
                    (
                        Some(vec![("tenant", t.tenant.name.clone())]),
                        count(t) as f64,
                    )
                })
                .collect()
        };
        out.add(
            "switchyard_tenant_queued",
            "Tasks queued, by tenant.",
            Samples::Gauge(by_tenant(|t| t.queued)),
        );
        out.add(
            "switchyard_tenant_assigned",
            "Tasks assigned to an agent (pushed or running), by tenant.",
            Samples::Gauge(by_tenant(|t| t.assigned)),
        );
    }
    if let Ok(stats) = state
        .store
        .read_txn()
        .and_then(|txn| state.store.stats(&txn))
    {
        let samples = stats
            .by_status
            .iter()
            .map(|(status, count)| (Some(vec![("status", status.to_string())]), *count as f64))
            .collect();
        out.add(
            "switchyard_tasks",
            "Tasks by status.",
            Samples::Gauge(samples),
        );
    }
    if let Ok(status) = state
        .engine
        .ask(|reply| Command::PolicyStatus { reply })
        .await
    {
        let c = &status.counters;
        for (name, help, value) in [
            ("switchyard_policy_decisions", "Calls of the policy's decide since it was loaded.", c.decisions),
            ("switchyard_policy_assignments", "Proposals applied since the policy was loaded.", c.assignments),
            ("switchyard_policy_rejected_proposals", "Proposals the hub refused (task not queued, agent not ready or lacking a capability) since the policy was loaded.", c.rejected_proposals),
            ("switchyard_policy_traps", "Policy calls that trapped since the policy was loaded.", c.traps),
            ("switchyard_policy_timeouts", "Policy calls stopped at their deadline since the policy was loaded.", c.timeouts),
            ("switchyard_policy_fallbacks", "Switches to the native fallback policy after repeated failures (0 or 1: it stays there).", c.fallbacks),
        ] {
            out.counter(name, help, value as f64);
        }
    }
    Ok(warp::reply::with_header(out.text(), "content-type", CONTENT_TYPE).into_response())
}
