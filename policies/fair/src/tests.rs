use super::*;
use switchyard_policy_sdk::serde_json::json;
use switchyard_policy_sdk::testing::{agent, confirm_all, pairs, task, MiniHost, XorShift};
use switchyard_policy_sdk::{satisfies, Outcome};

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
        let proposals = self.host.decide(now);
        for &a in &proposals {
            let key = self.host.queued_tasks()[&a.task].fairness_key.clone();
            assert!(self.host.confirm(a), "the hub refuses {a:?}");
            self.log.push(key);
        }
        for a in &proposals {
            self.host
                .policy
                .task_finished(a.task, a.agent, Outcome::Completed);
            self.host.agent_ready(agent(a.agent, &[]));
        }
        proposals
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

#[test]
fn reports_its_name_and_version() {
    assert_eq!(Fair::NAME, "fair");
    assert_eq!(Fair::VERSION, env!("CARGO_PKG_VERSION"));
}

#[test]
fn config_defaults_and_fields() {
    assert_eq!(fair().config(), &FairConfig::default());
    assert_eq!(fair_with(json!({})).config(), &FairConfig::default());
    let p = fair_with(json!({"weights": {"team-a": 3, "b": 0.5}, "aging_ms": 1000}));
    assert_eq!(p.config().aging_ms, 1000);
    assert_eq!(p.config().weights.get("team-a"), Some(&3.0));
    assert_eq!(p.config().weights.get("b"), Some(&0.5));
    assert!(
        fair_with(json!({"weights": null, "aging_ms": MAX_AGING_MS}))
            .config()
            .weights
            .is_empty()
    );
}

#[test]
fn config_refusals_name_the_field() {
    let refused = |config: Value, needle: &str| {
        let err = Fair::new(&config).unwrap_err();
        assert!(err.starts_with("fair: "), "{err}");
        assert!(err.contains(needle), "{config}: {err}");
    };
    refused(json!({"bogus": 1}), "unknown config field `bogus`");
    refused(json!({"weight": {"a": 1}}), "unknown config field `weight`");
    refused(json!(7), "got a number");
    refused(json!([]), "got an array");
    refused(json!("x"), "got a string");
    refused(json!({"weights": [1]}), "`weights` must be an object");
    refused(json!({"weights": {"a": 0}}), "`weights.a` must be a number");
    refused(json!({"weights": {"a": -2}}), "`weights.a`");
    refused(json!({"weights": {"a": "3"}}), "`weights.a`");
    refused(json!({"weights": {"a": 1e9}}), "`weights.a`");
    refused(json!({"weights": {"": 1}}), "empty fairness key");
    refused(json!({"aging_ms": 0}), "`aging_ms` must be a whole number");
    refused(json!({"aging_ms": -5}), "`aging_ms`");
    refused(json!({"aging_ms": 1.5}), "`aging_ms`");
    refused(json!({"aging_ms": "30s"}), "`aging_ms`");
    refused(json!({"aging_ms": MAX_AGING_MS + 1}), "`aging_ms`");
}

#[test]
fn refusals_quote_what_was_given() {
    let err = Fair::new(&json!({"weights": {"a": 0}})).unwrap_err();
    assert_eq!(
        err,
        "fair: `weights.a` must be a number from 0.001 to 1000, got 0"
    );
    let err = Fair::new(&json!({"aging_ms": "30s"})).unwrap_err();
    assert!(err.ends_with("got the string \"30s\""), "{err}");
    let err = Fair::new(&json!({"aging_ms": -5})).unwrap_err();
    assert!(err.ends_with("got -5"), "{err}");
    let err = Fair::new(&json!({"weights": {"a": 0.0001}})).unwrap_err();
    assert!(err.ends_with("got a fractional number"), "{err}");
    let err = Fair::new(&json!({"weights": {"a": [1]}})).unwrap_err();
    assert!(err.ends_with("got an array"), "{err}");
    // The bounds as written in messages are the bounds enforced.
    assert_eq!(MIN_WEIGHT_TEXT.parse::<f64>(), Ok(MIN_WEIGHT));
    assert_eq!(MAX_WEIGHT_TEXT.parse::<f64>(), Ok(MAX_WEIGHT));
    assert!(Fair::new(&json!({"weights": {"a": 0.001, "b": 1000}})).is_ok());
}

#[test]
fn nothing_to_decide_without_agents_or_tasks() {
    let mut p = fair();
    assert!(p.decide(0).is_empty());
    p.task_queued(keyed(1, "a", 2, &[]));
    assert!(p.decide(0).is_empty());
    let mut p = fair();
    p.agent_ready(agent(1, &[]));
    assert!(p.decide(0).is_empty());
}

#[test]
fn equal_keys_alternate_in_one_decision() {
    let mut p = fair();
    for id in 0..4 {
        p.task_queued(keyed(id, "a", 2, &[]));
    }
    for id in 10..14 {
        p.task_queued(keyed(id, "b", 2, &[]));
    }
    for id in 0..6 {
        p.agent_ready(agent(id, &[]));
    }
    // "a" became active first, so it wins ties; agents in the order they became ready.
    assert_eq!(
        pairs(&p.decide(0)),
        [(0, 0), (10, 1), (1, 2), (11, 3), (2, 4), (12, 5)]
    );
}

#[test]
fn a_light_key_is_not_starved_behind_a_flood() {
    let mut sim = Sim::new(fair(), 4);
    for id in 0..1_000 {
        sim.queue(keyed(id, "heavy", 2, &[]));
    }
    // The flood has the hub to itself for a while.
    for round in 0..25 {
        sim.round(round);
    }
    assert_eq!(sim.count(0..100, "heavy"), 100);
    for id in 0..20 {
        sim.queue(keyed(10_000 + id, "light", 2, &[]));
    }
    let before = sim.log.len();
    // Its first task goes in the very next decision.
    let next = sim.round(25);
    assert_eq!(next[0].task, 10_000, "{next:?}");
    while sim.count(before..sim.log.len(), "light") < 20 {
        sim.round(26);
        assert!(sim.log.len() - before <= 100, "light key starved");
    }
    // All 20 within its fair share of the next assignments: at most 2 × 20 of them.
    let window = sim.log[before..]
        .iter()
        .rposition(|k| k == "light")
        .unwrap()
        + 1;
    assert!(
        window <= 40,
        "the light key's 20 tasks took {window} assignments"
    );
}

fn shares(sim: &Sim, range: std::ops::Range<usize>, keys: &[&str]) -> Vec<f64> {
    let n = range.len() as f64;
    keys.iter()
        .map(|k| 100.0 * sim.count(range.clone(), k) as f64 / n)
        .collect()
}

fn assert_shares(actual: &[f64], expected: &[f64], points: f64) {
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a - e).abs() <= points,
            "shares {actual:?}, expected {expected:?}"
        );
    }
}

#[test]
fn configured_weights_5_3_2_give_50_30_20_percent() {
    let mut sim = Sim::new(fair_with(json!({"weights": {"a": 5, "b": 3, "c": 2}})), 4);
    for (offset, key) in [(0, "a"), (100_000, "b"), (200_000, "c")] {
        for id in 0..2_000 {
            sim.queue(keyed(offset + id, key, 2, &[]));
        }
    }
    for round in 0..250 {
        sim.round(round);
    }
    assert_eq!(sim.log.len(), 1_000);
    assert_shares(
        &shares(&sim, 0..1_000, &["a", "b", "c"]),
        &[50.0, 30.0, 20.0],
        0.5,
    );
    // Not only on average: every window of 100 is within a couple of assignments.
    for start in (0..900).step_by(50) {
        assert_shares(
            &shares(&sim, start..start + 100, &["a", "b", "c"]),
            &[50.0, 30.0, 20.0],
            3.0,
        );
    }
}

#[test]
fn task_weights_set_the_share_when_the_config_does_not() {
    let mut sim = Sim::new(fair(), 3);
    for (offset, key, w) in [(0, "a", 5.0), (100_000, "b", 3.0), (200_000, "c", 2.0)] {
        for id in 0..1_000 {
            sim.queue(weighted(offset + id, key, w));
        }
    }
    for round in 0..300 {
        sim.round(round);
    }
    assert_shares(
        &shares(&sim, 0..900, &["a", "b", "c"]),
        &[50.0, 30.0, 20.0],
        1.0,
    );
}

#[test]
fn a_configured_weight_overrides_the_tasks_weight() {
    let mut sim = Sim::new(fair_with(json!({"weights": {"a": 1}})), 2);
    for id in 0..500 {
        sim.queue(weighted(id, "a", 100.0)); // ignored: the operator fixed "a" at 1
        sim.queue(weighted(1_000 + id, "b", 3.0));
    }
    for round in 0..200 {
        sim.round(round);
    }
    assert_shares(&shares(&sim, 0..400, &["a", "b"]), &[25.0, 75.0], 1.0);
}

#[test]
fn extreme_task_weights_are_clamped_not_trusted() {
    let p = fair();
    assert_eq!(p.cost("k", 1.0), UNIT);
    assert_eq!(p.cost("k", 1e300), p.cost("k", MAX_WEIGHT));
    assert_eq!(p.cost("k", 1e-300), p.cost("k", MIN_WEIGHT));
    assert_eq!(p.cost("k", f64::NAN), UNIT);
    assert_eq!(p.cost("k", -1.0), UNIT);
    assert!(p.cost("k", MAX_WEIGHT) > 0);
}

#[test]
fn idleness_earns_no_credit() {
    let mut sim = Sim::new(fair(), 1);
    for id in 0..10 {
        sim.queue(keyed(id, "early", 2, &[]));
    }
    for id in 100..400 {
        sim.queue(keyed(id, "busy", 2, &[]));
    }
    for round in 0..100 {
        sim.round(round);
    }
    // "early" drained long ago and has been idle while "busy" ran on.
    assert_eq!(sim.count(0..100, "early"), 10);
    for id in 1_000..1_020 {
        sim.queue(keyed(id, "early", 2, &[]));
    }
    let before = sim.log.len();
    for round in 100..120 {
        sim.round(round);
    }
    // It comes back at the current virtual time: half of what follows, not a burst of 20.
    let early = sim.count(before..before + 20, "early");
    assert!((9..=11).contains(&early), "{early} of 20");
}

#[test]
fn emptying_the_queue_does_not_reset_a_keys_debt() {
    // "drip" keeps exactly one task queued, re-submitting as soon as it is assigned; "flood"
    // is always backlogged. If going idle for an instant reset drip's tag to the global virtual
    // time, drip would win every tie and take two turns in three.
    let mut sim = Sim::new(fair(), 1);
    for id in 0..1_000 {
        sim.queue(keyed(id, "flood", 2, &[]));
    }
    let mut next = 10_000;
    sim.queue(keyed(next, "drip", 2, &[]));
    for round in 0..400 {
        let proposals = sim.round(round);
        if proposals.iter().any(|a| a.task == next) {
            next += 1;
            sim.queue(keyed(next, "drip", 2, &[]));
        }
    }
    assert_shares(
        &shares(&sim, 0..400, &["drip", "flood"]),
        &[50.0, 50.0],
        1.0,
    );
}

#[test]
fn priority_orders_work_within_a_key() {
    let mut p = fair();
    p.task_queued(keyed(1, "a", 3, &[]));
    p.task_queued(keyed(2, "a", 2, &[]));
    p.task_queued(keyed(3, "a", 0, &[]));
    p.task_queued(keyed(4, "a", 1, &[]));
    p.task_queued(keyed(5, "a", 0, &[]));
    for id in 0..5 {
        p.agent_ready(agent(id, &[]));
    }
    assert_eq!(tasks_of(&p.decide(0)), [3, 5, 4, 2, 1]);
}

#[test]
fn across_keys_fair_share_decides_not_priority() {
    // "loud" marks everything urgent; "quiet" still gets every other turn.
    let mut p = fair();
    for id in 0..10 {
        p.task_queued(keyed(id, "loud", 0, &[]));
    }
    for id in 100..110 {
        p.task_queued(keyed(id, "quiet", 3, &[]));
    }
    for id in 0..4 {
        p.agent_ready(agent(id, &[]));
    }
    assert_eq!(tasks_of(&p.decide(0)), [0, 100, 1, 101]);
}

#[test]
fn an_urgent_task_of_a_key_within_its_share_goes_at_once() {
    let mut sim = Sim::new(fair(), 2);
    for id in 0..100 {
        sim.queue(keyed(id, "batch", 2, &[]));
    }
    for round in 0..10 {
        sim.round(round);
    }
    sim.queue(keyed(500, "ops", 0, &[]));
    assert_eq!(sim.round(10)[0].task, 500);
}

/// The documented bound: a task of priority p that has waited p × aging_ms is passed by no
/// task of its key submitted after it, even while urgent tasks of its key keep arriving faster
/// than they can be served.
#[test]
fn aging_bounds_the_wait_under_a_stream_of_urgent_work_of_the_same_key() {
    let aging = 1_000;
    let tick = 100;
    let mut p = fair_with(json!({"aging_ms": aging}));
    p.agent_ready(agent(1, &[]));
    p.task_queued(keyed(1, "k", 3, &[]).with_queued_at(0));
    let mut next = 2;
    let mut assigned_at = None;
    for step in 0..100 {
        let now = step * tick;
        // Two urgent tasks per tick, one agent assignment per tick: the queue only grows.
        for _ in 0..2 {
            p.task_queued(keyed(next, "k", 0, &[]).with_queued_at(now));
            next += 1;
        }
        let proposals = p.decide(now);
        confirm_all(&mut p, &proposals);
        p.agent_ready(agent(1, &[]));
        if proposals.iter().any(|a| a.task == 1) {
            assigned_at = Some(now);
            break;
        }
    }
    let assigned_at = assigned_at.expect("the low task was starved");
    // Effective priority 0 at 3 × aging_ms, and then it is older than every urgent task left.
    assert_eq!(assigned_at, 3 * aging, "aged too early or too late");
}

#[test]
fn aging_goes_class_by_class() {
    let aging = 1_000;
    let mut p = fair_with(json!({"aging_ms": aging}));
    p.task_queued(keyed(1, "k", 3, &[]).with_queued_at(0)); // low, waiting since 0
    p.task_queued(keyed(2, "k", 1, &[]).with_queued_at(1_500)); // high, fresh
    p.agent_ready(agent(1, &[]));
    // At 1 999 the low task is effectively normal (3 - 1): high goes first.
    assert_eq!(tasks_of(&p.decide(1_999)), [2]);
    // At 2 000 it is effectively high, and older: it goes first.
    assert_eq!(tasks_of(&p.decide(2_000)), [1]);
    // A clock that runs behind a task's queued_at counts as no wait.
    assert_eq!(tasks_of(&p.decide(0)), [2]);
}

#[test]
fn urgent_work_of_other_keys_does_not_delay_a_low_task_beyond_its_share() {
    let mut p = fair();
    p.agent_ready(agent(1, &[]));
    for id in 0..50 {
        p.task_queued(keyed(id, "urgent-flood", 0, &[]));
    }
    let first = p.decide(0);
    confirm_all(&mut p, &first);
    p.agent_ready(agent(1, &[]));
    p.task_queued(keyed(1_000, "patient", 3, &[]));
    // It arrives at the current virtual time: its key's next turn is the next assignment.
    assert_eq!(tasks_of(&p.decide(0)), [1_000]);
}

#[test]
fn a_task_no_agent_can_take_does_not_block_its_key_or_others() {
    let mut p = fair();
    p.task_queued(keyed(1, "a", 0, &[9])); // nobody has 9
    p.task_queued(keyed(2, "a", 2, &[]));
    p.task_queued(keyed(3, "b", 0, &[9]));
    p.task_queued(keyed(4, "b", 2, &[1]));
    p.agent_ready(agent(10, &[1]));
    p.agent_ready(agent(11, &[]));
    p.agent_ready(agent(12, &[1, 2]));
    // "a": its urgent head needs 9, so its normal task goes, to the agent ready longest (10).
    // "b": the same; task 4 needs 1, agent 10 is taken, 11 lacks it, 12 has it.
    assert_eq!(pairs(&p.decide(0)), [(2, 10), (4, 12)]);
}

#[test]
fn capability_matching_is_a_subset_test_and_longest_ready_wins() {
    let mut p = fair();
    p.agent_ready(agent(30, &[1]));
    p.agent_ready(agent(10, &[0, 1, 3]));
    p.agent_ready(agent(20, &[1, 3]));
    p.task_queued(keyed(1, "a", 2, &[1, 3]));
    assert_eq!(pairs(&p.decide(0)), [(1, 10)]);
    p.agent_unready(10);
    p.agent_ready(agent(10, &[0, 1, 3]));
    assert_eq!(pairs(&p.decide(0)), [(1, 20)]);
    // A repeated agent-ready keeps the agent's place and updates its capabilities.
    p.agent_ready(agent(30, &[1, 3]));
    assert_eq!(p.ready_len(), 3);
    assert_eq!(pairs(&p.decide(0)), [(1, 30)]);
}

#[test]
fn decide_does_not_change_state_until_assigned_confirms() {
    let mut p = fair();
    p.task_queued(keyed(1, "a", 2, &[]));
    p.task_queued(keyed(2, "a", 2, &[]));
    p.task_queued(keyed(3, "b", 2, &[]));
    p.agent_ready(agent(10, &[]));
    let tag = p.key_tag("a");
    assert_eq!(pairs(&p.decide(0)), [(1, 10)]);
    // The host refused (say agent 10 vanished in between): the same proposal comes back and
    // "a" was not charged.
    assert_eq!(pairs(&p.decide(0)), [(1, 10)]);
    assert_eq!(p.key_tag("a"), tag);
    p.assigned(1, 10);
    assert_eq!(p.key_tag("a"), Some(UNIT));
    assert!(p.decide(0).is_empty());
    p.agent_ready(agent(11, &[]));
    assert_eq!(pairs(&p.decide(0)), [(3, 11)]);
}

#[test]
fn a_returned_task_keeps_its_place() {
    let mut p = fair();
    for id in 1..=3 {
        p.task_queued(keyed(id, "a", 2, &[]));
    }
    p.agent_ready(agent(10, &[]));
    let first = p.decide(0);
    confirm_all(&mut p, &first);
    p.task_finished(1, 10, Outcome::Returned);
    p.task_queued(keyed(1, "a", 2, &[]).with_queued_at(5_000));
    p.agent_ready(agent(10, &[]));
    assert_eq!(tasks_of(&p.decide(5_000)), [1]);
}

#[test]
fn task_queued_twice_replaces_the_task() {
    let mut p = fair();
    p.task_queued(keyed(1, "a", 3, &[]));
    p.task_queued(keyed(1, "a", 3, &[]));
    assert_eq!((p.queued_len(), p.active_keys()), (1, 1));
    p.task_queued(keyed(2, "a", 2, &[]));
    p.task_queued(keyed(1, "a", 0, &[5])); // moves lines
    p.task_queued(keyed(2, "b", 2, &[])); // moves keys
    assert_eq!((p.queued_len(), p.active_keys()), (2, 2));
    check_invariants(&p);
    p.agent_ready(agent(10, &[5]));
    p.agent_ready(agent(11, &[5]));
    assert_eq!(pairs(&p.decide(0)), [(1, 10), (2, 11)]);
}

#[test]
fn dequeued_tasks_and_unready_agents_are_forgotten() {
    let mut p = fair();
    p.task_queued(keyed(1, "a", 0, &[]));
    p.task_queued(keyed(2, "b", 1, &[7]));
    p.task_queued(keyed(3, "c", 2, &[]));
    p.agent_ready(agent(10, &[]));
    p.agent_ready(agent(11, &[7]));
    p.task_dequeued(1);
    p.agent_unready(10);
    p.task_dequeued(99);
    p.agent_unready(99);
    p.assigned(98, 97);
    assert_eq!(p.active_keys(), 2);
    assert_eq!(
        p.key_tag("a"),
        None,
        "an unserved key that empties is forgotten"
    );
    assert_eq!(pairs(&p.decide(0)), [(2, 11)]);
    check_invariants(&p);
}

#[test]
fn idle_keys_are_forgotten_once_virtual_time_passes_them() {
    let mut sim = Sim::new(fair(), 1);
    for k in 0..100 {
        sim.queue(keyed(k, &format!("once-{k}"), 2, &[]));
    }
    for id in 1_000..1_500 {
        sim.queue(keyed(id, "steady", 2, &[]));
    }
    for round in 0..300 {
        sim.round(round);
    }
    // The hundred one-off keys were each served once and then fell behind virtual time.
    assert_eq!(
        sim.host.policy.keys.len(),
        1,
        "{:?}",
        sim.host.policy.keys.keys()
    );
    check_invariants(&sim.host.policy);
}

#[test]
fn no_duplicates_in_a_big_decision_and_one_turn_per_key_at_equal_tags() {
    let mut p = fair();
    // 100 000 tasks over 1 000 keys, 1 000 agents.
    for id in 0..100_000 {
        let priority = (3 - (id / 1_000) % 4) as u8; // every key has every priority
        p.task_queued(keyed(id, &format!("key-{}", id % 1_000), priority, &[]));
    }
    for id in 0..1_000 {
        p.agent_ready(agent(id, &[]));
    }
    let proposals = p.decide(0);
    assert_eq!(proposals.len(), 1_000);
    let tasks: BTreeSet<_> = proposals.iter().map(|a| a.task).collect();
    let agents: BTreeSet<_> = proposals.iter().map(|a| a.agent).collect();
    assert_eq!((tasks.len(), agents.len()), (1_000, 1_000));
    let keys: BTreeSet<_> = proposals.iter().map(|a| a.task % 1_000).collect();
    assert_eq!(
        keys.len(),
        1_000,
        "every key gets exactly one of the 1 000 agents"
    );
    // And each key's turn went to its most urgent task, the earliest of them.
    assert!(proposals.iter().all(|a| (3_000..4_000).contains(&a.task)));
}

#[test]
fn a_deep_queue_is_not_walked() {
    // 100 000 queued tasks nobody can take, in one key and in many: the decision is immediate
    // and finds the one task somebody can take.
    let mut p = fair();
    for id in 0..100_000 {
        p.task_queued(keyed(id, "blocked", 0, &[1]));
    }
    for id in 100_000..110_000 {
        p.task_queued(keyed(id, &format!("k{id}"), 0, &[1]));
    }
    p.task_queued(keyed(200_000, "runnable", 3, &[]));
    p.agent_ready(agent(1, &[2]));
    assert_eq!(pairs(&p.decide(0)), [(200_000, 1)]);
}

/// The decision rules stated naively, O(everything) per step, reading the policy's stored tags:
/// repeatedly give the turn to the key with the lowest (tag, activation) that has a line whose
/// head some free agent can take; within it the head with the lowest (effective priority, id);
/// to the agent ready longest that can take it.
fn reference(p: &Fair, now: u64) -> Vec<(TaskId, AgentId)> {
    let mut tags: BTreeMap<&str, (VirtualTime, Activation)> = p
        .turns
        .iter()
        .map(|(&(tag, a), name)| (name.as_str(), (tag, a)))
        .collect();
    let mut done: BTreeSet<TaskId> = BTreeSet::new();
    let mut free: Vec<(AgentId, &[Capability])> = p.ready.iter().collect();
    let mut out = Vec::new();
    loop {
        let mut best: Option<((VirtualTime, Activation), &str, TaskId, usize)> = None;
        for (&name, &tag) in &tags {
            let key = &p.keys[name];
            let mut choice: Option<((Priority, TaskId), usize)> = None;
            for ((needs, priority), ids) in &key.lines {
                let Some(&head) = ids.iter().find(|id| !done.contains(id)) else {
                    continue;
                };
                let Some(agent) = free.iter().position(|(_, has)| satisfies(has, needs)) else {
                    continue;
                };
                let class =
                    effective_priority(*priority, p.tasks[&head].queued_at, now, p.config.aging_ms);
                if choice.is_none_or(|(c, _)| (class, head) < c) {
                    choice = Some(((class, head), agent));
                }
            }
            if let Some(((_, head), agent)) = choice {
                if best.is_none_or(|(t, ..)| tag < t) {
                    best = Some((tag, name, head, agent));
                }
            }
        }
        let Some(((tag, a), name, head, agent)) = best else {
            return out;
        };
        out.push((head, free.remove(agent).0));
        done.insert(head);
        tags.insert(name, (tag + p.tasks[&head].cost, a));
    }
}

#[test]
fn matches_a_naive_reference_and_keeps_its_invariants_under_random_events() {
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let keys = ["a", "b", "c", "d", "e"];
    for round in 0..300 {
        let mut host = MiniHost::new(fair_with(json!({"aging_ms": 50, "weights": {"e": 2.5}})));
        let mut now = 0;
        for _step in 0..80 {
            now += rng.below(40);
            match rng.below(12) {
                0..=3 => {
                    let id = rng.below(60);
                    let t = keyed(
                        id,
                        keys[rng.below(keys.len() as u64) as usize],
                        rng.below(4) as u8,
                        &rng.capabilities(),
                    )
                    .with_queued_at(now)
                    .with_weight([0.5, 1.0, 3.0][rng.below(3) as usize]);
                    host.task_queued(t);
                }
                4 => host.task_dequeued(rng.below(60)),
                5 | 6 => host.agent_ready(agent(rng.below(12) as AgentId, &rng.capabilities())),
                7 => host.agent_unready(rng.below(12) as AgentId),
                _ => {
                    let proposals = host.decide(now);
                    assert_eq!(
                        pairs(&proposals),
                        reference(&host.policy, now),
                        "round {round}"
                    );
                    let mut tasks = BTreeSet::new();
                    let mut agents = BTreeSet::new();
                    for a in &proposals {
                        assert!(tasks.insert(a.task) && agents.insert(a.agent), "duplicate");
                        let t = &host.queued_tasks()[&a.task];
                        let ag = host.ready_agent(a.agent).expect("a ready agent");
                        assert!(satisfies(&ag.capabilities, &t.needed_capabilities));
                    }
                    // Maximal: no task left that a remaining agent could take.
                    for t in host
                        .queued_tasks()
                        .values()
                        .filter(|t| !tasks.contains(&t.id))
                    {
                        assert!(!host.ready_agents().iter().any(|a| !agents.contains(&a.id)
                            && satisfies(&a.capabilities, &t.needed_capabilities)));
                    }
                    // The host accepts some and refuses the rest.
                    for a in proposals {
                        if rng.below(3) != 0 {
                            assert!(host.confirm(a), "{a:?}");
                        }
                    }
                }
            }
            check_invariants(&host.policy);
            assert_eq!(
                (host.policy.queued_len(), host.policy.ready_len()),
                (host.queued_tasks().len(), host.ready_agents().len())
            );
        }
    }
}

#[test]
fn two_instances_fed_the_same_events_decide_the_same() {
    let mut rng = XorShift::new(0x2545_f491_4f6c_dd1d);
    let mut first = fair_with(json!({"weights": {"k1": 4}}));
    let mut second = fair_with(json!({"weights": {"k1": 4}}));
    let mut decisions = 0;
    for step in 0..5_000u64 {
        let now = step * 7;
        match rng.below(8) {
            0..=3 => {
                let t = keyed(
                    rng.below(400),
                    &format!("k{}", rng.below(6)),
                    rng.below(4) as u8,
                    &rng.capabilities(),
                )
                .with_queued_at(now);
                first.task_queued(t.clone());
                second.task_queued(t);
            }
            4 => {
                let a = agent(rng.below(20) as AgentId, &rng.capabilities());
                first.agent_ready(a.clone());
                second.agent_ready(a);
            }
            5 => {
                let id = rng.below(400);
                first.task_dequeued(id);
                second.task_dequeued(id);
            }
            _ => {
                let proposals = first.decide(now);
                assert_eq!(proposals, second.decide(now), "step {step}");
                decisions += proposals.len();
                for a in proposals {
                    first.assigned(a.task, a.agent);
                    second.assigned(a.task, a.agent);
                }
            }
        }
    }
    assert!(
        decisions > 500,
        "the run should exercise decisions ({decisions})"
    );
    assert_eq!(first.virtual_time(), second.virtual_time());
}
