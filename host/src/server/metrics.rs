//! `GET /metrics`: the hub's gauges and counters in the Prometheus text format.

use super::reply::ApiResult;
use super::AppState;
use crate::engine::Command;
use crate::task::ReclaimReason;
use warp::Reply;

/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Prometheus text, one metric family after another.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            self.0.push_str(&format!("{name}{labels} {value}\n"));
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help, vec![(String::new(), value)]);
    }

    fn counter(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "counter", help, vec![(String::new(), value)]);
    }
}

/// Public, like `/health`. What cannot be read right now (the task counts when the store fails,
/// the policy's counters when the engine has stopped) is left out rather than failing the scrape.
pub async fn metrics(state: &AppState) -> ApiResult {
    let mut out = Exposition::default();
    out.gauge(
        "switchyard_agents_connected",
        "Agents with an identified connection.",
        state.engine.agents_connected() as f64,
    );
    let commits = state.engine.commit_stats();
    out.counter(
        "switchyard_commits_total",
        "Store transactions committed.",
        commits.commits() as f64,
    );
    out.counter(
        "switchyard_commit_failures_total",
        "Store transactions that failed; their requests were refused.",
        commits.failures() as f64,
    );
    out.counter(
        "switchyard_task_writes_total",
        "Task records written by committed transactions.",
        commits.task_writes() as f64,
    );
    out.counter(
        "switchyard_commit_seconds_total",
        "Time spent writing and committing transactions, disk flushes included.",
        commits.seconds(),
    );
    out.counter(
        "switchyard_tasks_pruned_total",
        "Finished tasks (completed, cancelled, dead-lettered) deleted after their retention (serve --retain).",
        commits.pruned() as f64,
    );
    let engine = state.engine.stats();
    out.gauge(
        "switchyard_capability_names",
        "Capability names interned for the policy; names no longer in use are released as the table grows.",
        engine.capability_names() as f64,
    );
    let reclaims = ReclaimReason::ALL
        .iter()
        .map(|r| (format!("{{reason=\"{r}\"}}"), engine.reclaims(*r) as f64))
        .collect();
    out.family(
        "switchyard_reclaims_total",
        "counter",
        "Tasks taken back from their agents, by reason (each counts toward poison).",
        reclaims,
    );
    out.counter(
        "switchyard_agent_replacements_total",
        "Connections replaced by a newer one with the same agent id (two processes, one id).",
        engine.replacements() as f64,
    );
    if let Ok(stats) = state
        .store
        .read_txn()
        .and_then(|txn| state.store.stats(&txn))
    {
        let samples = stats
            .by_status
            .iter()
            .map(|(status, count)| (format!("{{status=\"{status}\"}}"), *count as f64))
            .collect();
        out.family("switchyard_tasks", "gauge", "Tasks by status.", samples);
    }
    if let Ok(status) = state
        .engine
        .ask(|reply| Command::PolicyStatus { reply })
        .await
    {
        if let Ok(serde_json::Value::Object(counters)) = serde_json::to_value(&status.counters) {
            for (name, value) in counters {
                if let Some(value) = value.as_f64() {
                    out.counter(
                        &format!("switchyard_policy_{name}"),
                        "Policy counter since the policy was loaded.",
                        value,
                    );
                }
            }
        }
    }
    Ok(warp::reply::with_header(out.0, "content-type", CONTENT_TYPE).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_samples() {
        let mut out = Exposition::default();
        out.gauge("g", "A gauge.", 2.0);
        out.counter("c", "A counter.", 0.5);
        out.family(
            "t",
            "gauge",
            "By status.",
            vec![("{status=\"queued\"}".into(), 3.0)],
        );
        assert_eq!(
            out.0,
            "# HELP g A gauge.\n# TYPE g gauge\ng 2\n\
             # HELP c A counter.\n# TYPE c counter\nc 0.5\n\
             # HELP t By status.\n# TYPE t gauge\nt{status=\"queued\"} 3\n"
        );
    }
}
