//! An agent's state machine: `idle` → `assigned` (task pushed) → `working` (accepted) → `idle`,
//! and `offline` while it has no connection. An agent holds at most one task; an offline agent
//! may still hold one through its reconnect grace.

use crate::engine::outbox::Outbox;
use crate::wire::TaskId;
use serde_json::Value;
use std::net::SocketAddr;

/// [`FSM_STATES`]' index of `offline`, the state of an agent first seen.
pub const OFFLINE: usize = 3;

/// The task an agent holds, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    Nothing,
    /// Pushed, not yet accepted.
    Assigned(TaskId),
    /// Accepted.
    Working(TaskId),
}

impl Holding {
    pub fn task(self) -> Option<TaskId> {
        match self {
            Holding::Nothing => None,
            Holding::Assigned(id) | Holding::Working(id) => Some(id),
        }
    }
}

/// The live WebSocket connection an agent speaks through.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Unique per connection in this process, so a late event from a superseded connection is
    /// recognised and ignored.
    pub id: u64,
    pub outbox: Outbox,
    /// When the socket was accepted (ms).
    pub connected_at: u64,
    pub peer: Option<SocketAddr>,
}

/// The state machine's states as the HTTP API and the event stream name them, in the order of
/// [`Agent::fsm_index`].
pub const FSM_STATES: [&str; 4] = ["idle", "assigned", "working", "offline"];

/// What the event stream and the agent counts last took an agent to be: its state (an index
/// into [`FSM_STATES`]) and the task it holds.
pub type Reported = (usize, Option<TaskId>);

#[derive(Debug)]
pub struct Agent {
    pub agent_id: String,
    /// The integer handle policies know the agent by.
    pub handle: u32,
    pub name: String,
    pub status: Value,
    pub capabilities: Vec<String>,
    /// Interned `capabilities`, sorted.
    pub capability_handles: Vec<u32>,
    pub connection: Option<Connection>,
    pub holding: Holding,
    /// Missed an acceptance deadline: offered nothing until it next sends a frame.
    pub unresponsive: bool,
    /// Rejected a task: offered nothing until this time (or until it completes or fails one).
    pub cooldown_until: Option<u64>,
    pub idle_since: u64,
    /// When the agent was given the task it holds (meaningless while it holds none): a finished
    /// task is charged for the time it held its agent.
    pub held_since: u64,
    /// Whether the agent has been idle since its connection was accepted (it has been
    /// assigned nothing on this connection): such agents queue for work in connection order.
    pub fresh: bool,
    /// When the agent last reported progress on the task it holds (or accepted it).
    pub last_progress_at: u64,
    /// How often another connection replaced this agent's (two processes with one id).
    pub replacements: u64,
    pub last_replaced_at: Option<u64>,
    /// When a replacement was last logged, so a flapping pair logs once a minute.
    pub replacement_logged_at: Option<u64>,
    /// Counts disconnects, so a grace timer set for an earlier one is recognised as stale.
    pub disconnects: u64,
    /// Whether the policy has been told this agent is ready.
    pub ready: bool,
    /// The state last counted and published (`EngineState::settle_agents`).
    pub reported: Reported,
    /// Whether the agent is in `EngineState::touched_agents`, to be settled.
    pub touched: bool,
}

impl Agent {
    pub fn new(agent_id: String, handle: u32, now: u64) -> Agent {
        Agent {
            name: agent_id.clone(),
            agent_id,
            handle,
            status: Value::Null,
            capabilities: Vec::new(),
            capability_handles: Vec::new(),
            connection: None,
            holding: Holding::Nothing,
            unresponsive: false,
            cooldown_until: None,
            idle_since: now,
            held_since: now,
            fresh: false,
            last_progress_at: now,
            replacements: 0,
            last_replaced_at: None,
            replacement_logged_at: None,
            disconnects: 0,
            ready: false,
            reported: (OFFLINE, None),
            touched: false,
        }
    }

    /// Whether the agent can be offered a task now.
    pub fn can_take_work(&self, now: u64) -> bool {
        self.connection.is_some()
            && self.holding == Holding::Nothing
            && !self.unresponsive
            && self.cooldown_until.is_none_or(|until| now >= until)
    }

    /// The state machine's state as the HTTP API names it.
    pub fn fsm_state(&self) -> &'static str {
        FSM_STATES[self.fsm_index()]
    }

    /// The state machine's state, as an index into [`FSM_STATES`].
    pub fn fsm_index(&self) -> usize {
        match (&self.connection, self.holding) {
            (None, _) => OFFLINE,
            (Some(_), Holding::Nothing) => 0,
            (Some(_), Holding::Assigned(_)) => 1,
            (Some(_), Holding::Working(_)) => 2,
        }
    }

    /// What the event stream should show of the agent now.
    pub fn current(&self) -> Reported {
        (self.fsm_index(), self.holding.task())
    }

    pub fn hold(&mut self, task: TaskId, now: u64) {
        debug_assert_eq!(
            self.holding,
            Holding::Nothing,
            "an agent holds one task at most"
        );
        self.holding = Holding::Assigned(task);
        self.held_since = now;
        self.fresh = false;
    }

    /// The agent accepted `task`; false if it does not hold it.
    pub fn accept(&mut self, task: TaskId) -> bool {
        match self.holding {
            Holding::Assigned(held) | Holding::Working(held) if held == task => {
                self.holding = Holding::Working(task);
                true
            }
            _ => false,
        }
    }

    /// The agent no longer holds `task` (finished, taken back, cancelled).
    /// Returns how long it held the task, in milliseconds (0 if it did not hold it).
    pub fn release(&mut self, task: TaskId, now: u64) -> u64 {
        if self.holding.task() == Some(task) {
            self.holding = Holding::Nothing;
            self.idle_since = now;
            now.saturating_sub(self.held_since)
        } else {
            0
        }
    }

    /// Marks the agent to be settled after the batch (`engine::observe`): its state may have
    /// changed. Only the first mark of a batch pushes onto `touched`.
    pub fn touch(&mut self, touched: &mut Vec<u32>) {
        if !self.touched {
            self.touched = true;
            touched.push(self.handle);
        }
    }

    /// Replaces the connection, returning the one it supersedes.
    pub fn connect(&mut self, connection: Connection) -> Option<Connection> {
        self.unresponsive = false;
        self.connection.replace(connection)
    }

    /// Drops connection `id` if it is the current one.
    pub fn disconnect(&mut self, id: u64) -> bool {
        if self.connection.as_ref().is_some_and(|c| c.id == id) {
            self.connection = None;
            self.disconnects += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected() -> Agent {
        let mut agent = Agent::new("a".into(), 0, 10);
        let (outbox, _inbox) = Outbox::channel();
        agent.connect(Connection {
            id: 1,
            outbox,
            connected_at: 10,
            peer: None,
        });
        agent
    }

    #[test]
    fn idle_assigned_working_idle() {
        let mut agent = connected();
        assert_eq!(agent.fsm_state(), "idle");
        assert!(agent.can_take_work(10));
        agent.hold(TaskId(7), 12);
        assert_eq!(agent.fsm_state(), "assigned");
        assert!(!agent.can_take_work(10));
        assert!(
            !agent.accept(TaskId(8)),
            "cannot accept a task it does not hold"
        );
        assert!(agent.accept(TaskId(7)));
        assert_eq!(agent.fsm_state(), "working");
        assert_eq!(agent.release(TaskId(7), 20), 8, "held from 12 to 20");
        assert_eq!(agent.release(TaskId(7), 30), 0, "no longer held");
        assert_eq!(agent.fsm_state(), "idle");
        assert_eq!(agent.idle_since, 20);
    }

    #[test]
    fn offline_agent_keeps_its_task_and_stale_disconnects_are_ignored() {
        let mut agent = connected();
        agent.hold(TaskId(1), 10);
        assert!(!agent.disconnect(99), "not the current connection");
        assert!(agent.disconnect(1));
        assert_eq!(agent.fsm_state(), "offline");
        assert_eq!(agent.holding.task(), Some(TaskId(1)));
        assert!(!agent.can_take_work(10));
    }

    #[test]
    fn unresponsive_and_cooling_down_agents_take_no_work() {
        let mut agent = connected();
        agent.unresponsive = true;
        assert!(!agent.can_take_work(10));
        agent.unresponsive = false;
        agent.cooldown_until = Some(50);
        assert!(!agent.can_take_work(49));
        assert!(agent.can_take_work(50));
    }

    #[test]
    fn a_new_connection_supersedes_and_clears_unresponsive() {
        let mut agent = connected();
        agent.unresponsive = true;
        let (outbox, _inbox) = Outbox::channel();
        let old = agent.connect(Connection {
            id: 2,
            outbox,
            connected_at: 11,
            peer: None,
        });
        assert_eq!(old.map(|c| c.id), Some(1));
        assert!(!agent.unresponsive);
    }
}
