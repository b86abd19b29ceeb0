//! Switchyard's default scheduling policy.
//!
//! - **Strict priority**: a task of priority 0 (urgent) is always offered an agent before any
//!   task of priority 1, and so on down to 3 (low).
//! - **FIFO within a priority**, by task id. The id is the submission sequence number and a task
//!   that returns to the queue keeps it, so a retried task keeps its original place.
//! - **Capability matching**: an agent can take a task when it has every capability the task
//!   needs ([`satisfies`]).
//! - **No head-of-line blocking**: a task no ready agent can take is passed over, and the tasks
//!   behind it are still served.
//! - **Longest idle first**: among the ready agents that can take a task, the one that became
//!   ready earliest gets it. "Earliest" is the order of `agent-ready` events, which the host
//!   guarantees to be the order agents became ready (clocks are not compared).
//!
//! # Cost
//!
//! The host calls [`Policy::decide`] once per batch, with the whole queue possibly far larger
//! than the number of idle agents, so a decision must not walk the queue. Queued tasks are kept
//! in one ordered set per distinct needed-capability set (few in practice: tasks ask for a
//! handful of capability combinations). A decision merges the heads of those groups in
//! (priority, id) order, hands each head the longest-idle agent that can take it, and drops a
//! group for the rest of the pass as soon as no remaining agent can take it. It therefore costs
//! about O((assignments + groups) · log groups) plus one walk over the ready agents per group,
//! and is independent of the queue's length. Events cost O(log n).

use std::cmp::Reverse;
use std::collections::{btree_set, BTreeMap, BTreeSet, BinaryHeap};

use switchyard_policy_sdk::serde_json::Value;
use switchyard_policy_sdk::{
    json_kind, Agent, AgentId, Assignment, Capability, Policy, Position, ReadyAgents, Task, TaskId,
};

/// 0 urgent … 3 low; lower sorts first.
type Priority = u8;

/// The default policy. See the crate documentation.
#[derive(Debug, Default)]
pub struct Greedy {
    /// Every queued task, with what is needed to find it in `groups`.
    queued: BTreeMap<TaskId, QueuedTask>,
    /// Queued tasks grouped by needed-capability set, each group in (priority, id) order.
    /// A group is removed when it empties, so the map never outgrows the live queue.
    groups: BTreeMap<Vec<Capability>, BTreeSet<(Priority, TaskId)>>,
    /// Ready agents, longest idle first.
    ready: ReadyAgents,
}

#[derive(Debug)]
struct QueuedTask {
    priority: Priority,
    needed_capabilities: Vec<Capability>,
}

/// One capability group during a decision: its remaining tasks and how far into the ready
/// agents it has looked.
struct Cursor<'a> {
    needs: &'a [Capability],
    tasks: btree_set::Iter<'a, (Priority, TaskId)>,
    /// Agents before this position were either unable to take this group's tasks or already
    /// proposed in this pass; neither changes during the pass, so they are never looked at again.
    next_agent: Position,
}

impl Greedy {
    /// Number of queued tasks the policy knows of.
    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    /// Number of ready agents the policy knows of.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    fn remove_task(&mut self, id: TaskId) {
        let Some(task) = self.queued.remove(&id) else {
            return;
        };
        if let Some(group) = self.groups.get_mut(task.needed_capabilities.as_slice()) {
            group.remove(&(task.priority, id));
            if group.is_empty() {
                self.groups.remove(task.needed_capabilities.as_slice());
            }
        }
    }
}

impl Policy for Greedy {
    const NAME: &'static str = "greedy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    /// Greedy has no options: it accepts `null` or `{}` and names anything else, so a typo in an
    /// operator's configuration is reported instead of silently ignored.
    fn new(config: &Value) -> Result<Self, String> {
        match config {
            Value::Null => Ok(Self::default()),
            Value::Object(fields) => match fields.keys().next() {
                None => Ok(Self::default()),
                Some(field) => Err(format!(
                    "greedy: unknown config field `{field}` (greedy takes no options; \
                     pass null or {{}})"
                )),
            },
            other => Err(format!(
                "greedy: config must be null or an empty object, got {}",
                json_kind(other)
            )),
        }
    }

    /// Queuing a task that is already queued replaces it (same place: the id decides the place).
    fn task_queued(&mut self, task: Task) {
        self.remove_task(task.id);
        self.groups
            .entry(task.needed_capabilities.clone())
            .or_default()
            .insert((task.priority, task.id));
        self.queued.insert(
            task.id,
            QueuedTask {
                priority: task.priority,
                needed_capabilities: task.needed_capabilities,
            },
        );
    }

    fn task_dequeued(&mut self, task: TaskId) {
        self.remove_task(task);
    }

    /// An agent reported ready while already ready keeps its place in line (it has not stopped
    /// being idle); its capabilities are updated.
    fn agent_ready(&mut self, agent: Agent) {
        self.ready.ready(agent);
    }

    fn agent_unready(&mut self, agent: AgentId) {
        self.ready.remove(agent);
    }

    fn assigned(&mut self, task: TaskId, agent: AgentId) {
        self.remove_task(task);
        self.ready.remove(agent);
    }

    /// Reads the state only: nothing changes until the host confirms with `assigned`, so a
    /// proposal the host refuses leaves the task and agent where they were.
    fn decide(&mut self, _now: u64) -> Vec<Assignment> {
        let mut proposals = Vec::new();
        if self.ready.is_empty() || self.groups.is_empty() {
            return proposals;
        }

        let mut cursors = Vec::with_capacity(self.groups.len());
        let mut heads = BinaryHeap::with_capacity(self.groups.len());
        for (index, (needs, tasks)) in self.groups.iter().enumerate() {
            let mut tasks = tasks.iter();
            if let Some(&(priority, id)) = tasks.next() {
                heads.push(Reverse((priority, id, index)));
            }
            cursors.push(Cursor {
                needs,
                tasks,
                next_agent: 0,
            });
        }

        // Agents proposed in this pass. Never more than the ready agents, usually few.
        let mut taken = BTreeSet::new();
        while let Some(Reverse((_, task, index))) = heads.pop() {
            let cursor = &mut cursors[index];
            let found = self
                .ready
                .first_capable(cursor.next_agent, cursor.needs, &taken);
            // No remaining agent can take this group's head, so none can take the tasks behind
            // it either (they need the same capabilities): the group is done for this pass.
            let Some((position, agent)) = found else {
                continue;
            };
            proposals.push(Assignment { task, agent });
            taken.insert(position);
            if taken.len() == self.ready.len() {
                break;
            }
            cursor.next_agent = position + 1;
            if let Some(&(priority, id)) = cursor.tasks.next() {
                heads.push(Reverse((priority, id, index)));
            }
        }
        proposals
    }
}

switchyard_policy_sdk::export_policy!(Greedy);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_policy_sdk::serde_json::json;
    use switchyard_policy_sdk::testing::{agent, confirm_all, pairs, task, MiniHost, XorShift};
    use switchyard_policy_sdk::{satisfies, Outcome};

    fn greedy() -> Greedy {
        Greedy::new(&Value::Null).unwrap()
    }

    #[test]
    fn reports_its_name_and_version() {
        assert_eq!(Greedy::NAME, "greedy");
        assert_eq!(Greedy::VERSION, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn config_accepts_null_and_empty_object_only() {
        assert!(Greedy::new(&Value::Null).is_ok());
        assert!(Greedy::new(&json!({})).is_ok());
        let err = Greedy::new(&json!({"max_batch": 3})).unwrap_err();
        assert!(err.contains("unknown config field `max_batch`"), "{err}");
        let err = Greedy::new(&json!(7)).unwrap_err();
        assert!(err.contains("got a number"), "{err}");
        let err = Greedy::new(&json!([])).unwrap_err();
        assert!(err.contains("got an array"), "{err}");
    }

    #[test]
    fn nothing_to_decide_without_agents_or_tasks() {
        let mut p = greedy();
        assert!(p.decide(0).is_empty());
        p.task_queued(task(1, 2, &[]));
        assert!(p.decide(0).is_empty());
        let mut p = greedy();
        p.agent_ready(agent(1, &[]));
        assert!(p.decide(0).is_empty());
    }

    #[test]
    fn strict_priority_beats_submission_order() {
        let mut p = greedy();
        p.task_queued(task(1, 3, &[]));
        p.task_queued(task(2, 2, &[]));
        p.task_queued(task(3, 0, &[]));
        p.task_queued(task(4, 1, &[]));
        p.agent_ready(agent(10, &[]));
        p.agent_ready(agent(11, &[]));
        p.agent_ready(agent(12, &[]));
        assert_eq!(pairs(&p.decide(0)), [(3, 10), (4, 11), (2, 12)]);
    }

    #[test]
    fn fifo_within_a_priority_by_id_not_by_event_order() {
        let mut p = greedy();
        // Replayed out of order: the id (submission sequence) decides.
        p.task_queued(task(7, 2, &[]));
        p.task_queued(task(5, 2, &[]));
        p.task_queued(task(6, 2, &[]));
        p.agent_ready(agent(1, &[]));
        p.agent_ready(agent(2, &[]));
        assert_eq!(pairs(&p.decide(0)), [(5, 1), (6, 2)]);
    }

    #[test]
    fn a_task_no_agent_can_take_does_not_block_the_ones_behind_it() {
        let mut p = greedy();
        p.task_queued(task(1, 0, &[9])); // nobody has 9
        p.task_queued(task(2, 0, &[1, 2]));
        p.task_queued(task(3, 1, &[]));
        p.task_queued(task(4, 2, &[2]));
        p.agent_ready(agent(10, &[2]));
        p.agent_ready(agent(11, &[1, 2, 3]));
        p.agent_ready(agent(12, &[0]));
        // Task 2 needs {1,2}: only agent 11. Task 3 takes the longest-idle left (10).
        // Task 4 needs {2}: agents 10 and 11 are taken, 12 lacks it.
        assert_eq!(pairs(&p.decide(0)), [(2, 11), (3, 10)]);
    }

    #[test]
    fn capability_matching_is_a_subset_test() {
        let mut p = greedy();
        p.task_queued(task(1, 2, &[1, 3]));
        p.agent_ready(agent(10, &[1, 2]));
        p.agent_ready(agent(11, &[0, 1, 2, 3]));
        assert_eq!(pairs(&p.decide(0)), [(1, 11)]);
    }

    #[test]
    fn the_agent_idle_longest_gets_the_task() {
        let mut p = greedy();
        p.agent_ready(agent(30, &[1]));
        p.agent_ready(agent(10, &[1]));
        p.agent_ready(agent(20, &[1]));
        p.task_queued(task(1, 2, &[1]));
        assert_eq!(pairs(&p.decide(0)), [(1, 30)]);

        // Agent 30 leaves and comes back: now it is the most recently ready.
        p.agent_unready(30);
        p.agent_ready(agent(30, &[1]));
        assert_eq!(pairs(&p.decide(0)), [(1, 10)]);
    }

    #[test]
    fn a_repeated_agent_ready_keeps_the_agents_place() {
        let mut p = greedy();
        p.agent_ready(agent(1, &[]));
        p.agent_ready(agent(2, &[]));
        p.agent_ready(agent(1, &[4])); // duplicate; capabilities updated, place kept
        assert_eq!(p.ready_len(), 2);
        p.task_queued(task(1, 2, &[4]));
        p.task_queued(task(2, 2, &[]));
        assert_eq!(pairs(&p.decide(0)), [(1, 1), (2, 2)]);
    }

    #[test]
    fn a_requeued_task_keeps_its_place() {
        let mut p = greedy();
        p.task_queued(task(1, 2, &[]));
        p.task_queued(task(2, 2, &[]));
        p.task_queued(task(3, 2, &[]));
        p.agent_ready(agent(10, &[]));
        let first = p.decide(0);
        assert_eq!(pairs(&first), [(1, 10)]);
        confirm_all(&mut p, &first);
        // Task 1 fails and returns to the queue with its id: it goes before 2 and 3 again.
        p.task_finished(1, 10, Outcome::Returned, 5);
        p.task_queued(task(1, 2, &[]));
        p.agent_ready(agent(10, &[]));
        assert_eq!(pairs(&p.decide(0)), [(1, 10)]);
    }

    #[test]
    fn task_queued_twice_is_idempotent_and_takes_the_latest_fields() {
        let mut p = greedy();
        p.task_queued(task(1, 3, &[]));
        p.task_queued(task(1, 3, &[]));
        assert_eq!(p.queued_len(), 1);
        p.task_queued(task(2, 2, &[]));
        // Re-queued at a higher priority and with a need: it moves groups cleanly.
        p.task_queued(task(1, 0, &[5]));
        assert_eq!(p.queued_len(), 2);
        assert_eq!(p.groups.len(), 2);
        p.agent_ready(agent(10, &[5]));
        p.agent_ready(agent(11, &[5]));
        assert_eq!(pairs(&p.decide(0)), [(1, 10), (2, 11)]);
    }

    #[test]
    fn dequeued_tasks_and_unready_agents_are_forgotten() {
        let mut p = greedy();
        p.task_queued(task(1, 0, &[]));
        p.task_queued(task(2, 1, &[7]));
        p.task_queued(task(3, 2, &[]));
        p.agent_ready(agent(10, &[]));
        p.agent_ready(agent(11, &[7]));
        p.task_dequeued(1);
        p.agent_unready(10);
        // Unknown ids are ignored.
        p.task_dequeued(99);
        p.agent_unready(99);
        assert_eq!(pairs(&p.decide(0)), [(2, 11)]);
        p.task_dequeued(2);
        assert_eq!(p.groups.len(), 1, "an emptied group is dropped");
        assert_eq!(pairs(&p.decide(0)), [(3, 11)]);
    }

    #[test]
    fn decide_does_not_change_state_until_assigned_confirms() {
        let mut p = greedy();
        p.task_queued(task(1, 2, &[]));
        p.task_queued(task(2, 2, &[]));
        p.agent_ready(agent(10, &[]));
        assert_eq!(pairs(&p.decide(0)), [(1, 10)]);
        // The host refused (say agent 10 vanished between); the same proposal comes back.
        assert_eq!(pairs(&p.decide(0)), [(1, 10)]);
        p.assigned(1, 10);
        assert!(p.decide(0).is_empty());
        p.agent_ready(agent(11, &[]));
        assert_eq!(pairs(&p.decide(0)), [(2, 11)]);
        assert_eq!((p.queued_len(), p.ready_len()), (1, 1));
    }

    #[test]
    fn no_task_or_agent_is_proposed_twice_in_one_pass() {
        let mut p = greedy();
        for id in 0..50 {
            p.task_queued(task(id, (id % 4) as u8, &[(id % 3) as u32]));
        }
        for id in 0..20 {
            p.agent_ready(agent(id, &[0, 1, 2]));
        }
        let proposals = p.decide(0);
        assert_eq!(proposals.len(), 20);
        let tasks: BTreeSet<_> = proposals.iter().map(|a| a.task).collect();
        let agents: BTreeSet<_> = proposals.iter().map(|a| a.agent).collect();
        assert_eq!((tasks.len(), agents.len()), (20, 20));
        // Strict priority across groups: every priority-0 task went first.
        let urgent = (0..50).filter(|id| id % 4 == 0).count();
        assert!(proposals[..urgent].iter().all(|a| a.task % 4 == 0));
    }

    /// A straightforward O(queue × agents) statement of the rules, to check the grouped
    /// implementation against.
    fn reference(tasks: &BTreeMap<TaskId, Task>, agents: &[Agent]) -> Vec<(TaskId, AgentId)> {
        let mut order: Vec<&Task> = tasks.values().collect();
        order.sort_by_key(|t| (t.priority, t.id));
        let mut free: Vec<&Agent> = agents.iter().collect();
        let mut out = Vec::new();
        for t in order {
            if let Some(i) = free
                .iter()
                .position(|a| satisfies(&a.capabilities, &t.needed_capabilities))
            {
                out.push((t.id, free.remove(i).id));
            }
        }
        out
    }

    #[test]
    fn matches_a_naive_reference_under_random_events() {
        let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
        for _round in 0..200 {
            let mut host = MiniHost::new(greedy());
            let mut next_agent = 0;
            for _step in 0..60 {
                match rng.below(10) {
                    0..=3 => {
                        let id = rng.below(40);
                        host.task_queued(task(id, rng.below(4) as u8, &rng.capabilities()));
                    }
                    4 => host.task_dequeued(rng.below(40)),
                    5 | 6 => {
                        host.agent_ready(agent(next_agent, &rng.capabilities()));
                        next_agent += 1;
                    }
                    7 if !host.ready_agents().is_empty() => {
                        let ready = host.ready_agents();
                        let id = ready[rng.below(ready.len() as u64) as usize].id;
                        host.agent_unready(id);
                    }
                    _ => {
                        let proposals = host.decide(0);
                        assert_eq!(
                            pairs(&proposals),
                            reference(host.queued_tasks(), host.ready_agents())
                        );
                        // Accept some of them, as a host that refuses a few would.
                        for proposal in proposals {
                            if rng.below(2) == 0 {
                                assert!(host.confirm(proposal), "{proposal:?}");
                            }
                        }
                    }
                }
            }
            assert_eq!(
                pairs(&host.decide(0)),
                reference(host.queued_tasks(), host.ready_agents())
            );
        }
    }

    #[test]
    fn a_deep_queue_is_not_walked() {
        // 100k queued tasks nobody can take, one that somebody can: the decision is immediate.
        let mut p = greedy();
        for id in 0..100_000 {
            p.task_queued(task(id, 0, &[1]));
        }
        p.task_queued(task(100_000, 3, &[]));
        p.agent_ready(agent(1, &[2]));
        assert_eq!(pairs(&p.decide(0)), [(100_000, 1)]);
    }
}
