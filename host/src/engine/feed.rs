//! The policy feed: the policy instance and everything it has been told.
//!
//! The policy learns the live state from events (design principle 4), and the engine decides
//! whether a decision pass is worth running from two counts: tasks queued and agents ready.
//! Both must move in step with the events, or the policy and the engine disagree about what is
//! waiting. So every change to the queue or to the set of ready agents goes through one call
//! here, which updates the count and tells the policy together; nothing else touches either.
//!
//! The feed also owns what the policy sees of names: capability names become small integer
//! handles (interned here), and a fresh instance is told the whole live state by [`replay`].
//! The feed also remembers each tenant's weight, so that every fresh instance (after a load, a
//! swap, a restart or a renumbering) and every shadow run is told them before any task.
//!
//! Policies keep ready agents in the order the host announces them, and serve the first in
//! line (the one idle longest). The feed keeps that line: an agent that has been idle since its
//! connection was accepted queues from that moment, in connection order, so of two agents that
//! connect and identify at once the first to connect is served first (as AgentCom did); every
//! other agent joins at the back when it becomes ready. When an agent's place is ahead of
//! agents already announced, those step out and back in behind it, so the policy's line is
//! always the feed's.
//!
//! [`replay`]: PolicyFeed::replay

use crate::engine::agent::Agent;
use crate::engine::shadow::{Shadow, ShadowReport};
use crate::policy::{self, Assignment, Outcome, PolicyHost, PolicyStatus};
use crate::task::{Task, TaskStatus};
use crate::wire::TaskId;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// A place in the line of ready agents; lower is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    /// Idle since (ms): the connection's acceptance for an agent idle since then, otherwise
    /// when it became ready.
    since: u64,
    /// 0 for an agent idle since its connection was accepted, 1 for the others.
    rank: u8,
    /// The connection's id (they count up in order of acceptance), or the order in which the
    /// agent became ready.
    order: u64,
}

pub struct PolicyFeed {
    policy: PolicyHost,
    /// The policy a swap not yet committed replaced: back in force if the commit fails.
    replaced: Option<PolicyHost>,
    /// Capability handles by name.
    capabilities: HashMap<String, u32>,
    /// The table size at which names no longer used are swept out ([`PolicyFeed::needs_sweep`]).
    sweep_at: usize,
    /// Tasks the policy has been told are queued.
    queued: usize,
    /// The agents the policy has been told are ready, in line, with what it was told of each.
    line: BTreeMap<Place, policy::AgentView>,
    /// Each ready agent's place, by handle.
    places: HashMap<u32, Place>,
    /// Orders agents that join at the back.
    next_order: u64,
    /// A candidate told the same events as the policy (never replays of them), if one is set.
    shadow: Option<Shadow>,
    /// Each tenant's weight, by name: what a replay tells a fresh instance first. Ordered, so
    /// every replay tells them in the same order.
    tenants: BTreeMap<String, f64>,
}

impl PolicyFeed {
    pub fn new(policy: PolicyHost) -> PolicyFeed {
        PolicyFeed {
            policy,
            replaced: None,
            capabilities: HashMap::new(),
            sweep_at: SWEEP_FLOOR,
            queued: 0,
            line: BTreeMap::new(),
            places: HashMap::new(),
            next_order: 0,
            shadow: None,
            tenants: BTreeMap::new(),
        }
    }

    /// Every tenant and its weight, as loaded from the store (which always holds `default`):
    /// replaces what the feed remembers without telling the policy, which the caller replays
    /// next ([`PolicyFeed::replay`] tells the weights first).
    pub fn set_tenants(&mut self, tenants: impl IntoIterator<Item = (String, f64)>) {
        self.tenants = tenants.into_iter().collect();
    }

    /// A tenant was created or its weight changed: the policy and the shadow are told, and the
    /// weight is remembered for replays.
    pub fn tenant_weight(&mut self, name: &str, weight: f64) {
        self.policy.tenant_weight(name, weight);
        if let Some(shadow) = &mut self.shadow {
            shadow.tenant_weight(name, weight);
        }
        match self.tenants.get_mut(name) {
            Some(known) => *known = weight,
            None => {
                self.tenants.insert(name.to_string(), weight);
            }
        }
    }

    /// A tenant was deleted (it has no queued or assigned task left): the policy and the shadow
    /// are told, and replays no longer name it.
    pub fn tenant_removed(&mut self, name: &str) {
        if self.tenants.remove(name).is_none() {
            return;
        }
        self.policy.tenant_removed(name);
        if let Some(shadow) = &mut self.shadow {
            shadow.tenant_removed(name);
        }
    }

    /// Capability handles for `names`, sorted and without duplicates, interning new names.
    pub fn intern(&mut self, names: &[String]) -> Vec<u32> {
        let mut handles: Vec<u32> = names
            .iter()
            .map(|name| {
                let next = self.capabilities.len() as u32;
                *self.capabilities.entry(name.clone()).or_insert(next)
            })
            .collect();
        handles.sort_unstable();
        handles.dedup();
        handles
    }

    /// Capability names interned now.
    pub fn names(&self) -> usize {
        self.capabilities.len()
    }

    /// Whether the table has grown enough since the last sweep to sweep it now. Names are
    /// never released one by one (a handle the policy knows must keep its meaning), so the
    /// table grows until it doubles what was in use at the last sweep (or reaches
    /// [`SWEEP_FLOOR`]); then [`PolicyFeed::renumber`] rebuilds it from what is in use.
    pub fn needs_sweep(&self) -> bool {
        self.capabilities.len() >= self.sweep_at
    }

    /// Forgets every name and every handle, ahead of a renumbering: the caller interns the
    /// names its connected agents use again (and gives offline agents none), then calls
    /// [`PolicyFeed::renumber`].
    pub fn forget_names(&mut self) {
        self.capabilities.clear();
    }

    /// After [`PolicyFeed::forget_names`] and the agents' new handles: a fresh instance of the
    /// policy is told the whole live state with the new handles, in the same order as before.
    /// `ready` gives the new handles of each ready agent.
    pub fn renumber<'a>(
        &mut self,
        ready: &HashMap<u32, Vec<u32>>,
        tasks: impl Iterator<Item = &'a Task>,
    ) {
        for view in self.line.values_mut() {
            if let Some(handles) = ready.get(&view.id) {
                view.capabilities = handles.clone();
            }
        }
        self.policy.renew();
        self.replay(tasks);
        self.sweep_at = (2 * self.capabilities.len()).max(SWEEP_FLOOR);
    }

    /// Tasks queued and agents ready, as the policy has been told them.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        (self.queued, self.line.len())
    }

    /// Whether a decision pass could assign anything.
    pub fn has_work(&self) -> bool {
        self.queued > 0 && !self.line.is_empty()
    }

    /// `task` entered the queue (submitted, retried, taken back).
    pub fn task_queued(&mut self, task: &Task) {
        let view = self.view_of_task(task);
        self.queued += 1;
        self.policy.task_queued(&view);
        if let Some(shadow) = &mut self.shadow {
            shadow.task_queued(&view);
        }
    }

    /// A queued task left the queue without being assigned (cancelled, expired).
    pub fn task_dequeued(&mut self, task: TaskId) {
        self.queued -= 1;
        self.policy.task_dequeued(task.0);
        if let Some(shadow) = &mut self.shadow {
            shadow.task_dequeued(task.0);
        }
    }

    /// `agent` can take work from `now`: it takes its place in the line.
    pub fn agent_ready(&mut self, agent: &mut Agent, now: u64) {
        if agent.ready {
            return;
        }
        agent.ready = true;
        let place = match (&agent.connection, agent.fresh) {
            (Some(connection), true) => Place {
                since: agent.idle_since,
                rank: 0,
                order: connection.id,
            },
            _ => {
                self.next_order += 1;
                Place {
                    since: now,
                    rank: 1,
                    order: self.next_order,
                }
            }
        };
        let view = view_of_agent(agent);
        let behind: Vec<Place> = self
            .line
            .range((Bound::Excluded(place), Bound::Unbounded))
            .map(|(place, _)| *place)
            .collect();
        for later in &behind {
            self.policy.agent_unready(self.line[later].id);
        }
        self.policy.agent_ready(&view);
        for later in &behind {
            self.policy.agent_ready(&self.line[later]);
        }
        if let Some(shadow) = &mut self.shadow {
            for later in &behind {
                shadow.agent_unready(self.line[later].id);
            }
            shadow.agent_ready(&view);
            for later in &behind {
                shadow.agent_ready(&self.line[later]);
            }
        }
        self.line.insert(place, view);
        self.places.insert(agent.handle, place);
    }

    /// `agent` stopped being able to take work without being assigned any.
    pub fn agent_unready(&mut self, agent: &mut Agent) {
        if !agent.ready {
            return;
        }
        self.leave_line(agent);
        self.policy.agent_unready(agent.handle);
        if let Some(shadow) = &mut self.shadow {
            shadow.agent_unready(agent.handle);
        }
    }

    /// A proposal was applied: the task left the queue, and the agent the line.
    pub fn assigned(&mut self, task: TaskId, agent: &mut Agent) {
        debug_assert!(agent.ready, "only a ready agent is assigned");
        self.leave_line(agent);
        self.queued -= 1;
        self.policy.assigned(task.0, agent.handle);
    }

    fn leave_line(&mut self, agent: &mut Agent) {
        agent.ready = false;
        if let Some(place) = self.places.remove(&agent.handle) {
            self.line.remove(&place);
        }
    }

    /// An assignment of `task` to the agent with `handle` ended with `outcome`, after holding
    /// the agent for `held_ms`.
    pub fn task_finished(&mut self, task: TaskId, handle: u32, outcome: Outcome, held_ms: u64) {
        self.policy.task_finished(task.0, handle, outcome, held_ms);
        if let Some(shadow) = &mut self.shadow {
            shadow.task_finished(task.0, handle, outcome, held_ms);
        }
    }

    /// Every connection is gone at once (a failed commit closes them all): no agent is ready.
    /// The caller clears each agent's `ready` flag.
    pub fn no_agent_ready(&mut self) {
        self.line.clear();
        self.places.clear();
    }

    /// Tells the instance the whole live state, in the orders the contract promises (every
    /// tenant's weight first, then queued tasks by priority then submission, then ready agents
    /// in line), and recounts the queue. An instance discarded after a failure is replaced
    /// first.
    pub fn replay<'a>(&mut self, tasks: impl Iterator<Item = &'a Task>) {
        if self.policy.needs_replay() {
            self.policy.restart();
        }
        for (name, &weight) in &self.tenants {
            self.policy.tenant_weight(name, weight);
        }
        // The sort key sits beside each reference: with a million tasks queued, following the
        // references on every comparison made the sort a large part of a restart. Ids are
        // unique, so an unstable sort gives the same order.
        let mut queued: Vec<(u8, TaskId, &Task)> = tasks
            .filter(|t| t.status == TaskStatus::Queued)
            .map(|t| (t.priority, t.id, t))
            .collect();
        queued.sort_unstable_by_key(|&(priority, id, _)| (priority, id));
        self.queued = queued.len();
        for (_, _, task) in queued {
            let view = self.view_of_task(task);
            self.policy.task_queued(&view);
        }
        for agent in self.line.values() {
            self.policy.agent_ready(agent);
        }
    }

    /// Whether the instance was discarded after a failed call and must be replayed.
    pub fn needs_replay(&self) -> bool {
        self.policy.needs_replay()
    }

    /// Starts a fresh instance that knows nothing (the caller replays next).
    pub fn restart(&mut self) {
        self.policy.restart();
    }

    /// The policy's proposals; empty if the call failed (the instance then needs a replay).
    pub fn decide(&mut self, now: u64) -> Vec<Assignment> {
        self.policy.decide(now)
    }

    /// Counts proposals the engine refused.
    pub fn record_rejected(&mut self, n: u64) {
        self.policy.record_rejected(n);
    }

    pub fn status(&self) -> PolicyStatus {
        self.policy.status()
    }

    /// Whether the policy in force has fallen back to the native one.
    pub fn fallback_active(&self) -> bool {
        self.policy.fallback_active()
    }

    /// Puts `policy` in force (the caller replays the live state into it next). The one it
    /// replaces is kept until the swap is committed, to go back to if it is refused. Should a
    /// second swap follow before the first is committed, the first one's predecessor is kept:
    /// a refused commit then restores that one.
    pub fn swap(&mut self, policy: PolicyHost) {
        let replaced = std::mem::replace(&mut self.policy, policy);
        self.replaced.get_or_insert(replaced);
    }

    /// Every swap so far is committed: the policies they replaced can go.
    pub fn swap_committed(&mut self) {
        self.replaced = None;
    }

    /// The commit of a swap failed: the policy it replaced is back in force (the caller
    /// replays the live state into it). Whether there was a swap to undo.
    pub fn swap_refused(&mut self) -> bool {
        match self.replaced.take() {
            Some(policy) => {
                self.policy = policy;
                true
            }
            None => false,
        }
    }

    /// Whether a shadow run is set (running or stopped).
    pub fn shadowing(&self) -> bool {
        self.shadow.is_some()
    }

    /// Tells the shadow, if one is set, that the policy in force was asked at `now` and its
    /// proposals led to `assigned` (the shadow is asked at the same moment, and then told
    /// these as the policy was). `agents_known`: the agent handles given out so far.
    pub fn shadow_pass(&mut self, now: u64, assigned: Vec<(TaskId, u32)>, agents_known: usize) {
        if let Some(shadow) = &mut self.shadow {
            let assigned = assigned.into_iter().map(|(t, a)| (t.0, a)).collect();
            shadow.pass(
                now,
                assigned,
                u32::try_from(agents_known).unwrap_or(u32::MAX),
            );
        }
    }

    /// Starts a shadow run of `policy` from the live state, replacing (and ending) any run
    /// set before. The new run's first report.
    pub fn start_shadow<'a>(
        &mut self,
        policy: PolicyHost,
        source: String,
        tasks: impl Iterator<Item = &'a Task>,
    ) -> ShadowReport {
        if let Some(previous) = self.shadow.take() {
            previous.remove();
        }
        let (tasks, agents) = self.snapshot(tasks);
        let shadow = Shadow::start(policy, source, self.tenant_list(), tasks, agents);
        let report = shadow.report();
        self.shadow = Some(shadow);
        report
    }

    /// The shadow run's report, if one is set.
    pub fn shadow_report(&self) -> Option<ShadowReport> {
        self.shadow.as_ref().map(Shadow::report)
    }

    /// Ends the shadow run at once; its final report, if one was set.
    pub fn remove_shadow(&mut self) -> Option<ShadowReport> {
        self.shadow.take().map(Shadow::remove)
    }

    /// The live state was reloaded: the shadow, if one is set, starts again from it.
    pub fn resync_shadow<'a>(&mut self, tasks: impl Iterator<Item = &'a Task>) {
        if self.shadow.is_some() {
            let (tasks, agents) = self.snapshot(tasks);
            let tenants = self.tenant_list();
            if let Some(shadow) = &mut self.shadow {
                shadow.resync(tenants, tasks, agents);
            }
        }
    }

    /// The tenants' weights as values, for a shadow run.
    fn tenant_list(&self) -> Vec<(String, f64)> {
        self.tenants
            .iter()
            .map(|(name, &weight)| (name.clone(), weight))
            .collect()
    }

    /// What a replay tells a policy, as values: the queued tasks by priority then submission,
    /// and the ready agents in line.
    fn snapshot<'a>(
        &mut self,
        tasks: impl Iterator<Item = &'a Task>,
    ) -> (Vec<policy::TaskView>, Vec<policy::AgentView>) {
        let mut queued: Vec<&Task> = tasks.filter(|t| t.status == TaskStatus::Queued).collect();
        queued.sort_unstable_by_key(|t| (t.priority, t.id));
        let tasks = queued.into_iter().map(|t| self.view_of_task(t)).collect();
        let agents = self.line.values().cloned().collect();
        (tasks, agents)
    }

    fn view_of_task(&mut self, task: &Task) -> policy::TaskView {
        policy::TaskView {
            id: task.id.0,
            priority: task.priority,
            needed_capabilities: self.intern(&task.needed_capabilities),
            tenant: task.tenant.clone(),
            fairness_key: task.fairness_key.clone(),
            weight: task.weight,
            retry_count: task.retry_count,
            queued_at: task.queued_at,
        }
    }
}

/// The smallest table that is swept: below it, names are kept whether used or not.
pub const SWEEP_FLOOR: usize = 1024;

/// What the policy sees of an agent.
fn view_of_agent(agent: &Agent) -> policy::AgentView {
    policy::AgentView {
        id: agent.handle,
        capabilities: agent.capability_handles.clone(),
        idle_since: agent.idle_since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_gives_sorted_unique_stable_handles() {
        let greedy = PolicyHost::load(
            crate::policy::PolicySource::Builtin("greedy".into()),
            serde_json::json!({}),
        )
        .unwrap();
        let mut feed = PolicyFeed::new(greedy);
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(feed.intern(&names(&["b", "a", "b"])), vec![0, 1]);
        assert_eq!(feed.intern(&names(&["a"])), vec![1]);
        assert_eq!(feed.intern(&names(&["c", "a"])), vec![1, 2]);
    }

    /// What the 0.1.0 echo policy was told of the last task queued: its weight × 1000 and the
    /// length of its key (the adapter makes them its tenant's weight and name).
    fn told(feed: &mut PolicyFeed) -> Vec<(u64, u32)> {
        feed.decide(0).iter().map(|a| (a.task, a.agent)).collect()
    }

    #[test]
    fn every_replay_tells_the_tenants_weights_before_any_task() {
        let echo = PolicyHost::load(
            crate::policy::PolicySource::Bytes(crate::policy::echo_v0_1()),
            serde_json::Value::Null,
        )
        .unwrap();
        let mut feed = PolicyFeed::new(echo);
        feed.set_tenants([("default".to_string(), 1.0), ("team-a".to_string(), 2.5)]);
        let task = |id: u64, tenant: &str| {
            let new = crate::wire::http::NewTask::with_description("t");
            Task::new(TaskId(id), new, "alice", tenant, 0)
        };
        let first = task(1, "team-a");
        feed.replay(std::iter::once(&first));
        assert_eq!(told(&mut feed), [(2_500, 6)]);

        // A change reaches the policy at once, and later replays.
        feed.tenant_weight("team-a", 4.0);
        feed.task_queued(&task(2, "team-a"));
        assert_eq!(told(&mut feed), [(4_000, 6)]);
        feed.restart();
        feed.replay(std::iter::once(&first));
        assert_eq!(
            told(&mut feed),
            [(4_000, 6)],
            "a fresh instance is told again"
        );

        // A removed tenant is no longer told: the adapter's default weight applies.
        feed.tenant_removed("team-a");
        feed.restart();
        feed.replay(std::iter::once(&first));
        assert_eq!(told(&mut feed), [(1_000, 6)]);
    }
}
