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

/// A store that cannot commit (its map is full) refuses what it cannot keep and keeps what it
/// acknowledged. Submissions get 201 until the first commit fails, then 503
/// `storage_unavailable`; the connected agent is closed with 1011 so it reconnects and
/// recovers; reads still answer. Restarted with room, the hub has every acknowledged task,
/// still queued, and nothing it refused: ids are submission numbers, so a refused task would
/// show up as an id past the last acknowledged one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_and_loses_nothing_acknowledged() {
    let hub = Hub::start(HubOpts::default().map_size_mib(1)).await;
    let api = hub.api();
    // Connected, but without the capability the tasks need: every task stays queued.
    let mut agent = hub.agent("watcher").await;

    let filler = "x".repeat(6_000);
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    // A 1 MiB map holds well under 200 tasks of 6 KB; the bound only stops a broken hub.
    for i in 0..1_000 {
        let resp = api
            .post(
                "/api/tasks",
                &json!({"description": format!("{i} {filler}"), "needed_capabilities": ["gpu"]}),
            )
            .await;
        match resp.status {
            201 => acknowledged.push(str_field(&resp.body, "task_id").to_string()),
            _ => {
                refusal = Some(resp);
                break;
            }
        }
    }
    let refusal = refusal.expect("a 1 MiB store fills up within 1,000 tasks of 6 KB");
    assert_eq!(refusal.status, 503, "{}", refusal.text);
    assert_eq!(refusal.error(), "storage_unavailable");
    assert!(
        acknowledged.len() >= 10,
        "only {} fitted",
        acknowledged.len()
    );
    hub.wait_for_log(&["commit failed"]).await;
    let (code, reason, _) = agent.expect_close(Duration::from_secs(10)).await;
    assert_eq!(code, Some(1011));
    assert_eq!(reason, "storage_unavailable");
    // Reads go on.
    let first = api.get_task(&acknowledged[0]).await;
    assert_eq!(first["status"], "queued", "{first}");

    let mut stopped = hub.kill9();
    stopped.opts_mut().map_size_mib = Some(64);
    let hub = Hub::restart_on(stopped).await;
    let mut found = Vec::new();
    let mut query = "limit=500".to_string();
    loop {
        let page = hub.api().list_tasks(&query).await;
        for task in page["tasks"].as_array().expect("tasks array") {
            assert_eq!(task["status"], "queued", "{task}");
            found.push(str_field(task, "id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=500&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        found, acknowledged,
        "exactly the acknowledged tasks, in order"
    );
    // And the store takes work again.
    hub.api()
        .submit(json!({"description": "after the restart"}))
        .await;
}
