//! The one owner of scheduling state: live tasks, agents and their connections, timers and
//! the policy instance. It applies a batch of commands in memory, asks the policy for
//! decisions, and collects what to write, to answer and to push; `seal` hands that to the
//! writer (`engine::writer`), which commits it and only then lets the answers and pushes out.

use crate::engine::agent::{Agent, Connection, Holding};
use crate::engine::command::{Command, EngineError, Reply, Submitted};
use crate::engine::config::EngineConfig;
use crate::engine::outbox::{Outbound, Outbox};
use crate::engine::timers::{Timer, Timers};
use crate::engine::writer::{Batch, Committed, Deferred, Writes};
use crate::policy::{self, Outcome, PolicyHost};
use crate::store::{self, AgentRecord, Role, Store, TaskWrite, TokenRecord};
use crate::task::{Requeue, Task, TaskStatus};
use crate::wire::agent::{AckStatus, AgentSummary, ClientMessage, Identify, ServerMessage};
use crate::wire::agent::{CloseReason, ErrorCode, Refusal, TaskReport};
use crate::wire::http::{valid_agent_id, NewTask};
use crate::wire::TaskId;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// How often finished tasks past their retention are purged.
const PURGE_INTERVAL_MS: u64 = 60_000;

pub struct EngineState {
    store: Arc<Store>,
    config: EngineConfig,
    policy: PolicyHost,
    /// Queued and assigned tasks (and finished tasks, until the batch that finished them is
    /// committed: until then the store does not know they finished).
    /// Boxed: a task is a few hundred bytes, and a hash table keeps up to twice as many slots
    /// as entries, so unboxed the empty slots alone would cost hundreds of megabytes with a
    /// million tasks queued (see BENCHMARKS.md).
    tasks: HashMap<TaskId, Box<Task>>,
    /// Tasks changed in this batch, with their status before it (None: new).
    dirty: HashMap<TaskId, Option<TaskStatus>>,
    agents: HashMap<String, Agent>,
    /// Agent id by handle.
    agent_ids: Vec<String>,
    capabilities: HashMap<String, u32>,
    timers: Timers,
    next_seq: u64,
    next_ready_order: u64,
    queued: usize,
    ready: usize,
    connected: Arc<AtomicUsize>,
    pushes: Vec<(Outbox, Outbound)>,
    deferred: Vec<Deferred>,
    writes: Writes,
    /// The policy a swap not yet committed replaced: back in force if the commit fails.
    replaced_policy: Option<PolicyHost>,
    /// Agents whose token revocation is not committed yet. Their tokens are still in the store
    /// until it is, so identification checks this too.
    revoking: HashSet<String>,
}

impl EngineState {
    /// Loads the live state from the store and replays it into the policy.
    pub fn load(
        store: Arc<Store>,
        policy: PolicyHost,
        config: EngineConfig,
        connected: Arc<AtomicUsize>,
        now: u64,
    ) -> Result<EngineState, store::StoreError> {
        let mut state = EngineState {
            store,
            config,
            policy,
            tasks: HashMap::new(),
            dirty: HashMap::new(),
            agents: HashMap::new(),
            agent_ids: Vec::new(),
            capabilities: HashMap::new(),
            timers: Timers::default(),
            next_seq: 1,
            next_ready_order: 0,
            queued: 0,
            ready: 0,
            connected,
            pushes: Vec::new(),
            deferred: Vec::new(),
            writes: Writes::default(),
            revoking: HashSet::new(),
            replaced_policy: None,
        };
        let started = std::time::Instant::now();
        state.load_live_state(now)?;
        let loaded = started.elapsed();
        state.replay_policy();
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
        drop(txn);
        self.next_seq = next_seq;
        for record in records {
            let agent = self.agent_entry(&record.agent_id, now);
            agent.name = record.name;
            agent.capabilities = record.capabilities;
        }
        self.timers.clear();
        self.tasks.clear();
        self.tasks.reserve(tasks.len());
        self.queued = 0;
        for task in tasks {
            if let Some(at) = task.complete_by {
                self.timers.at(at, Timer::Deadline { task: task.id });
            }
            match (task.status, task.assigned_to.clone()) {
                (TaskStatus::Assigned, Some(holder)) => {
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
                    let agent = self.agent_entry(&holder, now);
                    agent.holding = match task.accepted_at {
                        Some(_) => Holding::Working(task.id),
                        None => Holding::Assigned(task.id),
                    };
                    let disconnects = agent.disconnects;
                    self.timers.at(
                        now + self.config.reconnect_grace_ms,
                        Timer::Grace {
                            agent: holder,
                            disconnects,
                        },
                    );
                }
                _ => self.queued += 1,
            }
            self.tasks.insert(task.id, task);
        }
        self.timers.at(now, Timer::Purge);
        for agent in self.agents.values_mut() {
            agent.capability_handles = intern_all(&mut self.capabilities, &agent.capabilities);
        }
        Ok(())
    }

    /// Tells a fresh policy instance the whole live state, in the orders the contract promises
    /// (queued tasks by priority then submission, agents by when they became ready). An
    /// instance discarded after a failure is replaced first.
    fn replay_policy(&mut self) {
        if self.policy.needs_replay() {
            self.policy.restart();
        }
        // The sort key sits beside each reference: with a million tasks queued, following the
        // references on every comparison made the sort a large part of a restart. Ids are
        // unique, so an unstable sort gives the same order.
        let mut queued: Vec<(u8, TaskId, &Task)> = self
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Queued)
            .map(|t| (t.priority, t.id, &**t))
            .collect();
        queued.sort_unstable_by_key(|&(priority, id, _)| (priority, id));
        for (_, _, task) in queued {
            let view = policy_task(&mut self.capabilities, task);
            self.policy.task_queued(&view);
        }
        let mut ready: Vec<&Agent> = self.agents.values().filter(|a| a.ready).collect();
        ready.sort_by_key(|a| a.ready_order);
        for agent in ready {
            self.policy.agent_ready(&policy_agent(agent));
        }
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
        self.schedule(now);
    }

    /// Takes what the batch applied so far writes and owes, for the writer to commit.
    /// Finished tasks stay in memory until the report of that commit (`committed`).
    pub fn seal(&mut self) -> Batch {
        let dirty = std::mem::take(&mut self.dirty);
        let mut tasks = Vec::with_capacity(dirty.len());
        let mut finished = Vec::new();
        for (id, previous) in dirty {
            if let Some(task) = self.tasks.get(&id) {
                tasks.push(TaskWrite::new(task, previous));
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
            if let Some(policy) = self.replaced_policy.take() {
                tracing::warn!("the policy swap was not committed; the previous policy is back");
                self.policy = policy;
            }
            self.drop_all_connections();
            if let Err(error) = self.load_live_state(now) {
                tracing::error!(%error, "reloading the live state failed");
            }
            // The instance has seen events of the refused batches: start it afresh.
            self.policy.restart();
            self.replay_policy();
            return;
        }
        if self.writes.policy.is_none() {
            // Any swap so far is committed.
            self.replaced_policy = None;
        }
        for agent_id in &report.revoked {
            // Unless the open batch revokes the agent again.
            if !self.writes.revoked.contains(agent_id) {
                self.revoking.remove(agent_id);
            }
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
        self.ready = 0;
        self.connected.store(0, Ordering::Relaxed);
    }

    fn command(&mut self, command: Command, now: u64) {
        match command {
            Command::Identify {
                conn,
                outbox,
                identify,
                done,
            } => self.identify(conn, outbox, identify, done, now),
            Command::Message {
                conn,
                agent,
                outbox,
                message,
            } => self.message(conn, &agent, &outbox, message, now),
            Command::Alive { conn, agent } => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    if a.connection.as_ref().is_some_and(|c| c.id == conn) {
                        a.unresponsive = false;
                    }
                }
                self.sync_ready(&agent, now);
            }
            Command::Disconnected { conn, agent } => self.disconnected(conn, &agent, now),
            Command::Submit {
                tasks,
                submitted_by,
                reply,
            } => {
                let submitted = self.submit(tasks, &submitted_by, now);
                self.answer(reply, Ok(submitted));
            }
            Command::Cancel { task, reply } => {
                let result = self.cancel(task, now);
                self.answer(reply, result);
            }
            Command::RetryDeadLetter { task, reply } => {
                let result = self.retry_dead_letter(task, now);
                self.answer(reply, result);
            }
            Command::CreateToken { agent_id, reply } => {
                let token = new_token();
                let record = TokenRecord {
                    agent_id,
                    role: Role::Agent,
                    token_prefix: token[..store::PREFIX_LEN].to_owned(),
                    created_at: now,
                };
                self.writes.tokens.push((token.clone(), record));
                self.answer(reply, Ok(token));
            }
            Command::RevokeTokens { agent_id, reply } => {
                let result = self.revoke(&agent_id);
                self.answer(reply, result);
            }
            Command::ListAgents { reply } => {
                let agents = self.summaries(false);
                self.answer(reply, Ok(agents));
            }
            Command::PolicyStatus { reply } => {
                let status = self.policy.status();
                self.answer(reply, Ok(status));
            }
            Command::SwapPolicy {
                policy,
                persisted,
                upload,
                reply,
            } => {
                tracing::info!(source = %persisted.source, "swapping the policy");
                let replaced = std::mem::replace(&mut self.policy, *policy);
                // Kept until the swap is committed, to go back to if it is refused. (Should a
                // second swap follow before the first is committed, the first one's
                // predecessor is kept: a refused commit then restores that one.)
                self.replaced_policy.get_or_insert(replaced);
                self.replay_policy();
                self.writes.policy = Some((persisted, upload));
                let status = self.policy.status();
                self.answer(reply, Ok(status));
            }
        }
    }

    /// Answers a request once the batch is committed.
    fn answer<T: Send + 'static>(&mut self, reply: Reply<T>, result: Result<T, EngineError>) {
        self.deferred.push(Box::new(move |committed| {
            let _ = reply.send(committed.and(result));
        }));
    }

    fn push(&mut self, outbox: &Outbox, message: ServerMessage) {
        self.pushes
            .push((outbox.clone(), Outbound::Frame(message.to_json())));
    }

    /// Pushes to an agent's current connection, if it has one.
    fn push_to_agent(&mut self, agent_id: &str, message: ServerMessage) {
        if let Some(outbox) = self
            .agents
            .get(agent_id)
            .and_then(|a| a.connection.as_ref())
            .map(|c| c.outbox.clone())
        {
            self.push(&outbox, message);
        }
    }

    // ---- agents -------------------------------------------------------------------------

    fn agent_entry(&mut self, agent_id: &str, now: u64) -> &mut Agent {
        if !self.agents.contains_key(agent_id) {
            let handle = self.agent_ids.len() as u32;
            self.agent_ids.push(agent_id.to_owned());
            self.agents.insert(
                agent_id.to_owned(),
                Agent::new(agent_id.to_owned(), handle, now),
            );
        }
        self.agents.get_mut(agent_id).expect("just inserted")
    }

    /// Tells the policy when an agent starts or stops being able to take work.
    fn sync_ready(&mut self, agent_id: &str, now: u64) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if agent.cooldown_until.is_some_and(|until| now >= until) {
            agent.cooldown_until = None;
        }
        let can = agent.can_take_work(now);
        if can && !agent.ready {
            agent.ready = true;
            agent.ready_order = self.next_ready_order;
            self.next_ready_order += 1;
            self.ready += 1;
            self.policy.agent_ready(&policy_agent(agent));
        } else if !can && agent.ready {
            agent.ready = false;
            self.ready -= 1;
            self.policy.agent_unready(agent.handle);
        }
    }

    fn identify(
        &mut self,
        conn: u64,
        outbox: Outbox,
        identify: Identify,
        done: oneshot::Sender<bool>,
        now: u64,
    ) {
        if let Err(error) = self.authenticate(&identify) {
            self.push(&outbox, ServerMessage::error(error));
            self.deferred.push(Box::new(move |_| {
                let _ = done.send(false);
            }));
            return;
        }
        let agent_id = identify.agent_id;
        // Re-announce the agent to the policy with what it says of itself now.
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            if agent.ready {
                agent.ready = false;
                self.ready -= 1;
                self.policy.agent_unready(agent.handle);
            }
        }
        let capability_handles = intern_all(&mut self.capabilities, &identify.capabilities);
        let agent = self.agent_entry(&agent_id, now);
        agent.name = identify.name.unwrap_or_else(|| agent_id.clone());
        agent.capabilities = identify.capabilities;
        agent.capability_handles = capability_handles;
        if let Some(status) = identify.status {
            agent.status = status;
        }
        let superseded = agent.connect(Connection {
            id: conn,
            outbox: outbox.clone(),
            connected_at: now,
        });
        let holding = agent.holding;
        let record = AgentRecord {
            agent_id: agent_id.clone(),
            name: agent.name.clone(),
            capabilities: agent.capabilities.clone(),
            last_seen: now,
        };
        match superseded {
            Some(old) if old.id != conn => self
                .pushes
                .push((old.outbox, Outbound::Close(CloseReason::Superseded))),
            Some(_) => {}
            None => {
                self.connected.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.writes.agents.push(record);
        self.push(
            &outbox,
            ServerMessage::Identified {
                agent_id: agent_id.clone(),
            },
        );
        // A task pushed but not accepted before the agent came back is pushed again, at the
        // same generation; an accepted one continues (the agent asks with task_recovering).
        if let Holding::Assigned(task_id) = holding {
            if let Some(task) = self.tasks.get(&task_id) {
                let message = assign_message(task);
                self.push(&outbox, message);
            }
        }
        self.sync_ready(&agent_id, now);
        self.deferred.push(Box::new(move |committed| {
            let _ = done.send(committed.is_ok());
        }));
    }

    fn authenticate(&self, identify: &Identify) -> Result<(), ErrorCode> {
        let found = self
            .store
            .read_txn()
            .and_then(|txn| self.store.find_token(&txn, &identify.token));
        match found {
            Err(error) => {
                tracing::error!(%error, "token lookup failed");
                Err(ErrorCode::StorageUnavailable)
            }
            Ok(None) => Err(ErrorCode::InvalidToken),
            Ok(Some(record)) => match record.role {
                Role::Agent if self.revoking.contains(&record.agent_id) => {
                    Err(ErrorCode::InvalidToken)
                }
                Role::Agent if record.agent_id == identify.agent_id => Ok(()),
                Role::Admin if valid_agent_id(&identify.agent_id) => Ok(()),
                _ => Err(ErrorCode::TokenAgentMismatch),
            },
        }
    }

    fn disconnected(&mut self, conn: u64, agent_id: &str, now: u64) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if !agent.disconnect(conn) {
            return;
        }
        self.connected.fetch_sub(1, Ordering::Relaxed);
        if agent.holding.task().is_some() {
            let timer = Timer::Grace {
                agent: agent_id.to_owned(),
                disconnects: agent.disconnects,
            };
            self.timers.at(now + self.config.reconnect_grace_ms, timer);
        }
        self.sync_ready(agent_id, now);
    }

    fn revoke(&mut self, agent_id: &str) -> Result<usize, EngineError> {
        let count = self
            .store
            .read_txn()
            .and_then(|txn| self.store.tokens(&txn))
            .map_err(|_| EngineError::Unavailable)?
            .iter()
            .filter(|t| t.agent_id == agent_id && t.role == Role::Agent)
            .count();
        // Tokens made earlier in this batch go with the others (the commit writes revocations
        // before new tokens, so a token made after this revocation survives it).
        let before = self.writes.tokens.len();
        self.writes
            .tokens
            .retain(|(_, t)| !(t.agent_id == agent_id && t.role == Role::Agent));
        let count = count + (before - self.writes.tokens.len());
        self.writes.revoked.push(agent_id.to_owned());
        self.revoking.insert(agent_id.to_owned());
        if let Some(connection) = self
            .agents
            .get(agent_id)
            .and_then(|a| a.connection.as_ref())
        {
            let outbox = connection.outbox.clone();
            self.pushes
                .push((outbox, Outbound::Close(CloseReason::TokenRevoked)));
        }
        Ok(count)
    }

    fn summaries(&self, connected_only: bool) -> Vec<AgentSummary> {
        let mut agents: Vec<&Agent> = self
            .agents
            .values()
            .filter(|a| !connected_only || a.connection.is_some())
            .collect();
        agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        agents
            .into_iter()
            .map(|a| AgentSummary {
                agent_id: a.agent_id.clone(),
                name: a.name.clone(),
                status: a.status.clone(),
                capabilities: a.capabilities.clone(),
                connected_at: a.connection.as_ref().map(|c| c.connected_at),
                fsm_state: (!connected_only).then(|| a.fsm_state()),
                current_task_id: (!connected_only).then(|| a.holding.task().map(|t| t.to_string())),
            })
            .collect()
    }

    // ---- frames from agents -------------------------------------------------------------

    fn message(
        &mut self,
        conn: u64,
        agent_id: &str,
        outbox: &Outbox,
        message: ClientMessage,
        now: u64,
    ) {
        let current = self
            .agents
            .get(agent_id)
            .and_then(|a| a.connection.as_ref())
            .is_some_and(|c| c.id == conn);
        if !current {
            tracing::debug!(agent_id, "ignoring a frame from a superseded connection");
            return;
        }
        match message {
            ClientMessage::TaskAccepted {
                task_id,
                generation,
            } => {
                let reply = match self.holder_check(&task_id, agent_id, generation) {
                    Ok(id) => {
                        self.task_mut(id).accept(now);
                        if let Some(agent) = self.agents.get_mut(agent_id) {
                            agent.accept(id);
                        }
                        ServerMessage::TaskAck {
                            task_id,
                            status: AckStatus::Accepted,
                        }
                    }
                    Err(refusal) => ServerMessage::report_refused(TaskReport::Accepted, refusal),
                };
                self.push(outbox, reply);
            }
            ClientMessage::TaskComplete {
                task_id,
                generation,
                result,
                tokens_used,
            } => {
                let reply = match self.holder_check(&task_id, agent_id, Some(generation)) {
                    Ok(id) => {
                        self.task_mut(id).complete(result, tokens_used, now);
                        self.release(agent_id, id, Outcome::Completed, now);
                        ServerMessage::TaskAck {
                            task_id,
                            status: AckStatus::Complete,
                        }
                    }
                    Err(refusal) => ServerMessage::report_refused(TaskReport::Complete, refusal),
                };
                self.push(outbox, reply);
            }
            ClientMessage::TaskFailed {
                task_id,
                generation,
                error,
            } => {
                let reply = match self.holder_check(&task_id, agent_id, Some(generation)) {
                    Ok(id) => {
                        let requeue = self.task_mut(id).fail(&error, now);
                        self.release(agent_id, id, Outcome::Failed, now);
                        let status = self.after_return(id, requeue);
                        ServerMessage::TaskAck { task_id, status }
                    }
                    Err(refusal) => ServerMessage::report_refused(TaskReport::Failed, refusal),
                };
                self.push(outbox, reply);
            }
            ClientMessage::TaskRejected { task_id, reason } => {
                let reply = match self.holder_check(&task_id, agent_id, None) {
                    Ok(id) => {
                        self.task_mut(id).reject(reason.as_deref(), now);
                        let until = now + self.config.reject_cooldown_ms;
                        if let Some(agent) = self.agents.get_mut(agent_id) {
                            agent.cooldown_until = Some(until);
                        }
                        self.timers.at(
                            until,
                            Timer::Cooldown {
                                agent: agent_id.to_owned(),
                            },
                        );
                        self.release(agent_id, id, Outcome::Returned, now);
                        self.after_return(id, Requeue::Queued);
                        ServerMessage::TaskAck {
                            task_id,
                            status: AckStatus::Rejected,
                        }
                    }
                    Err(refusal) => ServerMessage::report_refused(TaskReport::Rejected, refusal),
                };
                self.push(outbox, reply);
            }
            ClientMessage::TaskRecovering { task_id } => {
                let reply = match self.holder_check(&task_id, agent_id, None) {
                    Ok(id) => {
                        // The agent says it is working on the task: that is an acceptance.
                        self.task_mut(id).accept(now);
                        if let Some(agent) = self.agents.get_mut(agent_id) {
                            agent.accept(id);
                        }
                        ServerMessage::TaskContinue {
                            task_id,
                            generation: self.tasks[&id].generation,
                        }
                    }
                    Err(_) => ServerMessage::TaskReassign { task_id },
                };
                self.push(outbox, reply);
            }
            ClientMessage::Status { status } => {
                if let Some(agent) = self.agents.get_mut(agent_id) {
                    agent.status = status;
                }
                self.push(outbox, ServerMessage::StatusUpdated);
            }
            ClientMessage::ListAgents => {
                let agents = self.summaries(true);
                self.push(outbox, ServerMessage::Agents { agents });
            }
            // Answered by the connection itself; they never reach the engine.
            ClientMessage::Identify(_)
            | ClientMessage::Ping
            | ClientMessage::TaskProgress { .. } => {}
        }
    }

    /// Resolves `task_id` and checks that `agent_id` holds it, refusing in the spec's order.
    fn holder_check(
        &self,
        task_id: &str,
        agent_id: &str,
        generation: Option<u64>,
    ) -> Result<TaskId, Refusal> {
        let id = TaskId::parse(task_id).ok_or(Refusal::NotFound)?;
        match self.tasks.get(&id) {
            Some(task) => task.check_holder(agent_id, generation).map(|()| id),
            None => {
                // Not live: it is finished (a state nobody holds) or does not exist.
                let exists = self
                    .store
                    .read_txn()
                    .and_then(|txn| self.store.task(&txn, id))
                    .map(|t| t.is_some())
                    .unwrap_or(false);
                Err(if exists {
                    Refusal::InvalidState
                } else {
                    Refusal::NotFound
                })
            }
        }
    }

    /// A live task, marked as changed in this batch.
    fn task_mut(&mut self, id: TaskId) -> &mut Task {
        let task = self.tasks.get_mut(&id).expect("live task");
        self.dirty.entry(id).or_insert(Some(task.status));
        task
    }

    /// The agent's assignment of `task` ended with `outcome`: it is free again.
    fn release(&mut self, agent_id: &str, task: TaskId, outcome: Outcome, now: u64) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.release(task, now);
            if matches!(outcome, Outcome::Completed | Outcome::Failed) {
                agent.cooldown_until = None;
            }
            self.policy.task_finished(task.0, agent.handle, outcome);
        }
        self.sync_ready(agent_id, now);
    }

    /// A task that left its agent is either queued again or dead-lettered; tell the policy.
    fn after_return(&mut self, task: TaskId, requeue: Requeue) -> AckStatus {
        match requeue {
            Requeue::Queued => {
                self.queued += 1;
                let view = policy_task(&mut self.capabilities, &self.tasks[&task]);
                self.policy.task_queued(&view);
                AckStatus::Retried
            }
            Requeue::DeadLetter => AckStatus::DeadLetter,
        }
    }

    /// Takes a task back from its agent (acceptance timeout, lost connection), telling the
    /// agent if it is still connected.
    fn reclaim(&mut self, id: TaskId, why: &str, now: u64) {
        let task = &self.tasks[&id];
        let (holder, generation) = (task.assigned_to.clone(), task.generation);
        if let Some(holder) = &holder {
            self.push_to_agent(
                holder,
                ServerMessage::TaskCancel {
                    task_id: id.to_string(),
                    generation,
                },
            );
        }
        let max_reclaims = self.config.max_reclaims;
        let requeue = self.task_mut(id).reclaim(why, max_reclaims, now);
        tracing::info!(task = %id, why, ?requeue, "took a task back from its agent");
        if let Some(holder) = holder {
            self.release(&holder, id, Outcome::Returned, now);
        }
        self.after_return(id, requeue);
    }

    // ---- timers -------------------------------------------------------------------------

    fn timer(&mut self, timer: Timer, now: u64) {
        match timer {
            Timer::Acceptance { task, generation } => {
                let overdue = self.tasks.get(&task).is_some_and(|t| {
                    t.status == TaskStatus::Assigned
                        && t.generation == generation
                        && t.accepted_at.is_none()
                });
                if !overdue {
                    return;
                }
                if let Some(holder) = self.tasks[&task].assigned_to.clone() {
                    if let Some(agent) = self.agents.get_mut(&holder) {
                        agent.unresponsive = true;
                        if let Some(connection) = &agent.connection {
                            let outbox = connection.outbox.clone();
                            self.pushes.push((outbox, Outbound::Unresponsive));
                        }
                    }
                }
                self.reclaim(task, "acceptance_timeout", now);
            }
            Timer::Grace { agent, disconnects } => {
                let lost = self.agents.get(&agent).and_then(|a| {
                    (a.connection.is_none() && a.disconnects == disconnects)
                        .then_some(a.holding.task())
                        .flatten()
                });
                if let Some(task) = lost {
                    self.reclaim(task, "disconnected", now);
                }
            }
            Timer::Deadline { task } => {
                let Some(status) = self.tasks.get(&task).map(|t| t.status) else {
                    return;
                };
                if self.tasks[&task].complete_by.is_none_or(|at| at > now) {
                    return;
                }
                let holder = self.tasks[&task].assigned_to.clone();
                match (status, holder) {
                    (TaskStatus::Assigned, Some(holder)) => {
                        let generation = self.tasks[&task].generation;
                        self.push_to_agent(
                            &holder,
                            ServerMessage::TaskCancel {
                                task_id: task.to_string(),
                                generation,
                            },
                        );
                        self.task_mut(task).expire(now);
                        self.release(&holder, task, Outcome::Cancelled, now);
                    }
                    (TaskStatus::Queued, _) => {
                        self.task_mut(task).expire(now);
                        self.queued -= 1;
                        self.policy.task_dequeued(task.0);
                    }
                    // Finished (kept in memory until its commit is reported) or already in the
                    // dead letter: nothing left to run late.
                    _ => return,
                }
                tracing::info!(task = %task, "deadline passed; task moved to the dead letter");
            }
            Timer::Cooldown { agent } => self.sync_ready(&agent, now),
            Timer::Purge => {
                self.writes.purge_before = Some(now.saturating_sub(self.config.retention_ms));
                self.timers.at(now + PURGE_INTERVAL_MS, Timer::Purge);
            }
        }
    }

    // ---- requests from HTTP -------------------------------------------------------------

    fn submit(&mut self, tasks: Vec<NewTask>, submitted_by: &str, now: u64) -> Vec<Submitted> {
        let mut submitted = Vec::with_capacity(tasks.len());
        for new in tasks {
            let id = TaskId(self.next_seq);
            self.next_seq += 1;
            let task = Task::new(id, new, submitted_by, now);
            if let Some(at) = task.complete_by {
                self.timers.at(at, Timer::Deadline { task: id });
            }
            submitted.push(Submitted {
                task_id: id,
                priority: task.priority,
                created_at: now,
            });
            let view = policy_task(&mut self.capabilities, &task);
            self.policy.task_queued(&view);
            self.queued += 1;
            self.tasks.insert(id, Box::new(task));
            self.dirty.insert(id, None);
        }
        self.writes.next_seq = Some(self.next_seq);
        submitted
    }

    /// Loads a task that is not live (dead-lettered or finished) into the batch.
    fn load_task(&mut self, id: TaskId) -> Result<&mut Task, EngineError> {
        if !self.tasks.contains_key(&id) {
            let stored = self
                .store
                .read_txn()
                .and_then(|txn| self.store.task(&txn, id))
                .map_err(|_| EngineError::Unavailable)?
                .ok_or(EngineError::TaskNotFound(id))?;
            self.tasks.insert(id, Box::new(stored));
        }
        Ok(self.task_mut(id))
    }

    fn cancel(&mut self, id: TaskId, now: u64) -> Result<(), EngineError> {
        let task = self.load_task(id)?;
        let (status, holder, generation) = (task.status, task.assigned_to.clone(), task.generation);
        match status {
            TaskStatus::Completed | TaskStatus::Cancelled => {
                return Err(EngineError::InvalidState(status.as_str()))
            }
            TaskStatus::Queued => {
                self.queued -= 1;
                self.policy.task_dequeued(id.0);
            }
            TaskStatus::Assigned | TaskStatus::DeadLetter => {}
        }
        self.task_mut(id).cancel(now);
        if let Some(holder) = holder {
            self.push_to_agent(
                &holder,
                ServerMessage::TaskCancel {
                    task_id: id.to_string(),
                    generation,
                },
            );
            self.release(&holder, id, Outcome::Cancelled, now);
        }
        Ok(())
    }

    fn retry_dead_letter(&mut self, id: TaskId, now: u64) -> Result<u8, EngineError> {
        let task = self.load_task(id)?;
        let status = task.status;
        task.retry_from_dead_letter(now)
            .map_err(|_| EngineError::InvalidState(status.as_str()))?;
        let priority = task.priority;
        self.after_return(id, Requeue::Queued);
        Ok(priority)
    }

    // ---- scheduling ---------------------------------------------------------------------

    /// One decision pass: the policy proposes, the host checks each proposal against the live
    /// state and applies the valid ones.
    ///
    /// A failed call discards the instance. The pass then replays the live state into a fresh
    /// one and asks again, until it gets an answer: stopping earlier would leave idle agents
    /// beside queued tasks until some unrelated event started another pass. This ends: every
    /// attempt that fails records a failure, and once [`policy::BREAKER_FAILURES`] have
    /// accumulated the next restart switches to the native fallback, which cannot fail, so
    /// `BREAKER_FAILURES + 1` attempts always end with an answer.
    fn schedule(&mut self, now: u64) {
        if self.policy.needs_replay() {
            self.replay_policy();
        }
        if self.queued == 0 || self.ready == 0 {
            return;
        }
        let mut proposals = self.policy.decide(now);
        for _ in 0..policy::BREAKER_FAILURES {
            if !self.policy.needs_replay() {
                break;
            }
            self.replay_policy();
            proposals = self.policy.decide(now);
        }
        let mut refused = 0;
        for proposal in proposals {
            if !self.try_assign(proposal, now) {
                refused += 1;
            }
        }
        if refused > 0 {
            tracing::debug!(refused, "refused policy proposals");
            self.policy.record_rejected(refused);
        }
    }

    fn try_assign(&mut self, proposal: policy::Assignment, now: u64) -> bool {
        let id = TaskId(proposal.task);
        let Some(agent_id) = self.agent_ids.get(proposal.agent as usize).cloned() else {
            return false;
        };
        let Some(task) = self.tasks.get(&id) else {
            return false;
        };
        let agent = &self.agents[&agent_id];
        if task.status != TaskStatus::Queued || !agent.ready || !agent.can_take_work(now) {
            return false;
        }
        let needs = intern_all(&mut self.capabilities, &task.needed_capabilities);
        if !switchyard_policy_sdk::satisfies(&agent.capability_handles, &needs) {
            return false;
        }
        let task = self.task_mut(id);
        task.assign(&agent_id, now);
        let message = assign_message(task);
        let generation = task.generation;
        let agent = self.agents.get_mut(&agent_id).expect("checked above");
        agent.hold(id);
        agent.ready = false;
        let outbox = agent.connection.as_ref().map(|c| c.outbox.clone());
        self.ready -= 1;
        self.queued -= 1;
        self.policy.assigned(id.0, proposal.agent);
        if let Some(outbox) = outbox {
            self.push(&outbox, message);
        }
        self.timers.at(
            now + self.config.acceptance_timeout_ms,
            Timer::Acceptance {
                task: id,
                generation,
            },
        );
        true
    }
}

fn assign_message(task: &Task) -> ServerMessage {
    ServerMessage::TaskAssign {
        task_id: task.id.to_string(),
        description: task.description.clone(),
        metadata: task.metadata.clone(),
        generation: task.generation,
        assigned_at: task.assigned_at.unwrap_or(task.updated_at),
    }
}

/// Capability handles for `names`, sorted, interning new names.
fn intern_all(interner: &mut HashMap<String, u32>, names: &[String]) -> Vec<u32> {
    let mut handles: Vec<u32> = names
        .iter()
        .map(|name| {
            let next = interner.len() as u32;
            *interner.entry(name.clone()).or_insert(next)
        })
        .collect();
    handles.sort_unstable();
    handles.dedup();
    handles
}

/// What the policy sees of a task.
fn policy_task(interner: &mut HashMap<String, u32>, task: &Task) -> policy::Task {
    policy::Task {
        id: task.id.0,
        priority: task.priority,
        needed_capabilities: intern_all(interner, &task.needed_capabilities),
        fairness_key: task.fairness_key.clone(),
        weight: task.weight,
        retry_count: task.retry_count,
        queued_at: task.queued_at,
    }
}

/// What the policy sees of an agent.
fn policy_agent(agent: &Agent) -> policy::Agent {
    policy::Agent {
        id: agent.handle,
        capabilities: agent.capability_handles.clone(),
        idle_since: agent.idle_since,
    }
}

/// A new random token: 32 bytes, hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
