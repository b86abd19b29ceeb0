//! Fair share across keys: weights, newcomers, idleness and debt.

use super::*;

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
    let keys = &sim.host.policy.tenants[DEFAULT_TENANT].keys.flows;
    assert_eq!(keys.len(), 1, "{:?}", keys.keys());
    check_invariants(&sim.host.policy);
}
