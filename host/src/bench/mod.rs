//! `switchyard bench`: a load generator for a running hub.
//!
//! It drives the hub only through its public surfaces, as a real fleet would: simulated agents
//! over real WebSockets ([`agents`]) and submissions over HTTP. Three scenarios:
//!
//! - **burn-down**: a backlog of `--tasks` is submitted up front through the batch endpoint
//!   while `--agents` connections are open but not identified; then every agent identifies at
//!   once and accepts and completes each task the moment it arrives. Throughput is completions
//!   acknowledged per second, from the first `identify` to the last `task_ack`.
//! - **steady**: tasks are submitted one request each at `--rate` per second for `--duration`
//!   to idle agents. Submit-ack latency is the request's round trip; queued-to-assigned is from
//!   sending the request to an agent receiving the `task_assign`, both on the generator's
//!   monotonic clock (the hub's millisecond timestamps are too coarse for a 2 ms target).
//! - **capacity**: `--capacity-tasks` queued and `--capacity-agents` connected agents that each
//!   accept a task and hold it; then the hub's memory is read. Run it on its own hub: it leaves
//!   the backlog behind.
//!
//! Given the hub's pid, it reads the hub's CPU time and memory from `/proc` around each
//! scenario. It prints progress to stderr every second, the summary as a table on stdout, and
//! the whole report as JSON (`--json`). It is bounded: every wait ends at `--timeout`.

mod agents;
mod report;

pub use report::Report;

use agents::{Counters, Identity, Mode};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Concurrent HTTP requests while creating tokens, and WebSocket handshakes while connecting.
const SETUP_CONCURRENCY: usize = 32;
/// How long the steady scenario waits, after its last submission, for assignments to arrive.
const STEADY_GRACE: Duration = Duration::from_secs(5);
/// How often waits poll the counters: the resolution of the burn-down's drain time.
const POLL: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    BurnDown,
    Steady,
    Capacity,
}

/// Options of `switchyard bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The hub's base URL (loopback: this generator is for a hub on this machine).
    #[arg(long, env = "SWITCHYARD_HUB", default_value = "http://127.0.0.1:4000")]
    pub hub: String,
    /// An admin token (creates one agent token per simulated agent).
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The hub's process id: its CPU time and memory are read from /proc/PID/{stat,status}.
    #[arg(long)]
    pub hub_pid: Option<u32>,
    /// Scenarios to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "burn-down,steady"
    )]
    pub scenarios: Vec<Scenario>,
    /// Simulated agents in burn-down and steady.
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Burn-down: tasks submitted up front.
    #[arg(long, default_value_t = 100_000)]
    pub tasks: u64,
    /// Tasks per batch request (the hub takes at most 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// Steady: submissions per second.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Steady: how long to submit, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Capacity: tasks queued.
    #[arg(long, default_value_t = 1_000_000)]
    pub capacity_tasks: u64,
    /// Capacity: agents connected, each holding a task.
    #[arg(long, default_value_t = 10_000)]
    pub capacity_agents: usize,
    /// Every wait of the run ends by this many seconds after the start.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What every scenario needs.
struct Bench {
    args: BenchArgs,
    http: reqwest::Client,
    base: String,
    ws_url: String,
    deadline: Instant,
    /// Distinguishes this run's agent ids from earlier runs' against the same hub.
    run_id: String,
}

/// Runs the scenarios, prints the table, writes the JSON.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let base = args.hub.trim_end_matches('/').to_owned();
    let ws_url = match base.strip_prefix("http://") {
        Some(rest) => format!("ws://{rest}/ws"),
        None => bail!("--hub must be an http:// URL (the generator speaks plain WebSocket)"),
    };
    if args.agents == 0 || args.batch == 0 || args.rate <= 0.0 {
        bail!("--agents, --batch and --rate must be positive");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let health: Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .with_context(|| format!("cannot reach the hub at {base}"))?
        .json()
        .await?;
    tracing::info!(%health, "hub is up");
    let timeout = Duration::from_secs(args.timeout);
    let bench = Bench {
        http,
        base: base.clone(),
        ws_url,
        deadline: Instant::now() + timeout,
        run_id: format!("{:x}", crate::wire::now_ms()),
        args,
    };
    let mut report = Report {
        hub_url: base,
        hub_pid: bench.args.hub_pid,
        ..Report::default()
    };
    // A safety net over the per-wait deadlines: setup steps (token creation, connecting) that
    // the hub stops answering must not hang the run either.
    let scenarios = bench.args.scenarios.clone();
    let work = async {
        for scenario in scenarios {
            match scenario {
                Scenario::BurnDown => report.burn_down = Some(bench.burn_down().await?),
                Scenario::Steady => report.steady = Some(bench.steady().await?),
                Scenario::Capacity => report.capacity = Some(bench.capacity().await?),
            }
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(timeout + Duration::from_secs(30), work).await {
        Ok(result) => result?,
        Err(_) => eprintln!("bench: the run overran --timeout; reporting what was measured"),
    }
    report.hub_end = bench.args.hub_pid.and_then(report::sample);
    print!("{}", report.table());
    if let Some(path) = &bench.args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("bench: report written to {}", path.display());
    }
    Ok(())
}

impl Bench {
    fn hub_sample(&self) -> Option<report::ProcSample> {
        self.args.hub_pid.and_then(report::sample)
    }

    /// The hub's commit counters, from `/metrics` (no token needed).
    async fn commit_sample(&self) -> Option<report::CommitSample> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        report::CommitSample::parse(&text)
    }

    fn own_sample() -> Option<report::ProcSample> {
        report::sample(std::process::id())
    }

    fn timed_out(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Creates `n` agent tokens named `bench-<run>-<label>-<i>`.
    async fn identities(&self, label: &str, n: usize) -> anyhow::Result<Vec<Identity>> {
        let done = Arc::new(AtomicU64::new(0));
        let progress = spawn_progress(format!("{label}: tokens"), {
            let done = done.clone();
            move || format!("{}/{n} created", done.load(Ordering::Relaxed))
        });
        let results: Vec<anyhow::Result<Identity>> = stream::iter(0..n)
            .map(|i| {
                let agent_id = format!("bench-{}-{label}-{i}", self.run_id);
                let done = done.clone();
                async move {
                    let answer = self
                        .post("/admin/tokens", json!({ "agent_id": agent_id }))
                        .await?;
                    let token = answer["token"]
                        .as_str()
                        .context("token answer without `token`")?
                        .to_owned();
                    done.fetch_add(1, Ordering::Relaxed);
                    Ok(Identity { agent_id, token })
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
        progress.abort();
        results.into_iter().collect()
    }

    /// Opens a WebSocket per identity (not identified yet).
    async fn connect(
        &self,
        label: &str,
        identities: Vec<Identity>,
    ) -> anyhow::Result<Vec<agents::Connected>> {
        let n = identities.len();
        let done = Arc::new(AtomicU64::new(0));
        let progress = spawn_progress(format!("{label}: connecting"), {
            let done = done.clone();
            move || format!("{}/{n} open", done.load(Ordering::Relaxed))
        });
        let results: Vec<anyhow::Result<agents::Connected>> = stream::iter(identities)
            .map(|identity| {
                let done = done.clone();
                async move {
                    let connected = agents::connect(&self.ws_url, identity).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    connected
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
        progress.abort();
        results.into_iter().collect()
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.post_raw(path, body.to_string()).await
    }

    async fn post_raw(&self, path: &str, body: String) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.args.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {path} failed"))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: the hub refused ({status}): {value}");
        }
        Ok(value)
    }

    /// Submits `total` no-op tasks through the batch endpoint, one batch at a time.
    async fn submit_backlog(&self, label: &str, total: u64) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let done = Arc::new(AtomicU64::new(0));
        let progress = spawn_progress(format!("{label}: submitting"), {
            let done = done.clone();
            move || progress_count(done.load(Ordering::Relaxed), total, started)
        });
        let mut sent = 0;
        while sent < total {
            if self.timed_out() {
                progress.abort();
                bail!("{label}: --timeout passed while submitting ({sent}/{total})");
            }
            let n = (total - sent).min(self.args.batch as u64);
            let answer = self.post_raw("/api/tasks/batch", batch_body(n)).await?;
            let ids = answer["task_ids"].as_array().map_or(0, Vec::len) as u64;
            if ids != n {
                progress.abort();
                bail!("{label}: a batch of {n} came back with {ids} task ids");
            }
            sent += n;
            done.store(sent, Ordering::Relaxed);
        }
        progress.abort();
        Ok(started.elapsed())
    }

    /// Starts every connection's agent loop: they identify at once.
    fn start_agents(
        connected: Vec<agents::Connected>,
        mode: Mode,
        counters: &Arc<Counters>,
    ) -> (watch::Sender<bool>, JoinSet<Vec<(u64, Instant)>>) {
        let (stop, stopped) = watch::channel(false);
        let mut set = JoinSet::new();
        for agent in connected {
            set.spawn(agents::run(agent, mode, counters.clone(), stopped.clone()));
        }
        (stop, set)
    }

    /// Stops the agents and gathers what they recorded.
    async fn stop_agents(
        stop: watch::Sender<bool>,
        mut set: JoinSet<Vec<(u64, Instant)>>,
    ) -> Vec<(u64, Instant)> {
        let _ = stop.send(true);
        let mut all = Vec::new();
        let gather = async {
            while let Some(joined) = set.join_next().await {
                if let Ok(records) = joined {
                    all.extend(records);
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), gather)
            .await
            .is_err()
        {
            set.abort_all();
        }
        all
    }

    /// Waits until `done()` or the deadline; false on the deadline.
    async fn wait_for(&self, done: impl Fn() -> bool) -> bool {
        while !done() {
            if self.timed_out() {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
        true
    }

    async fn burn_down(&self) -> anyhow::Result<report::BurnDown> {
        let (n, total) = (self.args.agents, self.args.tasks);
        eprintln!("bench: burn-down: {total} tasks, {n} agents");
        let identities = self.identities("burn-down", n).await?;
        let connected = self.connect("burn-down", identities).await?;
        let (hub0, gen0) = (self.hub_sample(), Self::own_sample());
        let submit = self.submit_backlog("burn-down", total).await?;
        let counters = Arc::new(Counters::default());
        let commits0 = self.commit_sample().await;
        let go = Instant::now();
        let progress = spawn_progress("burn-down: draining".into(), {
            let counters = counters.clone();
            move || progress_count(Counters::get(&counters.completed), total, go)
        });
        let (stop, set) = Self::start_agents(connected, Mode::Complete, &counters);
        let finished = self
            .wait_for(|| Counters::get(&counters.completed) >= total)
            .await;
        let drain = go.elapsed();
        let (hub1, gen1) = (self.hub_sample(), Self::own_sample());
        let commits1 = self.commit_sample().await;
        progress.abort();
        Self::stop_agents(stop, set).await;
        let completed = Counters::get(&counters.completed);
        Ok(report::BurnDown {
            agents: n,
            tasks: total,
            completed,
            submit_s: submit.as_secs_f64(),
            submit_tasks_per_s: total as f64 / submit.as_secs_f64(),
            drain_s: drain.as_secs_f64(),
            drain_tasks_per_s: completed as f64 / drain.as_secs_f64(),
            hub_cpu_s_per_1000: report::cpu_per_1000(hub0, hub1, completed),
            generator_cpu_s_per_1000: report::cpu_per_1000(gen0, gen1, completed),
            commits: report::Commits::between(commits0, commits1, completed),
            errors: Counters::get(&counters.errors) + Counters::get(&counters.lost),
            timed_out: !finished,
        })
    }

    async fn steady(&self) -> anyhow::Result<report::Steady> {
        let (n, rate, duration) = (self.args.agents, self.args.rate, self.args.duration);
        let total = (rate * duration).round() as u64;
        eprintln!("bench: steady: {rate}/s for {duration} s ({total} tasks), {n} agents");
        let identities = self.identities("steady", n).await?;
        let connected = self.connect("steady", identities).await?;
        let counters = Arc::new(Counters::default());
        let (stop, set) = Self::start_agents(connected, Mode::Complete, &counters);
        if !self
            .wait_for(|| Counters::get(&counters.identified) >= n as u64)
            .await
        {
            bail!("steady: agents were not all identified before --timeout");
        }

        let submitted = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let progress = spawn_progress("steady".into(), {
            let (counters, submitted) = (counters.clone(), submitted.clone());
            move || {
                format!(
                    "{} submitted, {} assigned, {} completed, {:.0}/s",
                    submitted.load(Ordering::Relaxed),
                    Counters::get(&counters.assigned),
                    Counters::get(&counters.completed),
                    submitted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
                )
            }
        });
        let (hub0, gen0) = (self.hub_sample(), Self::own_sample());
        let commits0 = self.commit_sample().await;
        // Open loop: each submission is its own task, sent when it falls due whatever the
        // earlier ones are doing, so a slow answer does not lower the offered rate. Timers
        // tick at about 1 ms, so each tick sends however many fell due since the last.
        let mut requests = JoinSet::new();
        let mut ticker = tokio::time::interval(Duration::from_micros(250));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sent = 0u64;
        while sent < total && !self.timed_out() {
            ticker.tick().await;
            let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(total);
            while sent < due {
                let http = self.http.clone();
                let url = format!("{}/api/tasks", self.base);
                let token = self.args.token.clone();
                let submitted = submitted.clone();
                requests.spawn(async move {
                    let sent_at = Instant::now();
                    let answer = http
                        .post(url)
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(r#"{"description":"bench"}"#)
                        .send()
                        .await;
                    let acked_at = Instant::now();
                    submitted.fetch_add(1, Ordering::Relaxed);
                    let response = answer.ok().filter(|r| r.status().is_success())?;
                    let body: Value = response.json().await.ok()?;
                    let seq = agents::task_seq(body["task_id"].as_str()?)?;
                    Some((seq, sent_at, acked_at))
                });
                sent += 1;
            }
        }
        let window = started.elapsed();
        let mut submissions = HashMap::with_capacity(total as usize);
        let mut submit_ack = Vec::with_capacity(total as usize);
        let mut errors = 0;
        while let Some(joined) = requests.join_next().await {
            match joined.ok().flatten() {
                Some((seq, sent_at, acked_at)) => {
                    submit_ack.push(acked_at - sent_at);
                    submissions.insert(seq, sent_at);
                }
                None => errors += 1,
            }
        }
        let (hub1, gen1) = (self.hub_sample(), Self::own_sample());
        let commits1 = self.commit_sample().await;
        let grace = Instant::now() + STEADY_GRACE;
        while Counters::get(&counters.assigned) < submissions.len() as u64
            && Instant::now() < grace
            && !self.timed_out()
        {
            tokio::time::sleep(POLL).await;
        }
        progress.abort();
        let received = Self::stop_agents(stop, set).await;
        let to_assigned: Vec<Duration> = received
            .iter()
            .filter_map(|(seq, at)| submissions.get(seq).map(|sent_at| *at - *sent_at))
            .collect();
        let unassigned = submissions.len().saturating_sub(to_assigned.len()) as u64;
        Ok(report::Steady {
            agents: n,
            target_rate: rate,
            achieved_rate: sent as f64 / window.as_secs_f64(),
            duration_s: window.as_secs_f64(),
            submitted: sent,
            completed: Counters::get(&counters.completed),
            submit_ack: report::Latency::of(submit_ack),
            queued_to_assigned: report::Latency::of(to_assigned),
            hub_cpu_s_per_1000: report::cpu_per_1000(hub0, hub1, sent),
            generator_cpu_s_per_1000: report::cpu_per_1000(gen0, gen1, sent),
            commits: report::Commits::between(commits0, commits1, sent),
            errors: errors + Counters::get(&counters.errors) + Counters::get(&counters.lost),
            unassigned,
        })
    }

    async fn capacity(&self) -> anyhow::Result<report::Capacity> {
        let (n, total) = (self.args.capacity_agents, self.args.capacity_tasks);
        eprintln!("bench: capacity: {total} tasks queued, {n} agents each holding one");
        let submit = self.submit_backlog("capacity", total).await?;
        let identities = self.identities("capacity", n).await?;
        let started = Instant::now();
        let connected = self.connect("capacity", identities).await?;
        let counters = Arc::new(Counters::default());
        let (stop, set) = Self::start_agents(connected, Mode::Hold, &counters);
        let want = (n as u64).min(total);
        let progress = spawn_progress("capacity: agents busy".into(), {
            let counters = counters.clone();
            move || progress_count(Counters::get(&counters.assigned), want, started)
        });
        let finished = self
            .wait_for(|| Counters::get(&counters.assigned) >= want)
            .await;
        let connect = started.elapsed();
        progress.abort();
        // Let the last acceptances commit before memory is read.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let hub = self.hub_sample();
        let agents_busy = Counters::get(&counters.assigned);
        let errors = Counters::get(&counters.errors) + Counters::get(&counters.lost);
        Self::stop_agents(stop, set).await;
        Ok(report::Capacity {
            agents: n,
            tasks: total,
            agents_busy,
            submit_s: submit.as_secs_f64(),
            connect_s: connect.as_secs_f64(),
            hub,
            errors,
            timed_out: !finished,
        })
    }
}

/// A batch body of `n` no-op tasks.
fn batch_body(n: u64) -> String {
    let task = r#"{"description":"bench"}"#;
    let mut body = String::with_capacity(12 + n as usize * (task.len() + 1));
    body.push_str(r#"{"tasks":["#);
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str(task);
    }
    body.push_str("]}");
    body
}

fn progress_count(done: u64, total: u64, since: Instant) -> String {
    let secs = since.elapsed().as_secs_f64();
    format!(
        "{done}/{total} ({:.0}%), {:.0}/s",
        done as f64 * 100.0 / total.max(1) as f64,
        done as f64 / secs.max(1e-9)
    )
}

/// Prints `label: line()` to stderr every second until aborted.
fn spawn_progress(
    label: String,
    line: impl Fn() -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.tick().await;
        loop {
            ticker.tick().await;
            eprintln!("bench: {label}: {}", line());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_bodies_are_json_with_n_tasks() {
        let body: Value = serde_json::from_str(&batch_body(3)).unwrap();
        assert_eq!(body["tasks"].as_array().unwrap().len(), 3);
        assert_eq!(body["tasks"][2]["description"], "bench");
    }
}
