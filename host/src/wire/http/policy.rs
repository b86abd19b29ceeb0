//! The request of `PUT /api/policy` (and of `PUT /api/policy/shadow`, which takes the same
//! body): a component, named in a JSON body or uploaded as the body, and the configuration to
//! create it with; and the codes a shadow run's report shares with its readers.

use super::query::pairs;
use super::{bad, object, BadRequest};
use serde::Serialize;
use serde_json::{Map, Value};

/// The content type of an uploaded component; any other body is read as JSON.
const WASM_CONTENT_TYPE: &str = "application/wasm";

/// The policy a `PUT /api/policy` asks to switch to.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyChange {
    pub component: PolicyComponent,
    /// What the policy is created with; `null` when the request gives none.
    pub config: Value,
}

/// Where the new policy's component comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyComponent {
    /// A policy bundled into the hub, by name (`{"builtin": NAME}`).
    Builtin(String),
    /// A component file on the hub's machine (`{"path": FILE}`).
    Path(String),
    /// The component's bytes, sent as the body with the `application/wasm` content type.
    Upload(Vec<u8>),
}

impl PolicyChange {
    /// Reads the request: an upload takes its configuration from the `config` query parameter
    /// (URL-encoded JSON), a JSON body from its `config` field.
    pub fn parse(
        content_type: Option<&str>,
        query: &str,
        body: Vec<u8>,
    ) -> Result<PolicyChange, BadRequest> {
        if content_type.is_some_and(|c| c.starts_with(WASM_CONTENT_TYPE)) {
            PolicyChange::upload(query, body)
        } else {
            PolicyChange::reference(&object(&body)?)
        }
    }

    fn upload(query: &str, component: Vec<u8>) -> Result<PolicyChange, BadRequest> {
        let config = match pairs(query)?.into_iter().find(|(name, _)| name == "config") {
            Some((_, text)) => serde_json::from_str(&text)
                .map_err(|e| bad(format!("config must be URL-encoded JSON: {e}")))?,
            None => Value::Null,
        };
        Ok(PolicyChange {
            component: PolicyComponent::Upload(component),
            config,
        })
    }

    fn reference(body: &Map<String, Value>) -> Result<PolicyChange, BadRequest> {
        let component = match (body.get("path"), body.get("builtin")) {
            (Some(Value::String(path)), None) => PolicyComponent::Path(path.clone()),
            (None, Some(Value::String(name))) => PolicyComponent::Builtin(name.clone()),
            _ => {
                return Err(bad(
                    "give exactly one of path (a component file on the hub) or builtin (a bundled policy's name)",
                ))
            }
        };
        Ok(PolicyChange {
            component,
            config: body.get("config").cloned().unwrap_or(Value::Null),
        })
    }
}

/// Whether a shadow run (`/api/policy/shadow`) is still being fed, as its report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowState {
    /// Fed every event and asked at every decision pass.
    Running,
    /// Fed no more; the report keeps what it saw until the shadow is removed or replaced.
    Stopped,
}

/// Why a shadow run stopped on its own. An operator's `DELETE` removes the run instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowStopReason {
    /// Its calls trapped or ran past their deadline too often (the shadow's own breaker).
    Failing,
    /// Its successful calls took more than its time budget within one second.
    OverBudget,
    /// It could not keep up: its queue of events filled, and the engine never waits for it.
    FellBehind,
}

impl ShadowStopReason {
    /// The reason as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowStopReason::Failing => "failing",
            ShadowStopReason::OverBudget => "over_budget",
            ShadowStopReason::FellBehind => "fell_behind",
        }
    }
}

impl std::fmt::Display for ShadowStopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_body(body: Value) -> Result<PolicyChange, BadRequest> {
        PolicyChange::parse(Some("application/json"), "", body.to_string().into_bytes())
    }

    #[test]
    fn a_json_body_names_a_builtin_or_a_path() {
        assert_eq!(
            json_body(json!({"builtin": "fair", "config": {"a": 1}})).unwrap(),
            PolicyChange {
                component: PolicyComponent::Builtin("fair".into()),
                config: json!({"a": 1}),
            }
        );
        assert_eq!(
            json_body(json!({"path": "/p.wasm"})).unwrap(),
            PolicyChange {
                component: PolicyComponent::Path("/p.wasm".into()),
                config: Value::Null,
            }
        );
        for body in [
            json!({}),
            json!({"path": "/p.wasm", "builtin": "fair"}),
            json!({"builtin": 3}),
        ] {
            let BadRequest(why) = json_body(body.clone()).unwrap_err();
            assert!(why.starts_with("give exactly one of path"), "{body}: {why}");
        }
        let BadRequest(why) = PolicyChange::parse(None, "", b"[]".to_vec()).unwrap_err();
        assert!(why.contains("JSON object"), "{why}");
    }

    #[test]
    fn an_upload_takes_its_config_from_the_query() {
        let upload =
            |query: &str| PolicyChange::parse(Some("application/wasm"), query, b"\0asm".to_vec());
        assert_eq!(
            upload("config=%7B%22a%22%3A1%7D").unwrap(),
            PolicyChange {
                component: PolicyComponent::Upload(b"\0asm".to_vec()),
                config: json!({"a": 1}),
            }
        );
        assert_eq!(upload("").unwrap().config, Value::Null);
        let BadRequest(why) = upload("config=%7B").unwrap_err();
        assert!(why.starts_with("config must be URL-encoded JSON"), "{why}");
    }
}
