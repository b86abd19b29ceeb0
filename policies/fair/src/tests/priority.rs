//! Priority within a key, and the aging bound.

use super::*;

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
