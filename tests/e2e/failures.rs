//! Things going wrong: dropped connections, failures, rejections, timeouts, fencing.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::agent::{assert_one_task_at_a_time, Dir};
use crate::harness::{
    completed_events, poll_until, u64_field, Hub, HubOpts, RECV_TIMEOUT, STATE_TIMEOUT,
};

const UNKNOWN_TASK: &str = "task-0000000000000000";

/// Checks the task completed exactly once, with the result sent by `by`.
async fn assert_completed_once(hub: &Hub, id: &str, by: &str) -> Value {
    let task = hub.api().get_task(id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(completed_events(&task), 1, "exactly one completion: {task}");
    assert_eq!(
        task["result"],
        json!({"by": by}),
        "completed by {by}: {task}"
    );
    task
}

fn complete_msg(task_id: &str, generation: u64) -> Value {
    json!({"type": "task_complete", "task_id": task_id, "generation": generation, "result": {}})
}

/// Mid-task (after task_accepted) the connection is cut without a close frame and the agent
/// does not come back: after the reconnect grace, and not before, the task goes to the other
/// agent and completes exactly once. When the cut agent returns, its late task_complete with
/// the old generation is refused: `not_assignee` while the other agent holds the task,
/// `invalid_state` once it is completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_task_without_return_goes_to_another_agent_after_grace() {
    let grace = Duration::from_millis(1000);
    let hub = Hub::start(HubOpts::default().reconnect_grace_ms(1000)).await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let id = api.submit(json!({"description": "cut mid task"})).await;
    let first = a1.expect_assign().await;
    assert_eq!(first.task_id, id);
    a1.accept(&first).await;
    let mut a2 = hub.agent("a2").await;

    let cut_at = Instant::now();
    a1.cut();
    let second = a2.expect_assign().await;
    assert_eq!(second.task_id, id);
    let waited = second.at.duration_since(cut_at);
    assert!(
        waited >= grace - Duration::from_millis(100),
        "reassigned {waited:?} after the cut, before the {grace:?} reconnect grace"
    );
    assert_eq!(
        second.generation,
        first.generation + 2,
        "+1 for the return to the queue, +1 for the new assignment"
    );
    a2.accept(&second).await;

    // The cut agent comes back and reports its stale result.
    a1.reconnect().await;
    a1.send(complete_msg(&id, first.generation)).await;
    a1.expect_error("task_complete_failed: not_assignee").await;

    a2.complete(&id, second.generation).await;

    a1.send(complete_msg(&id, first.generation)).await;
    a1.expect_error("task_complete_failed: invalid_state").await;
    a1.ping().await;

    let task = assert_completed_once(&hub, &id, "a2").await;
    assert_eq!(u64_field(&task, "generation"), second.generation, "{task}");
    assert_eq!(u64_field(&task, "reclaim_count"), 1, "one reclaim: {task}");
    assert_eq!(
        u64_field(&task, "retry_count"),
        0,
        "a reclaim is not a failure: {task}"
    );
}

/// The connection drops mid-task and the agent reconnects within the grace: task_recovering
/// gets task_continue with the same generation, the completion is accepted, the other agent
/// never sees the task, and it ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_within_grace_continues_with_same_generation() {
    let hub = Hub::start(HubOpts::default().reconnect_grace_ms(20_000)).await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let id = api.submit(json!({"description": "survives a blip"})).await;
    let a = a1.expect_assign().await;
    assert_eq!(a.task_id, id);
    a1.accept(&a).await;
    let mut a2 = hub.agent("a2").await;

    a1.cut();
    a1.reconnect().await;
    a1.recover(&id, a.generation).await;
    // task_progress has no reply (the ping's pong must come next).
    a1.send(json!({"type": "task_progress", "task_id": id, "generation": a.generation, "pct": 50}))
        .await;
    a1.ping().await;
    a1.complete(&id, a.generation).await;
    a1.expect_quiet().await;
    a2.expect_quiet().await;

    let task = assert_completed_once(&hub, &id, "a1").await;
    assert_eq!(
        u64_field(&task, "generation"),
        a.generation,
        "never reassigned: {task}"
    );
    assert_eq!(u64_field(&task, "reclaim_count"), 0, "{task}");
}

/// Five tasks, one agent holding one at a time, a blip on every task: after task_accepted the
/// agent recovers with task_recovering; before it, re-identifying pushes the same assignment
/// again. All five complete exactly once, in submission order, each with its first generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_tasks_through_blips_complete_exactly_once() {
    let hub = Hub::start(HubOpts::default().reconnect_grace_ms(20_000)).await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let ids = api
        .submit_batch(
            (0..5)
                .map(|i| json!({"description": format!("blip {i}")}))
                .collect(),
        )
        .await;

    let mut generations = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let a = a1.expect_assign().await;
        assert_eq!(&a.task_id, id, "within a priority, submission order");
        if k % 2 == 1 {
            // Dropped before accepting: the unaccepted task is pushed again, same generation.
            a1.cut();
            a1.reconnect().await;
            let again = a1.expect_assign().await;
            assert_eq!(
                (&again.task_id, again.generation),
                (&a.task_id, a.generation),
                "re-identify pushes the unaccepted task again with the same generation"
            );
            a1.accept(&again).await;
        } else {
            a1.accept(&a).await;
            a1.cut();
            a1.reconnect().await;
            a1.recover(id, a.generation).await;
        }
        a1.complete(id, a.generation).await;
        generations.push(a.generation);
    }
    a1.expect_quiet().await;
    assert_one_task_at_a_time(&a1);

    for (id, generation) in ids.iter().zip(generations) {
        let task = assert_completed_once(&hub, id, "a1").await;
        assert_eq!(
            u64_field(&task, "generation"),
            generation,
            "ran once: {task}"
        );
        assert_eq!(u64_field(&task, "reclaim_count"), 0, "{task}");
    }
}

/// task_failed → "retried" and assigned again (generation +2: back to the queue, then
/// assigned); with max_retries 2 the second failure → "dead_letter"; the task shows in the
/// dead letter and the stats; an agent token may not retry it; the admin retry requeues it and
/// it then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_then_dead_letter_then_admin_retry() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let id = api
        .submit(json!({"description": "fails twice", "max_retries": 2}))
        .await;

    let a = a1.expect_assign().await;
    assert_eq!(a.task_id, id);
    a1.accept(&a).await;
    a1.send(json!({"type": "task_failed", "task_id": id, "generation": a.generation, "error": "boom-1"}))
        .await;
    a1.expect_ack(&id, "retried").await;

    let b = a1.expect_assign().await;
    assert_eq!(b.task_id, id);
    assert_eq!(
        b.generation,
        a.generation + 2,
        "+1 for the return to the queue, +1 for the new assignment"
    );
    a1.accept(&b).await;
    // `reason` is accepted in place of `error`.
    a1.send(json!({"type": "task_failed", "task_id": id, "generation": b.generation, "reason": "boom-2"}))
        .await;
    a1.expect_ack(&id, "dead_letter").await;
    a1.expect_quiet().await;

    let task = api.get_task(&id).await;
    assert_eq!(task["status"], "dead_letter", "{task}");
    assert_eq!(u64_field(&task, "retry_count"), 2, "{task}");
    assert_eq!(task["last_error"], "boom-2", "{task}");
    let dead = api
        .get("/api/tasks/dead-letter")
        .await
        .expect(200, "GET /api/tasks/dead-letter");
    let listed = dead["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("dead letter without `tasks`: {dead}"));
    assert!(
        listed.iter().any(|t| t["id"] == id.as_str()),
        "{id} not in the dead letter: {dead}"
    );
    assert_eq!(u64_field(&dead, "count") as usize, listed.len(), "{dead}");
    let stats = api
        .get("/api/tasks/stats")
        .await
        .expect(200, "GET /api/tasks/stats");
    assert_eq!(stats["dead_letter"], 1, "{stats}");

    let agent_token = api.create_token("a2").await;
    let path = format!("/api/tasks/{id}/retry");
    let forbidden = api
        .request(Method::POST, &path, Some(&agent_token), None)
        .await;
    assert_eq!(
        forbidden.status, 403,
        "retry is admin only: {}",
        forbidden.text
    );

    let requeued = api.post(&path, &json!({})).await.expect(200, "admin retry");
    assert_eq!(
        requeued,
        json!({"status": "requeued", "task_id": id, "priority": task["priority"]}),
    );
    let c = a1.expect_assign().await;
    assert_eq!(c.task_id, id);
    assert!(
        c.generation > b.generation,
        "the dead-letter retry raises the generation"
    );
    a1.accept(&c).await;
    a1.complete(&id, c.generation).await;
    assert_completed_once(&hub, &id, "a1").await;
}

/// An agent that never sends task_accepted loses the task after the acceptance timeout: it gets
/// task_cancel and the task goes to another agent. The unresponsive agent gets no new task
/// until it sends a frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_timeout_takes_the_task_back() {
    let timeout = Duration::from_millis(1000);
    let hub = Hub::start(HubOpts::default().acceptance_timeout_ms(1000)).await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let id = api.submit(json!({"description": "never accepted"})).await;
    let a = a1.expect_assign().await;
    assert_eq!(a.task_id, id);
    let mut a2 = hub.agent("a2").await;

    // a1 stays silent.
    let cancel = a1.expect_type("task_cancel").await;
    assert_eq!(cancel["task_id"], id.as_str(), "{cancel}");
    assert!(
        cancel["generation"].is_u64(),
        "task_cancel carries a generation: {cancel}"
    );
    let b = a2.expect_assign().await;
    assert_eq!(b.task_id, id);
    let waited = b.at.duration_since(a.at);
    assert!(
        waited >= timeout - Duration::from_millis(100),
        "taken back {waited:?} after assignment, before the {timeout:?} acceptance timeout"
    );
    assert_eq!(
        b.generation,
        a.generation + 2,
        "reclaimed (+1) then assigned (+1)"
    );
    a2.accept(&b).await;

    // a2 is busy and a1 is unresponsive: a new task waits until a1 shows a sign of life.
    let next = api
        .submit(json!({"description": "after the timeout"}))
        .await;
    let queued = api.get_task(&next).await;
    assert_eq!(
        queued["status"], "queued",
        "no task for an unresponsive agent: {queued}"
    );
    a1.ping().await;
    let c = a1.expect_assign().await;
    assert_eq!(c.task_id, next);
    a1.accept(&c).await;
    a1.complete(&next, c.generation).await;

    a2.complete(&id, b.generation).await;
    let task = assert_completed_once(&hub, &id, "a2").await;
    assert_eq!(u64_field(&task, "reclaim_count"), 1, "{task}");
    assert_eq!(u64_field(&task, "retry_count"), 0, "{task}");
}

/// task_rejected → ack "rejected"; the task is back in the queue at once, at its original place,
/// with generation +1 and no failure or reclaim counted; the rejecting agent gets nothing
/// during its cooldown, so the other agent runs both tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_task_is_requeued_at_once_and_rejecter_cools_down() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut a2 = hub.agent("a2").await;
    let busy = api.submit(json!({"description": "keeps a2 busy"})).await;
    let x = a2.expect_assign().await;
    assert_eq!(x.task_id, busy);
    a2.accept(&x).await;

    let mut a1 = hub.agent("a1").await;
    let first = api.submit(json!({"description": "rejected by a1"})).await;
    let a = a1.expect_assign().await;
    assert_eq!(a.task_id, first);
    let second = api.submit(json!({"description": "submitted after"})).await;

    a1.send(json!({"type": "task_rejected", "task_id": first, "reason": "not now"}))
        .await;
    a1.expect_ack(&first, "rejected").await;
    let task = api.get_task(&first).await;
    assert_eq!(task["status"], "queued", "requeued at once: {task}");
    assert_eq!(u64_field(&task, "generation"), a.generation + 1, "{task}");
    assert_eq!(u64_field(&task, "retry_count"), 0, "not a failure: {task}");
    assert_eq!(
        u64_field(&task, "reclaim_count"),
        0,
        "not a reclaim: {task}"
    );
    a1.expect_quiet().await;

    a2.complete(&busy, x.generation).await;
    let b = a2.expect_assign().await;
    assert_eq!(
        b.task_id, first,
        "the rejected task kept its place ahead of {second}"
    );
    assert_eq!(b.generation, a.generation + 2);
    a2.accept(&b).await;
    a2.complete(&first, b.generation).await;
    let c = a2.expect_assign().await;
    assert_eq!(c.task_id, second);
    a2.accept(&c).await;
    a2.complete(&second, c.generation).await;

    a1.expect_quiet().await;
    let rejected_by_a1 = a1
        .log
        .iter()
        .filter(|e| e.msg["type"] == "task_assign")
        .count();
    assert_eq!(
        rejected_by_a1, 1,
        "a1 was offered a task during its cooldown"
    );
    assert_completed_once(&hub, &first, "a2").await;
    assert_completed_once(&hub, &second, "a2").await;
}

/// Fencing of task_complete and task_failed: wrong or missing generation → stale_generation,
/// another agent → not_assignee (before stale_generation), unknown task → not_found, a queued
/// or completed task → invalid_state. Refusals leave the task untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_refuses_stale_foreign_unknown_and_unassigned() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let held = api.submit(json!({"description": "held by a1"})).await;
    let a = a1.expect_assign().await;
    assert_eq!(a.task_id, held);
    assert_eq!(
        a.generation, 1,
        "generation starts at 0 and the first assignment makes it 1"
    );
    a1.accept(&a).await;
    let queued = api
        .submit(json!({"description": "waits in the queue"}))
        .await;
    a1.expect_quiet().await;
    let q = api.get_task(&queued).await;
    assert_eq!(q["status"], "queued", "{q}");

    a1.send(complete_msg(&held, a.generation + 7)).await;
    a1.expect_error("task_complete_failed: stale_generation")
        .await;
    a1.send(json!({"type": "task_complete", "task_id": held, "result": {}}))
        .await;
    a1.expect_error("task_complete_failed: stale_generation")
        .await;
    a1.send(json!({"type": "task_failed", "task_id": held, "generation": a.generation + 1, "error": "x"}))
        .await;
    a1.expect_error("task_fail_failed: stale_generation").await;

    a1.send(complete_msg(UNKNOWN_TASK, 1)).await;
    a1.expect_error("task_complete_failed: not_found").await;
    a1.send(json!({"type": "task_failed", "task_id": UNKNOWN_TASK, "generation": 1, "error": "x"}))
        .await;
    a1.expect_error("task_fail_failed: not_found").await;

    for generation in [0, 1] {
        a1.send(complete_msg(&queued, generation)).await;
        a1.expect_error("task_complete_failed: invalid_state").await;
    }
    a1.send(json!({"type": "task_failed", "task_id": queued, "generation": 0, "error": "x"}))
        .await;
    a1.expect_error("task_fail_failed: invalid_state").await;

    let mut a2 = hub.agent("a2").await;
    let b = a2.expect_assign().await;
    assert_eq!(b.task_id, queued);
    a2.accept(&b).await;
    for generation in [a.generation, 999] {
        a2.send(complete_msg(&held, generation)).await;
        a2.expect_error("task_complete_failed: not_assignee").await;
    }
    a2.send(
        json!({"type": "task_failed", "task_id": held, "generation": a.generation, "error": "x"}),
    )
    .await;
    a2.expect_error("task_fail_failed: not_assignee").await;

    let task = api.get_task(&held).await;
    assert_eq!(
        task["status"], "assigned",
        "refusals change nothing: {task}"
    );
    assert_eq!(task["assigned_to"], "a1", "{task}");
    assert_eq!(u64_field(&task, "generation"), a.generation, "{task}");
    assert_eq!(u64_field(&task, "retry_count"), 0, "{task}");

    a1.complete(&held, a.generation).await;
    a1.send(complete_msg(&held, a.generation)).await;
    a1.expect_error("task_complete_failed: invalid_state").await;
    a2.complete(&queued, b.generation).await;
    a1.ping().await;
    a2.ping().await;
    assert_completed_once(&hub, &held, "a1").await;
    assert_completed_once(&hub, &queued, "a2").await;
}

/// A task that keeps losing its agent (here: never accepted) is dead-lettered as poison after
/// --max-reclaims returns instead of cycling forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_losing_its_agent_too_often_is_dead_lettered() {
    let max_reclaims = 2;
    let hub = Hub::start(
        HubOpts::default()
            .acceptance_timeout_ms(300)
            .max_reclaims(max_reclaims),
    )
    .await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let id = api.submit(json!({"description": "poison"})).await;

    let mut rounds = 0;
    let task = loop {
        rounds += 1;
        assert!(
            rounds <= max_reclaims + 1,
            "still not dead-lettered after {max_reclaims} reclaims"
        );
        let a = a1.expect_assign().await;
        assert_eq!(a.task_id, id);
        let cancel = a1.expect_type("task_cancel").await;
        assert_eq!(cancel["task_id"], id.as_str(), "{cancel}");
        // The take-back is committed before task_cancel is pushed.
        let task = api.get_task(&id).await;
        match task["status"].as_str() {
            Some("dead_letter") => break task,
            Some("queued") => a1.ping().await, // a sign of life: a1 may be offered tasks again
            _ => panic!("after a reclaim the task is queued or dead-lettered: {task}"),
        }
    };
    let reclaims = u64_field(&task, "reclaim_count");
    assert!(
        (max_reclaims..=max_reclaims + 1).contains(&reclaims),
        "dead-lettered after {reclaims} reclaims (limit {max_reclaims}): {task}"
    );
    assert_eq!(u64_field(&task, "retry_count"), 0, "{task}");
    let dead = api
        .get("/api/tasks/dead-letter")
        .await
        .expect(200, "dead letter");
    assert!(
        dead["tasks"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["id"] == id.as_str())),
        "{dead}"
    );
}

/// POST /api/tasks/:id/cancel (admin only) cancels an assigned task; the assignee gets
/// task_cancel, a late completion is refused, and the agent is free for the next task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cancel_tells_the_assignee_and_frees_it() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut a1 = hub.agent("a1").await;
    let id = api.submit(json!({"description": "to be cancelled"})).await;
    let a = a1.expect_assign().await;
    a1.accept(&a).await;

    let path = format!("/api/tasks/{id}/cancel");
    let forbidden = api
        .request(Method::POST, &path, Some(&a1.token), None)
        .await;
    assert_eq!(
        forbidden.status, 403,
        "cancel is admin only: {}",
        forbidden.text
    );
    let answer = api
        .post(&path, &json!({}))
        .await
        .expect(200, "admin cancel");
    assert_eq!(answer, json!({"status": "cancelled", "task_id": id}));

    let cancel = a1.expect_type("task_cancel").await;
    assert_eq!(cancel["task_id"], id.as_str(), "{cancel}");
    assert!(cancel["generation"].is_u64(), "{cancel}");
    let task = api.get_task(&id).await;
    assert_eq!(task["status"], "cancelled", "{task}");
    a1.send(complete_msg(&id, a.generation)).await;
    a1.expect_error("task_complete_failed: invalid_state").await;

    let next = api.submit(json!({"description": "after the cancel"})).await;
    let b = a1.expect_assign().await;
    assert_eq!(
        b.task_id, next,
        "the agent's state machine was freed by the cancel"
    );
    a1.accept(&b).await;
    a1.complete(&next, b.generation).await;
}

/// A connection that sends nothing for --idle-timeout-ms is closed; one that pings is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_pinging_one_is_kept() {
    let idle = Duration::from_millis(1500);
    let hub = Hub::start(HubOpts::default().idle_timeout_ms(1500)).await;
    let api = hub.api().clone();
    let mut silent = hub.agent("silent").await;
    let mut chatty = hub.agent("chatty").await;
    let last_sent = silent
        .log
        .iter()
        .rev()
        .find(|e| e.dir == Dir::Out)
        .expect("identify logged")
        .at;

    let pinger = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(300));
        // 12 pings, 300 ms apart: well over twice the idle timeout.
        for _ in 0..12 {
            every.tick().await;
            chatty.ping().await;
        }
        chatty
    });
    silent.expect_close(RECV_TIMEOUT).await;
    let silent_for = last_sent.elapsed();
    assert!(
        silent_for >= idle - Duration::from_millis(100),
        "closed after {silent_for:?} of silence, idle timeout is {idle:?}"
    );
    let mut chatty = tokio::time::timeout(Duration::from_secs(30), pinger)
        .await
        .expect("pinger finishes")
        .expect("pinger task");
    chatty.ping().await;
    poll_until("one connected agent", STATE_TIMEOUT, || async {
        let health = api.health().await;
        if health["agents_connected"] == 1 {
            Ok(())
        } else {
            Err(health.to_string())
        }
    })
    .await;
}
