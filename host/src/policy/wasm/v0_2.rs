//! Components of the current contract, `switchyard:policy@0.2.0`: every event passes through
//! as it is.

use wasmtime::component::{Instance, InstancePre, ResourceAny};
use wasmtime::Store;

use super::{about_of, classify, create_in, interface_index, new_store, GuestState};
use super::{CALL_DEADLINE_TICKS, INTERFACE};
use crate::policy::{
    AgentId, AgentView, Assignment, Backend, CallError, Outcome, PolicyError, TaskId, TaskView,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/policy.wit",
        world: "policy-component",
        // Events pass a task's capability list and key by reference: no copy per event.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use bindings::exports::switchyard::policy::scheduler as wit;
use bindings::{PolicyComponent, PolicyComponentPre};

/// A 0.2.0 component's instantiation, prepared.
pub(super) type Pre = PolicyComponentPre<GuestState>;

/// Prepares the typed instantiation of a component that exports the 0.2.0 interface.
pub(super) fn prepare(instance_pre: InstancePre<GuestState>) -> Result<Pre, PolicyError> {
    PolicyComponentPre::new(instance_pre).map_err(|e| {
        PolicyError::WrongContract(format!(
            "it does not export the `{INTERFACE}` interface as this hub expects: {e:#}"
        ))
    })
}

/// Checks each function of the 0.2.0 interface by name and type, then calls `about`.
pub(super) fn probe(
    store: &mut Store<GuestState>,
    instance: &Instance,
) -> Result<(String, String), PolicyError> {
    let index = interface_index(store, instance, INTERFACE)?;
    macro_rules! check {
        ($name:literal, $params:ty, $results:ty) => {
            check_function!(store, instance, index, INTERFACE, $name, $params, $results)
        };
    }
    check!("about", (), (wit::PolicyInfo,));
    check!(
        "[static]policy.create",
        (&str,),
        (Result<ResourceAny, String>,)
    );
    check!(
        "[method]policy.task-queued",
        (ResourceAny, wit::Task<'_>),
        ()
    );
    check!("[method]policy.task-dequeued", (ResourceAny, TaskId), ());
    check!(
        "[method]policy.agent-ready",
        (ResourceAny, wit::Agent<'_>),
        ()
    );
    check!("[method]policy.agent-unready", (ResourceAny, AgentId), ());
    check!(
        "[method]policy.assigned",
        (ResourceAny, TaskId, AgentId),
        ()
    );
    check!(
        "[method]policy.task-finished",
        (ResourceAny, TaskId, AgentId, wit::Outcome, u64),
        ()
    );
    check!("[method]policy.tenant-weight", (ResourceAny, &str, f64), ());
    check!("[method]policy.tenant-removed", (ResourceAny, &str), ());
    check!(
        "[method]policy.decide",
        (ResourceAny, u64),
        (Vec<wit::Assignment>,)
    );
    let exports = PolicyComponent::new(&mut *store, instance)
        .map_err(|e| PolicyError::WrongContract(format!("{e:#}")))?;
    about_of(store, |store| {
        let about = exports.switchyard_policy_scheduler().call_about(store)?;
        Ok((about.name, about.version))
    })
}

/// A fresh 0.2.0 instance with a policy built from `config`.
pub(super) fn instantiate(pre: &Pre, config: &str) -> Result<V0_2Instance, PolicyError> {
    let mut store = new_store(pre.engine());
    let exports = pre
        .instantiate(&mut store)
        .map_err(|e| PolicyError::Instantiate(format!("{e:#}")))?;
    let policy = create_in(&mut store, |store| {
        exports
            .switchyard_policy_scheduler()
            .policy()
            .call_create(store, config)
    })?;
    Ok(V0_2Instance {
        deadline_ticks: CALL_DEADLINE_TICKS,
        store,
        exports,
        policy,
    })
}

/// A live 0.2.0 policy instance. One store and instance are reused across calls (a call costs
/// well under a microsecond that way); after a failed call the instance is unusable and is
/// dropped.
pub(super) struct V0_2Instance {
    /// Epoch ticks each call may run for ([`CALL_DEADLINE_TICKS`] unless the host says).
    deadline_ticks: u64,
    store: Store<GuestState>,
    exports: PolicyComponent,
    policy: ResourceAny,
}

impl V0_2Instance {
    fn call<R>(
        &mut self,
        f: impl FnOnce(wit::GuestPolicy<'_>, &mut Store<GuestState>, ResourceAny) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let policy = self.exports.switchyard_policy_scheduler().policy();
        f(policy, &mut self.store, self.policy).map_err(classify)
    }
}

impl Backend for V0_2Instance {
    fn set_deadline_ticks(&mut self, ticks: u64) {
        self.deadline_ticks = ticks;
    }

    fn task_queued(&mut self, task: &TaskView) -> Result<(), CallError> {
        let task = wit::Task {
            id: task.id,
            priority: task.priority,
            needed_capabilities: &task.needed_capabilities,
            tenant: &task.tenant,
            fairness_key: &task.fairness_key,
            weight: task.weight,
            retry_count: task.retry_count,
            queued_at: task.queued_at,
        };
        self.call(|p, store, me| p.call_task_queued(store, me, task))
    }

    fn task_dequeued(&mut self, task: TaskId) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_task_dequeued(store, me, task))
    }

    fn agent_ready(&mut self, agent: &AgentView) -> Result<(), CallError> {
        let agent = wit::Agent {
            id: agent.id,
            capabilities: &agent.capabilities,
            idle_since: agent.idle_since,
        };
        self.call(|p, store, me| p.call_agent_ready(store, me, agent))
    }

    fn agent_unready(&mut self, agent: AgentId) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_agent_unready(store, me, agent))
    }

    fn assigned(&mut self, task: TaskId, agent: AgentId) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_assigned(store, me, task, agent))
    }

    fn task_finished(
        &mut self,
        task: TaskId,
        agent: AgentId,
        outcome: Outcome,
        held_ms: u64,
    ) -> Result<(), CallError> {
        let outcome = match outcome {
            Outcome::Completed => wit::Outcome::Completed,
            Outcome::Failed => wit::Outcome::Failed,
            Outcome::Returned => wit::Outcome::Returned,
            Outcome::Cancelled => wit::Outcome::Cancelled,
        };
        self.call(|p, store, me| p.call_task_finished(store, me, task, agent, outcome, held_ms))
    }

    fn tenant_weight(&mut self, tenant: &str, weight: f64) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_tenant_weight(store, me, tenant, weight))
    }

    fn tenant_removed(&mut self, tenant: &str) -> Result<(), CallError> {
        self.call(|p, store, me| p.call_tenant_removed(store, me, tenant))
    }

    fn decide(&mut self, now: u64) -> Result<Vec<Assignment>, CallError> {
        let proposals = self.call(|p, store, me| p.call_decide(store, me, now))?;
        Ok(proposals
            .into_iter()
            .map(|a| Assignment {
                task: a.task,
                agent: a.agent,
            })
            .collect())
    }
}
