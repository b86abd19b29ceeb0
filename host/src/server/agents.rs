//! Agents and the tokens they identify with: `GET /api/agents` and the admin's `/admin/tokens`.

use super::body::LazyBody;
use super::reply::{json, ApiError, ApiResult};
use super::AppState;
use crate::engine::Command;
use crate::store::Role;
use crate::wire::http::token_request;
use serde_json::{json, Value};
use warp::http::StatusCode;

/// `GET /api/agents`: every agent the engine knows, connected or not, with its state and the
/// task it holds.
pub async fn list(state: &AppState) -> ApiResult {
    let agents = state
        .engine
        .ask(|reply| Command::ListAgents { reply })
        .await?;
    Ok(json(StatusCode::OK, json!({ "agents": agents })))
}

/// `POST /admin/tokens`: a new agent token, answered once and stored only hashed.
pub async fn create_token(state: &AppState, body: LazyBody) -> ApiResult {
    let agent_id = token_request(&body.read_object(super::limits::SMALL_BODY).await?)?;
    let token = state
        .engine
        .ask(|reply| Command::CreateToken {
            agent_id: agent_id.clone(),
            reply,
        })
        .await?;
    Ok(json(
        StatusCode::CREATED,
        json!({"agent_id": agent_id, "token": token}),
    ))
}

/// `GET /admin/tokens`: agent tokens by prefix only; the admin token is not listed.
pub async fn list_tokens(state: &AppState) -> ApiResult {
    let tokens: Vec<Value> = state
        .read(|store, txn| store.tokens(txn))?
        .iter()
        .filter(|token| token.role == Role::Agent)
        .map(|token| json!({"agent_id": token.agent_id, "token_prefix": token.token_prefix}))
        .collect();
    Ok(json(StatusCode::OK, json!({ "tokens": tokens })))
}

/// `DELETE /admin/tokens/:agent_id`: every token of the agent; its open connection is closed.
pub async fn revoke_tokens(state: &AppState, agent_id: String) -> ApiResult {
    let revoked = state
        .engine
        .ask(|reply| Command::RevokeTokens {
            agent_id: agent_id.clone(),
            reply,
        })
        .await?;
    if revoked == 0 {
        return Err(ApiError::token_not_found(&agent_id));
    }
    Ok(json(
        StatusCode::OK,
        json!({"status": "revoked", "agent_id": agent_id}),
    ))
}
