//! What the engine tells the event stream and the counts of `/metrics` about agents and the
//! policy: an agent's state machine moving, the policy in force changing.
//!
//! An agent's state changes in many places (an assignment, an acceptance, a release, a
//! connection coming or going). Each of them only marks the agent as touched (a flag and a
//! push onto a reused list); after the batch's commands and scheduling pass, [`settle_agents`]
//! compares each touched agent with what was last reported and publishes a `state` event and
//! moves the counts only when its state or task really changed. An agent that went
//! idle → assigned → idle within one batch is thus reported not at all, and the event always
//! shows where the agent ended up.
//!
//! [`settle_agents`]: EngineState::settle_agents

use crate::engine::agent::Agent;
use crate::engine::state::EngineState;
use crate::engine::tally::QUIET_INTERVALS;
use crate::wire::events::{AgentChange, AgentEvent, Event, PolicyChange, PolicyEvent};

fn agent_event(agent: &Agent, change: AgentChange, now: u64) -> Event {
    Event::Agent(AgentEvent {
        agent_id: agent.agent_id.clone(),
        fsm_state: agent.fsm_state().to_owned(),
        current_task_id: agent.holding.task().map(|t| t.to_string()),
        capabilities: agent.capabilities.clone(),
        connected_at: agent.connection.as_ref().map(|c| c.connected_at),
        last_seen: now,
        event: change,
    })
}

impl EngineState {
    /// Publishes `change` (connected, disconnected) of `agent_id` with the batch, and counts
    /// the agent in the state it is in now.
    pub(super) fn agent_event(&mut self, agent_id: &str, change: AgentChange, now: u64) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        let current = agent.current();
        if current.0 != agent.reported.0 {
            self.stats.agent_moved(Some(agent.reported.0), current.0);
        }
        agent.reported = current;
        self.tally.touch();
        self.events.push(agent_event(agent, change, now));
    }

    /// Reports the touched agents whose state or task changed since they were last reported.
    pub(super) fn settle_agents(&mut self, now: u64) {
        if self.touched_agents.is_empty() {
            return;
        }
        let mut touched = std::mem::take(&mut self.touched_agents);
        for handle in touched.drain(..) {
            let Some(agent) = self
                .agent_ids
                .get(handle as usize)
                .and_then(|id| self.agents.get_mut(id))
            else {
                continue;
            };
            agent.touched = false;
            let current = agent.current();
            if current == agent.reported {
                continue;
            }
            if current.0 != agent.reported.0 {
                self.stats.agent_moved(Some(agent.reported.0), current.0);
            }
            agent.reported = current;
            self.tally.touch();
            self.events
                .push(agent_event(agent, AgentChange::State, now));
        }
        // The list keeps its room for the next batch.
        self.touched_agents = touched;
    }

    /// Marks every agent to be settled (after a change to all of them at once).
    pub(super) fn touch_all_agents(&mut self) {
        for agent in self.agents.values_mut() {
            agent.touch(&mut self.touched_agents);
        }
    }

    /// Publishes the policy in force with the batch, as changed by `change`.
    pub(super) fn policy_event(&mut self, change: PolicyChange) {
        let status = self.feed.status();
        self.policy_fallback = status.fallback_active;
        self.events.push(Event::Policy(PolicyEvent {
            name: status.name,
            version: status.version,
            digest: status.digest,
            source: status.source,
            fallback_active: status.fallback_active,
            event: change,
        }));
    }

    /// Publishes a `fallback` event if the crash-loop breaker tripped during this batch.
    pub(super) fn check_fallback(&mut self) {
        if self.feed.fallback_active() != self.policy_fallback {
            self.policy_event(PolicyChange::Fallback);
        }
    }

    /// Makes the `stats` event if one is due (`engine::tally`).
    pub(super) fn stats_tick(&mut self, now: u64) {
        let agents = self.stats.agents();
        let connected = self.stats.connected() as u64;
        let quiet = self.config.stats_interval_ms * QUIET_INTERVALS;
        if let Some(event) = self.tally.due(now, quiet, agents, connected) {
            self.events.push(Event::Stats(event));
        }
    }
}
