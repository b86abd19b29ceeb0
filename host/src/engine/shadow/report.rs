//! The body of `GET /api/policy/shadow`: how a shadow run's decisions compare with the live
//! policy's, and how it has behaved.

use crate::policy::{AgentId, LatencySummary, ProposalRefusal, TaskId};
use crate::wire::http::{ShadowState, ShadowStopReason};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// What a shadow run has seen so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowReport {
    /// The candidate's name and version, from its `about`.
    pub name: String,
    pub version: String,
    /// The contract version the candidate speaks (`"0.2.0"`, or `"0.1.0"` behind an adapter).
    pub contract: crate::policy::ContractVersion,
    /// `sha256:<hex>` of the component's bytes.
    pub digest: String,
    /// `builtin:<name>`, the file path, or `upload`.
    pub source: String,
    pub config: serde_json::Value,
    /// When the shadow run started, milliseconds since the Unix epoch.
    pub started_at: u64,
    pub state: ShadowState,
    /// Set once the run stopped on its own.
    pub stopped: Option<Stopped>,
    /// Decision passes in which both the live policy and the shadow were asked and answered.
    pub decisions_compared: u64,
    /// Passes in which the shadow's `decide` failed (they are not compared).
    pub decisions_failed: u64,
    pub agreement: Agreement,
    /// Proposals the host would have refused, by reason (every reason listed, zeros included).
    pub refused: BTreeMap<ProposalRefusal, u64>,
    /// Assignments per fairness key (the tasks' `fairness_key`), live against shadow.
    pub groups: BTreeMap<String, GroupShare>,
    /// Calls into the shadow that trapped (including running out of memory).
    pub traps: u64,
    /// Calls into the shadow stopped at their deadline.
    pub timeouts: u64,
    /// Fresh instances started after a failure (the live state replayed into each).
    pub restarts: u64,
    /// Duration of the shadow's calls (events and decisions).
    pub call_latency_us: LatencySummary,
}

/// Why and when a run stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stopped {
    pub reason: ShadowStopReason,
    /// What happened, for the operator.
    pub detail: String,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
}

/// How often the shadow would have made the live policy's assignments.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Agreement {
    /// Assignments the live policy's proposals led to, in the passes compared.
    pub live_assignments: u64,
    /// Assignments the shadow's proposals would have led to (those the host would accept).
    pub shadow_assignments: u64,
    /// Assignments both made: the same task to the same agent in the same pass.
    pub agreed: u64,
    /// `agreed / (live + shadow - agreed)`: 1 when both always assign the same, 0 when they
    /// never do; `null` until either assigns anything.
    pub ratio: Option<f64>,
}

/// One fairness group's assignments in the passes compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupShare {
    pub live_assignments: u64,
    pub shadow_assignments: u64,
    /// This group's fraction of all live assignments (0 to 1).
    pub live_share: f64,
    /// This group's fraction of all the shadow's assignments (0 to 1).
    pub shadow_share: f64,
    /// `shadow_share - live_share`, in percentage points: positive when the shadow would give
    /// this group more.
    pub difference_points: f64,
}

impl ShadowReport {
    pub fn new(
        status: crate::policy::PolicyStatus,
        source: String,
        started_at: u64,
    ) -> ShadowReport {
        ShadowReport {
            name: status.name,
            version: status.version,
            contract: status.contract,
            digest: status.digest,
            source,
            config: status.config,
            started_at,
            state: ShadowState::Running,
            stopped: None,
            decisions_compared: 0,
            decisions_failed: 0,
            agreement: Agreement::default(),
            refused: ProposalRefusal::ALL.iter().map(|&r| (r, 0)).collect(),
            groups: BTreeMap::new(),
            traps: 0,
            timeouts: 0,
            restarts: 0,
            call_latency_us: LatencySummary::default(),
        }
    }

    /// Marks the run stopped, unless it already is (the first reason is the one that counts).
    pub fn stop(&mut self, reason: ShadowStopReason, detail: String, at: u64) {
        if self.stopped.is_none() {
            self.state = ShadowState::Stopped;
            self.stopped = Some(Stopped { reason, detail, at });
        }
    }

    /// Counts one compared pass: what the live policy's proposals led to and what the shadow's
    /// would have, each with the fairness key of its task.
    pub fn compare<K: AsRef<str>>(
        &mut self,
        live: &[(TaskId, AgentId, K)],
        shadow: &[(TaskId, AgentId, K)],
        refused: &[ProposalRefusal],
    ) {
        self.decisions_compared += 1;
        let live_pairs: HashSet<(TaskId, AgentId)> = live.iter().map(|&(t, a, _)| (t, a)).collect();
        let agreed = shadow
            .iter()
            .filter(|(t, a, _)| live_pairs.contains(&(*t, *a)))
            .count() as u64;
        let agreement = &mut self.agreement;
        agreement.live_assignments += live.len() as u64;
        agreement.shadow_assignments += shadow.len() as u64;
        agreement.agreed += agreed;
        let union = agreement.live_assignments + agreement.shadow_assignments - agreement.agreed;
        agreement.ratio = (union > 0).then(|| agreement.agreed as f64 / union as f64);
        for &refusal in refused {
            *self.refused.entry(refusal).or_default() += 1;
        }
        for (_, _, key) in live {
            self.group(key.as_ref()).live_assignments += 1;
        }
        for (_, _, key) in shadow {
            self.group(key.as_ref()).shadow_assignments += 1;
        }
        if !live.is_empty() || !shadow.is_empty() {
            self.reshare();
        }
    }

    fn group(&mut self, key: &str) -> &mut GroupShare {
        if !self.groups.contains_key(key) {
            self.groups.insert(key.to_string(), GroupShare::default());
        }
        self.groups.get_mut(key).expect("inserted above")
    }

    fn reshare(&mut self) {
        let share = |n: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            }
        };
        let live = self.agreement.live_assignments;
        let shadow = self.agreement.shadow_assignments;
        for group in self.groups.values_mut() {
            group.live_share = share(group.live_assignments, live);
            group.shadow_share = share(group.shadow_assignments, shadow);
            group.difference_points = (group.shadow_share - group.live_share) * 100.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ShadowReport {
        let status = crate::policy::PolicyStatus {
            name: "p".into(),
            version: "1".into(),
            contract: crate::policy::ContractVersion::CURRENT,
            digest: "sha256:00".into(),
            source: "bytes".into(),
            config: serde_json::Value::Null,
            loaded_at: 0,
            fallback_active: false,
            startup_fallback: None,
            counters: Default::default(),
        };
        ShadowReport::new(status, "upload".into(), 0)
    }

    #[test]
    fn agreement_and_shares_add_up() {
        let mut r = report();
        assert_eq!(r.agreement.ratio, None);
        r.compare(
            &[(1, 0, "a"), (2, 1, "a")],
            &[(1, 0, "a"), (3, 1, "b")],
            &[ProposalRefusal::AgentNotReady],
        );
        r.compare::<&str>(&[], &[], &[]);
        assert_eq!(r.decisions_compared, 2);
        assert_eq!(
            (r.agreement.live_assignments, r.agreement.shadow_assignments),
            (2, 2)
        );
        assert_eq!(r.agreement.agreed, 1);
        assert_eq!(r.agreement.ratio, Some(1.0 / 3.0));
        assert_eq!(r.refused[&ProposalRefusal::AgentNotReady], 1);
        assert_eq!(r.refused[&ProposalRefusal::UnknownTask], 0);
        let a = &r.groups["a"];
        assert_eq!((a.live_share, a.shadow_share), (1.0, 0.5));
        assert_eq!(a.difference_points, -50.0);
        assert_eq!(r.groups["b"].difference_points, 50.0);
    }

    #[test]
    fn the_first_stop_reason_stays() {
        let mut r = report();
        r.stop(ShadowStopReason::Failing, "trapped".into(), 5);
        r.stop(ShadowStopReason::FellBehind, "full".into(), 6);
        assert_eq!(r.state, ShadowState::Stopped);
        let stopped = r.stopped.unwrap();
        assert_eq!((stopped.reason, stopped.at), (ShadowStopReason::Failing, 5));
    }
}
