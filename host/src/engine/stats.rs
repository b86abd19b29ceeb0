//! Counters the engine keeps for `/metrics`, readable from any thread without asking it.

use crate::task::ReclaimReason;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct EngineStats {
    /// Agents with an identified connection.
    connected: AtomicUsize,
    /// Take-backs by reason, in [`ReclaimReason::ALL`]'s order.
    reclaims: [AtomicU64; ReclaimReason::ALL.len()],
    /// Connections replaced by a newer one of the same agent id.
    replacements: AtomicU64,
    /// Capability names interned by the policy feed.
    capability_names: AtomicUsize,
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

    fn index(reason: ReclaimReason) -> usize {
        ReclaimReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in ALL")
    }
}
