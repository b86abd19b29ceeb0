//! What a scheduling policy costs the engine, as WebAssembly and as native code.
//!
//! For each policy (greedy, fair) and each live-state size (1,000 or 100,000 queued tasks; 10
//! or 1,000 ready agents) it measures, on the same state:
//!
//! - **event**: one `task-queued` and one `task-dequeued` of an extra task (two boundary
//!   crossings; the state is the same after each iteration, so the figure is stable);
//! - **decide**: one decision pass. `decide` only reads the state (nothing changes until the host
//!   confirms with `assigned`), so every iteration proposes the same assignments: one per ready
//!   agent, or fewer if the queue is shorter.
//!
//! The wasm build runs through [`PolicyHost`], the same path the engine uses (epoch deadline,
//! latency accounting, the component loaded from the binary's built-in copy); the native build
//! calls the policy crate directly. Native and wasm of one configuration are measured one after
//! the other, so their ratio is taken under the same machine load; the summary printed at the
//! end lists those ratios.
//!
//! `cargo bench -p switchyard --bench policy` measures for about two minutes on 2 cores.
//! Under `cargo test` (no `--bench` argument) each benchmark runs once on the small state only,
//! as a smoke test.

use criterion::Criterion;
use serde_json::Value;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;
use switchyard::policy::{AgentView, PolicyHost, PolicySource, TaskView};
use switchyard_fair::Fair;
use switchyard_greedy::Greedy;
use switchyard_policy_sdk::testing::{agent, task};
use switchyard_policy_sdk::Policy;

/// `now` given to every call: an hour after the tasks were queued, so fair's aging is in play.
const NOW: u64 = 1_800_000_000_000;

/// A policy under measurement, whichever build.
trait Subject {
    fn task_queued(&mut self, task: &TaskView);
    fn task_dequeued(&mut self, task: u64);
    fn agent_ready(&mut self, agent: &AgentView);
    /// Returns the number of proposals, so the pass cannot be optimised away.
    fn decide(&mut self, now: u64) -> usize;
}

impl Subject for PolicyHost {
    fn task_queued(&mut self, task: &TaskView) {
        PolicyHost::task_queued(self, task);
    }
    fn task_dequeued(&mut self, task: u64) {
        PolicyHost::task_dequeued(self, task);
    }
    fn agent_ready(&mut self, agent: &AgentView) {
        PolicyHost::agent_ready(self, agent);
    }
    fn decide(&mut self, now: u64) -> usize {
        PolicyHost::decide(self, now).len()
    }
}

/// A policy crate called directly. Events take owned values, as the host's native fallback
/// passes them (it clones), so the comparison includes the same copy the wasm path makes.
struct Native<P>(P);

impl<P: Policy> Subject for Native<P> {
    fn task_queued(&mut self, task: &TaskView) {
        self.0.task_queued(task.clone());
    }
    fn task_dequeued(&mut self, task: u64) {
        self.0.task_dequeued(task);
    }
    fn agent_ready(&mut self, agent: &AgentView) {
        self.0.agent_ready(agent.clone());
    }
    fn decide(&mut self, now: u64) -> usize {
        self.0.decide(now).len()
    }
}

/// Capability sets tasks ask for, in turn: four groups, all of which every agent satisfies.
const NEEDS: [&[u32]; 4] = [&[], &[1], &[2], &[1, 2]];

/// The `i`th queued task: priorities and capability groups in turn, ten fairness keys.
fn queued_task(i: u64) -> TaskView {
    task(i, (i % 4) as u8, NEEDS[(i / 4 % 4) as usize])
        .with_key(&format!("team-{}", i % 10))
        .with_queued_at(NOW - 3_600_000 + i / 1_000)
}

/// The `i`th ready agent: every capability the tasks ask for, and one more.
fn ready_agent(i: u32) -> AgentView {
    AgentView {
        idle_since: NOW - 1_000,
        ..agent(i, &[1, 2, 3])
    }
}

/// Feeds a fresh subject `queued` tasks and `ready` agents.
fn fill(subject: &mut dyn Subject, queued: u64, ready: u32) {
    for i in 1..=queued {
        subject.task_queued(&queued_task(i));
    }
    for i in 0..ready {
        subject.agent_ready(&ready_agent(i));
    }
}

fn build(policy: &str, wasm: bool) -> Box<dyn Subject> {
    match (policy, wasm) {
        (name, true) => Box::new(
            PolicyHost::load(PolicySource::Builtin(name.into()), Value::Null)
                .unwrap_or_else(|e| panic!("builtin:{name} loads: {e}")),
        ),
        ("greedy", false) => Box::new(Native(Greedy::new(&Value::Null).expect("greedy"))),
        ("fair", false) => Box::new(Native(Fair::new(&Value::Null).expect("fair"))),
        (other, false) => panic!("no native build of {other}"),
    }
}

fn benches(c: &mut Criterion, sizes: &[(u64, u32)]) {
    for policy in ["greedy", "fair"] {
        for &(queued, ready) in sizes {
            let mut group = c.benchmark_group(format!("{policy}/q{queued}-a{ready}"));
            for (build_name, wasm) in [("native", false), ("wasm", true)] {
                let mut subject = build(policy, wasm);
                fill(subject.as_mut(), queued, ready);
                let proposals = subject.decide(NOW);
                assert_eq!(
                    proposals,
                    (ready as u64).min(queued) as usize,
                    "{policy} {build_name} proposes one task per ready agent"
                );
                let extra = queued_task(queued + 1);
                group.bench_function(format!("event/{build_name}"), |b| {
                    b.iter(|| {
                        subject.task_queued(black_box(&extra));
                        subject.task_dequeued(black_box(extra.id));
                    })
                });
                group.bench_function(format!("decide/{build_name}"), |b| {
                    b.iter(|| black_box(subject.decide(black_box(NOW))))
                });
            }
            group.finish();
        }
    }
}

/// Where criterion wrote its estimates: `$CRITERION_HOME`, else `<target>/criterion` next to
/// this executable (`<target>/<profile>/deps/policy-…`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// The median of one benchmark's last run, in nanoseconds.
fn median_ns(dir: &std::path::Path, group: &str, function: &str) -> Option<f64> {
    let path = dir
        .join(group.replace('/', "_"))
        .join(function.replace('/', "_"))
        .join("new/estimates.json");
    let estimates: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

/// Prints wasm ÷ native per configuration, from the estimates this run just wrote.
fn print_ratios(sizes: &[(u64, u32)]) {
    let Some(dir) = criterion_dir() else { return };
    println!("\nwasm / native (medians of this run; event = task-queued + task-dequeued)");
    println!(
        "{:<8} {:>7} {:>6} {:<7} {:>12} {:>12} {:>6}",
        "policy", "queued", "agents", "op", "native", "wasm", "ratio"
    );
    for policy in ["greedy", "fair"] {
        for &(queued, ready) in sizes {
            let group = format!("{policy}/q{queued}-a{ready}");
            for op in ["event", "decide"] {
                let native = median_ns(&dir, &group, &format!("{op}/native"));
                let wasm = median_ns(&dir, &group, &format!("{op}/wasm"));
                if let (Some(native), Some(wasm)) = (native, wasm) {
                    println!(
                        "{policy:<8} {queued:>7} {ready:>6} {op:<7} {:>9.2} µs {:>9.2} µs {:>5.2}x",
                        native / 1e3,
                        wasm / 1e3,
                        wasm / native
                    );
                }
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and criterion then runs
    // each benchmark once. The large states take seconds to build in a debug build, so the
    // smoke test uses the small one only.
    let measuring = std::env::args().any(|a| a == "--bench");
    let sizes: &[(u64, u32)] = if measuring {
        &[(1_000, 10), (1_000, 1_000), (100_000, 10), (100_000, 1_000)]
    } else {
        &[(1_000, 10)]
    };
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    benches(&mut c, sizes);
    c.final_summary();
    if measuring {
        print_ratios(sizes);
    }
}
