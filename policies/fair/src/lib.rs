//! Switchyard's hierarchical weighted fair-share policy.
//!
//! Every queued task belongs to a **tenant** (the tenant of the token that submitted it, set by
//! the hub) and, within it, to a **fairness key**: the submitter's id unless the task names a
//! `fairness_key`. Under contention agents are shared between tenants in proportion to the
//! tenants' weights (told by the host with `tenant_weight`; a tenant not told yet counts 1),
//! then each tenant's turns between its keys in proportion to key weights, whatever the other
//! tenants and keys submit. So a key that floods the queue cannot starve a light one, and a
//! submitter that splits its work over many keys or marks it weight 1000 only reorders its own
//! tenant's work. Within a key, tasks go by priority, and aging bounds how long a low-priority
//! task can be passed over.
//!
//! # What a share counts
//!
//! With `"charge": "time"` (the default) a share is **agent time**: how long the tenant's and
//! key's tasks held their agents. At dispatch a task's run time is unknown, so it is charged an
//! estimate: the running mean of the `held_ms` of its key (while the key has queued or running
//! tasks), else of its tenant, else `initial_estimate_ms` ([`DEFAULT_INITIAL_ESTIMATE_MS`]);
//! the mean moves an eighth of the way to each new run time. When the task finishes, whatever
//! the outcome (a returned, failed or cancelled task held its agent too), the estimate is
//! replaced by the real `held_ms` at both levels. No charge, estimate or real, is below
//! `min_charge_ms` (default [`DEFAULT_MIN_CHARGE_MS`]): an assignment occupies its agent for at
//! least a round trip, and shorter held times are mostly measurement noise (whole
//! milliseconds, network delay), which would otherwise decide shares between very short tasks. A flow that is idle by then
//! keeps the extra cost as a debt into its next backlog; a refund to a flow the virtual time
//! has passed is dropped (idleness earns no credit). With `"charge": "tasks"` a share counts
//! **assignments**, one each, whatever they cost.
//!
//! Below, "an assignment advances a tag by `1 / weight`" means by its charge divided by the
//! weight: one unit per assignment under `"tasks"`, its milliseconds under `"time"`.
//!
//! # The discipline: start-time fair queueing over tenants, then over keys
//!
//! The same discipline runs at two levels: between tenants, and within each tenant between its
//! keys (each tenant has its own virtual time). A turn goes to the tenant with the lowest tag,
//! and within it to the key with the lowest tag; the assignment advances both, each by its
//! charge over its own weight. What follows says "key"; it holds for tenants alike.
//!
//! Each key with queued tasks carries a *virtual start tag*, the virtual time at which its next
//! assignment begins. Whenever an agent is free, the key with the lowest tag gets the turn, and
//! the assignment advances that key's tag by `1 / weight`. The *global virtual time* is the tag of
//! the latest assignment; a key that becomes active (its first queued task) starts at the larger
//! of its own tag and the global virtual time, so
//!
//! - a newcomer is served at once (no backlogged key has a lower tag, except keys whose tasks no
//!   agent could run), which is what a light key submitting a few tasks behind a flood needs;
//! - idleness earns no credit: a key that was away cannot come back with an old, low tag and
//!   take a burst of assignments;
//! - a key cannot reset its debt by letting its queue run dry: a key that just had a turn keeps
//!   its advanced tag while idle, until the global virtual time passes it.
//!
//! This is start-time fair queueing (SFQ, Goyal, Vin & Cheng, 1996), with keys as flows and
//! assignments as packets of size one. It was chosen over the alternatives because:
//!
//! - **Deficit round robin** needs a quantum, serves each key's quantum in a burst (a key of
//!   weight 5 would get five agents in a row), and with every "packet" the same size it degrades
//!   into weighted round robin, which needs integer weights. SFQ takes any positive real weight
//!   and interleaves keys as finely as the weights allow (5:3:2 is served as a fine mix).
//! - **Finish-time disciplines** (WFQ, WF²Q) compute virtual time from an idealised fluid system
//!   of known capacity. The agent pool's capacity changes all the time (agents come and go, tasks
//!   run for unknown durations); SFQ's virtual time is just the tag of the latest assignment and
//!   needs no capacity model, which is what SFQ was designed for.
//! - It costs O(log keys) per event and only looks at the lowest tags when deciding.
//!
//! **Guarantee** (stated for `"charge": "tasks"`; under `"time"` it holds for charged
//! milliseconds in place of assignments, with each `1 / w` replaced by the largest single
//! charge over `w`, and for agent time up to the estimates of the tasks still running). While two keys `i` and `j` both have tasks that ready
//! agents can run, the numbers of assignments `n_i`, `n_j` they receive over any stretch of time satisfy
//! `|n_i / w_i − n_j / w_j| ≤ 1 / w_i + 1 / w_j`. For example, with two keys of weight 1, a key
//! that arrives with `n` tasks behind another key's flood has all of them assigned within its
//! next `2n` assignments (the 20 tasks of a light key go within the next 40); keys weighted
//! 5, 3 and 2 under saturation receive 50, 30 and 20 % of the assignments, each within two
//! assignments of its exact share at any moment.
//!
//! ## Weights
//!
//! The weight an assignment is charged with is the key's weight from the configuration
//! (`weights`) when it names the key, else the task's own `weight` (default 1). So a key whose
//! tasks all carry weight 3 gets three times the share of a weight-1 key, and an operator can
//! fix a key's weight regardless of what its submitters send. Weights are clamped to
//! [`MIN_WEIGHT`]..=[`MAX_WEIGHT`] (a ratio of a million between keys is plenty, and the bound
//! keeps virtual time exact, see [`VirtualTime`]).
//!
//! # Priority, and the aging bound
//!
//! **Across tenants and keys, fair share decides; within a key, priority decides.** The submitter of a task
//! chooses its priority, so letting priority cross keys would let any key take every agent by
//! marking its work urgent, which is the very thing this policy exists to prevent (operators who
//! want strict global priority run `greedy`). Priority still counts where it is meaningful: it
//! orders each key's own work, and an urgent task of a key that is within its share goes at once,
//! since a newly active key starts with the lowest tag. When two keys' tags are equal, the one
//! that became active first goes first.
//!
//! Within a key, tasks wait in one line per (priority, needed capabilities), each line in
//! submission order (by task id: a task that returns to the queue keeps its id, hence its
//! place, as in `greedy`). At the key's turn the policy takes, among the heads of its lines that
//! a free agent can run, the one with the lowest **effective priority**, then the lowest id:
//!
//! ```text
//! effective priority = max(0, priority − ⌊(now − queued_at) / aging_ms⌋)
//! ```
//!
//! so a task gains one priority class for every `aging_ms` it waits (default 30 s).
//!
//! **Bound.** A task of priority `p` (0 urgent … 3 low) that has waited `p × aging_ms` is treated
//! as urgent, and among urgent tasks the lower id (earlier submission) goes first. So **from
//! `p × aging_ms` after it was queued (90 s for a low task with the default), no task of its key
//! submitted after it is assigned before it**, however many urgent tasks keep arriving; what can
//! still go first are only tasks of its key submitted before it (a fixed, shrinking set), and the
//! key receives turns at its fair share (above) no matter what other keys submit. Urgent work of
//! *other* keys never delays it beyond that share. The lines ahead of a task in its own line
//! were submitted before it and have waited at least as long, so they age at least as fast
//! (except a task that returned to the queue, whose wait restarts from its return: `queued_at`
//! is reset by the host, while its id keeps its place).
//!
//! Both guarantees count turns in which a ready agent can run the task: a task that needs
//! capabilities no ready agent has waits for one, without blocking anything else.
//!
//! # Capabilities and agents
//!
//! A task no remaining ready agent can take is passed over for the rest of the decision, and
//! the tasks behind it (of its key or others) are still served. Among the ready agents that can
//! take a task, the one that became ready earliest gets it (the order of `agent-ready` events,
//! which the host guarantees; clocks are not compared).
//!
//! A key whose tasks no ready agent can run keeps its tag while others advance, so when a
//! capable agent appears it is served first until it has caught up: it was backlogged, not idle.
//! It can never take an agent that cannot run its tasks.
//!
//! # Calling discipline and state
//!
//! [`Policy::decide`] only reads: virtual time advances and shares are counted in
//! [`Policy::assigned`], when the host confirms a proposal, so a refused proposal changes
//! nothing. The state is a pure function of the events received (ordered maps only, integer
//! virtual time, no clocks read), so two instances fed the same events decide the same. When
//! the host replays its live state into a fresh instance (a restart, a swap, after a trap) the
//! fairness history starts over: every tenant and key with queued tasks starts at virtual time
//! zero, and tasks assigned before the replay are not charged when they finish.
//!
//! # Configuration
//!
//! JSON, `null` or `{}` for the defaults:
//!
//! ```json
//! {"weights": {"team-a": 3, "team-b": 0.5}, "aging_ms": 30000, "charge": "time",
//!  "initial_estimate_ms": 1000, "min_charge_ms": 10}
//! ```
//!
//! - `weights`: an object from fairness key to weight, each from [`MIN_WEIGHT`] to
//!   [`MAX_WEIGHT`]; keys not named use their tasks' weights. A key's weight divides its
//!   tenant's share (a key of that name in any tenant). Tenant weights are not configured
//!   here: the hub's admins set them, and the host tells the policy (clamped to the same range).
//! - `charge`: `"time"` (default) or `"tasks"`, see above.
//! - `initial_estimate_ms`: what a task is charged at dispatch under `"time"` before its key or
//!   tenant has finished any task, from 1 to [`MAX_AGING_MS`]; default
//!   [`DEFAULT_INITIAL_ESTIMATE_MS`].
//! - `min_charge_ms`: under `"time"`, the least an assignment is charged, from 1 to
//!   [`MAX_AGING_MS`]; default [`DEFAULT_MIN_CHARGE_MS`]. Tasks shorter than it are shared
//!   by count.
//! - `aging_ms`: milliseconds of waiting that raise a task by one priority class, from 1 to
//!   [`MAX_AGING_MS`] (a year, to get practically strict priority within a key); default
//!   [`DEFAULT_AGING_MS`].
//!
//! Anything else (an unknown field, a wrong type, a value out of range) is refused with a message
//! naming the field.
//!
//! # Cost
//!
//! Events cost O(log n). A decision walks the active tenants, and within each its active keys,
//! from the lowest tag, only as far as
//! it hands out agents (plus keys whose tasks no remaining agent can run, each looked at once),
//! and within a key looks only at the heads of its lines, so it is independent of the queue's
//! length. Agents are searched per needed-capability set with a cursor that only moves forward
//! during a decision, as in `greedy`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use switchyard_policy_sdk::serde_json::Value;
use switchyard_policy_sdk::{
    Agent, AgentId, Assignment, Capability, Outcome, Policy, ReadyAgents, Task, TaskId,
};

mod config;
mod pass;
mod sfq;
pub use config::{
    Charge, FairConfig, DEFAULT_AGING_MS, DEFAULT_INITIAL_ESTIMATE_MS, DEFAULT_MIN_CHARGE_MS,
    MAX_AGING_MS, MAX_WEIGHT, MIN_WEIGHT,
};
use pass::{AgentSearch, TenantPass};
use sfq::{Activation, Sfq};

/// Virtual time in fixed point: one unit of charge (an assignment under `"charge": "tasks"`, a
/// millisecond of agent time under `"time"`) at weight 1 advances a flow by [`UNIT`].
///
/// Integers rather than floats so that tags compare exactly and never lose an increment however
/// long the hub runs: with weights within [`MIN_WEIGHT`]..=[`MAX_WEIGHT`] one unit costs
/// between about 2^30 and 2^50, and 2^128 leaves room for more than 2^78 units.
pub type VirtualTime = u128;
/// The cost of one unit of charge at weight 1.
pub const UNIT: VirtualTime = 1 << 40;

/// 0 urgent … 3 low; lower goes first.
type Priority = u8;

/// Out of 8: how much the latest run time moves a running estimate (an exponential moving
/// average giving the latest task an eighth: it follows a change within a few dozen tasks and
/// is not thrown by one outlier).
const ESTIMATE_GAIN: f64 = 1.0 / 8.0;

/// The hierarchical weighted fair-share policy. See the crate documentation.
#[derive(Debug)]
pub struct Fair {
    config: FairConfig,
    /// Every queued task, with what is needed to find it in its key's lines.
    tasks: BTreeMap<TaskId, QueuedTask>,
    /// Fair queueing between tenants.
    tenant_turns: Sfq,
    /// Every tenant the policy has been told of or has seen a task of, until it is removed.
    tenants: BTreeMap<String, TenantState>,
    /// Under [`Charge::Time`], every assignment not yet finished, with what it was charged.
    running: BTreeMap<TaskId, Running>,
    /// Ready agents, longest idle first.
    ready: ReadyAgents,
}

#[derive(Debug)]
struct QueuedTask {
    tenant: String,
    key: String,
    priority: Priority,
    needed_capabilities: Vec<Capability>,
    queued_at: u64,
    /// What one unit of charge advances its key's tag by: [`UNIT`] / key weight.
    cost: VirtualTime,
}

/// An assignment charged an estimate of its run time, to be corrected when it finishes.
#[derive(Debug)]
struct Running {
    tenant: String,
    key: String,
    /// Milliseconds charged at dispatch.
    charged_ms: u64,
    /// The charge's numbers in the key's and the tenant's fair queueing.
    key_charge: u64,
    tenant_charge: u64,
    /// The key's cost per millisecond at dispatch.
    cost: VirtualTime,
}

/// One line of a key: tasks of one priority needing the same capabilities.
type Line = (Vec<Capability>, Priority);

#[derive(Debug)]
struct TenantState {
    /// As told by the host; 1 until then.
    weight: f64,
    /// Running mean of how long its tasks held their agents (milliseconds), once one finished.
    estimate: Option<f64>,
    /// Fair queueing between the tenant's keys.
    keys: Sfq,
    /// Keys with queued or running tasks.
    lines: BTreeMap<String, KeyState>,
    /// Queued tasks of the tenant.
    queued: usize,
}

impl TenantState {
    fn new() -> Self {
        TenantState {
            weight: 1.0,
            estimate: None,
            keys: Sfq::default(),
            lines: BTreeMap::new(),
            queued: 0,
        }
    }
}

#[derive(Debug, Default)]
struct KeyState {
    /// The key's queued tasks, one line per (needed capabilities, priority), each by task id.
    /// An emptied line is removed.
    lines: BTreeMap<Line, BTreeSet<TaskId>>,
    /// Its assignments charged an estimate and not finished yet.
    running: u32,
    /// Running mean of how long its tasks held their agents (milliseconds), once one finished.
    estimate: Option<f64>,
}

/// `UNIT / weight`, the weight clamped to [`MIN_WEIGHT`]..=[`MAX_WEIGHT`] (within the clamp
/// this is between about 2^30 and 2^50: exact enough, never zero). A weight that is not a
/// number above zero counts as 1: the host promises one, and a broken promise must not stall.
fn cost_per_unit(weight: f64) -> VirtualTime {
    let weight = if weight.is_finite() && weight > 0.0 {
        weight.clamp(MIN_WEIGHT, MAX_WEIGHT)
    } else {
        1.0
    };
    (UNIT as f64 / weight).round() as VirtualTime
}

/// Moves a running mean toward `sample`; the first sample sets it.
fn update_estimate(estimate: &mut Option<f64>, sample: u64) {
    let sample = sample as f64;
    *estimate = Some(match *estimate {
        Some(mean) => mean + (sample - mean) * ESTIMATE_GAIN,
        None => sample,
    });
}

impl Fair {
    /// The configuration in force.
    pub fn config(&self) -> &FairConfig {
        &self.config
    }

    /// Number of queued tasks the policy knows of.
    pub fn queued_len(&self) -> usize {
        self.tasks.len()
    }

    /// Number of ready agents the policy knows of.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Number of keys with queued tasks, over all tenants.
    pub fn active_keys(&self) -> usize {
        self.tenants.values().map(|t| t.keys.active()).sum()
    }

    /// Number of tenants with queued tasks.
    pub fn active_tenants(&self) -> usize {
        self.tenant_turns.active()
    }

    /// The tag of a key of a tenant (active or remembered idle), for inspection and tests.
    pub fn key_tag(&self, tenant: &str, key: &str) -> Option<VirtualTime> {
        self.tenants.get(tenant).and_then(|t| t.keys.tag(key))
    }

    /// The tag of a tenant (active or remembered idle), for inspection and tests.
    pub fn tenant_tag(&self, tenant: &str) -> Option<VirtualTime> {
        self.tenant_turns.tag(tenant)
    }

    /// The weight a tenant is charged at: as told, 1 if never told.
    pub fn tenant_weight_of(&self, tenant: &str) -> f64 {
        self.tenants.get(tenant).map_or(1.0, |t| t.weight)
    }

    /// The global virtual time between tenants.
    pub fn virtual_time(&self) -> VirtualTime {
        self.tenant_turns.now
    }

    /// What one unit of charge of a task of `key` whose own weight is `task_weight` advances
    /// the key's tag by: the configured weight of the key if any, else the task's.
    fn cost(&self, key: &str, task_weight: f64) -> VirtualTime {
        cost_per_unit(self.config.weights.get(key).copied().unwrap_or(task_weight))
    }

    /// Units an assignment of `key` in `tenant` is charged at dispatch: 1 under
    /// [`Charge::Tasks`]; under [`Charge::Time`] the estimated run time in milliseconds (the
    /// key's running mean, else the tenant's, else `initial_estimate_ms`; at least 1).
    fn units(&self, tenant: &TenantState, key: &str) -> u64 {
        match self.config.charge {
            Charge::Tasks => 1,
            Charge::Time => {
                let estimate = tenant
                    .lines
                    .get(key)
                    .and_then(|k| k.estimate)
                    .or(tenant.estimate);
                let ms = match estimate {
                    Some(ms) => ms.round() as u64,
                    None => self.config.initial_estimate_ms,
                };
                ms.max(self.config.min_charge_ms).max(1)
            }
        }
    }

    /// What assigning `task` advances its key's tag by.
    fn key_cost(&self, tenant: &TenantState, task: &QueuedTask) -> VirtualTime {
        task.cost
            .saturating_mul(VirtualTime::from(self.units(tenant, &task.key)))
    }

    /// What assigning a task of `key` advances its tenant's tag by.
    fn tenant_cost(&self, tenant: &TenantState, key: &str) -> VirtualTime {
        cost_per_unit(tenant.weight).saturating_mul(VirtualTime::from(self.units(tenant, key)))
    }

    /// Puts a task in its key's line, activating the key and the tenant if they had nothing
    /// queued.
    fn link(&mut self, id: TaskId, task: QueuedTask) {
        let tenant = self
            .tenants
            .entry(task.tenant.clone())
            .or_insert_with(TenantState::new);
        tenant
            .lines
            .entry(task.key.clone())
            .or_default()
            .lines
            .entry((task.needed_capabilities.clone(), task.priority))
            .or_default()
            .insert(id);
        tenant.keys.activate(&task.key);
        tenant.queued += 1;
        self.tenant_turns.activate(&task.tenant);
        self.tasks.insert(id, task);
    }

    /// Takes a task out of its key's line. The key and the tenant stay active even if this
    /// emptied them: [`Fair::settle_key`] and [`Fair::settle_tenant`] decide that, so a task
    /// replaced in place does not cycle its key.
    fn unlink(&mut self, id: TaskId) -> Option<QueuedTask> {
        let task = self.tasks.remove(&id)?;
        if let Some(tenant) = self.tenants.get_mut(&task.tenant) {
            tenant.queued = tenant.queued.saturating_sub(1);
            if let Some(key) = tenant.lines.get_mut(&task.key) {
                let line = (task.needed_capabilities.clone(), task.priority);
                if let Some(ids) = key.lines.get_mut(&line) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        key.lines.remove(&line);
                    }
                }
            }
        }
        Some(task)
    }

    /// Deactivates a key left without queued tasks, and forgets its state once nothing of it
    /// runs either.
    fn settle_key(&mut self, tenant: &str, key: &str) {
        let Some(state) = self.tenants.get_mut(tenant) else {
            return;
        };
        let Some(lines) = state.lines.get(key) else {
            return;
        };
        if lines.lines.is_empty() {
            state.keys.deactivate(key);
            if lines.running == 0 {
                state.lines.remove(key);
            }
        }
        state.keys.forget_caught_up();
    }

    /// Deactivates a tenant left without queued tasks.
    fn settle_tenant(&mut self, tenant: &str) {
        if self.tenants.get(tenant).is_none_or(|t| t.queued == 0) {
            self.tenant_turns.deactivate(tenant);
        }
        self.tenant_turns.forget_caught_up();
    }

    /// Stops counting `run` as running on its key.
    fn forget_run(&mut self, run: &Running) {
        if let Some(key) = self
            .tenants
            .get_mut(&run.tenant)
            .and_then(|t| t.lines.get_mut(&run.key))
        {
            key.running = key.running.saturating_sub(1);
        }
        self.settle_key(&run.tenant, &run.key);
    }

    /// Corrects the charge of a finished assignment by the time it really held its agent.
    fn settle_run(&mut self, task: TaskId, held_ms: u64) {
        let Some(run) = self.running.remove(&task) else {
            return;
        };
        let held_ms = held_ms.max(self.config.min_charge_ms).max(1);
        let Some(tenant) = self.tenants.get_mut(&run.tenant) else {
            return;
        };
        update_estimate(&mut tenant.estimate, held_ms);
        if let Some(key) = tenant.lines.get_mut(&run.key) {
            key.running = key.running.saturating_sub(1);
            update_estimate(&mut key.estimate, held_ms);
        }
        let delta = i128::from(held_ms) - i128::from(run.charged_ms);
        let key_delta = delta.saturating_mul(i128::try_from(run.cost).unwrap_or(i128::MAX));
        let tenant_delta =
            delta.saturating_mul(i128::try_from(cost_per_unit(tenant.weight)).unwrap_or(i128::MAX));
        tenant.keys.correct(&run.key, run.key_charge, key_delta);
        self.tenant_turns
            .correct(&run.tenant, run.tenant_charge, tenant_delta);
        self.settle_key(&run.tenant, &run.key);
        self.settle_tenant(&run.tenant);
    }
}

/// A task's priority after aging: one class better per `aging_ms` waited, never below urgent.
fn effective_priority(priority: Priority, queued_at: u64, now: u64, aging_ms: u64) -> Priority {
    let classes = now.saturating_sub(queued_at) / aging_ms.max(1);
    priority.saturating_sub(Priority::try_from(classes).unwrap_or(Priority::MAX))
}

impl Policy for Fair {
    const NAME: &'static str = "fair";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(config: &Value) -> Result<Self, String> {
        Ok(Self {
            config: FairConfig::from_json(config)?,
            tasks: BTreeMap::new(),
            tenant_turns: Sfq::default(),
            tenants: BTreeMap::new(),
            running: BTreeMap::new(),
            ready: ReadyAgents::default(),
        })
    }

    /// Queuing a task that is already queued replaces it; its id keeps its place in its line.
    fn task_queued(&mut self, task: Task) {
        if let Some(old) = self.unlink(task.id) {
            if old.tenant != task.tenant || old.key != task.fairness_key {
                self.settle_key(&old.tenant, &old.key);
            }
            if old.tenant != task.tenant {
                self.settle_tenant(&old.tenant);
            }
        }
        let cost = self.cost(&task.fairness_key, task.weight);
        self.link(
            task.id,
            QueuedTask {
                tenant: task.tenant,
                key: task.fairness_key,
                priority: task.priority,
                needed_capabilities: task.needed_capabilities,
                queued_at: task.queued_at,
                cost,
            },
        );
        // A replacement into the same key may have emptied and refilled it; nothing to settle.
    }

    /// A task leaving without an assignment costs its key and tenant nothing.
    fn task_dequeued(&mut self, task: TaskId) {
        if let Some(old) = self.unlink(task) {
            self.settle_key(&old.tenant, &old.key);
            self.settle_tenant(&old.tenant);
        }
    }

    /// An agent reported ready while already ready keeps its place in line (it has not stopped
    /// being idle); its capabilities are updated.
    fn agent_ready(&mut self, agent: Agent) {
        self.ready.ready(agent);
    }

    fn agent_unready(&mut self, agent: AgentId) {
        self.ready.remove(agent);
    }

    /// The one place shares are charged (corrected later under [`Charge::Time`]): the key's
    /// and the tenant's tags advance by the assignment's cost, and each level's global virtual
    /// time moves to the start of this assignment.
    fn assigned(&mut self, task: TaskId, agent: AgentId) {
        self.ready.remove(agent);
        let Some(done) = self.unlink(task) else {
            return;
        };
        let Some(tenant) = self.tenants.get(&done.tenant) else {
            return;
        };
        let units = self.units(tenant, &done.key);
        let key_cost = self.key_cost(tenant, &done);
        let tenant_cost = self.tenant_cost(tenant, &done.key);
        let tenant_charge = self.tenant_turns.charge(&done.tenant, tenant_cost);
        if let Some(tenant) = self.tenants.get_mut(&done.tenant) {
            let key_charge = tenant.keys.charge(&done.key, key_cost);
            if self.config.charge == Charge::Time {
                if let Some(key) = tenant.lines.get_mut(&done.key) {
                    key.running += 1;
                }
                let run = Running {
                    tenant: done.tenant.clone(),
                    key: done.key.clone(),
                    charged_ms: units,
                    key_charge,
                    tenant_charge,
                    cost: done.cost,
                };
                // The host finishes an assignment before assigning the task again; should it
                // not, the earlier one is left as charged.
                if let Some(stale) = self.running.insert(task, run) {
                    self.forget_run(&stale);
                }
            }
        }
        self.settle_key(&done.tenant, &done.key);
        self.settle_tenant(&done.tenant);
    }

    /// Under [`Charge::Time`], replaces the estimate charged at dispatch with the time the
    /// task held its agent, whatever the outcome (a returned, failed or cancelled task held it
    /// too). An assignment made before the policy was (re)started was never charged and is
    /// not charged now.
    fn task_finished(&mut self, task: TaskId, _agent: AgentId, _outcome: Outcome, held_ms: u64) {
        self.settle_run(task, held_ms);
    }

    /// Applies from the next assignment on: tags already reached stay, later turns are
    /// charged at the new weight.
    fn tenant_weight(&mut self, tenant: &str, weight: f64) {
        self.tenants
            .entry(tenant.to_string())
            .or_insert_with(TenantState::new)
            .weight = weight;
    }

    /// Forgets the tenant. The host removes only tenants without tasks; should one still have
    /// queued tasks, they are dropped from the policy's view too, as the tenant is gone.
    fn tenant_removed(&mut self, tenant: &str) {
        self.tenant_turns.remove(tenant);
        self.tenants.remove(tenant);
        self.tasks.retain(|_, t| t.tenant != tenant);
        self.running.retain(|_, r| r.tenant != tenant);
    }

    /// Reads the state only: nothing changes until the host confirms with `assigned`, so a
    /// proposal the host refuses leaves the task, the agent and the shares where they were.
    ///
    /// Turns between tenants are taken in tag order, merging the active tenants as stored
    /// (walked lazily, lowest tag first) with the tenants already served in this decision (a
    /// heap keyed by their advanced tags); each turn goes to the tenant's next key
    /// ([`TenantPass::next`]). A tenant with nothing runnable drops out of the decision.
    fn decide(&mut self, now: u64) -> Vec<Assignment> {
        let this = &*self;
        let mut proposals = Vec::new();
        if this.ready.is_empty() || this.tenant_turns.turns.is_empty() {
            return proposals;
        }
        let mut agents = AgentSearch::default();
        let mut stored = this.tenant_turns.turns.iter().peekable();
        let mut tenants: Vec<TenantPass<'_>> = Vec::new();
        let mut pending: BinaryHeap<Reverse<(VirtualTime, Activation, usize)>> = BinaryHeap::new();

        loop {
            while let Some(&(&(tag, activation), name)) = stored.peek() {
                if let Some(Reverse((t, a, _))) = pending.peek() {
                    if (tag, activation) > (*t, *a) {
                        break;
                    }
                }
                stored.next();
                tenants.push(TenantPass::new(
                    name,
                    this.tenants.get(name),
                    tag,
                    activation,
                ));
                pending.push(Reverse((tag, activation, tenants.len() - 1)));
            }
            let Some(Reverse((_, _, index))) = pending.pop() else {
                break;
            };
            let tenant = &mut tenants[index];
            let Some((task, agent)) = tenant.next(this, &mut agents, now) else {
                continue;
            };
            proposals.push(Assignment { task, agent });
            if agents.taken.len() == this.ready.len() {
                break;
            }
            if let (Some(state), Some(queued)) =
                (this.tenants.get(tenant.name), this.tasks.get(&task))
            {
                tenant.tag += this.tenant_cost(state, &queued.key);
            }
            pending.push(Reverse((tenant.tag, tenant.activation, index)));
        }
        proposals
    }
}

switchyard_policy_sdk::export_policy!(Fair);

#[cfg(test)]
mod tests;
