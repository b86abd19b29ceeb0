//! The body of `POST /admin/tokens`: who the token is for, its role and its tenant.

use super::{bad, valid_agent_id, BadRequest};
use crate::wire::role::Role;
use crate::wire::tenant::{default_tenant, valid_tenant_name, MAX_TENANT_NAME_BYTES};
use serde_json::{Map, Value};

/// The body of `POST /admin/tokens`.
pub fn token_request(fields: &Map<String, Value>) -> Result<TokenRequest, BadRequest> {
    let agent_id = match fields.get("agent_id") {
        Some(Value::String(id)) if valid_agent_id(id) => id.clone(),
        Some(Value::String(_)) => {
            return Err(bad(
                "agent_id must be 1 to 128 characters, without control characters",
            ))
        }
        _ => return Err(bad("agent_id is required and must be a string")),
    };
    let role = match fields.get("role") {
        None | Some(Value::Null) => Role::DEFAULT,
        Some(Value::String(name)) => Role::parse(name).ok_or_else(|| {
            bad(format!(
                "role must be one of {}, not {name:?}",
                Role::expected()
            ))
        })?,
        Some(other) => {
            return Err(bad(format!(
                "role must be one of {}, not {other}",
                Role::expected()
            )))
        }
    };
    let tenant = match fields.get("tenant") {
        None | Some(Value::Null) => default_tenant(),
        Some(Value::String(name)) if valid_tenant_name(name) => name.clone(),
        Some(other) => {
            return Err(bad(format!(
            "tenant must be a tenant name (1 to {} bytes of a-z, 0-9, '.', '_', '-'), not {other}",
            MAX_TENANT_NAME_BYTES
        )))
        }
    };
    Ok(TokenRequest {
        agent_id,
        role,
        tenant,
    })
}

/// What `POST /admin/tokens` asks for: a token for `agent_id` with `role` (default `agent`) in
/// `tenant` (default `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub agent_id: String,
    pub role: Role,
    pub tenant: String,
}

impl TokenRequest {
    /// An agent token of the `default` tenant: what a request naming only `agent_id` asks.
    pub fn agent(agent_id: impl Into<String>) -> TokenRequest {
        TokenRequest {
            agent_id: agent_id.into(),
            role: Role::DEFAULT,
            tenant: default_tenant(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_requests_default_to_an_agent_of_the_default_tenant() {
        let request = |body: Value| token_request(body.as_object().unwrap());
        assert_eq!(
            request(json!({"agent_id": "w1"})).unwrap(),
            TokenRequest {
                agent_id: "w1".into(),
                role: Role::Agent,
                tenant: "default".into(),
            }
        );
        let client = request(json!({"agent_id": "ci", "role": "client", "tenant": "team-a"}));
        assert_eq!(client.unwrap().role, Role::Client);
        let error = request(json!({"agent_id": "ci", "role": "boss"})).unwrap_err();
        assert_eq!(
            error.0,
            "role must be one of agent, client or admin, not \"boss\""
        );
        let error = request(json!({"agent_id": "ci", "tenant": "Team A"})).unwrap_err();
        assert!(
            error.0.starts_with("tenant must be a tenant name"),
            "{error}"
        );
    }
}
