//! The policy against a naive statement of its rules, and against itself, under seeded random
//! events.

use super::*;

/// The decision rules stated naively, O(everything) per step, reading the policy's stored tags:
/// repeatedly give the turn to the tenant with the lowest (tag, activation) that has a line
/// whose head some free agent can take; within it to the key with the lowest (tag, activation)
/// that has one; within it the head with the lowest (effective priority, id); to the agent
/// ready longest that can take it.
fn reference(p: &Fair, now: u64) -> Vec<(TaskId, AgentId)> {
    type Tag = (VirtualTime, Activation);
    let mut tenant_tags: BTreeMap<&str, Tag> = p
        .tenant_turns
        .turns
        .iter()
        .map(|(&(tag, a), name)| (name.as_str(), (tag, a)))
        .collect();
    let mut key_tags: BTreeMap<(&str, &str), Tag> = p
        .tenants
        .iter()
        .flat_map(|(tenant, state)| {
            state
                .keys
                .turns
                .iter()
                .map(move |(&(tag, a), key)| ((tenant.as_str(), key.as_str()), (tag, a)))
        })
        .collect();
    let mut done: BTreeSet<TaskId> = BTreeSet::new();
    let mut free: Vec<(AgentId, &[Capability])> = p.ready.iter().collect();
    let mut out = Vec::new();
    loop {
        // (tenant tag, key tag, tenant, key, head, agent index)
        let mut best: Option<(Tag, Tag, &str, &str, TaskId, usize)> = None;
        for (&(tenant, name), &key_tag) in &key_tags {
            let tenant_tag = tenant_tags[tenant];
            let key = &p.tenants[tenant].lines[name];
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
                if best.is_none_or(|(t, k, ..)| (tenant_tag, key_tag) < (t, k)) {
                    best = Some((tenant_tag, key_tag, tenant, name, head, agent));
                }
            }
        }
        let Some(((ttag, ta), (ktag, ka), tenant, name, head, agent)) = best else {
            return out;
        };
        out.push((head, free.remove(agent).0));
        done.insert(head);
        let state = &p.tenants[tenant];
        let task = &p.tasks[&head];
        key_tags.insert((tenant, name), (ktag + p.key_cost(state, task), ka));
        tenant_tags.insert(tenant, (ttag + p.tenant_cost(state, name), ta));
    }
}

#[test]
fn matches_a_naive_reference_and_keeps_its_invariants_under_random_events() {
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let keys = ["a", "b", "c", "d", "e"];
    let tenants = ["default", "t1", "t2"];
    for round in 0..300 {
        let charge = if round % 2 == 0 { "tasks" } else { "time" };
        let mut host = MiniHost::new(fair_with(
            json!({"aging_ms": 50, "weights": {"e": 2.5}, "charge": charge}),
        ));
        host.policy.tenant_weight("t1", 3.0);
        let mut running: Vec<TaskId> = Vec::new();
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
                    .with_weight([0.5, 1.0, 3.0][rng.below(3) as usize])
                    .with_tenant(tenants[rng.below(3) as usize]);
                    host.task_queued(t);
                }
                4 => host.task_dequeued(rng.below(60)),
                9 if !running.is_empty() => {
                    let task = running.swap_remove(rng.below(running.len() as u64) as usize);
                    host.policy
                        .task_finished(task, 0, Outcome::Completed, rng.below(500));
                }
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
                            running.push(a.task);
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
