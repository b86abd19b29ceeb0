//! The policy in force: `GET /api/policy` reports it, `PUT /api/policy` swaps it.

use super::body::LazyBody;
use super::reply::{json, ApiError, ApiResult};
use super::AppState;
use crate::engine::Command;
use crate::policy::{PolicyHost, PolicySource};
use crate::store::PersistedPolicy;
use crate::wire::http::{PolicyChange, PolicyComponent};
use serde_json::{json, Value};
use warp::http::StatusCode;

/// `GET /api/policy`.
pub async fn get(state: &AppState) -> ApiResult {
    let status = state
        .engine
        .ask(|reply| Command::PolicyStatus { reply })
        .await?;
    Ok(json(StatusCode::OK, json!(status)))
}

/// `PUT /api/policy`: compile and create the new policy off the engine's thread, then hand it to
/// the engine to replay the live state into and switch to. Answers like `GET /api/policy`.
pub async fn put(
    state: &AppState,
    content_type: Option<&str>,
    query: &str,
    body: LazyBody,
) -> ApiResult {
    let PolicyChange { component, config } = PolicyChange::parse(
        content_type,
        query,
        body.read(super::limits::POLICY_BODY).await?,
    )?;
    let (source, remembered_as, upload) = match component {
        PolicyComponent::Upload(bytes) => (
            PolicySource::Bytes(bytes.clone()),
            "upload".to_string(),
            Some(bytes),
        ),
        PolicyComponent::Builtin(name) => (
            PolicySource::Builtin(name.clone()),
            format!("builtin:{name}"),
            None,
        ),
        // A path is taken as `--policy` takes it, so `builtin:NAME` names a built-in here too.
        PolicyComponent::Path(path) => (PolicySource::parse(&path), path, None),
    };
    let persisted = PersistedPolicy {
        source: remembered_as,
        config: config.clone(),
    };
    let policy = load(source, config).await?;
    let status = state
        .engine
        .ask(|reply| Command::SwapPolicy {
            policy: Box::new(policy),
            persisted,
            upload,
            reply,
        })
        .await?;
    Ok(json(StatusCode::OK, json!(status)))
}

/// Compiles and creates the policy on a blocking thread; a component or configuration that
/// cannot be loaded is the request's fault (400, with the reason).
async fn load(source: PolicySource, config: Value) -> Result<PolicyHost, ApiError> {
    match tokio::task::spawn_blocking(move || PolicyHost::load(source, config)).await {
        Ok(Ok(policy)) => Ok(policy),
        Ok(Err(error)) => Err(ApiError::bad_request(error.to_string())),
        Err(error) => {
            tracing::error!(%error, "policy load task failed");
            Err(ApiError::bad_request("the policy could not be loaded"))
        }
    }
}
