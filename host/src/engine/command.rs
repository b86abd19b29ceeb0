//! What connections and HTTP handlers ask of the engine. Each request carries where its answer
//! goes; the engine answers only after the batch it belongs to is committed.

use crate::engine::outbox::Outbox;
use crate::engine::shadow::ShadowReport;
use crate::policy::{PolicyHost, PolicyStatus};
use crate::store::PersistedPolicy;
use crate::wire::agent::{AgentSummary, ClientMessage, Identify};
use crate::wire::http::{AuditRecord, NewTask};
use crate::wire::tenant::{NewTenant, QuotaRefusal, Tenant, TenantPatch, TenantView};
use crate::wire::TaskId;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// Why the engine could not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("task_not_found")]
    TaskNotFound(TaskId),
    /// The task is not in a state that allows this (names the state it is in).
    #[error("task is {0}")]
    InvalidState(&'static str),
    /// The policy or its config was refused.
    #[error("{0}")]
    PolicyRejected(String),
    /// The commit failed; nothing of the request was kept.
    #[error("storage unavailable")]
    Unavailable,
    /// The engine has stopped (the hub is shutting down).
    #[error("hub is shutting down")]
    Stopped,
    /// Revoking these tokens would leave no admin token: nobody could administer the hub.
    #[error(
        "cannot revoke the last admin token; rotate it instead (`switchyard token rotate-admin`)"
    )]
    LastAdminToken,
    #[error("tenant {0} already exists")]
    TenantExists(String),
    #[error("no tenant is named {0}")]
    TenantNotFound(String),
    /// The tenant cannot be deleted; `why` says what holds it.
    #[error("tenant {tenant} cannot be deleted: {why}")]
    TenantInUse { tenant: String, why: String },
    /// A quota of the submitting tenant refused the submission; nothing of it was stored.
    #[error("{}", .0.detail)]
    Quota(Box<QuotaRefusal>),
}

pub type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// A submitted task, as `POST /api/tasks` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub task_id: TaskId,
    pub priority: u8,
    pub created_at: u64,
}

pub enum Command {
    /// The first frame of a connection. `done` says whether it succeeded; the frames
    /// (`identified` or the error) travel through `outbox`.
    Identify {
        conn: u64,
        /// When the connection was accepted (ms): an agent idle since then queues for work
        /// from that moment, so the first to connect is the first served.
        accepted_at: u64,
        /// The peer's address, for logs about agents that replace each other.
        peer: Option<SocketAddr>,
        outbox: Outbox,
        identify: Identify,
        done: oneshot::Sender<bool>,
    },
    /// A frame from an identified connection; any reply travels through `outbox`.
    Message {
        conn: u64,
        agent: String,
        outbox: Outbox,
        message: ClientMessage,
    },
    /// An unresponsive agent sent a frame again.
    Alive {
        conn: u64,
        agent: String,
    },
    Disconnected {
        conn: u64,
        agent: String,
    },
    Submit {
        tasks: Vec<NewTask>,
        submitted_by: String,
        /// The submitting token's tenant: the tenant of every task.
        tenant: String,
        reply: Reply<Vec<Submitted>>,
    },
    Cancel {
        task: TaskId,
        reply: Reply<()>,
    },
    /// Put an assigned task back in the queue by hand (its agent gets `task_cancel`).
    Requeue {
        task: TaskId,
        reply: Reply<()>,
    },
    RetryDeadLetter {
        task: TaskId,
        reply: Reply<u8>,
    },
    CreateToken {
        request: crate::wire::http::TokenRequest,
        reply: Reply<String>,
    },
    /// Revokes the tokens of `agent_id` (only the one shown as `prefix`, if given). Admin
    /// tokens too, as long as one is left.
    RevokeTokens {
        agent_id: String,
        prefix: Option<String>,
        reply: Reply<usize>,
    },
    /// A new admin token; every other admin token is revoked in the same commit.
    RotateAdmin {
        reply: Reply<String>,
    },
    /// `command`, recorded in the audit log with the batch that carries it out if it succeeds.
    Audited {
        record: AuditRecord,
        command: Box<Command>,
    },
    /// A new tenant (`POST /admin/tenants`), stored with the batch.
    CreateTenant {
        tenant: NewTenant,
        reply: Reply<Tenant>,
    },
    /// Changes a tenant's weight or quotas (`PATCH /admin/tenants/:name`); answers the tenant
    /// as it is now.
    UpdateTenant {
        name: String,
        patch: TenantPatch,
        reply: Reply<Tenant>,
    },
    /// Deletes a tenant with no tokens and no live tasks (never `default`).
    DeleteTenant {
        name: String,
        reply: Reply<()>,
    },
    /// Every tenant with its live counts and share.
    ListTenants {
        reply: Reply<Vec<TenantView>>,
    },
    ListAgents {
        reply: Reply<Vec<AgentSummary>>,
    },
    PolicyStatus {
        reply: Reply<PolicyStatus>,
    },
    /// Switch to a policy that is already compiled and created (loading happens off the
    /// engine's thread); the engine replays the live state into it, then switches atomically.
    SwapPolicy {
        policy: Box<PolicyHost>,
        /// What to remember so a restart loads the same policy.
        persisted: PersistedPolicy,
        /// The component's bytes when it was uploaded rather than named.
        upload: Option<Vec<u8>>,
        reply: Reply<PolicyStatus>,
    },
    /// Start a shadow run of a policy already compiled and created, replacing any run set.
    StartShadow {
        policy: Box<PolicyHost>,
        /// How the report names where it came from.
        source: String,
        reply: Reply<ShadowReport>,
    },
    /// The shadow run's report; `None` when none is set.
    ShadowReport {
        reply: Reply<Option<ShadowReport>>,
    },
    /// End the shadow run; its final report, `None` when none was set.
    StopShadow {
        reply: Reply<Option<ShadowReport>>,
    },
}
