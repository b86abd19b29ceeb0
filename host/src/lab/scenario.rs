//! The scenario format: a workload (groups of tasks arriving over time) and a simulated fleet,
//! written in TOML. `docs/policy-lab.md` documents every field; this file is its reference.
//!
//! A *group* is one party of the workload: a stream of tasks that share a fairness key (or, for
//! `keys > 1`, spread over several), a weight, a priority, needed capabilities, an arrival
//! process and a run-time distribution. Metrics are reported per group, and per tenant: each
//! group belongs to a tenant (`tenant = "NAME"`, default `default`), and the `[tenants]` table
//! gives tenants their weights, as an admin does on a hub.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::wire::http::PRIORITY_NAMES;
use crate::wire::tenant::{default_tenant, valid_tenant_name, DEFAULT_TENANT};

/// The longest scenario the lab runs: 30 simulated days.
pub const MAX_DURATION_MS: u64 = 30 * 24 * 3_600_000;
/// The most agents a scenario may declare.
pub const MAX_AGENTS: u64 = 100_000;
/// The most tasks a scenario may generate (all groups together).
pub const MAX_TASKS: u64 = 10_000_000;
/// The most fairness keys one group may spread over.
pub const MAX_KEYS: u32 = 10_000;
/// The weight range a group may have: the range the task model accepts, bounded like fair's.
pub const MIN_WEIGHT: f64 = 1e-3;
pub const MAX_WEIGHT: f64 = 1e6;

/// One workload against one fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Simulated time the run covers; arrivals after it are not generated, and the run stops
    /// there (work still queued is reported as unserved).
    pub duration: Span,
    /// The fleet: every agent is connected and idle from time zero, in the order listed.
    pub agents: Vec<AgentSpec>,
    /// Tenant weights by name, as admins set them on a hub. `default` weighs 1 unless listed
    /// here; every other tenant a group names must be listed.
    #[serde(default)]
    pub tenants: BTreeMap<String, f64>,
    pub groups: Vec<GroupSpec>,
}

/// A number of identical agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub count: u64,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// One party of the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// The group's name, and its fairness key when `keys` is 1.
    pub name: String,
    /// The tenant its tasks belong to (as if submitted with a token of that tenant).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The weight every task of the group carries (fair shares by it).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// How many fairness keys the group's tasks spread over, in turn: `NAME` when 1, else
    /// `NAME/0` … `NAME/(keys-1)` (a party splitting itself to look like many).
    #[serde(default = "default_keys")]
    pub keys: u32,
    #[serde(default)]
    pub priority: Priority,
    /// Capabilities each task needs.
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub arrival: Arrival,
    pub run_time: RunTime,
}

fn default_weight() -> f64 {
    1.0
}

fn default_keys() -> u32 {
    1
}

/// How a group's tasks arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arrival {
    /// `count` tasks at once, at `at` (default 0).
    Burst {
        count: u64,
        #[serde(default)]
        at: Span,
    },
    /// One task every `every`, from `start` (default 0) until `stop` (default: the end).
    Steady {
        every: Span,
        #[serde(default)]
        start: Span,
        #[serde(default)]
        stop: Option<Span>,
    },
    /// Random arrivals (a Poisson process) with `mean_gap` between them on average.
    Trickle { mean_gap: Span },
    /// One task every `every` during `on`, then nothing during `off`, repeating from time 0.
    OnOff { every: Span, on: Span, off: Span },
}

/// How long a task of a group runs once assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RunTime {
    Fixed {
        time: Span,
    },
    /// Uniformly between `min` and `max`.
    Uniform {
        min: Span,
        max: Span,
    },
    /// Exponentially distributed with mean `mean` (many short tasks, a few long ones), at
    /// least 1 ms.
    Exponential {
        mean: Span,
    },
}

/// A task priority, written as in the HTTP API: urgent, high, normal, low, or 0-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Priority(pub u8);

impl Default for Priority {
    fn default() -> Self {
        Priority(2)
    }
}

impl Priority {
    pub fn name(self) -> &'static str {
        PRIORITY_NAMES[usize::from(self.0.min(3))]
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Number(u64),
            Name(String),
        }
        let refusal = |given: &dyn fmt::Display| {
            serde::de::Error::custom(format!(
                "priority must be one of urgent, high, normal, low or 0-3, not {given}"
            ))
        };
        match Text::deserialize(d)? {
            Text::Number(n) if n <= 3 => Ok(Priority(n as u8)),
            Text::Number(n) => Err(refusal(&n)),
            Text::Name(name) => PRIORITY_NAMES
                .iter()
                .position(|known| *known == name)
                .map(|i| Priority(i as u8))
                .ok_or_else(|| refusal(&format!("{name:?}"))),
        }
    }
}

/// A stretch of simulated time in milliseconds, written `"500ms"`, `"30s"`, `"5m"`, `"2h"` (or
/// a bare number of seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub u64);

impl Span {
    pub fn ms(self) -> u64 {
        self.0
    }

    /// Parses `"250ms"`, `"30s"`, `"1.5m"`, `"2h"` ([`crate::duration::parse`]); a number
    /// without a unit is seconds.
    pub fn parse(text: &str) -> Result<Span, String> {
        let duration = crate::duration::parse(text)?;
        match u64::try_from(duration.as_millis()) {
            Ok(ms) if ms <= MAX_DURATION_MS.saturating_mul(10) => Ok(Span(ms)),
            _ => Err(format!("{:?} is out of range", text.trim())),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms != 0 && ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Seconds(f64),
            Text(String),
        }
        match Text::deserialize(d)? {
            Text::Seconds(s) => Span::parse(&s.to_string()),
            Text::Text(t) => Span::parse(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Why a scenario cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("scenario {origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Scenario {
    /// Parses and checks a scenario; `origin` (a file name, `builtin:NAME`) names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        scenario.check().map_err(|message| ScenarioError::Invalid {
            origin: origin.to_string(),
            message,
        })?;
        Ok(scenario)
    }

    /// Every tenant of the scenario with its weight, `default` included: what the lab tells
    /// the policy before any task, as the hub does.
    pub fn tenant_weights(&self) -> BTreeMap<String, f64> {
        let mut weights = BTreeMap::from([(DEFAULT_TENANT.to_string(), 1.0)]);
        weights.extend(self.tenants.iter().map(|(name, w)| (name.clone(), *w)));
        weights
    }

    /// Agents in the fleet.
    pub fn agent_count(&self) -> u64 {
        self.agents.iter().map(|a| a.count).sum()
    }

    /// Everything the types cannot say: ranges, names, sizes.
    fn check(&self) -> Result<(), String> {
        let duration = self.duration.ms();
        if duration == 0 || duration > MAX_DURATION_MS {
            return Err(format!(
                "duration must be more than 0 and at most 30 days, not {}",
                self.duration
            ));
        }
        let agents = self.agent_count();
        if agents == 0 || agents > MAX_AGENTS {
            return Err(format!(
                "the fleet must have 1 to {MAX_AGENTS} agents ([[agents]] count), not {agents}"
            ));
        }
        if self.groups.is_empty() {
            return Err("a scenario needs at least one [[groups]] entry".into());
        }
        for (name, weight) in &self.tenants {
            if !valid_tenant_name(name) {
                return Err(format!(
                    "[tenants]: {name:?} is not a tenant name (1 to 64 bytes of lowercase \
                     letters, digits, '.', '_' and '-')"
                ));
            }
            if !(weight.is_finite() && (MIN_WEIGHT..=MAX_WEIGHT).contains(weight)) {
                return Err(format!(
                    "[tenants]: the weight of {name:?} must be from {MIN_WEIGHT} to \
                     {MAX_WEIGHT}, not {weight}"
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let mut tasks = 0u64;
        for group in &self.groups {
            let name = &group.name;
            let at = |what: String| format!("group {name:?}: {what}");
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(format!(
                    "group name {name:?} must be 1 to 64 printable characters"
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(format!("two groups are named {name:?}"));
            }
            if !(group.weight.is_finite() && (MIN_WEIGHT..=MAX_WEIGHT).contains(&group.weight)) {
                return Err(at(format!(
                    "weight must be from {MIN_WEIGHT} to {MAX_WEIGHT}, not {}",
                    group.weight
                )));
            }
            if group.tenant != DEFAULT_TENANT && !self.tenants.contains_key(&group.tenant) {
                return Err(at(format!(
                    "tenant {:?} is not in [tenants] (list it there with its weight)",
                    group.tenant
                )));
            }
            if group.keys == 0 || group.keys > MAX_KEYS {
                return Err(at(format!(
                    "keys must be from 1 to {MAX_KEYS}, not {}",
                    group.keys
                )));
            }
            tasks = tasks.saturating_add(expected_tasks(&group.arrival, duration).map_err(at)?);
            check_run_time(&group.run_time).map_err(at)?;
        }
        if tasks > MAX_TASKS {
            return Err(format!(
                "the groups would submit about {tasks} tasks; at most {MAX_TASKS} are allowed"
            ));
        }
        Ok(())
    }
}

/// How many tasks an arrival process generates within `duration` (an estimate for `trickle`),
/// or what is wrong with it.
fn expected_tasks(arrival: &Arrival, duration: u64) -> Result<u64, String> {
    let positive = |what: &str, span: Span| {
        if span.ms() == 0 {
            Err(format!("arrival {what} must be more than 0"))
        } else {
            Ok(span.ms())
        }
    };
    Ok(match arrival {
        Arrival::Burst { count, at } => {
            if at.ms() >= duration {
                return Err(format!(
                    "a burst at {at} is not within the duration ({})",
                    Span(duration)
                ));
            }
            *count
        }
        Arrival::Steady { every, start, stop } => {
            let every = positive("every", *every)?;
            let stop = stop.map_or(duration, |s| s.ms().min(duration));
            stop.saturating_sub(start.ms()).div_ceil(every)
        }
        Arrival::Trickle { mean_gap } => duration / positive("mean_gap", *mean_gap)?,
        Arrival::OnOff { every, on, off } => {
            let every = positive("every", *every)?;
            let on = positive("on", *on)?;
            let period = on + off.ms();
            (duration / period + 1) * on.div_ceil(every)
        }
    })
}

fn check_run_time(run_time: &RunTime) -> Result<(), String> {
    match run_time {
        RunTime::Fixed { time } if time.ms() == 0 => {
            Err("run_time time must be more than 0".into())
        }
        RunTime::Uniform { min, max } if min.ms() == 0 || min > max => Err(format!(
            "run_time needs 0 < min <= max, not min {min}, max {max}"
        )),
        RunTime::Exponential { mean } if mean.ms() == 0 => {
            Err("run_time mean must be more than 0".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
duration = "1m"
[[agents]]
count = 2
[[groups]]
name = "a"
arrival = { kind = "steady", every = "500ms" }
run_time = { kind = "fixed", time = "1s" }
"#;

    #[test]
    fn parses_with_defaults() {
        let s = Scenario::from_toml(MINIMAL, "t.toml").unwrap();
        assert_eq!(s.duration, Span(60_000));
        assert_eq!(s.groups[0].weight, 1.0);
        assert_eq!(s.groups[0].keys, 1);
        assert_eq!(s.groups[0].priority, Priority(2));
        assert_eq!(s.agent_count(), 2);
        assert_eq!(s.groups[0].tenant, "default");
        assert_eq!(
            s.tenant_weights(),
            BTreeMap::from([("default".to_string(), 1.0)])
        );
        let bare = MINIMAL.replace("duration = \"1m\"", "duration = 90");
        let s = Scenario::from_toml(&bare, "t.toml").unwrap();
        assert_eq!(s.duration, Span(90_000), "a bare number is seconds");
    }

    #[test]
    fn groups_name_their_tenants_and_tenants_their_weights() {
        let text = MINIMAL.replace(
            "[[groups]]\nname = \"a\"",
            "[tenants]\nteam-a = 3\ndefault = 2\n[[groups]]\nname = \"a\"\ntenant = \"team-a\"",
        );
        let s = Scenario::from_toml(&text, "t.toml").unwrap();
        assert_eq!(s.groups[0].tenant, "team-a");
        assert_eq!(
            s.tenant_weights(),
            BTreeMap::from([("default".to_string(), 2.0), ("team-a".to_string(), 3.0)])
        );
    }

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(Span::parse("250ms"), Ok(Span(250)));
        assert_eq!(Span::parse("1.5m"), Ok(Span(90_000)));
        assert_eq!(Span::parse("2"), Ok(Span(2_000)));
        assert!(Span::parse("3 weeks").unwrap_err().contains("unknown unit"));
        assert_eq!(Span(90_000).to_string(), "90s");
        assert_eq!(Span(120_000).to_string(), "2m");
        assert_eq!(Span(1_500).to_string(), "1500ms");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let cases = [
            (
                MINIMAL.replace("every = \"500ms\"", "every = \"0s\""),
                "every must be more than 0",
            ),
            (
                MINIMAL.replace("\"steady\"", "\"sometimes\""),
                "unknown variant `sometimes`",
            ),
            (
                MINIMAL.replace("count = 2", "count = 0"),
                "1 to 100000 agents",
            ),
            (
                MINIMAL.replace("name = \"a\"", "name = \"a\"\nweight = -1"),
                "weight must be",
            ),
            (
                MINIMAL.replace("name = \"a\"", "name = \"a\"\nprioritty = 1"),
                "unknown field `prioritty`",
            ),
            (
                MINIMAL.replace("name = \"a\"", "name = \"a\"\npriority = \"soon\""),
                "priority must be one of",
            ),
            (
                MINIMAL.replace("duration = \"1m\"", "duration = \"1 fortnight\""),
                "unknown unit",
            ),
            (
                MINIMAL.replace("name = \"a\"", "name = \"a\"\ntenant = \"team\""),
                "tenant \"team\" is not in [tenants]",
            ),
            (
                MINIMAL.replace("[[groups]]", "[tenants]\nTeam = 2\n[[groups]]"),
                "\"Team\" is not a tenant name",
            ),
            (
                MINIMAL.replace("[[groups]]", "[tenants]\nteam = 0\n[[groups]]"),
                "the weight of \"team\" must be",
            ),
        ];
        for (text, expected) in cases {
            let err = Scenario::from_toml(&text, "t.toml")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
            assert!(err.starts_with("scenario t.toml: "), "{err}");
        }
    }
}
