//! Fair's tests, by the promise they check. The fixtures here are fair's own; the ones every
//! policy shares come from `switchyard_policy_sdk::testing`.

use super::*;
use switchyard_policy_sdk::serde_json::json;
use switchyard_policy_sdk::testing::{agent, confirm_all, pairs, task, MiniHost, XorShift};
use switchyard_policy_sdk::{satisfies, Outcome};

mod config;
mod events;
mod priority;
mod random;
mod shares;

/// A task of fairness key `key`: every task of these tests names its key.
fn keyed(id: TaskId, key: &str, priority: Priority, needs: &[Capability]) -> Task {
    task(id, priority, needs).with_key(key)
}

/// A normal-priority task of `key` carrying its own weight.
fn weighted(id: TaskId, key: &str, weight: f64) -> Task {
    keyed(id, key, 2, &[]).with_weight(weight)
}

fn fair() -> Fair {
    Fair::new(&Value::Null).unwrap()
}

fn fair_with(config: Value) -> Fair {
    Fair::new(&config).unwrap()
}

fn tasks_of(proposals: &[Assignment]) -> Vec<TaskId> {
    proposals.iter().map(|a| a.task).collect()
}

/// A hub in miniature: agents that finish instantly and are ready again at the next round, a
/// record of which key every confirmed assignment went to.
struct Sim {
    host: MiniHost<Fair>,
    log: Vec<String>,
}

impl Sim {
    fn new(policy: Fair, agents: u32) -> Self {
        let mut host = MiniHost::new(policy);
        for a in 0..agents {
            host.agent_ready(agent(a, &[]));
        }
        Sim {
            host,
            log: Vec::new(),
        }
    }

    fn queue(&mut self, task: Task) {
        self.host.task_queued(task);
    }

    /// One batch: decide, confirm everything, agents finish and become ready again.
    fn round(&mut self, now: u64) -> Vec<Assignment> {
        let served = self.host.round(now);
        self.log
            .extend(served.iter().map(|(_, task)| task.fairness_key.clone()));
        served
            .into_iter()
            .map(|(assignment, _)| assignment)
            .collect()
    }

    fn count(&self, range: std::ops::Range<usize>, key: &str) -> usize {
        self.log[range].iter().filter(|k| *k == key).count()
    }
}

/// Every structural promise of the state, checked after random event sequences.
fn check_invariants(p: &Fair) {
    let mut seen = 0;
    for (name, key) in &p.keys {
        let queued: usize = key.lines.values().map(BTreeSet::len).sum();
        assert!(key.lines.values().all(|l| !l.is_empty()), "empty line kept");
        seen += queued;
        match key.activation {
            Some(a) => {
                assert!(queued > 0, "active key {name} has nothing queued");
                assert_eq!(p.turns.get(&(key.tag, a)), Some(name));
            }
            None => {
                assert_eq!(queued, 0);
                assert!(key.tag > p.now_virtual, "caught-up idle key {name} kept");
                assert!(p.idle.contains(&(key.tag, name.clone())));
            }
        }
    }
    assert_eq!(seen, p.tasks.len());
    assert_eq!(p.turns.len() + p.idle.len(), p.keys.len());
    for (id, t) in &p.tasks {
        let key = &p.keys[&t.key];
        assert!(key.lines[&(t.needed_capabilities.clone(), t.priority)].contains(id));
    }
}
