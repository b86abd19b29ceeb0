//! Agents and their connections: identification, disconnects, readiness, tokens.

use crate::engine::agent::{Agent, Connection, Holding};
use crate::engine::command::EngineError;
use crate::engine::outbox::Outbound;
use crate::engine::state::EngineState;
use crate::engine::timers::Timer;
use crate::store::{self, AgentRecord, Role, TokenRecord, ADMIN_AGENT_ID};
use crate::wire::agent::{AgentSummary, CloseReason, ErrorCode, Identify, ServerMessage};
use crate::wire::events::AgentChange;
use crate::wire::http::{valid_agent_id, TokenRequest};
use tokio::sync::oneshot;

/// Replacements of one agent's connection are logged at most this often.
const REPLACEMENT_LOG_INTERVAL_MS: u64 = 60_000;

impl EngineState {
    /// The agent's entry, made on first sight with the next policy handle.
    pub(super) fn agent_entry(&mut self, agent_id: &str, now: u64) -> &mut Agent {
        if !self.agents.contains_key(agent_id) {
            let handle = self.agent_ids.len() as u32;
            self.agent_ids.push(agent_id.to_owned());
            self.agents.insert(
                agent_id.to_owned(),
                Agent::new(agent_id.to_owned(), handle, now),
            );
            self.stats.agent_moved(None, crate::engine::agent::OFFLINE);
        }
        self.agents.get_mut(agent_id).expect("just inserted")
    }

    /// Tells the policy when an agent starts or stops being able to take work.
    pub(super) fn sync_ready(&mut self, agent_id: &str, now: u64) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if agent.cooldown_until.is_some_and(|until| now >= until) {
            agent.cooldown_until = None;
        }
        if agent.can_take_work(now) {
            self.feed.agent_ready(agent, now);
        } else {
            self.feed.agent_unready(agent);
        }
    }

    /// An unresponsive agent sent a frame again.
    pub(super) fn alive(&mut self, conn: u64, agent_id: &str, now: u64) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            if agent.connection.as_ref().is_some_and(|c| c.id == conn) {
                agent.unresponsive = false;
            }
        }
        self.sync_ready(agent_id, now);
    }

    pub(super) fn identify(
        &mut self,
        connection: Connection,
        identify: Identify,
        done: oneshot::Sender<bool>,
        now: u64,
    ) {
        let outbox = connection.outbox.clone();
        let checked = self
            .authenticate(&identify)
            .and_then(|()| self.check_capabilities(&identify.capabilities));
        if let Err(error) = checked {
            self.stats.refused_frame(&error);
            self.push(&outbox, ServerMessage::error(error));
            self.deferred.push(Box::new(move |_| {
                let _ = done.send(false);
            }));
            return;
        }
        let agent_id = identify.agent_id;
        let capability_handles = self.feed.intern(&identify.capabilities);
        self.agent_entry(&agent_id, now);
        let agent = self.agents.get_mut(&agent_id).expect("just made");
        // Re-announce the agent to the policy with what it says of itself now.
        self.feed.agent_unready(agent);
        agent.name = identify.name.unwrap_or_else(|| agent_id.clone());
        agent.capabilities = identify.capabilities;
        agent.capability_handles = capability_handles;
        if let Some(status) = identify.status {
            agent.status = status;
        }
        let (conn, connected_at) = (connection.id, connection.connected_at);
        let superseded = agent.connect(connection);
        if agent.holding == Holding::Nothing {
            // Waiting for work since the socket was accepted: it queues from then.
            agent.fresh = true;
            agent.idle_since = connected_at;
        }
        let holding = agent.holding;
        let record = AgentRecord {
            agent_id: agent_id.clone(),
            name: agent.name.clone(),
            capabilities: agent.capabilities.clone(),
            last_seen: now,
        };
        match superseded {
            Some(old) if old.id != conn => {
                self.replaced(&agent_id, &old, now);
                self.pushes
                    .push((old.outbox, Outbound::Close(CloseReason::Superseded)));
            }
            Some(_) => {}
            None => {
                self.stats.connect();
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
                let message = task.assign_message();
                self.push(&outbox, message);
            }
        }
        self.sync_ready(&agent_id, now);
        self.agent_event(&agent_id, AgentChange::Connected, now);
        self.deferred.push(Box::new(move |committed| {
            let _ = done.send(committed.is_ok());
        }));
    }

    /// Another connection identified as `agent_id` and replaced `old`: two processes share
    /// one agent id, and each knocks the other off as it reconnects. Counted (in `/metrics` and
    /// on the agent in `GET /api/agents`) and logged once a minute per agent, with both peers.
    fn replaced(&mut self, agent_id: &str, old: &Connection, now: u64) {
        self.stats.replaced();
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        agent.replacements += 1;
        agent.last_replaced_at = Some(now);
        let due = agent
            .replacement_logged_at
            .is_none_or(|at| now >= at + REPLACEMENT_LOG_INTERVAL_MS);
        if due {
            agent.replacement_logged_at = Some(now);
            let peer = |p: Option<std::net::SocketAddr>| {
                p.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
            };
            tracing::warn!(
                agent_id,
                replaced = %peer(old.peer),
                by = %peer(agent.connection.as_ref().and_then(|c| c.peer)),
                replacements = agent.replacements,
                "a second connection identified as this agent and replaced the first; two \
                 processes may share one agent id (logged at most once a minute)"
            );
        }
    }

    /// An agent names at most `max_capabilities` capabilities of at most
    /// `max_capability_bytes` each: every name is kept (and interned) while the agent is
    /// connected, so an identify beyond either is refused rather than trimmed.
    fn check_capabilities(&self, names: &[String]) -> Result<(), ErrorCode> {
        if names.len() > self.config.max_capabilities {
            return Err(ErrorCode::TooManyCapabilities);
        }
        if names
            .iter()
            .any(|name| name.len() > self.config.max_capability_bytes)
        {
            return Err(ErrorCode::CapabilityNameTooLong);
        }
        Ok(())
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
                Role::Client => Err(ErrorCode::ClientTokenCannotIdentify),
                Role::Agent | Role::Admin => Err(ErrorCode::TokenAgentMismatch),
            },
        }
    }

    pub(super) fn disconnected(&mut self, conn: u64, agent_id: &str, now: u64) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if !agent.disconnect(conn) {
            return;
        }
        self.stats.disconnect();
        if agent.holding.task().is_some() {
            let timer = Timer::Grace {
                agent: agent_id.to_owned(),
                disconnects: agent.disconnects,
            };
            self.timers.at(now + self.config.reconnect_grace_ms, timer);
        }
        self.sync_ready(agent_id, now);
        self.agent_event(agent_id, AgentChange::Disconnected, now);
    }

    /// A new token for `agent_id` with `role` in `tenant`, stored with the batch. The tenant
    /// must exist (a deletion earlier in the batch counts: the engine's table is current).
    pub(super) fn create_token(
        &mut self,
        request: TokenRequest,
        now: u64,
    ) -> Result<String, EngineError> {
        let TokenRequest {
            agent_id,
            role,
            tenant,
        } = request;
        if self.tenants.get(&tenant).is_none() {
            return Err(EngineError::TenantNotFound(tenant));
        }
        let token = new_token();
        let record = TokenRecord {
            tenant,
            agent_id,
            role,
            token_prefix: token[..store::PREFIX_LEN].to_owned(),
            created_at: now,
        };
        self.writes.tokens.push((token.clone(), record));
        Ok(token)
    }

    /// Revokes the tokens of `agent_id`, or only the one shown as `prefix`, and closes the
    /// agent's connection. Admin tokens (agent id `admin`) are revoked one by one, by hash, and
    /// never the last one.
    pub(super) fn revoke(
        &mut self,
        agent_id: &str,
        prefix: Option<&str>,
    ) -> Result<usize, EngineError> {
        let entries = self
            .store
            .read_txn()
            .and_then(|txn| self.store.token_entries(&txn))
            .map_err(|_| EngineError::Unavailable)?;
        let matches =
            |t: &TokenRecord| t.agent_id == agent_id && prefix.is_none_or(|p| t.token_prefix == p);
        let live = |hash: &[u8; 32]| !self.writes.revoked_hashes.contains(hash);
        let admins: Vec<([u8; 32], bool)> = entries
            .iter()
            .filter(|(hash, t)| t.role == Role::Admin && live(hash))
            .map(|(hash, t)| (*hash, matches(t)))
            .collect();
        let doomed_admins: Vec<[u8; 32]> = admins
            .iter()
            .filter(|(_, doomed)| *doomed)
            .map(|(hash, _)| *hash)
            .collect();
        if !doomed_admins.is_empty() && doomed_admins.len() == admins.len() {
            return Err(EngineError::LastAdminToken);
        }
        let agent_tokens: Vec<[u8; 32]> = entries
            .iter()
            .filter(|(hash, t)| t.role != Role::Admin && matches(t) && live(hash))
            .map(|(hash, _)| *hash)
            .collect();
        let mut count = doomed_admins.len();
        self.writes.revoked_hashes.extend(doomed_admins);
        match prefix {
            None => {
                // Tokens made earlier in this batch go with the others (the commit writes
                // revocations before new tokens, so a token made after this revocation
                // survives it).
                let before = self.writes.tokens.len();
                self.writes
                    .tokens
                    .retain(|(_, t)| !(t.agent_id == agent_id && t.role != Role::Admin));
                count += agent_tokens.len() + (before - self.writes.tokens.len());
                self.writes.revoked.push(agent_id.to_owned());
                self.revoking.insert(agent_id.to_owned());
            }
            Some(_) => {
                count += agent_tokens.len();
                self.writes.revoked_hashes.extend(agent_tokens);
            }
        }
        if count > 0 {
            if let Some(outbox) = self.outbox_of(agent_id) {
                self.pushes
                    .push((outbox, Outbound::Close(CloseReason::TokenRevoked)));
            }
        }
        Ok(count)
    }

    /// A new admin token; every admin token there was (committed, or made earlier in this
    /// batch) is revoked in the same commit.
    pub(super) fn rotate_admin(&mut self, now: u64) -> Result<String, EngineError> {
        let entries = self
            .store
            .read_txn()
            .and_then(|txn| self.store.token_entries(&txn))
            .map_err(|_| EngineError::Unavailable)?;
        self.writes.revoked_hashes.extend(
            entries
                .iter()
                .filter(|(_, t)| t.role == Role::Admin)
                .map(|(hash, _)| *hash),
        );
        self.writes.tokens.retain(|(_, t)| t.role != Role::Admin);
        let token = new_token();
        let record = TokenRecord {
            tenant: crate::wire::tenant::default_tenant(),
            agent_id: ADMIN_AGENT_ID.to_owned(),
            role: Role::Admin,
            token_prefix: token[..store::PREFIX_LEN].to_owned(),
            created_at: now,
        };
        self.writes.tokens.push((token.clone(), record));
        Ok(token)
    }

    /// Agents by id: all of them for the HTTP API, the connected ones for `list_agents`.
    pub(super) fn summaries(&self, connected_only: bool) -> Vec<AgentSummary> {
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
                replacements: (!connected_only).then_some(a.replacements),
                last_replaced_at: a.last_replaced_at.filter(|_| !connected_only),
            })
            .collect()
    }
}

/// A new random token: 32 bytes, hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
