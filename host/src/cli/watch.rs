//! `switchyard watch`: prints the event stream live, one line per event, and resumes after a
//! lost connection from the last event it printed.

use super::client::ClientArgs;
use crate::wire::events::{
    AgentEvent, EventKind, Parser, PolicyEvent, Received, StatsEvent, TaskEvent,
};
use clap::Args;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Print each event as one line of JSON (`{"id","event","data"}`) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Start after this event id (as `GET /api/events?after=`).
    #[arg(long)]
    pub after: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Waits before reconnecting, doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub(super) async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let token = args.client.token()?;
    let base = args.client.hub.trim_end_matches('/').to_owned();
    let mut after = args.after;
    let mut backoff = Duration::from_millis(250);
    loop {
        let outcome = tokio::select! {
            outcome = follow(&base, &token, &mut after, args.json) => outcome,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match outcome {
            Ok(Follow::Refused(error)) => return Err(error),
            Ok(Follow::Ended) => backoff = Duration::from_millis(250),
            Err(error) => eprintln!("watch: {error:#}; reconnecting"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Follow {
    /// The stream ended (dropped, or the hub went away): reconnect.
    Ended,
    /// The hub refused the request itself (bad token, say): reconnecting would not help.
    Refused(anyhow::Error),
}

async fn follow(
    base: &str,
    token: &str,
    after: &mut Option<u64>,
    json: bool,
) -> anyhow::Result<Follow> {
    let mut url = format!("{base}/api/events");
    if let Some(after) = after {
        url.push_str(&format!("?after={after}"));
    }
    let mut response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .send()
        .await?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Ok(Follow::Refused(anyhow::anyhow!(
            "the hub refused GET /api/events: {status} {body}"
        )));
    }
    let mut parser = Parser::default();
    let mut hello_seq = None;
    let mut out = std::io::stdout();
    while let Some(chunk) = response.chunk().await? {
        for event in parser.feed(&String::from_utf8_lossy(&chunk)) {
            if let Some(id) = event.id {
                *after = Some(id);
            }
            // Without a resume point, or after a reset, the stream goes on from the hello's
            // last id: what came before is for the hub's snapshots to show.
            if event.event == "hello" {
                hello_seq = serde_json::from_str::<serde_json::Value>(&event.data)
                    .ok()
                    .and_then(|hello| hello["seq"].as_u64());
                if after.is_none() {
                    *after = hello_seq;
                }
            }
            if event.event == "reset" {
                *after = hello_seq;
            }
            let line = if json {
                json_line(&event)
            } else {
                text_line(&event)
            };
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    Ok(Follow::Ended)
}

fn json_line(event: &Received) -> String {
    let data: serde_json::Value =
        serde_json::from_str(&event.data).unwrap_or_else(|_| event.data.clone().into());
    serde_json::json!({ "id": event.id, "event": event.event, "data": data }).to_string()
}

/// One readable line: the id, the kind, and what matters of it.
fn text_line(event: &Received) -> String {
    let id = event.id.map_or_else(|| "-".to_owned(), |id| id.to_string());
    let what = match EventKind::parse(&event.event) {
        Some(EventKind::Task) => match serde_json::from_str::<TaskEvent>(&event.data) {
            Ok(task) => format!(
                "task {} {} status={} priority={} agent={} gen={}",
                task.task_id,
                task.event,
                task.status,
                task.priority,
                task.assigned_to.as_deref().unwrap_or("-"),
                task.generation
            ),
            Err(_) => format!("task {}", event.data),
        },
        Some(EventKind::Agent) => match serde_json::from_str::<AgentEvent>(&event.data) {
            Ok(agent) => format!(
                "agent {} {} state={} task={}",
                agent.agent_id,
                snake(agent.event),
                agent.fsm_state,
                agent.current_task_id.as_deref().unwrap_or("-")
            ),
            Err(_) => format!("agent {}", event.data),
        },
        Some(EventKind::Policy) => match serde_json::from_str::<PolicyEvent>(&event.data) {
            Ok(policy) => format!(
                "policy {} {} {} source={} digest={} fallback={}",
                snake(policy.event),
                policy.name,
                policy.version,
                policy.source,
                short_digest(&policy.digest),
                policy.fallback_active
            ),
            Err(_) => format!("policy {}", event.data),
        },
        Some(EventKind::Stats) => match serde_json::from_str::<StatsEvent>(&event.data) {
            Ok(stats) => stats_line(&stats),
            Err(_) => format!("stats {}", event.data),
        },
        _ => format!("{} {}", event.event, event.data),
    };
    format!("{id:>6} {what}")
}

/// The name a unit enum has on the wire (`swapped`, `connected`).
fn snake(value: impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "?".to_owned(),
    }
}

/// `sha256:` and the first 12 hex digits: enough to tell policies apart on one line.
fn short_digest(digest: &str) -> &str {
    let end = digest
        .char_indices()
        .nth("sha256:".len() + 12)
        .map_or(digest.len(), |(i, _)| i);
    &digest[..end]
}

/// `stats` on one line: tasks by status, queued by priority, agents by state, rates, waits.
fn stats_line(stats: &StatsEvent) -> String {
    let tasks: Vec<String> = stats
        .by_status
        .iter()
        .map(|(status, n)| format!("{status}={n}"))
        .collect();
    let [p0, p1, p2, p3] = stats.queued_by_priority;
    let a = &stats.agents;
    let w = &stats.wait_ms;
    format!(
        "stats tasks {} queued_by_priority={p0}/{p1}/{p2}/{p3} agents idle={} assigned={} \
         working={} offline={} connected={} assigned/s={:.1} completed/s={:.1} \
         wait_ms p50={} p99={} max={}",
        tasks.join(" "),
        a.idle,
        a.assigned,
        a.working,
        a.offline,
        stats.connected,
        stats.assigned_per_s,
        stats.completed_per_s,
        w.p50,
        w.p99,
        w.max
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(kind: &str, data: serde_json::Value) -> Received {
        Received {
            id: Some(4),
            event: kind.to_owned(),
            data: data.to_string(),
        }
    }

    #[test]
    fn new_kinds_print_readably() {
        let policy = received(
            "policy",
            serde_json::json!({"name": "fair", "version": "1.0.0",
                "digest": "sha256:0123456789abcdef0123", "source": "builtin:fair",
                "fallback_active": false, "event": "swapped"}),
        );
        assert_eq!(
            text_line(&policy),
            "     4 policy swapped fair 1.0.0 source=builtin:fair digest=sha256:0123456789ab \
             fallback=false"
        );
        let stats = received(
            "stats",
            serde_json::json!({"at": 1, "by_status": {"queued": 3, "assigned": 1},
                "queued_by_priority": [1, 0, 2, 0],
                "agents": {"idle": 0, "assigned": 1, "working": 0, "offline": 2},
                "connected": 1, "assigned_per_s": 2.0, "completed_per_s": 0.5,
                "wait_ms": {"p50": 3, "p99": 9, "max": 12}}),
        );
        let line = text_line(&stats);
        assert!(
            line.contains("stats tasks assigned=1 queued=3 queued_by_priority=1/0/2/0"),
            "{line}"
        );
        assert!(
            line.contains("agents idle=0 assigned=1 working=0 offline=2 connected=1"),
            "{line}"
        );
        assert!(
            line.contains("assigned/s=2.0 completed/s=0.5 wait_ms p50=3 p99=9 max=12"),
            "{line}"
        );
        let state = received(
            "agent",
            serde_json::json!({"agent_id": "a1", "fsm_state": "working",
                "current_task_id": "task-1", "capabilities": [], "connected_at": 1,
                "last_seen": 2, "event": "state"}),
        );
        assert_eq!(
            text_line(&state),
            "     4 agent a1 state state=working task=task-1"
        );
    }
}
