//! A scheduling policy that misbehaves on request, so the end-to-end tests can check that the
//! hub survives what a buggy or hostile policy does: trap, run forever, eat memory, propose
//! nonsense.
//!
//! Its JSON configuration picks the misbehaviour:
//!
//! ```json
//! {"mode": "trap_in_decide", "after": 0}
//! ```
//!
//! `after` (default 0) is how many assignments an instance makes correctly (counted in the
//! host's `assigned` confirmations) before it starts to misbehave. The count belongs to the
//! instance, so an instance the host restarts after a failure starts again from zero: that is
//! what makes "fails every N assignments" deterministic however the host batches its calls.
//!
//! | mode | once `after` assignments are made |
//! |---|---|
//! | `well_behaved` (or no configuration) | never misbehaves |
//! | `trap_in_decide` | every `decide` traps (a panic, which is `unreachable` under `panic = "abort"`) |
//! | `loop_in_decide` | every `decide` runs forever (the host's epoch deadline must stop it) |
//! | `exhaust_memory` | every `decide` allocates until the host's memory cap refuses to grow |
//! | `bad_proposals` | every `decide` adds [`BAD_PROPOSALS_PER_DECISION`] invalid proposals |
//! | `trap_after_decisions` | the instance traps in the `assigned` confirmation of its (`after`+1)-th assignment, an event call rather than `decide`: a policy that fails now and then |
//!
//! Otherwise it is a simple correct policy: first in first out by task id (priorities are
//! ignored), capability matching, and the agent ready longest gets the task. So work still flows
//! while it behaves, after the host restarts it, and between its failures.
//!
//! It lives under `tests/policies/`: host/build.rs builds it to `target/policies/hostile.wasm`
//! but never bundles it into the binary.

use std::collections::{BTreeMap, BTreeSet};

use switchyard_policy_sdk::serde_json::Value;
use switchyard_policy_sdk::{
    satisfies, Agent, AgentId, Assignment, Capability, Policy, Task, TaskId,
};

/// How many invalid proposals a `bad_proposals` instance appends to every decision, whatever
/// the state: one of each kind in [`BadKind`]. A kind that cannot be built from the current
/// state (no busy agent yet, say) is replaced by a proposal naming an unknown task and an
/// unknown agent, so the count stays exact and a test can expect
/// `rejected_proposals == BAD_PROPOSALS_PER_DECISION × decisions`.
pub const BAD_PROPOSALS_PER_DECISION: u64 = BadKind::ALL.len() as u64;

/// A task id no hub hands out: ids are submission sequence numbers counting up from 1.
const UNKNOWN_TASK: TaskId = TaskId::MAX;
/// An agent handle no hub hands out: handles are small indices.
const UNKNOWN_AGENT: AgentId = AgentId::MAX;

/// What the policy does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    WellBehaved,
    TrapInDecide,
    LoopInDecide,
    ExhaustMemory,
    BadProposals,
    TrapAfterDecisions,
}

impl Mode {
    const NAMES: [(&'static str, Mode); 6] = [
        ("well_behaved", Mode::WellBehaved),
        ("trap_in_decide", Mode::TrapInDecide),
        ("loop_in_decide", Mode::LoopInDecide),
        ("exhaust_memory", Mode::ExhaustMemory),
        ("bad_proposals", Mode::BadProposals),
        ("trap_after_decisions", Mode::TrapAfterDecisions),
    ];

    fn parse(name: &str) -> Result<Mode, String> {
        Mode::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, mode)| *mode)
            .ok_or_else(|| {
                let known: Vec<&str> = Mode::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "hostile: unknown mode `{name}` (known: {})",
                    known.join(", ")
                )
            })
    }
}

/// The kinds of invalid proposal `bad_proposals` makes, each after every valid proposal of the
/// same decision (so none of them can take a task or an agent a valid proposal needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadKind {
    /// A task id the hub never handed out.
    UnknownTask,
    /// An agent handle the hub never handed out.
    UnknownAgent,
    /// A task the policy saw assigned (so no longer queued).
    TaskNotQueued,
    /// An agent the policy saw assigned or go unready, with a queued task.
    BusyAgent,
    /// A queued task and a ready agent that lacks one of the capabilities it needs.
    LacksCapabilities,
    /// A task proposed validly earlier in the same decision, again with another agent.
    SameTaskTwice,
    /// An agent proposed validly earlier in the same decision, again with another task.
    SameAgentTwice,
}

impl BadKind {
    pub const ALL: [BadKind; 7] = [
        BadKind::UnknownTask,
        BadKind::UnknownAgent,
        BadKind::TaskNotQueued,
        BadKind::BusyAgent,
        BadKind::LacksCapabilities,
        BadKind::SameTaskTwice,
        BadKind::SameAgentTwice,
    ];
}

/// The policy. See the crate documentation.
#[derive(Debug)]
pub struct Hostile {
    mode: Mode,
    after: u64,
    /// Assignments the host confirmed to this instance.
    confirmed: u64,
    /// Queued tasks by id (first in, first out), with the capabilities they need.
    queued: BTreeMap<TaskId, Vec<Capability>>,
    /// Ready agents in the order they became ready.
    ready: Vec<(AgentId, Vec<Capability>)>,
    /// Agents seen that are not ready now (assigned, or gone unready).
    not_ready: BTreeSet<AgentId>,
    /// The task most recently confirmed as assigned, unless it was queued again since.
    last_assigned: Option<TaskId>,
    /// What `exhaust_memory` holds on to, so the allocations cannot be optimised away.
    hoard: Vec<Vec<u8>>,
}

impl Hostile {
    /// Whether this instance has made its `after` good assignments and now misbehaves.
    fn misbehaving(&self) -> bool {
        self.confirmed >= self.after
    }

    /// First in, first out, with capability matching; the agent ready longest first.
    fn fifo(&self) -> Vec<Assignment> {
        let mut proposals = Vec::new();
        let mut taken = vec![false; self.ready.len()];
        for (&task, needs) in &self.queued {
            if proposals.len() == self.ready.len() {
                break;
            }
            let free = self
                .ready
                .iter()
                .enumerate()
                .find(|(i, (_, caps))| !taken[*i] && satisfies(caps, needs));
            if let Some((i, &(agent, _))) = free {
                taken[i] = true;
                proposals.push(Assignment { task, agent });
            }
        }
        proposals
    }

    /// One invalid proposal of each [`BadKind`], built to be refused whatever the host does
    /// with the `valid` proposals before it.
    fn bad_proposals(&self, valid: &[Assignment]) -> Vec<Assignment> {
        let first = valid.first().copied();
        let proposed_task = |t: &TaskId| valid.iter().any(|a| a.task == *t);
        let proposed_agent = |a: &AgentId| valid.iter().any(|v| v.agent == *a);
        // A queued task / ready agent no valid proposal of this decision uses.
        let spare_task = self.queued.keys().copied().find(|t| !proposed_task(t));
        let spare_agent = self
            .ready
            .iter()
            .map(|(id, _)| *id)
            .find(|a| !proposed_agent(a));
        let substitute = Assignment {
            task: UNKNOWN_TASK,
            agent: UNKNOWN_AGENT,
        };

        BadKind::ALL
            .iter()
            .map(|kind| {
                let built = match kind {
                    BadKind::UnknownTask => Some(Assignment {
                        task: UNKNOWN_TASK,
                        agent: spare_agent.unwrap_or(UNKNOWN_AGENT),
                    }),
                    BadKind::UnknownAgent => Some(Assignment {
                        task: spare_task.or(first.map(|a| a.task)).unwrap_or(UNKNOWN_TASK),
                        agent: UNKNOWN_AGENT,
                    }),
                    BadKind::TaskNotQueued => self.last_assigned.map(|task| Assignment {
                        task,
                        agent: spare_agent.unwrap_or(UNKNOWN_AGENT),
                    }),
                    BadKind::BusyAgent => self.not_ready.iter().next().map(|&agent| Assignment {
                        task: spare_task.or(first.map(|a| a.task)).unwrap_or(UNKNOWN_TASK),
                        agent,
                    }),
                    BadKind::LacksCapabilities => self.mismatched_pair(valid),
                    BadKind::SameTaskTwice => first.map(|a| Assignment {
                        task: a.task,
                        agent: spare_agent.unwrap_or(a.agent),
                    }),
                    BadKind::SameAgentTwice => first.map(|a| Assignment {
                        task: spare_task.unwrap_or(a.task),
                        agent: a.agent,
                    }),
                };
                built.unwrap_or(substitute)
            })
            .collect()
    }

    /// A queued task and a ready agent, neither proposed validly, where the agent lacks a
    /// capability the task needs.
    fn mismatched_pair(&self, valid: &[Assignment]) -> Option<Assignment> {
        let spare_agents: Vec<&(AgentId, Vec<Capability>)> = self
            .ready
            .iter()
            .filter(|(id, _)| !valid.iter().any(|a| a.agent == *id))
            .collect();
        self.queued
            .iter()
            .filter(|(t, _)| !valid.iter().any(|a| a.task == **t))
            .find_map(|(&task, needs)| {
                spare_agents
                    .iter()
                    .find(|(_, caps)| !satisfies(caps, needs))
                    .map(|&&(agent, _)| Assignment { task, agent })
            })
    }
}

impl Policy for Hostile {
    const NAME: &'static str = "hostile";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(config: &Value) -> Result<Self, String> {
        let (mode, after) = match config {
            Value::Null => (Mode::WellBehaved, 0),
            Value::Object(fields) => {
                if let Some(field) = fields.keys().find(|k| *k != "mode" && *k != "after") {
                    return Err(format!("hostile: unknown config field `{field}`"));
                }
                let mode = match fields.get("mode") {
                    None => Mode::WellBehaved,
                    Some(Value::String(name)) => Mode::parse(name)?,
                    Some(other) => {
                        return Err(format!("hostile: mode must be a string, got {other}"))
                    }
                };
                let after = match fields.get("after") {
                    None => 0,
                    Some(value) => value.as_u64().ok_or_else(|| {
                        format!("hostile: after must be a non-negative integer, got {value}")
                    })?,
                };
                (mode, after)
            }
            other => {
                return Err(format!(
                    "hostile: config must be null or an object, got {other}"
                ))
            }
        };
        Ok(Hostile {
            mode,
            after,
            confirmed: 0,
            queued: BTreeMap::new(),
            ready: Vec::new(),
            not_ready: BTreeSet::new(),
            last_assigned: None,
            hoard: Vec::new(),
        })
    }

    fn task_queued(&mut self, task: Task) {
        if self.last_assigned == Some(task.id) {
            self.last_assigned = None;
        }
        self.queued.insert(task.id, task.needed_capabilities);
    }

    fn task_dequeued(&mut self, task: TaskId) {
        self.queued.remove(&task);
    }

    fn agent_ready(&mut self, agent: Agent) {
        self.not_ready.remove(&agent.id);
        match self.ready.iter_mut().find(|(id, _)| *id == agent.id) {
            Some(entry) => entry.1 = agent.capabilities,
            None => self.ready.push((agent.id, agent.capabilities)),
        }
    }

    fn agent_unready(&mut self, agent: AgentId) {
        self.ready.retain(|(id, _)| *id != agent);
        self.not_ready.insert(agent);
    }

    fn assigned(&mut self, task: TaskId, agent: AgentId) {
        self.confirmed += 1;
        if self.mode == Mode::TrapAfterDecisions && self.confirmed > self.after {
            panic!(
                "hostile: trap_after_decisions, confirmation {} of task {task}",
                self.confirmed
            );
        }
        self.queued.remove(&task);
        self.ready.retain(|(id, _)| *id != agent);
        self.not_ready.insert(agent);
        self.last_assigned = Some(task);
    }

    fn decide(&mut self, _now: u64) -> Vec<Assignment> {
        if self.misbehaving() {
            match self.mode {
                Mode::TrapInDecide => panic!("hostile: trap_in_decide"),
                Mode::LoopInDecide => {
                    let mut spins = 0u64;
                    loop {
                        spins = std::hint::black_box(spins.wrapping_add(1));
                    }
                }
                Mode::ExhaustMemory => loop {
                    // Reserved, never written: growing the memory is what the host must stop,
                    // and touching the pages would only make the host's deadline fire first.
                    self.hoard.push(Vec::with_capacity(1 << 20));
                },
                Mode::WellBehaved | Mode::BadProposals | Mode::TrapAfterDecisions => {}
            }
        }
        let mut proposals = self.fifo();
        if self.mode == Mode::BadProposals && self.misbehaving() {
            let bad = self.bad_proposals(&proposals);
            proposals.extend(bad);
        }
        proposals
    }
}

switchyard_policy_sdk::export_policy!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_policy_sdk::serde_json::json;
    use switchyard_policy_sdk::testing::{agent, task, MiniHost};

    fn hostile(config: Value) -> Hostile {
        Hostile::new(&config).expect("config accepted")
    }

    #[test]
    fn config_names_what_is_wrong() {
        assert_eq!(hostile(Value::Null).mode, Mode::WellBehaved);
        let h = hostile(json!({"mode": "bad_proposals", "after": 3}));
        assert_eq!((h.mode, h.after), (Mode::BadProposals, 3));
        let err = Hostile::new(&json!({"mode": "explode"})).unwrap_err();
        assert!(
            err.contains("unknown mode `explode`") && err.contains("trap_in_decide"),
            "{err}"
        );
        let err = Hostile::new(&json!({"mode": "trap_in_decide", "when": 1})).unwrap_err();
        assert!(err.contains("unknown config field `when`"), "{err}");
        let err = Hostile::new(&json!({"after": -1})).unwrap_err();
        assert!(err.contains("after must be"), "{err}");
        assert!(Hostile::new(&json!([1])).is_err());
    }

    #[test]
    fn well_behaved_is_fifo_with_capabilities_and_longest_ready_first() {
        let mut h = hostile(Value::Null);
        h.task_queued(task(3, 2, &[]));
        h.task_queued(task(1, 2, &[7]));
        h.task_queued(task(2, 2, &[]));
        h.agent_ready(agent(10, &[]));
        h.agent_ready(agent(11, &[7]));
        let proposals = h.decide(0);
        assert_eq!(
            proposals,
            [
                Assignment { task: 1, agent: 11 },
                Assignment { task: 2, agent: 10 }
            ]
        );
        // Nothing changes until the host confirms.
        assert_eq!(h.decide(0), proposals);
        h.assigned(1, 11);
        assert_eq!(h.decide(0), [Assignment { task: 2, agent: 10 }]);
    }

    #[test]
    fn trap_in_decide_waits_for_its_good_assignments() {
        let mut h = hostile(json!({"mode": "trap_in_decide", "after": 1}));
        h.task_queued(task(1, 2, &[]));
        h.task_queued(task(2, 2, &[]));
        h.agent_ready(agent(0, &[]));
        assert_eq!(h.decide(0), [Assignment { task: 1, agent: 0 }]);
        h.assigned(1, 0);
        h.agent_ready(agent(0, &[]));
        let trapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.decide(0)));
        assert!(trapped.is_err(), "decide must trap after one assignment");
    }

    #[test]
    fn trap_after_decisions_traps_in_the_confirmation() {
        let mut h = hostile(json!({"mode": "trap_after_decisions", "after": 2}));
        for id in 1..=3 {
            h.task_queued(task(id, 2, &[]));
        }
        h.agent_ready(agent(0, &[]));
        for id in 1..=2 {
            assert_eq!(h.decide(0), [Assignment { task: id, agent: 0 }]);
            h.assigned(id, 0);
            h.agent_ready(agent(0, &[]));
        }
        assert_eq!(h.decide(0), [Assignment { task: 3, agent: 0 }]);
        let trapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.assigned(3, 0)));
        assert!(trapped.is_err(), "the third confirmation must trap");
    }

    /// In a state where every kind can be built, each bad proposal is of its kind, the host's
    /// checks refuse exactly those, and the valid ones all go through.
    #[test]
    fn bad_proposals_are_exactly_the_refused_ones() {
        let mut host = MiniHost::new(hostile(json!({"mode": "bad_proposals"})));
        // Agent 5 was assigned task 9 earlier: busy, and 9 is no longer queued.
        host.task_queued(task(9, 2, &[]));
        host.agent_ready(agent(5, &[]));
        assert!(host.confirm(Assignment { task: 9, agent: 5 }));
        // Tasks 1 and 2 need capability 1, task 3 needs nothing. Agent 0 has capability 1;
        // agent 1 has none, so it can take task 3 only; agent 2 has none either.
        host.task_queued(task(1, 2, &[1]));
        host.task_queued(task(2, 2, &[1]));
        host.task_queued(task(3, 2, &[]));
        host.agent_ready(agent(0, &[1]));
        host.agent_ready(agent(1, &[]));
        host.agent_ready(agent(2, &[]));

        let proposals = host.decide(0);
        let valid = [
            Assignment { task: 1, agent: 0 },
            Assignment { task: 3, agent: 1 },
        ];
        assert_eq!(&proposals[..2], &valid);
        let bad = &proposals[2..];
        assert_eq!(bad.len() as u64, BAD_PROPOSALS_PER_DECISION);
        assert_eq!(
            bad,
            [
                // Unknown task, with the spare agent 2.
                Assignment {
                    task: UNKNOWN_TASK,
                    agent: 2
                },
                // Unknown agent, with the spare task 2.
                Assignment {
                    task: 2,
                    agent: UNKNOWN_AGENT
                },
                // Task 9 is assigned.
                Assignment { task: 9, agent: 2 },
                // Agent 5 is busy.
                Assignment { task: 2, agent: 5 },
                // Agent 2 lacks capability 1, which task 2 needs.
                Assignment { task: 2, agent: 2 },
                // Task 1 again, and agent 0 again.
                Assignment { task: 1, agent: 2 },
                Assignment { task: 2, agent: 0 },
            ]
        );

        // The host confirms the proposals in order, as the hub does.
        let accepted: Vec<bool> = proposals.iter().map(|&p| host.confirm(p)).collect();
        let expected: Vec<bool> = (0..proposals.len()).map(|i| i < valid.len()).collect();
        assert_eq!(accepted, expected);
    }

    /// With nothing to build them from, the kinds fall back to unknown ids: still refused, and
    /// still exactly [`BAD_PROPOSALS_PER_DECISION`] of them.
    #[test]
    fn bad_proposals_keep_their_count_in_an_empty_state() {
        let mut host = MiniHost::new(hostile(json!({"mode": "bad_proposals"})));
        host.agent_ready(agent(0, &[]));
        let proposals = host.decide(0);
        assert_eq!(proposals.len() as u64, BAD_PROPOSALS_PER_DECISION);
        assert!(proposals.iter().all(|&p| !host.confirm(p)));
    }
}
