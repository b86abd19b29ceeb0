//! What a run measured, per group and overall, computed from its [`Trace`]. These are the
//! numbers the table, the JSON and the HTML report show; `docs/policy-lab.md` defines each.
//!
//! Everything is measured within the scenario's duration: agent time is counted up to its end,
//! a task is completed if it finished before it, and work still queued at the end is
//! *unserved* (its wait so far counts toward the longest waits, which are therefore lower
//! bounds when anything is unserved).

use serde::Serialize;

use super::scenario::{Priority, Scenario};
use super::sim::{RefusalExample, Trace, NOT_ASSIGNED};
use super::workload::Submission;

/// Time buckets in the share-over-time series.
pub const SERIES_BUCKETS: u64 = 60;
/// Points in each group's wait distribution.
const CDF_POINTS: usize = 50;

/// One policy on one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub policy: PolicyLabel,
    pub groups: Vec<GroupReport>,
    /// Per tenant of the groups, by name: its share of agent time against its weight share.
    pub tenants: Vec<TenantReport>,
    /// Jain's fairness index over the groups' served / fair ratios: 1 when every group got its
    /// fair share, 1/n when one group got everything.
    pub jain_index: f64,
    /// The group served least against its fair share.
    pub worst_served: Option<WorstServed>,
    /// The longest wait of each priority that had tasks (a starvation bound).
    pub priorities: Vec<PriorityReport>,
    pub assignments: u64,
    pub completions: u64,
    pub unserved: u64,
    /// Completions per simulated second.
    pub throughput_per_s: f64,
    pub decisions: DecisionReport,
    /// Proposals the host refused, by reason (`ProposalRefusal`), and the first of each reason.
    pub refusals: Vec<RefusalCount>,
    pub refusal_examples: Vec<RefusalExample>,
    /// Calls into the policy that trapped or ran past the deadline, and whether the host fell
    /// back to the native greedy policy.
    pub failures: Failures,
    /// Each group's share of agent time in each of [`SERIES_BUCKETS`] equal stretches of the run.
    pub share_over_time: ShareSeries,
}

/// Which policy a run used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyLabel {
    /// As given on the command line (`builtin:fair`, a file, with `=CONFIG`).
    pub label: String,
    pub name: String,
    pub version: String,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupReport {
    pub name: String,
    pub weight: f64,
    pub keys: u32,
    pub priority: Priority,
    pub submitted: u64,
    pub assigned: u64,
    pub completed: u64,
    pub unserved: u64,
    /// Of all assignments in the run.
    pub share_of_assignments: f64,
    /// Of all agent time used in the run.
    pub share_of_agent_time: f64,
    pub agent_time_ms: u64,
    /// Its weighted max-min fair share of the fleet's time, given what each group asked for, as
    /// a fraction of all fair shares.
    pub fair_share: f64,
    /// Agent time received / fair share (1 is exactly fair; absent when it asked for nothing).
    pub served_over_fair: Option<f64>,
    /// From queued to assigned.
    pub wait_ms: WaitReport,
    /// Completions per simulated second.
    pub throughput_per_s: f64,
    /// Its wait distribution: `(fraction of assigned tasks, wait ms)`, ascending.
    pub wait_cdf: Vec<(f64, u64)>,
}

/// One tenant: its groups together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantReport {
    pub name: String,
    pub weight: f64,
    /// Its weight over the weights of all the scenario's tenants that have groups: its share
    /// of the fleet when every one of them is backlogged.
    pub weight_share: f64,
    pub assigned: u64,
    /// Of all assignments in the run.
    pub share_of_assignments: f64,
    /// Of all agent time used in the run.
    pub share_of_agent_time: f64,
    pub agent_time_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WaitReport {
    /// Over assigned tasks (absent when none was assigned).
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    /// Over assigned tasks and those still queued at the end (their wait so far).
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorstServed {
    pub group: String,
    pub served_over_fair: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriorityReport {
    pub priority: Priority,
    pub tasks: u64,
    pub unserved: u64,
    pub longest_wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionReport {
    pub calls: u64,
    pub proposals: u64,
    pub refused: u64,
    /// Wall-clock time per decision call, microseconds (the only figures that vary between two
    /// runs with the same seed).
    pub latency_us: LatencyReport,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefusalCount {
    pub reason: crate::policy::ProposalRefusal,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failures {
    pub traps: u64,
    pub timeouts: u64,
    pub fallback_active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShareSeries {
    pub bucket_ms: u64,
    /// Per group (in scenario order), its share of the agent time used in each bucket.
    pub shares: Vec<Vec<f64>>,
}

/// The nearest-rank percentile `q` (0..=1) of ascending `sorted`.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Weighted max-min fair allocation of `capacity` among demands (water filling): no group gets
/// more than it asked for, and what one leaves is shared by the others by weight.
pub fn water_fill(demands: &[f64], weights: &[f64], capacity: f64) -> Vec<f64> {
    let mut share = vec![0.0; demands.len()];
    let mut open: Vec<usize> = (0..demands.len()).filter(|&i| demands[i] > 0.0).collect();
    let mut left = capacity;
    while !open.is_empty() && left > 1e-9 {
        let total: f64 = open.iter().map(|&i| weights[i]).sum();
        let level = left / total;
        let (sated, hungry): (Vec<usize>, Vec<usize>) = open
            .iter()
            .partition(|&&i| demands[i] - share[i] <= level * weights[i]);
        if sated.is_empty() {
            for &i in &hungry {
                share[i] += level * weights[i];
            }
            break;
        }
        for &i in &sated {
            left -= demands[i] - share[i];
            share[i] = demands[i];
        }
        open = hungry;
    }
    share
}

/// Each group's fair share of `capacity` given its `demand`s: water filling between tenants
/// by tenant weight (a tenant asks for what its groups ask for together), then within each
/// tenant between its groups by group weight. With every group in one tenant this is plain
/// water filling between the groups.
pub fn fair_shares(scenario: &Scenario, demand: &[f64], capacity: f64) -> Vec<f64> {
    let weights = scenario.tenant_weights();
    let mut members: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (g, spec) in scenario.groups.iter().enumerate() {
        members.entry(spec.tenant.as_str()).or_default().push(g);
    }
    let tenant_demand: Vec<f64> = members
        .values()
        .map(|groups| groups.iter().map(|&g| demand[g]).sum())
        .collect();
    let tenant_weight: Vec<f64> = members
        .keys()
        .map(|name| weights.get(*name).copied().unwrap_or(1.0))
        .collect();
    let tenant_share = water_fill(&tenant_demand, &tenant_weight, capacity);
    let mut fair = vec![0.0; demand.len()];
    for (groups, allotment) in members.values().zip(tenant_share) {
        let group_demand: Vec<f64> = groups.iter().map(|&g| demand[g]).collect();
        let group_weight: Vec<f64> = groups.iter().map(|&g| scenario.groups[g].weight).collect();
        for (&g, share) in groups
            .iter()
            .zip(water_fill(&group_demand, &group_weight, allotment))
        {
            fair[g] = share;
        }
    }
    fair
}

/// Jain's fairness index of `xs`: (Σx)² / (n·Σx²).
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || squares == 0.0 {
        return 1.0;
    }
    sum * sum / (xs.len() as f64 * squares)
}

/// Computes the report of one run.
pub fn measure(
    scenario: &Scenario,
    work: &[Submission],
    trace: &Trace,
    policy: PolicyLabel,
) -> RunReport {
    let horizon = scenario.duration.ms();
    let seconds = horizon as f64 / 1e3;
    let n = scenario.groups.len();
    let buckets = SERIES_BUCKETS.min(horizon);
    let bucket_ms = horizon.div_ceil(buckets);

    let mut waits: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut max_wait = vec![0u64; n];
    let mut submitted = vec![0u64; n];
    let mut assigned = vec![0u64; n];
    let mut completed = vec![0u64; n];
    let mut busy = vec![0u64; n];
    let mut demand = vec![0f64; n];
    let mut series = vec![vec![0u64; buckets as usize]; n];
    let mut by_priority: [(u64, u64, u64); 4] = [(0, 0, 0); 4];

    for (index, s) in work.iter().enumerate() {
        let g = s.group;
        let priority = usize::from(scenario.groups[g].priority.0.min(3));
        submitted[g] += 1;
        by_priority[priority].0 += 1;
        demand[g] += s.run_ms.min(horizon - s.at) as f64;
        let at = trace.assigned_at[index];
        let wait = if at == NOT_ASSIGNED {
            by_priority[priority].1 += 1;
            horizon - s.at
        } else {
            assigned[g] += 1;
            let end = (at + s.run_ms).min(horizon);
            if at + s.run_ms < horizon {
                completed[g] += 1;
            }
            busy[g] += end - at;
            let mut from = at;
            while from < end {
                let bucket = from / bucket_ms;
                let until = ((bucket + 1) * bucket_ms).min(end);
                series[g][bucket as usize] += until - from;
                from = until;
            }
            waits[g].push(at - s.at);
            at - s.at
        };
        max_wait[g] = max_wait[g].max(wait);
        by_priority[priority].2 = by_priority[priority].2.max(wait);
    }

    let capacity = scenario.agent_count() as f64 * horizon as f64;
    let fair = fair_shares(scenario, &demand, capacity);
    let fair_total: f64 = fair.iter().sum();
    let total_assigned: u64 = assigned.iter().sum();
    let total_busy: u64 = busy.iter().sum();
    let fraction = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };

    let mut groups = Vec::with_capacity(n);
    for (g, spec) in scenario.groups.iter().enumerate() {
        waits[g].sort_unstable();
        let sorted = &waits[g];
        let wait_cdf = if sorted.is_empty() {
            Vec::new()
        } else {
            (1..=CDF_POINTS)
                .map(|i| {
                    let q = i as f64 / CDF_POINTS as f64;
                    (q, percentile(sorted, q))
                })
                .collect()
        };
        groups.push(GroupReport {
            name: spec.name.clone(),
            weight: spec.weight,
            keys: spec.keys,
            priority: spec.priority,
            submitted: submitted[g],
            assigned: assigned[g],
            completed: completed[g],
            unserved: submitted[g] - assigned[g],
            share_of_assignments: fraction(assigned[g] as f64, total_assigned as f64),
            share_of_agent_time: fraction(busy[g] as f64, total_busy as f64),
            agent_time_ms: busy[g],
            fair_share: fraction(fair[g], fair_total),
            served_over_fair: (fair[g] > 0.0).then(|| busy[g] as f64 / fair[g]),
            wait_ms: WaitReport {
                p50: (!sorted.is_empty()).then(|| percentile(sorted, 0.5)),
                p99: (!sorted.is_empty()).then(|| percentile(sorted, 0.99)),
                max: max_wait[g],
            },
            throughput_per_s: completed[g] as f64 / seconds,
            wait_cdf,
        });
    }

    let tenants = tenant_reports(scenario, &assigned, &busy);

    let ratios: Vec<f64> = groups.iter().filter_map(|g| g.served_over_fair).collect();
    let worst_served = groups
        .iter()
        .filter_map(|g| g.served_over_fair.map(|r| (r, &g.name)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(ratio, name)| WorstServed {
            group: name.clone(),
            served_over_fair: ratio,
        });

    let bucket_totals: Vec<u64> = (0..buckets as usize)
        .map(|b| series.iter().map(|s| s[b]).sum())
        .collect();
    let shares = series
        .iter()
        .map(|s| {
            s.iter()
                .zip(&bucket_totals)
                .map(|(&part, &total)| fraction(part as f64, total as f64))
                .collect()
        })
        .collect();

    let mut decide_ns = trace.decide_ns.clone();
    decide_ns.sort_unstable();
    let us = |ns: u64| ns as f64 / 1e3;
    let refused: u64 = trace.refusals.values().sum();
    let counters = &trace.status.counters;

    RunReport {
        policy,
        jain_index: jain(&ratios),
        worst_served,
        priorities: by_priority
            .iter()
            .enumerate()
            .filter(|(_, p)| p.0 > 0)
            .map(|(priority, &(tasks, unserved, longest))| PriorityReport {
                priority: Priority(priority as u8),
                tasks,
                unserved,
                longest_wait_ms: longest,
            })
            .collect(),
        assignments: total_assigned,
        completions: completed.iter().sum(),
        unserved: work.len() as u64 - total_assigned,
        throughput_per_s: completed.iter().sum::<u64>() as f64 / seconds,
        decisions: DecisionReport {
            calls: trace.decisions,
            proposals: trace.proposals,
            refused,
            latency_us: LatencyReport {
                p50: us(percentile(&decide_ns, 0.5)),
                p99: us(percentile(&decide_ns, 0.99)),
                max: us(decide_ns.last().copied().unwrap_or(0)),
            },
        },
        refusals: trace
            .refusals
            .iter()
            .map(|(&reason, &count)| RefusalCount { reason, count })
            .collect(),
        refusal_examples: trace.refusal_examples.clone(),
        failures: Failures {
            traps: counters.traps,
            timeouts: counters.timeouts,
            fallback_active: trace.status.fallback_active,
        },
        share_over_time: ShareSeries { bucket_ms, shares },
        groups,
        tenants,
    }
}

/// Sums the groups' assignments and agent time (`assigned`, `busy`, per group) by tenant.
fn tenant_reports(scenario: &Scenario, assigned: &[u64], busy: &[u64]) -> Vec<TenantReport> {
    let weights = scenario.tenant_weights();
    let mut sums: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for (g, spec) in scenario.groups.iter().enumerate() {
        let sum = sums.entry(spec.tenant.as_str()).or_default();
        sum.0 += assigned[g];
        sum.1 += busy[g];
    }
    let weight = |name: &str| weights.get(name).copied().unwrap_or(1.0);
    let total_weight: f64 = sums.keys().map(|name| weight(name)).sum();
    let total_assigned: u64 = assigned.iter().sum();
    let total_busy: u64 = busy.iter().sum();
    let fraction = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
    sums.into_iter()
        .map(|(name, (assigned, busy))| TenantReport {
            name: name.to_string(),
            weight: weight(name),
            weight_share: fraction(weight(name), total_weight),
            assigned,
            share_of_assignments: fraction(assigned as f64, total_assigned as f64),
            share_of_agent_time: fraction(busy as f64, total_busy as f64),
            agent_time_ms: busy,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_filling_gives_leftovers_to_the_hungry() {
        let fair = water_fill(&[1000.0, 200.0, 200.0, 200.0], &[1.0; 4], 600.0);
        assert_eq!(fair, vec![150.0; 4]);
        let fair = water_fill(&[1000.0, 50.0], &[1.0, 1.0], 600.0);
        assert_eq!(fair, vec![550.0, 50.0]);
        let fair = water_fill(&[1000.0, 1000.0], &[3.0, 1.0], 400.0);
        assert_eq!(fair, vec![300.0, 100.0]);
        assert_eq!(
            water_fill(&[0.0, 10.0], &[1.0, 1.0], 100.0),
            vec![0.0, 10.0]
        );
    }

    #[test]
    fn fair_shares_go_to_tenants_first_then_to_their_groups() {
        let text = r#"
name = "t"
duration = "1m"
[[agents]]
count = 1
[tenants]
big = 3
[[groups]]
name = "a"
tenant = "big"
arrival = { kind = "burst", count = 1 }
run_time = { kind = "fixed", time = "1s" }
[[groups]]
name = "b"
tenant = "big"
weight = 3
arrival = { kind = "burst", count = 1 }
run_time = { kind = "fixed", time = "1s" }
[[groups]]
name = "c"
arrival = { kind = "burst", count = 1 }
run_time = { kind = "fixed", time = "1s" }
"#;
        let scenario = Scenario::from_toml(text, "t.toml").unwrap();
        // big (3) gets 300 of 400, split 1:3 between a and b; default (1) gets 100, all c's.
        let fair = fair_shares(&scenario, &[1000.0, 1000.0, 1000.0], 400.0);
        assert_eq!(fair, vec![75.0, 225.0, 100.0]);
        // What c does not ask for goes to big.
        let fair = fair_shares(&scenario, &[1000.0, 1000.0, 20.0], 400.0);
        assert_eq!(fair, vec![95.0, 285.0, 20.0]);
    }

    #[test]
    fn jain_index_bounds() {
        assert!((jain(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[4.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
