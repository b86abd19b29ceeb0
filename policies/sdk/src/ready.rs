//! The line of ready agents a policy keeps, longest idle first.

use crate::{satisfies, Agent, AgentId, Capability};
use std::collections::{BTreeMap, BTreeSet};

/// A place in the line: lower became ready earlier, so has been idle longer.
pub type Position = u64;

/// Ready agents in the order they became ready. The host sends `agent-ready` events in that
/// order, so the first agent in the line is the one idle longest, without comparing clocks.
#[derive(Debug, Default, Clone)]
pub struct ReadyAgents {
    line: BTreeMap<Position, (AgentId, Vec<Capability>)>,
    positions: BTreeMap<AgentId, Position>,
    /// The next place to hand out; only grows.
    next: Position,
}

impl ReadyAgents {
    /// An agent became ready. One that is ready already keeps its place (it has not stopped
    /// being idle) and takes the capabilities it reports now.
    pub fn ready(&mut self, agent: Agent) {
        if let Some(position) = self.positions.get(&agent.id) {
            if let Some(entry) = self.line.get_mut(position) {
                entry.1 = agent.capabilities;
            }
            return;
        }
        let position = self.next;
        self.next += 1;
        self.positions.insert(agent.id, position);
        self.line.insert(position, (agent.id, agent.capabilities));
    }

    /// Takes an agent out of the line; false if it was not in it.
    pub fn remove(&mut self, id: AgentId) -> bool {
        match self.positions.remove(&id) {
            Some(position) => self.line.remove(&position).is_some(),
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.line.len()
    }

    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// The ready agents and their capabilities, longest idle first.
    pub fn iter(&self) -> impl Iterator<Item = (AgentId, &[Capability])> {
        self.line.values().map(|(id, has)| (*id, has.as_slice()))
    }

    /// The agent idle longest, at or after `from`, that has every capability in `needs` and
    /// whose place is not in `taken` (agents already proposed in this decision pass).
    pub fn first_capable(
        &self,
        from: Position,
        needs: &[Capability],
        taken: &BTreeSet<Position>,
    ) -> Option<(Position, AgentId)> {
        self.line
            .range(from..)
            .find(|(position, (_, has))| !taken.contains(*position) && satisfies(has, needs))
            .map(|(&position, &(id, _))| (position, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::agent;

    #[test]
    fn longest_idle_capable_untaken_agent_first() {
        let mut ready = ReadyAgents::default();
        ready.ready(agent(7, &[]));
        ready.ready(agent(3, &[1]));
        ready.ready(agent(5, &[1, 2]));
        let none = BTreeSet::new();
        assert_eq!(ready.first_capable(0, &[], &none), Some((0, 7)));
        assert_eq!(ready.first_capable(0, &[1], &none), Some((1, 3)));
        assert_eq!(ready.first_capable(0, &[2], &none), Some((2, 5)));
        assert_eq!(
            ready.first_capable(0, &[1], &BTreeSet::from([1])),
            Some((2, 5))
        );
        assert_eq!(ready.first_capable(3, &[], &none), None);
        assert_eq!(ready.first_capable(0, &[9], &none), None);
    }

    #[test]
    fn a_ready_agent_keeps_its_place_and_removal_is_exact() {
        let mut ready = ReadyAgents::default();
        ready.ready(agent(1, &[]));
        ready.ready(agent(2, &[]));
        ready.ready(agent(1, &[4]));
        assert_eq!(ready.len(), 2);
        assert_eq!(ready.first_capable(0, &[4], &BTreeSet::new()), Some((0, 1)));
        assert!(ready.remove(1));
        assert!(!ready.remove(1));
        assert_eq!(ready.first_capable(0, &[], &BTreeSet::new()), Some((1, 2)));
        ready.ready(agent(1, &[]));
        assert_eq!(
            ready.first_capable(0, &[], &BTreeSet::from([1])),
            Some((2, 1))
        );
    }
}
