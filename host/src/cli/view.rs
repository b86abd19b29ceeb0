//! How the client commands show what the hub answered: a table for people by default, or with
//! `--json` the hub's JSON as it answered, for scripts.

use super::table::{cut, rfc3339, Style, Table};
use clap::Args;
use serde_json::Value;

/// The output flag of the commands that print tables.
#[derive(Debug, Args, Clone, Copy)]
pub struct OutputArgs {
    /// Print the hub's JSON as it answered instead of a table (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Prints `value` as JSON with `--json`, else as `render` lays it out.
pub(super) fn show(
    output: OutputArgs,
    value: &Value,
    render: fn(&Value, Style) -> String,
) -> anyhow::Result<()> {
    if output.json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", render(value, Style::detect()));
    }
    Ok(())
}

/// A field as text: strings as they are, `null` or missing as `-`, others as JSON.
fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.is_empty() => "-".into(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// An event's details as `key=value` pairs (`-` when none), shorter to read than JSON.
fn details(value: &Value) -> String {
    match value {
        Value::Object(map) if !map.is_empty() => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null | Value::Object(_) => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A timestamp field (ms since the Unix epoch) as RFC 3339 UTC, `-` when absent.
fn time(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_u64)
        .map_or_else(|| "-".into(), rfc3339)
}

/// A priority (0-3) by name.
fn priority(value: &Value) -> String {
    match value.get("priority").and_then(Value::as_u64) {
        Some(0) => "urgent".into(),
        Some(1) => "high".into(),
        Some(2) => "normal".into(),
        Some(3) => "low".into(),
        _ => text(value, "priority"),
    }
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `name: value` lines, names aligned, values cut to the width.
fn fields(style: Style, pairs: &[(&str, String)]) -> String {
    let pad = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let value = match style.width {
            Some(width) => cut(value, width.saturating_sub(pad + 2).max(8)),
            None => value.clone(),
        };
        let label = format!("{key}:{:width$}", "", width = pad - key.len());
        out.push_str(&format!("{} {value}\n", style.bold(&label)));
    }
    out
}

/// A table, or a line saying there is nothing to show.
fn table_or(table: &Table, style: Style, nothing: &str) -> String {
    if table.is_empty() {
        format!("{}\n", style.dim(nothing))
    } else {
        table.render(style)
    }
}

/// `switchyard tasks`: one task a line, in submission order.
pub(super) fn tasks(value: &Value, style: Style) -> String {
    let mut table = Table::new([
        "ID",
        "STATUS",
        "PRIORITY",
        "TENANT",
        "AGENT",
        "RETRIES",
        "CREATED",
        "DESCRIPTION",
    ]);
    for task in list(value, "tasks") {
        table.row([
            text(task, "id"),
            text(task, "status"),
            priority(task),
            text(task, "tenant"),
            text(task, "assigned_to"),
            text(task, "retry_count"),
            time(task, "created_at"),
            text(task, "description"),
        ]);
    }
    let mut out = table_or(&table, style, "no tasks");
    if let Some(cursor) = value.get("next_cursor").filter(|c| !c.is_null()) {
        let cursor = cursor
            .as_str()
            .map_or_else(|| cursor.to_string(), str::to_owned);
        out.push_str(&style.dim(&format!("more tasks follow: --cursor {cursor}")));
        out.push('\n');
    }
    out
}

/// `switchyard task ID`: the task's fields, then its history as a timeline, oldest first.
pub(super) fn task(value: &Value, style: Style) -> String {
    let mut out = fields(
        style,
        &[
            ("id", text(value, "id")),
            ("status", text(value, "status")),
            ("priority", priority(value)),
            ("description", text(value, "description")),
            ("assigned to", text(value, "assigned_to")),
            ("assigned at", time(value, "assigned_at")),
            ("generation", text(value, "generation")),
            (
                "retries",
                format!(
                    "{} of {}",
                    text(value, "retry_count"),
                    text(value, "max_retries")
                ),
            ),
            ("take-backs", text(value, "reclaim_count")),
            ("capabilities", text(value, "needed_capabilities")),
            ("fairness key", text(value, "fairness_key")),
            ("last error", text(value, "last_error")),
            ("complete by", time(value, "complete_by")),
            ("submitted by", text(value, "submitted_by")),
            ("tenant", text(value, "tenant")),
            ("created", time(value, "created_at")),
            ("updated", time(value, "updated_at")),
            ("metadata", text(value, "metadata")),
            ("result", text(value, "result")),
        ],
    );
    out.push('\n');
    out.push_str(&style.bold("History"));
    out.push('\n');
    let mut timeline = Table::new(["TIME", "EVENT", "DETAILS"]);
    // The hub keeps the history newest first; a timeline reads oldest first.
    for entry in list(value, "history").iter().rev() {
        timeline.row([
            time(entry, "timestamp"),
            text(entry, "event"),
            details(entry.get("details").unwrap_or(&Value::Null)),
        ]);
    }
    out.push_str(&table_or(&timeline, style, "no history"));
    out
}

/// `switchyard agents`: one connected agent a line.
pub(super) fn agents(value: &Value, style: Style) -> String {
    let mut table = Table::new([
        "AGENT",
        "NAME",
        "STATE",
        "TASK",
        "CAPABILITIES",
        "CONNECTED",
    ]);
    for agent in list(value, "agents") {
        table.row([
            text(agent, "agent_id"),
            text(agent, "name"),
            text(agent, "fsm_state"),
            text(agent, "current_task_id"),
            text(agent, "capabilities"),
            time(agent, "connected_at"),
        ]);
    }
    table_or(&table, style, "no agents connected")
}

/// `switchyard token list`: agent ids, roles, tenants and token prefixes.
pub(super) fn tokens(value: &Value, style: Style) -> String {
    let mut table = Table::new(["AGENT", "ROLE", "TENANT", "TOKEN PREFIX"]);
    for token in list(value, "tokens") {
        table.row([
            text(token, "agent_id"),
            text(token, "role"),
            text(token, "tenant"),
            text(token, "token_prefix"),
        ]);
    }
    table_or(&table, style, "no tokens")
}

/// The counters of a policy (`GET /api/policy`'s `counters`) as fields.
fn counters(counters: &Value) -> Vec<(&'static str, String)> {
    let latency = counters.get("call_latency_us").unwrap_or(&Value::Null);
    vec![
        ("decisions", text(counters, "decisions")),
        ("assignments", text(counters, "assignments")),
        ("rejected", text(counters, "rejected_proposals")),
        ("traps", text(counters, "traps")),
        ("timeouts", text(counters, "timeouts")),
        ("fallbacks", text(counters, "fallbacks")),
        (
            "call latency",
            format!(
                "{} calls, mean {} µs, max {} µs",
                text(latency, "count"),
                text(latency, "mean"),
                text(latency, "max")
            ),
        ),
    ]
}

/// `switchyard policy show`: the policy in force and its counters.
pub(super) fn policy(value: &Value, style: Style) -> String {
    let mut pairs = vec![
        ("name", text(value, "name")),
        ("version", text(value, "version")),
        ("contract", text(value, "contract")),
        ("digest", text(value, "digest")),
        ("source", text(value, "source")),
        ("config", text(value, "config")),
        ("loaded", time(value, "loaded_at")),
        ("fallback", fallback(value)),
    ];
    pairs.extend(counters(value.get("counters").unwrap_or(&Value::Null)));
    fields(style, &pairs)
}

fn fallback(policy: &Value) -> String {
    match policy.get("fallback_active").and_then(Value::as_bool) {
        Some(true) => "ACTIVE: the native greedy policy schedules".into(),
        Some(false) => "no".into(),
        None => "-".into(),
    }
}

/// `switchyard audit`: one admin action a line, newest first.
pub(super) fn audit(value: &Value, style: Style) -> String {
    let mut table = Table::new(["ID", "TIME", "ACTOR", "TOKEN", "ACTION", "TARGET"]);
    for record in list(value, "records") {
        table.row([
            text(record, "id"),
            time(record, "at"),
            text(record, "actor"),
            text(record, "token_prefix"),
            text(record, "action"),
            text(record, "target"),
        ]);
    }
    let mut out = table_or(&table, style, "no audit records");
    if let Some(cursor) = value.get("next_cursor").filter(|c| !c.is_null()) {
        out.push_str(&style.dim(&format!("older records: --cursor {cursor}")));
        out.push('\n');
    }
    out
}

/// `switchyard policy shadow show`: the candidate, its agreement and its groups.
pub(super) fn shadow(value: &Value, style: Style) -> String {
    let agreement = value.get("agreement").unwrap_or(&Value::Null);
    let stopped = match value.get("stopped") {
        Some(stop) if !stop.is_null() => format!(
            "{} at {}: {}",
            text(stop, "reason"),
            time(stop, "at"),
            text(stop, "detail")
        ),
        _ => "-".into(),
    };
    let mut out = fields(
        style,
        &[
            (
                "candidate",
                format!("{} {}", text(value, "name"), text(value, "version")),
            ),
            ("contract", text(value, "contract")),
            ("source", text(value, "source")),
            ("digest", text(value, "digest")),
            ("started", time(value, "started_at")),
            ("state", text(value, "state")),
            ("stopped", stopped),
            ("compared", text(value, "decisions_compared")),
            ("failed", text(value, "decisions_failed")),
            (
                "agreement",
                format!(
                    "{} agreed of {} live and {} shadow assignments (ratio {})",
                    text(agreement, "agreed"),
                    text(agreement, "live_assignments"),
                    text(agreement, "shadow_assignments"),
                    text(agreement, "ratio")
                ),
            ),
            ("refused", text(value, "refused")),
            ("traps", text(value, "traps")),
            ("timeouts", text(value, "timeouts")),
        ],
    );
    let mut groups = Table::new([
        "GROUP",
        "LIVE",
        "SHADOW",
        "LIVE SHARE",
        "SHADOW SHARE",
        "DIFF",
    ]);
    if let Some(map) = value.get("groups").and_then(Value::as_object) {
        for (name, group) in map {
            groups.row([
                name.clone(),
                text(group, "live_assignments"),
                text(group, "shadow_assignments"),
                text(group, "live_share"),
                text(group, "shadow_share"),
                text(group, "difference_points"),
            ]);
        }
    }
    if !groups.is_empty() {
        out.push('\n');
        out.push_str(&groups.render(style));
    }
    out
}

/// `switchyard status`: the routes it summarises, as the hub answered each (its `--json`).
pub(super) fn status(value: &Value, style: Style) -> String {
    let health = value.get("health").unwrap_or(&Value::Null);
    let stats = value.get("stats").unwrap_or(&Value::Null);
    let policy_in_force = value.get("policy").unwrap_or(&Value::Null);
    let mut out = fields(
        style,
        &[
            ("hub", text(value, "hub")),
            ("health", text(health, "status")),
            ("agents connected", text(health, "agents_connected")),
        ],
    );
    out.push('\n');
    out.push_str(&style.bold("Tasks"));
    out.push('\n');
    let mut by_status = Table::new(["STATUS", "TASKS"]);
    for name in [
        "queued",
        "assigned",
        "completed",
        "dead_letter",
        "cancelled",
    ] {
        let count = stats.get("by_status").unwrap_or(&Value::Null);
        by_status.row([name.to_owned(), count_of(count, name)]);
    }
    out.push_str(&by_status.render(style));
    out.push('\n');
    let mut queued = Table::new(["PRIORITY", "QUEUED"]);
    let by_priority = stats.get("by_priority").unwrap_or(&Value::Null);
    for name in ["urgent", "high", "normal", "low"] {
        queued.row([name.to_owned(), count_of(by_priority, name)]);
    }
    out.push_str(&queued.render(style));
    out.push('\n');
    out.push_str(&style.bold("Agents"));
    out.push('\n');
    let mut states = Table::new(["STATE", "AGENTS"]);
    let agents = list(value.get("agents").unwrap_or(&Value::Null), "agents");
    for state in ["idle", "assigned", "working", "offline"] {
        let n = agents
            .iter()
            .filter(|a| a.get("fsm_state").and_then(Value::as_str) == Some(state))
            .count();
        states.row([state.to_owned(), n.to_string()]);
    }
    out.push_str(&states.render(style));
    out.push('\n');
    out.push_str(&style.bold("Policy"));
    out.push('\n');
    let mut pairs = vec![
        (
            "in force",
            format!(
                "{} {} ({})",
                text(policy_in_force, "name"),
                text(policy_in_force, "version"),
                text(policy_in_force, "source")
            ),
        ),
        ("fallback", fallback(policy_in_force)),
    ];
    pairs.extend(counters(
        policy_in_force.get("counters").unwrap_or(&Value::Null),
    ));
    out.push_str(&fields(style, &pairs));
    out
}

/// Asks the hub for everything `switchyard status` shows, one object keyed by route.
pub(super) async fn fetch_status(client: &super::ClientArgs) -> anyhow::Result<Value> {
    let health = client.call("GET", "/health", None).await?;
    let stats = client.call("GET", "/api/tasks/stats", None).await?;
    let agents = client.call("GET", "/api/agents", None).await?;
    let policy = client.call("GET", "/api/policy", None).await?;
    Ok(serde_json::json!({
        "hub": client.hub, "health": health, "stats": stats, "agents": agents, "policy": policy,
    }))
}

/// A count from a `{name: n}` map, 0 when the hub left the name out.
fn count_of(map: &Value, name: &str) -> String {
    map.get(name).map_or_else(|| "0".into(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_task_shows_its_history_oldest_first() {
        let task = json!({
            "id": "task-1", "status": "completed", "priority": 1, "description": "d",
            "history": [
                {"event": "completed", "timestamp": 2000, "details": {"agent_id": "a1"}},
                {"event": "submitted", "timestamp": 1000, "details": null},
            ],
        });
        let text = task_text(&task);
        let submitted = text.find("submitted").expect("submitted in the timeline");
        let completed = text.rfind("completed").expect("completed in the timeline");
        assert!(submitted < completed, "{text}");
        assert!(text.contains("priority:     high"), "{text}");
        assert!(
            text.contains("1970-01-01T00:00:01Z  submitted  -"),
            "{text}"
        );
        assert!(text.contains("completed  agent_id=a1"), "{text}");
    }

    fn task_text(value: &Value) -> String {
        task(value, Style::PLAIN)
    }

    #[test]
    fn status_counts_agents_by_state_and_fills_missing_counts() {
        let value = json!({
            "hub": "http://h", "health": {"status": "ok", "agents_connected": 2},
            "stats": {"by_status": {"queued": 5}, "by_priority": {"normal": 5}},
            "agents": {"agents": [{"fsm_state": "idle"}, {"fsm_state": "working"}]},
            "policy": {"name": "greedy", "fallback_active": false, "counters": {}},
        });
        let text = status(&value, Style::PLAIN);
        assert!(text.contains("queued       5"), "{text}");
        assert!(text.contains("cancelled    0"), "{text}");
        assert!(text.contains("idle      1"), "{text}");
        assert!(text.contains("offline   0"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("fallback:") && l.ends_with(" no")),
            "{text}"
        );
    }
}
