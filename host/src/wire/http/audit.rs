//! The audit log's records, as `GET /admin/audit` returns them and the store keeps them, and
//! the query that pages through them.

use super::query::pairs;
use super::{bad, BadRequest};
use serde::{Deserialize, Serialize};

/// What an admin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// `POST /admin/tokens`; the target is the agent id.
    TokenCreate,
    /// `DELETE /admin/tokens/:agent_id`; the target is the agent id (and prefix, if one was
    /// named).
    TokenRevoke,
    /// `POST /admin/tokens/rotate-admin`; the target is the new token's prefix.
    AdminTokenRotate,
    /// `PUT /api/policy`; the target is the policy's source.
    PolicySwap,
    /// `POST /api/tasks/:id/retry`.
    TaskRetry,
    /// `POST /api/tasks/:id/cancel`.
    TaskCancel,
    /// `POST /api/tasks/:id/requeue`.
    TaskRequeue,
    /// `POST /admin/tenants`; the target is the tenant's name.
    TenantCreate,
    /// `PATCH /admin/tenants/:name`; the target is the tenant's name.
    TenantUpdate,
    /// `DELETE /admin/tenants/:name`; the target is the tenant's name.
    TenantDelete,
}

/// One admin action: who did what to what, and when. Recorded in the same commit as the action
/// itself, so an action is never kept without its record (nor a record without its action).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The record's place in the log, counting up from 1; given when it is committed.
    #[serde(default)]
    pub id: u64,
    /// When, milliseconds since the Unix epoch.
    pub at: u64,
    /// The agent id of the token used (`admin` for admin tokens).
    pub actor: String,
    /// The first characters of the token used, to tell tokens of one agent id apart.
    pub token_prefix: String,
    pub action: AuditAction,
    /// What the action was on: a task id, an agent id, a policy source.
    pub target: String,
}

/// The page `GET /admin/audit` asks for: newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditQuery {
    /// Records in the page, 1 to [`AuditQuery::MAX_LIMIT`].
    pub limit: usize,
    /// The page holds records older than this one (the previous page's `next_cursor`).
    pub cursor: Option<u64>,
}

impl AuditQuery {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;

    /// Parses the query string (without the `?`); unknown parameters are ignored.
    pub fn parse(query: &str) -> Result<AuditQuery, BadRequest> {
        let mut parsed = AuditQuery {
            limit: AuditQuery::DEFAULT_LIMIT,
            cursor: None,
        };
        for (name, value) in pairs(query)? {
            match name.as_str() {
                "limit" => {
                    parsed.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=AuditQuery::MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            bad(format!(
                                "limit must be an integer from 1 to {}",
                                AuditQuery::MAX_LIMIT
                            ))
                        })?
                }
                "cursor" => {
                    parsed.cursor = Some(value.parse::<u64>().map_err(|_| {
                        bad("cursor must be the next_cursor of a previous page (an integer)")
                    })?)
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_has_defaults_and_names_what_is_wrong() {
        assert_eq!(
            AuditQuery::parse("").unwrap(),
            AuditQuery {
                limit: 100,
                cursor: None
            }
        );
        assert_eq!(
            AuditQuery::parse("limit=5&cursor=42").unwrap(),
            AuditQuery {
                limit: 5,
                cursor: Some(42)
            }
        );
        for (query, needle) in [
            ("limit=0", "limit must be"),
            ("limit=1001", "limit must be"),
            ("cursor=x", "cursor must be"),
        ] {
            let BadRequest(why) = AuditQuery::parse(query).unwrap_err();
            assert!(why.starts_with(needle), "{query}: {why}");
        }
    }

    #[test]
    fn actions_are_snake_case_on_the_wire() {
        let text = serde_json::to_string(&AuditAction::AdminTokenRotate).unwrap();
        assert_eq!(text, "\"admin_token_rotate\"");
    }
}
