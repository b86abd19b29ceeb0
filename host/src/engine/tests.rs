//! The engine in-process: a real store in a temporary folder, greedy in force, driven by
//! commands as connections and HTTP handlers send them, watched through the frames it pushes.
//! These reach the state transitions directly; the e2e suite reaches them through sockets.

use super::*;
use crate::engine::outbox::{Outbound, Outbox};
use crate::policy::PolicySource;
use crate::store::test_support::temp_dir;
use crate::task::{ReclaimReason, TaskStatus};
use crate::wire::agent::{ClientMessage, CloseReason, Identify};
use crate::wire::http::NewTask;
use crate::wire::TaskId;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a test waits for a frame or a state before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

struct Fixture {
    engine: Engine,
    store: Arc<Store>,
}

impl Fixture {
    fn start(config: EngineConfig) -> Fixture {
        let store = Arc::new(Store::open(&temp_dir(), 64 << 20).expect("store opens"));
        let policy = PolicyHost::load(PolicySource::Builtin("greedy".into()), json!({}))
            .expect("greedy loads");
        let (engine, _thread) = Engine::start(store.clone(), policy, config).expect("starts");
        Fixture { engine, store }
    }

    fn with_defaults() -> Fixture {
        Fixture::start(EngineConfig::default())
    }

    async fn submit(&self, description: &str, capabilities: &[&str]) -> TaskId {
        self.submit_task(new_task(description, capabilities)).await
    }

    async fn submit_task(&self, task: NewTask) -> TaskId {
        let submitted = self
            .engine
            .ask(|reply| Command::Submit {
                tasks: vec![task],
                submitted_by: "tester".into(),
                reply,
            })
            .await
            .expect("submitted");
        submitted[0].task_id
    }

    /// Identifies `agent_id` with a token made for it; the `identified` frame is consumed.
    async fn connect(&self, agent_id: &str, capabilities: &[&str]) -> TestAgent {
        let token = self
            .engine
            .ask(|reply| Command::CreateToken {
                agent_id: agent_id.into(),
                reply,
            })
            .await
            .expect("token made");
        let mut agent = self.identify(agent_id, &token, capabilities).await;
        assert!(agent.identified, "{agent_id} identifies");
        assert_eq!(agent.frame().await["type"], "identified");
        agent
    }

    async fn identify(&self, agent_id: &str, token: &str, capabilities: &[&str]) -> TestAgent {
        static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
        let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        let mut agent = self
            .identify_with(agent_id, token, capabilities, conn, crate::wire::now_ms())
            .await;
        agent.conn = conn;
        agent
    }

    /// Identifies as a connection with id `conn` accepted at `accepted_at` (ids count up in
    /// order of acceptance).
    async fn identify_at(
        &self,
        agent_id: &str,
        token: &str,
        conn: u64,
        accepted_at: u64,
    ) -> TestAgent {
        self.identify_with(agent_id, token, &[], conn, accepted_at)
            .await
    }

    async fn identify_with(
        &self,
        agent_id: &str,
        token: &str,
        capabilities: &[&str],
        conn: u64,
        accepted_at: u64,
    ) -> TestAgent {
        let (outbox, frames) = Outbox::channel();
        let (done, identified) = oneshot::channel();
        self.engine.send(Command::Identify {
            conn,
            accepted_at,
            peer: None,
            outbox: outbox.clone(),
            identify: Identify {
                agent_id: agent_id.into(),
                token: token.into(),
                name: None,
                status: None,
                capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            },
            done,
        });
        let identified = identified.await.unwrap_or(false);
        TestAgent {
            engine: self.engine.clone(),
            conn,
            agent_id: agent_id.into(),
            outbox,
            frames,
            identified,
        }
    }

    fn stored(&self, id: TaskId) -> crate::task::Task {
        let txn = self.store.read_txn().unwrap();
        self.store.task(&txn, id).unwrap().expect("task stored")
    }

    /// Waits until the stored task satisfies `check` (a timer acts on its own schedule, with no
    /// frame to await when no agent is involved).
    async fn stored_until(
        &self,
        id: TaskId,
        check: impl Fn(&crate::task::Task) -> bool,
    ) -> crate::task::Task {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let task = self.stored(id);
            if check(&task) {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} never reached the expected state: {task:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn new_task(description: &str, capabilities: &[&str]) -> NewTask {
    NewTask {
        description: description.into(),
        priority: 2,
        metadata: json!({}),
        max_retries: 3,
        complete_by: None,
        needed_capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
        fairness_key: None,
        weight: 1.0,
        run_timeout_ms: None,
        heartbeat_timeout_ms: None,
    }
}

/// One agent connection, as the engine sees it: an outbox whose frames the test reads.
struct TestAgent {
    engine: Engine,
    conn: u64,
    agent_id: String,
    outbox: Outbox,
    frames: UnboundedReceiver<Outbound>,
    identified: bool,
}

impl TestAgent {
    async fn next(&mut self) -> Outbound {
        tokio::time::timeout(PATIENCE, self.frames.recv())
            .await
            .unwrap_or_else(|_| panic!("{} got nothing within {PATIENCE:?}", self.agent_id))
            .expect("the engine keeps the outbox")
    }

    /// The next frame, as JSON; any other instruction fails the test.
    async fn frame(&mut self) -> Value {
        match self.next().await {
            Outbound::Frame(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("{} expected a frame, got {other:?}", self.agent_id),
        }
    }

    fn send(&self, message: ClientMessage) {
        self.engine.send(Command::Message {
            conn: self.conn,
            agent: self.agent_id.clone(),
            outbox: self.outbox.clone(),
            message,
        });
    }

    async fn accept(&mut self, task: &Value) -> Value {
        self.send(ClientMessage::TaskAccepted {
            task_id: task["task_id"].as_str().unwrap().into(),
            generation: task["generation"].as_u64(),
        });
        self.frame().await
    }

    async fn complete(&mut self, task: &Value, generation: u64) -> Value {
        self.send(ClientMessage::TaskComplete {
            task_id: task["task_id"].as_str().unwrap().into(),
            generation,
            result: json!({"ok": true}),
            tokens_used: None,
        });
        self.frame().await
    }

    async fn fail(&mut self, task: &Value) -> Value {
        self.send(ClientMessage::TaskFailed {
            task_id: task["task_id"].as_str().unwrap().into(),
            generation: task["generation"].as_u64().unwrap(),
            error: "boom".into(),
        });
        self.frame().await
    }

    fn disconnect(&self) {
        self.engine.send(Command::Disconnected {
            conn: self.conn,
            agent: self.agent_id.clone(),
        });
    }
}

fn generation(frame: &Value) -> u64 {
    frame["generation"].as_u64().expect("a generation")
}

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
    let token = hub
        .engine
        .ask(|reply| Command::CreateToken {
            agent_id: "doomed".into(),
            reply,
        })
        .await
        .unwrap();
    let mut agent = hub.identify("doomed", &token, &[]).await;
    assert!(agent.identified);
    agent.frame().await;
    let revoked = hub
        .engine
        .ask(|reply| Command::RevokeTokens {
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

#[tokio::test]
async fn of_two_agents_waiting_for_work_the_first_to_connect_is_served_first() {
    let hub = Fixture::with_defaults();
    let mut tokens = Vec::new();
    for agent in ["early", "late"] {
        let token = hub
            .engine
            .ask(|reply| Command::CreateToken {
                agent_id: agent.into(),
                reply,
            })
            .await
            .unwrap();
        tokens.push(token);
    }
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
