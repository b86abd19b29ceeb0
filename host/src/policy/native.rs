//! A policy compiled into the host, used as the fallback when a loaded component keeps failing.

use switchyard_policy_sdk::Policy;

use super::{AgentId, AgentView, Assignment, Backend, CallError, Outcome, TaskId, TaskView};

/// Runs a native [`Policy`] behind the same interface as a component. Native calls cannot trap
/// or time out, so every call succeeds.
pub(crate) struct Native<P>(pub(crate) P);

impl<P: Policy + Send> Backend for Native<P> {
    fn task_queued(&mut self, task: &TaskView) -> Result<(), CallError> {
        self.0.task_queued(task.clone());
        Ok(())
    }

    fn task_dequeued(&mut self, task: TaskId) -> Result<(), CallError> {
        self.0.task_dequeued(task);
        Ok(())
    }

    fn agent_ready(&mut self, agent: &AgentView) -> Result<(), CallError> {
        self.0.agent_ready(agent.clone());
        Ok(())
    }

    fn agent_unready(&mut self, agent: AgentId) -> Result<(), CallError> {
        self.0.agent_unready(agent);
        Ok(())
    }

    fn assigned(&mut self, task: TaskId, agent: AgentId) -> Result<(), CallError> {
        self.0.assigned(task, agent);
        Ok(())
    }

    fn task_finished(
        &mut self,
        task: TaskId,
        agent: AgentId,
        outcome: Outcome,
        held_ms: u64,
    ) -> Result<(), CallError> {
        self.0.task_finished(task, agent, outcome, held_ms);
        Ok(())
    }

    fn tenant_weight(&mut self, tenant: &str, weight: f64) -> Result<(), CallError> {
        self.0.tenant_weight(tenant, weight);
        Ok(())
    }

    fn tenant_removed(&mut self, tenant: &str) -> Result<(), CallError> {
        self.0.tenant_removed(tenant);
        Ok(())
    }

    fn decide(&mut self, now: u64) -> Result<Vec<Assignment>, CallError> {
        Ok(self.0.decide(now))
    }
}
