//! The engine's timing and limits. Defaults are the agent protocol's.

/// How the engine times agents and tasks.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// An assigned task not accepted within this is taken back.
    pub acceptance_timeout_ms: u64,
    /// A disconnected agent keeps its task this long.
    pub reconnect_grace_ms: u64,
    /// An agent that rejected a task is offered none for this long.
    pub reject_cooldown_ms: u64,
    /// Take-backs after which a task is dead-lettered as poison.
    pub max_reclaims: u32,
    /// Finished tasks (completed, cancelled, dead-lettered) are pruned this long after they
    /// finished; 0 keeps them all.
    pub retention_ms: u64,
    /// How long an accepted task may run when it names no `run_timeout_ms` (0: no limit).
    pub run_timeout_ms: u64,
    /// The most capabilities an agent may name in `identify`.
    pub max_capabilities: usize,
    /// The longest capability name an agent may give, in bytes.
    pub max_capability_bytes: usize,
    /// Events kept for resuming `GET /api/events`.
    pub event_ring: usize,
    /// Events buffered per event-stream subscriber before it is dropped.
    pub event_buffer: usize,
    /// How often a `stats` event is sent when something changed (ms); one is sent every ten of
    /// these regardless. 0 sends none.
    pub stats_interval_ms: u64,
}

/// Capabilities per agent unless `serve --max-capabilities` says otherwise: as many as a task
/// may need, so that any task can find an agent able to run it.
pub const DEFAULT_MAX_CAPABILITIES: usize = crate::wire::http::MAX_NEEDED_CAPABILITIES;

/// Bytes per capability name unless `serve --max-capability-bytes` says otherwise: the same
/// bound as a task's capability names.
pub const DEFAULT_MAX_CAPABILITY_BYTES: usize = crate::wire::http::MAX_CAPABILITY_NAME_BYTES;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            acceptance_timeout_ms: 60_000,
            reconnect_grace_ms: 10_000,
            reject_cooldown_ms: 30_000,
            max_reclaims: 3,
            retention_ms: 7 * 24 * 3600 * 1000,
            run_timeout_ms: 30 * 60 * 1000,
            max_capabilities: DEFAULT_MAX_CAPABILITIES,
            max_capability_bytes: DEFAULT_MAX_CAPABILITY_BYTES,
            event_ring: super::events::DEFAULT_EVENT_RING,
            event_buffer: super::events::DEFAULT_EVENT_BUFFER,
            stats_interval_ms: super::tally::DEFAULT_STATS_INTERVAL_MS,
        }
    }
}
