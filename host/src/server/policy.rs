//! The policy in force: `GET /api/policy` reports it, `PUT /api/policy` swaps it. A shadow
//! run beside it: `PUT /api/policy/shadow` starts one, `GET` reports it, `DELETE` ends it.

use super::auth::Caller;
use super::body::LazyBody;
use super::reply::{json, ApiError, ApiResult};
use super::AppState;
use crate::engine::shadow::ShadowReport;
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

/// `GET /api/policy/builtins`: the names a swap may give as `{"builtin": NAME}`, as
/// `switchyard policies` lists them.
pub async fn builtins() -> ApiResult {
    let names: Vec<&str> = crate::policy::builtin_names().collect();
    Ok(json(StatusCode::OK, json!({ "builtins": names })))
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
    let Requested {
        source,
        remembered_as,
        bytes: component,
        config,
    } = requested(content_type, query, body).await?;
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

/// `PUT /api/policy/shadow`: the same body as `PUT /api/policy`; the policy is loaded off the
/// engine's thread, then the engine starts a shadow run of it (replacing any run set).
pub async fn put_shadow(
    state: &AppState,
    content_type: Option<&str>,
    query: &str,
    body: LazyBody,
) -> ApiResult {
    let Requested {
        source,
        remembered_as: label,
        config,
        ..
    } = requested(content_type, query, body).await?;
    let policy = load(source, config).await?;
    let report = state
        .engine
        .ask(|reply| Command::StartShadow {
            policy: Box::new(policy),
            source: label,
            reply,
        })
        .await?;
    Ok(json(StatusCode::OK, json!(report)))
}

/// `GET /api/policy/shadow`: the shadow run's report, 404 when none is set.
pub async fn get_shadow(state: &AppState) -> ApiResult {
    let report = state
        .engine
        .ask(|reply| Command::ShadowReport { reply })
        .await?;
    shadow_answer(report)
}

/// `DELETE /api/policy/shadow`: ends the run at once and answers its final report; 404 when
/// none is set.
pub async fn delete_shadow(state: &AppState) -> ApiResult {
    let report = state
        .engine
        .ask(|reply| Command::StopShadow { reply })
        .await?;
    shadow_answer(report)
}

fn shadow_answer(report: Option<ShadowReport>) -> ApiResult {
    match report {
        Some(report) => Ok(json(StatusCode::OK, json!(report))),
        None => Err(ApiError::no_shadow_policy()),
    }
}

/// What a `PUT` of a policy (in force or shadow) asks for, its component read and bounded.
struct Requested {
    source: PolicySource,
    /// `upload`, `builtin:NAME` or the path.
    remembered_as: String,
    /// The component's bytes: an upload, or a file read here.
    bytes: Option<Vec<u8>>,
    config: Value,
}

/// Reads and parses the body of a `PUT` of a policy, and the component it names.
async fn requested(
    content_type: Option<&str>,
    query: &str,
    body: LazyBody,
) -> Result<Requested, ApiError> {
    let PolicyChange { component, config } = PolicyChange::parse(
        content_type,
        query,
        body.read(super::limits::POLICY_BODY).await?,
    )?;
    let (source, remembered_as, bytes) = component_of(component).await?;
    Ok(Requested {
        source,
        remembered_as,
        bytes,
        config,
    })
}

/// Where a requested component comes from: the source to load, how it is remembered and
/// reported (`upload`, `builtin:NAME` or the path), and the component's bytes (an upload, or a
/// file read here: a regular file, within the size limit and the read deadline).
async fn component_of(
    component: PolicyComponent,
) -> Result<(PolicySource, String, Option<Vec<u8>>), ApiError> {
    let (bytes, remembered_as) = match component {
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
    let source = match &bytes {
        Some(bytes) => PolicySource::Bytes(bytes.clone()),
        None => PolicySource::parse(&remembered_as),
    };
    Ok((source, remembered_as, bytes))
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
    super::refusals::refused(super::refusals::Limit::TooLarge);
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
