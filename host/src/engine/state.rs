//! The one owner of scheduling state: live tasks, agents and their connections, timers and
//! the policy feed. It applies a batch of commands in memory, asks the policy for decisions,
//! and collects what to write, to answer and to push; `seal` hands that to the writer
//! (`engine::writer`), which commits it and only then lets the answers and pushes out.
//!
//! The work is split by what it is about, each an `impl EngineState` of its own:
//! `roster` (agents and their connections), `reports` (what agents say of their tasks),
//! `requests` (what HTTP callers ask), `lifecycle` (task transitions shared by those),
//! `deadlines` (timers firing) and `schedule` (decision passes).

use crate::engine::agent::{Agent, Connection, Holding};
use crate::engine::command::{Command, EngineError, Reply};
use crate::engine::config::EngineConfig;
use crate::engine::events::EventHub;
use crate::engine::feed::PolicyFeed;
use crate::engine::outbox::{Outbound, Outbox};
use crate::engine::stats::EngineStats;
use crate::engine::tally::Tally;
use crate::engine::tenants::TenantTable;
use crate::engine::timers::{Timer, Timers};
use crate::engine::writer::{Batch, Committed, Deferred, Writes};
use crate::policy::PolicyHost;
use crate::store::{self, Store, TaskWrite};
use crate::task::{Task, TaskStatus};
use crate::wire::agent::{CloseReason, ServerMessage};
use crate::wire::events::{Event, PolicyChange, TaskEvent};
use crate::wire::TaskId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub struct EngineState {
    pub(super) store: Arc<Store>,
    pub(super) config: EngineConfig,
    pub(super) feed: PolicyFeed,
    /// Queued and assigned tasks (and finished tasks, until the batch that finished them is
    /// committed: until then the store does not know they finished).
    /// Boxed: a task is a few hundred bytes, and a hash table keeps up to twice as many slots
    /// as entries, so unboxed the empty slots alone would cost hundreds of megabytes with a
    /// million tasks queued (see BENCHMARKS.md).
    pub(super) tasks: HashMap<TaskId, Box<Task>>,
    /// Tasks changed in this batch, with their status before it (None: new).
    pub(super) dirty: HashMap<TaskId, Option<TaskStatus>>,
    pub(super) agents: HashMap<String, Agent>,
    /// Agent id by handle.
    pub(super) agent_ids: Vec<String>,
    pub(super) timers: Timers,
    pub(super) next_seq: u64,
    /// Counters shared with the [`Engine`](super::Engine) handle, for `/metrics`.
    pub(super) stats: Arc<EngineStats>,
    /// What the open batch owes: frames and closes to push, answers, durable writes.
    pub(super) pushes: Vec<(Outbox, Outbound)>,
    pub(super) deferred: Vec<Deferred>,
    pub(super) writes: Writes,
    /// Agents whose token revocation is not committed yet. Their tokens are still in the store
    /// until it is, so identification checks this too.
    pub(super) revoking: HashSet<String>,
    /// The audit record of the command being applied, written with the batch if it succeeds.
    pub(super) auditing: Option<crate::wire::http::AuditRecord>,
    /// Events of the open batch other than task changes (those are taken at sealing), published
    /// once it is committed.
    pub(super) events: Vec<Event>,
    pub(super) hub: Arc<EventHub>,
    /// Every tenant, its live counts and its submit-rate bucket (`engine::tenants`).
    pub(super) tenants: TenantTable,
    /// Running counts for the `stats` event.
    pub(super) tally: Tally,
    /// Agents whose state may have changed in this batch (`engine::observe`).
    pub(super) touched_agents: Vec<u32>,
    /// Whether the policy in force had fallen back when last reported.
    pub(super) policy_fallback: bool,
}

impl EngineState {
    /// Loads the live state from the store and replays it into the policy.
    pub fn load(
        store: Arc<Store>,
        policy: PolicyHost,
        config: EngineConfig,
        stats: Arc<EngineStats>,
        now: u64,
    ) -> Result<EngineState, store::StoreError> {
        let mut state = EngineState {
            store,
            config: config.clone(),
            feed: PolicyFeed::new(policy),
            tasks: HashMap::new(),
            dirty: HashMap::new(),
            agents: HashMap::new(),
            agent_ids: Vec::new(),
            timers: Timers::default(),
            next_seq: 1,
            stats,
            pushes: Vec::new(),
            deferred: Vec::new(),
            writes: Writes::default(),
            revoking: HashSet::new(),
            events: Vec::new(),
            hub: Arc::new(EventHub::new(config.event_ring, config.event_buffer)),
            auditing: None,
            tenants: TenantTable::default(),
            tally: Tally::default(),
            touched_agents: Vec::new(),
            policy_fallback: false,
        };
        let started = std::time::Instant::now();
        state.load_live_state(now)?;
        let loaded = started.elapsed();
        state.replay_policy();
        if state.feed.status().startup_fallback.is_some() {
            state.policy_event(PolicyChange::StartupFallback);
        }
        tracing::info!(
            tasks = state.tasks.len(),
            load_ms = loaded.as_millis() as u64,
            replay_ms = (started.elapsed() - loaded).as_millis() as u64,
            "live state loaded and replayed into the policy"
        );
        Ok(state)
    }

    /// Rebuilds tasks, agents' holdings and timers from what is committed. Agents are all
    /// offline here, so each one holding a task gets its reconnect grace from `now`.
    fn load_live_state(&mut self, now: u64) -> Result<(), store::StoreError> {
        let txn = self.store.read_txn()?;
        let next_seq = self.store.next_seq(&txn)?;
        let records = self.store.agents(&txn)?;
        let tasks = self.store.active_tasks(&txn)?;
        let tenants = self.store.tenants(&txn)?;
        let counts = self.store.stats(&txn)?;
        drop(txn);
        // The policy is told these first when the state is replayed into it.
        self.feed
            .set_tenants(tenants.iter().map(|t| (t.name.clone(), t.weight)));
        self.tenants.load(tenants, now);
        self.tally.reset(&counts.by_status, counts.by_priority);
        self.next_seq = next_seq;
        for record in records {
            let agent = self.agent_entry(&record.agent_id, now);
            agent.name = record.name;
            agent.capabilities = record.capabilities;
        }
        self.timers.clear();
        self.tasks.clear();
        self.tasks.reserve(tasks.len());
        let mut run_watched = Vec::new();
        for task in tasks {
            if let Some(at) = task.complete_by {
                self.timers.at(at, Timer::Deadline { task: task.id });
            }
            if let (TaskStatus::Assigned, Some(holder)) = (task.status, task.assigned_to.clone()) {
                if task.accepted_at.is_none() {
                    // A fresh acceptance window: the agent may come back and be pushed the
                    // task again, and must then accept it in time like any other.
                    self.timers.at(
                        now + self.config.acceptance_timeout_ms,
                        Timer::Acceptance {
                            task: task.id,
                            generation: task.generation,
                        },
                    );
                }
                if task.accepted_at.is_some() {
                    run_watched.push(task.id);
                }
                self.agent_entry(&holder, now);
                let agent = self.agents.get_mut(&holder).expect("just made");
                agent.holding = match task.accepted_at {
                    Some(_) => Holding::Working(task.id),
                    None => Holding::Assigned(task.id),
                };
                // Charged by agent time from its assignment, not from the restart.
                agent.held_since = task.assigned_at.unwrap_or(now);
                agent.touch(&mut self.touched_agents);
                let disconnects = agent.disconnects;
                self.timers.at(
                    now + self.config.reconnect_grace_ms,
                    Timer::Grace {
                        agent: holder,
                        disconnects,
                    },
                );
            }
            self.tasks.insert(task.id, task);
        }
        self.tenants.recount(self.tasks.values().map(|t| &**t));
        for id in run_watched {
            self.watch_run(id, now);
        }
        self.timers.at(now, Timer::Purge);
        if self.config.stats_interval_ms > 0 {
            self.timers
                .at(now + self.config.stats_interval_ms, Timer::Stats);
        }
        for agent in self.agents.values_mut() {
            agent.capability_handles = self.feed.intern(&agent.capabilities);
        }
        Ok(())
    }

    /// Once the capability table has grown enough ([`PolicyFeed::needs_sweep`]), rebuilds it
    /// from the names in use: connected agents' and queued tasks'. Offline agents lose their
    /// handles (they get new ones when they identify again, the only way to become ready),
    /// and the policy, whose handles all change, gets a fresh instance told the live state.
    /// Without this, agents naming ever new capabilities would grow the table forever.
    fn sweep_capabilities(&mut self) {
        if self.feed.needs_sweep() {
            let before = self.feed.names();
            self.feed.forget_names();
            let mut ready = HashMap::new();
            for agent in self.agents.values_mut() {
                agent.capability_handles = if agent.connection.is_some() {
                    self.feed.intern(&agent.capabilities)
                } else {
                    Vec::new()
                };
                if agent.ready {
                    ready.insert(agent.handle, agent.capability_handles.clone());
                }
            }
            self.feed
                .renumber(&ready, self.tasks.values().map(|t| &**t));
            tracing::info!(
                before,
                after = self.feed.names(),
                "capability names no longer in use were released"
            );
        }
        self.stats.set_capability_names(self.feed.names());
    }

    /// Tells the policy (a fresh instance, if the last one failed) the whole live state.
    pub(super) fn replay_policy(&mut self) {
        self.feed.replay(self.tasks.values().map(|t| &**t));
    }

    /// When the earliest timer fires.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.next()
    }

    /// Applies a batch: commands, due timers, one scheduling pass. Then `seal`.
    pub fn apply(&mut self, batch: Vec<Command>, now: u64) {
        for command in batch {
            self.command(command, now);
        }
        while let Some(timer) = self.timers.pop_due(now) {
            self.timer(timer, now);
        }
        self.sweep_capabilities();
        self.schedule(now);
        self.settle_agents(now);
        self.check_fallback();
        #[cfg(test)]
        self.check_invariants();
    }

    /// What the tests of the engine hold after every batch: the policy has been told exactly
    /// the queued tasks and ready agents there are, and agents and tasks agree on who holds
    /// what.
    #[cfg(test)]
    fn check_invariants(&self) {
        let queued = self
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Queued)
            .count();
        let ready = self.agents.values().filter(|a| a.ready).count();
        assert_eq!(
            self.feed.counts(),
            (queued, ready),
            "the feed's counts drifted"
        );
        let mut recounted = crate::engine::tenants::TenantTable::default();
        recounted.recount(self.tasks.values().map(|t| &**t));
        let tenants: HashSet<&str> = self.tasks.values().map(|t| t.tenant.as_str()).collect();
        for tenant in tenants {
            assert_eq!(
                self.tenant_counts(tenant),
                recounted.counts(tenant),
                "the counts of tenant {tenant} drifted"
            );
        }
        for agent in self.agents.values() {
            if agent.ready {
                assert!(agent.connection.is_some() && agent.holding == Holding::Nothing);
            }
            if let Some(id) = agent.holding.task() {
                let task = &self.tasks[&id];
                assert_eq!(
                    task.status,
                    TaskStatus::Assigned,
                    "{id} held but not assigned"
                );
                assert_eq!(task.assigned_to.as_deref(), Some(agent.agent_id.as_str()));
            }
        }
        for task in self.tasks.values() {
            if task.status == TaskStatus::Assigned {
                let holder = task
                    .assigned_to
                    .as_deref()
                    .expect("an assigned task has a holder");
                assert_eq!(self.agents[holder].holding.task(), Some(task.id));
            }
        }
    }

    /// Takes what the batch applied so far writes and owes, for the writer to commit.
    /// Finished tasks stay in memory until the report of that commit (`committed`).
    pub fn seal(&mut self) -> Batch {
        let dirty = std::mem::take(&mut self.dirty);
        let mut tasks = Vec::with_capacity(dirty.len());
        let mut finished = Vec::new();
        let mut events = std::mem::take(&mut self.events);
        for (id, previous) in dirty {
            if let Some(task) = self.tasks.get(&id) {
                self.tally.moved(task.priority, previous, task.status);
                tasks.push(TaskWrite::new(task, previous));
                self.tenants.moved(&task.tenant, previous, task.status);
                events.push(task_event(task));
                if !task.status.is_active() {
                    finished.push(id);
                }
            }
        }
        Batch {
            tasks,
            finished,
            writes: std::mem::take(&mut self.writes),
            pushes: std::mem::take(&mut self.pushes),
            deferred: std::mem::take(&mut self.deferred),
            events,
            hub: Some(self.hub.clone()),
        }
    }

    /// Takes the writer's report of a sealed batch. If its commit failed, nothing of it was
    /// kept, and the batch applied since builds on it: that one is refused too, every
    /// connection is closed (agents reconnect and recover their tasks), and the live state is
    /// reloaded from what is on disk.
    pub fn committed(&mut self, report: Committed, now: u64) {
        if let Err(error) = report.result {
            tracing::error!(%error, "commit failed; refusing the batch and reloading from disk");
            self.seal().refuse();
            // Every revocation not committed was refused with its batch.
            self.revoking.clear();
            let restored = self.feed.swap_refused();
            if restored {
                tracing::warn!("the policy swap was not committed; the previous policy is back");
            }
            self.drop_all_connections();
            if let Err(error) = self.load_live_state(now) {
                tracing::error!(%error, "reloading the live state failed");
            }
            // The instance has seen events of the refused batches: start it afresh.
            self.feed.restart();
            self.replay_policy();
            self.feed.resync_shadow(self.tasks.values().map(|t| &**t));
            if restored {
                self.policy_event(PolicyChange::Restored);
            }
            return;
        }
        if self.writes.policy.is_none() {
            self.feed.swap_committed();
        }
        for agent_id in &report.revoked {
            // Unless the open batch revokes the agent again.
            if !self.writes.revoked.contains(agent_id) {
                self.revoking.remove(agent_id);
            }
        }
        for (status, n) in report.purged.by_status() {
            self.tally.purged(status, n);
        }
        if report.purged.more && self.config.retention_ms > 0 {
            // More is due: the next batch prunes again, a bounded step at a time.
            self.writes.purge_before = Some(now.saturating_sub(self.config.retention_ms));
        }
        for id in report.finished {
            // A task changed again since (a dead letter retried) is live, or waits for the
            // commit of the batch that changed it.
            let settled = self.tasks.get(&id).is_some_and(|t| !t.status.is_active())
                && !self.dirty.contains_key(&id);
            if settled {
                self.tasks.remove(&id);
            }
        }
    }

    fn drop_all_connections(&mut self) {
        for agent in self.agents.values_mut() {
            if let Some(connection) = agent.connection.take() {
                connection
                    .outbox
                    .control(Outbound::Close(CloseReason::StorageUnavailable));
                agent.disconnects += 1;
            }
            agent.ready = false;
            agent.holding = Holding::Nothing;
        }
        self.touch_all_agents();
        self.feed.no_agent_ready();
        self.stats.set_connected(0);
    }

    fn command(&mut self, command: Command, now: u64) {
        match command {
            Command::Identify {
                conn,
                accepted_at,
                peer,
                outbox,
                identify,
                done,
            } => {
                let connection = Connection {
                    id: conn,
                    outbox,
                    connected_at: accepted_at,
                    peer,
                };
                self.identify(connection, identify, done, now)
            }
            Command::Message {
                conn,
                agent,
                outbox,
                message,
            } => self.message(conn, &agent, &outbox, message, now),
            Command::Alive { conn, agent } => self.alive(conn, &agent, now),
            Command::Disconnected { conn, agent } => self.disconnected(conn, &agent, now),
            Command::Submit {
                tasks,
                submitted_by,
                tenant,
                reply,
            } => {
                let submitted = self.submit(tasks, &submitted_by, &tenant, now);
                self.answer(reply, submitted);
            }
            Command::Cancel { task, reply } => {
                let result = self.cancel(task, now);
                self.answer(reply, result);
            }
            Command::Requeue { task, reply } => {
                let result = self.requeue_by_hand(task, now);
                self.answer(reply, result);
            }
            Command::RetryDeadLetter { task, reply } => {
                let result = self.retry_dead_letter(task, now);
                self.answer(reply, result);
            }
            Command::CreateToken { request, reply } => {
                let token = self.create_token(request, now);
                self.answer(reply, token);
            }
            Command::RevokeTokens {
                agent_id,
                prefix,
                reply,
            } => {
                let result = self.revoke(&agent_id, prefix.as_deref());
                self.answer(reply, result);
            }
            Command::RotateAdmin { reply } => {
                let result = self.rotate_admin(now);
                self.answer(reply, result);
            }
            Command::Audited {
                mut record,
                command,
            } => {
                record.at = now;
                self.auditing = Some(record);
                self.command(*command, now);
                self.auditing = None;
            }
            Command::CreateTenant { tenant, reply } => {
                let result = self.create_tenant(tenant, now);
                self.answer(reply, result);
            }
            Command::UpdateTenant { name, patch, reply } => {
                let result = self.update_tenant(&name, &patch, now);
                self.answer(reply, result);
            }
            Command::DeleteTenant { name, reply } => {
                let result = self.delete_tenant(&name);
                self.answer(reply, result);
            }
            Command::ListTenants { reply } => {
                let tenants = self.tenant_views();
                self.answer(reply, Ok(tenants));
            }
            Command::ListAgents { reply } => {
                let agents = self.summaries(false);
                self.answer(reply, Ok(agents));
            }
            Command::PolicyStatus { reply } => {
                let status = self.feed.status();
                self.answer(reply, Ok(status));
            }
            Command::SwapPolicy {
                policy,
                persisted,
                upload,
                reply,
            } => {
                tracing::info!(source = %persisted.source, "swapping the policy");
                self.feed.swap(*policy);
                self.replay_policy();
                self.writes.policy = Some((persisted, upload));
                self.policy_event(PolicyChange::Swapped);
                let status = self.feed.status();
                self.answer(reply, Ok(status));
            }
            Command::StartShadow {
                policy,
                source,
                reply,
            } => {
                tracing::info!(%source, "starting a shadow run");
                let tasks = self.tasks.values().map(|t| &**t);
                let report = self.feed.start_shadow(*policy, source, tasks);
                self.answer(reply, Ok(report));
            }
            Command::ShadowReport { reply } => {
                let report = self.feed.shadow_report();
                self.answer(reply, Ok(report));
            }
            Command::StopShadow { reply } => {
                let report = self.feed.remove_shadow();
                if report.is_some() {
                    tracing::info!("shadow run removed");
                }
                self.answer(reply, Ok(report));
            }
        }
    }

    /// Answers a request once the batch is committed.
    pub(super) fn answer<T: Send + 'static>(
        &mut self,
        reply: Reply<T>,
        result: Result<T, EngineError>,
    ) {
        if let Some(record) = self.auditing.take() {
            if result.is_ok() {
                self.writes.audit.push(record);
            }
        }
        self.deferred.push(Box::new(move |committed| {
            let _ = reply.send(committed.and(result));
        }));
    }

    pub(super) fn push(&mut self, outbox: &Outbox, message: ServerMessage) {
        self.pushes
            .push((outbox.clone(), Outbound::Frame(message.to_json())));
    }

    /// Pushes to an agent's current connection, if it has one.
    pub(super) fn push_to_agent(&mut self, agent_id: &str, message: ServerMessage) {
        if let Some(outbox) = self.outbox_of(agent_id) {
            self.push(&outbox, message);
        }
    }

    /// The outbox of an agent's current connection, if it has one.
    pub(super) fn outbox_of(&self, agent_id: &str) -> Option<Outbox> {
        self.agents
            .get(agent_id)
            .and_then(|a| a.connection.as_ref())
            .map(|c| c.outbox.clone())
    }

    /// A live task, marked as changed in this batch.
    pub(super) fn task_mut(&mut self, id: TaskId) -> &mut Task {
        let task = self.tasks.get_mut(&id).expect("live task");
        self.dirty.entry(id).or_insert(Some(task.status));
        task
    }
}

/// The event of a task's change: its state now, named by the last history event.
fn task_event(task: &Task) -> Event {
    // The history is newest first.
    let (event, at) = task.history.front().map_or(("", task.updated_at), |entry| {
        (&*entry.event, entry.timestamp)
    });
    Event::Task(TaskEvent {
        task_id: task.id.to_string(),
        status: task.status.as_str().to_owned(),
        priority: task.priority,
        assigned_to: task.assigned_to.clone(),
        generation: task.generation,
        fairness_key: task.fairness_key.clone(),
        tenant: task.tenant.clone(),
        event: event.to_owned(),
        at,
    })
}
