//! Counters the engine keeps for `/metrics`, readable from any thread without asking it.

use super::agent::FSM_STATES;
use super::histogram::{Histogram, WAIT_BUCKETS, WORK_BUCKETS};
use crate::policy::ProposalRefusal;
use crate::task::ReclaimReason;
use crate::wire::agent::ErrorCode;
use crate::wire::events::AgentStates;
use crate::wire::tenant::QuotaLimit;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Task priorities are 0 to 3 (`task.rs`); the wait histogram has one series per priority, so
/// its label's cardinality is bounded.
pub const PRIORITIES: usize = 4;

#[derive(Debug)]
pub struct EngineStats {
    /// Agents with an identified connection.
    connected: AtomicUsize,
    /// Take-backs by reason, in [`ReclaimReason::ALL`]'s order.
    reclaims: [AtomicU64; ReclaimReason::ALL.len()],
    /// Connections replaced by a newer one of the same agent id.
    replacements: AtomicU64,
    /// Capability names interned by the policy feed.
    capability_names: AtomicUsize,
    /// Queued (or queued again) to assigned, by priority.
    pub wait: [Histogram; PRIORITIES],
    /// Accepted by the agent to reported complete or failed.
    pub run: Histogram,
    /// One call of the policy's `decide`, replays after a failure excluded.
    pub decision: Histogram,
    /// Tasks moved to the dead letter (retries or take-backs exhausted).
    dead_letters: AtomicU64,
    /// Submissions refused by a tenant's quota, by tenant and limit. Tenant names are made by
    /// admins, so the series are bounded by the tenants that existed since the hub started.
    /// Refusals are rare (and a scrape reads this briefly), so a lock is no bother here.
    quota_refusals: Mutex<BTreeMap<(String, QuotaLimit), u64>>,
    /// Agents known to the hub by state machine state, in [`FSM_STATES`]' order.
    agents: [AtomicU64; FSM_STATES.len()],
    /// Agent frames answered with an error, in [`ErrorCode::LABELS`]' order.
    frame_refusals: [AtomicU64; ErrorCode::LABELS.len()],
    /// Policy proposals the hub refused, in [`ProposalRefusal::ALL`]'s order.
    proposal_refusals: [AtomicU64; ProposalRefusal::ALL.len()],
    /// Tasks assigned again after going back to the queue (a take-back, a failure, a
    /// rejection, a requeue or retry by hand).
    reassignments: AtomicU64,
}

impl Default for EngineStats {
    fn default() -> EngineStats {
        EngineStats {
            connected: AtomicUsize::new(0),
            reclaims: Default::default(),
            replacements: AtomicU64::new(0),
            capability_names: AtomicUsize::new(0),
            wait: std::array::from_fn(|_| Histogram::new(WAIT_BUCKETS)),
            run: Histogram::new(WAIT_BUCKETS),
            decision: Histogram::new(WORK_BUCKETS),
            dead_letters: AtomicU64::new(0),
            quota_refusals: Mutex::default(),
            agents: Default::default(),
            frame_refusals: Default::default(),
            proposal_refusals: Default::default(),
            reassignments: AtomicU64::new(0),
        }
    }
}

impl EngineStats {
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    pub(super) fn set_connected(&self, n: usize) {
        self.connected.store(n, Ordering::Relaxed);
    }

    pub(super) fn connect(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn disconnect(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    /// Take-backs for `reason` since the hub started.
    pub fn reclaims(&self, reason: ReclaimReason) -> u64 {
        self.reclaims[Self::index(reason)].load(Ordering::Relaxed)
    }

    pub(super) fn reclaimed(&self, reason: ReclaimReason) {
        self.reclaims[Self::index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections replaced by another of the same agent since the hub started.
    pub fn replacements(&self) -> u64 {
        self.replacements.load(Ordering::Relaxed)
    }

    pub(super) fn replaced(&self) {
        self.replacements.fetch_add(1, Ordering::Relaxed);
    }

    /// Capability names the engine holds handles for (agents connected and tasks queued use
    /// them; unused ones are swept out as the table grows).
    pub fn capability_names(&self) -> usize {
        self.capability_names.load(Ordering::Relaxed)
    }

    pub(super) fn set_capability_names(&self, n: usize) {
        self.capability_names.store(n, Ordering::Relaxed);
    }

    /// Tasks dead-lettered since the hub started.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }

    pub(super) fn dead_lettered(&self) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
    }

    /// A task of `priority` waited `ms` in the queue before this assignment.
    pub(super) fn waited(&self, priority: u8, ms: u64) {
        self.wait[usize::from(priority).min(PRIORITIES - 1)].observe_ms(ms);
    }

    /// Submissions refused by a tenant's quota since the hub started, by tenant and limit.
    pub fn quota_refusals(&self) -> Vec<(String, QuotaLimit, u64)> {
        let refusals = self
            .quota_refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        refusals
            .iter()
            .map(|((tenant, limit), n)| (tenant.clone(), *limit, *n))
            .collect()
    }

    pub(super) fn quota_refused(&self, tenant: &str, limit: QuotaLimit) {
        let mut refusals = self
            .quota_refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *refusals.entry((tenant.to_owned(), limit)).or_default() += 1;
    }

    /// Agents known to the hub by state (offline ones included: every agent ever identified).
    pub fn agents(&self) -> AgentStates {
        let n = |i: usize| self.agents[i].load(Ordering::Relaxed);
        AgentStates {
            idle: n(0),
            assigned: n(1),
            working: n(2),
            offline: n(3),
        }
    }

    /// An agent moved from state `from` (None: first seen) to `to` (indices into
    /// [`FSM_STATES`]).
    pub(super) fn agent_moved(&self, from: Option<usize>, to: usize) {
        if let Some(from) = from {
            self.agents[from].fetch_sub(1, Ordering::Relaxed);
        }
        self.agents[to].fetch_add(1, Ordering::Relaxed);
    }

    /// An agent's frame was answered with `code` (by the connection or by the engine).
    pub fn refused_frame(&self, code: &ErrorCode) {
        let label = code.label();
        if let Some(i) = ErrorCode::LABELS.iter().position(|l| *l == label) {
            self.frame_refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Agent frames refused, by label of [`ErrorCode::LABELS`].
    pub fn frame_refusals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ErrorCode::LABELS
            .iter()
            .zip(&self.frame_refusals)
            .map(|(label, n)| (*label, n.load(Ordering::Relaxed)))
    }

    pub(super) fn refused_proposal(&self, refusal: ProposalRefusal) {
        if let Some(i) = ProposalRefusal::ALL.iter().position(|r| *r == refusal) {
            self.proposal_refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Policy proposals refused since the hub started, by reason.
    pub fn proposal_refusals(&self) -> impl Iterator<Item = (ProposalRefusal, u64)> + '_ {
        ProposalRefusal::ALL
            .iter()
            .zip(&self.proposal_refusals)
            .map(|(reason, n)| (*reason, n.load(Ordering::Relaxed)))
    }

    /// Tasks assigned again after going back to the queue, since the hub started.
    pub fn reassignments(&self) -> u64 {
        self.reassignments.load(Ordering::Relaxed)
    }

    pub(super) fn reassigned(&self) {
        self.reassignments.fetch_add(1, Ordering::Relaxed);
    }

    fn index(reason: ReclaimReason) -> usize {
        ReclaimReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in ALL")
    }
}
