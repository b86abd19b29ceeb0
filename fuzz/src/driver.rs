//! The mutational driver: runs a target on mutated inputs for a number of executions or a
//! time, and collects findings.
//!
//! It has no coverage instrumentation (stable Rust has none a library can read), so it uses
//! what the target says happened as its feedback: an input whose outcome name is new joins the
//! pool that later inputs are mutated from. Inputs that merely reach a known outcome are
//! dropped, which keeps the pool small and varied.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::alloc;
use crate::mutate::Mutator;
use crate::targets::Target;

/// How long a run goes on: whichever limit comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub executions: u64,
    pub time: Duration,
}

/// What went wrong with one input.
#[derive(Debug, Clone)]
pub struct Finding {
    pub input: Vec<u8>,
    pub what: String,
}

#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    pub seed: u64,
    pub executions: u64,
    pub elapsed: Duration,
    /// Distinct outcomes seen (the size of the feedback).
    pub outcomes: usize,
    pub pool: usize,
    /// The most bytes one execution held at once, when allocations are counted.
    pub peak_alloc: Option<usize>,
    pub findings: Vec<Finding>,
}

/// The pool never grows past this many inputs (the oldest new-outcome inputs are kept).
const MAX_POOL: usize = 4096;
/// One execution may hold at most this many bytes per input byte, plus [`ALLOC_SLACK`]: a
/// decoder's working set is proportional to its input. Beyond it, an input is a finding.
pub const ALLOC_PER_INPUT_BYTE: usize = 64;
pub const ALLOC_SLACK: usize = 8 << 20;

/// Runs `target` once on `input`, turning a panic or an allocation past the bound into a
/// finding. The panic message is taken from the payload; the caller silences the hook.
pub fn execute(target: &Target, input: &[u8]) -> Result<String, String> {
    let baseline = alloc::live();
    alloc::reset_peak();
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let peak = alloc::peak_since_reset(baseline);
    let outcome = outcome.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic with a non-text payload".to_string())
    })?;
    if let Some(peak) = peak {
        let bound = input.len() * ALLOC_PER_INPUT_BYTE + ALLOC_SLACK;
        if peak > bound {
            return Err(format!(
                "allocated {peak} bytes for a {}-byte input (bound {bound})",
                input.len()
            ));
        }
    }
    Ok(outcome)
}

/// Fuzzes `target` from its seeds with the mutator seeded by `seed`, until `budget` runs out.
/// Findings are collected, not fatal: a long run reports them all.
pub fn fuzz(target: &Target, seed: u64, budget: Budget) -> Report {
    let started = Instant::now();
    let mut mutator = Mutator::new(seed, target.max_len);
    let mut pool: Vec<Vec<u8>> = (target.seeds)();
    let mut outcomes = HashSet::new();
    let mut findings = Vec::new();
    let mut executions = 0u64;
    let mut peak_alloc = None;

    // Panics are expected and reported with their input; the default hook would print each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));

    let mut record = |input: &[u8],
                      pool_len: usize,
                      outcomes: &mut HashSet<String>,
                      findings: &mut Vec<Finding>| {
        let baseline = alloc::live();
        let result = execute(target, input);
        if let Some(peak) = alloc::peak_since_reset(baseline) {
            peak_alloc = Some(peak_alloc.unwrap_or(0).max(peak));
        }
        match result {
            Ok(outcome) => outcomes.insert(outcome) && pool_len < MAX_POOL,
            Err(what) => {
                findings.push(Finding {
                    input: input.to_vec(),
                    what,
                });
                false
            }
        }
    };

    for input in pool.clone() {
        executions += 1;
        record(&input, pool.len(), &mut outcomes, &mut findings);
    }
    while executions < budget.executions && started.elapsed() < budget.time {
        let parent = pool[mutator.rng().random_range(0..pool.len())].clone();
        let child = mutator.mutate(&parent, &pool);
        executions += 1;
        if record(&child, pool.len(), &mut outcomes, &mut findings) {
            pool.push(child);
        }
        // Stop early once findings pile up: they are usually one defect, and each holds an input.
        if findings.len() >= 20 {
            break;
        }
    }
    std::panic::set_hook(hook);

    Report {
        target: target.name,
        seed,
        executions,
        elapsed: started.elapsed(),
        outcomes: outcomes.len(),
        pool: pool.len(),
        peak_alloc,
        findings,
    }
}

/// An input as Rust byte-string text, to paste into a regression test.
pub fn escape(input: &[u8]) -> String {
    let shown: String = input
        .iter()
        .take(2048)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if input.len() > 2048 {
        format!("b\"{shown}\"... ({} bytes)", input.len())
    } else {
        format!("b\"{shown}\"")
    }
}
