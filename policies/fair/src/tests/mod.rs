//! Fair's tests, by the promise they check. The fixtures here are fair's own; the ones every
//! policy shares come from `switchyard_policy_sdk::testing`.

use super::*;
use switchyard_policy_sdk::serde_json::json;
use switchyard_policy_sdk::testing::{
    agent, confirm_all, pairs, task, MiniHost, XorShift, DEFAULT_TENANT,
};
use switchyard_policy_sdk::{satisfies, Outcome};

mod config;
mod events;
mod priority;
mod random;
mod shares;
mod tenants;
mod time;

/// A task of fairness key `key`: every task of these tests names its key.
fn keyed(id: TaskId, key: &str, priority: Priority, needs: &[Capability]) -> Task {
    task(id, priority, needs).with_key(key)
}

/// A normal-priority task of `key` carrying its own weight.
fn weighted(id: TaskId, key: &str, weight: f64) -> Task {
    keyed(id, key, 2, &[]).with_weight(weight)
}

/// The policy counting assignments (`"charge": "tasks"`): most tests count who was served
/// how often, with agents that finish at once, which is what that charge shares.
fn fair() -> Fair {
    Fair::new(&json!({"charge": "tasks"})).unwrap()
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

/// Every structural promise of one level of fair queueing, given each flow's queued count.
fn check_sfq(sfq: &sfq::Sfq, queued: &BTreeMap<String, usize>) {
    for (name, flow) in &sfq.flows {
        let n = queued.get(name).copied().unwrap_or(0);
        match flow.activation {
            Some(a) => {
                assert!(n > 0, "active flow {name} has nothing queued");
                assert_eq!(sfq.turns.get(&(flow.tag, a)), Some(name));
            }
            None => {
                assert_eq!(n, 0, "idle flow {name} has {n} queued");
                assert!(flow.tag > sfq.now, "caught-up idle flow {name} kept");
                assert!(sfq.idle.contains(&(flow.tag, name.clone())));
            }
        }
    }
    for (name, &n) in queued {
        if n > 0 {
            assert!(
                sfq.flows.get(name).is_some_and(|f| f.activation.is_some()),
                "{name} has {n} queued but is not active"
            );
        }
    }
    assert_eq!(sfq.turns.len() + sfq.idle.len(), sfq.flows.len());
}

/// Every structural promise of the state, checked after random event sequences.
fn check_invariants(p: &Fair) {
    let mut seen = 0;
    let mut per_tenant = BTreeMap::new();
    for (tenant_name, tenant) in &p.tenants {
        let mut per_key = BTreeMap::new();
        for (name, key) in &tenant.lines {
            let queued: usize = key.lines.values().map(BTreeSet::len).sum();
            assert!(key.lines.values().all(|l| !l.is_empty()), "empty line kept");
            assert!(queued > 0 || key.running > 0, "key {name} kept for nothing");
            per_key.insert(name.clone(), queued);
        }
        check_sfq(&tenant.keys, &per_key);
        let queued: usize = per_key.values().sum();
        assert_eq!(queued, tenant.queued, "tenant {tenant_name}'s count");
        per_tenant.insert(tenant_name.clone(), queued);
        seen += queued;
    }
    check_sfq(&p.tenant_turns, &per_tenant);
    assert_eq!(seen, p.tasks.len());
    for (id, t) in &p.tasks {
        let key = &p.tenants[&t.tenant].lines[&t.key];
        assert!(key.lines[&(t.needed_capabilities.clone(), t.priority)].contains(id));
    }
    let running: u32 = p
        .tenants
        .values()
        .flat_map(|t| t.lines.values())
        .map(|k| k.running)
        .sum();
    assert_eq!(running as usize, p.running.len());
}
