//! Shadow runs: a candidate policy fed the same events as the policy in force and asked to
//! decide at the same moments, whose proposals are judged and counted but never applied.
//!
//! # Where its time goes
//!
//! The candidate runs on a thread of its own, fed by a bounded channel; the engine thread only
//! ever `try_send`s to it. Running it on the engine thread, even under a strict deadline, would
//! add its latency to every decision pass and its every event to every command, so a slow
//! candidate would slow service; here the engine's cost is one clone and one channel send per
//! event while a shadow is set, and one branch when none is. A candidate that cannot keep up
//! fills its channel ([`QUEUE_CAPACITY`] events): the engine then stops it and reports it as
//! fallen behind, rather than wait for it or drop events (after which its view of the live
//! state, and so every comparison, would be wrong). The thread runs at the lowest priority
//! ([`NICE`]): when cores are short, a busy or stuck candidate gets only what service leaves
//! (on a loaded two-core machine, a candidate looping in `decide` got 37 ms of CPU time in each
//! 2 s call; BENCHMARKS.md, "Shadow runs", has the figures).
//!
//! # Its own budget and breaker
//!
//! Each call into the candidate runs under the policy host's memory cap and an epoch deadline
//! of its own, [`CALL_DEADLINE`]: longer than the policy in force's, because a thread at the
//! lowest priority may wait for a CPU that long on a busy machine without being stuck, and a
//! stuck one costs service nothing at that priority. On top of that the run has a budget: its
//! successful calls may use [`TIME_BUDGET`] of CPU time in each second, or the run stops (over
//! budget); CPU time rather than wall time, for the same reason. A call that traps or times
//! out costs a fresh instance, into which the thread replays the live state as it knows it;
//! [`BREAKER_FAILURES`] failures within [`BREAKER_WINDOW`] stop the run (failing). A run never
//! falls back to another policy ([`PolicyHost::restart_without_fallback`]): it stops, and its
//! report says why.
//!
//! # Judging
//!
//! The thread keeps its own copy of the queued tasks and ready agents ([`mirror`]), built from
//! the events, and judges the candidate's proposals with the host's own check
//! ([`crate::policy::check_proposal`]) against it, at the moment the live policy was asked.
//! Then it tells the candidate what the live policy's proposals led to (`assigned`), as the
//! live policy is told: both always know the same state.
//!
//! Stopping is instant for the engine: it drops its end of the channel and raises a flag the
//! thread reads before each event; a call the thread is in finishes by its deadline. A shadow
//! run lives in memory only: a restart of the hub ends it.

mod mirror;
mod report;
mod thread;

pub use report::{Agreement, GroupShare, ShadowReport, Stopped};
pub use thread::NICE;

use crate::policy::{AgentId, AgentView, Outcome, PolicyHost, TaskId, TaskView};
use crate::wire::http::ShadowStopReason;
use crate::wire::now_ms;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mirror::Mirror;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thread::{lower_priority, thread_cpu_time};

/// Events the engine may be ahead of the shadow by before the run is stopped as fallen behind.
pub const QUEUE_CAPACITY: usize = 65_536;

/// How much CPU time the candidate's successful calls may take in each second.
pub const TIME_BUDGET: Duration = Duration::from_millis(250);

/// How long one call into the candidate may run (wall-clock time, as the policy host measures
/// it) before it is stopped as stuck. Longer than the policy in force's
/// ([`crate::policy::CALL_DEADLINE`]): the shadow's thread runs at the lowest priority, and on
/// a busy machine a healthy call may wait that long for a CPU; a call that really is stuck
/// spins at that priority, taking only what service leaves.
pub const CALL_DEADLINE: Duration = Duration::from_secs(2);

/// Failed calls within [`BREAKER_WINDOW`] that stop the run. The same as the policy in force's
/// breaker, and checked before the policy host's own would switch to its native fallback.
pub const BREAKER_FAILURES: usize = crate::policy::BREAKER_FAILURES;

/// The window the shadow's breaker counts failures in.
pub const BREAKER_WINDOW: Duration = crate::policy::BREAKER_WINDOW;

/// What the engine tells the shadow thread.
enum Event {
    TaskQueued(TaskView),
    TaskDequeued(TaskId),
    AgentReady(AgentView),
    AgentUnready(AgentId),
    TaskFinished(TaskId, AgentId, Outcome, u64),
    /// A decision pass: the live policy was asked at `now`, and its proposals led to
    /// `assigned`. `agents_known` is how many agent handles the host has given out.
    Pass {
        now: u64,
        assigned: Vec<(TaskId, AgentId)>,
        agents_known: u32,
    },
    /// A tenant was created or its weight changed.
    TenantWeight(String, f64),
    /// A tenant was deleted.
    TenantRemoved(String),
    /// The live state was reloaded (a failed commit): forget everything and start from this.
    Resync {
        tenants: Vec<(String, f64)>,
        tasks: Vec<TaskView>,
        agents: Vec<AgentView>,
    },
}

/// What the engine thread and the shadow thread share.
struct Shared {
    report: Mutex<ShadowReport>,
    /// Raised when the run is removed or stops: the thread ends before its next event.
    stop: AtomicBool,
}

impl Shared {
    fn report(&self) -> std::sync::MutexGuard<'_, ShadowReport> {
        // A panic on the shadow thread cannot leave the report half-written (each update is a
        // few field writes), so a poisoned lock's contents are still worth reading.
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The engine's end of a shadow run.
pub struct Shadow {
    /// `None` once the run stopped: nothing more is sent.
    events: Option<Sender<Event>>,
    shared: Arc<Shared>,
}

impl Shadow {
    /// Starts a run of `policy` (already loaded, off the engine thread) from the live state:
    /// the tenants' weights, the queued tasks in replay order and the ready agents in line.
    /// `source` is how the report names where the policy came from.
    pub fn start(
        mut policy: PolicyHost,
        source: String,
        tenants: Vec<(String, f64)>,
        tasks: Vec<TaskView>,
        agents: Vec<AgentView>,
    ) -> Shadow {
        policy.set_call_deadline(CALL_DEADLINE);
        let report = ShadowReport::new(policy.status(), source, now_ms());
        let shared = Arc::new(Shared {
            report: Mutex::new(report),
            stop: AtomicBool::new(false),
        });
        let (events, inbox) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        let mut shadow = Shadow {
            events: Some(events),
            shared: shared.clone(),
        };
        let runner = Runner::new(policy, shared);
        let spawned = std::thread::Builder::new()
            .name("switchyard-shadow".into())
            .spawn(move || runner.run(inbox));
        match spawned {
            Ok(_) => shadow.send(Event::Resync {
                tenants,
                tasks,
                agents,
            }),
            Err(error) => {
                tracing::error!(%error, "cannot start the shadow thread");
                shadow.stop(
                    ShadowStopReason::Failing,
                    format!("its thread could not start: {error}"),
                );
            }
        }
        shadow
    }

    /// The report as it stands.
    pub fn report(&self) -> ShadowReport {
        self.shared.report().clone()
    }

    /// Ends the run at once (the thread finishes any call it is in by its deadline, then
    /// ends); the final report.
    pub fn remove(mut self) -> ShadowReport {
        self.events = None;
        self.shared.stop.store(true, Ordering::Relaxed);
        self.report()
    }

    pub fn task_queued(&mut self, task: &TaskView) {
        if self.events.is_some() {
            self.send(Event::TaskQueued(task.clone()));
        }
    }

    pub fn task_dequeued(&mut self, task: TaskId) {
        self.send(Event::TaskDequeued(task));
    }

    pub fn agent_ready(&mut self, agent: &AgentView) {
        if self.events.is_some() {
            self.send(Event::AgentReady(agent.clone()));
        }
    }

    pub fn agent_unready(&mut self, agent: AgentId) {
        self.send(Event::AgentUnready(agent));
    }

    pub fn task_finished(&mut self, task: TaskId, agent: AgentId, outcome: Outcome, held_ms: u64) {
        self.send(Event::TaskFinished(task, agent, outcome, held_ms));
    }

    pub fn pass(&mut self, now: u64, assigned: Vec<(TaskId, AgentId)>, agents_known: u32) {
        self.send(Event::Pass {
            now,
            assigned,
            agents_known,
        });
    }

    pub fn tenant_weight(&mut self, tenant: &str, weight: f64) {
        if self.events.is_some() {
            self.send(Event::TenantWeight(tenant.to_string(), weight));
        }
    }

    pub fn tenant_removed(&mut self, tenant: &str) {
        if self.events.is_some() {
            self.send(Event::TenantRemoved(tenant.to_string()));
        }
    }

    pub fn resync(
        &mut self,
        tenants: Vec<(String, f64)>,
        tasks: Vec<TaskView>,
        agents: Vec<AgentView>,
    ) {
        self.send(Event::Resync {
            tenants,
            tasks,
            agents,
        });
    }

    /// Sends without ever waiting: a full channel stops the run.
    fn send(&mut self, event: Event) {
        let Some(events) = &self.events else { return };
        match events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.stop(
                ShadowStopReason::FellBehind,
                format!("the live policy got {QUEUE_CAPACITY} events ahead of it"),
            ),
            // The thread ended: it stopped the run itself and said why.
            Err(TrySendError::Disconnected(_)) => self.events = None,
        }
    }

    fn stop(&mut self, reason: ShadowStopReason, detail: String) {
        tracing::warn!(%reason, %detail, "shadow policy stopped");
        self.events = None;
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.report().stop(reason, detail, now_ms());
    }
}

/// The shadow thread: the candidate, what it knows, and its budget and breaker.
struct Runner {
    policy: PolicyHost,
    mirror: Mirror,
    shared: Arc<Shared>,
    /// Failed calls within the breaker's window, oldest first.
    failures: VecDeque<Instant>,
    /// The start of the current budget second, and the call time spent in it.
    budget_since: Instant,
    budget_spent: Duration,
    traps: u64,
    timeouts: u64,
    restarts: u64,
    /// Whether the instance has been told nothing yet (the one `start` was given).
    fresh: bool,
    stopped: bool,
}

impl Runner {
    fn new(policy: PolicyHost, shared: Arc<Shared>) -> Runner {
        Runner {
            policy,
            mirror: Mirror::default(),
            shared,
            failures: VecDeque::new(),
            budget_since: Instant::now(),
            budget_spent: Duration::ZERO,
            traps: 0,
            timeouts: 0,
            restarts: 0,
            fresh: true,
            stopped: false,
        }
    }

    fn run(mut self, inbox: Receiver<Event>) {
        lower_priority();
        while let Ok(event) = inbox.recv() {
            if self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            self.handle(event);
            if self.stopped {
                break;
            }
        }
        // Dropping the receiver tells the engine the run is over, if it did not know.
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::TaskQueued(task) => {
                self.call(|p| p.task_queued(&task));
                self.mirror.task_queued(task);
            }
            // The call first, the mirror after: a call that must first restart the candidate
            // replays the mirror, which must not yet know of the event the call tells.
            Event::TaskDequeued(task) => {
                self.call(|p| p.task_dequeued(task));
                self.mirror.task_dequeued(task);
            }
            Event::AgentReady(agent) => {
                self.call(|p| p.agent_ready(&agent));
                self.mirror.agent_ready(agent);
            }
            Event::AgentUnready(agent) => {
                self.call(|p| p.agent_unready(agent));
                self.mirror.agent_unready(agent);
            }
            Event::TaskFinished(task, agent, outcome, held_ms) => {
                self.call(|p| p.task_finished(task, agent, outcome, held_ms));
                self.mirror.task_finished(task);
            }
            Event::Pass {
                now,
                assigned,
                agents_known,
            } => self.pass(now, assigned, agents_known),
            Event::TenantWeight(tenant, weight) => {
                self.call(|p| p.tenant_weight(&tenant, weight));
                self.mirror.tenant_weight(tenant, weight);
            }
            Event::TenantRemoved(tenant) => {
                self.call(|p| p.tenant_removed(&tenant));
                self.mirror.tenant_removed(&tenant);
            }
            Event::Resync {
                tenants,
                tasks,
                agents,
            } => {
                self.mirror = Mirror::default();
                for (tenant, weight) in tenants {
                    self.mirror.tenant_weight(tenant, weight);
                }
                for task in tasks {
                    self.mirror.task_queued(task);
                }
                for agent in agents {
                    self.mirror.agent_ready(agent);
                }
                if !self.fresh && !self.restart() {
                    return;
                }
                self.replay();
            }
        }
    }

    /// Asks the candidate, judges its answer against the live state, compares it with what the
    /// live policy's proposals led to, then tells both the candidate and the mirror those.
    fn pass(&mut self, now: u64, live: Vec<(TaskId, AgentId)>, agents_known: u32) {
        let proposals = self.call(|p| p.decide(now));
        match proposals {
            Some(proposals) => {
                let verdict = self.mirror.judge(&proposals, agents_known);
                let keyed = |pairs: &[(TaskId, AgentId)]| -> Vec<(TaskId, AgentId, String)> {
                    pairs
                        .iter()
                        .map(|&(t, a)| {
                            let key = self.mirror.fairness_key(t).unwrap_or_default();
                            (t, a, key.to_string())
                        })
                        .collect()
                };
                let live_keyed = keyed(&live);
                let shadow_keyed = keyed(&verdict.accepted);
                let latency = self.policy.status().counters.call_latency_us;
                let mut report = self.shared.report();
                report.compare(&live_keyed, &shadow_keyed, &verdict.refused);
                report.call_latency_us = latency;
            }
            None => self.shared.report().decisions_failed += 1,
        }
        for (task, agent) in live {
            self.call(|p| p.assigned(task, agent));
            self.mirror.assigned(task, agent);
        }
    }

    /// Runs one call on the candidate (a failed one first restarts it, if the breaker allows),
    /// charging its time to the budget. `None` when the call failed or the run stopped.
    fn call<R>(&mut self, f: impl FnOnce(&mut PolicyHost) -> R) -> Option<R> {
        if self.stopped {
            return None;
        }
        if self.policy.needs_replay() {
            if !self.restart() {
                return None;
            }
            self.replay();
            if self.stopped || self.policy.needs_replay() {
                return None;
            }
        }
        self.fresh = false;
        let (result, cpu) = self.guarded(f)?;
        self.charge(cpu);
        (!self.stopped).then_some(result)
    }

    /// Runs one call and measures the CPU time the thread spent in it; a failed call is
    /// counted (and may stop the run), and gives `None`.
    fn guarded<R>(&mut self, f: impl FnOnce(&mut PolicyHost) -> R) -> Option<(R, Duration)> {
        let started = Instant::now();
        let cpu_before = thread_cpu_time();
        let result = f(&mut self.policy);
        // Without a thread clock, wall time stands in for CPU time.
        let cpu = match (cpu_before, thread_cpu_time()) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => started.elapsed(),
        };
        if self.policy.needs_replay() {
            self.failed(cpu);
            return None;
        }
        Some((result, cpu))
    }

    /// A call failed (the policy host discarded the instance): count it, and stop the run if
    /// the breaker says so.
    fn failed(&mut self, cpu: Duration) {
        let counters = self.policy.status().counters;
        let timed_out = counters.timeouts > self.timeouts;
        self.traps = counters.traps;
        self.timeouts = counters.timeouts;
        let what = if timed_out {
            format!(
                "a call ran past its {} ms deadline ({} ms of CPU time)",
                self.policy.call_deadline().as_millis(),
                cpu.as_millis()
            )
        } else {
            "a call trapped".to_string()
        };
        {
            let mut report = self.shared.report();
            report.traps = self.traps;
            report.timeouts = self.timeouts;
        }
        tracing::warn!(failure = %what, "shadow policy call failed");
        let now = Instant::now();
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|&t| now.duration_since(t) > BREAKER_WINDOW)
        {
            self.failures.pop_front();
        }
        if self.failures.len() >= BREAKER_FAILURES {
            self.stop(
                ShadowStopReason::Failing,
                format!(
                    "{} failed calls within {} s; the last: {what}",
                    self.failures.len(),
                    BREAKER_WINDOW.as_secs()
                ),
            );
        }
    }

    /// Counts `cpu` against this second's budget; over it, the run stops.
    fn charge(&mut self, cpu: Duration) {
        if self.budget_since.elapsed() >= Duration::from_secs(1) {
            self.budget_since = Instant::now();
            self.budget_spent = Duration::ZERO;
        }
        self.budget_spent += cpu;
        if self.budget_spent > TIME_BUDGET {
            self.stop(
                ShadowStopReason::OverBudget,
                format!(
                    "its calls took {} ms of CPU time within one second (budget {} ms)",
                    self.budget_spent.as_millis(),
                    TIME_BUDGET.as_millis()
                ),
            );
        }
    }

    /// A fresh instance that knows nothing, unless the run stopped. Never the policy host's
    /// native fallback: a candidate that cannot be started again stops the run.
    fn restart(&mut self) -> bool {
        if self.stopped {
            return false;
        }
        if let Err(error) = self.policy.restart_without_fallback() {
            self.stop(
                ShadowStopReason::Failing,
                format!("the candidate cannot be started again: {error}"),
            );
            return false;
        }
        self.restarts += 1;
        self.shared.report().restarts = self.restarts;
        true
    }

    /// Tells a fresh instance the live state as the mirror knows it. A failure part-way
    /// leaves the instance discarded; the next call restarts it again (or the breaker stops
    /// the run). A replay is not charged to the budget: it happens once per start or
    /// failure (and failures are bounded by the breaker), and its length is the queue's.
    fn replay(&mut self) {
        self.fresh = false;
        let tenants: Vec<(String, f64)> = self
            .mirror
            .tenant_weights()
            .map(|(name, weight)| (name.to_string(), weight))
            .collect();
        for (tenant, weight) in &tenants {
            if self.guarded(|p| p.tenant_weight(tenant, *weight)).is_none() || self.halted() {
                return;
            }
        }
        let (tasks, agents) = self.mirror.replay_order();
        let tasks: Vec<TaskView> = tasks.into_iter().cloned().collect();
        let agents: Vec<AgentView> = agents.cloned().collect();
        for task in &tasks {
            if self.guarded(|p| p.task_queued(task)).is_none() || self.halted() {
                return;
            }
        }
        for agent in &agents {
            if self.guarded(|p| p.agent_ready(agent)).is_none() || self.halted() {
                return;
            }
        }
    }

    /// Whether the run stopped, on its own or removed.
    fn halted(&self) -> bool {
        self.stopped || self.shared.stop.load(Ordering::Relaxed)
    }

    fn stop(&mut self, reason: ShadowStopReason, detail: String) {
        tracing::warn!(%reason, %detail, "shadow policy stopped");
        self.stopped = true;
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.report().stop(reason, detail, now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread, from `/proc/thread-self/stat` (field 19).
    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read own stat");
        // The command name (field 2) may hold spaces; the fields after its `)` are plain.
        let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
        after_name
            .split(' ')
            .nth(16)
            .expect("field 19")
            .parse()
            .expect("a number")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_shadow_thread_alone_runs_at_the_lower_priority() {
        let before = own_nice();
        let lowered = std::thread::spawn(|| {
            lower_priority();
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, before + NICE);
        assert_eq!(own_nice(), before, "only the shadow's thread is lowered");
    }
}
