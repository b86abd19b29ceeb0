//! What a shadow run knows of the live state: the queued tasks and ready agents, as the events
//! the policy in force was given describe them.
//!
//! The shadow thread cannot read the engine's state (the engine thread owns it, and must not
//! wait for the shadow), so it rebuilds the part a proposal is checked against from the same
//! events: when it judges a pass, the mirror is the live state at the moment the policy in
//! force was asked, because the engine sends the pass before anything that followed it.

use crate::policy::{
    check_proposal, AgentId, AgentView, Assignment, ProposalRefusal, ProposedAgent, ProposedTask,
    TaskId, TaskView,
};
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Default)]
pub(super) struct Mirror {
    queued: HashMap<TaskId, TaskView>,
    /// Tasks assigned and not finished yet: known to the host, but not queued.
    assigned: HashSet<TaskId>,
    /// Ready agents in the order they were announced (the line the policy keeps).
    line: BTreeMap<u64, AgentView>,
    places: HashMap<AgentId, u64>,
    next_place: u64,
    /// Each tenant's weight, by name: told first when the candidate is replayed.
    tenants: BTreeMap<String, f64>,
}

/// The host's verdict on one pass of proposals.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Verdict {
    /// The proposals the host would have applied, in order.
    pub accepted: Vec<(TaskId, AgentId)>,
    /// The reason of each it would have refused.
    pub refused: Vec<ProposalRefusal>,
}

impl Mirror {
    pub fn task_queued(&mut self, task: TaskView) {
        self.assigned.remove(&task.id);
        self.queued.insert(task.id, task);
    }

    pub fn tenant_weight(&mut self, tenant: String, weight: f64) {
        self.tenants.insert(tenant, weight);
    }

    pub fn tenant_removed(&mut self, tenant: &str) {
        self.tenants.remove(tenant);
    }

    /// The tenants' weights, in the order a replay tells them.
    pub fn tenant_weights(&self) -> impl Iterator<Item = (&str, f64)> {
        self.tenants
            .iter()
            .map(|(name, &weight)| (name.as_str(), weight))
    }

    pub fn task_dequeued(&mut self, task: TaskId) {
        self.queued.remove(&task);
    }

    pub fn agent_ready(&mut self, agent: AgentView) {
        self.agent_unready(agent.id);
        self.next_place += 1;
        self.places.insert(agent.id, self.next_place);
        self.line.insert(self.next_place, agent);
    }

    pub fn agent_unready(&mut self, agent: AgentId) {
        if let Some(place) = self.places.remove(&agent) {
            self.line.remove(&place);
        }
    }

    pub fn assigned(&mut self, task: TaskId, agent: AgentId) {
        self.queued.remove(&task);
        self.assigned.insert(task);
        self.agent_unready(agent);
    }

    pub fn task_finished(&mut self, task: TaskId) {
        self.assigned.remove(&task);
    }

    /// The fairness key of a queued task.
    pub fn fairness_key(&self, task: TaskId) -> Option<&str> {
        self.queued.get(&task).map(|t| t.fairness_key.as_str())
    }

    /// The queued tasks in the order a replay announces them (priority, then submission), and
    /// the ready agents in line.
    pub fn replay_order(&self) -> (Vec<&TaskView>, impl Iterator<Item = &AgentView>) {
        let mut tasks: Vec<&TaskView> = self.queued.values().collect();
        tasks.sort_unstable_by_key(|t| (t.priority, t.id));
        (tasks, self.line.values())
    }

    /// Judges `proposals` as the engine would against this state: with [`check_proposal`],
    /// each task and agent taken by an earlier proposal of the same pass no longer queued or
    /// ready. `agents_known` is how many agent handles the host has given out: a handle below
    /// it names an agent the host knows, ready or not.
    pub fn judge(&self, proposals: &[Assignment], agents_known: u32) -> Verdict {
        let mut verdict = Verdict::default();
        let mut taken_tasks = HashSet::new();
        let mut taken_agents = HashSet::new();
        for proposal in proposals {
            let task = match self.queued.get(&proposal.task) {
                Some(task) => Some(ProposedTask {
                    queued: !taken_tasks.contains(&proposal.task),
                    needs: &task.needed_capabilities,
                }),
                None if self.assigned.contains(&proposal.task) => Some(ProposedTask {
                    queued: false,
                    needs: &[],
                }),
                None => None,
            };
            let ready = self
                .places
                .get(&proposal.agent)
                .and_then(|place| self.line.get(place));
            let agent = (proposal.agent < agents_known).then(|| ProposedAgent {
                ready: ready.is_some() && !taken_agents.contains(&proposal.agent),
                capabilities: ready.map_or(&[][..], |a| &a.capabilities),
            });
            match check_proposal(task, agent) {
                Ok(()) => {
                    taken_tasks.insert(proposal.task);
                    taken_agents.insert(proposal.agent);
                    verdict.accepted.push((proposal.task, proposal.agent));
                }
                Err(refusal) => verdict.refused.push(refusal),
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: TaskId, priority: u8, needs: &[u32], key: &str) -> TaskView {
        TaskView {
            id,
            priority,
            needed_capabilities: needs.to_vec(),
            tenant: crate::wire::tenant::default_tenant(),
            fairness_key: key.into(),
            weight: 1.0,
            retry_count: 0,
            queued_at: 0,
        }
    }

    fn agent(id: AgentId, capabilities: &[u32]) -> AgentView {
        AgentView {
            id,
            capabilities: capabilities.to_vec(),
            idle_since: 0,
        }
    }

    fn propose(pairs: &[(TaskId, AgentId)]) -> Vec<Assignment> {
        pairs
            .iter()
            .map(|&(task, agent)| Assignment { task, agent })
            .collect()
    }

    #[test]
    fn judges_like_the_engine_including_repeats_within_a_pass() {
        let mut m = Mirror::default();
        m.task_queued(task(1, 2, &[], "a"));
        m.task_queued(task(2, 2, &[7], "b"));
        m.task_queued(task(3, 2, &[], "a"));
        m.task_queued(task(4, 2, &[], "a"));
        m.agent_ready(agent(0, &[]));
        m.agent_ready(agent(1, &[]));
        m.assigned(4, 2);
        let verdict = m.judge(
            &propose(&[
                (1, 0), // fine
                (1, 1), // task taken earlier in the pass
                (3, 0), // agent taken earlier in the pass
                (2, 1), // lacks capability 7
                (9, 1), // no such task
                (3, 5), // no such agent
                (4, 1), // assigned already
                (3, 2), // agent known but busy
                (3, 1), // fine
            ]),
            3,
        );
        assert_eq!(verdict.accepted, vec![(1, 0), (3, 1)]);
        assert_eq!(
            verdict.refused,
            vec![
                ProposalRefusal::TaskNotQueued,
                ProposalRefusal::AgentNotReady,
                ProposalRefusal::MissingCapability,
                ProposalRefusal::UnknownTask,
                ProposalRefusal::UnknownAgent,
                ProposalRefusal::TaskNotQueued,
                ProposalRefusal::AgentNotReady,
            ]
        );
    }

    #[test]
    fn replays_tasks_by_priority_then_id_and_agents_in_line() {
        let mut m = Mirror::default();
        m.task_queued(task(5, 2, &[], "a"));
        m.task_queued(task(3, 2, &[], "a"));
        m.task_queued(task(9, 0, &[], "a"));
        m.agent_ready(agent(4, &[]));
        m.agent_ready(agent(2, &[]));
        m.agent_ready(agent(4, &[])); // announced again: to the back
        m.task_dequeued(3);
        m.assigned(5, 2);
        m.task_finished(5);
        let (tasks, agents) = m.replay_order();
        assert_eq!(tasks.iter().map(|t| t.id).collect::<Vec<_>>(), vec![9]);
        assert_eq!(agents.map(|a| a.id).collect::<Vec<_>>(), vec![4]);
        assert_eq!(m.fairness_key(9), Some("a"));
        assert_eq!(m.fairness_key(5), None);
    }

    #[test]
    fn tenant_weights_are_kept_by_name_for_replays() {
        let mut mirror = Mirror::default();
        mirror.tenant_weight("team-b".into(), 2.0);
        mirror.tenant_weight("default".into(), 1.0);
        mirror.tenant_weight("team-b".into(), 3.0);
        mirror.tenant_weight("gone".into(), 5.0);
        mirror.tenant_removed("gone");
        let told: Vec<(&str, f64)> = mirror.tenant_weights().collect();
        assert_eq!(told, [("default", 1.0), ("team-b", 3.0)]);
    }
}
