//! Fair share between tenants first, then between each tenant's keys.

use super::*;

/// A normal-priority task of `tenant` under `key`.
fn of(id: TaskId, tenant: &str, key: &str) -> Task {
    keyed(id, key, 2, &[]).with_tenant(tenant)
}

/// Percentages of `counts`, in order.
fn percent(counts: &[usize]) -> Vec<f64> {
    let total: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&n| 100.0 * n as f64 / total as f64)
        .collect()
}

fn assert_within(got: &[f64], want: &[f64], points: f64) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= points,
            "shares {got:?}, want {want:?} ± {points}"
        );
    }
}

/// Queues the shape: tenants "a" (weight 3) and "b" (weight 2) with one honest key
/// each, and "c" (weight 1) spreading its work over 30 keys of weight 1000. Ids tell the
/// tenant: a from 0, b from 100 000, c from 200 000.
fn queue_three_tenants(host: &mut MiniHost<Fair>, per_tenant: u64) {
    host.policy.tenant_weight("a", 3.0);
    host.policy.tenant_weight("b", 2.0);
    host.policy.tenant_weight("c", 1.0);
    for i in 0..per_tenant {
        host.task_queued(of(i, "a", "a-key"));
        host.task_queued(of(100_000 + i, "b", "b-key"));
        host.task_queued(of(200_000 + i, "c", &format!("c-{}", i % 30)).with_weight(1_000.0));
    }
}

fn tenant_of(id: TaskId) -> usize {
    (id / 100_000) as usize
}

#[test]
fn tenants_share_assignments_by_weight_however_many_keys_they_spread_over() {
    let mut sim = Sim::new(fair(), 6);
    queue_three_tenants(&mut sim.host, 5_000);
    let mut counts = [0; 3];
    for round in 0..200 {
        for a in sim.round(round) {
            counts[tenant_of(a.task)] += 1;
        }
    }
    assert_eq!(counts.iter().sum::<usize>(), 1_200);
    assert_within(&percent(&counts), &[50.0, 100.0 / 3.0, 100.0 / 6.0], 1.0);
    // Within c, the 30 keys of weight 1000 share c's turns evenly (40 each).
    let per_key: BTreeMap<&String, usize> =
        sim.log
            .iter()
            .filter(|k| k.starts_with("c-"))
            .fold(BTreeMap::new(), |mut m, k| {
                *m.entry(k).or_default() += 1;
                m
            });
    assert_eq!(per_key.len(), 30);
    assert!(
        per_key.values().all(|&n| (6..=7).contains(&n)),
        "{per_key:?}"
    );
}

#[test]
fn a_tenant_not_told_counts_weight_one() {
    let mut p = fair();
    p.tenant_weight("heavy", 2.0);
    for id in 0..30 {
        p.task_queued(of(id, "heavy", "h"));
        p.task_queued(of(100_000 + id, "unknown", "u"));
    }
    for id in 0..30 {
        p.agent_ready(agent(id, &[]));
    }
    let heavy = p.decide(0).iter().filter(|a| a.task < 100_000).count();
    assert_eq!(heavy, 20, "2 : 1");
    assert_eq!(p.tenant_weight_of("unknown"), 1.0);
}

#[test]
fn a_weight_change_applies_at_once() {
    let mut sim = Sim::new(fair(), 4);
    for id in 0..2_000 {
        sim.queue(of(id, "a", "k"));
        sim.queue(of(100_000 + id, "b", "k"));
    }
    let mut counts = [0; 2];
    for round in 0..10 {
        for a in sim.round(round) {
            counts[tenant_of(a.task)] += 1;
        }
    }
    assert_eq!(counts, [20, 20], "equal weights alternate");
    sim.host.policy.tenant_weight("a", 3.0);
    let mut counts = [0; 2];
    // The very next decision already gives a three turns in four.
    for a in sim.round(10) {
        counts[tenant_of(a.task)] += 1;
    }
    assert_eq!(counts, [3, 1]);
    for round in 11..30 {
        for a in sim.round(round) {
            counts[tenant_of(a.task)] += 1;
        }
    }
    assert_eq!(counts, [60, 20]);
    // And back down.
    sim.host.policy.tenant_weight("a", 1.0);
    let mut counts = [0; 2];
    for round in 30..40 {
        for a in sim.round(round) {
            counts[tenant_of(a.task)] += 1;
        }
    }
    assert_within(&percent(&counts), &[50.0, 50.0], 3.0);
}

#[test]
fn a_removed_tenant_is_forgotten() {
    let mut sim = Sim::new(fair(), 1);
    sim.host.policy.tenant_weight("gone", 5.0);
    for id in 0..10 {
        sim.queue(of(id, "gone", "k"));
        sim.queue(of(100_000 + id, "stays", "k"));
    }
    for round in 0..12 {
        sim.round(round);
    }
    // "gone" took its ten tasks first (weight 5): it is idle with a tag ahead of the others.
    assert!(sim.host.policy.tenant_tag("gone").is_some());
    sim.host.policy.tenant_removed("gone");
    assert_eq!(sim.host.policy.tenant_tag("gone"), None);
    assert!(!sim.host.policy.tenants.contains_key("gone"));
    assert_eq!(sim.host.policy.tenant_weight_of("gone"), 1.0);
    check_invariants(&sim.host.policy);
    // A tenant of the same name created later starts afresh, at weight 1.
    sim.queue(of(50, "gone", "k"));
    assert_eq!(sim.round(12)[0].task, 50, "a newcomer, not a debtor");
    check_invariants(&sim.host.policy);
}

#[test]
fn a_tenants_keys_divide_its_share_by_key_weight() {
    let mut sim = Sim::new(fair(), 4);
    for id in 0..1_000 {
        sim.queue(of(id, "a", "a-big").with_weight(3.0));
        sim.queue(of(10_000 + id, "a", "a-small"));
        sim.queue(of(100_000 + id, "b", "b"));
    }
    for round in 0..100 {
        sim.round(round);
    }
    let counts = ["a-big", "a-small", "b"].map(|k| sim.count(0..400, k));
    assert_within(&percent(&counts), &[37.5, 12.5, 50.0], 1.0);
}

#[test]
fn urgency_does_not_cross_tenants_and_aging_holds_within_one() {
    // "loud" marks everything urgent; "quiet" still gets every other turn.
    let mut p = fair();
    for id in 0..10 {
        p.task_queued(keyed(id, "k", 0, &[]).with_tenant("loud"));
    }
    for id in 100..110 {
        p.task_queued(keyed(id, "k", 3, &[]).with_tenant("quiet"));
    }
    for id in 0..4 {
        p.agent_ready(agent(id, &[]));
    }
    assert_eq!(tasks_of(&p.decide(0)), [0, 100, 1, 101]);

    // Within a tenant that shares the hub with a flood, a low task of a key still ages into
    // the lead of its key's urgent stream after 3 × aging_ms.
    let aging = 1_000;
    let mut p = fair_with(json!({"aging_ms": aging, "charge": "tasks"}));
    p.agent_ready(agent(1, &[]));
    p.agent_ready(agent(2, &[]));
    for id in 0..10_000 {
        p.task_queued(keyed(1_000_000 + id, "f", 0, &[]).with_tenant("flood"));
    }
    p.task_queued(keyed(1, "k", 3, &[]).with_tenant("t").with_queued_at(0));
    let mut next = 2;
    let mut assigned_at = None;
    for step in 0..100 {
        let now = step * 100;
        for _ in 0..2 {
            p.task_queued(
                keyed(next, "k", 0, &[])
                    .with_tenant("t")
                    .with_queued_at(now),
            );
            next += 1;
        }
        let proposals = p.decide(now);
        confirm_all(&mut p, &proposals);
        p.agent_ready(agent(1, &[]));
        p.agent_ready(agent(2, &[]));
        if proposals.iter().any(|a| a.task == 1) {
            assigned_at = Some(now);
            break;
        }
    }
    assert_eq!(assigned_at, Some(3 * aging), "aged too early or too late");
    check_invariants(&p);
}
