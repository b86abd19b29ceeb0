//! Switchyard's weighted fair-share policy.
//!
//! Every queued task belongs to a **fairness key**: the submitter's id unless the task names a
//! `fairness_key` (the host resolves this; the policy only sees the key string). Under contention
//! each key gets a share of the assignments proportional to its weight, whatever the other keys
//! submit, so a key that floods the queue cannot starve a light one. Within a key, tasks go by
//! priority, and aging bounds how long a low-priority task can be passed over. Shares are
//! counted in assignments (not in agent time: how long a task will run is unknown when it is
//! assigned).
//!
//! # The discipline: start-time fair queueing over keys
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
//! **Guarantee.** While two keys `i` and `j` both have tasks that ready agents can run, the
//! numbers of assignments `n_i`, `n_j` they receive over any stretch of time satisfy
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
//! **Across keys, fair share decides; within a key, priority decides.** The submitter of a task
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
//! fairness history starts over: every key with queued tasks starts at virtual time zero.
//!
//! # Configuration
//!
//! JSON, `null` or `{}` for the defaults:
//!
//! ```json
//! {"weights": {"team-a": 3, "team-b": 0.5}, "aging_ms": 30000}
//! ```
//!
//! - `weights`: an object from fairness key to weight, each from [`MIN_WEIGHT`] to
//!   [`MAX_WEIGHT`]; keys not named use their tasks' weights.
//! - `aging_ms`: milliseconds of waiting that raise a task by one priority class, from 1 to
//!   [`MAX_AGING_MS`] (a year, to get practically strict priority within a key); default
//!   [`DEFAULT_AGING_MS`].
//!
//! Anything else (an unknown field, a wrong type, a value out of range) is refused with a message
//! naming the field.
//!
//! # Cost
//!
//! Events cost O(log n). A decision walks the active keys from the lowest tag, only as far as
//! it hands out agents (plus keys whose tasks no remaining agent can run, each looked at once),
//! and within a key looks only at the heads of its lines, so it is independent of the queue's
//! length. Agents are searched per needed-capability set with a cursor that only moves forward
//! during a decision, as in `greedy`.

use std::cmp::Reverse;
use std::collections::{btree_set, BTreeMap, BTreeSet, BinaryHeap};

use switchyard_policy_sdk::serde_json::Value;
use switchyard_policy_sdk::{
    Agent, AgentId, Assignment, Capability, Policy, Position, ReadyAgents, Task, TaskId,
};

mod config;
pub use config::{FairConfig, DEFAULT_AGING_MS, MAX_AGING_MS, MAX_WEIGHT, MIN_WEIGHT};

/// Virtual time in fixed point: one assignment at weight 1 advances a key by [`UNIT`].
///
/// Integers rather than floats so that tags compare exactly and never lose an increment however
/// long the hub runs: with weights within [`MIN_WEIGHT`]..=[`MAX_WEIGHT`] one assignment costs
/// between about 2^30 and 2^50, and 2^128 leaves room for more than 2^78 assignments.
pub type VirtualTime = u128;
/// The cost of one assignment at weight 1.
pub const UNIT: VirtualTime = 1 << 40;

/// 0 urgent … 3 low; lower goes first.
type Priority = u8;
/// Position in the order keys became active: breaks ties between equal tags, earlier first.
type Activation = u64;

/// The weighted fair-share policy. See the crate documentation.
#[derive(Debug)]
pub struct Fair {
    config: FairConfig,
    /// Every queued task, with what is needed to find it in its key's lines.
    tasks: BTreeMap<TaskId, QueuedTask>,
    /// Keys with queued tasks (active), and idle keys whose tag is still ahead of the global
    /// virtual time. An idle key at or behind it would restart at the global virtual time anyway,
    /// so it is forgotten: the map never outgrows the live keys plus the recently served ones.
    keys: BTreeMap<String, KeyState>,
    /// The active keys in the order they get turns: lowest tag first, then earliest activation.
    turns: BTreeMap<(VirtualTime, Activation), String>,
    /// The idle keys still remembered, by tag, so they are forgotten as virtual time passes them.
    idle: BTreeSet<(VirtualTime, String)>,
    /// The global virtual time: the start tag of the latest confirmed assignment.
    now_virtual: VirtualTime,
    /// The next activation number to hand out; only grows.
    next_activation: Activation,
    /// Ready agents, longest idle first.
    ready: ReadyAgents,
}

#[derive(Debug)]
struct QueuedTask {
    key: String,
    priority: Priority,
    needed_capabilities: Vec<Capability>,
    queued_at: u64,
    /// What assigning it advances its key's tag by: [`UNIT`] / weight.
    cost: VirtualTime,
}

/// One line of a key: tasks of one priority needing the same capabilities.
type Line = (Vec<Capability>, Priority);

#[derive(Debug)]
struct KeyState {
    /// The virtual time the key's next assignment starts at.
    tag: VirtualTime,
    /// Set while the key has queued tasks: its place among equal tags.
    activation: Option<Activation>,
    /// The key's queued tasks, one line per (needed capabilities, priority), each by task id.
    /// An emptied line is removed.
    lines: BTreeMap<Line, BTreeSet<TaskId>>,
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

    /// Number of keys with queued tasks.
    pub fn active_keys(&self) -> usize {
        self.turns.len()
    }

    /// The tag of a key (active or remembered idle), for inspection and tests.
    pub fn key_tag(&self, key: &str) -> Option<VirtualTime> {
        self.keys.get(key).map(|k| k.tag)
    }

    /// The global virtual time.
    pub fn virtual_time(&self) -> VirtualTime {
        self.now_virtual
    }

    /// The cost of assigning a task of `key` whose own weight is `task_weight`.
    fn cost(&self, key: &str, task_weight: f64) -> VirtualTime {
        let weight = match self.config.weights.get(key) {
            Some(&w) => w,
            // The host promises a finite weight above zero; anything else counts as the default.
            None if task_weight.is_finite() && task_weight > 0.0 => {
                task_weight.clamp(MIN_WEIGHT, MAX_WEIGHT)
            }
            None => 1.0,
        };
        // Within the clamp this is between about 2^30 and 2^50: exact enough, never zero.
        (UNIT as f64 / weight).round() as VirtualTime
    }

    /// Puts a task in its key's line, activating the key if it had nothing queued.
    fn link(&mut self, id: TaskId, task: QueuedTask) {
        let now_virtual = self.now_virtual;
        if !self.keys.contains_key(&task.key) {
            self.keys.insert(
                task.key.clone(),
                KeyState {
                    tag: now_virtual,
                    activation: None,
                    lines: BTreeMap::new(),
                },
            );
        }
        let Some(key) = self.keys.get_mut(&task.key) else {
            return;
        };
        if key.activation.is_none() {
            // Becoming active: no credit for the time away (the tag is at least the global
            // virtual time), no escape from a debt (a tag ahead of it is kept).
            self.idle.remove(&(key.tag, task.key.clone()));
            key.tag = key.tag.max(now_virtual);
            let activation = self.next_activation;
            self.next_activation += 1;
            key.activation = Some(activation);
            self.turns.insert((key.tag, activation), task.key.clone());
        }
        key.lines
            .entry((task.needed_capabilities.clone(), task.priority))
            .or_default()
            .insert(id);
        self.tasks.insert(id, task);
    }

    /// Takes a task out of its key's line. The key stays active even if this emptied it:
    /// [`Fair::settle`] decides that, so a task replaced in place does not cycle its key.
    fn unlink(&mut self, id: TaskId) -> Option<QueuedTask> {
        let task = self.tasks.remove(&id)?;
        if let Some(key) = self.keys.get_mut(&task.key) {
            let line = (task.needed_capabilities.clone(), task.priority);
            if let Some(ids) = key.lines.get_mut(&line) {
                ids.remove(&id);
                if ids.is_empty() {
                    key.lines.remove(&line);
                }
            }
        }
        Some(task)
    }

    /// Deactivates a key left without queued tasks: remembered while its tag is ahead of the
    /// global virtual time (it still owes for its latest turns), forgotten otherwise.
    fn settle(&mut self, name: &str) {
        let Some(key) = self.keys.get_mut(name) else {
            return;
        };
        if !key.lines.is_empty() {
            return;
        }
        if let Some(activation) = key.activation.take() {
            self.turns.remove(&(key.tag, activation));
        }
        if key.tag > self.now_virtual {
            self.idle.insert((key.tag, name.to_string()));
        } else {
            self.keys.remove(name);
        }
    }

    /// Advances `name`'s tag past one assignment started at its current tag, and the global
    /// virtual time to that start.
    fn charge(&mut self, name: &str, cost: VirtualTime) {
        let Some(key) = self.keys.get_mut(name) else {
            return;
        };
        self.now_virtual = self.now_virtual.max(key.tag);
        let Some(activation) = key.activation else {
            return;
        };
        self.turns.remove(&(key.tag, activation));
        key.tag += cost;
        self.turns.insert((key.tag, activation), name.to_string());
    }

    /// Forgets idle keys the global virtual time has caught up with.
    fn forget_caught_up(&mut self) {
        while let Some((tag, _)) = self.idle.first() {
            if *tag > self.now_virtual {
                break;
            }
            if let Some((_, name)) = self.idle.pop_first() {
                self.keys.remove(&name);
            }
        }
    }

    /// A key's lines as seen by one decision.
    fn key_pass<'a>(&'a self, name: &str, tag: VirtualTime, activation: Activation) -> KeyPass<'a> {
        let lines = self
            .keys
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
}

/// A task's priority after aging: one class better per `aging_ms` waited, never below urgent.
fn effective_priority(priority: Priority, queued_at: u64, now: u64, aging_ms: u64) -> Priority {
    let classes = now.saturating_sub(queued_at) / aging_ms.max(1);
    priority.saturating_sub(Priority::try_from(classes).unwrap_or(Priority::MAX))
}

/// One line during a decision: its head and the tasks behind it.
struct LineCursor<'a> {
    needs: &'a [Capability],
    priority: Priority,
    ids: btree_set::Iter<'a, TaskId>,
    head: Option<TaskId>,
}

/// One key during a decision: its tag as advanced by this decision's proposals, and its lines.
struct KeyPass<'a> {
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

/// Finding agents during a decision.
#[derive(Default)]
struct AgentSearch<'a> {
    /// Per needed-capability set, where to continue looking: agents before it either cannot
    /// take such tasks or were already proposed, and neither changes during a decision. Shared by
    /// every key, since whether an agent fits depends only on the capabilities.
    cursors: BTreeMap<&'a [Capability], Position>,
    /// Capability sets no remaining agent has.
    exhausted: BTreeSet<&'a [Capability]>,
    /// Agents proposed in this decision.
    taken: BTreeSet<Position>,
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

impl Policy for Fair {
    const NAME: &'static str = "fair";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(config: &Value) -> Result<Self, String> {
        Ok(Self {
            config: FairConfig::from_json(config)?,
            tasks: BTreeMap::new(),
            keys: BTreeMap::new(),
            turns: BTreeMap::new(),
            idle: BTreeSet::new(),
            now_virtual: 0,
            next_activation: 0,
            ready: ReadyAgents::default(),
        })
    }

    /// Queuing a task that is already queued replaces it; its id keeps its place in its line.
    fn task_queued(&mut self, task: Task) {
        if let Some(old) = self.unlink(task.id) {
            if old.key != task.fairness_key {
                self.settle(&old.key);
            }
        }
        let cost = self.cost(&task.fairness_key, task.weight);
        self.link(
            task.id,
            QueuedTask {
                key: task.fairness_key,
                priority: task.priority,
                needed_capabilities: task.needed_capabilities,
                queued_at: task.queued_at,
                cost,
            },
        );
        // A replacement into the same key may have emptied and refilled it; nothing to settle.
    }

    /// A task leaving without an assignment costs its key nothing.
    fn task_dequeued(&mut self, task: TaskId) {
        if let Some(old) = self.unlink(task) {
            self.settle(&old.key);
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

    /// The one place shares are counted: the key's tag advances by the task's cost, and the
    /// global virtual time moves to the start of this assignment.
    fn assigned(&mut self, task: TaskId, agent: AgentId) {
        self.ready.remove(agent);
        if let Some(done) = self.unlink(task) {
            self.charge(&done.key, done.cost);
            self.settle(&done.key);
            self.forget_caught_up();
        }
    }

    /// Reads the state only: nothing changes until the host confirms with `assigned`, so a
    /// proposal the host refuses leaves the task, the agent and the key's share where they were.
    ///
    /// Turns are taken in tag order, merging two sources: the active keys as stored (walked
    /// lazily, lowest tag first) and the keys already served in this decision (a heap keyed by
    /// their advanced tags). Each turn goes to the key's best line that a remaining agent can
    /// take; a key with no such line drops out of the decision.
    fn decide(&mut self, now: u64) -> Vec<Assignment> {
        let this = &*self;
        let mut proposals = Vec::new();
        if this.ready.is_empty() || this.turns.is_empty() {
            return proposals;
        }
        let aging_ms = this.config.aging_ms;
        let mut agents = AgentSearch::default();
        let mut stored = this.turns.iter().peekable();
        let mut keys: Vec<KeyPass<'_>> = Vec::new();
        let mut pending: BinaryHeap<Reverse<(VirtualTime, Activation, usize)>> = BinaryHeap::new();

        loop {
            // Bring in stored keys until the next one comes after the best pending turn.
            while let Some(&(&(tag, activation), name)) = stored.peek() {
                if let Some(Reverse((t, a, _))) = pending.peek() {
                    if (tag, activation) > (*t, *a) {
                        break;
                    }
                }
                stored.next();
                keys.push(this.key_pass(name, tag, activation));
                pending.push(Reverse((tag, activation, keys.len() - 1)));
            }
            let Some(Reverse((_, _, index))) = pending.pop() else {
                break;
            };
            let key = &mut keys[index];
            while let Some(line) = key.best_line(&this.tasks, &agents, now, aging_ms) {
                let cursor = &mut key.lines[line];
                let Some(agent) = agents.take(cursor.needs, &this.ready) else {
                    // Nobody left has these capabilities; `best_line` now skips the line.
                    continue;
                };
                let task = cursor.head.expect("best_line only picks lines with a head");
                cursor.head = cursor.ids.next().copied();
                proposals.push(Assignment { task, agent });
                if agents.taken.len() == this.ready.len() {
                    return proposals;
                }
                let cost = this.tasks.get(&task).map_or(UNIT, |t| t.cost);
                key.tag += cost;
                pending.push(Reverse((key.tag, key.activation, index)));
                break;
            }
        }
        proposals
    }
}

switchyard_policy_sdk::export_policy!(Fair);

#[cfg(test)]
mod tests;
