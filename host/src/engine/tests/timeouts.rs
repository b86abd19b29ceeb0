//! Time: acceptance, grace, run and heartbeat timeouts, deadlines, and take-backs by hand.

use super::*;

#[tokio::test]
async fn an_unaccepted_task_is_taken_back_and_poison_after_max_reclaims() {
    let hub = Fixture::start(EngineConfig {
        acceptance_timeout_ms: 30,
        max_reclaims: 2,
        ..EngineConfig::default()
    });
    let id = hub.submit("t", &[]).await;
    let mut agent = hub.connect("sleepy", &[]).await;
    let assign = agent.frame().await;
    // Not accepted: the engine marks the agent unresponsive and takes the task back.
    assert_eq!(agent.next().await, Outbound::Unresponsive);
    let cancel = agent.frame().await;
    assert_eq!(cancel["type"], "task_cancel");
    assert_eq!(generation(&cancel), generation(&assign));
    let stored = hub.stored_until(id, |t| t.reclaim_count == 1).await;
    assert_eq!(stored.status, TaskStatus::Queued);

    // A frame from the agent makes it responsive again; it is offered the task again.
    hub.engine.send(Command::Alive {
        conn: agent.conn,
        agent: "sleepy".into(),
    });
    let again = agent.frame().await;
    assert_eq!(again["type"], "task_assign");
    assert_eq!(agent.next().await, Outbound::Unresponsive);
    assert_eq!(agent.frame().await["type"], "task_cancel");
    let stored = hub
        .stored_until(id, |t| t.status == TaskStatus::DeadLetter)
        .await;
    assert_eq!(stored.reclaim_count, 2);
}

#[tokio::test]
async fn a_disconnected_agent_keeps_its_task_through_the_grace() {
    let hub = Fixture::start(EngineConfig {
        reconnect_grace_ms: 60_000,
        ..EngineConfig::default()
    });
    let id = hub.submit("t", &[]).await;
    let mut agent = hub.connect("worker", &[]).await;
    let assign = agent.frame().await;
    agent.accept(&assign).await;
    agent.disconnect();

    let mut back = hub.connect("worker", &[]).await;
    back.send(ClientMessage::TaskRecovering {
        task_id: id.to_string(),
    });
    let resumed = back.frame().await;
    assert_eq!(resumed["type"], "task_continue");
    assert_eq!(generation(&resumed), generation(&assign));
    assert_eq!(
        back.complete(&assign, generation(&assign)).await["status"],
        "complete"
    );
}

#[tokio::test]
async fn past_the_grace_a_lost_agents_task_goes_to_another() {
    let hub = Fixture::start(EngineConfig {
        reconnect_grace_ms: 30,
        ..EngineConfig::default()
    });
    let id = hub.submit("t", &[]).await;
    let mut lost = hub.connect("lost", &[]).await;
    let assign = lost.frame().await;
    lost.accept(&assign).await;
    let mut other = hub.connect("other", &[]).await;
    lost.disconnect();
    let reassigned = other.frame().await;
    assert_eq!(reassigned["task_id"], id.to_string());
    assert_eq!(generation(&reassigned), generation(&assign) + 2);

    // The lost agent, back late, is told the task is someone else's.
    let mut back = hub.connect("lost", &[]).await;
    back.send(ClientMessage::TaskRecovering {
        task_id: id.to_string(),
    });
    assert_eq!(back.frame().await["type"], "task_reassign");
}

#[tokio::test]
async fn a_deadline_dead_letters_a_queued_task_and_takes_an_assigned_one_back() {
    let hub = Fixture::with_defaults();
    // Far enough ahead that the agent accepts first even on a loaded machine.
    let soon = crate::wire::now_ms() + 1_000;
    let mut queued = new_task("queued", &["nobody-has-this"]);
    queued.complete_by = Some(soon);
    let queued = hub.submit_task(queued).await;
    let mut assigned = new_task("assigned", &[]);
    assigned.complete_by = Some(soon);
    let assigned = hub.submit_task(assigned).await;
    let mut agent = hub.connect("worker", &[]).await;
    let assign = agent.frame().await;
    assert_eq!(assign["task_id"], assigned.to_string());
    agent.accept(&assign).await;

    assert_eq!(agent.frame().await["type"], "task_cancel");
    for id in [queued, assigned] {
        let task = hub
            .stored_until(id, |t| t.status == TaskStatus::DeadLetter)
            .await;
        assert_eq!(task.last_error.as_deref(), Some("deadline_exceeded"));
    }
}

#[tokio::test]
async fn an_accepted_task_past_its_run_timeout_is_taken_back_and_counted() {
    let hub = Fixture::start(EngineConfig {
        run_timeout_ms: 40,
        ..EngineConfig::default()
    });
    let id = hub.submit("never ends", &[]).await;
    let mut agent = hub.connect("stuck", &[]).await;
    let assign = agent.frame().await;
    agent.accept(&assign).await;
    let cancel = agent.frame().await;
    assert_eq!(cancel["type"], "task_cancel");
    assert_eq!(generation(&cancel), generation(&assign));
    // Queued again with a new generation, and the agent (free again) gets it back.
    let again = agent.frame().await;
    assert_eq!(again["type"], "task_assign");
    assert_eq!(generation(&again), generation(&assign) + 2);
    let stored = hub.stored(id);
    assert_eq!(stored.reclaim_count, 1);
    let reclaimed = stored
        .history
        .iter()
        .find(|e| e.event == "reclaimed")
        .expect("a reclaim in the history");
    assert_eq!(reclaimed.details.reason, Some(Some("run_timeout".into())));
    assert_eq!(hub.engine.stats().reclaims(ReclaimReason::RunTimeout), 1);
}

#[tokio::test]
async fn a_task_that_names_no_run_timeout_0_runs_as_long_as_it_takes() {
    let hub = Fixture::start(EngineConfig {
        run_timeout_ms: 20,
        ..EngineConfig::default()
    });
    let mut unlimited = new_task("unlimited", &[]);
    unlimited.run_timeout_ms = Some(0);
    let id = hub.submit_task(unlimited).await;
    let mut limited = new_task("limited", &[]);
    limited.run_timeout_ms = Some(30);
    hub.submit_task(limited).await;
    let mut first = hub.connect("first", &[]).await;
    let mut second = hub.connect("second", &[]).await;
    let a = first.frame().await;
    let b = second.frame().await;
    first.accept(&a).await;
    second.accept(&b).await;
    // The limited one is taken back; then the unlimited one is still held.
    assert_eq!(second.frame().await["type"], "task_cancel");
    assert_eq!(hub.stored(id).status, TaskStatus::Assigned);
    assert_eq!(
        first.complete(&a, generation(&a)).await["status"],
        "complete"
    );
}

#[tokio::test]
async fn a_silent_agent_loses_its_task_at_the_heartbeat_timeout_and_a_chatty_one_keeps_it() {
    let hub = Fixture::with_defaults();
    let mut silent_task = new_task("silent", &[]);
    silent_task.heartbeat_timeout_ms = Some(300);
    let silent_id = hub.submit_task(silent_task).await;
    let mut chatty_task = new_task("chatty", &[]);
    chatty_task.heartbeat_timeout_ms = Some(300);
    let chatty_id = hub.submit_task(chatty_task).await;
    let mut silent = hub.connect("silent", &[]).await;
    let mut chatty = hub.connect("chatty", &[]).await;
    let s = silent.frame().await;
    let c = chatty.frame().await;
    assert_eq!(s["task_id"], silent_id.to_string());
    silent.accept(&s).await;
    chatty.accept(&c).await;
    // The chatty agent reports progress every 20 ms until the silent one has lost its task.
    let cancel = loop {
        chatty.send(ClientMessage::TaskProgress {
            task_id: chatty_id.to_string(),
        });
        match tokio::time::timeout(Duration::from_millis(20), silent.next()).await {
            Ok(outbound) => break outbound,
            Err(_) => continue,
        }
    };
    match cancel {
        Outbound::Frame(text) => assert!(text.contains("task_cancel"), "{text}"),
        other => panic!("expected task_cancel, got {other:?}"),
    }
    assert_eq!(
        hub.engine.stats().reclaims(ReclaimReason::HeartbeatTimeout),
        1
    );
    assert_eq!(hub.stored(chatty_id).status, TaskStatus::Assigned);
    let done = chatty.complete(&c, generation(&c)).await;
    assert_eq!(done["status"], "complete");
}

#[tokio::test]
async fn an_admin_requeues_an_assigned_task_without_counting_it_against_the_task() {
    let hub = Fixture::with_defaults();
    let id = hub.submit("t", &[]).await;
    let mut agent = hub.connect("worker", &[]).await;
    let assign = agent.frame().await;
    agent.accept(&assign).await;
    hub.engine
        .ask(|reply| Command::Requeue { task: id, reply })
        .await
        .unwrap();
    assert_eq!(agent.frame().await["type"], "task_cancel");
    let again = agent.frame().await;
    assert_eq!(again["type"], "task_assign");
    assert_eq!(generation(&again), generation(&assign) + 2);
    let stored = hub.stored(id);
    assert_eq!(stored.reclaim_count, 0);
    assert_eq!(stored.count_events("requeued"), 1);
    // Only an assigned task can be requeued.
    let missing = TaskId(1);
    assert_eq!(
        hub.engine
            .ask(|reply| Command::Requeue {
                task: missing,
                reply
            })
            .await,
        Err(EngineError::TaskNotFound(missing))
    );
    agent.complete(&again, generation(&again)).await;
    assert_eq!(
        hub.engine
            .ask(|reply| Command::Requeue { task: id, reply })
            .await,
        Err(EngineError::InvalidState("completed"))
    );
}
