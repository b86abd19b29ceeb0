//! Fixtures for testing a policy natively, shared by every policy crate and the hub's own tests:
//! the events a host sends, each built in one line; a seeded generator for randomised tests; and
//! [`MiniHost`], a host in miniature that feeds a policy, keeps the live state beside it,
//! checks its proposals as the hub does, and runs whole batches ([`MiniHost::round`]).
//!
//! `switchyard policy new` writes this SDK into every crate it creates, so policy authors outside
//! this repository get the same kit.
//!
//! Behind the `testing` feature, so that a policy's WebAssembly build never carries it. A policy
//! crate turns it on for its tests only:
//!
//! ```toml
//! [dev-dependencies]
//! switchyard-policy-sdk = { path = "../sdk", features = ["testing"] }
//! ```
//!
//! Times are plain milliseconds: a fixture's task is queued and its agent idle since time 0, and
//! a test passes `now` to `decide` on the same scale.

use std::collections::BTreeMap;

use crate::{satisfies, Agent, AgentId, Assignment, Capability, Outcome, Policy, Task, TaskId};

/// The fairness key of a task built by [`task`], until [`Task::with_key`] names another.
pub const DEFAULT_KEY: &str = "k";

/// The tenant of a task built by [`task`], until [`Task::with_tenant`] names another: the hub's
/// `default` tenant, which always exists (weight 1 unless an admin changes it).
pub const DEFAULT_TENANT: &str = "default";

/// A queued task as a plain submission makes it: tenant [`DEFAULT_TENANT`], fairness key
/// [`DEFAULT_KEY`], weight 1, never
/// retried, queued at time 0. The `with_` methods below change one field each.
///
/// `needs` must be sorted ascending without duplicates, as the host sends capability lists.
pub fn task(id: TaskId, priority: u8, needs: &[Capability]) -> Task {
    assert_capability_list(needs);
    Task {
        id,
        priority,
        needed_capabilities: needs.to_vec(),
        tenant: DEFAULT_TENANT.to_string(),
        fairness_key: DEFAULT_KEY.to_string(),
        weight: 1.0,
        retry_count: 0,
        queued_at: 0,
    }
}

/// A ready agent, idle since time 0. `capabilities` must be sorted ascending without duplicates.
pub fn agent(id: AgentId, capabilities: &[Capability]) -> Agent {
    assert_capability_list(capabilities);
    Agent {
        id,
        capabilities: capabilities.to_vec(),
        idle_since: 0,
    }
}

/// A fixture that broke the contract would test a situation the host never creates.
fn assert_capability_list(list: &[Capability]) {
    assert!(
        list.windows(2).all(|pair| pair[0] < pair[1]),
        "capability lists are sorted ascending without duplicates: {list:?}"
    );
}

impl Task {
    /// The same task in another tenant.
    pub fn with_tenant(mut self, tenant: &str) -> Task {
        self.tenant = tenant.to_string();
        self
    }

    /// The same task under another fairness key.
    pub fn with_key(mut self, key: &str) -> Task {
        self.fairness_key = key.to_string();
        self
    }

    /// The same task with another weight.
    pub fn with_weight(mut self, weight: f64) -> Task {
        self.weight = weight;
        self
    }

    /// The same task, queued at another time (milliseconds, the scale of `decide`'s `now`).
    pub fn with_queued_at(mut self, queued_at: u64) -> Task {
        self.queued_at = queued_at;
        self
    }
}

/// Proposals as `(task, agent)` pairs, which compare and print compactly in assertions.
pub fn pairs(proposals: &[Assignment]) -> Vec<(TaskId, AgentId)> {
    proposals.iter().map(|a| (a.task, a.agent)).collect()
}

/// Confirms every proposal with `assigned`, as the host does when it accepts them all.
pub fn confirm_all<P: Policy>(policy: &mut P, proposals: &[Assignment]) {
    for proposal in proposals {
        policy.assigned(proposal.task, proposal.agent);
    }
}

/// A tiny seeded generator (xorshift64): randomised tests that replay the same events on every
/// run, without a dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Starts from `seed`, which must not be zero (xorshift would only ever yield zero).
    pub fn new(seed: u64) -> XorShift {
        assert_ne!(seed, 0, "a xorshift seed must not be zero");
        XorShift(seed)
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// A capability list drawn from the handles 0 to 3, each present with a chance of one in
    /// three: sorted, without duplicates, often empty.
    pub fn capabilities(&mut self) -> Vec<Capability> {
        (0..4).filter(|_| self.below(3) == 0).collect()
    }
}

/// A host in miniature, for tests that drive a policy through many events.
///
/// It keeps the live state the hub would keep (the queued tasks, the ready agents in the order
/// they became ready), sends the policy the event for every change, and checks each proposal as
/// the hub does before confirming it with `assigned`. The test can compare the policy's
/// decisions with a reference computed from that state, or with another instance.
///
/// Unlike the hub, it forwards `task_dequeued` and `agent_unready` for ids it does not hold, so
/// tests can check that the policy ignores them.
#[derive(Debug)]
pub struct MiniHost<P> {
    /// The policy under test; call it directly for what the host does not model
    /// (`task_finished`, say).
    pub policy: P,
    queued: BTreeMap<TaskId, Task>,
    /// In the order the agents became ready.
    ready: Vec<Agent>,
    /// Assignments of [`MiniHost::run_until`] still holding their agents, by (end, task).
    running: BTreeMap<(u64, TaskId), Held>,
}

/// One assignment of a timed run ([`MiniHost::run_until`]): the task, its agent, and when it
/// held the agent (simulated milliseconds; `end` is when it finishes, which may lie beyond the
/// run, for a task still running when it stopped).
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub task: Task,
    pub agent: Agent,
    pub start: u64,
    pub end: u64,
}

impl Held {
    /// Milliseconds it held its agent within `from..until`.
    pub fn within(&self, from: u64, until: u64) -> u64 {
        self.end.min(until).saturating_sub(self.start.max(from))
    }
}

impl<P: Policy> MiniHost<P> {
    pub fn new(policy: P) -> MiniHost<P> {
        MiniHost {
            policy,
            queued: BTreeMap::new(),
            ready: Vec::new(),
            running: BTreeMap::new(),
        }
    }

    /// A task enters the queue, replacing a queued one with the same id.
    pub fn task_queued(&mut self, task: Task) {
        self.queued.insert(task.id, task.clone());
        self.policy.task_queued(task);
    }

    /// A task leaves the queue without being assigned.
    pub fn task_dequeued(&mut self, task: TaskId) {
        self.queued.remove(&task);
        self.policy.task_dequeued(task);
    }

    /// An agent becomes ready. One that is ready already keeps its place in line and takes the
    /// capabilities it reports now, as in the hub.
    pub fn agent_ready(&mut self, agent: Agent) {
        match self.ready.iter_mut().find(|known| known.id == agent.id) {
            Some(known) => known.capabilities = agent.capabilities.clone(),
            None => self.ready.push(agent.clone()),
        }
        self.policy.agent_ready(agent);
    }

    /// A ready agent stops being ready without being assigned.
    pub fn agent_unready(&mut self, agent: AgentId) {
        self.ready.retain(|known| known.id != agent);
        self.policy.agent_unready(agent);
    }

    /// The policy's proposals, unchecked.
    pub fn decide(&mut self, now: u64) -> Vec<Assignment> {
        self.policy.decide(now)
    }

    /// Whether the hub would accept `proposal` now: its task is queued, and its agent is ready
    /// and has every capability the task needs.
    pub fn admits(&self, proposal: Assignment) -> bool {
        let task = self.queued.get(&proposal.task);
        let agent = self.ready_agent(proposal.agent);
        match (task, agent) {
            (Some(task), Some(agent)) => satisfies(&agent.capabilities, &task.needed_capabilities),
            _ => false,
        }
    }

    /// Checks `proposal` as the hub does and, when it passes, applies it: the task leaves the
    /// queue, the agent is busy, and the policy is told with `assigned`. Returns whether it
    /// passed. Confirming a decision's proposals in order refuses the ones that reuse a task or
    /// an agent, as the hub does.
    pub fn confirm(&mut self, proposal: Assignment) -> bool {
        if !self.admits(proposal) {
            return false;
        }
        self.queued.remove(&proposal.task);
        self.ready.retain(|known| known.id != proposal.agent);
        self.policy.assigned(proposal.task, proposal.agent);
        true
    }

    /// One batch as a hub whose agents finish at once runs it: decide; confirm every proposal
    /// (panicking, with the proposal, on one the hub would refuse); then each assigned task
    /// completes (`task_finished` with [`Outcome::Completed`]) and its agent is ready again
    /// with the same capabilities, at the back of the line. Returns the confirmed assignments
    /// with their tasks, in the policy's order: tests count who was served from them.
    pub fn round(&mut self, now: u64) -> Vec<(Assignment, Task)> {
        let proposals = self.policy.decide(now);
        let mut served = Vec::with_capacity(proposals.len());
        for proposal in proposals {
            let task = self.queued.get(&proposal.task).cloned();
            let agent = self.ready_agent(proposal.agent).cloned();
            match (task, agent) {
                (Some(task), Some(agent)) if self.confirm(proposal) => {
                    served.push((proposal, task, agent))
                }
                _ => panic!("the hub refuses {proposal:?}"),
            }
        }
        for (proposal, _, agent) in &served {
            self.policy
                .task_finished(proposal.task, proposal.agent, Outcome::Completed, 0);
            self.agent_ready(agent.clone());
        }
        served
            .into_iter()
            .map(|(proposal, task, _)| (proposal, task))
            .collect()
    }

    /// Runs the hub in simulated time from `from` until `until` (milliseconds, the scale of
    /// `decide`'s `now`), with agents that take time: each assigned task holds its agent for
    /// `run_time(task)` milliseconds (at least 1). At every moment something happens, as the
    /// hub's engine does: first the tasks due finish (`task_finished` with
    /// [`Outcome::Completed`] and the time held, their agents ready again at the back of the
    /// line, earliest-finishing first), then the policy decides and every proposal is
    /// confirmed (panicking on one the hub would refuse). Tasks still running at `until` keep
    /// running into the next call. Returns every assignment made, in order.
    pub fn run_until(
        &mut self,
        from: u64,
        until: u64,
        mut run_time: impl FnMut(&Task) -> u64,
    ) -> Vec<Held> {
        let mut made = Vec::new();
        let mut now = from;
        while now < until {
            let due: Vec<(u64, TaskId)> = self
                .running
                .range(..=(now, TaskId::MAX))
                .map(|(k, _)| *k)
                .collect();
            for key in due {
                if let Some(held) = self.running.remove(&key) {
                    self.policy.task_finished(
                        held.task.id,
                        held.agent.id,
                        Outcome::Completed,
                        held.end - held.start,
                    );
                    self.agent_ready(held.agent);
                }
            }
            for proposal in self.policy.decide(now) {
                let task = self.queued.get(&proposal.task).cloned();
                let agent = self.ready_agent(proposal.agent).cloned();
                match (task, agent) {
                    (Some(task), Some(agent)) if self.confirm(proposal) => {
                        let end = now + run_time(&task).max(1);
                        let held = Held {
                            task,
                            agent,
                            start: now,
                            end,
                        };
                        made.push(held.clone());
                        self.running.insert((end, held.task.id), held);
                    }
                    _ => panic!("the hub refuses {proposal:?}"),
                }
            }
            // The next moment something can change: the earliest finish.
            now = match self.running.keys().next() {
                Some(&(end, _)) => end.max(now + 1),
                None => until,
            };
        }
        made
    }

    /// The queued tasks, by id.
    pub fn queued_tasks(&self) -> &BTreeMap<TaskId, Task> {
        &self.queued
    }

    /// The ready agents, in the order they became ready.
    pub fn ready_agents(&self) -> &[Agent] {
        &self.ready
    }

    /// The ready agent `id`, if it is ready.
    pub fn ready_agent(&self, id: AgentId) -> Option<&Agent> {
        self.ready.iter().find(|known| known.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes the first agent able to run each task, in id order: enough policy to exercise the
    /// host model.
    #[derive(Default)]
    struct FirstFit {
        queued: BTreeMap<TaskId, Vec<Capability>>,
        ready: Vec<Agent>,
    }

    impl Policy for FirstFit {
        const NAME: &'static str = "first-fit";
        const VERSION: &'static str = "0";

        fn new(_config: &serde_json::Value) -> Result<Self, String> {
            Ok(Self::default())
        }
        fn task_queued(&mut self, task: Task) {
            self.queued.insert(task.id, task.needed_capabilities);
        }
        fn task_dequeued(&mut self, task: TaskId) {
            self.queued.remove(&task);
        }
        fn agent_ready(&mut self, agent: Agent) {
            self.ready.retain(|a| a.id != agent.id);
            self.ready.push(agent);
        }
        fn agent_unready(&mut self, agent: AgentId) {
            self.ready.retain(|a| a.id != agent);
        }
        fn assigned(&mut self, task: TaskId, agent: AgentId) {
            self.task_dequeued(task);
            self.agent_unready(agent);
        }
        fn decide(&mut self, _now: u64) -> Vec<Assignment> {
            let mut free: Vec<&Agent> = self.ready.iter().collect();
            let mut proposals = Vec::new();
            for (&task, needs) in &self.queued {
                if let Some(i) = free.iter().position(|a| satisfies(&a.capabilities, needs)) {
                    proposals.push(Assignment {
                        task,
                        agent: free.remove(i).id,
                    });
                }
            }
            proposals
        }
    }

    #[test]
    fn builders_fill_in_a_plain_submission() {
        let t = task(7, 1, &[2, 5]).with_key("team").with_weight(2.5);
        assert_eq!(
            t,
            Task {
                id: 7,
                priority: 1,
                needed_capabilities: vec![2, 5],
                tenant: DEFAULT_TENANT.into(),
                fairness_key: "team".into(),
                weight: 2.5,
                retry_count: 0,
                queued_at: 0,
            }
        );
        assert_eq!(task(1, 2, &[]).with_queued_at(9).queued_at, 9);
        assert_eq!(task(1, 2, &[]).fairness_key, DEFAULT_KEY);
        assert_eq!(agent(3, &[1]).idle_since, 0);
    }

    #[test]
    #[should_panic(expected = "sorted ascending")]
    fn an_unsorted_capability_list_is_refused() {
        task(1, 2, &[3, 1]);
    }

    #[test]
    fn the_generator_is_seeded_and_its_lists_are_valid() {
        let mut a = XorShift::new(42);
        let mut b = XorShift::new(42);
        for _ in 0..1_000 {
            assert_eq!(a.below(10), b.below(10));
            let list = a.capabilities();
            assert_eq!(list, b.capabilities());
            assert_capability_list(&list);
            assert!(list.iter().all(|&c| c < 4));
        }
    }

    #[test]
    fn the_mini_host_refuses_what_the_hub_refuses() {
        let mut host = MiniHost::new(FirstFit::default());
        host.task_queued(task(1, 2, &[1]));
        host.task_queued(task(2, 2, &[]));
        host.agent_ready(agent(10, &[]));
        host.agent_ready(agent(11, &[1]));
        // A repeated agent-ready keeps the agent's place and takes its new capabilities.
        host.agent_ready(agent(10, &[0]));
        assert_eq!(host.ready_agents().len(), 2);
        assert_eq!(host.ready_agents()[0].capabilities, [0]);

        let proposals = host.decide(0);
        assert_eq!(pairs(&proposals), [(1, 11), (2, 10)]);
        assert!(!host.admits(Assignment { task: 1, agent: 10 }), "lacks 1");
        assert!(
            !host.admits(Assignment { task: 9, agent: 10 }),
            "not queued"
        );
        assert!(!host.admits(Assignment { task: 2, agent: 99 }), "not ready");
        assert!(host.confirm(proposals[0]));
        assert!(!host.confirm(proposals[0]), "the same task twice");
        assert!(
            !host.confirm(Assignment { task: 2, agent: 11 }),
            "a busy agent"
        );
        assert!(host.confirm(proposals[1]));
        assert!(host.queued_tasks().is_empty() && host.ready_agents().is_empty());
        assert!(
            host.decide(0).is_empty(),
            "the policy was told with `assigned`"
        );

        host.task_queued(task(3, 2, &[]));
        host.task_dequeued(3);
        host.agent_ready(agent(12, &[]));
        host.agent_unready(12);
        assert!(host.ready_agent(12).is_none());
        assert!(host.decide(0).is_empty());
    }

    #[test]
    fn a_round_serves_completes_and_readies_the_agents_again() {
        let mut host = MiniHost::new(FirstFit::default());
        for id in 1..=5 {
            host.task_queued(task(id, 2, &[]).with_key(if id % 2 == 0 { "even" } else { "odd" }));
        }
        host.agent_ready(agent(10, &[1]));
        host.agent_ready(agent(11, &[]));
        let first = host.round(0);
        let served: Vec<_> = first
            .iter()
            .map(|(a, t)| (a.task, a.agent, t.fairness_key.as_str()))
            .collect();
        assert_eq!(served, [(1, 10, "odd"), (2, 11, "even")]);
        // Both agents are ready again, with their capabilities, in the order they finished.
        assert_eq!(host.ready_agents().len(), 2);
        assert_eq!(host.ready_agent(10).unwrap().capabilities, [1]);
        assert_eq!(
            pairs(
                &host
                    .round(0)
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect::<Vec<_>>()
            ),
            [(3, 10), (4, 11)]
        );
        assert_eq!(host.round(0).len(), 1);
        assert!(host.round(0).is_empty() && host.queued_tasks().is_empty());
    }

    #[test]
    fn a_timed_run_holds_agents_for_their_run_time_and_reports_it() {
        #[derive(Default)]
        struct Recording {
            inner: FirstFit,
            finished: Vec<(TaskId, u64)>,
        }
        impl Policy for Recording {
            const NAME: &'static str = "recording";
            const VERSION: &'static str = "0";
            fn new(_config: &serde_json::Value) -> Result<Self, String> {
                Ok(Self::default())
            }
            fn task_queued(&mut self, task: Task) {
                self.inner.task_queued(task)
            }
            fn task_dequeued(&mut self, task: TaskId) {
                self.inner.task_dequeued(task)
            }
            fn agent_ready(&mut self, agent: Agent) {
                self.inner.agent_ready(agent)
            }
            fn agent_unready(&mut self, agent: AgentId) {
                self.inner.agent_unready(agent)
            }
            fn assigned(&mut self, task: TaskId, agent: AgentId) {
                self.inner.assigned(task, agent)
            }
            fn task_finished(&mut self, task: TaskId, _: AgentId, _: Outcome, held_ms: u64) {
                self.finished.push((task, held_ms));
            }
            fn decide(&mut self, now: u64) -> Vec<Assignment> {
                self.inner.decide(now)
            }
        }
        let mut host = MiniHost::new(Recording::default());
        for id in 1..=4 {
            host.task_queued(task(id, 2, &[]));
        }
        host.agent_ready(agent(10, &[]));
        host.agent_ready(agent(11, &[]));
        // Odd tasks take 100 ms, even ones 30 ms.
        let run_time = |t: &Task| if t.id % 2 == 1 { 100 } else { 30 };
        let made = host.run_until(0, 50, run_time);
        let starts: Vec<_> = made
            .iter()
            .map(|h| (h.task.id, h.agent.id, h.start))
            .collect();
        // 1 and 2 at 0; 2 ends at 30 and agent 11 takes 3 (which runs until 130).
        assert_eq!(starts, [(1, 10, 0), (2, 11, 0), (3, 11, 30)]);
        assert_eq!(host.policy.finished, [(2, 30)]);
        assert_eq!(made[2].within(0, 50), 20);
        // The run goes on where it stopped: 1 ends at 100 (agent 10 takes 4), 4 at 130, 3 too.
        let made = host.run_until(50, 200, run_time);
        assert_eq!(made.len(), 1);
        assert_eq!((made[0].task.id, made[0].start, made[0].end), (4, 100, 130));
        assert_eq!(host.policy.finished, [(2, 30), (1, 100), (3, 100), (4, 30)]);
        assert_eq!(host.ready_agents().len(), 2);
    }

    #[test]
    #[should_panic(expected = "the hub refuses")]
    fn a_round_fails_on_a_proposal_the_hub_refuses() {
        struct Wrong;
        impl Policy for Wrong {
            const NAME: &'static str = "wrong";
            const VERSION: &'static str = "0";
            fn new(_config: &serde_json::Value) -> Result<Self, String> {
                Ok(Wrong)
            }
            fn task_queued(&mut self, _task: Task) {}
            fn task_dequeued(&mut self, _task: TaskId) {}
            fn agent_ready(&mut self, _agent: Agent) {}
            fn agent_unready(&mut self, _agent: AgentId) {}
            fn assigned(&mut self, _task: TaskId, _agent: AgentId) {}
            fn decide(&mut self, _now: u64) -> Vec<Assignment> {
                vec![Assignment { task: 1, agent: 99 }]
            }
        }
        let mut host = MiniHost::new(Wrong);
        host.task_queued(task(1, 2, &[]));
        host.round(0);
    }

    #[test]
    fn confirm_all_tells_the_policy_of_every_proposal() {
        let mut policy = FirstFit::default();
        policy.task_queued(task(1, 2, &[]));
        policy.agent_ready(agent(1, &[]));
        let proposals = policy.decide(0);
        confirm_all(&mut policy, &proposals);
        assert!(policy.queued.is_empty() && policy.ready.is_empty());
    }
}
