//! Tenants: the parties that share one hub. A token belongs to a tenant, and so does every task
//! submitted with it; the fair policy shares agents between tenants by their weights, and quotas
//! bound each one. Tenants are hub data, managed by admins (`/admin/tenants`).

use crate::wire::http::BadRequest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The tenant that always exists. Every token and task from before tenants were introduced
/// belongs to it, and so does every token created without naming one.
pub const DEFAULT_TENANT: &str = "default";

/// The longest tenant name, in bytes.
pub const MAX_TENANT_NAME_BYTES: usize = 64;

/// The serde default of a stored `tenant` field: records written before tenants existed.
pub fn default_tenant() -> String {
    DEFAULT_TENANT.to_owned()
}

/// Whether `name` is a valid tenant name: 1 to 64 bytes of lowercase ASCII letters, digits,
/// `.`, `_` and `-`. Names appear in URLs, metric labels and log lines, so they need no escaping.
pub fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TENANT_NAME_BYTES
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// A tenant as stored and as the admin routes show it (without its live counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    /// Its share of agents against other backlogged tenants, greater than zero (default 1).
    pub weight: f64,
    /// Tasks it may have queued at once; none: no limit.
    #[serde(default)]
    pub max_queued: Option<u64>,
    /// Tasks per second it may submit (a burst of one second's worth, at least one); none: no
    /// limit.
    #[serde(default)]
    pub submit_rate: Option<f64>,
    #[serde(default)]
    pub created_at: u64,
}

impl Tenant {
    /// The `default` tenant as it exists before an admin changes it.
    pub fn default_tenant() -> Tenant {
        Tenant {
            name: DEFAULT_TENANT.to_owned(),
            weight: 1.0,
            max_queued: None,
            submit_rate: None,
            created_at: 0,
        }
    }
}

/// The largest weight a tenant may have (as a task's `weight` within its tenant).
pub const MAX_TENANT_WEIGHT: f64 = 1000.0;

/// What `POST /admin/tenants` asks for: a new tenant, its quotas unset unless named.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    pub name: String,
    pub weight: f64,
    pub max_queued: Option<u64>,
    pub submit_rate: Option<f64>,
}

/// What `PATCH /admin/tenants/:name` changes: a field left out stays as it is; a quota given
/// as `null` is cleared (`Some(None)`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantPatch {
    pub weight: Option<f64>,
    pub max_queued: Option<Option<u64>>,
    pub submit_rate: Option<Option<f64>>,
}

impl NewTenant {
    /// Validates the body of `POST /admin/tenants`.
    pub fn parse(fields: &Map<String, Value>) -> Result<NewTenant, BadRequest> {
        let name = match fields.get("name") {
            Some(Value::String(name)) if valid_tenant_name(name) => name.clone(),
            Some(Value::String(_)) => return Err(bad_name()),
            _ => return Err(BadRequest("name is required and must be a string".into())),
        };
        let weight = match fields.get("weight") {
            None | Some(Value::Null) => 1.0,
            Some(value) => weight(value)?,
        };
        let max_queued = match fields.get("max_queued") {
            None => None,
            Some(value) => max_queued(value)?,
        };
        let submit_rate = match fields.get("submit_rate") {
            None => None,
            Some(value) => submit_rate(value)?,
        };
        Ok(NewTenant {
            name,
            weight,
            max_queued,
            submit_rate,
        })
    }

    /// The record to store, made at `now`.
    pub fn into_tenant(self, now: u64) -> Tenant {
        Tenant {
            name: self.name,
            weight: self.weight,
            max_queued: self.max_queued,
            submit_rate: self.submit_rate,
            created_at: now,
        }
    }
}

impl TenantPatch {
    /// Validates the body of `PATCH /admin/tenants/:name`: at least one of `weight`,
    /// `max_queued`, `submit_rate`; nothing else.
    pub fn parse(fields: &Map<String, Value>) -> Result<TenantPatch, BadRequest> {
        if let Some(other) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "weight" | "max_queued" | "submit_rate"))
        {
            return Err(BadRequest(format!(
                "{other} cannot be changed; a tenant has weight, max_queued and submit_rate"
            )));
        }
        let patch = TenantPatch {
            weight: match fields.get("weight") {
                None => None,
                Some(Value::Null) => {
                    return Err(BadRequest(
                        "weight cannot be null; a tenant always has a weight (1 by default)".into(),
                    ))
                }
                Some(value) => Some(weight(value)?),
            },
            max_queued: fields.get("max_queued").map(max_queued).transpose()?,
            submit_rate: fields.get("submit_rate").map(submit_rate).transpose()?,
        };
        if patch == TenantPatch::default() {
            return Err(BadRequest(
                "nothing to change: give weight, max_queued or submit_rate".into(),
            ));
        }
        Ok(patch)
    }

    /// `tenant` with the patch applied.
    pub fn apply(&self, tenant: &Tenant) -> Tenant {
        let mut changed = tenant.clone();
        if let Some(weight) = self.weight {
            changed.weight = weight;
        }
        if let Some(max_queued) = self.max_queued {
            changed.max_queued = max_queued;
        }
        if let Some(submit_rate) = self.submit_rate {
            changed.submit_rate = submit_rate;
        }
        changed
    }
}

fn bad_name() -> BadRequest {
    BadRequest(format!(
        "name must be 1 to {MAX_TENANT_NAME_BYTES} bytes of lowercase letters, digits, '.', '_' and '-'"
    ))
}

fn weight(value: &Value) -> Result<f64, BadRequest> {
    value
        .as_f64()
        .filter(|w| w.is_finite() && *w > 0.0 && *w <= MAX_TENANT_WEIGHT)
        .ok_or_else(|| {
            BadRequest(format!(
                "weight must be a number greater than 0 and at most {MAX_TENANT_WEIGHT}, not {value}"
            ))
        })
}

/// `null` clears the quota.
fn max_queued(value: &Value) -> Result<Option<u64>, BadRequest> {
    match value {
        Value::Null => Ok(None),
        value => value.as_u64().map(Some).ok_or_else(|| {
            BadRequest(format!(
                "max_queued must be an integer of 0 or more (or null: no limit), not {value}"
            ))
        }),
    }
}

/// `null` clears the quota.
fn submit_rate(value: &Value) -> Result<Option<f64>, BadRequest> {
    match value {
        Value::Null => Ok(None),
        value => value
            .as_f64()
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(Some)
            .ok_or_else(|| {
                BadRequest(format!(
                    "submit_rate must be a number of tasks per second greater than 0 (or null: no limit), not {value}"
                ))
            }),
    }
}

/// A tenant as `GET /admin/tenants` shows it: the record and its live counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantView {
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Its tasks waiting for an agent.
    pub queued: u64,
    /// Its tasks held by an agent (pushed or running).
    pub assigned: u64,
    /// Its fraction of all tasks assigned right now, 0 to 1 (0 when none is assigned).
    pub share: f64,
}

/// Which quota refused a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaLimit {
    MaxQueued,
    SubmitRate,
}

impl QuotaLimit {
    pub const ALL: [QuotaLimit; 2] = [QuotaLimit::MaxQueued, QuotaLimit::SubmitRate];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaLimit::MaxQueued => "max_queued",
            QuotaLimit::SubmitRate => "submit_rate",
        }
    }

    /// The `error` code of a refusal by this limit.
    pub fn code(self) -> QuotaCode {
        match self {
            QuotaLimit::MaxQueued => QuotaCode::QuotaExceeded,
            QuotaLimit::SubmitRate => QuotaCode::RateLimited,
        }
    }
}

/// The `error` of a 429 from a tenant's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaCode {
    /// `max_queued`: the tenant has as many tasks queued as it may.
    QuotaExceeded,
    /// `submit_rate`: the tenant submitted faster than it may; `Retry-After` says when to.
    RateLimited,
}

/// A submission a tenant's quota refused (429): the body names the tenant, the limit, its
/// value and where the tenant stands. Nothing of the submission was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaRefusal {
    pub error: QuotaCode,
    pub tenant: String,
    pub limit: QuotaLimit,
    /// `max_queued`: the most tasks it may have queued; `submit_rate`: tasks per second.
    pub max: serde_json::Number,
    /// `max_queued`: its tasks queued now; `submit_rate`: the whole tasks it may submit now.
    pub current: u64,
    /// Tasks the refused submission held.
    pub requested: u64,
    /// Whole seconds until the submission could pass (`submit_rate` only; at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// What is wrong, in words.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_lowercase_and_bounded() {
        for good in ["default", "team-a", "ml.research_2", &"a".repeat(64)] {
            assert!(valid_tenant_name(good), "{good}");
        }
        for bad in ["", "Team", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(!valid_tenant_name(bad), "{bad}");
        }
    }
}
