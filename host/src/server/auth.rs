//! Bearer tokens: who is calling, and whether their role lets them use a route.

use super::reply::ApiError;
use super::AppState;
use crate::store::Role;
use crate::wire::http::{AuditAction, AuditRecord};
use warp::http::StatusCode;

/// Who is calling: the agent a valid token belongs to (`admin` for the admin token).
pub struct Caller {
    pub agent_id: String,
    /// The token's first characters, as listings show them.
    pub token_prefix: String,
    /// Whether the token is an admin token.
    pub admin: bool,
}

impl Caller {
    /// The audit record of `action` on `target` by this caller (the engine stamps the time).
    pub fn audit(&self, action: AuditAction, target: impl Into<String>) -> AuditRecord {
        AuditRecord {
            id: 0,
            at: 0,
            actor: self.agent_id.clone(),
            token_prefix: self.token_prefix.clone(),
            action,
            target: target.into(),
        }
    }
}

/// Checks the `Authorization: Bearer <token>` header against the role a route needs: 401 without
/// a known token, 403 when the token's role is not enough.
pub fn authenticate(
    state: &AppState,
    authorization: Option<&str>,
    needed: Role,
) -> Result<Caller, ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized");
    let token = authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(unauthorized)?;
    let record = state
        .read(|store, txn| store.find_token(txn, token))?
        .ok_or_else(unauthorized)?;
    if needed == Role::Admin && record.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden: this needs an admin token",
        ));
    }
    Ok(Caller {
        agent_id: record.agent_id,
        token_prefix: record.token_prefix,
        admin: record.role == Role::Admin,
    })
}
