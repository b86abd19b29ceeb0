//! What the load generator measures and how it shows it: latency summaries, the hub's CPU and
//! memory read from `/proc`, and the final table and JSON document.

use serde::Serialize;
use std::time::Duration;

/// Percentiles of a set of latencies, in microseconds. The generator keeps every sample (a run
/// is bounded, so at most a few hundred thousand) and sorts once: exact percentiles, no
/// histogram bucketing error at the 2 ms scale the targets are set at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        // Nearest rank: the smallest sample with at least p of the samples at or below it.
        let at = |p: f64| {
            let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            micros(samples[rank - 1])
        };
        Latency {
            count: samples.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: micros(*samples.last().expect("not empty")),
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// CPU time and memory of a process, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// User plus system CPU time of every thread, in seconds.
    pub cpu_s: f64,
    /// Peak resident set since the process started (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
    /// Resident set now (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// Of which anonymous memory (heap, stacks) (`RssAnon`), in KiB.
    pub rss_anon_kib: u64,
    /// Of which file-backed pages (`RssFile`): for the hub mostly the LMDB map, which the
    /// kernel can drop at any time, so it is reported apart from the heap.
    pub rss_file_kib: u64,
}

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`). Linux fixes it at 100
/// on every architecture it reports to user space for, so it is not looked up.
const USER_HZ: f64 = 100.0;

/// Reads `pid`'s CPU time and memory. `None` when the process is gone or `/proc` is absent.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse(&stat, &status)
}

fn parse(stat: &str, status: &str) -> Option<ProcSample> {
    // The command name (field 2) is in parentheses and may hold spaces; fields after it are
    // counted from the last `)`. utime and stime are fields 14 and 15 (1-based).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
    let cpu_s = (ticks(14)? + ticks(15)?) as f64 / USER_HZ;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_s,
        peak_rss_kib: kib("VmHWM"),
        rss_kib: kib("VmRSS"),
        rss_anon_kib: kib("RssAnon"),
        rss_file_kib: kib("RssFile"),
    })
}

/// The hub's commit counters (`/metrics`) at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitSample {
    pub commits: f64,
    pub seconds: f64,
}

impl CommitSample {
    /// Reads the counters out of the hub's Prometheus text; `None` if either is missing.
    pub fn parse(metrics: &str) -> Option<CommitSample> {
        let value = |series: &str| {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))?
                .parse()
                .ok()
        };
        Some(CommitSample {
            commits: value("switchyard_commits_total")?,
            seconds: value("switchyard_commit_seconds_sum")?,
        })
    }
}

/// What the hub's store did over a scenario: how much work one commit carried, and how long
/// one took (writes and disk flushes).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Commits {
    pub commits: u64,
    pub tasks_per_commit: f64,
    pub mean_commit_ms: f64,
}

impl Commits {
    pub fn between(
        before: Option<CommitSample>,
        after: Option<CommitSample>,
        tasks: u64,
    ) -> Option<Commits> {
        let (before, after) = (before?, after?);
        let commits = after.commits - before.commits;
        (commits > 0.0).then(|| Commits {
            commits: commits as u64,
            tasks_per_commit: tasks as f64 / commits,
            mean_commit_ms: (after.seconds - before.seconds) * 1e3 / commits,
        })
    }
}

/// CPU used between two samples, per 1,000 tasks.
pub fn cpu_per_1000(
    before: Option<ProcSample>,
    after: Option<ProcSample>,
    tasks: u64,
) -> Option<f64> {
    let (before, after) = (before?, after?);
    (tasks > 0).then(|| (after.cpu_s - before.cpu_s) * 1000.0 / tasks as f64)
}

/// The burn-down scenario: a backlog submitted up front, drained as fast as the agents can.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BurnDown {
    pub agents: usize,
    pub tasks: u64,
    /// Tasks whose completion the hub acknowledged.
    pub completed: u64,
    /// Submitting the backlog through the batch endpoint.
    pub submit_s: f64,
    pub submit_tasks_per_s: f64,
    /// From the agents' `identify` to the last completion acknowledged.
    pub drain_s: f64,
    pub drain_tasks_per_s: f64,
    /// Hub CPU over submission and drain, per 1,000 tasks.
    pub hub_cpu_s_per_1000: Option<f64>,
    /// Generator CPU over the same span, per 1,000 tasks (it shares the machine with the hub).
    pub generator_cpu_s_per_1000: Option<f64>,
    /// The hub's commits over the drain.
    pub commits: Option<Commits>,
    pub errors: u64,
    pub timed_out: bool,
}

/// The steady scenario: tasks submitted one by one at a fixed rate to idle agents.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Steady {
    pub agents: usize,
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub submitted: u64,
    pub completed: u64,
    /// From sending the submit request to receiving its response.
    pub submit_ack: Latency,
    /// From sending the submit request to an agent receiving the task's `task_assign`.
    pub queued_to_assigned: Latency,
    pub hub_cpu_s_per_1000: Option<f64>,
    pub generator_cpu_s_per_1000: Option<f64>,
    /// The hub's commits over the submission window.
    pub commits: Option<Commits>,
    /// Submissions refused or failed, and error frames received.
    pub errors: u64,
    /// Assignments still not seen when the scenario ended.
    pub unassigned: u64,
}

/// The capacity scenario: a large backlog held while many agents are connected and busy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Capacity {
    pub agents: usize,
    pub tasks: u64,
    /// Agents that were identified and holding a task when memory was read.
    pub agents_busy: u64,
    pub submit_s: f64,
    pub connect_s: f64,
    /// The hub's memory once everything was in place.
    pub hub: Option<ProcSample>,
    pub errors: u64,
    pub timed_out: bool,
}

/// Everything one run measured: printed as a table and written as JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub hub_url: String,
    pub hub_pid: Option<u32>,
    pub burn_down: Option<BurnDown>,
    pub steady: Option<Steady>,
    pub capacity: Option<Capacity>,
    /// The hub's memory at the end of the run (`peak_rss_kib` is the peak over its whole life).
    pub hub_end: Option<ProcSample>,
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or("n/a (no --hub-pid)".into(), |v| format!("{v:.digits$}"))
}

fn commits(figures: &Option<Commits>) -> String {
    figures.as_ref().map_or("n/a (no /metrics)".into(), |c| {
        format!(
            "{}, {:.1} tasks each, {:.2} ms each",
            c.commits, c.tasks_per_commit, c.mean_commit_ms
        )
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Report {
    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
        if let Some(b) = &self.burn_down {
            row(
                "burn-down",
                format!("{} tasks, {} agents", b.tasks, b.agents),
            );
            row(
                "  submitted (batch)",
                format!("{:.2} s, {:.0} tasks/s", b.submit_s, b.submit_tasks_per_s),
            );
            row(
                "  drained",
                format!("{} in {:.2} s", b.completed, b.drain_s),
            );
            row(
                "  throughput",
                format!("{:.0} tasks/s", b.drain_tasks_per_s),
            );
            row(
                "  hub CPU per 1,000 tasks",
                format!("{} s", opt(b.hub_cpu_s_per_1000, 4)),
            );
            row(
                "  generator CPU per 1,000",
                format!("{} s", opt(b.generator_cpu_s_per_1000, 4)),
            );
            row("  commits", commits(&b.commits));
            row(
                "  errors / timed out",
                format!("{} / {}", b.errors, b.timed_out),
            );
        }
        if let Some(s) = &self.steady {
            row(
                "steady",
                format!(
                    "{:.0}/s target, {} agents, {:.1} s",
                    s.target_rate, s.agents, s.duration_s
                ),
            );
            row(
                "  achieved",
                format!(
                    "{:.0} tasks/s ({} submitted, {} completed)",
                    s.achieved_rate, s.submitted, s.completed
                ),
            );
            let lat = |l: &Latency| {
                format!(
                    "p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs (n={})",
                    l.p50_us, l.p99_us, l.max_us, l.count
                )
            };
            row("  submit-ack", lat(&s.submit_ack));
            row("  queued-to-assigned", lat(&s.queued_to_assigned));
            row(
                "  hub CPU per 1,000 tasks",
                format!("{} s", opt(s.hub_cpu_s_per_1000, 4)),
            );
            row(
                "  generator CPU per 1,000",
                format!("{} s", opt(s.generator_cpu_s_per_1000, 4)),
            );
            row("  commits", commits(&s.commits));
            row(
                "  errors / unassigned",
                format!("{} / {}", s.errors, s.unassigned),
            );
        }
        if let Some(c) = &self.capacity {
            row(
                "capacity",
                format!("{} tasks, {} agents", c.tasks, c.agents),
            );
            row(
                "  submitted / connected",
                format!("{:.1} s / {:.1} s", c.submit_s, c.connect_s),
            );
            row("  agents busy", format!("{}", c.agents_busy));
            if let Some(h) = &c.hub {
                row(
                    "  hub RSS",
                    format!(
                        "{} (anon {}, file {})",
                        mib(h.rss_kib),
                        mib(h.rss_anon_kib),
                        mib(h.rss_file_kib)
                    ),
                );
                row("  hub peak RSS", mib(h.peak_rss_kib));
            }
            row(
                "  errors / timed out",
                format!("{} / {}", c.errors, c.timed_out),
            );
        }
        if let Some(h) = &self.hub_end {
            row("hub peak RSS (lifetime)", mib(h.peak_rss_kib));
            row("hub CPU (lifetime)", format!("{:.2} s", h.cpu_s));
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples = (1..=100).map(Duration::from_micros).collect();
        let l = Latency::of(samples);
        assert_eq!(
            (l.count, l.p50_us, l.p99_us, l.max_us),
            (100, 50.0, 99.0, 100.0)
        );
        let one = Latency::of(vec![Duration::from_micros(7)]);
        assert_eq!((one.p50_us, one.p99_us), (7.0, 7.0));
        assert_eq!(Latency::of(Vec::new()).count, 0);
    }

    #[test]
    fn proc_files_parse_even_with_spaces_in_the_name() {
        let stat = "42 (switch yard) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t 512 kB\nRssFile:\t 500 kB\n";
        let s = parse(stat, status).expect("parses");
        assert_eq!(s.cpu_s, 3.0);
        assert_eq!(
            (s.peak_rss_kib, s.rss_kib, s.rss_anon_kib, s.rss_file_kib),
            (2048, 1024, 512, 500)
        );
        let before = ProcSample { cpu_s: 1.0, ..s };
        assert_eq!(cpu_per_1000(Some(before), Some(s), 4000), Some(0.5));
    }
}
