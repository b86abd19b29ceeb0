//! Tenants: the parties that share one hub. A token belongs to a tenant, and so does every task
//! submitted with it; the fair policy shares agents between tenants by their weights, and quotas
//! bound each one. Tenants are hub data, managed by admins (`/admin/tenants`).

use serde::{Deserialize, Serialize};

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
    /// Tasks per second it may submit (a burst of one second's worth); none: no limit.
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
