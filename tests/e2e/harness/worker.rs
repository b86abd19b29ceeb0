//! Worker loops: agents that accept and complete every task they are given, in the background,
//! while recording what they saw.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::agent::{Agent, Assign, Incoming};

/// How a worker behaves.
#[derive(Clone, Debug, Default)]
pub struct WorkerOpts {
    /// Simulated work: time between the `accepted` ack and `task_complete`, unless the task's
    /// metadata names its own as `work_ms` (tests of sharing by agent time mix task lengths).
    pub work: Duration,
}

/// What one worker saw.
#[derive(Debug, Default)]
pub struct WorkerReport {
    pub agent_id: String,
    /// Every `task_assign` in arrival order.
    pub assigned: Vec<Assign>,
    /// Tasks whose `task_complete` was acknowledged with status `complete`, in order.
    pub completed: Vec<String>,
    /// Tasks taken back with `task_cancel`.
    pub cancelled: Vec<String>,
    /// Broken expectations (a second task while holding one, unexpected frames, errors).
    pub violations: Vec<String>,
    /// `task_assign`s that arrived after we sent `task_complete` but before its ack came back
    /// (legal: the spec does not order an ack against the next push).
    pub assigns_before_ack: usize,
}

struct Held {
    task_id: String,
    generation: u64,
    accepted: bool,
    complete_at: Option<Instant>,
    /// How long this task works once accepted.
    work: Duration,
}

struct Worker {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<(Agent, WorkerReport)>,
}

/// A group of workers sharing a completion counter.
pub struct Crew {
    workers: Vec<Worker>,
    done_tx: watch::Sender<usize>,
    done_rx: watch::Receiver<usize>,
}

impl Default for Crew {
    fn default() -> Self {
        Crew::new()
    }
}

impl Crew {
    pub fn new() -> Crew {
        let (done_tx, done_rx) = watch::channel(0usize);
        Crew {
            workers: Vec::new(),
            done_tx,
            done_rx,
        }
    }

    /// Starts a worker loop on an identified agent.
    pub fn spawn(&mut self, agent: Agent, opts: WorkerOpts) {
        let (stop, stop_rx) = oneshot::channel();
        let done = self.done_tx.clone();
        let handle = tokio::spawn(run(agent, opts, done, stop_rx));
        self.workers.push(Worker { stop, handle });
    }

    /// Total acknowledged completions so far.
    pub fn completed(&self) -> usize {
        *self.done_rx.borrow()
    }

    /// Waits until the workers together have `n` acknowledged completions. On timeout the
    /// workers are stopped and the test fails with their reports.
    pub async fn wait_completed(&mut self, n: usize, timeout: Duration) {
        let mut rx = self.done_rx.clone();
        // (The watch guard returned on success is dropped at the end of this statement.)
        let reached = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await,
            Ok(Ok(_))
        );
        if !reached {
            let got = self.completed();
            let workers = std::mem::take(&mut self.workers);
            let mut summary = String::new();
            for w in workers {
                let (agent, rep) = stop(w).await;
                summary.push_str(&format!(
                    "\n  {}: completed {:?}, violations {:?}; recent frames:{}",
                    rep.agent_id,
                    rep.completed,
                    rep.violations,
                    agent.recent()
                ));
            }
            panic!("timed out after {timeout:?}: {got} of {n} tasks completed{summary}");
        }
    }

    /// Stops every worker and returns the agents with their reports, in spawn order.
    /// Fails the test if any worker recorded a violation.
    pub async fn stop(self) -> Vec<(Agent, WorkerReport)> {
        let mut out = Vec::new();
        for w in self.workers {
            out.push(stop(w).await);
        }
        let violations: Vec<&String> = out.iter().flat_map(|(_, r)| &r.violations).collect();
        assert!(violations.is_empty(), "worker violations: {violations:#?}");
        out
    }
}

/// Every id completed exactly once over all workers, and nothing else completed.
pub fn assert_each_completed_once(reports: &[&WorkerReport], ids: &[String]) {
    let mut seen = HashSet::with_capacity(ids.len());
    for rep in reports {
        for id in &rep.completed {
            assert!(seen.insert(id.as_str()), "{id} completed twice");
        }
    }
    let expected: HashSet<&str> = ids.iter().map(String::as_str).collect();
    if seen != expected {
        let missing: Vec<&&str> = expected.difference(&seen).take(10).collect();
        let unexpected: Vec<&&str> = seen.difference(&expected).take(10).collect();
        panic!(
            "completed set differs from submitted set: {} completed, {} submitted; \
             missing (first 10) {missing:?}, not submitted (first 10) {unexpected:?}",
            seen.len(),
            expected.len()
        );
    }
}

async fn stop(w: Worker) -> (Agent, WorkerReport) {
    let _ = w.stop.send(());
    match tokio::time::timeout(Duration::from_secs(30), w.handle).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("worker task failed: {e}"),
        Err(_) => panic!("worker did not stop within 30 s"),
    }
}

/// Sleeps until `at`; with no deadline, never resolves. The same helper as
/// `switchyard::wait::sleep_until`, kept apart on purpose: the harness treats the hub as a black
/// box (a binary it talks to over sockets) and imports nothing from its library.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn run(
    mut agent: Agent,
    opts: WorkerOpts,
    done: watch::Sender<usize>,
    mut stop: oneshot::Receiver<()>,
) -> (Agent, WorkerReport) {
    let mut st = State {
        rep: WorkerReport {
            agent_id: agent.id.clone(),
            ..WorkerReport::default()
        },
        holding: None,
        awaiting_ack: HashSet::new(),
        work: opts.work,
    };
    // Keep the connection alive like a real sidecar (the hub closes silent connections).
    let mut keepalive = tokio::time::interval(Duration::from_secs(15));
    keepalive.tick().await;

    for (at, v) in agent.take_stash() {
        st.handle(&mut agent, v, at, &done).await;
    }
    loop {
        let due = st
            .holding
            .as_ref()
            .and_then(|h| if h.accepted { h.complete_at } else { None });
        tokio::select! {
            _ = &mut stop => break,
            _ = keepalive.tick() => agent.send(json!({"type": "ping"})).await,
            _ = sleep_until(due) => st.send_complete(&mut agent).await,
            incoming = agent.next_incoming(Duration::from_secs(3600)) => match incoming {
                Some(Incoming::Json(v)) => st.handle(&mut agent, v, Instant::now(), &done).await,
                other => {
                    st.rep.violations.push(format!(
                        "{}: connection ended or sent a non-JSON frame: {other:?}",
                        agent.id
                    ));
                    break;
                }
            },
        }
    }
    (agent, st.rep)
}

struct State {
    rep: WorkerReport,
    holding: Option<Held>,
    awaiting_ack: HashSet<String>,
    work: Duration,
}

impl State {
    async fn send_complete(&mut self, agent: &mut Agent) {
        let Some(h) = self.holding.take() else { return };
        agent
            .send(json!({
                "type": "task_complete",
                "task_id": h.task_id,
                "generation": h.generation,
                "result": {"by": agent.id, "task_id": h.task_id}
            }))
            .await;
        self.awaiting_ack.insert(h.task_id);
    }

    async fn handle(
        &mut self,
        agent: &mut Agent,
        v: Value,
        at: Instant,
        done: &watch::Sender<usize>,
    ) {
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "task_assign" => {
                let a = Assign::parse(&v, at);
                if let Some(h) = &self.holding {
                    if h.task_id == a.task_id && h.generation == a.generation {
                        // The same assignment pushed again: nothing new to do.
                        return;
                    }
                    self.rep.violations.push(format!(
                        "{}: task_assign {} (generation {}) arrived while still holding {} \
                         (generation {}, task_complete not sent yet)",
                        agent.id, a.task_id, a.generation, h.task_id, h.generation
                    ));
                }
                if !self.awaiting_ack.is_empty() {
                    self.rep.assigns_before_ack += 1;
                }
                let work = a
                    .metadata
                    .get("work_ms")
                    .and_then(Value::as_u64)
                    .map_or(self.work, Duration::from_millis);
                self.holding = Some(Held {
                    task_id: a.task_id.clone(),
                    generation: a.generation,
                    accepted: false,
                    complete_at: None,
                    work,
                });
                agent
                    .send(json!({
                        "type": "task_accepted",
                        "task_id": a.task_id,
                        "generation": a.generation
                    }))
                    .await;
                self.rep.assigned.push(a);
            }
            "task_ack" => {
                let id = v.get("task_id").and_then(Value::as_str).unwrap_or("");
                match v.get("status").and_then(Value::as_str) {
                    Some("accepted") => {
                        match &mut self.holding {
                            Some(h) if h.task_id == id && !h.accepted => {
                                h.accepted = true;
                                h.complete_at = Some(Instant::now() + h.work);
                            }
                            _ => self
                                .rep
                                .violations
                                .push(format!("{}: unexpected accepted ack {v}", agent.id)),
                        }
                        if self
                            .holding
                            .as_ref()
                            .is_some_and(|h| h.accepted && h.work.is_zero())
                        {
                            self.send_complete(agent).await;
                        }
                    }
                    Some("complete") if self.awaiting_ack.remove(id) => {
                        self.rep.completed.push(id.to_string());
                        done.send_modify(|c| *c += 1);
                    }
                    _ => self
                        .rep
                        .violations
                        .push(format!("{}: unexpected ack {v}", agent.id)),
                }
            }
            "pong" => {}
            "task_cancel" => {
                let id = v.get("task_id").and_then(Value::as_str).unwrap_or("");
                if self.holding.as_ref().is_some_and(|h| h.task_id == id) {
                    self.holding = None;
                }
                self.rep.cancelled.push(id.to_string());
            }
            _ => self
                .rep
                .violations
                .push(format!("{}: unexpected frame {v}", agent.id)),
        }
    }
}

/// Every `task_assign` the workers received, oldest first (arrival time, then task id).
pub fn assignments_in_order(reports: &[&WorkerReport]) -> Vec<(Instant, String)> {
    let mut all: Vec<(Instant, String)> = reports
        .iter()
        .flat_map(|r| r.assigned.iter().map(|a| (a.at, a.task_id.clone())))
        .collect();
    all.sort();
    all
}
