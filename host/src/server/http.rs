//! The HTTP API (`spec/http-api.md`): one routing table, authentication before the body is
//! read, and JSON errors for every refusal. No request can produce a 500 by its shape alone.

use crate::engine::{Command, EngineError, Submitted};
use crate::policy::{PolicyHost, PolicySource};
use crate::server::AppState;
use crate::store::{PersistedPolicy, Role, TaskFilter, TokenRecord};
use crate::wire::http::{self, BadBody, NewTask, PRIORITY_NAMES};
use crate::wire::TaskId;
use serde_json::{json, Value};
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// Tasks a listing returns when the request names no limit, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Every route of the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Health,
    Metrics,
    Dashboard,
    SubmitTask,
    SubmitBatch,
    ListTasks,
    DeadLetter,
    Stats,
    GetTask(String),
    RetryTask(String),
    CancelTask(String),
    ListAgents,
    CreateToken,
    ListTokens,
    RevokeTokens(String),
    GetPolicy,
    PutPolicy,
    /// `GET /ws` without the WebSocket upgrade.
    WsWithoutUpgrade,
}

impl Route {
    pub fn resolve(method: &warp::http::Method, path: &str) -> Option<Route> {
        use warp::http::Method as M;
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let route = match (method, segments.as_slice()) {
            (&M::GET, ["health"]) => Route::Health,
            (&M::GET, ["metrics"]) => Route::Metrics,
            (&M::GET, ["dashboard"]) => Route::Dashboard,
            (&M::GET, ["ws"]) => Route::WsWithoutUpgrade,
            (&M::POST, ["api", "tasks"]) => Route::SubmitTask,
            (&M::GET, ["api", "tasks"]) => Route::ListTasks,
            (&M::POST, ["api", "tasks", "batch"]) => Route::SubmitBatch,
            (&M::GET, ["api", "tasks", "dead-letter"]) => Route::DeadLetter,
            (&M::GET, ["api", "tasks", "stats"]) => Route::Stats,
            (&M::GET, ["api", "tasks", id]) => Route::GetTask(decode(id)),
            (&M::POST, ["api", "tasks", id, "retry"]) => Route::RetryTask(decode(id)),
            (&M::POST, ["api", "tasks", id, "cancel"]) => Route::CancelTask(decode(id)),
            (&M::GET, ["api", "agents"]) => Route::ListAgents,
            (&M::POST, ["admin", "tokens"]) => Route::CreateToken,
            (&M::GET, ["admin", "tokens"]) => Route::ListTokens,
            (&M::DELETE, ["admin", "tokens", agent]) => Route::RevokeTokens(decode(agent)),
            (&M::GET, ["api", "policy"]) => Route::GetPolicy,
            (&M::PUT, ["api", "policy"]) => Route::PutPolicy,
            _ => return None,
        };
        Some(route)
    }

    /// The role a caller needs; `None` for public routes.
    pub fn role(&self) -> Option<Role> {
        match self {
            Route::Health | Route::Metrics | Route::Dashboard | Route::WsWithoutUpgrade => None,
            Route::RetryTask(_)
            | Route::CancelTask(_)
            | Route::CreateToken
            | Route::ListTokens
            | Route::RevokeTokens(_)
            | Route::PutPolicy => Some(Role::Admin),
            _ => Some(Role::Agent),
        }
    }
}

/// Percent-decodes a path segment; an invalid escape is kept as written.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?, 16).ok())
            .flatten();
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request, once routed.
pub struct Request {
    pub route: Route,
    pub authorization: Option<String>,
    pub query: String,
    pub content_type: Option<String>,
    /// Read only after authentication succeeds.
    pub body: crate::server::LazyBody,
}

/// Who is calling.
struct Caller {
    agent_id: String,
}

/// A refusal: the status and the JSON body to answer with. Small, so `Result`s carrying it stay
/// cheap to move around (a whole `Response` is not).
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub Value);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(status, json!({ "error": message.into() }))
    }

    pub fn into_response(self) -> Response {
        reply(self.0, self.1)
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    reply(status, json!({ "error": message.into() }))
}

fn bad_request(BadBody(why): BadBody) -> Response {
    error(StatusCode::BAD_REQUEST, why)
}

pub fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found")
}

fn engine_refusal(failure: EngineError) -> ApiError {
    match failure {
        EngineError::TaskNotFound(id) => ApiError(
            StatusCode::NOT_FOUND,
            json!({"error": "task_not_found", "task_id": id}),
        ),
        EngineError::InvalidState(status) => {
            ApiError::new(StatusCode::CONFLICT, format!("task is {status}"))
        }
        EngineError::PolicyRejected(why) => ApiError::new(StatusCode::BAD_REQUEST, why),
        EngineError::Unavailable => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        }
        EngineError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
    }
}

fn engine_error(failure: EngineError) -> Response {
    engine_refusal(failure).into_response()
}

fn storage_error(error: crate::store::StoreError) -> Response {
    tracing::error!(%error, "read failed");
    engine_error(EngineError::Unavailable)
}

/// Checks the bearer token against the role the route needs.
fn authenticate(
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
        .store
        .read_txn()
        .and_then(|txn| state.store.find_token(&txn, token))
        .map_err(|e| {
            tracing::error!(%e, "token lookup failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        })?
        .ok_or_else(unauthorized)?;
    if needed == Role::Admin && record.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden: this needs an admin token",
        ));
    }
    Ok(Caller {
        agent_id: record.agent_id,
    })
}

pub async fn handle(state: Arc<AppState>, request: Request) -> Response {
    let caller = match request.route.role() {
        None => None,
        Some(role) => match authenticate(&state, request.authorization.as_deref(), role) {
            Ok(caller) => Some(caller),
            Err(refusal) => return refusal.into_response(),
        },
    };
    let caller_id = caller.map(|c| c.agent_id).unwrap_or_default();
    match request.route {
        Route::Health => reply(
            StatusCode::OK,
            json!({"status": "ok", "service": "switchyard", "agents_connected": state.engine.agents_connected()}),
        ),
        Route::Metrics => metrics(&state).await,
        Route::Dashboard => warp::reply::html(include_str!("dashboard.html")).into_response(),
        Route::WsWithoutUpgrade => error(
            StatusCode::BAD_REQUEST,
            "GET /ws must be a WebSocket upgrade request",
        ),
        Route::SubmitTask => {
            let body = match read_json(request.body).await {
                Ok(body) => body,
                Err(refusal) => return refusal.into_response(),
            };
            let task = match NewTask::parse(&body) {
                Ok(task) => task,
                Err(bad) => return bad_request(bad),
            };
            match submit(&state, vec![task], caller_id).await {
                Ok(submitted) => {
                    let s = &submitted[0];
                    reply(
                        StatusCode::CREATED,
                        json!({"status": "queued", "task_id": s.task_id, "priority": s.priority, "created_at": s.created_at}),
                    )
                }
                Err(refusal) => refusal.into_response(),
            }
        }
        Route::SubmitBatch => {
            let body = match read_json(request.body).await {
                Ok(body) => body,
                Err(refusal) => return refusal.into_response(),
            };
            let tasks = match NewTask::parse_batch(&body) {
                Ok(tasks) => tasks,
                Err(bad) => return bad_request(bad),
            };
            match submit(&state, tasks, caller_id).await {
                Ok(submitted) => {
                    let ids: Vec<TaskId> = submitted.iter().map(|s| s.task_id).collect();
                    reply(StatusCode::CREATED, json!({ "task_ids": ids }))
                }
                Err(refusal) => refusal.into_response(),
            }
        }
        Route::ListTasks => match task_filter(&request.query) {
            Ok(filter) => {
                let page = state
                    .store
                    .read_txn()
                    .and_then(|txn| state.store.list_tasks(&txn, &filter));
                match page {
                    Ok(page) => reply(
                        StatusCode::OK,
                        json!({"tasks": page.tasks, "count": page.tasks.len(), "next_cursor": page.next_cursor}),
                    ),
                    Err(e) => storage_error(e),
                }
            }
            Err(bad) => bad_request(bad),
        },
        Route::DeadLetter => {
            let dead = state
                .store
                .read_txn()
                .and_then(|txn| state.store.dead_letter(&txn, MAX_LIMIT));
            match dead {
                Ok((tasks, count)) => {
                    reply(StatusCode::OK, json!({"tasks": tasks, "count": count}))
                }
                Err(e) => storage_error(e),
            }
        }
        Route::Stats => match state
            .store
            .read_txn()
            .and_then(|txn| state.store.stats(&txn))
        {
            Ok(stats) => {
                let by_priority: serde_json::Map<String, Value> = PRIORITY_NAMES
                    .iter()
                    .zip(stats.by_priority)
                    .map(|(name, count)| (name.to_string(), json!(count)))
                    .collect();
                reply(
                    StatusCode::OK,
                    json!({"by_status": stats.by_status, "by_priority": by_priority, "dead_letter": stats.dead_letter}),
                )
            }
            Err(e) => storage_error(e),
        },
        Route::GetTask(id) => {
            let not_found = || {
                reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "task_not_found", "task_id": id}),
                )
            };
            let Some(task_id) = TaskId::parse(&id) else {
                return not_found();
            };
            match state
                .store
                .read_txn()
                .and_then(|txn| state.store.task(&txn, task_id))
            {
                Ok(Some(task)) => reply(StatusCode::OK, json!(task)),
                Ok(None) => not_found(),
                Err(e) => storage_error(e),
            }
        }
        Route::RetryTask(id) => {
            let Some(task) = TaskId::parse(&id) else {
                return reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "task_not_found", "task_id": id}),
                );
            };
            match state
                .engine
                .ask(|reply| Command::RetryDeadLetter { task, reply })
                .await
            {
                Ok(priority) => reply(
                    StatusCode::OK,
                    json!({"status": "requeued", "task_id": task, "priority": priority}),
                ),
                Err(EngineError::InvalidState(status)) => error(
                    StatusCode::CONFLICT,
                    format!("task is {status}; only dead_letter tasks can be retried"),
                ),
                Err(e) => engine_error(e),
            }
        }
        Route::CancelTask(id) => {
            let Some(task) = TaskId::parse(&id) else {
                return reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "task_not_found", "task_id": id}),
                );
            };
            match state
                .engine
                .ask(|reply| Command::Cancel { task, reply })
                .await
            {
                Ok(()) => reply(
                    StatusCode::OK,
                    json!({"status": "cancelled", "task_id": task}),
                ),
                Err(e) => engine_error(e),
            }
        }
        Route::ListAgents => match state
            .engine
            .ask(|reply| Command::ListAgents { reply })
            .await
        {
            Ok(agents) => reply(StatusCode::OK, json!({ "agents": agents })),
            Err(e) => engine_error(e),
        },
        Route::CreateToken => {
            let body = match read_json(request.body).await {
                Ok(body) => body,
                Err(refusal) => return refusal.into_response(),
            };
            let agent_id = match http::token_request(&body) {
                Ok(agent_id) => agent_id,
                Err(bad) => return bad_request(bad),
            };
            let created = state
                .engine
                .ask(|reply| Command::CreateToken {
                    agent_id: agent_id.clone(),
                    reply,
                })
                .await;
            match created {
                Ok(token) => reply(
                    StatusCode::CREATED,
                    json!({"agent_id": agent_id, "token": token}),
                ),
                Err(e) => engine_error(e),
            }
        }
        Route::ListTokens => match state
            .store
            .read_txn()
            .and_then(|txn| state.store.tokens(&txn))
        {
            Ok(tokens) => {
                let tokens: Vec<Value> = tokens
                    .iter()
                    .filter(|t: &&TokenRecord| t.role == Role::Agent)
                    .map(|t| json!({"agent_id": t.agent_id, "token_prefix": t.token_prefix}))
                    .collect();
                reply(StatusCode::OK, json!({ "tokens": tokens }))
            }
            Err(e) => storage_error(e),
        },
        Route::RevokeTokens(agent_id) => {
            let revoked = state
                .engine
                .ask(|reply| Command::RevokeTokens {
                    agent_id: agent_id.clone(),
                    reply,
                })
                .await;
            match revoked {
                Ok(0) => reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "token_not_found", "agent_id": agent_id}),
                ),
                Ok(_) => reply(
                    StatusCode::OK,
                    json!({"status": "revoked", "agent_id": agent_id}),
                ),
                Err(e) => engine_error(e),
            }
        }
        Route::GetPolicy => match state
            .engine
            .ask(|reply| Command::PolicyStatus { reply })
            .await
        {
            Ok(status) => reply(StatusCode::OK, json!(status)),
            Err(e) => engine_error(e),
        },
        Route::PutPolicy => {
            put_policy(&state, request.query, request.content_type, request.body).await
        }
    }
}

async fn submit(
    state: &AppState,
    tasks: Vec<NewTask>,
    submitted_by: String,
) -> Result<Vec<Submitted>, ApiError> {
    state
        .engine
        .ask(|reply| Command::Submit {
            tasks,
            submitted_by,
            reply,
        })
        .await
        .map_err(engine_refusal)
}

async fn read_json(
    body: crate::server::LazyBody,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let bytes = body.read().await?;
    http::object(&bytes).map_err(|BadBody(why)| ApiError::new(StatusCode::BAD_REQUEST, why))
}

fn task_filter(query: &str) -> Result<TaskFilter, BadBody> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| BadBody(format!("query string is not valid: {e}")))?;
    let mut filter = TaskFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (name, value) in pairs {
        match name.as_str() {
            "status" => {
                filter.status = Some(crate::task::TaskStatus::parse(&value).ok_or_else(|| {
                    BadBody(format!(
                        "status must be one of queued, assigned, completed, dead_letter, cancelled, not {value:?}"
                    ))
                })?)
            }
            "priority" => {
                let given = value.parse::<u64>().map(Value::from).unwrap_or(Value::String(value));
                filter.priority = Some(http::priority(&given)?);
            }
            "assigned_to" => filter.assigned_to = Some(value),
            "fairness_key" => filter.fairness_key = Some(value),
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| BadBody(format!("limit must be an integer from 1 to {MAX_LIMIT}")))?
            }
            "cursor" => {
                filter.after = Some(
                    TaskId::parse(&value)
                        .ok_or_else(|| BadBody(format!("cursor must be a task id, not {value:?}")))?,
                )
            }
            _ => {}
        }
    }
    Ok(filter)
}

/// `PUT /api/policy`: compile and create the new policy off the engine's thread, then hand it to
/// the engine to replay the live state into and switch to.
async fn put_policy(
    state: &AppState,
    query: String,
    content_type: Option<String>,
    body: crate::server::LazyBody,
) -> Response {
    let bytes = match body.read().await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal.into_response(),
    };
    let request = if content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/wasm"))
    {
        policy_upload(&query, bytes)
    } else {
        http::object(&bytes).and_then(|body| policy_reference(&body))
    };
    let (source, config, persisted, upload) = match request {
        Ok(request) => request,
        Err(bad) => return bad_request(bad),
    };
    let loaded = tokio::task::spawn_blocking(move || PolicyHost::load(source, config)).await;
    let policy = match loaded {
        Ok(Ok(policy)) => policy,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => {
            tracing::error!(%e, "policy load task failed");
            return error(StatusCode::BAD_REQUEST, "the policy could not be loaded");
        }
    };
    let swapped = state
        .engine
        .ask(|reply| Command::SwapPolicy {
            policy: Box::new(policy),
            persisted,
            upload,
            reply,
        })
        .await;
    match swapped {
        Ok(status) => reply(StatusCode::OK, json!(status)),
        Err(e) => engine_error(e),
    }
}

type PolicyRequest = (PolicySource, Value, PersistedPolicy, Option<Vec<u8>>);

fn policy_upload(query: &str, bytes: Vec<u8>) -> Result<PolicyRequest, BadBody> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| BadBody(format!("query string is not valid: {e}")))?;
    let config = match pairs.iter().find(|(name, _)| name == "config") {
        Some((_, text)) => serde_json::from_str(text)
            .map_err(|e| BadBody(format!("config must be URL-encoded JSON: {e}")))?,
        None => Value::Null,
    };
    let persisted = PersistedPolicy {
        source: "upload".into(),
        config: config.clone(),
    };
    Ok((
        PolicySource::Bytes(bytes.clone()),
        config,
        persisted,
        Some(bytes),
    ))
}

fn policy_reference(body: &serde_json::Map<String, Value>) -> Result<PolicyRequest, BadBody> {
    let config = body.get("config").cloned().unwrap_or(Value::Null);
    let source = match (body.get("path"), body.get("builtin")) {
        (Some(Value::String(path)), None) => path.clone(),
        (None, Some(Value::String(name))) => format!("builtin:{name}"),
        _ => {
            return Err(BadBody(
                "give exactly one of path (a component file on the hub) or builtin (a bundled policy's name)".into(),
            ))
        }
    };
    let persisted = PersistedPolicy {
        source: source.clone(),
        config: config.clone(),
    };
    Ok((PolicySource::parse(&source), config, persisted, None))
}

/// Prometheus text, one metric family after another.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            self.0.push_str(&format!("{name}{labels} {value}\n"));
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help, vec![(String::new(), value)]);
    }

    fn counter(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "counter", help, vec![(String::new(), value)]);
    }
}

async fn metrics(state: &AppState) -> Response {
    let mut out = Exposition::default();
    out.gauge(
        "switchyard_agents_connected",
        "Agents with an identified connection.",
        state.engine.agents_connected() as f64,
    );
    let commits = state.engine.commit_stats();
    out.counter(
        "switchyard_commits_total",
        "Store transactions committed.",
        commits.commits() as f64,
    );
    out.counter(
        "switchyard_commit_failures_total",
        "Store transactions that failed; their requests were refused.",
        commits.failures() as f64,
    );
    out.counter(
        "switchyard_task_writes_total",
        "Task records written by committed transactions.",
        commits.task_writes() as f64,
    );
    out.counter(
        "switchyard_commit_seconds_total",
        "Time spent writing and committing transactions, disk flushes included.",
        commits.seconds(),
    );
    if let Ok(stats) = state
        .store
        .read_txn()
        .and_then(|txn| state.store.stats(&txn))
    {
        let samples = stats
            .by_status
            .iter()
            .map(|(status, count)| (format!("{{status=\"{status}\"}}"), *count as f64))
            .collect();
        out.family("switchyard_tasks", "gauge", "Tasks by status.", samples);
    }
    if let Ok(status) = state
        .engine
        .ask(|reply| Command::PolicyStatus { reply })
        .await
    {
        if let Value::Object(counters) = json!(status)["counters"].clone() {
            for (name, value) in counters {
                if let Some(value) = value.as_f64() {
                    out.counter(
                        &format!("switchyard_policy_{name}"),
                        "Policy counter since the policy was loaded.",
                        value,
                    );
                }
            }
        }
    }
    warp::reply::with_header(out.0, "content-type", "text/plain; version=0.0.4").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::Method;

    #[test]
    fn routes_resolve_with_their_roles() {
        let cases = [
            (Method::GET, "/health", Some(Route::Health), None),
            (
                Method::POST,
                "/api/tasks",
                Some(Route::SubmitTask),
                Some(Role::Agent),
            ),
            (
                Method::GET,
                "/api/tasks/dead-letter",
                Some(Route::DeadLetter),
                Some(Role::Agent),
            ),
            (
                Method::GET,
                "/api/tasks/task-1",
                Some(Route::GetTask("task-1".into())),
                Some(Role::Agent),
            ),
            (
                Method::POST,
                "/api/tasks/x/retry",
                Some(Route::RetryTask("x".into())),
                Some(Role::Admin),
            ),
            (
                Method::DELETE,
                "/admin/tokens/a%20b",
                Some(Route::RevokeTokens("a b".into())),
                Some(Role::Admin),
            ),
            (
                Method::PUT,
                "/api/policy",
                Some(Route::PutPolicy),
                Some(Role::Admin),
            ),
            (Method::GET, "/nope", None, None),
            (Method::DELETE, "/api/tasks", None, None),
        ];
        for (method, path, route, role) in cases {
            let resolved = Route::resolve(&method, path);
            assert_eq!(resolved, route, "{method} {path}");
            assert_eq!(resolved.and_then(|r| r.role()), role, "{method} {path}");
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(decode("a%2Fb"), "a/b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn task_filters_name_their_bad_parameter() {
        assert!(task_filter("status=bogus")
            .unwrap_err()
            .0
            .starts_with("status"));
        assert!(task_filter("limit=0").unwrap_err().0.starts_with("limit"));
        assert!(task_filter("cursor=x").unwrap_err().0.starts_with("cursor"));
        let filter = task_filter("status=queued&priority=high&limit=5").unwrap();
        assert_eq!(filter.priority, Some(1));
        assert_eq!(filter.limit, 5);
    }
}
