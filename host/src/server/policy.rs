//! The policy in force: `GET /api/policy` reports it, `PUT /api/policy` swaps it.

use super::auth::Caller;
use super::body::LazyBody;
use super::reply::{json, ApiError, ApiResult};
use super::AppState;
use crate::engine::Command;
use crate::policy::{
    max_component_bytes, read_component_file, PolicyError, PolicyHost, PolicySource,
};
use crate::store::PersistedPolicy;
use crate::wire::http::{AuditAction, PolicyChange, PolicyComponent};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
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
///
/// A component named by path is read here (a regular file, within the size limit and the read
/// deadline) and kept in the store with the policy record, like an upload: a restart loads it
/// from the data folder, whatever became of the file.
pub async fn put(
    state: &AppState,
    caller: &Caller,
    content_type: Option<&str>,
    query: &str,
    body: LazyBody,
) -> ApiResult {
    let PolicyChange { component, config } =
        PolicyChange::parse(content_type, query, body.read().await?)?;
    let (component, remembered_as) = match component {
        PolicyComponent::Upload(bytes) => {
            let limit = max_component_bytes();
            if bytes.len() as u64 > limit {
                return Err(too_large(PolicyError::ComponentTooLarge {
                    what: "upload".into(),
                    limit,
                }));
            }
            (Some(bytes), "upload".to_string())
        }
        PolicyComponent::Builtin(name) => (None, format!("builtin:{name}")),
        // A path is taken as `--policy` takes it, so `builtin:NAME` names a built-in here too.
        PolicyComponent::Path(path) => match path.strip_prefix("builtin:") {
            Some(name) => (None, format!("builtin:{name}")),
            None => (Some(read_file(path.clone()).await?), path),
        },
    };
    let source = match &component {
        Some(bytes) => PolicySource::Bytes(bytes.clone()),
        None => PolicySource::parse(&remembered_as),
    };
    let persisted = PersistedPolicy {
        source: remembered_as.clone(),
        config: config.clone(),
        digest: component
            .as_ref()
            .map(|bytes| format!("sha256:{}", hex::encode(Sha256::digest(bytes)))),
    };
    let mut policy = load(source, config).await?;
    policy.set_source_label(match remembered_as.as_str() {
        "upload" => "bytes".to_string(),
        other => other.to_string(),
    });
    let status = state
        .engine
        .ask_audited(
            caller.audit(AuditAction::PolicySwap, remembered_as),
            |reply| Command::SwapPolicy {
                policy: Box::new(policy),
                persisted,
                upload: component,
                reply,
            },
        )
        .await?;
    Ok(json(StatusCode::OK, json!(status)))
}

/// Reads a component file on a blocking thread: a regular file, within the size limit (413
/// past it) and the read deadline.
async fn read_file(path: String) -> Result<Vec<u8>, ApiError> {
    let read = tokio::task::spawn_blocking(move || read_component_file(Path::new(&path))).await;
    match read {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error @ PolicyError::ComponentTooLarge { .. })) => Err(too_large(error)),
        Ok(Err(error)) => Err(ApiError::bad_request(error.to_string())),
        Err(error) => {
            tracing::error!(%error, "policy file read task failed");
            Err(ApiError::bad_request("the policy file could not be read"))
        }
    }
}

fn too_large(error: PolicyError) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
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
