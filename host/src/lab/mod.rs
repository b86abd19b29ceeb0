//! The policy lab: replays workloads in simulated time against one or more scheduling
//! policies, with the real policy host and a simulated fleet, and measures how each policy
//! treats each group of the workload. No hub, sockets or disk: `switchyard lab` and
//! `switchyard policy check` run it in-process. `docs/policy-lab.md` is the user's guide.
//!
//! - [`scenario`]: the TOML scenario format; [`builtin`]: the scenarios built in.
//! - [`workload`]: the tasks a scenario submits, drawn from a seed.
//! - [`sim`]: the simulation, following the engine's scheduling step by step.
//! - [`metrics`]: what a run measured; [`report`]: the table, JSON and HTML.

pub mod builtin;
pub mod metrics;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod workload;

use std::path::PathBuf;

use serde::Serialize;

pub use builtin::{builtin_scenario, builtin_scenarios};
pub use metrics::RunReport;
pub use scenario::{Scenario, ScenarioError};

use crate::policy::{self, PolicyError, PolicyHost, PolicySource};

/// Why the lab cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(
        "there is no built-in scenario `{name}` and no file by that name (built in: {available})"
    )]
    UnknownScenario { name: String, available: String },
    // The causes are part of the messages, not chained: the message is whole on its own.
    #[error("cannot read the scenario file {path}: {error}")]
    ReadScenario {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("policy {label}: {error}")]
    Policy { label: String, error: PolicyError },
}

/// A policy to run, as `--policy SOURCE[=CONFIG]` names it.
#[derive(Debug, Clone)]
pub struct LabPolicy {
    /// The argument as given, used to label the policy in reports.
    pub label: String,
    pub source: PolicySource,
    pub config: serde_json::Value,
}

impl LabPolicy {
    /// `builtin:NAME` or a component file, optionally followed by `=` and its JSON
    /// configuration. An argument naming an existing file is a file, `=` and all.
    pub fn parse(arg: &str) -> Result<LabPolicy, LabError> {
        let (source, config) = match arg.split_once('=') {
            Some((source, config)) if !std::path::Path::new(arg).exists() => (source, config),
            _ => (arg, ""),
        };
        let config = policy::parse_config(config).map_err(|error| LabError::Policy {
            label: arg.to_string(),
            error,
        })?;
        Ok(LabPolicy {
            label: arg.to_string(),
            source: PolicySource::parse(source),
            config,
        })
    }

    /// Loads a fresh instance, as the hub does.
    pub fn load(&self) -> Result<PolicyHost, LabError> {
        PolicyHost::load(self.source.clone(), self.config.clone()).map_err(|error| {
            LabError::Policy {
                label: self.label.clone(),
                error,
            }
        })
    }
}

/// A scenario by built-in name, or a TOML file.
pub fn load_scenario(name_or_file: &str) -> Result<Scenario, LabError> {
    if let Some(scenario) = builtin_scenario(name_or_file) {
        return Ok(scenario?);
    }
    let path = PathBuf::from(name_or_file);
    if !path.exists() {
        return Err(LabError::UnknownScenario {
            name: name_or_file.to_string(),
            available: builtin_scenarios().collect::<Vec<_>>().join(", "),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|error| LabError::ReadScenario {
        path: path.clone(),
        error,
    })?;
    Ok(Scenario::from_toml(&text, &path.display().to_string())?)
}

/// Everything one `switchyard lab` invocation measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabReport {
    pub seed: u64,
    pub scenarios: Vec<ScenarioReport>,
}

/// One scenario, run against each policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    pub tasks: u64,
    pub agents: u64,
    pub runs: Vec<RunReport>,
}

/// What the lab tells its caller as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A run reached `at_ms` of `of_ms` simulated milliseconds.
    Running {
        scenario: &'a str,
        policy: &'a str,
        at_ms: u64,
        of_ms: u64,
    },
    /// A run finished after `wall_ms` of real time.
    Finished {
        scenario: &'a str,
        policy: &'a str,
        tasks: u64,
        wall_ms: u64,
    },
}

/// Runs every scenario against every policy, each run with a fresh instance of the policy and
/// the same workload (drawn from `seed`).
pub fn run(
    scenarios: &[Scenario],
    policies: &[LabPolicy],
    seed: u64,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<LabReport, LabError> {
    let mut report = LabReport {
        seed,
        scenarios: Vec::new(),
    };
    for scenario in scenarios {
        let work = workload::generate(scenario, seed);
        let mut runs = Vec::new();
        for policy in policies {
            let started = std::time::Instant::now();
            let mut host = policy.load()?;
            let about = host.status();
            let trace = sim::simulate(scenario, &work, &mut host, &mut |at_ms| {
                progress(Progress::Running {
                    scenario: &scenario.name,
                    policy: &policy.label,
                    at_ms,
                    of_ms: scenario.duration.ms(),
                })
            });
            let label = metrics::PolicyLabel {
                label: policy.label.clone(),
                name: about.name,
                version: about.version,
                digest: about.digest,
            };
            runs.push(metrics::measure(scenario, &work, &trace, label));
            progress(Progress::Finished {
                scenario: &scenario.name,
                policy: &policy.label,
                tasks: work.len() as u64,
                wall_ms: started.elapsed().as_millis() as u64,
            });
        }
        report.scenarios.push(ScenarioReport {
            scenario: scenario.clone(),
            tasks: work.len() as u64,
            agents: scenario.agent_count(),
            runs,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
