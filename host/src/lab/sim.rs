//! The simulation: a fleet of simulated agents in simulated time, scheduled by a real
//! [`PolicyHost`], with every proposal judged by [`policy::check_proposal`].
//!
//! It follows the hub's engine (host/src/engine/) step by step, so that what the lab predicts
//! is what the hub does:
//!
//! - Everything that happens at one simulated millisecond is one *batch*: first the tasks that
//!   finish (`task-finished`, then `agent-ready` for the freed agent), then the tasks that
//!   arrive (`task-queued`), then one decision pass, as the engine applies a batch of commands
//!   and then schedules once.
//! - A decision pass runs only when a task is queued and an agent is ready (the engine's
//!   `has_work`); a pass whose call fails replays the live state into a fresh instance and asks
//!   again, at most [`policy::BREAKER_FAILURES`] more times, as `engine/schedule.rs` does.
//! - Ready agents stand in one line, served longest-idle first: every agent is connected and
//!   idle at time zero, in the order the scenario lists them; an agent that finishes a task
//!   joins the back. Replays tell queued tasks by priority then submission, then the line.
//! - An assigned agent accepts at once and runs its task for its run time; every task
//!   completes (the lab does not simulate failures, take-backs or disconnects).
//!
//! Time the policy sees is [`EPOCH_MS`] plus simulated time, so ages (`now − queued_at`) are
//! the simulated ones.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Instant;

use serde::Serialize;

use super::scenario::Scenario;
use super::workload::{key_name, Submission};
use crate::policy::{
    self, AgentView, Assignment, Outcome, PolicyHost, PolicyStatus, ProposalRefusal, TaskView,
};

/// Simulated time zero, as the policy sees it: 2026-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// A task's handle is its submission index plus one (task handles count from 1 in the hub).
fn handle(index: usize) -> u64 {
    index as u64 + 1
}

/// `assigned_at` of a task never assigned.
pub const NOT_ASSIGNED: u64 = u64::MAX;

/// What one run left behind, for the metrics.
#[derive(Debug)]
pub struct Trace {
    /// Per submission: when it was assigned (simulated ms), or [`NOT_ASSIGNED`].
    pub assigned_at: Vec<u64>,
    /// Decision calls made on a live instance.
    pub decisions: u64,
    /// Proposals received.
    pub proposals: u64,
    /// Wall-clock duration of every decision call, nanoseconds.
    pub decide_ns: Vec<u64>,
    /// Refused proposals by reason.
    pub refusals: BTreeMap<ProposalRefusal, u64>,
    /// The first refused proposal of each reason, to show what was wrong.
    pub refusal_examples: Vec<RefusalExample>,
    /// The policy host's own view at the end (counters of traps, time-outs, fallback).
    pub status: PolicyStatus,
}

/// One refused proposal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefusalExample {
    /// Simulated milliseconds from the start.
    pub at_ms: u64,
    pub task: u64,
    pub agent: u32,
    pub reason: ProposalRefusal,
}

struct SimAgent {
    capabilities: Vec<u32>,
    /// Its place in the line while ready.
    place: Option<u64>,
    /// When it last became ready (simulated ms).
    idle_since: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Queued,
    Assigned,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    work: &'a [Submission],
    policy: &'a mut PolicyHost,
    /// Needed capabilities per group, interned and sorted.
    needs: Vec<Vec<u32>>,
    /// Fairness key names per group.
    keys: Vec<Vec<String>>,
    agents: Vec<SimAgent>,
    /// Ready agents by place, longest idle first.
    line: BTreeMap<u64, u32>,
    next_place: u64,
    /// State per submission that has arrived (index < `arrived`).
    states: Vec<State>,
    queued: usize,
    /// Tasks running: (finish time, agent, task index), earliest first.
    running: BinaryHeap<Reverse<(u64, u32, usize)>>,
    trace: Trace,
}

/// Capability handles for `names`, sorted and without duplicates, interning new names in
/// the order first seen (as the engine's feed does).
fn intern(table: &mut HashMap<String, u32>, names: &[String]) -> Vec<u32> {
    let mut handles: Vec<u32> = names
        .iter()
        .map(|name| {
            let next = table.len() as u32;
            *table.entry(name.clone()).or_insert(next)
        })
        .collect();
    handles.sort_unstable();
    handles.dedup();
    handles
}

/// Runs `work` (generated from `scenario`) through `policy`. `progress` is told the simulated
/// time reached, about every tenth of the run.
pub fn simulate(
    scenario: &Scenario,
    work: &[Submission],
    policy: &mut PolicyHost,
    progress: &mut dyn FnMut(u64),
) -> Trace {
    let mut table = HashMap::new();
    let mut agents = Vec::new();
    for spec in &scenario.agents {
        let capabilities = intern(&mut table, &spec.capabilities);
        for _ in 0..spec.count {
            agents.push(SimAgent {
                capabilities: capabilities.clone(),
                place: None,
                idle_since: 0,
            });
        }
    }
    let needs = scenario
        .groups
        .iter()
        .map(|g| intern(&mut table, &g.capabilities))
        .collect();
    let keys = scenario
        .groups
        .iter()
        .map(|g| (0..g.keys).map(|k| key_name(g, k)).collect())
        .collect();
    let status = policy.status();
    let mut sim = Sim {
        scenario,
        work,
        policy,
        needs,
        keys,
        agents,
        line: BTreeMap::new(),
        next_place: 0,
        states: Vec::with_capacity(work.len()),
        queued: 0,
        running: BinaryHeap::new(),
        trace: Trace {
            assigned_at: vec![NOT_ASSIGNED; work.len()],
            decisions: 0,
            proposals: 0,
            decide_ns: Vec::new(),
            refusals: BTreeMap::new(),
            refusal_examples: Vec::new(),
            // Replaced by the state at the end.
            status,
        },
    };
    sim.run(progress);
    sim.trace.status = sim.policy.status();
    sim.trace
}

impl Sim<'_> {
    fn run(&mut self, progress: &mut dyn FnMut(u64)) {
        let horizon = self.scenario.duration.ms();
        let step = (horizon / 10).max(1);
        let mut next_report = step;
        self.tell_tenants();
        // Every agent connects at time zero, in the order listed.
        for agent in 0..self.agents.len() as u32 {
            self.ready(agent, 0);
        }
        loop {
            let arrival = self.work.get(self.states.len()).map(|s| s.at);
            let finish = self.running.peek().map(|Reverse((at, _, _))| *at);
            let now = match (arrival, finish) {
                (Some(a), Some(f)) => a.min(f),
                (Some(t), None) | (None, Some(t)) => t,
                (None, None) => break,
            };
            if now >= horizon {
                break;
            }
            while let Some(&Reverse((at, agent, task))) = self.running.peek() {
                if at != now {
                    break;
                }
                self.running.pop();
                let held_ms = self.work[task].run_ms;
                self.policy
                    .task_finished(handle(task), agent, Outcome::Completed, held_ms);
                self.ready(agent, now);
            }
            while let Some(submission) = self.work.get(self.states.len()) {
                if submission.at != now {
                    break;
                }
                let view = self.view_of_task(self.states.len());
                self.states.push(State::Queued);
                self.queued += 1;
                self.policy.task_queued(&view);
            }
            self.schedule(now);
            while now >= next_report {
                progress(next_report.min(horizon));
                next_report += step;
            }
        }
        progress(horizon);
    }

    /// Tells the policy every tenant's weight, as the hub does after a load or restart, before
    /// any task.
    fn tell_tenants(&mut self) {
        for (tenant, weight) in self.scenario.tenant_weights() {
            self.policy.tenant_weight(&tenant, weight);
        }
    }

    /// `agent` joins the back of the line of ready agents.
    fn ready(&mut self, agent: u32, now: u64) {
        let place = self.next_place;
        self.next_place += 1;
        let a = &mut self.agents[agent as usize];
        a.place = Some(place);
        a.idle_since = now;
        self.line.insert(place, agent);
        let view = AgentView {
            id: agent,
            capabilities: a.capabilities.clone(),
            idle_since: EPOCH_MS + now,
        };
        self.policy.agent_ready(&view);
    }

    fn view_of_task(&self, index: usize) -> TaskView {
        let s = &self.work[index];
        let group = &self.scenario.groups[s.group];
        TaskView {
            id: handle(index),
            priority: group.priority.0,
            needed_capabilities: self.needs[s.group].clone(),
            tenant: group.tenant.clone(),
            fairness_key: self.keys[s.group][s.key as usize].clone(),
            weight: group.weight,
            retry_count: 0,
            queued_at: EPOCH_MS + s.at,
        }
    }

    /// One decision pass, as `engine/schedule.rs` runs it.
    fn schedule(&mut self, now: u64) {
        if self.policy.needs_replay() {
            self.replay();
        }
        if self.queued == 0 || self.line.is_empty() {
            return;
        }
        let mut proposals = self.decide(now);
        for _ in 0..policy::BREAKER_FAILURES {
            if !self.policy.needs_replay() {
                break;
            }
            self.replay();
            proposals = self.decide(now);
        }
        self.trace.proposals += proposals.len() as u64;
        let mut refused = 0;
        for proposal in proposals {
            if !self.try_assign(proposal, now) {
                refused += 1;
            }
        }
        if refused > 0 {
            self.policy.record_rejected(refused);
        }
    }

    fn decide(&mut self, now: u64) -> Vec<Assignment> {
        if !self.policy.needs_replay() {
            self.trace.decisions += 1;
        }
        let started = Instant::now();
        let proposals = self.policy.decide(EPOCH_MS + now);
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.trace.decide_ns.push(ns);
        proposals
    }

    /// Tells a fresh instance the live state: the tenants' weights, queued tasks by priority
    /// then submission, then the ready agents in line.
    fn replay(&mut self) {
        self.policy.restart();
        self.tell_tenants();
        let mut queued: Vec<(u8, usize)> = self
            .states
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == State::Queued)
            .map(|(i, _)| (self.scenario.groups[self.work[i].group].priority.0, i))
            .collect();
        queued.sort_unstable();
        for (_, index) in queued {
            let view = self.view_of_task(index);
            self.policy.task_queued(&view);
        }
        for &agent in self.line.values() {
            let a = &self.agents[agent as usize];
            let view = AgentView {
                id: agent,
                capabilities: a.capabilities.clone(),
                idle_since: EPOCH_MS + a.idle_since,
            };
            self.policy.agent_ready(&view);
        }
    }

    /// Applies one proposal if [`policy::check_proposal`] allows it.
    fn try_assign(&mut self, proposal: Assignment, now: u64) -> bool {
        // A handle beyond the tasks that have arrived names nothing the host knows.
        let index = proposal
            .task
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < self.states.len());
        let task = index.map(|i| policy::ProposedTask {
            queued: self.states[i] == State::Queued,
            needs: &self.needs[self.work[i].group],
        });
        let agent = self
            .agents
            .get(proposal.agent as usize)
            .map(|a| policy::ProposedAgent {
                ready: a.place.is_some(),
                capabilities: &a.capabilities,
            });
        if let Err(reason) = policy::check_proposal(task, agent) {
            *self.trace.refusals.entry(reason).or_default() += 1;
            // The first refusal of each reason: one example says what is wrong.
            if !self
                .trace
                .refusal_examples
                .iter()
                .any(|e| e.reason == reason)
            {
                self.trace.refusal_examples.push(RefusalExample {
                    at_ms: now,
                    task: proposal.task,
                    agent: proposal.agent,
                    reason,
                });
            }
            return false;
        }
        let index = index.expect("checked above");
        self.states[index] = State::Assigned;
        self.queued -= 1;
        let agent = &mut self.agents[proposal.agent as usize];
        if let Some(place) = agent.place.take() {
            self.line.remove(&place);
        }
        self.policy.assigned(proposal.task, proposal.agent);
        self.trace.assigned_at[index] = now;
        self.running.push(Reverse((
            now + self.work[index].run_ms,
            proposal.agent,
            index,
        )));
        true
    }
}
