//! SIGKILL chaos: the real binary under load (HTTP submitters; WebSocket agents that accept,
//! complete, fail, reject, ignore and disconnect), killed with SIGKILL at a random point and
//! started again on the same data folder, round after round.
//!
//! The test keeps a ledger of what the hub acknowledged (a 201 for a submission, a `task_ack`
//! for a completion, the generation of every `task_assign` and `task_continue`), and after every
//! restart checks the store against it:
//! - every task whose submission was acknowledged is there;
//! - every task whose completion was acknowledged is completed, by that agent at that
//!   generation, with one `completed` event, and was acknowledged complete once only;
//! - no task (acknowledged or not) has two `completed` events;
//! - a task's generation is at least every generation the hub ever sent for it, and never
//!   lower than at the previous check.
//!
//! At the end, well-behaved agents drain the queue: every acknowledged task finishes
//! (completed, or dead-lettered after its retries), so none was lost from the queue.
//!
//! The kill points come from a seeded generator (the seed is printed; the run's timing still
//! varies, so a seed repeats the choices, not the interleaving). `SWITCHYARD_CHAOS_ROUNDS`
//! (default 4) and `SWITCHYARD_CHAOS_SEED` make a long run: README.md, "Attacking the hub".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::api::Api;
use crate::harness::{completed_events, Hub, HubOpts};

const DEFAULT_ROUNDS: u64 = 4;
const AGENTS: usize = 6;
const SUBMITTERS: usize = 2;
/// Tasks one submitter offers per round, at most (the kill usually comes first).
const TASKS_PER_SUBMITTER: usize = 40;
/// The kill comes after this many more acknowledged events (a 201, an ack, a push), drawn
/// uniformly: from the first moments of the load to well into it.
const KILL_AFTER_EVENTS: std::ops::Range<u64> = 1..120;
/// Bound on waiting for those events; past it the hub is killed anyway (counted as a late kill).
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Bound on the final drain: it fails when this long passes with no acknowledged task finishing.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the hub acknowledged, as seen by the clients.
#[derive(Default)]
struct Ledger {
    /// Tasks whose submission was answered 201.
    submitted: BTreeSet<String>,
    /// Every completion acknowledged (`task_ack` `complete`): task → (agent, generation).
    completion_acks: HashMap<String, Vec<(String, u64)>>,
    /// The highest generation the hub sent for each task (`task_assign`, `task_continue`).
    max_generation: HashMap<String, u64>,
    /// Acknowledged events, the clock the kill points are drawn on.
    events: u64,
    /// Answers other than 201 to a submission (none is expected).
    unexpected: Vec<String>,
}

type Shared = (Arc<Mutex<Ledger>>, Arc<Notify>);

fn note<T>(shared: &Shared, f: impl FnOnce(&mut Ledger) -> T) -> T {
    let out = {
        let mut ledger = shared.0.lock().unwrap_or_else(|p| p.into_inner());
        ledger.events += 1;
        f(&mut ledger)
    };
    shared.1.notify_waiters();
    out
}

/// An agent's identity and what it holds, kept across its connections and the hub's restarts
/// (as a sidecar keeps its state folder).
#[derive(Clone, Debug)]
struct Slot {
    id: String,
    token: String,
    held: Option<Held>,
    /// The frames this agent sent (`→`) and received (`←`), the last [`TRAIL`], to show when a
    /// check fails.
    trail: std::collections::VecDeque<String>,
}

const TRAIL: usize = 3_000;

impl Slot {
    fn log(&mut self, line: String) {
        if self.trail.len() == TRAIL {
            self.trail.pop_front();
        }
        self.trail.push_back(line);
    }
}

#[derive(Clone, Debug)]
struct Held {
    task_id: String,
    generation: u64,
    /// `task_accepted` was sent (and may have been committed even if its ack never came): after
    /// a reconnect the agent asks `task_recovering`, as the sidecar does.
    accepted: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Mood {
    /// Accepts, completes, fails, rejects, ignores and disconnects at random.
    Chaotic,
    /// Accepts and completes everything: drains the queue.
    Good,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_nothing() {
    let rounds = env_u64("SWITCHYARD_CHAOS_ROUNDS").unwrap_or(DEFAULT_ROUNDS);
    let seed = env_u64("SWITCHYARD_CHAOS_SEED").unwrap_or_else(rand::random);
    eprintln!("chaos: {rounds} rounds, seed {seed} (SWITCHYARD_CHAOS_SEED={seed} repeats it)");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);

    // A short acceptance timeout takes back what an agent ignores; the reconnect grace covers
    // the check after a restart, so agents come back to their tasks; take-backs caused by the
    // kills must not dead-letter tasks as poison.
    let opts = HubOpts::default()
        .acceptance_timeout_ms(2_000)
        .reconnect_grace_ms(5_000)
        .max_reclaims(1_000);
    let mut hub = Hub::start(opts).await;
    let mut slots = Vec::new();
    for i in 0..AGENTS {
        let id = format!("chaos-{i}");
        let token = hub.api().create_token(&id).await;
        slots.push(Slot {
            id,
            token,
            held: None,
            trail: Default::default(),
        });
    }
    let shared: Shared = (Arc::default(), Arc::default());
    let mut seen_generation: HashMap<String, u64> = HashMap::new();
    let mut late_kills = 0;

    for round in 0..rounds {
        check(hub.api(), &shared, &mut seen_generation, round, false).await;
        let (stop, stopped_rx) = watch::channel(false);
        let mut submitters = Vec::new();
        for s in 0..SUBMITTERS {
            submitters.push(tokio::spawn(submitter(
                hub.api().clone(),
                shared.clone(),
                stopped_rx.clone(),
                format!("r{round}s{s}"),
                rng.random(),
            )));
        }
        let mut agents = Vec::new();
        for slot in slots.drain(..) {
            agents.push(tokio::spawn(agent(
                hub.ws_url(),
                slot,
                shared.clone(),
                stopped_rx.clone(),
                Mood::Chaotic,
                rng.random(),
            )));
        }

        let start = shared.0.lock().unwrap().events;
        let target = start + rng.random_range(KILL_AFTER_EVENTS);
        if !wait_for_events(&shared, target, KILL_WAIT).await {
            late_kills += 1;
        }
        let stopped = hub.kill9();
        let _ = stop.send(true);
        for s in submitters {
            s.await.expect("submitter task");
        }
        for a in agents {
            slots.push(a.await.expect("agent task"));
        }
        let events = shared.0.lock().unwrap().events;
        eprintln!(
            "chaos: round {round}: killed after {} events ({} tasks acknowledged so far)",
            events - start,
            shared.0.lock().unwrap().submitted.len()
        );
        hub = Hub::restart_on(stopped).await;
    }

    check(hub.api(), &shared, &mut seen_generation, rounds, false).await;
    drain(&hub, &mut slots, &shared).await;
    check(hub.api(), &shared, &mut seen_generation, rounds, true).await;

    let ledger = shared.0.lock().unwrap();
    assert!(
        ledger.unexpected.is_empty(),
        "submissions answered other than 201: {:?}",
        ledger.unexpected
    );
    assert!(
        rounds == 0 || !ledger.submitted.is_empty(),
        "no task was ever acknowledged: the load did not run"
    );
    eprintln!(
        "chaos: seed {seed}: {rounds} rounds, {rounds} kills ({late_kills} after the \
         {KILL_WAIT:?} bound), {} tasks acknowledged, {} completions acknowledged, {:.1} s",
        ledger.submitted.len(),
        ledger.completion_acks.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Waits until the ledger has seen `target` events; false if `timeout` passed first.
async fn wait_for_events(shared: &Shared, target: u64, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = shared.1.notified();
        if shared.0.lock().unwrap().events >= target {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return false;
        }
    }
}

/// Submits tasks one by one or in small batches until stopped (or its share is offered). A
/// request cut by the kill is not acknowledged and not counted; the task may or may not exist.
async fn submitter(api: Api, shared: Shared, stop: watch::Receiver<bool>, name: String, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut offered = 0;
    while offered < TASKS_PER_SUBMITTER && !*stop.borrow() {
        let batch = rng.random_bool(0.25);
        let n = if batch { rng.random_range(1..=5) } else { 1 };
        let task = |i: usize| json!({"description": format!("chaos {name} {}", offered + i)});
        let (path, body) = if batch {
            (
                "/api/tasks/batch",
                json!({"tasks": (0..n).map(task).collect::<Vec<_>>()}),
            )
        } else {
            ("/api/tasks", task(0))
        };
        offered += n;
        let Some((status, answer)) = api.try_post(path, &body).await else {
            continue; // the hub died under the request
        };
        note(&shared, |ledger| {
            if status != 201 {
                ledger.unexpected.push(format!("{path}: {status} {answer}"));
                return;
            }
            let ids: Vec<&str> = match answer.get("task_ids") {
                Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_str).collect(),
                _ => answer
                    .get("task_id")
                    .and_then(Value::as_str)
                    .into_iter()
                    .collect(),
            };
            assert_eq!(ids.len(), n, "{path} answered {answer}");
            ledger.submitted.extend(ids.into_iter().map(str::to_string));
        });
    }
}

/// What ends one connection.
enum Ending {
    /// The hub is gone or the round is over.
    Stop,
    /// The agent drops the connection on purpose and connects again.
    Reconnect,
}

/// One agent: connects, identifies, asks after a task it held, then works until stopped or
/// the hub dies, reconnecting when it drops its own connection. Returns what it holds.
async fn agent(
    url: String,
    mut slot: Slot,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
    mood: Mood,
    seed: u64,
) -> Slot {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        if *stop.borrow() {
            return slot;
        }
        slot.log(format!("connect to {url}"));
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            return slot;
        };
        let mut out = vec![json!({"type": "identify", "agent_id": slot.id, "token": slot.token})];
        match &slot.held {
            Some(held) if held.accepted => {
                out.push(json!({"type": "task_recovering", "task_id": held.task_id}))
            }
            // Not accepted: the hub pushes it again (or has taken it back).
            _ => slot.held = None,
        }
        // The hub closes a connection that says nothing for 60 s; a sidecar pings every 30.
        let mut ping = tokio::time::interval(Duration::from_secs(20));
        let ending = 'conn: loop {
            for frame in out.drain(..) {
                slot.log(format!("→ {frame}"));
                if ws.send(Message::text(frame.to_string())).await.is_err() {
                    break 'conn Ending::Stop;
                }
            }
            let msg = tokio::select! {
                _ = stop.changed() => break 'conn Ending::Stop,
                _ = ping.tick() => {
                    out.push(json!({"type": "ping"}));
                    continue;
                }
                msg = ws.next() => msg,
            };
            let text = match msg {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(close))) => {
                    slot.log(format!("← close {close:?}"));
                    break 'conn Ending::Stop;
                }
                Some(Err(_)) | None => {
                    slot.log("← connection lost".to_string());
                    break 'conn Ending::Stop;
                }
                Some(Ok(_)) => continue,
            };
            let frame: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("{}: the hub sent non-JSON {text:?}: {e}", slot.id));
            slot.log(format!("← {frame}"));
            match react(&mut slot, &frame, &shared, mood, &mut rng) {
                Some(Reaction::Send(frames)) => out = frames,
                Some(Reaction::Drop) => break 'conn Ending::Reconnect,
                None => {}
            }
        };
        let _ = ws.close(None).await;
        slot.log(format!("connection closed (held: {:?})", slot.held));
        match ending {
            Ending::Stop => return slot,
            Ending::Reconnect => continue,
        }
    }
}

enum Reaction {
    Send(Vec<Value>),
    /// Drop the connection (and keep what is held).
    Drop,
}

fn react(
    slot: &mut Slot,
    frame: &Value,
    shared: &Shared,
    mood: Mood,
    rng: &mut StdRng,
) -> Option<Reaction> {
    let task_id = frame.get("task_id").and_then(Value::as_str).unwrap_or("");
    let generation = frame.get("generation").and_then(Value::as_u64).unwrap_or(0);
    let chaotic = mood == Mood::Chaotic;
    let complete = |slot: &Slot, held: &Held| {
        json!({"type": "task_complete", "task_id": held.task_id, "generation": held.generation,
               "result": {"by": slot.id, "generation": held.generation}})
    };
    match frame.get("type").and_then(Value::as_str).unwrap_or("") {
        "task_assign" | "task_continue" => {
            note(shared, |ledger| {
                let max = ledger
                    .max_generation
                    .entry(task_id.to_string())
                    .or_default();
                *max = (*max).max(generation);
            });
            // A `task_recovering` already sent for this assignment counts as an acceptance at
            // the hub, even if the `task_assign` pushed again after the reconnect arrives first:
            // the claim stands.
            let claimed = slot
                .held
                .as_ref()
                .is_some_and(|h| h.accepted && h.task_id == task_id && h.generation == generation);
            let held = Held {
                task_id: task_id.to_string(),
                generation,
                accepted: claimed || frame["type"] == "task_continue",
            };
            if held.accepted {
                let reply = complete(slot, &held);
                slot.held = Some(held);
                return Some(Reaction::Send(vec![reply]));
            }
            let roll = rng.random_range(0..100);
            if chaotic && roll < 10 {
                return Some(Reaction::Send(vec![
                    json!({"type": "task_rejected", "task_id": task_id, "reason": "chaos"}),
                ]));
            }
            if chaotic && roll < 15 {
                return None; // ignored: the acceptance timeout takes it back
            }
            if chaotic && roll < 20 {
                slot.held = Some(held);
                return Some(Reaction::Drop); // pushed again after the reconnect
            }
            slot.held = Some(Held {
                accepted: true,
                ..held
            });
            Some(Reaction::Send(vec![
                json!({"type": "task_accepted", "task_id": task_id, "generation": generation}),
            ]))
        }
        "task_ack" => {
            let status = frame.get("status").and_then(Value::as_str).unwrap_or("");
            let mine = slot.held.as_ref().is_some_and(|h| h.task_id == task_id);
            match status {
                "accepted" if mine => {
                    let held = slot.held.clone().expect("held");
                    let roll = rng.random_range(0..100);
                    if chaotic && roll < 12 {
                        Some(Reaction::Send(vec![json!({
                            "type": "task_failed", "task_id": task_id,
                            "generation": held.generation, "error": "chaos"})]))
                    } else if chaotic && roll < 20 {
                        Some(Reaction::Drop) // recovered after the reconnect
                    } else {
                        Some(Reaction::Send(vec![complete(slot, &held)]))
                    }
                }
                "complete" => {
                    let generation = slot
                        .held
                        .as_ref()
                        .filter(|h| h.task_id == task_id)
                        .map(|h| h.generation)
                        .unwrap_or_else(|| {
                            panic!("{}: completion of {task_id} acknowledged, but it was not held: {frame}", slot.id)
                        });
                    note(shared, |ledger| {
                        ledger
                            .completion_acks
                            .entry(task_id.to_string())
                            .or_default()
                            .push((slot.id.clone(), generation));
                    });
                    slot.held = None;
                    None
                }
                _ => {
                    note(shared, |_| ());
                    if mine {
                        slot.held = None;
                    }
                    None
                }
            }
        }
        "task_reassign" | "task_cancel" => {
            if slot.held.as_ref().is_some_and(|h| h.task_id == task_id) {
                slot.held = None;
            }
            None
        }
        // A refused report names no task, so it says nothing about what is held: a task that is
        // no longer this agent's is replaced by the next `task_assign`, or answered
        // `task_reassign` after a reconnect.
        _ => None,
    }
}

/// Every task in the store, through the paged listing.
async fn all_tasks(api: &Api) -> BTreeMap<String, Value> {
    let mut tasks = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=1000&cursor={c}"),
            None => "limit=1000".to_string(),
        };
        let page = api.list_tasks(&query).await;
        for task in page["tasks"].as_array().expect("a `tasks` list") {
            let id = task["id"].as_str().expect("task id").to_string();
            tasks.insert(id, task.clone());
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_string()),
            None => return tasks,
        }
    }
}

/// Checks the store against the ledger (see the module's documentation). `finished`: every
/// acknowledged task must have finished.
async fn check(
    api: &Api,
    shared: &Shared,
    seen_generation: &mut HashMap<String, u64>,
    round: u64,
    finished: bool,
) {
    let tasks = all_tasks(api).await;
    let ledger = shared.0.lock().unwrap_or_else(|p| p.into_inner());
    let at = format!("after restart {round}");
    for (id, task) in &tasks {
        assert!(
            completed_events(task) <= 1,
            "{at}: {id} completed more than once: {task}"
        );
        let generation = task["generation"].as_u64().expect("generation");
        if let Some(&max) = ledger.max_generation.get(id) {
            assert!(
                generation >= max,
                "{at}: {id} is at generation {generation}, but the hub sent generation {max}: {task}"
            );
        }
        let seen = seen_generation.entry(id.clone()).or_default();
        assert!(
            generation >= *seen,
            "{at}: {id} went back from generation {seen} to {generation}: {task}"
        );
        *seen = generation;
    }
    for id in &ledger.submitted {
        let task = tasks
            .get(id)
            .unwrap_or_else(|| panic!("{at}: acknowledged task {id} is missing"));
        if finished {
            let status = task["status"].as_str().unwrap_or("");
            assert!(
                status == "completed" || status == "dead_letter",
                "{at}: acknowledged task {id} never finished: {task}"
            );
        }
    }
    for (id, acks) in &ledger.completion_acks {
        assert_eq!(acks.len(), 1, "{at}: {id} acknowledged complete {acks:?}");
        let (agent, generation) = &acks[0];
        let task = tasks
            .get(id)
            .unwrap_or_else(|| panic!("{at}: task {id}, acknowledged complete, is missing"));
        assert_eq!(task["status"], "completed", "{at}: {id}: {task}");
        assert_eq!(completed_events(task), 1, "{at}: {id}: {task}");
        assert_eq!(
            task["result"],
            json!({"by": agent, "generation": generation}),
            "{at}: {id} holds another completion than the acknowledged one: {task}"
        );
    }
}

/// Runs well-behaved agents until every acknowledged task has finished.
async fn drain(hub: &Hub, slots: &mut Vec<Slot>, shared: &Shared) {
    let (stop, stop_rx) = watch::channel(false);
    let agents: Vec<_> = slots
        .drain(..)
        .map(|slot| {
            tokio::spawn(agent(
                hub.ws_url(),
                slot,
                shared.clone(),
                stop_rx.clone(),
                Mood::Good,
                0,
            ))
        })
        .collect();
    let submitted = shared.0.lock().unwrap().submitted.clone();
    let mut deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut left = usize::MAX;
    loop {
        let tasks = all_tasks(hub.api()).await;
        let open: Vec<&String> = submitted
            .iter()
            .filter(|id| {
                !matches!(
                    tasks.get(*id).and_then(|t| t["status"].as_str()),
                    Some("completed" | "dead_letter")
                )
            })
            .collect();
        if open.is_empty() {
            break;
        }
        if open.len() < left {
            left = open.len();
            deadline = Instant::now() + DRAIN_TIMEOUT;
        }
        if Instant::now() >= deadline {
            let _ = stop.send(true);
            let mut trails = String::new();
            for a in agents {
                let slot = a.await.expect("agent task");
                let lines: Vec<&String> = slot.trail.iter().collect();
                trails += &format!("\n{} (holds {:?}):\n", slot.id, slot.held);
                for line in lines {
                    trails += &format!("  {line}\n");
                }
            }
            panic!(
                "{} acknowledged tasks not finished, none for {DRAIN_TIMEOUT:?}, e.g. {}\n\
                 what each agent sent and received last:{trails}",
                open.len(),
                tasks.get(open[0]).map(Value::to_string).unwrap_or_default()
            );
        }
        // Wait for the agents' next acknowledged event, or a moment for the hub's timers.
        let notified = shared.1.notified();
        let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
    }
    let _ = stop.send(true);
    for a in agents {
        slots.push(a.await.expect("agent task"));
    }
}
