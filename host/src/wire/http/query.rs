//! Query strings: the filters of `GET /api/tasks`, and the name/value pairs every query is read
//! as first.

use super::{bad, priority, BadRequest};
use crate::wire::TaskId;
use crate::wire::TaskStatus;
use serde_json::Value;

/// A query string as its decoded name/value pairs, in order. Names the API does not know are
/// kept here and ignored by whoever reads the pairs.
pub(super) fn pairs(query: &str) -> Result<Vec<(String, String)>, BadRequest> {
    serde_urlencoded::from_str(query).map_err(|e| bad(format!("query string is not valid: {e}")))
}

/// The filters and page of `GET /api/tasks`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskQuery {
    pub status: Option<TaskStatus>,
    pub priority: Option<u8>,
    pub assigned_to: Option<String>,
    pub fairness_key: Option<String>,
    /// Only this tenant's tasks (`tenant=`).
    pub tenant: Option<String>,
    /// Tasks in the page, 1 to [`TaskQuery::MAX_LIMIT`].
    pub limit: usize,
    /// The page starts after this task (the previous page's `next_cursor`).
    pub cursor: Option<TaskId>,
}

impl Default for TaskQuery {
    fn default() -> TaskQuery {
        TaskQuery {
            status: None,
            priority: None,
            assigned_to: None,
            fairness_key: None,
            tenant: None,
            limit: TaskQuery::DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

impl TaskQuery {
    /// Tasks a page holds when the query names no limit.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The largest page a query may ask for.
    pub const MAX_LIMIT: usize = 1000;

    /// Parses the query string (without the `?`). Unknown parameters are ignored; when a
    /// parameter is given twice, the last one counts.
    pub fn parse(query: &str) -> Result<TaskQuery, BadRequest> {
        let mut parsed = TaskQuery::default();
        for (name, value) in pairs(query)? {
            match name.as_str() {
                "status" => parsed.status = Some(status(&value)?),
                "priority" => parsed.priority = Some(query_priority(value)?),
                "assigned_to" => parsed.assigned_to = Some(value),
                "fairness_key" => parsed.fairness_key = Some(value),
                "tenant" => parsed.tenant = Some(tenant(value)?),
                "limit" => parsed.limit = limit(&value)?,
                "cursor" => parsed.cursor = Some(cursor(&value)?),
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// The `tenant=` of the dead letter and the stats (unknown parameters ignored, as above).
pub fn tenant_query(query: &str) -> Result<Option<String>, BadRequest> {
    let mut given = None;
    for (name, value) in pairs(query)? {
        if name == "tenant" {
            given = Some(tenant(value)?);
        }
    }
    Ok(given)
}

fn tenant(value: String) -> Result<String, BadRequest> {
    if crate::wire::tenant::valid_tenant_name(&value) {
        Ok(value)
    } else {
        Err(bad(format!("tenant must be a tenant name, not {value:?}")))
    }
}

fn status(value: &str) -> Result<TaskStatus, BadRequest> {
    TaskStatus::parse(value).ok_or_else(|| {
        bad(format!(
            "status must be one of queued, assigned, completed, dead_letter, cancelled, not {value:?}"
        ))
    })
}

/// A priority by name or number, as in a body: `priority=1` is the number 1, `priority=high` the
/// name, and the refusal quotes what was given the way a body's would.
fn query_priority(value: String) -> Result<u8, BadRequest> {
    let given = value
        .parse::<u64>()
        .map(Value::from)
        .unwrap_or(Value::String(value));
    priority(&given)
}

fn limit(value: &str) -> Result<usize, BadRequest> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=TaskQuery::MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            bad(format!(
                "limit must be an integer from 1 to {}",
                TaskQuery::MAX_LIMIT
            ))
        })
}

fn cursor(value: &str) -> Result<TaskId, BadRequest> {
    TaskId::parse(value).ok_or_else(|| bad(format!("cursor must be a task id, not {value:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_query_is_the_first_page_unfiltered() {
        assert_eq!(TaskQuery::parse("").unwrap(), TaskQuery::default());
        assert_eq!(TaskQuery::default().limit, TaskQuery::DEFAULT_LIMIT);
    }

    #[test]
    fn every_parameter_is_typed() {
        let query = TaskQuery::parse(
            "status=dead_letter&priority=high&assigned_to=a%201&fairness_key=team&limit=5\
             &cursor=task-000000000000000a&tenant=team-a&unknown=x",
        )
        .unwrap();
        assert_eq!(
            query,
            TaskQuery {
                status: Some(TaskStatus::DeadLetter),
                priority: Some(1),
                assigned_to: Some("a 1".into()),
                fairness_key: Some("team".into()),
                tenant: Some("team-a".into()),
                limit: 5,
                cursor: Some(TaskId(10)),
            }
        );
        assert_eq!(TaskQuery::parse("priority=3").unwrap().priority, Some(3));
    }

    #[test]
    fn refusals_name_their_parameter() {
        for (query, parameter) in [
            ("status=bogus", "status"),
            ("priority=7", "priority"),
            ("priority=-1", "priority"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("cursor=x", "cursor"),
            ("tenant=Team%20A", "tenant"),
        ] {
            let BadRequest(why) = TaskQuery::parse(query).unwrap_err();
            assert!(why.starts_with(parameter), "{query} gave {why}");
        }
    }

    #[test]
    fn the_tenant_query_is_a_tenant_name() {
        assert_eq!(tenant_query("").unwrap(), None);
        assert_eq!(tenant_query("x=1&tenant=b").unwrap(), Some("b".into()));
        assert!(tenant_query("tenant=").unwrap_err().0.starts_with("tenant"));
    }

    #[test]
    fn a_refused_priority_is_quoted_as_given() {
        let BadRequest(why) = TaskQuery::parse("priority=7").unwrap_err();
        assert!(why.ends_with("not 7"), "{why}");
        let BadRequest(why) = TaskQuery::parse("priority=-1").unwrap_err();
        assert!(why.ends_with("not \"-1\""), "{why}");
    }
}
