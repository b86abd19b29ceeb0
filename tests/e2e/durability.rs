//! Crash safety: SIGKILL the hub and start it again on the same data folder.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{completed_events, str_field, u64_field, Crew, Hub, HubOpts, WorkerOpts};

/// Killed with SIGKILL while one task is assigned and accepted, one assigned but not accepted,
/// three queued and one completed, the restarted hub has lost nothing: the queued are still
/// queued, the assignments still stand, the completed result is kept, agent tokens still work.
/// The holder of the accepted task recovers it (same generation) and completes it, the holder
/// of the unaccepted one gets it pushed again (same generation), and the queued ones then
/// complete too, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_loses_nothing() {
    // Generous grace: it starts when the hub starts, and we reconnect right after.
    let opts = HubOpts::default().reconnect_grace_ms(30_000);
    let hub = Hub::start(opts).await;
    let api = hub.api();

    let mut a1 = hub.agent("a1").await;
    let done = api
        .submit(json!({"description": "completed before the crash"}))
        .await;
    let d = a1.expect_assign().await;
    assert_eq!(d.task_id, done);
    a1.accept(&d).await;
    a1.complete(&done, d.generation).await;

    let accepted = api
        .submit(json!({"description": "accepted before the crash"}))
        .await;
    let a = a1.expect_assign().await;
    assert_eq!(a.task_id, accepted);
    a1.accept(&a).await;

    let mut a2 = hub.agent("a2").await;
    let unaccepted = api
        .submit(json!({"description": "assigned, not accepted"}))
        .await;
    let u = a2.expect_assign().await;
    assert_eq!(u.task_id, unaccepted);

    let queued = api
        .submit_batch(
            (0..3)
                .map(|i| json!({"description": format!("queued {i}"), "metadata": {"i": i}}))
                .collect(),
        )
        .await;
    a1.expect_quiet().await;
    a2.expect_quiet().await;
    assert_eq!(queued_ids(&hub).await, queued.iter().cloned().collect());

    let stopped = hub.kill9();
    a1.cut();
    a2.cut();
    let hub = Hub::restart_on(stopped).await;
    let api = hub.api();

    assert_eq!(
        queued_ids(&hub).await,
        queued.iter().cloned().collect(),
        "the queued tasks are still queued"
    );
    for (i, id) in queued.iter().enumerate() {
        let task = api.get_task(id).await;
        assert_eq!(task["metadata"], json!({"i": i}), "{task}");
    }
    for (id, agent, generation) in [
        (&accepted, "a1", a.generation),
        (&unaccepted, "a2", u.generation),
    ] {
        let task = api.get_task(id).await;
        assert_eq!(
            task["status"], "assigned",
            "still assigned after the crash: {task}"
        );
        assert_eq!(task["assigned_to"], agent, "{task}");
        assert_eq!(u64_field(&task, "generation"), generation, "{task}");
    }
    let kept = api.get_task(&done).await;
    assert_eq!(kept["status"], "completed", "{kept}");
    assert_eq!(kept["result"], json!({"by": "a1"}), "{kept}");

    // Same tokens, new hub process.
    a1.reconnect_to(&hub.ws_url()).await;
    a1.recover(&accepted, a.generation).await;
    a1.complete(&accepted, a.generation).await;

    a2.reconnect_to(&hub.ws_url()).await;
    let again = a2.expect_assign().await;
    assert_eq!(
        (&again.task_id, again.generation),
        (&unaccepted, u.generation),
        "the unaccepted task is pushed again with the same generation"
    );
    a2.accept(&again).await;
    a2.complete(&unaccepted, again.generation).await;

    let mut crew = Crew::new();
    crew.spawn(a1, WorkerOpts::default());
    crew.spawn(a2, WorkerOpts::default());
    crew.wait_completed(queued.len(), Duration::from_secs(60))
        .await;
    let out = crew.stop().await;
    let mut finished: Vec<&String> = out.iter().flat_map(|(_, r)| &r.completed).collect();
    finished.sort();
    let mut expected: Vec<&String> = queued.iter().collect();
    expected.sort();
    assert_eq!(finished, expected, "each queued task completed once");

    for id in queued.iter().chain([&accepted, &unaccepted, &done]) {
        let task = api.get_task(id).await;
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(completed_events(&task), 1, "exactly one completion: {task}");
    }
    for (id, generation) in [(&accepted, a.generation), (&unaccepted, u.generation)] {
        let task = api.get_task(id).await;
        assert_eq!(
            u64_field(&task, "generation"),
            generation,
            "ran once: {task}"
        );
    }
}

/// The ids listed by `GET /api/tasks?status=queued` (one page is plenty here).
async fn queued_ids(hub: &Hub) -> HashSet<String> {
    let page = hub.api().list_tasks("status=queued&limit=100").await;
    let tasks = page["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("`tasks` must be an array: {page}"));
    assert_eq!(u64_field(&page, "count") as usize, tasks.len(), "{page}");
    tasks
        .iter()
        .map(|t: &Value| {
            assert_eq!(t["status"], "queued", "status filter: {t}");
            str_field(t, "id").to_string()
        })
        .collect()
}
