//! What the hub reads from HTTP requests (`spec/http-api.md`): bodies and query strings,
//! validated into typed values. Every refusal names the field or parameter that is wrong.

mod audit;
mod policy;
mod query;
mod token;

pub use audit::{AuditAction, AuditQuery, AuditRecord};
pub use policy::{PolicyChange, PolicyComponent, ShadowState, ShadowStopReason};
pub use query::{tenant_query, TaskQuery};
pub use token::{token_request, TokenRequest};

use serde_json::{Map, Value};

/// The largest `max_retries` a task may ask for; beyond it a task would practically never
/// reach the dead letter.
const MAX_RETRIES_LIMIT: u64 = 1000;
/// Retries when a task names none.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Tasks in one batch submission.
pub const MAX_BATCH: usize = 10_000;
/// `serve --max-task-bytes` by default: a task's size as [`NewTask::encoded_size`] measures it.
/// With [`crate::wire::agent::hub::TASK_ASSIGN_OVERHEAD`] its `task_assign` stays far within
/// the 1 MiB frame limit agents have by default.
pub const DEFAULT_MAX_TASK_BYTES: usize = 256 << 10;
/// Capabilities one task may need.
pub const MAX_NEEDED_CAPABILITIES: usize = 64;
/// Bytes of one capability name a task needs.
pub const MAX_CAPABILITY_NAME_BYTES: usize = 128;

/// A task as submitted, before it has an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub description: String,
    pub priority: u8,
    pub metadata: Value,
    pub max_retries: u32,
    pub complete_by: Option<u64>,
    /// Sorted, without duplicates.
    pub needed_capabilities: Vec<String>,
    pub fairness_key: Option<String>,
    pub weight: f64,
    /// How long an accepted run may take; `None`: the hub's default; 0: no limit.
    pub run_timeout_ms: Option<u64>,
    /// How long an accepted run may go without `task_progress`; `None` or 0: no heartbeat.
    pub heartbeat_timeout_ms: Option<u64>,
}

/// A body or query string that cannot be accepted; the message names what is wrong. The API
/// answers it with 400 and the message as `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn bad(message: impl Into<String>) -> BadRequest {
    BadRequest(message.into())
}

/// Parses a request body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, BadRequest> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(bad("body must be a JSON object")),
        Err(error) => Err(bad(format!("body is not valid JSON: {error}"))),
    }
}

/// Priorities by name, most urgent first; the index is the priority number.
pub const PRIORITY_NAMES: [&str; 4] = ["urgent", "high", "normal", "low"];

/// Parses a priority given as a name or a number 0-3.
pub fn priority(value: &Value) -> Result<u8, BadRequest> {
    let refusal = || {
        bad(format!(
            "priority must be one of urgent, high, normal, low or 0-3, not {value}"
        ))
    };
    match value {
        Value::String(name) => PRIORITY_NAMES
            .iter()
            .position(|known| known == name)
            .map(|index| index as u8)
            .ok_or_else(refusal),
        Value::Number(number) => match number.as_u64() {
            Some(n) if n <= 3 => Ok(n as u8),
            _ => Err(refusal()),
        },
        _ => Err(refusal()),
    }
}

impl NewTask {
    /// Validates one task object of `POST /api/tasks` or of a batch.
    pub fn parse(fields: &Map<String, Value>) -> Result<NewTask, BadRequest> {
        if fields.contains_key("tenant") {
            return Err(bad(
                "tenant is not allowed: a task belongs to the tenant of the token that submits it",
            ));
        }
        let description = match fields.get("description") {
            Some(Value::String(text)) => text.clone(),
            Some(_) => return Err(bad("description must be a string")),
            None => return Err(bad("description is required")),
        };
        let priority = match fields.get("priority") {
            None | Some(Value::Null) => 2,
            Some(value) => priority(value)?,
        };
        let metadata = match fields.get("metadata") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(value @ Value::Object(_)) => value.clone(),
            Some(_) => return Err(bad("metadata must be an object")),
        };
        let max_retries = match fields.get("max_retries") {
            None | Some(Value::Null) => DEFAULT_MAX_RETRIES,
            Some(value) => match value.as_u64() {
                Some(n) if (1..=MAX_RETRIES_LIMIT).contains(&n) => n as u32,
                _ => {
                    return Err(bad(format!(
                        "max_retries must be an integer from 1 to {MAX_RETRIES_LIMIT}"
                    )))
                }
            },
        };
        let complete_by = match fields.get("complete_by") {
            None | Some(Value::Null) => None,
            Some(value) => Some(value.as_u64().ok_or_else(|| {
                bad("complete_by must be a time in milliseconds since the Unix epoch")
            })?),
        };
        let mut needed_capabilities = match fields.get("needed_capabilities") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("needed_capabilities must be a list of strings"))?,
            Some(_) => return Err(bad("needed_capabilities must be a list of strings")),
        };
        needed_capabilities.sort();
        needed_capabilities.dedup();
        if needed_capabilities.len() > MAX_NEEDED_CAPABILITIES {
            return Err(bad(format!(
                "needed_capabilities must hold at most {MAX_NEEDED_CAPABILITIES} names"
            )));
        }
        if let Some(long) = needed_capabilities
            .iter()
            .find(|name| name.len() > MAX_CAPABILITY_NAME_BYTES)
        {
            return Err(bad(format!(
                "needed_capabilities: a name must be at most {MAX_CAPABILITY_NAME_BYTES} bytes, not {}",
                long.len()
            )));
        }
        let fairness_key = match fields.get("fairness_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) if !key.is_empty() => Some(key.clone()),
            Some(_) => return Err(bad("fairness_key must be a non-empty string")),
        };
        let weight = match fields.get("weight") {
            None | Some(Value::Null) => 1.0,
            Some(value) => match value.as_f64() {
                Some(w) if w > 0.0 && w.is_finite() => w,
                _ => return Err(bad("weight must be a number greater than 0")),
            },
        };
        Ok(NewTask {
            description,
            priority,
            metadata,
            max_retries,
            complete_by,
            needed_capabilities,
            fairness_key,
            weight,
            run_timeout_ms: duration_ms(fields, "run_timeout_ms")?,
            heartbeat_timeout_ms: duration_ms(fields, "heartbeat_timeout_ms")?,
        })
    }

    /// The task's size as `serve --max-task-bytes` counts it: its description, metadata,
    /// needed capabilities and fairness key, each encoded as JSON the way the hub stores and
    /// sends them (so escapes count as what they cost, not as the characters they stand for).
    /// The description and metadata are what a `task_assign` carries.
    pub fn encoded_size(&self) -> usize {
        json_len(&self.description)
            + json_len(&self.metadata)
            + json_len(&self.needed_capabilities)
            + self.fairness_key.as_ref().map_or(0, json_len)
    }

    /// Refuses a `complete_by` that has already passed at `now`: such a task would be
    /// dead-lettered as soon as it was queued, never run.
    pub fn check_complete_by(&self, now: u64) -> Result<(), BadRequest> {
        match self.complete_by {
            Some(at) if at <= now => Err(bad(format!(
                "complete_by is in the past ({at}; the hub's clock says {now}): the task could never run"
            ))),
            _ => Ok(()),
        }
    }

    /// A new task with every optional field at its default.
    pub fn with_description(description: impl Into<String>) -> NewTask {
        NewTask {
            description: description.into(),
            priority: 2,
            metadata: Value::Object(Map::new()),
            max_retries: DEFAULT_MAX_RETRIES,
            complete_by: None,
            needed_capabilities: Vec::new(),
            fairness_key: None,
            weight: 1.0,
            run_timeout_ms: None,
            heartbeat_timeout_ms: None,
        }
    }

    /// Validates the body of `POST /api/tasks/batch`: all tasks or none.
    pub fn parse_batch(fields: &Map<String, Value>) -> Result<Vec<NewTask>, BadRequest> {
        if fields.contains_key("tenant") {
            return Err(bad(
                "tenant is not allowed: a task belongs to the tenant of the token that submits it",
            ));
        }
        let Some(Value::Array(items)) = fields.get("tasks") else {
            return Err(bad("tasks is required and must be a list of task objects"));
        };
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(bad(format!("tasks must hold 1 to {MAX_BATCH} tasks")));
        }
        items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::Object(task) => NewTask::parse(task)
                    .map_err(|BadRequest(why)| bad(format!("tasks[{index}]: {why}"))),
                _ => Err(bad(format!("tasks[{index}] must be an object"))),
            })
            .collect()
    }
}

/// The length of `value` encoded as JSON, without building the text.
pub fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Strings, vectors and JSON values always encode.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The longest timeout a task may ask for: 30 days.
pub const MAX_TIMEOUT_MS: u64 = 30 * 24 * 3600 * 1000;

/// An optional duration in milliseconds, 0 to [`MAX_TIMEOUT_MS`].
fn duration_ms(fields: &Map<String, Value>, name: &str) -> Result<Option<u64>, BadRequest> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(ms) if ms <= MAX_TIMEOUT_MS => Ok(Some(ms)),
            _ => Err(bad(format!(
                "{name} must be an integer number of milliseconds from 0 to {MAX_TIMEOUT_MS}"
            ))),
        },
    }
}

/// The query of `DELETE /admin/tokens/:agent_id`: `prefix`, when given, names the one token
/// to revoke (as listings show it); without it every token of the agent goes.
pub fn revoke_prefix(query: &str) -> Result<Option<String>, BadRequest> {
    let mut prefix = None;
    for (name, value) in query::pairs(query)? {
        if name == "prefix" {
            if value.is_empty() || value.len() > 64 {
                return Err(bad(
                    "prefix must be a token prefix as GET /admin/tokens shows it",
                ));
            }
            prefix = Some(value);
        }
    }
    Ok(prefix)
}

/// Agent ids are free text, within reason.
pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<NewTask, BadRequest> {
        NewTask::parse(value.as_object().unwrap())
    }

    #[test]
    fn defaults() {
        let task = parse(json!({"description": "d"})).unwrap();
        assert_eq!(task.priority, 2);
        assert_eq!(task.metadata, json!({}));
        assert_eq!(task.max_retries, 3);
        assert_eq!(task.weight, 1.0);
        assert!(task.needed_capabilities.is_empty() && task.fairness_key.is_none());
    }

    #[test]
    fn priorities_by_name_and_number() {
        for (given, expected) in [(json!("urgent"), 0), (json!("low"), 3), (json!(1), 1)] {
            assert_eq!(
                parse(json!({"description": "d", "priority": given}))
                    .unwrap()
                    .priority,
                expected
            );
        }
        for given in [
            json!("critical"),
            json!(4),
            json!(-1),
            json!(1.5),
            json!(true),
        ] {
            let error = parse(json!({"description": "d", "priority": given})).unwrap_err();
            assert!(error.0.starts_with("priority must be"), "{error}");
        }
    }

    #[test]
    fn every_refusal_names_its_field() {
        let cases = [
            (json!({}), "description"),
            (json!({"description": 3}), "description"),
            (json!({"description": "d", "metadata": []}), "metadata"),
            (json!({"description": "d", "max_retries": 0}), "max_retries"),
            (
                json!({"description": "d", "complete_by": "soon"}),
                "complete_by",
            ),
            (
                json!({"description": "d", "needed_capabilities": [1]}),
                "needed_capabilities",
            ),
            (
                json!({"description": "d", "fairness_key": ""}),
                "fairness_key",
            ),
            (json!({"description": "d", "weight": 0}), "weight"),
        ];
        for (body, field) in cases {
            let error = parse(body.clone()).unwrap_err();
            assert!(error.0.contains(field), "{body} gave {error}");
        }
    }

    #[test]
    fn the_size_counts_json_as_encoded() {
        let task = parse(json!({"description": "ab", "metadata": {"k": 1},
            "needed_capabilities": ["x"], "fairness_key": "t"}))
        .unwrap();
        // "ab" + {"k":1} + ["x"] + "t"
        assert_eq!(task.encoded_size(), 4 + 7 + 5 + 3);
        let escaped = parse(json!({"description": "\u{1}"})).unwrap();
        assert_eq!(
            escaped.encoded_size(),
            8 + 2 + 2,
            "\\u0001 in quotes, {{}}, []"
        );
    }

    #[test]
    fn a_deadline_in_the_past_is_refused() {
        let task = parse(json!({"description": "d", "complete_by": 1000})).unwrap();
        assert!(task.check_complete_by(999).is_ok());
        let BadRequest(why) = task.check_complete_by(1000).unwrap_err();
        assert!(why.starts_with("complete_by is in the past"), "{why}");
        assert!(parse(json!({"description": "d"}))
            .unwrap()
            .check_complete_by(u64::MAX)
            .is_ok());
    }

    #[test]
    fn needed_capabilities_are_bounded() {
        let many: Vec<String> = (0..=MAX_NEEDED_CAPABILITIES)
            .map(|i| format!("c{i}"))
            .collect();
        let error = parse(json!({"description": "d", "needed_capabilities": many})).unwrap_err();
        assert!(error.0.starts_with("needed_capabilities"), "{error}");
        let long = "x".repeat(MAX_CAPABILITY_NAME_BYTES + 1);
        let error = parse(json!({"description": "d", "needed_capabilities": [long]})).unwrap_err();
        assert!(error.0.starts_with("needed_capabilities"), "{error}");
    }

    #[test]
    fn capabilities_are_sorted_and_deduplicated() {
        let task =
            parse(json!({"description": "d", "needed_capabilities": ["b", "a", "b"]})).unwrap();
        assert_eq!(task.needed_capabilities, vec!["a", "b"]);
    }

    #[test]
    fn batch_is_all_or_none() {
        let body = json!({"tasks": [{"description": "a"}, {"description": "b", "priority": "x"}]});
        let error = NewTask::parse_batch(body.as_object().unwrap()).unwrap_err();
        assert!(error.0.starts_with("tasks[1]: priority"), "{error}");
        let body = json!({"tasks": [{"description": "a"}, {"description": "b"}]});
        assert_eq!(
            NewTask::parse_batch(body.as_object().unwrap())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_task_never_names_its_tenant() {
        let error = parse(json!({"description": "d", "tenant": "b"})).unwrap_err();
        assert!(error.0.starts_with("tenant is not allowed"), "{error}");
        let body = json!({"tasks": [{"description": "a", "tenant": "b"}]});
        let error = NewTask::parse_batch(body.as_object().unwrap()).unwrap_err();
        assert!(
            error.0.starts_with("tasks[0]: tenant is not allowed"),
            "{error}"
        );
        let body = json!({"tenant": "b", "tasks": [{"description": "a"}]});
        assert!(NewTask::parse_batch(body.as_object().unwrap()).is_err());
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(object(b"{").unwrap_err().0.contains("not valid JSON"));
        assert!(object(b"[]").unwrap_err().0.contains("object"));
        assert!(object(br#"{"a":1}"#).is_ok());
    }
}
