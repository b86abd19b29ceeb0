//! A fleet moving over from AgentCom: its old sidecar loses results in three windows, and a
//! task it loses must end completed (by a retry after the run timeout), never stuck assigned.
//! Also AgentCom's tie: of two agents waiting for work, the first to connect is served first.
//!
//! The old sidecar is played by a test agent that, after the loss, stays connected and says
//! nothing more of the task, exactly as the old sidecar does: it neither reports the result
//! nor sends `task_recovering`. Without a run timeout the task (and the agent) would be held
//! forever; each test ends with the task completed at a later generation.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{history, poll_until, Agent, Assign, Hub, HubOpts, STATE_TIMEOUT};

/// The run timeout these hubs use: short, so the tests are quick; the loss is noticed within
/// it and the task handed out again.
const RUN_TIMEOUT: Duration = Duration::from_millis(1500);

fn old_fleet_hub() -> HubOpts {
    HubOpts::default()
        .run_timeout_ms(RUN_TIMEOUT.as_millis() as u64)
        .reconnect_grace_ms(1000)
}

/// After the loss: the hub takes the task back (`task_cancel` at the lost generation) no
/// sooner than the run timeout after acceptance, gives it out again, and the agent completes
/// it. Returns the final task.
async fn ends_completed_by_a_retry(
    hub: &Hub,
    agent: &mut Agent,
    lost: &Assign,
    accepted_at: Instant,
) -> Value {
    let cancel = agent.expect_type("task_cancel").await;
    assert_eq!(cancel["task_id"], lost.task_id.as_str());
    assert_eq!(cancel["generation"], lost.generation);
    let waited = accepted_at.elapsed();
    assert!(
        waited >= RUN_TIMEOUT - Duration::from_millis(100),
        "taken back after {waited:?}, before the {RUN_TIMEOUT:?} run timeout"
    );
    let retry = agent.expect_assign().await;
    assert_eq!(retry.task_id, lost.task_id);
    assert!(retry.generation > lost.generation, "a new generation");
    agent.accept(&retry).await;
    agent.complete(&retry.task_id, retry.generation).await;
    let task = hub.api().get_task(&lost.task_id).await;
    assert_eq!(task["status"], "completed", "{task}");
    let reclaims: Vec<&Value> = history(&task)
        .iter()
        .filter(|e| e["event"] == "reclaimed")
        .collect();
    assert!(
        reclaims
            .iter()
            .any(|e| e["details"]["reason"] == "run_timeout"),
        "the history names the run timeout: {task}"
    );
    task
}

/// Window 1: the hub went down while the task ran; the old sidecar could not send the result
/// and dropped it. The hub comes back, the sidecar reconnects and identifies, and never
/// mentions the task again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_dropped_while_the_hub_was_down_ends_completed() {
    let hub = Hub::start(old_fleet_hub()).await;
    let mut agent = hub.agent("old-sidecar").await;
    let id = hub.api().submit(json!({"description": "window 1"})).await;
    let first = agent.expect_assign().await;
    assert_eq!(first.task_id, id);
    agent.accept(&first).await;
    let accepted_at = Instant::now();

    let stopped = hub.kill9();
    agent.cut();
    let hub = Hub::restart_on_same_port(stopped).await;
    agent.reconnect().await;
    // The result is gone: nothing is said of the task.
    ends_completed_by_a_retry(&hub, &mut agent, &first, accepted_at).await;
}

/// Window 2: the old sidecar restarted (a new connection, the old one dropped without a
/// close) while its worker ran; the worker wrote its result file, but the restarted sidecar
/// never reads a result file that already exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_file_ignored_after_a_sidecar_restart_ends_completed() {
    let hub = Hub::start(old_fleet_hub()).await;
    let mut agent = hub.agent("old-sidecar").await;
    hub.api().submit(json!({"description": "window 2"})).await;
    let first = agent.expect_assign().await;
    agent.accept(&first).await;
    let accepted_at = Instant::now();

    agent.cut();
    agent.reconnect().await;
    ends_completed_by_a_retry(&hub, &mut agent, &first, accepted_at).await;
}

/// Window 3: the old sidecar was down past the reconnect grace, so the hub took the task back
/// and gave it out again, to the same agent when it returned. The second run's result
/// overwrote the first's file, and the sidecar lost track of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runs_result_overwriting_the_first_ends_completed() {
    let hub = Hub::start(old_fleet_hub()).await;
    let mut agent = hub.agent("old-sidecar").await;
    let id = hub.api().submit(json!({"description": "window 3"})).await;
    let first = agent.expect_assign().await;
    agent.accept(&first).await;

    agent.cut();
    // Past the grace, the task is queued again (a take-back for the disconnect).
    poll_until("the task is queued again", STATE_TIMEOUT, || async {
        let task = hub.api().get_task(&id).await;
        if task["status"] == "queued" {
            Ok(())
        } else {
            Err(format!("status {}", task["status"]))
        }
    })
    .await;
    agent.reconnect().await;
    let second = agent.expect_assign().await;
    assert_eq!(second.task_id, id);
    agent.accept(&second).await;
    let accepted_at = Instant::now();
    // The second run's result overwrites the first's, and neither is reported.
    let task = ends_completed_by_a_retry(&hub, &mut agent, &second, accepted_at).await;
    assert_eq!(
        task["reclaim_count"], 2,
        "one for the disconnect, one for the run: {task}"
    );
}

/// AgentCom's TEST-02: two agents are connected and waiting when the only task arrives; the
/// first to connect gets it, whichever identified first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_waiting_agents_the_first_to_connect_gets_the_task() {
    let hub = Hub::start(HubOpts::default()).await;
    let first_token = hub.api().create_token("first").await;
    let second_token = hub.api().create_token("second").await;
    let url = hub.ws_url();
    for round in 0..3 {
        let mut first = Agent::open(&url, "first", &first_token).await;
        let mut second = Agent::open(&url, "second", &second_token).await;
        // The second to connect identifies first.
        second.identify().await;
        first.identify().await;
        let id = hub
            .api()
            .submit(json!({"description": format!("round {round}")}))
            .await;
        let assign = first.expect_assign().await;
        assert_eq!(
            assign.task_id, id,
            "round {round}: the first to connect is served"
        );
        second.expect_quiet().await;
        first.accept(&assign).await;
        first.complete(&assign.task_id, assign.generation).await;
        first.close().await;
        second.close().await;
    }
}

/// An operator unsticks a task by hand: `POST /api/tasks/:id/requeue` (admin only) takes it from
/// its agent (`task_cancel`) and queues it again, not counted against it. A duplicate agent id
/// shows in `/metrics` and in `GET /api/agents`, and the run-timeout take-back in the reclaims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_requeues_by_hand_and_sees_reclaims_and_duplicate_ids() {
    let hub = Hub::start(old_fleet_hub()).await;
    let api = hub.api();
    let agent_token = api.create_token("worker").await;
    let mut agent = Agent::connect(&hub.ws_url(), "worker", &agent_token).await;
    let id = api.submit(json!({"description": "requeued by hand"})).await;
    let first = agent.expect_assign().await;
    agent.accept(&first).await;

    let path = format!("/api/tasks/{id}/requeue");
    let refused = api
        .request(reqwest::Method::POST, &path, Some(&agent_token), None)
        .await;
    assert_eq!(
        refused.status, 403,
        "an agent token may not requeue: {}",
        refused.text
    );
    let body = api.post(&path, &json!({})).await.expect(200, "requeue");
    assert_eq!(body["status"], "queued");
    let cancel = agent.expect_type("task_cancel").await;
    assert_eq!(cancel["generation"], first.generation);
    let again = agent.expect_assign().await;
    assert_eq!(again.generation, first.generation + 2);
    let task = api.get_task(&id).await;
    assert_eq!(task["reclaim_count"], 0, "{task}");
    // Requeueing a task that is not assigned is refused with its state.
    agent.accept(&again).await;
    agent.complete(&again.task_id, again.generation).await;
    assert_eq!(api.post(&path, &json!({})).await.status, 409);

    // A second process with the same id replaces the first: counted and shown.
    let mut twin = Agent::connect(&hub.ws_url(), "worker", &agent_token).await;
    let (code, _, _) = agent.expect_close(Duration::from_secs(5)).await;
    assert_eq!(code, Some(4000));
    let agents = api.get("/api/agents").await.expect(200, "agents");
    let worker = agents
        .as_array()
        .or_else(|| agents["agents"].as_array())
        .expect("a list of agents")
        .iter()
        .find(|a| a["agent_id"] == "worker")
        .cloned()
        .expect("worker listed");
    assert_eq!(worker["replacements"], 1, "{worker}");

    // The run timeout's take-back is counted by reason.
    api.submit(json!({"description": "lost"})).await;
    let lost = twin.expect_assign().await;
    twin.accept(&lost).await;
    twin.expect_type("task_cancel").await;
    let metrics = api
        .request(reqwest::Method::GET, "/metrics", None, None)
        .await
        .text;
    assert!(
        metrics.contains("switchyard_agent_replacements_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_reclaims_total{reason=\"run_timeout\"} 1"),
        "{metrics}"
    );
}

/// Task ids never repeat across data folders: a hub started on a fresh folder (a wiped one, a
/// new machine) numbers its tasks after every id an earlier folder gave out, so a sidecar's
/// files from the old folder never meet a new task with the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_ids_do_not_repeat_across_a_wiped_data_folder() {
    let old = Hub::start(HubOpts::default()).await;
    let old_ids = old
        .api()
        .submit_batch(vec![
            json!({"description": "a"}),
            json!({"description": "b"}),
        ])
        .await;
    drop(old);
    let new = Hub::start(HubOpts::default()).await;
    let new_id = new.api().submit(json!({"description": "c"})).await;
    for old_id in &old_ids {
        assert_ne!(&new_id, old_id);
        // Same width, so the text order is the number order: the new folder counts on.
        assert!(new_id > *old_id, "{new_id} after {old_id}");
    }
}
