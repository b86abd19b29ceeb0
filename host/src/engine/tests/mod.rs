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
                tenant: crate::wire::tenant::default_tenant(),
                reply,
            })
            .await
            .expect("submitted");
        submitted[0].task_id
    }

    /// A new agent token for `agent_id`.
    async fn token(&self, agent_id: &str) -> String {
        self.engine
            .ask(|reply| Command::CreateToken {
                request: crate::wire::http::TokenRequest::agent(agent_id),
                reply,
            })
            .await
            .expect("token made")
    }

    /// Identifies `agent_id` with a token made for it; the `identified` frame is consumed.
    async fn connect(&self, agent_id: &str, capabilities: &[&str]) -> TestAgent {
        let token = self.token(agent_id).await;
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
        needed_capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
        ..NewTask::with_description(description)
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

mod custody;
mod props;
mod reports;
mod tenants;
mod timeouts;
