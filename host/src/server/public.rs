//! The routes anyone may call, without a token: the health check and the answer to a `GET /ws`
//! that is not a WebSocket upgrade. (`/metrics` and the dashboard are public too; each has its
//! own module.)

use super::reply::{json, ApiError, ApiResult};
use super::AppState;
use serde_json::json;
use warp::http::StatusCode;

/// `GET /health`.
pub async fn health(state: &AppState) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        json!({"status": "ok", "service": "switchyard", "agents_connected": state.engine.agents_connected()}),
    ))
}

/// `GET /ws` that the WebSocket route let through because it is not an upgrade request.
pub async fn ws_without_upgrade() -> ApiResult {
    Err(ApiError::bad_request(
        "GET /ws must be a WebSocket upgrade request",
    ))
}
