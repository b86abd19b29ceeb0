//! Property tests of the task and agent state machines: random sequences of what agents, HTTP
//! callers and time can do (submit, identify, disconnect, accept, reject, complete, fail,
//! progress, recover, cancel, requeue, retry, time passing, a policy swap), with right, stale
//! and missing generations, through the real engine and store. After every step the engine's
//! own invariant check has run (state.rs, after every batch; a violation stops the engine,
//! which the next step sees), and the store and the frames must hold what the docs promise
//! (docs/protocol.md, docs/architecture.md):
//!
//! - one holder per task: a task is assigned to at most one agent, and an agent holds at most
//!   one task;
//! - a generation is pushed to one agent only, and a task's generation never goes down;
//! - a finished task (completed, cancelled) never changes again; a dead-lettered one changes
//!   only by an admin's retry;
//! - the store's counts by status agree with its tasks.
//!
//! Cases are few by default (each starts an engine with a store and a policy):
//! `SWITCHYARD_PROPTEST_CASES` asks for more.

use super::*;
use crate::store::PersistedPolicy;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::{BTreeMap, HashMap};

const AGENTS: usize = 3;
const CAPABILITIES: [&str; 2] = ["gpu", "rust"];
const DEFAULT_CASES: u32 = 16;

#[derive(Debug, Clone, Copy)]
enum Fence {
    Current,
    /// One below the generation the agent was given (never its task's current one).
    Stale,
    /// No generation (`task_accepted` only; other reports read it as 0).
    Missing,
}

#[derive(Debug, Clone)]
enum Op {
    Submit {
        caps: u8,
        priority: u8,
        retries: u8,
    },
    Identify {
        agent: usize,
        caps: u8,
    },
    Disconnect {
        agent: usize,
    },
    Accept {
        agent: usize,
        fence: Fence,
    },
    Reject {
        agent: usize,
    },
    Complete {
        agent: usize,
        fence: Fence,
    },
    Fail {
        agent: usize,
        fence: Fence,
    },
    Progress {
        agent: usize,
    },
    Recover {
        agent: usize,
    },
    Cancel {
        task: usize,
    },
    Requeue {
        task: usize,
    },
    Retry {
        task: usize,
    },
    /// Real time passes, so the engine's timers (acceptance, grace, run, cooldown) fire.
    Advance {
        ms: u64,
    },
    SwapPolicy {
        fair: bool,
    },
}

fn fence() -> impl Strategy<Value = Fence> {
    prop_oneof![
        6 => Just(Fence::Current),
        1 => Just(Fence::Stale),
        1 => Just(Fence::Missing),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let agent = 0..AGENTS;
    prop_oneof![
        4 => (0u8..4, 0u8..4, 1u8..3)
            .prop_map(|(caps, priority, retries)| Op::Submit { caps, priority, retries }),
        3 => (agent.clone(), 0u8..4).prop_map(|(agent, caps)| Op::Identify { agent, caps }),
        1 => agent.clone().prop_map(|agent| Op::Disconnect { agent }),
        4 => (agent.clone(), fence()).prop_map(|(agent, fence)| Op::Accept { agent, fence }),
        1 => agent.clone().prop_map(|agent| Op::Reject { agent }),
        3 => (agent.clone(), fence()).prop_map(|(agent, fence)| Op::Complete { agent, fence }),
        2 => (agent.clone(), fence()).prop_map(|(agent, fence)| Op::Fail { agent, fence }),
        1 => agent.clone().prop_map(|agent| Op::Progress { agent }),
        1 => agent.clone().prop_map(|agent| Op::Recover { agent }),
        1 => (0usize..8).prop_map(|task| Op::Cancel { task }),
        1 => (0usize..8).prop_map(|task| Op::Requeue { task }),
        1 => (0usize..8).prop_map(|task| Op::Retry { task }),
        2 => (0u64..60).prop_map(|ms| Op::Advance { ms }),
        1 => any::<bool>().prop_map(|fair| Op::SwapPolicy { fair }),
    ]
}

fn capabilities(mask: u8) -> Vec<&'static str> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// One agent as the test sees it: its token, its connection, the task it was last given.
struct Actor {
    id: String,
    token: String,
    conn: Option<TestAgent>,
    /// The last `task_assign` or `task_continue`: task id and generation.
    given: Option<(String, u64)>,
}

/// Everything the checks compare against.
#[derive(Default)]
struct Seen {
    /// Each task as last read from the store.
    tasks: BTreeMap<TaskId, crate::task::Task>,
    /// (task, generation) → the agent it was pushed to.
    pushes: HashMap<(String, u64), String>,
}

#[test]
fn random_command_sequences_keep_the_invariants() {
    let cases = std::env::var("SWITCHYARD_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        // Each case runs an engine on real threads and real time: shrinking reruns many.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(run_case(ops));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

async fn run_case(ops: Vec<Op>) {
    let hub = Fixture::start(EngineConfig {
        acceptance_timeout_ms: 25,
        reconnect_grace_ms: 40,
        reject_cooldown_ms: 10,
        max_reclaims: 2,
        run_timeout_ms: 80,
        ..EngineConfig::default()
    });
    let mut actors = Vec::new();
    for i in 0..AGENTS {
        let id = format!("agent-{i}");
        let token = hub.token(&id).await;
        actors.push(Actor {
            id,
            token,
            conn: None,
            given: None,
        });
    }
    let mut ids: Vec<TaskId> = Vec::new();
    let mut seen = Seen::default();
    for (step, op) in ops.iter().enumerate() {
        let by_admin = apply(&hub, &mut actors, &mut ids, op).await;
        barrier(&hub, step, op).await;
        read_frames(&hub, &mut actors, &mut seen);
        check(&hub, &ids, &mut seen, by_admin, step, op);
    }
}

/// Applies one operation; returns the task an admin retried or cancelled, if any.
async fn apply(
    hub: &Fixture,
    actors: &mut [Actor],
    ids: &mut Vec<TaskId>,
    op: &Op,
) -> Option<TaskId> {
    let pick = |ids: &Vec<TaskId>, i: usize| (!ids.is_empty()).then(|| ids[i % ids.len()]);
    match *op {
        Op::Submit {
            caps,
            priority,
            retries,
        } => {
            let mut task = new_task("prop", &capabilities(caps));
            task.priority = priority;
            task.max_retries = retries.into();
            ids.push(hub.submit_task(task).await);
        }
        Op::Identify { agent, caps } => {
            let actor = &mut actors[agent];
            let conn = hub
                .identify(&actor.id, &actor.token, &capabilities(caps))
                .await;
            assert!(conn.identified, "{} identifies", actor.id);
            // A second connection replaces the first (which the engine closes).
            if let Some(old) = actor.conn.replace(conn) {
                old.disconnect();
            }
        }
        Op::Disconnect { agent } => {
            if let Some(conn) = actors[agent].conn.take() {
                conn.disconnect();
            }
        }
        Op::Accept { agent, fence } => report(&actors[agent], |task, generation| {
            ClientMessage::TaskAccepted {
                task_id: task,
                generation: fenced(fence, generation),
            }
        }),
        Op::Reject { agent } => report(&actors[agent], |task, _| ClientMessage::TaskRejected {
            task_id: task,
            reason: Some("busy".into()),
        }),
        Op::Complete { agent, fence } => report(&actors[agent], |task, generation| {
            ClientMessage::TaskComplete {
                task_id: task,
                generation: fenced(fence, generation).unwrap_or(0),
                result: json!({"ok": true}),
                tokens_used: Some(1),
            }
        }),
        Op::Fail { agent, fence } => report(&actors[agent], |task, generation| {
            ClientMessage::TaskFailed {
                task_id: task,
                generation: fenced(fence, generation).unwrap_or(0),
                error: "boom".into(),
            }
        }),
        Op::Progress { agent } => report(&actors[agent], |task, _| ClientMessage::TaskProgress {
            task_id: task,
        }),
        Op::Recover { agent } => report(&actors[agent], |task, _| ClientMessage::TaskRecovering {
            task_id: task,
        }),
        // Refusals (not found, wrong state) are answers too: only the state matters here.
        Op::Cancel { task } => {
            if let Some(id) = pick(ids, task) {
                let cancelled = hub
                    .engine
                    .ask(|reply| Command::Cancel { task: id, reply })
                    .await;
                return cancelled.is_ok().then_some(id);
            }
        }
        Op::Requeue { task } => {
            if let Some(id) = pick(ids, task) {
                let _ = hub
                    .engine
                    .ask(|reply| Command::Requeue { task: id, reply })
                    .await;
            }
        }
        Op::Retry { task } => {
            if let Some(id) = pick(ids, task) {
                let retried = hub
                    .engine
                    .ask(|reply| Command::RetryDeadLetter { task: id, reply })
                    .await;
                return retried.is_ok().then_some(id);
            }
        }
        Op::Advance { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
        Op::SwapPolicy { fair } => {
            let name = if fair { "fair" } else { "greedy" };
            let policy = PolicyHost::load(PolicySource::Builtin(name.into()), json!({}))
                .expect("a bundled policy loads");
            hub.engine
                .ask(|reply| Command::SwapPolicy {
                    policy: Box::new(policy),
                    persisted: PersistedPolicy {
                        source: format!("builtin:{name}"),
                        config: json!({}),
                        digest: None,
                    },
                    upload: None,
                    reply,
                })
                .await
                .expect("the swap is taken");
        }
    }
    None
}

fn fenced(fence: Fence, generation: u64) -> Option<u64> {
    match fence {
        Fence::Current => Some(generation),
        Fence::Stale => Some(generation.saturating_sub(1)),
        Fence::Missing => None,
    }
}

/// Sends a report about the task the agent was last given (if it is connected and was given
/// one).
fn report(actor: &Actor, message: impl FnOnce(String, u64) -> ClientMessage) {
    if let (Some(conn), Some((task, generation))) = (&actor.conn, &actor.given) {
        conn.send(message(task.clone(), *generation));
    }
}

/// Waits until the engine has committed everything sent before: a token is made in a batch
/// of its own, answered after its commit, and commits are in order.
async fn barrier(hub: &Fixture, step: usize, op: &Op) {
    let answer = hub
        .engine
        .ask(|reply| Command::CreateToken {
            request: crate::wire::http::TokenRequest::agent("barrier"),
            reply,
        })
        .await;
    assert!(
        answer.is_ok(),
        "step {step} ({op:?}): the engine stopped ({answer:?}); its invariant check's panic is \
         printed above"
    );
}

/// Takes every frame the engine released to each connection; remembers what each agent was
/// given, and which agent each (task, generation) went to.
fn read_frames(hub: &Fixture, actors: &mut [Actor], seen: &mut Seen) {
    for actor in actors.iter_mut() {
        let Some(conn) = actor.conn.as_mut() else {
            continue;
        };
        let mut closed = false;
        while let Ok(outbound) = conn.frames.try_recv() {
            let frame: Value = match outbound {
                Outbound::Frame(text) => serde_json::from_str(&text).expect("frames are JSON"),
                Outbound::Unresponsive => continue,
                Outbound::Close(_) => {
                    closed = true;
                    continue;
                }
            };
            let task = frame["task_id"].as_str().unwrap_or_default().to_string();
            match frame["type"].as_str().unwrap_or_default() {
                "task_assign" | "task_continue" => {
                    let generation = generation(&frame);
                    let first = seen
                        .pushes
                        .entry((task.clone(), generation))
                        .or_insert_with(|| actor.id.clone());
                    assert_eq!(
                        *first, actor.id,
                        "{task} generation {generation} went to {first} and to {}",
                        actor.id
                    );
                    actor.given = Some((task, generation));
                }
                "task_cancel" | "task_reassign"
                    if actor.given.as_ref().is_some_and(|(t, _)| *t == task) =>
                {
                    actor.given = None;
                }
                _ => {}
            }
        }
        if closed {
            // The connection task would end and tell the engine, as server/ws.rs does.
            let conn = actor.conn.take().expect("connected");
            conn.disconnect();
        }
    }
    let _ = hub;
}

fn check(
    hub: &Fixture,
    ids: &[TaskId],
    seen: &mut Seen,
    by_admin: Option<TaskId>,
    step: usize,
    op: &Op,
) {
    let at = format!("step {step} ({op:?})");
    let txn = hub.store.read_txn().expect("read txn");
    let mut holders: HashMap<String, TaskId> = HashMap::new();
    let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
    for &id in ids {
        let task = hub
            .store
            .task(&txn, id)
            .expect("store reads")
            .unwrap_or_else(|| panic!("{at}: submitted task {id} is not stored"));
        *by_status.entry(task.status.as_str()).or_default() += 1;
        match task.status {
            TaskStatus::Assigned => {
                let agent = task
                    .assigned_to
                    .clone()
                    .unwrap_or_else(|| panic!("{at}: {id} assigned to no one: {task:?}"));
                if let Some(other) = holders.insert(agent.clone(), id) {
                    panic!("{at}: {agent} holds both {other} and {id}");
                }
            }
            _ => assert!(
                task.accepted_at.is_none() || task.status != TaskStatus::Queued,
                "{at}: a queued task keeps its acceptance: {task:?}"
            ),
        }
        if let Some(before) = seen.tasks.get(&id) {
            assert!(
                task.generation >= before.generation,
                "{at}: {id} went from generation {} to {}",
                before.generation,
                task.generation
            );
            match before.status {
                TaskStatus::Completed | TaskStatus::Cancelled => {
                    assert_eq!(&task, before, "{at}: finished task {id} changed")
                }
                TaskStatus::DeadLetter if by_admin != Some(id) => assert_eq!(
                    &task, before,
                    "{at}: dead-lettered {id} changed without an admin's retry or cancel"
                ),
                _ => {}
            }
        }
        seen.tasks.insert(id, task);
    }
    let stats = hub.store.stats(&txn).expect("stats");
    let stored: BTreeMap<&'static str, u64> = stats
        .by_status
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(&s, &n)| (s, n))
        .collect();
    assert_eq!(
        stored, by_status,
        "{at}: the store's counts disagree with its tasks"
    );
    assert_eq!(
        stats.dead_letter,
        by_status.get("dead_letter").copied().unwrap_or(0),
        "{at}: dead letter count"
    );
}
