//! Agents and the tokens they identify with: `GET /api/agents` and the admin's `/admin/tokens`.

use super::auth::Caller;
use super::body::LazyBody;
use super::reply::{json, ApiError, ApiResult};
use super::AppState;
use crate::engine::Command;
use crate::store::{write_admin_token, PREFIX_LEN};
use crate::wire::http::{revoke_prefix, token_request, AuditAction};
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

/// `POST /admin/tokens`: a new token (an agent's of the `default` tenant unless the body names
/// a role and a tenant), answered once and stored only hashed. A tenant that does not exist is
/// a 400 naming it.
pub async fn create_token(state: &AppState, caller: &Caller, body: LazyBody) -> ApiResult {
    let request = token_request(&body.read_object(super::limits::SMALL_BODY).await?)?;
    let answer = json!({
        "agent_id": request.agent_id,
        "role": request.role,
        "tenant": request.tenant,
    });
    let target = request.agent_id.clone();
    let token = state
        .engine
        .ask_audited(caller.audit(AuditAction::TokenCreate, target), |reply| {
            Command::CreateToken { request, reply }
        })
        .await?;
    let mut answer = answer;
    answer["token"] = json!(token);
    Ok(json(StatusCode::CREATED, answer))
}

/// `GET /admin/tokens`: every token by prefix only, with its role and tenant.
pub async fn list_tokens(state: &AppState) -> ApiResult {
    let tokens: Vec<Value> = state
        .read(|store, txn| store.tokens(txn))?
        .iter()
        .map(|token| {
            json!({
                "agent_id": token.agent_id,
                "role": token.role,
                "tenant": token.tenant,
                "token_prefix": token.token_prefix,
                "created_at": token.created_at,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, json!({ "tokens": tokens })))
}

/// `DELETE /admin/tokens/:agent_id[?prefix=P]`: every token of the agent (or the one with
/// prefix P); its open connection is closed. Admin tokens (`/admin/tokens/admin`) go the same
/// way, except the last one: 409.
pub async fn revoke_tokens(
    state: &AppState,
    caller: &Caller,
    agent_id: String,
    query: &str,
) -> ApiResult {
    let prefix = revoke_prefix(query)?;
    let target = match &prefix {
        Some(prefix) => format!("{agent_id} ({prefix})"),
        None => agent_id.clone(),
    };
    let revoked = state
        .engine
        .ask_audited(caller.audit(AuditAction::TokenRevoke, target), |reply| {
            Command::RevokeTokens {
                agent_id: agent_id.clone(),
                prefix,
                reply,
            }
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

/// `POST /admin/tokens/rotate-admin`: a new admin token, answered once; every other admin
/// token (the caller's included) is revoked in the same commit. The hub also writes it to
/// `admin.token` in its data folder; if that fails the token is still answered (it is in
/// force), with `written_to` null and the reason in `write_error`.
pub async fn rotate_admin(state: &AppState, caller: &Caller) -> ApiResult {
    let token = state
        .engine
        .ask(|reply| Command::Audited {
            // The new token's prefix is only known once it is made: the record names the
            // caller's token, whose successor the answer shows.
            record: caller.audit(AuditAction::AdminTokenRotate, caller.token_prefix.clone()),
            command: Box::new(Command::RotateAdmin { reply }),
        })
        .await?;
    // Two rotations at once commit in some order; their files must be written in that order,
    // so the file never ends with the revoked one. One writer at a time, and only a token still
    // in force is written.
    static WRITING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let writing = WRITING.lock().await;
    let in_force = state
        .read(|store, txn| store.find_token(txn, &token))?
        .is_some();
    let written = match in_force {
        true => write_admin_token(state.store.dir(), &token).map_err(|e| e.to_string()),
        false => Err("a later rotation replaced this token before it was written".to_string()),
    };
    drop(writing);
    let (written_to, write_error) = match written {
        Ok(path) => (Some(path.display().to_string()), None),
        Err(error) => {
            tracing::error!(%error, "the rotated admin token was not written to admin.token");
            (None, Some(error))
        }
    };
    Ok(json(
        StatusCode::OK,
        json!({
            "agent_id": crate::store::ADMIN_AGENT_ID,
            "token": token,
            "token_prefix": &token[..PREFIX_LEN],
            "written_to": written_to,
            "write_error": write_error,
        }),
    ))
}
