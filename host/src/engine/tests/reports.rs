//! Frames and requests: assignment, reports and their fencing, connections, tokens.

use super::*;

#[tokio::test]
async fn a_queued_task_goes_to_an_idle_agent_and_completes() {
    let hub = Fixture::with_defaults();
    let id = hub.submit("build the docs", &[]).await;
    let mut agent = hub.connect("worker-1", &[]).await;
    let assign = agent.frame().await;
    assert_eq!(assign["type"], "task_assign");
    assert_eq!(assign["task_id"], id.to_string());
    assert_eq!(generation(&assign), 1);
    assert_eq!(agent.accept(&assign).await["status"], "accepted");
    assert_eq!(hub.stored(id).status, TaskStatus::Assigned);
    let ack = agent.complete(&assign, 1).await;
    assert_eq!(
        ack,
        json!({"type": "task_ack", "task_id": id.to_string(), "status": "complete"})
    );
    let stored = hub.stored(id);
    assert_eq!(stored.status, TaskStatus::Completed);
    assert_eq!(stored.result, Some(json!({"ok": true})));
}

#[tokio::test]
async fn a_stale_generation_or_another_agents_report_is_refused_and_changes_nothing() {
    let hub = Fixture::with_defaults();
    let id = hub.submit("t", &[]).await;
    let mut holder = hub.connect("holder", &[]).await;
    let assign = holder.frame().await;
    let mut other = hub.connect("other", &[]).await;

    let refused = holder.complete(&assign, 7).await;
    assert_eq!(refused["error"], "task_complete_failed: stale_generation");
    let refused = other.complete(&assign, 1).await;
    assert_eq!(refused["error"], "task_complete_failed: not_assignee");
    other.send(ClientMessage::TaskAccepted {
        task_id: "task-9999".into(),
        generation: None,
    });
    assert_eq!(
        other.frame().await["error"],
        "task_accept_failed: not_found"
    );

    let stored = hub.stored(id);
    assert_eq!(stored.status, TaskStatus::Assigned);
    assert_eq!(stored.assigned_to.as_deref(), Some("holder"));
    // The holder's own report still counts.
    assert_eq!(holder.complete(&assign, 1).await["status"], "complete");
    // And a second one is refused: the task is finished.
    let again = holder.complete(&assign, 1).await;
    assert_eq!(again["error"], "task_complete_failed: invalid_state");
}

#[tokio::test]
async fn failures_are_retried_until_max_retries_then_dead_lettered() {
    let hub = Fixture::with_defaults();
    let mut task = new_task("flaky", &[]);
    task.max_retries = 2;
    let id = hub.submit_task(task).await;
    let mut agent = hub.connect("worker", &[]).await;

    let first = agent.frame().await;
    assert_eq!(agent.fail(&first).await["status"], "retried");
    let second = agent.frame().await;
    assert_eq!(second["type"], "task_assign");
    assert_eq!(
        generation(&second),
        3,
        "one up for the return, one for the assignment"
    );
    assert_eq!(agent.fail(&second).await["status"], "dead_letter");
    let stored = hub.stored(id);
    assert_eq!(stored.status, TaskStatus::DeadLetter);
    assert_eq!(stored.last_error.as_deref(), Some("boom"));

    // Retried from the dead letter by hand, it is assigned again.
    let priority = hub
        .engine
        .ask(|reply| Command::RetryDeadLetter { task: id, reply })
        .await
        .unwrap();
    assert_eq!(priority, 2);
    assert_eq!(agent.frame().await["type"], "task_assign");
}

#[tokio::test]
async fn a_rejected_task_goes_to_another_agent_while_the_rejecter_cools_down() {
    let hub = Fixture::with_defaults();
    let id = hub.submit("t", &[]).await;
    let mut first = hub.connect("first", &[]).await;
    let assign = first.frame().await;
    let mut second = hub.connect("second", &[]).await;
    first.send(ClientMessage::TaskRejected {
        task_id: id.to_string(),
        reason: Some("busy".into()),
    });
    assert_eq!(first.frame().await["status"], "rejected");
    let reassigned = second.frame().await;
    assert_eq!(reassigned["task_id"], id.to_string());
    assert_eq!(generation(&reassigned), generation(&assign) + 2);
    // The rejecter is offered nothing during its cool-down, even with work queued.
    hub.submit("another", &[]).await;
    second.accept(&reassigned).await;
    assert!(
        first.frames.try_recv().is_err(),
        "nothing offered in the cool-down"
    );
}

#[tokio::test]
async fn capabilities_decide_who_gets_a_task() {
    let hub = Fixture::with_defaults();
    let id = hub.submit("needs rust", &["rust"]).await;
    let mut python = hub.connect("python", &["python"]).await;
    let mut rust = hub.connect("rust", &["rust", "python"]).await;
    let assign = rust.frame().await;
    assert_eq!(assign["task_id"], id.to_string());
    hub.submit("anyone", &[]).await;
    assert_eq!(python.frame().await["type"], "task_assign");
}

#[tokio::test]
async fn a_newer_connection_supersedes_the_older_one() {
    let hub = Fixture::with_defaults();
    let mut old = hub.connect("twin", &[]).await;
    let mut new = hub.connect("twin", &[]).await;
    assert_eq!(old.next().await, Outbound::Close(CloseReason::Superseded));
    // Frames from the superseded connection are ignored; the new one gets the work.
    old.send(ClientMessage::ListAgents);
    hub.submit("t", &[]).await;
    assert_eq!(new.frame().await["type"], "task_assign");
    assert!(old.frames.try_recv().is_err());
    assert_eq!(hub.engine.agents_connected(), 1);
}

#[tokio::test]
async fn cancelling_an_assigned_task_frees_its_agent() {
    let hub = Fixture::with_defaults();
    let id = hub.submit("long", &[]).await;
    let mut agent = hub.connect("worker", &[]).await;
    let assign = agent.frame().await;
    agent.accept(&assign).await;
    hub.engine
        .ask(|reply| Command::Cancel { task: id, reply })
        .await
        .unwrap();
    let cancel = agent.frame().await;
    assert_eq!(cancel["type"], "task_cancel");
    assert_eq!(hub.stored(id).status, TaskStatus::Cancelled);
    // Cancelling it again is refused with the state it is in.
    let again = hub
        .engine
        .ask(|reply| Command::Cancel { task: id, reply })
        .await;
    assert_eq!(again, Err(EngineError::InvalidState("cancelled")));
    hub.submit("next", &[]).await;
    assert_eq!(agent.frame().await["type"], "task_assign");
}

#[tokio::test]
async fn a_revoked_token_closes_the_connection_and_identifies_no_more() {
    let hub = Fixture::with_defaults();
    let token = hub.token("doomed").await;
    let mut agent = hub.identify("doomed", &token, &[]).await;
    assert!(agent.identified);
    agent.frame().await;
    let revoked = hub
        .engine
        .ask(|reply| Command::RevokeTokens {
            prefix: None,
            agent_id: "doomed".into(),
            reply,
        })
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    assert_eq!(
        agent.next().await,
        Outbound::Close(CloseReason::TokenRevoked)
    );
    let mut again = hub.identify("doomed", &token, &[]).await;
    assert!(!again.identified);
    assert_eq!(again.frame().await["error"], "invalid_token");
}

#[tokio::test]
async fn of_two_agents_waiting_for_work_the_first_to_connect_is_served_first() {
    let hub = Fixture::with_defaults();
    let tokens = [hub.token("early").await, hub.token("late").await];
    // Both sockets accepted in the same millisecond, "early" first (connection ids count up
    // in order of acceptance); "late" identifies first.
    let accepted_at = crate::wire::now_ms();
    let mut late = hub
        .identify_at("late", &tokens[1], 1_000_002, accepted_at)
        .await;
    let mut early = hub
        .identify_at("early", &tokens[0], 1_000_001, accepted_at)
        .await;
    assert_eq!(late.frame().await["type"], "identified");
    assert_eq!(early.frame().await["type"], "identified");
    hub.submit("the only task", &[]).await;
    assert_eq!(early.frame().await["type"], "task_assign");
    assert!(
        late.frames.try_recv().is_err(),
        "the later connection waits"
    );
    // The next task goes to the other one.
    hub.submit("the next task", &[]).await;
    assert_eq!(late.frame().await["type"], "task_assign");
}

#[tokio::test]
async fn a_replaced_connection_is_counted_on_the_agent_and_in_the_stats() {
    let hub = Fixture::with_defaults();
    let _first = hub.connect("twin", &[]).await;
    let _second = hub.connect("twin", &[]).await;
    let _third = hub.connect("twin", &[]).await;
    assert_eq!(hub.engine.stats().replacements(), 2);
    let agents = hub
        .engine
        .ask(|reply| Command::ListAgents { reply })
        .await
        .unwrap();
    let twin = agents.iter().find(|a| a.agent_id == "twin").unwrap();
    assert_eq!(twin.replacements, Some(2));
    assert!(twin.last_replaced_at.is_some());
}
