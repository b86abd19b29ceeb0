//! Items 3 and 10: SIGTERM stops the hub within `--shutdown-timeout-ms` whatever clients are
//! doing, every agent gets the 1001 close, and nothing acknowledged is lost.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{Agent, Hub, HubOpts, STATE_TIMEOUT};

/// Every one of 20 connected agents gets `1001 hub shutting down`, the hub exits cleanly and in
/// time, and every task it acknowledged is there after a restart, as it was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_agent_with_1001_and_loses_nothing() {
    let hub = Hub::start(HubOpts::default()).await;
    let mut agents = Vec::new();
    for n in 0..20 {
        agents.push(hub.agent(&format!("a{n}")).await);
    }
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(
            hub.api()
                .submit(json!({"description": format!("t{n}")}))
                .await,
        );
    }
    // One task completed and acknowledged before the signal.
    let assign = agents[0].expect_assign().await;
    agents[0].accept(&assign).await;
    agents[0].complete(&assign.task_id, assign.generation).await;

    let terminated = hub.terminate(Duration::from_secs(15)).await;
    let status = terminated.status.expect("the hub exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        terminated.took < Duration::from_secs(5),
        "{:?}",
        terminated.took
    );
    for agent in &mut agents {
        let (code, reason, _) = agent.expect_close(STATE_TIMEOUT).await;
        assert_eq!(
            (code, reason.as_str()),
            (Some(1001), "hub shutting down"),
            "agent {}",
            agent.id
        );
    }

    let hub = Hub::restart_on(terminated.stopped).await;
    for id in &ids {
        let task = hub.api().get_task(id).await;
        if *id == assign.task_id {
            assert_eq!(task["status"], "completed", "{task}");
        } else {
            // Assigned tasks stay with their agents for the reconnect grace, then return to
            // the queue; either way each one is there.
            assert!(
                task["status"] == "queued" || task["status"] == "assigned",
                "{task}"
            );
        }
    }
}

/// A slowloris, a request whose body never comes, an unidentified WebSocket and an idle
/// keep-alive do not keep the hub from exiting at `--shutdown-timeout-ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_deadline_whatever_clients_do() {
    let hub = Hub::start(HubOpts::default().flag("--shutdown-timeout-ms", 1000)).await;
    let id = hub.api().submit(json!({"description": "kept"})).await;
    let addr = hub.addr();
    let mut slowloris = TcpStream::connect(addr).await.unwrap();
    slowloris
        .write_all(b"GET /health HTTP/1.1\r\nhost: hub\r\nx-slow: ")
        .await
        .unwrap();
    let mut half_body = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/tasks HTTP/1.1\r\nhost: hub\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"descr",
        hub.api().admin_token()
    );
    half_body.write_all(head.as_bytes()).await.unwrap();
    let _idle = TcpStream::connect(addr).await.unwrap();
    let _unidentified = Agent::open(&hub.ws_url(), "a1", "unused").await;
    // The hub has read what it was sent once it answers this (requests on one runtime).
    assert_eq!(hub.api().health().await["status"], "ok");

    let terminated = hub.terminate(Duration::from_secs(15)).await;
    let status = terminated
        .status
        .expect("the hub exits despite its clients");
    assert!(status.success(), "{status:?}");
    assert!(
        terminated.took < Duration::from_millis(3500),
        "took {:?} with a 1 s deadline",
        terminated.took
    );
    let hub = Hub::restart_on(terminated.stopped).await;
    assert_eq!(hub.api().get_task(&id).await["status"], "queued");
}
