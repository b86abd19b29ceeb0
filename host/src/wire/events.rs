//! The event stream of `GET /api/events` (Server-Sent Events): what each event says, and how
//! it is framed. Shared by the hub, `switchyard watch` and the dashboard.

use serde::{Deserialize, Serialize};

/// The `event:` name of each kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Hello,
    Task,
    Agent,
    Policy,
    Stats,
    Reset,
    Dropped,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Hello => "hello",
            EventKind::Task => "task",
            EventKind::Agent => "agent",
            EventKind::Policy => "policy",
            EventKind::Stats => "stats",
            EventKind::Reset => "reset",
            EventKind::Dropped => "dropped",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }
}

/// The first event of every stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The last sequence number published so far (0: none yet).
    pub seq: u64,
    /// The oldest sequence number still replayable with `after`.
    pub oldest: u64,
    /// The caller's role: `admin`, `agent` or `client`.
    pub role: String,
    /// The tenant the stream is limited to (a client's or agent's); none: every tenant (admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub at: u64,
}

/// A task changed, after the commit that made the change durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub task_id: String,
    pub status: String,
    pub priority: u8,
    pub assigned_to: Option<String>,
    pub generation: u64,
    pub fairness_key: String,
    /// The task's tenant (empty from a hub from before tenants).
    #[serde(default)]
    pub tenant: String,
    /// The history event the change added (the last one, when one commit added several).
    pub event: String,
    pub at: u64,
}

/// What happened to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentChange {
    Connected,
    State,
    Disconnected,
}

/// An agent connected, changed state or left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub agent_id: String,
    pub fsm_state: String,
    pub current_task_id: Option<String>,
    pub capabilities: Vec<String>,
    pub connected_at: Option<u64>,
    pub last_seen: u64,
    pub event: AgentChange,
}

/// What happened to the policy in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyChange {
    /// An admin swapped it (`PUT /api/policy`), and the swap is committed.
    Swapped,
    /// The crash-loop breaker tripped: the hub runs the native fallback from now on.
    Fallback,
    /// The hub started on the native fallback because the policy in force when it stopped
    /// could not be loaded (`startup_fallback` in `GET /api/policy` says why).
    StartupFallback,
    /// A swap's commit failed: the policy it replaced is in force again.
    Restored,
}

/// The policy in force changed or fell back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyEvent {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub source: String,
    pub fallback_active: bool,
    pub event: PolicyChange,
}

/// Agents by state machine state (as `fsm_state` names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentStates {
    pub idle: u64,
    pub assigned: u64,
    pub working: u64,
    pub offline: u64,
}

/// Queued-to-assigned waits of the tasks assigned since the last `stats` event, in
/// milliseconds (nearest rank); all 0 when none was assigned (`assigned_per_s` is then 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WaitSummary {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// Aggregates for dashboards that must not fetch lists: sent once a second when something
/// changed, and every 10 s regardless. Kept by running counts in the engine, never by a scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsEvent {
    pub at: u64,
    /// Tasks by status, every status named (`queued`, `assigned`, `completed`, `dead_letter`,
    /// `cancelled`), as `GET /api/tasks/stats` counts them.
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Queued tasks by priority, 0 (highest) to 3.
    pub queued_by_priority: [u64; 4],
    pub agents: AgentStates,
    /// Agents with an identified connection.
    pub connected: u64,
    /// Assignments per second since the last `stats` event.
    pub assigned_per_s: f64,
    /// Tasks completed per second since the last `stats` event.
    pub completed_per_s: f64,
    pub wait_ms: WaitSummary,
}

/// Why a stream must be reloaded from snapshots (`reset`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reset {
    /// `resume_point_too_old`.
    pub reason: String,
    pub oldest: u64,
}

/// Why a stream ended (`dropped`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    /// `subscriber_too_slow`.
    pub reason: String,
    /// The subscriber's buffer, in events.
    pub limit: usize,
}

/// An event the hub publishes with a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Task(TaskEvent),
    Agent(AgentEvent),
    Policy(PolicyEvent),
    Stats(StatsEvent),
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Task(_) => EventKind::Task,
            Event::Agent(_) => EventKind::Agent,
            Event::Policy(_) => EventKind::Policy,
            Event::Stats(_) => EventKind::Stats,
        }
    }

    /// The tenant whose streams show the event; none for an agent's change, a policy change
    /// and the hub's aggregates, which only streams of every tenant (admins') show: the
    /// aggregates count every tenant's tasks.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Event::Task(event) => Some(&event.tenant),
            Event::Agent(_) | Event::Policy(_) | Event::Stats(_) => None,
        }
    }

    /// The `data:` line: one line of JSON.
    pub fn data(&self) -> String {
        let json = match self {
            Event::Task(event) => serde_json::to_string(event),
            Event::Agent(event) => serde_json::to_string(event),
            Event::Policy(event) => serde_json::to_string(event),
            Event::Stats(event) => serde_json::to_string(event),
        };
        json.expect("event payloads serialize")
    }
}

/// One event as it goes on the wire: `id:` (when it has a sequence number), `event:`, `data:`
/// and the blank line that ends it.
pub fn frame(seq: Option<u64>, kind: EventKind, data: &str) -> String {
    let mut text = String::with_capacity(data.len() + 40);
    if let Some(seq) = seq {
        text.push_str("id: ");
        text.push_str(&seq.to_string());
        text.push('\n');
    }
    text.push_str("event: ");
    text.push_str(kind.as_str());
    text.push_str("\ndata: ");
    text.push_str(data);
    text.push_str("\n\n");
    text
}

/// The keepalive comment sent after this many seconds of silence.
pub const KEEPALIVE_SECS: u64 = 15;
/// The keepalive comment line.
pub const KEEPALIVE: &str = ": keepalive\n\n";

/// One event read back from a stream (by `switchyard watch` and the tests).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Received {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// Reads events out of SSE text as it arrives: feed it chunks, take whole events.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: String,
    current: Received,
}

impl Parser {
    /// Adds `chunk` and returns the events it completed.
    pub fn feed(&mut self, chunk: &str) -> Vec<Received> {
        self.buffer.push_str(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.current.event.is_empty() || !self.current.data.is_empty() {
                    events.push(std::mem::take(&mut self.current));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = value.parse().ok(),
                "event" => self.current.event = value.to_owned(),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_back() {
        let mut parser = Parser::default();
        let text = format!(
            "{}{}{}",
            frame(None, EventKind::Hello, "{\"seq\":0}"),
            KEEPALIVE,
            frame(Some(7), EventKind::Task, "{\"a\":1}")
        );
        let (first, second) = text.split_at(13);
        let mut events = parser.feed(first);
        events.extend(parser.feed(second));
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "hello");
        assert_eq!(events[0].id, None);
        assert_eq!(events[1].id, Some(7));
        assert_eq!(events[1].data, "{\"a\":1}");
        assert_eq!(EventKind::parse("dropped"), Some(EventKind::Dropped));
        assert_eq!(EventKind::parse("nope"), None);
    }
}
