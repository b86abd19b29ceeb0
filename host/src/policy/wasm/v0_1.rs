//! Components of the contract's first version, `switchyard:policy@0.1.0`, behind an adapter.
//!
//! A 0.1.0 policy knows nothing of tenants, so the adapter makes each tenant one fairness key:
//! a task reaches it with `fairness-key` := its tenant's name and `weight` := the tenant's
//! weight when the task is queued (a 0.1.0 fair policy thus shares agents between tenants by
//! their weights, and a task's own key and weight are not seen). `held-ms` is dropped, and
//! `tenant-weight` / `tenant-removed` are not delivered: the adapter keeps the weights itself,
//! so a weight change applies to tasks queued after it. docs/writing-a-policy.md says the same.

use std::collections::HashMap;

use wasmtime::component::{Instance, InstancePre, ResourceAny};
use wasmtime::Store;

use super::CALL_DEADLINE_TICKS;
use super::{about_of, classify, create_in, interface_index, new_store, GuestState};
use crate::policy::{
    AgentId, AgentView, Assignment, Backend, CallError, Outcome, PolicyError, TaskId, TaskView,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/compat/0.1.0",
        world: "policy-component",
        // Events pass a task's capability list and tenant by reference: no copy per event.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use bindings::exports::switchyard::policy::scheduler as wit;
use bindings::{PolicyComponent, PolicyComponentPre};

/// The interface a 0.1.0 policy exports.
const INTERFACE: &str = "switchyard:policy/scheduler@0.1.0";

/// The weight a task of a tenant the adapter was not told of is given: the weight of a tenant
/// created without one. The engine tells every tenant's weight before it queues a task, so
/// this is only a guard.
const UNTOLD_TENANT_WEIGHT: f64 = 1.0;

/// A 0.1.0 component's instantiation, prepared.
pub(super) type Pre = PolicyComponentPre<GuestState>;

/// Prepares the typed instantiation of a component that exports the 0.1.0 interface.
pub(super) fn prepare(instance_pre: InstancePre<GuestState>) -> Result<Pre, PolicyError> {
    PolicyComponentPre::new(instance_pre).map_err(|e| {
        PolicyError::WrongContract(format!(
            "it does not export the `{INTERFACE}` interface as this hub expects: {e:#}"
        ))
    })
}

/// Checks each function of the 0.1.0 interface by name and type, then calls `about`.
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
        (ResourceAny, TaskId, AgentId, wit::Outcome),
        ()
    );
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

/// A fresh 0.1.0 instance with a policy built from `config`.
pub(super) fn instantiate(pre: &Pre, config: &str) -> Result<V0_1Instance, PolicyError> {
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
    Ok(V0_1Instance {
        deadline_ticks: CALL_DEADLINE_TICKS,
        store,
        exports,
        policy,
        tenant_weights: HashMap::new(),
    })
}

/// A live 0.1.0 policy instance and its adapter's state. One store and instance are reused
/// across calls; after a failed call the instance is unusable and is dropped (the engine tells
/// the fresh one every tenant's weight again).
pub(super) struct V0_1Instance {
    /// Epoch ticks each call may run for ([`CALL_DEADLINE_TICKS`] unless the host says).
    deadline_ticks: u64,
    store: Store<GuestState>,
    exports: PolicyComponent,
    policy: ResourceAny,
    /// Each tenant's weight as last told: what a task of the tenant is queued with.
    tenant_weights: HashMap<String, f64>,
}

impl V0_1Instance {
    fn call<R>(
        &mut self,
        f: impl FnOnce(wit::GuestPolicy<'_>, &mut Store<GuestState>, ResourceAny) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let policy = self.exports.switchyard_policy_scheduler().policy();
        f(policy, &mut self.store, self.policy).map_err(classify)
    }
}

impl Backend for V0_1Instance {
    fn set_deadline_ticks(&mut self, ticks: u64) {
        self.deadline_ticks = ticks;
    }

    fn task_queued(&mut self, task: &TaskView) -> Result<(), CallError> {
        let weight = self
            .tenant_weights
            .get(task.tenant.as_str())
            .copied()
            .unwrap_or(UNTOLD_TENANT_WEIGHT);
        let task = wit::Task {
            id: task.id,
            priority: task.priority,
            needed_capabilities: &task.needed_capabilities,
            // Each tenant is one key to a policy that knows no tenants.
            fairness_key: &task.tenant,
            weight,
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
        _held_ms: u64,
    ) -> Result<(), CallError> {
        let outcome = match outcome {
            Outcome::Completed => wit::Outcome::Completed,
            Outcome::Failed => wit::Outcome::Failed,
            Outcome::Returned => wit::Outcome::Returned,
            Outcome::Cancelled => wit::Outcome::Cancelled,
        };
        self.call(|p, store, me| p.call_task_finished(store, me, task, agent, outcome))
    }

    /// Not delivered: remembered for the tenant's tasks queued from now on.
    fn tenant_weight(&mut self, tenant: &str, weight: f64) -> Result<(), CallError> {
        match self.tenant_weights.get_mut(tenant) {
            Some(known) => *known = weight,
            None => {
                self.tenant_weights.insert(tenant.to_string(), weight);
            }
        }
        Ok(())
    }

    /// Not delivered: the tenant has no tasks left, so only its weight is forgotten.
    fn tenant_removed(&mut self, tenant: &str) -> Result<(), CallError> {
        self.tenant_weights.remove(tenant);
        Ok(())
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
