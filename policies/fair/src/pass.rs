//! One decision: the state as advanced by this decision's own proposals, without touching the
//! policy's state (nothing changes until the host confirms with `assigned`).
//!
//! Turns are taken in tag order at both levels, each merging two sources: the active flows as
//! stored (walked lazily, lowest tag first) and the flows already served in this decision (a
//! heap keyed by their advanced tags). A tenant's turn goes to its lowest-tag key that has a
//! line a remaining agent can take; a key or tenant with nothing runnable drops out of the
//! decision.

use std::cmp::Reverse;
use std::collections::{btree_map, btree_set, BTreeMap, BTreeSet, BinaryHeap};
use std::iter::Peekable;

use switchyard_policy_sdk::{AgentId, Capability, Position, ReadyAgents, TaskId};

use crate::sfq::Activation;
use crate::{effective_priority, Fair, Priority, QueuedTask, TenantState, VirtualTime};

type StoredTurns<'a> = Peekable<btree_map::Iter<'a, (VirtualTime, Activation), String>>;
type Pending = BinaryHeap<Reverse<(VirtualTime, Activation, usize)>>;

/// One line during a decision: its head and the tasks behind it.
pub(crate) struct LineCursor<'a> {
    needs: &'a [Capability],
    priority: Priority,
    ids: btree_set::Iter<'a, TaskId>,
    head: Option<TaskId>,
}

/// One key during a decision: its tag as advanced by this decision's proposals, and its lines.
pub(crate) struct KeyPass<'a> {
    tag: VirtualTime,
    activation: Activation,
    lines: Vec<LineCursor<'a>>,
}

impl KeyPass<'_> {
    /// The line whose head goes next: lowest effective priority, then lowest id, among lines
    /// some remaining agent may take. Lines that are exhausted or whose capabilities no
    /// remaining agent has are dropped for the rest of the decision.
    fn best_line(
        &mut self,
        tasks: &BTreeMap<TaskId, QueuedTask>,
        agents: &AgentSearch<'_>,
        now: u64,
        aging_ms: u64,
    ) -> Option<usize> {
        self.lines
            .retain(|line| line.head.is_some() && !agents.exhausted.contains(line.needs));
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(index, line)| {
                let head = line.head?;
                let queued_at = tasks.get(&head).map_or(now, |t| t.queued_at);
                let class = effective_priority(line.priority, queued_at, now, aging_ms);
                Some(((class, head), index))
            })
            .min()
            .map(|(_, index)| index)
    }
}

/// One tenant during a decision: its tag as advanced by this decision's proposals, and its
/// keys' turns.
pub(crate) struct TenantPass<'a> {
    pub(crate) tag: VirtualTime,
    pub(crate) activation: Activation,
    pub(crate) name: &'a str,
    state: Option<&'a TenantState>,
    stored: Option<StoredTurns<'a>>,
    keys: Vec<KeyPass<'a>>,
    pending: Pending,
}

impl<'a> TenantPass<'a> {
    pub(crate) fn new(
        name: &'a str,
        state: Option<&'a TenantState>,
        tag: VirtualTime,
        activation: Activation,
    ) -> Self {
        TenantPass {
            tag,
            activation,
            name,
            state,
            stored: state.map(|s| s.keys.turns.iter().peekable()),
            keys: Vec::new(),
            pending: BinaryHeap::new(),
        }
    }

    /// The tenant's next assignment in this decision: its lowest-tag key with a line some
    /// remaining agent can take, that line's head, and the agent. The key's tag advances by
    /// what the assignment will cost it. `None` when nothing of the tenant can run now.
    pub(crate) fn next(
        &mut self,
        policy: &'a Fair,
        agents: &mut AgentSearch<'a>,
        now: u64,
    ) -> Option<(TaskId, AgentId)> {
        let state = self.state?;
        let aging_ms = policy.config.aging_ms;
        loop {
            // Bring in stored keys until the next one comes after the best pending turn.
            if let Some(stored) = self.stored.as_mut() {
                while let Some(&(&(tag, activation), name)) = stored.peek() {
                    if let Some(Reverse((t, a, _))) = self.pending.peek() {
                        if (tag, activation) > (*t, *a) {
                            break;
                        }
                    }
                    stored.next();
                    self.keys.push(key_pass(state, name, tag, activation));
                    self.pending
                        .push(Reverse((tag, activation, self.keys.len() - 1)));
                }
            }
            let Reverse((_, _, index)) = self.pending.pop()?;
            let key = &mut self.keys[index];
            while let Some(line) = key.best_line(&policy.tasks, agents, now, aging_ms) {
                let cursor = &mut key.lines[line];
                let Some(agent) = agents.take(cursor.needs, &policy.ready) else {
                    // Nobody left has these capabilities; `best_line` now skips the line.
                    continue;
                };
                let task = cursor.head.expect("best_line only picks lines with a head");
                cursor.head = cursor.ids.next().copied();
                if let Some(queued) = policy.tasks.get(&task) {
                    key.tag += policy.key_cost(state, queued);
                }
                self.pending.push(Reverse((key.tag, key.activation, index)));
                return Some((task, agent));
            }
        }
    }
}

/// A key's lines as seen by one decision.
fn key_pass<'a>(
    state: &'a TenantState,
    name: &str,
    tag: VirtualTime,
    activation: Activation,
) -> KeyPass<'a> {
    let lines = state
        .lines
        .get(name)
        .map(|key| {
            key.lines
                .iter()
                .map(|((needs, priority), ids)| {
                    let mut ids = ids.iter();
                    let head = ids.next().copied();
                    LineCursor {
                        needs,
                        priority: *priority,
                        ids,
                        head,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    KeyPass {
        tag,
        activation,
        lines,
    }
}

/// Finding agents during a decision.
#[derive(Default)]
pub(crate) struct AgentSearch<'a> {
    /// Per needed-capability set, where to continue looking: agents before it either cannot
    /// take such tasks or were already proposed, and neither changes during a decision. Shared by
    /// every key, since whether an agent fits depends only on the capabilities.
    cursors: BTreeMap<&'a [Capability], Position>,
    /// Capability sets no remaining agent has.
    exhausted: BTreeSet<&'a [Capability]>,
    /// Agents proposed in this decision.
    pub(crate) taken: BTreeSet<Position>,
}

impl<'a> AgentSearch<'a> {
    /// The longest-ready remaining agent with `needs`, marking it taken; or marks `needs`
    /// exhausted.
    fn take(&mut self, needs: &'a [Capability], ready: &ReadyAgents) -> Option<AgentId> {
        let from = self.cursors.get(needs).copied().unwrap_or(0);
        let found = ready.first_capable(from, needs, &self.taken);
        match found {
            Some((position, agent)) => {
                self.taken.insert(position);
                self.cursors.insert(needs, position + 1);
                Some(agent)
            }
            None => {
                self.exhausted.insert(needs);
                None
            }
        }
    }
}
