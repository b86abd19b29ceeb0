//! The HTTP API (`spec/http-api.md`): a request is routed, its caller authenticated (before its
//! body is read), and it goes to the one handler of its route. Every refusal is a JSON
//! [`ApiError`]; no request can produce a 500 by its shape alone.
//!
//! The handlers live by concept: [`tasks`], [`agents`] (and tokens), [`policy`], [`metrics`],
//! and the [`public`] odds and ends.

use super::auth::{authenticate, Caller};
use super::body::LazyBody;
use super::reply::{ApiError, ApiResult};
use super::routes::Route;
use super::{agents, audit, dashboard, events, metrics, policy, public, tasks, tenants, AppState};
use warp::http::Method;
use warp::reply::Response;
use warp::Reply;

/// A request as warp hands it over, not routed yet.
pub struct Request {
    pub method: Method,
    /// As the request line gave it, still percent-encoded.
    pub path: String,
    pub authorization: Option<String>,
    /// The query string without the `?`; empty when there is none.
    pub query: String,
    pub content_type: Option<String>,
    /// `Last-Event-ID`: where `GET /api/events` resumes.
    pub last_event_id: Option<String>,
    /// The caller's address (for the auth throttle); always known when served by `listen`.
    pub peer: Option<std::net::SocketAddr>,
    /// Read only after authentication succeeds.
    pub body: LazyBody,
}

/// [`authenticate`], through the auth throttle: a locked-out address is refused (429) before its
/// token is looked at, and a failure is counted and answered late.
async fn authenticate_throttled(
    state: &AppState,
    authorization: Option<&str>,
    ip: Option<std::net::IpAddr>,
    roles: &[crate::store::Role],
) -> Result<super::auth::Caller, ApiError> {
    if let Some(ip) = ip {
        state
            .throttle
            .check(ip)
            .map_err(ApiError::too_many_auth_failures)?;
    }
    let result = authenticate(state, authorization, roles);
    // Only a token that was tried and is unknown counts: a request without one guesses nothing.
    let guessed = authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| !token.trim().is_empty());
    if let (Err(error), Some(ip), true) = (&result, ip, guessed) {
        if error.status == warp::http::StatusCode::UNAUTHORIZED {
            tokio::time::sleep(state.throttle.failed(ip)).await;
        }
    }
    result
}

/// Answers a request: unknown routes get 404 whoever asks, then the route's roles are checked,
/// then its handler runs.
pub async fn handle(state: &AppState, request: Request) -> Response {
    answer(state, request)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn answer(state: &AppState, request: Request) -> ApiResult {
    let route = Route::resolve(&request.method, &request.path).ok_or_else(ApiError::not_found)?;
    let caller = match route.roles() {
        Some(roles) => {
            let ip = request.peer.map(|peer| peer.ip());
            let authorization = request.authorization.as_deref();
            authenticate_throttled(state, authorization, ip, roles).await?
        }
        // Every route that records who asked or limits what it shows needs a role, so this
        // caller is never asked.
        None => Caller::anonymous(),
    };
    let body = request.body;
    match route {
        Route::Health => public::health(state).await,
        Route::Metrics => metrics::metrics(state).await,
        Route::Dashboard => dashboard::page().await,
        Route::DashboardAsset(file) => dashboard::asset(&file).await,
        Route::WsWithoutUpgrade => public::ws_without_upgrade().await,
        Route::SubmitTask => tasks::submit(state, &caller, body).await,
        Route::SubmitBatch => tasks::submit_batch(state, &caller, body).await,
        Route::ListTasks => tasks::list(state, &caller, &request.query).await,
        Route::DeadLetter => tasks::dead_letter(state, &caller, &request.query).await,
        Route::Stats => tasks::stats(state, &caller, &request.query).await,
        Route::GetTask(id) => tasks::get(state, &caller, &id).await,
        Route::RetryTask(id) => tasks::retry(state, &caller, &id).await,
        Route::CancelTask(id) => tasks::cancel(state, &caller, &id).await,
        Route::RequeueTask(id) => tasks::requeue(state, &caller, &id).await,
        Route::ListAgents => agents::list(state).await,
        Route::Events => {
            let last_event_id = request.last_event_id.as_deref();
            events::stream(state, &caller, &request.query, last_event_id).await
        }
        Route::CreateToken => agents::create_token(state, &caller, body).await,
        Route::ListTokens => agents::list_tokens(state).await,
        Route::RevokeTokens(agent_id) => {
            agents::revoke_tokens(state, &caller, agent_id, &request.query).await
        }
        Route::RotateAdminToken => agents::rotate_admin(state, &caller).await,
        Route::AuditLog => audit::list(state, &request.query).await,
        Route::CreateTenant => tenants::create(state, &caller, body).await,
        Route::ListTenants => tenants::list(state).await,
        Route::UpdateTenant(name) => tenants::update(state, &caller, name, body).await,
        Route::DeleteTenant(name) => tenants::delete(state, &caller, name).await,
        Route::GetPolicy => policy::get(state).await,
        Route::PolicyBuiltins => policy::builtins().await,
        Route::PutPolicy => {
            let content_type = request.content_type.as_deref();
            policy::put(state, &caller, content_type, &request.query, body).await
        }
        Route::GetShadow => policy::get_shadow(state).await,
        Route::PutShadow => {
            let content_type = request.content_type.as_deref();
            policy::put_shadow(state, content_type, &request.query, body).await
        }
        Route::DeleteShadow => policy::delete_shadow(state).await,
    }
}
