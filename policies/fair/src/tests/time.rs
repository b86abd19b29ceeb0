//! Charging agent time: an estimate at dispatch, corrected by the time a task really held its
//! agent.

use super::*;
use switchyard_policy_sdk::testing::Held;

/// Agent-time percentages per tenant index (`id / 100 000`) within `from..until`.
fn time_shares(made: &[Held], tenants: usize, from: u64, until: u64) -> Vec<f64> {
    let mut time = vec![0u64; tenants];
    for held in made {
        time[(held.task.id / 100_000) as usize] += held.within(from, until);
    }
    let total: u64 = time.iter().sum();
    time.iter()
        .map(|&t| 100.0 * t as f64 / total as f64)
        .collect()
}

/// The shape with run times mixed: "a" (weight 3) runs 200 ms tasks, "b" (weight 2)
/// 10 ms tasks, "c" (weight 1) spreads over 30 keys of weight 1000, its even keys running
/// 200 ms tasks and its odd keys 10 ms ones. Twelve agents for a simulated minute.
fn mixed_run(config: Value) -> Vec<f64> {
    let mut host = MiniHost::new(fair_with(config));
    host.policy.tenant_weight("a", 3.0);
    host.policy.tenant_weight("b", 2.0);
    host.policy.tenant_weight("c", 1.0);
    for agent_id in 0..12 {
        host.agent_ready(agent(agent_id, &[]));
    }
    for i in 0..40_000 {
        host.task_queued(task(i, 2, &[]).with_tenant("a").with_key("a"));
        host.task_queued(task(100_000 + i, 2, &[]).with_tenant("b").with_key("b"));
        host.task_queued(
            task(200_000 + i, 2, &[])
                .with_tenant("c")
                .with_key(&format!("c-{}", i % 30))
                .with_weight(1_000.0),
        );
    }
    let run_time = |t: &Task| match (t.id / 100_000, t.id % 30 % 2) {
        (0, _) | (2, 0) => 200,
        _ => 10,
    };
    let made = host.run_until(0, 60_000, run_time);
    assert!(
        host.queued_tasks().len() > 3 * 10_000,
        "every tenant stays backlogged"
    );
    check_invariants(&host.policy);
    time_shares(&made, 3, 0, 60_000)
}

#[test]
fn tenants_share_agent_time_by_weight_with_long_and_short_tasks_mixed() {
    let shares = mixed_run(Value::Null);
    for (got, want) in shares.iter().zip([50.0, 100.0 / 3.0, 100.0 / 6.0]) {
        assert!((got - want).abs() <= 2.0, "agent-time shares {shares:?}");
    }
}

#[test]
fn counting_assignments_instead_gives_long_tasks_the_fleet() {
    // The same run under `"charge": "tasks"`: a's 200 ms tasks take most of the agent time.
    let shares = mixed_run(json!({"charge": "tasks"}));
    assert!(shares[0] > 80.0, "agent-time shares {shares:?}");
}

#[test]
fn an_estimate_is_charged_at_dispatch_and_corrected_at_the_end() {
    let mut p = fair_with(json!({"initial_estimate_ms": 500, "min_charge_ms": 1}));
    for id in 0..3 {
        p.task_queued(task(id, 2, &[]).with_tenant("t").with_key("k"));
    }
    p.agent_ready(agent(1, &[]));
    let proposals = p.decide(0);
    confirm_all(&mut p, &proposals);
    // Nothing finished yet: the initial estimate.
    assert_eq!(p.key_tag("t", "k"), Some(500 * UNIT));
    assert_eq!(p.tenant_tag("t"), Some(500 * UNIT));
    // It held its agent 80 ms: the charge becomes 80 ms, and 80 is the estimate from now on.
    p.task_finished(0, 1, Outcome::Completed, 80);
    assert_eq!(p.key_tag("t", "k"), Some(80 * UNIT));
    assert_eq!(p.tenant_tag("t"), Some(80 * UNIT));
    p.agent_ready(agent(1, &[]));
    let proposals = p.decide(0);
    confirm_all(&mut p, &proposals);
    assert_eq!(p.tenant_tag("t"), Some(160 * UNIT));
    // A returned (or failed, or cancelled) task held its agent too: it is charged the same way.
    p.task_finished(1, 1, Outcome::Returned, 400);
    assert_eq!(p.tenant_tag("t"), Some(480 * UNIT));
    check_invariants(&p);
}

#[test]
fn a_correction_after_the_queue_ran_dry_is_a_debt() {
    let mut p = fair();
    let mut p_time = fair_with(json!({"initial_estimate_ms": 10}));
    for policy in [&mut p, &mut p_time] {
        policy.task_queued(task(1, 2, &[]).with_tenant("t"));
        policy.agent_ready(agent(1, &[]));
        let proposals = policy.decide(0);
        confirm_all(policy, &proposals);
    }
    // Under "time", t is idle and owes more than it was charged: remembered with the debt.
    p_time.task_finished(1, 1, Outcome::Completed, 1_000);
    assert_eq!(p_time.tenant_tag("t"), Some(1_000 * UNIT));
    check_invariants(&p_time);
    // Under "tasks", finishing changes nothing.
    let before = p.tenant_tag("t");
    p.task_finished(1, 1, Outcome::Completed, 1_000);
    assert_eq!(p.tenant_tag("t"), before);
    // A finish the policy never charged (from before a restart) is ignored.
    p_time.task_finished(99, 1, Outcome::Failed, 5_000);
    assert_eq!(p_time.tenant_tag("t"), Some(1_000 * UNIT));
}

#[test]
fn a_refunded_overestimate_does_not_hold_a_newcomer_back() {
    // "heavy" is charged the initial 1 000 ms four times before anything finishes, then each
    // task turns out to have taken 1 ms (charged as such: `min_charge_ms` 1). A key arriving then starts level with heavy, not
    // 3 000 ms of virtual time behind it.
    let mut host = MiniHost::new(fair_with(json!({"min_charge_ms": 1})));
    for agent_id in 0..4 {
        host.agent_ready(agent(agent_id, &[]));
    }
    for id in 0..1_000 {
        host.task_queued(task(id, 2, &[]).with_key("heavy"));
    }
    host.run_until(0, 50, |_| 1);
    host.task_queued(task(5_000, 2, &[]).with_key("light"));
    let made = host.run_until(50, 51, |_| 1);
    assert!(
        made.iter().any(|h| h.task.id == 5_000),
        "the newcomer waits: {:?}",
        made.iter().map(|h| h.task.id).collect::<Vec<_>>()
    );
    check_invariants(&host.policy);
}

#[test]
fn charges_below_the_minimum_are_raised_to_it() {
    // Instant tasks (0 to 3 ms, measurement noise) are charged 10 ms each: shared by count.
    let mut host = MiniHost::new(fair_with(Value::Null));
    for agent_id in 0..2 {
        host.agent_ready(agent(agent_id, &[]));
    }
    for id in 0..1_000 {
        host.task_queued(task(id, 2, &[]).with_key("zero"));
        host.task_queued(task(10_000 + id, 2, &[]).with_key("three"));
    }
    let made = host.run_until(0, 400, |t| if t.id < 10_000 { 0 } else { 3 });
    let zero = made.iter().filter(|h| h.task.id < 10_000).count();
    let three = made.len() - zero;
    assert!(zero.abs_diff(three) <= 2, "{zero} against {three}");
    assert_eq!(
        host.policy
            .key_tag(DEFAULT_TENANT, "zero")
            .map(|t| t % (10 * UNIT)),
        Some(0)
    );
    let err = Fair::new(&json!({"min_charge_ms": 0})).unwrap_err();
    assert!(
        err.contains("`min_charge_ms` must be a whole number of milliseconds from 1"),
        "{err}"
    );
}
