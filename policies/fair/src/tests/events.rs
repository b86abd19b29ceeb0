//! The calling discipline: events, capabilities, confirmations, and the cost of a decision.

use super::*;

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
    let tag = p.key_tag(DEFAULT_TENANT, "a");
    assert_eq!(pairs(&p.decide(0)), [(1, 10)]);
    // The host refused (say agent 10 vanished in between): the same proposal comes back and
    // "a" was not charged.
    assert_eq!(pairs(&p.decide(0)), [(1, 10)]);
    assert_eq!(p.key_tag(DEFAULT_TENANT, "a"), tag);
    p.assigned(1, 10);
    assert_eq!(p.key_tag(DEFAULT_TENANT, "a"), Some(UNIT));
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
    p.task_finished(1, 10, Outcome::Returned, 5);
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
        p.key_tag(DEFAULT_TENANT, "a"),
        None,
        "an unserved key that empties is forgotten"
    );
    assert_eq!(pairs(&p.decide(0)), [(2, 11)]);
    check_invariants(&p);
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
