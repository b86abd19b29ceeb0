//! The terminal table: per scenario, one row per policy and group, then one summary line per
//! policy. `docs/policy-lab.md` explains each column.

use std::fmt::Write;

use super::{duration, percent};
use crate::lab::{LabReport, RunReport};

const HEADERS: [&str; 12] = [
    "policy",
    "group",
    "weight",
    "tasks",
    "assigned",
    "share",
    "agent time",
    "fair",
    "served/fair",
    "wait p50",
    "wait p99",
    "wait max",
];

/// The report as text tables, one per scenario.
pub fn render(report: &LabReport) -> String {
    let mut out = String::new();
    for s in &report.scenarios {
        let _ = writeln!(
            out,
            "scenario {}: {} ({} simulated, {} agents, {} tasks, seed {})",
            s.scenario.name,
            s.scenario.description,
            s.scenario.duration,
            s.agents,
            s.tasks,
            report.seed
        );
        let mut rows: Vec<Vec<String>> = vec![HEADERS.iter().map(|h| h.to_string()).collect()];
        for run in &s.runs {
            for g in &run.groups {
                rows.push(vec![
                    run.policy.label.clone(),
                    g.name.clone(),
                    format!("{}", g.weight),
                    g.submitted.to_string(),
                    g.assigned.to_string(),
                    percent(g.share_of_assignments),
                    percent(g.share_of_agent_time),
                    percent(g.fair_share),
                    g.served_over_fair.map_or("-".into(), |r| format!("{r:.2}")),
                    g.wait_ms.p50.map_or("-".into(), duration),
                    g.wait_ms.p99.map_or("-".into(), duration),
                    format!(
                        "{}{}",
                        duration(g.wait_ms.max),
                        if g.unserved > 0 { "+" } else { "" }
                    ),
                ]);
            }
        }
        write_rows(&mut out, &rows);
        for run in &s.runs {
            let _ = writeln!(out, "{}", summary(run));
        }
        out.push('\n');
    }
    out
}

/// One policy's overall figures on one line (two when it has refusals or failures).
pub fn summary(run: &RunReport) -> String {
    let mut line = format!(
        "  {}: Jain {:.3}, worst served/fair {}, {}/s completed, {} unserved; longest wait by \
         priority: {}; {} decisions, {:.1}/{:.1}/{:.1} µs p50/p99/max",
        run.policy.label,
        run.jain_index,
        run.worst_served.as_ref().map_or("-".into(), |w| format!(
            "{:.2} ({})",
            w.served_over_fair, w.group
        )),
        format_args!("{:.2}", run.throughput_per_s),
        run.unserved,
        run.priorities
            .iter()
            .map(|p| format!(
                "{} {}{}",
                p.priority.name(),
                duration(p.longest_wait_ms),
                if p.unserved > 0 { "+" } else { "" }
            ))
            .collect::<Vec<_>>()
            .join(", "),
        run.decisions.calls,
        run.decisions.latency_us.p50,
        run.decisions.latency_us.p99,
        run.decisions.latency_us.max,
    );
    if run.tenants.len() > 1 {
        let tenants = run
            .tenants
            .iter()
            .map(|t| {
                format!(
                    "{} {} of agent time (weight share {})",
                    t.name,
                    percent(t.share_of_agent_time),
                    percent(t.weight_share)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(line, "\n    tenants: {tenants}");
    }
    if !run.refusals.is_empty() || run.failures.traps + run.failures.timeouts > 0 {
        let refusals = run
            .refusals
            .iter()
            .map(|r| format!("{} {}", r.reason, r.count))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            line,
            "\n    refused proposals: {}; traps {}, timeouts {}{}",
            if refusals.is_empty() {
                "none".into()
            } else {
                refusals
            },
            run.failures.traps,
            run.failures.timeouts,
            if run.failures.fallback_active {
                ", switched to the native greedy fallback"
            } else {
                ""
            }
        );
    }
    line
}

fn write_rows(out: &mut String, rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                // Names left, numbers right.
                if c < 2 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
}
