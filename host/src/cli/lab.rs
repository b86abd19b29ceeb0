//! `switchyard lab` and `switchyard policy check`: the policy lab on the command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::lab::{self, LabPolicy, Progress};
use crate::policy;

/// `switchyard lab`: replay workloads in simulated time against policies side by side.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// A built-in scenario's name or a scenario file (TOML); repeat for several.
    #[arg(long = "scenario", value_name = "NAME_OR_FILE", required = true)]
    pub scenarios: Vec<String>,
    /// builtin:NAME or a component file, optionally `=CONFIG` (JSON); repeat to compare.
    #[arg(long = "policy", value_name = "SOURCE[=CONFIG]", required = true)]
    pub policies: Vec<String>,
    /// Seed of the workload's random draws: the same seed gives the same report.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the whole report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write a self-contained HTML report (with SVG charts) into DIR, as DIR/index.html.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

/// Progress on stderr: one line per finished run, plus a live percentage on a terminal.
fn progress_printer() -> impl FnMut(Progress<'_>) {
    let live = std::io::stderr().is_terminal();
    move |event| match event {
        Progress::Running {
            scenario,
            policy,
            at_ms,
            of_ms,
        } if live => {
            eprint!(
                "\rlab: {scenario} × {policy}: {:>3}%",
                at_ms * 100 / of_ms.max(1)
            );
            let _ = std::io::stderr().flush();
        }
        Progress::Running { .. } => {}
        Progress::Finished {
            scenario,
            policy,
            tasks,
            wall_ms,
        } => {
            if live {
                eprint!("\r");
            }
            eprintln!("lab: {scenario} × {policy}: {tasks} tasks simulated in {wall_ms} ms");
        }
    }
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    let scenarios = args
        .scenarios
        .iter()
        .map(|s| lab::load_scenario(s))
        .collect::<Result<Vec<_>, _>>()?;
    let policies = args
        .policies
        .iter()
        .map(|p| LabPolicy::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let report = lab::run(&scenarios, &policies, args.seed, &mut progress_printer())?;
    print!("{}", lab::report::table::render(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
        eprintln!("lab: JSON report written to {}", path.display());
    }
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the report folder {}", dir.display()))?;
        let path = dir.join("index.html");
        std::fs::write(&path, lab::report::html::render(&report))
            .with_context(|| format!("cannot write the HTML report to {}", path.display()))?;
        eprintln!("lab: HTML report written to {}", path.display());
    }
    Ok(())
}

/// How `policy check` names the contract a component speaks: its interface, and for an older
/// version that it runs behind the adapter.
fn contract_line(contract: policy::ContractVersion) -> String {
    if contract == policy::ContractVersion::CURRENT {
        contract.interface().to_string()
    } else {
        format!(
            "{} (an older contract: the hub adapts it, each tenant is one fairness key)",
            contract.interface()
        )
    }
}

/// The scenario `policy check` runs.
const SMOKE: &str = "smoke";

/// `switchyard policy check FILE`: loads a component as the hub does and runs the `smoke`
/// scenario through it; fails if it does not load, or if any call trapped or timed out.
pub fn check(file: &str, config: Option<&str>) -> anyhow::Result<()> {
    let source = policy::PolicySource::parse(file);
    let config = policy::parse_config(config.unwrap_or(""))?;
    let host = policy::PolicyHost::load(source.clone(), config.clone())
        .with_context(|| format!("{file} does not load as a policy"))?;
    let status = host.status();
    drop(host);
    println!("policy    {} {}", status.name, status.version);
    println!("digest    {}", status.digest);
    println!("contract  {}", contract_line(status.contract));
    println!("config    {}", status.config);

    let scenario = lab::load_scenario(SMOKE)?;
    let policy = LabPolicy {
        label: file.to_string(),
        source,
        config,
    };
    let report = lab::run(&[scenario], &[policy], 1, &mut |_| {})?;
    let s = &report.scenarios[0];
    let run = &s.runs[0];
    println!(
        "smoke run {} simulated, {} agents, {} tasks: {} decisions, {} proposals, {} assigned, \
         {} completed, {} still queued at the end",
        s.scenario.duration,
        s.agents,
        s.tasks,
        run.decisions.calls,
        run.decisions.proposals,
        run.assignments,
        run.completions,
        run.unserved
    );
    println!(
        "decision  {:.1} µs p50, {:.1} µs p99, {:.1} µs max",
        run.decisions.latency_us.p50, run.decisions.latency_us.p99, run.decisions.latency_us.max
    );
    if run.refusals.is_empty() {
        println!("refused   none: the host would apply every proposal");
    } else {
        for r in &run.refusals {
            println!(
                "refused   {} × {}: {}",
                r.count,
                r.reason,
                explain(r.reason)
            );
        }
        for e in &run.refusal_examples {
            println!(
                "  e.g. at {} ms: task {} to agent {}: {}",
                e.at_ms, e.task, e.agent, e.reason
            );
        }
    }
    println!(
        "failures  {} traps, {} timeouts{}",
        run.failures.traps,
        run.failures.timeouts,
        if run.failures.fallback_active {
            "; the host gave up on it and switched to the native greedy fallback"
        } else {
            ""
        }
    );
    if run.failures.traps + run.failures.timeouts > 0 {
        bail!(
            "{file}: {} calls trapped and {} ran past the {} ms deadline during the smoke run; \
             the hub would restart it after each (and give up after {} within {} s)",
            run.failures.traps,
            run.failures.timeouts,
            policy::CALL_DEADLINE.as_millis(),
            policy::BREAKER_FAILURES,
            policy::BREAKER_WINDOW.as_secs()
        );
    }
    if run.refusals.is_empty() {
        println!("ok        loads, decides and never failed; the hub would run it");
    } else {
        println!(
            "ok        loads and never failed; the hub would run it, dropping the {} refused \
             proposals",
            run.decisions.refused
        );
    }
    Ok(())
}

/// What a refusal means for the policy's author.
fn explain(reason: policy::ProposalRefusal) -> &'static str {
    use policy::ProposalRefusal::*;
    match reason {
        UnknownTask => "the task handle names no task the host told it of",
        UnknownAgent => "the agent handle names no agent the host told it of",
        TaskNotQueued => "the task was already assigned (maybe earlier in the same list)",
        AgentNotReady => "the agent was busy (maybe given a task earlier in the same list)",
        MissingCapability => "the agent lacks a capability the task needs",
    }
}
