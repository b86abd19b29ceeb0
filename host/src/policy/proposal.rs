//! The host's check of one proposal, and the reasons it refuses one.
//!
//! The policy proposes, the host disposes: a proposal is applied only if the live state allows
//! it. The engine, shadow runs, `switchyard policy check` and the lab all judge proposals with
//! [`check_proposal`], so "what the hub would refuse" means the same everywhere.

use serde::Serialize;

use super::Capability;

/// Why the host refused a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalRefusal {
    /// The task handle names no task the host knows.
    UnknownTask,
    /// The agent handle names no agent the host knows.
    UnknownAgent,
    /// The task is not queued (already assigned, also earlier in the same proposal list, or
    /// finished).
    TaskNotQueued,
    /// The agent is not ready for work (busy, also earlier in the same proposal list,
    /// disconnected, or cooling down after a rejection).
    AgentNotReady,
    /// The agent lacks a capability the task needs.
    MissingCapability,
}

impl ProposalRefusal {
    /// Every reason, for tables and metric labels that list each one.
    pub const ALL: [ProposalRefusal; 5] = [
        ProposalRefusal::UnknownTask,
        ProposalRefusal::UnknownAgent,
        ProposalRefusal::TaskNotQueued,
        ProposalRefusal::AgentNotReady,
        ProposalRefusal::MissingCapability,
    ];

    /// The reason as JSON and metric labels write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalRefusal::UnknownTask => "unknown_task",
            ProposalRefusal::UnknownAgent => "unknown_agent",
            ProposalRefusal::TaskNotQueued => "task_not_queued",
            ProposalRefusal::AgentNotReady => "agent_not_ready",
            ProposalRefusal::MissingCapability => "missing_capability",
        }
    }
}

impl std::fmt::Display for ProposalRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the check needs to know of the proposed task.
#[derive(Debug, Clone, Copy)]
pub struct ProposedTask<'a> {
    pub queued: bool,
    /// The task's needed capabilities, interned, sorted ascending.
    pub needs: &'a [Capability],
}

/// What the check needs to know of the proposed agent.
#[derive(Debug, Clone, Copy)]
pub struct ProposedAgent<'a> {
    /// Connected, idle, and not cooling down.
    pub ready: bool,
    /// The agent's capabilities, interned, sorted ascending.
    pub capabilities: &'a [Capability],
}

/// Whether the host applies a proposal of `task` to `agent` (`None`: the handle is unknown).
pub fn check_proposal(
    task: Option<ProposedTask<'_>>,
    agent: Option<ProposedAgent<'_>>,
) -> Result<(), ProposalRefusal> {
    let task = task.ok_or(ProposalRefusal::UnknownTask)?;
    let agent = agent.ok_or(ProposalRefusal::UnknownAgent)?;
    if !task.queued {
        return Err(ProposalRefusal::TaskNotQueued);
    }
    if !agent.ready {
        return Err(ProposalRefusal::AgentNotReady);
    }
    if !switchyard_policy_sdk::satisfies(agent.capabilities, task.needs) {
        return Err(ProposalRefusal::MissingCapability);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(queued: bool, needs: &[u32]) -> Option<ProposedTask<'_>> {
        Some(ProposedTask { queued, needs })
    }

    fn agent(ready: bool, capabilities: &[u32]) -> Option<ProposedAgent<'_>> {
        Some(ProposedAgent {
            ready,
            capabilities,
        })
    }

    #[test]
    fn each_reason_in_order() {
        assert_eq!(
            check_proposal(task(true, &[1]), agent(true, &[1, 2])),
            Ok(())
        );
        assert_eq!(
            check_proposal(None, None),
            Err(ProposalRefusal::UnknownTask)
        );
        assert_eq!(
            check_proposal(task(true, &[]), None),
            Err(ProposalRefusal::UnknownAgent)
        );
        assert_eq!(
            check_proposal(task(false, &[]), agent(false, &[])),
            Err(ProposalRefusal::TaskNotQueued)
        );
        assert_eq!(
            check_proposal(task(true, &[]), agent(false, &[])),
            Err(ProposalRefusal::AgentNotReady)
        );
        assert_eq!(
            check_proposal(task(true, &[3]), agent(true, &[1, 2])),
            Err(ProposalRefusal::MissingCapability)
        );
    }

    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::BTreeSet<_> =
            ProposalRefusal::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), ProposalRefusal::ALL.len());
    }
}
