//! What a handler answers: a response, or an [`ApiError`] that becomes a JSON one. Handlers
//! return [`ApiResult`], so a refusal anywhere in one flows out with `?`.

use crate::engine::EngineError;
use crate::wire::http::BadRequest;
use serde_json::{json, Value};
use std::fmt::Display;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// What every handler returns.
pub type ApiResult = Result<Response, ApiError>;

/// A JSON answer with its status.
pub fn json(status: StatusCode, body: Value) -> Response {
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// A refusal: the status and the JSON body to answer with. Small, so `Result`s carrying it stay
/// cheap to move around (a whole `Response` is not).
#[derive(Debug, thiserror::Error)]
#[error("{status}: {body}")]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    /// Seconds for a `Retry-After` header, on refusals that end by themselves.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// The usual refusal: `{"error": message}`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// No route has this method and path.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found")
    }

    /// No task has this id; `task_id` is the id as the request gave it.
    pub fn task_not_found(task_id: impl Display) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "task_not_found", "task_id": task_id.to_string()}),
            retry_after: None,
        }
    }

    /// The agent has no token to revoke.
    pub fn token_not_found(agent_id: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "token_not_found", "agent_id": agent_id}),
            retry_after: None,
        }
    }

    /// A size limit refused what was sent: 413, naming what and the limit (`flag` says which
    /// `serve` flag sets it).
    pub fn too_large(what: impl Display, limit: usize, flag: &str) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            body: json!({
                "error": format!("{what} is larger than the limit of {limit} bytes ({flag})"),
                "limit": limit,
            }),
            retry_after: None,
        }
    }

    /// The caller's address failed to authenticate too often and is refused for a while.
    pub fn too_many_auth_failures(retry_after: std::time::Duration) -> ApiError {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({
                "error": "too_many_auth_failures",
                "detail": format!("too many failed authentications from this address; try again in {seconds} s"),
                "retry_after_secs": seconds,
            }),
            retry_after: Some(seconds),
        }
    }

    /// The caller's address holds as many unidentified WebSocket connections as it may.
    pub fn too_many_unidentified(limit: usize) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({
                "error": "too_many_unidentified_connections",
                "detail": format!("this address already has {limit} WebSocket connections that have not identified (--max-unidentified-per-ip)"),
                "limit": limit,
            }),
            retry_after: Some(1),
        }
    }

    /// No tenant has this name.
    pub fn tenant_not_found(tenant: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "tenant_not_found", "tenant": tenant}),
            retry_after: None,
        }
    }

    /// No shadow run is set (`/api/policy/shadow`).
    pub fn no_shadow_policy() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "no_shadow_policy")
    }

    /// The store could not be read or written; the request may succeed later.
    pub fn storage_unavailable() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let mut response = json(self.status, self.body);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// A body or query string that cannot be accepted: 400, naming what is wrong.
impl From<BadRequest> for ApiError {
    fn from(BadRequest(why): BadRequest) -> ApiError {
        ApiError::bad_request(why)
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        match error {
            EngineError::TaskNotFound(id) => ApiError::task_not_found(id),
            EngineError::InvalidState(status) => {
                ApiError::new(StatusCode::CONFLICT, format!("task is {status}"))
            }
            EngineError::PolicyRejected(why) => ApiError::bad_request(why),
            EngineError::Unavailable => ApiError::storage_unavailable(),
            EngineError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            EngineError::LastAdminToken => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            EngineError::TenantExists(ref tenant) => ApiError {
                status: StatusCode::CONFLICT,
                body: json!({"error": "tenant_exists", "tenant": tenant, "detail": error.to_string()}),
                retry_after: None,
            },
            EngineError::TenantNotFound(tenant) => ApiError::tenant_not_found(&tenant),
            EngineError::TenantInUse { ref tenant, .. } => ApiError {
                status: StatusCode::CONFLICT,
                body: json!({"error": "tenant_in_use", "tenant": tenant, "detail": error.to_string()}),
                retry_after: None,
            },
            EngineError::Quota(refusal) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after: refusal.retry_after_secs,
                body: serde_json::to_value(&*refusal).expect("refusals serialize"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TaskId;

    #[test]
    fn engine_errors_keep_their_statuses_and_bodies() {
        let cases = [
            (
                EngineError::TaskNotFound(TaskId(1)),
                StatusCode::NOT_FOUND,
                json!({"error": "task_not_found", "task_id": "task-0000000000000001"}),
            ),
            (
                EngineError::InvalidState("completed"),
                StatusCode::CONFLICT,
                json!({"error": "task is completed"}),
            ),
            (
                EngineError::PolicyRejected("bad config".into()),
                StatusCode::BAD_REQUEST,
                json!({"error": "bad config"}),
            ),
            (
                EngineError::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "storage_unavailable"}),
            ),
            (
                EngineError::Stopped,
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "shutting_down"}),
            ),
        ];
        for (error, status, body) in cases {
            let api_error = ApiError::from(error.clone());
            assert_eq!(api_error.retry_after, None, "{error:?}");
            assert_eq!(
                (api_error.status, api_error.body),
                (status, body),
                "{error:?}"
            );
        }
    }

    #[test]
    fn tenant_errors_name_the_tenant_and_rate_limits_say_when_to_retry() {
        use crate::wire::tenant::{QuotaCode, QuotaLimit, QuotaRefusal};
        let missing = ApiError::from(EngineError::TenantNotFound("t".into()));
        assert_eq!(
            (missing.status, missing.body),
            (
                StatusCode::NOT_FOUND,
                json!({"error": "tenant_not_found", "tenant": "t"})
            )
        );
        let in_use = ApiError::from(EngineError::TenantInUse {
            tenant: "t".into(),
            why: "2 tokens belong to it".into(),
        });
        assert_eq!(in_use.status, StatusCode::CONFLICT);
        assert_eq!(in_use.body["error"], "tenant_in_use");
        assert!(in_use.body["detail"]
            .as_str()
            .unwrap()
            .ends_with("2 tokens belong to it"));
        let limited = ApiError::from(EngineError::Quota(Box::new(QuotaRefusal {
            error: QuotaCode::RateLimited,
            tenant: "t".into(),
            limit: QuotaLimit::SubmitRate,
            max: serde_json::Number::from_f64(2.0).unwrap(),
            current: 0,
            requested: 1,
            retry_after_secs: Some(1),
            detail: "slow down".into(),
        })));
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.retry_after, Some(1));
        assert_eq!(
            (&limited.body["error"], &limited.body["limit"]),
            (&json!("rate_limited"), &json!("submit_rate"))
        );
    }

    #[test]
    fn a_bad_request_is_400_with_its_message() {
        let api_error = ApiError::from(BadRequest("limit must be ...".into()));
        assert_eq!(api_error.status, StatusCode::BAD_REQUEST);
        assert_eq!(api_error.body, json!({"error": "limit must be ..."}));
    }
}
