//! Write a Switchyard scheduling policy as plain Rust.
//!
//! A policy implements [`Policy`]. The same code compiles natively (so it gets ordinary unit
//! tests and benchmarks) and, with [`export_policy!`], to a WebAssembly component that the hub
//! loads through the `switchyard:policy` WIT contract in `wit/policy.wit`.
//!
//! The host calls the event methods as its live state changes and [`Policy::decide`] once per
//! batch. Proposals are checked by the host; an accepted one is confirmed with
//! [`Policy::assigned`], so a policy never has to guess whether its proposal was taken.
//!
//! # Exporting a policy
//!
//! A policy crate has `crate-type = ["rlib", "cdylib"]` and ends with one line:
//!
//! ```ignore
//! switchyard_policy_sdk::export_policy!(MyPolicy);
//! ```
//!
//! That line expands to nothing on native targets, so the crate's unit tests and benchmarks
//! are unaffected; on `wasm32` it exports `MyPolicy` as the `policy-component` world. The
//! policy crate never depends on `wit-bindgen` itself: the generated glue lives here, so every
//! policy speaks exactly the contract this SDK was built against.
//!
//! # Testing a policy
//!
//! With the `testing` feature (turn it on in `[dev-dependencies]` only), the `testing` module has
//! the fixtures the policies in this repository share: one-line tasks and agents, a seeded
//! generator, and a host in miniature that checks proposals as the hub does.

/// The JSON library configurations arrive in, re-exported so a policy names
/// [`serde_json::Value`] in [`Policy::new`] without pinning its own (possibly different) version.
pub use serde_json;

mod ready;
pub use ready::{Position, ReadyAgents};

#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// A task's handle: its submission sequence number, so lower means submitted earlier.
pub type TaskId = u64;
/// An agent's handle, stable while the hub runs.
pub type AgentId = u32;
/// A capability's handle, interned by the host.
pub type Capability = u32;

/// What scheduling needs to know of a queued task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    /// 0 urgent, 1 high, 2 normal, 3 low.
    pub priority: u8,
    /// Sorted ascending, no duplicates; all must be among the agent's capabilities.
    pub needed_capabilities: Vec<Capability>,
    /// The tenant the task belongs to (the submitting token's tenant).
    pub tenant: String,
    /// The key fair share is counted under within the tenant.
    pub fairness_key: String,
    /// Greater than zero; divides the tenant's share between its keys.
    pub weight: f64,
    pub retry_count: u32,
    /// Milliseconds since the Unix epoch.
    pub queued_at: u64,
}

/// What scheduling needs to know of a ready agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: AgentId,
    /// Sorted ascending, no duplicates.
    pub capabilities: Vec<Capability>,
    /// Milliseconds since the Unix epoch.
    pub idle_since: u64,
}

/// A proposal: give `task` to `agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Assignment {
    pub task: TaskId,
    pub agent: AgentId,
}

/// How an assignment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed,
    /// Taken back or rejected; the task is queued again.
    Returned,
    Cancelled,
}

/// A scheduling policy. See the crate documentation for the calling discipline.
pub trait Policy: Sized {
    /// Reported by the hub as the policy's name.
    const NAME: &'static str;
    /// Reported by the hub as the policy's version.
    const VERSION: &'static str;

    /// Builds the policy from its JSON configuration (`null` when none was given).
    /// The error names what is wrong; the hub refuses to load the policy and shows it.
    fn new(config: &serde_json::Value) -> Result<Self, String>;
    /// A task entered the queue.
    fn task_queued(&mut self, task: Task);
    /// A queued task left the queue without being assigned.
    fn task_dequeued(&mut self, task: TaskId);
    /// An agent became ready. Agents arrive in the order they became ready.
    fn agent_ready(&mut self, agent: Agent);
    /// A ready agent stopped being ready without being assigned.
    fn agent_unready(&mut self, agent: AgentId);
    /// The host accepted a proposal: the task left the queue and the agent is busy.
    fn assigned(&mut self, task: TaskId, agent: AgentId);
    /// An assignment ended, after holding its agent for `held_ms` milliseconds. The default
    /// ignores it.
    fn task_finished(&mut self, _task: TaskId, _agent: AgentId, _outcome: Outcome, _held_ms: u64) {}
    /// A tenant's weight (greater than zero), told for every tenant before any task and again
    /// when it changes. The default ignores it.
    fn tenant_weight(&mut self, _tenant: &str, _weight: f64) {}
    /// A tenant was deleted; it has no tasks left. The default ignores it.
    fn tenant_removed(&mut self, _tenant: &str) {}
    /// Proposes assignments. `now` is milliseconds since the Unix epoch.
    fn decide(&mut self, now: u64) -> Vec<Assignment>;
}

/// What kind of JSON value `value` is ("a string", "an object", ...), for config refusals that
/// say what was given instead of what was expected.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether an agent with `has` can run a task that needs `needs`; both sorted ascending.
pub fn satisfies(has: &[Capability], needs: &[Capability]) -> bool {
    let mut has = has.iter();
    needs.iter().all(|need| has.any(|h| h == need))
}

/// Exports a [`Policy`] implementation as the `switchyard:policy` component.
///
/// Write it once, at the end of the policy crate's `lib.rs`:
///
/// ```ignore
/// switchyard_policy_sdk::export_policy!(Greedy);
/// ```
///
/// It expands to nothing unless the target is `wasm32`, so the same crate builds and tests
/// natively. On `wasm32` the component's `create` parses the configuration string as JSON (an
/// empty string means `null`) and hands it to [`Policy::new`]; a parse error or a rejected
/// configuration becomes the `create` error the hub shows to the operator. `about` reports
/// [`Policy::NAME`] and [`Policy::VERSION`].
// rustfmt would un-indent the `export!` line, which it cannot parse.
#[rustfmt::skip]
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __SwitchyardPolicyExport;

            impl $crate::bindings::exports::switchyard::policy::scheduler::Guest
                for __SwitchyardPolicyExport
            {
                type Policy = $crate::glue::PolicyResource<$policy>;

                fn about() -> $crate::glue::PolicyInfo {
                    $crate::glue::about::<$policy>()
                }
            }

            $crate::bindings::export!(__SwitchyardPolicyExport with_types_in $crate::bindings);
        };
    };
}

/// Bindings generated from `wit/policy.wit`. Not part of the SDK's API: use [`export_policy!`].
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "policy-component",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "switchyard_policy_sdk::bindings",
    });
}

/// The adapter between the generated bindings and [`Policy`]. Not part of the SDK's API.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue {
    use crate::bindings::exports::switchyard::policy::scheduler as wit;
    use crate::Policy;
    use std::cell::RefCell;

    pub use wit::PolicyInfo;

    /// The `policy` resource. The component model hands methods `&self`, while a [`Policy`]
    /// mutates itself on every event, hence the `RefCell`; calls never overlap (a component
    /// instance is single-threaded and the methods do not call back into the host), so the
    /// borrow cannot fail.
    pub struct PolicyResource<P: Policy> {
        inner: RefCell<P>,
    }

    pub fn about<P: Policy>() -> PolicyInfo {
        PolicyInfo {
            name: P::NAME.to_string(),
            version: P::VERSION.to_string(),
        }
    }

    /// Parses the configuration string the host sends. Empty means "no configuration".
    fn parse_config(config: &str) -> Result<serde_json::Value, String> {
        if config.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(config).map_err(|e| format!("invalid config JSON: {e}"))
    }

    fn outcome(outcome: wit::Outcome) -> crate::Outcome {
        match outcome {
            wit::Outcome::Completed => crate::Outcome::Completed,
            wit::Outcome::Failed => crate::Outcome::Failed,
            wit::Outcome::Returned => crate::Outcome::Returned,
            wit::Outcome::Cancelled => crate::Outcome::Cancelled,
        }
    }

    impl<P: Policy + 'static> wit::GuestPolicy for PolicyResource<P> {
        fn create(config: String) -> Result<wit::Policy, String> {
            let config = parse_config(&config)?;
            let policy = P::new(&config)?;
            Ok(wit::Policy::new(PolicyResource {
                inner: RefCell::new(policy),
            }))
        }

        fn task_queued(&self, task: wit::Task) {
            self.inner.borrow_mut().task_queued(crate::Task {
                id: task.id,
                priority: task.priority,
                needed_capabilities: task.needed_capabilities,
                tenant: task.tenant,
                fairness_key: task.fairness_key,
                weight: task.weight,
                retry_count: task.retry_count,
                queued_at: task.queued_at,
            });
        }

        fn task_dequeued(&self, task: wit::TaskId) {
            self.inner.borrow_mut().task_dequeued(task);
        }

        fn agent_ready(&self, agent: wit::Agent) {
            self.inner.borrow_mut().agent_ready(crate::Agent {
                id: agent.id,
                capabilities: agent.capabilities,
                idle_since: agent.idle_since,
            });
        }

        fn agent_unready(&self, agent: wit::AgentId) {
            self.inner.borrow_mut().agent_unready(agent);
        }

        fn assigned(&self, task: wit::TaskId, agent: wit::AgentId) {
            self.inner.borrow_mut().assigned(task, agent);
        }

        fn task_finished(
            &self,
            task: wit::TaskId,
            agent: wit::AgentId,
            o: wit::Outcome,
            held_ms: u64,
        ) {
            self.inner
                .borrow_mut()
                .task_finished(task, agent, outcome(o), held_ms);
        }

        fn tenant_weight(&self, tenant: String, weight: f64) {
            self.inner.borrow_mut().tenant_weight(&tenant, weight);
        }

        fn tenant_removed(&self, tenant: String) {
            self.inner.borrow_mut().tenant_removed(&tenant);
        }

        fn decide(&self, now: u64) -> Vec<wit::Assignment> {
            self.inner
                .borrow_mut()
                .decide(now)
                .into_iter()
                .map(|a| wit::Assignment {
                    task: a.task,
                    agent: a.agent,
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfies_is_a_subset_test_on_sorted_lists() {
        assert!(satisfies(&[1, 2, 3], &[]));
        assert!(satisfies(&[1, 2, 3], &[1, 3]));
        assert!(!satisfies(&[1, 3], &[2]));
        assert!(!satisfies(&[], &[0]));
        assert!(!satisfies(&[1, 2], &[2, 4]));
    }
}
