//! The policy's configuration: what an operator may set, and refusals that name what is wrong
//! with anything else. The crate documentation describes the fields for operators.

use std::collections::BTreeMap;

use switchyard_policy_sdk::json_kind;
use switchyard_policy_sdk::serde_json::{Map, Value};

/// Waiting this long raises a task by one priority class unless `aging_ms` says otherwise.
pub const DEFAULT_AGING_MS: u64 = 30_000;
/// The largest `aging_ms` accepted: a year. Beyond that aging is not a bound anyone relies on.
pub const MAX_AGING_MS: u64 = 365 * 24 * 3_600_000;
/// The smallest weight: lighter task weights are raised to it, lighter configured ones refused.
pub const MIN_WEIGHT: f64 = 0.001;
/// The largest weight: heavier task weights are lowered to it, heavier configured ones refused.
pub const MAX_WEIGHT: f64 = 1_000.0;
/// What a task is charged before its key or tenant has finished any task, under `"charge":
/// "time"`, unless `initial_estimate_ms` says otherwise.
pub const DEFAULT_INITIAL_ESTIMATE_MS: u64 = 1_000;
/// The least an assignment is charged under `"charge": "time"`, unless `min_charge_ms` says
/// otherwise.
pub const DEFAULT_MIN_CHARGE_MS: u64 = 10;
/// [`MIN_WEIGHT`] and [`MAX_WEIGHT`] as written in messages (formatting floats costs code size).
pub(crate) const MIN_WEIGHT_TEXT: &str = "0.001";
pub(crate) const MAX_WEIGHT_TEXT: &str = "1000";

/// The policy's options. See the crate documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct FairConfig {
    /// Weights fixed by the operator, by fairness key. They override the tasks' own weights.
    pub weights: BTreeMap<String, f64>,
    /// Waiting this long raises a task by one priority class.
    pub aging_ms: u64,
    /// What a share counts.
    pub charge: Charge,
    /// Under [`Charge::Time`], the estimate charged for a task before its key or tenant has
    /// finished any task.
    pub initial_estimate_ms: u64,
    /// Under [`Charge::Time`], the least an assignment is charged, estimate or real time.
    pub min_charge_ms: u64,
}

/// What a tenant's (and a key's) share counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charge {
    /// Milliseconds a task held its agent: an estimate at dispatch, corrected when it finishes.
    #[default]
    Time,
    /// Assignments, one each, whatever they cost (the policy's behaviour before 0.2.0).
    Tasks,
}

impl Default for FairConfig {
    fn default() -> Self {
        Self {
            weights: BTreeMap::new(),
            aging_ms: DEFAULT_AGING_MS,
            charge: Charge::Time,
            initial_estimate_ms: DEFAULT_INITIAL_ESTIMATE_MS,
            min_charge_ms: DEFAULT_MIN_CHARGE_MS,
        }
    }
}

impl FairConfig {
    /// Reads the configuration, refusing anything it does not understand: a typo in an
    /// operator's configuration must be reported, not silently ignored.
    pub fn from_json(config: &Value) -> Result<Self, String> {
        let fields = match config {
            Value::Null => return Ok(Self::default()),
            Value::Object(fields) => fields,
            other => {
                return Err(format!(
                    "fair: config must be null or an object such as \
                     {{\"weights\": {{\"team-a\": 3}}, \"aging_ms\": 30000}}, got {}",
                    json_kind(other)
                ))
            }
        };
        let mut parsed = Self::default();
        for (field, value) in fields {
            match field.as_str() {
                "weights" => parsed.weights = parse_weights(value)?,
                "aging_ms" => parsed.aging_ms = parse_ms("aging_ms", value)?,
                "charge" => parsed.charge = parse_charge(value)?,
                "initial_estimate_ms" => {
                    parsed.initial_estimate_ms = parse_ms("initial_estimate_ms", value)?
                }
                "min_charge_ms" => parsed.min_charge_ms = parse_ms("min_charge_ms", value)?,
                other => {
                    return Err(format!(
                        "fair: unknown config field `{other}` (the fields are `weights`, \
                         `aging_ms`, `charge`, `initial_estimate_ms` and `min_charge_ms`)"
                    ))
                }
            }
        }
        Ok(parsed)
    }
}

fn parse_weights(value: &Value) -> Result<BTreeMap<String, f64>, String> {
    let entries: &Map<String, Value> = match value {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(entries) => entries,
        other => {
            return Err(format!(
                "fair: `weights` must be an object from fairness key to weight, got {}",
                json_kind(other)
            ))
        }
    };
    let mut weights = BTreeMap::new();
    for (key, weight) in entries {
        if key.is_empty() {
            return Err("fair: `weights` has an empty fairness key (keys are never empty)".into());
        }
        match weight.as_f64() {
            Some(w) if (MIN_WEIGHT..=MAX_WEIGHT).contains(&w) => {
                weights.insert(key.clone(), w);
            }
            _ => {
                return Err(format!(
                    "fair: `weights.{key}` must be a number from {MIN_WEIGHT_TEXT} to \
                     {MAX_WEIGHT_TEXT}, got {}",
                    describe(weight)
                ))
            }
        }
    }
    Ok(weights)
}

/// A duration field: whole milliseconds from 1 to a year ([`MAX_AGING_MS`]).
fn parse_ms(field: &str, value: &Value) -> Result<u64, String> {
    match value.as_u64() {
        Some(ms) if (1..=MAX_AGING_MS).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "fair: `{field}` must be a whole number of milliseconds from 1 to {MAX_AGING_MS}, \
             got {}",
            describe(value)
        )),
    }
}

fn parse_charge(value: &Value) -> Result<Charge, String> {
    match value.as_str() {
        Some("time") => Ok(Charge::Time),
        Some("tasks") => Ok(Charge::Tasks),
        _ => Err(format!(
            "fair: `charge` must be \"time\" (agent time, the default) or \"tasks\" \
             (assignments), got {}",
            describe(value)
        )),
    }
}

/// What an operator gave, for a refusal: whole numbers and strings verbatim, anything else by
/// its kind. Printing floats or whole JSON values would pull a float formatter and a JSON
/// serializer into the component (about 40 KB, a fifth of it) for the sake of an error message.
fn describe(value: &Value) -> String {
    match value {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(whole), _) => whole.to_string(),
            (None, Some(whole)) => whole.to_string(),
            (None, None) => "a fractional number".into(),
        },
        Value::String(text) => format!("the string \"{text}\""),
        other => json_kind(other).into(),
    }
}
