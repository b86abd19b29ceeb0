//! The bounded fuzz run CI does: every target, a fixed number of executions from a fixed seed
//! (so a failure is reproducible), plus a seed of the run's own so that each CI run looks a
//! little further. `SWITCHYARD_FUZZ_EXECUTIONS` and `SWITCHYARD_FUZZ_SEED` change both.

use std::time::Duration;

use switchyard_fuzz::alloc::CountingAlloc;
use switchyard_fuzz::driver::{escape, fuzz, Budget, Report};
use switchyard_fuzz::targets;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A few seconds per target in a debug build (about 1,000 executions a second on a small
/// machine shared with other builds).
const DEFAULT_EXECUTIONS: u64 = 6_000;

fn run(name: &str) {
    let target = targets::by_name(name).expect("target exists");
    let executions = std::env::var("SWITCHYARD_FUZZ_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_EXECUTIONS);
    let seeds: Vec<u64> = match std::env::var("SWITCHYARD_FUZZ_SEED") {
        Ok(seed) => vec![seed.parse().expect("SWITCHYARD_FUZZ_SEED is a number")],
        Err(_) => vec![1, rand::random()],
    };
    for seed in seeds {
        let report = fuzz(
            &target,
            seed,
            Budget {
                executions: executions / 2,
                // A bound on CI time whatever the machine: the executions usually end first.
                time: Duration::from_secs(6),
            },
        );
        check(&report);
    }
}

fn check(report: &Report) {
    eprintln!(
        "{}: seed {}, {} executions in {:?}, {} outcomes, peak allocation {:?}",
        report.target,
        report.seed,
        report.executions,
        report.elapsed,
        report.outcomes,
        report.peak_alloc
    );
    assert!(report.peak_alloc.is_some(), "allocations are counted");
    assert!(
        report.outcomes > 5,
        "the mutator reaches only {} outcomes",
        report.outcomes
    );
    if let Some(first) = report.findings.first() {
        panic!(
            "{} finding(s) in {} with seed {} (SWITCHYARD_FUZZ_SEED={} reproduces); the first: \
             {}\ninput: {}",
            report.findings.len(),
            report.target,
            report.seed,
            report.seed,
            first.what,
            escape(&first.input)
        );
    }
}

#[test]
fn agent_frame() {
    run("agent_frame");
}

#[test]
fn http_body() {
    run("http_body");
}

#[test]
fn store_record() {
    run("store_record");
}
