//! The routing table: every method and path the API answers, and the roles that may use it.

use crate::store::Role;
use percent_encoding::percent_decode_str;
use warp::http::Method;

/// Every route of the API. Path parameters are percent-decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Health,
    Metrics,
    Dashboard,
    /// `GET /dashboard/<file>`: a script or style of the dashboard.
    DashboardAsset(String),
    SubmitTask,
    SubmitBatch,
    ListTasks,
    DeadLetter,
    Stats,
    GetTask(String),
    RetryTask(String),
    CancelTask(String),
    RequeueTask(String),
    ListAgents,
    /// `GET /api/events`: the event stream.
    Events,
    CreateToken,
    ListTokens,
    RevokeTokens(String),
    RotateAdminToken,
    AuditLog,
    CreateTenant,
    ListTenants,
    UpdateTenant(String),
    DeleteTenant(String),
    GetPolicy,
    PutPolicy,
    /// `GET /api/policy/builtins`: the policies built into this binary.
    PolicyBuiltins,
    GetShadow,
    PutShadow,
    DeleteShadow,
    /// `GET /ws` without the WebSocket upgrade.
    WsWithoutUpgrade,
}

impl Route {
    /// The route for a method and a path as the request line gave it (still percent-encoded);
    /// `None` when there is none.
    pub fn resolve(method: &Method, path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let route = match (method, segments.as_slice()) {
            (&Method::GET, ["health"]) => Route::Health,
            (&Method::GET, ["metrics"]) => Route::Metrics,
            (&Method::GET, ["dashboard"]) => Route::Dashboard,
            (&Method::GET, ["dashboard", file]) => Route::DashboardAsset(decode(file)),
            (&Method::GET, ["ws"]) => Route::WsWithoutUpgrade,
            (&Method::POST, ["api", "tasks"]) => Route::SubmitTask,
            (&Method::GET, ["api", "tasks"]) => Route::ListTasks,
            (&Method::POST, ["api", "tasks", "batch"]) => Route::SubmitBatch,
            (&Method::GET, ["api", "tasks", "dead-letter"]) => Route::DeadLetter,
            (&Method::GET, ["api", "tasks", "stats"]) => Route::Stats,
            (&Method::GET, ["api", "tasks", id]) => Route::GetTask(decode(id)),
            (&Method::POST, ["api", "tasks", id, "retry"]) => Route::RetryTask(decode(id)),
            (&Method::POST, ["api", "tasks", id, "cancel"]) => Route::CancelTask(decode(id)),
            (&Method::POST, ["api", "tasks", id, "requeue"]) => Route::RequeueTask(decode(id)),
            (&Method::GET, ["api", "agents"]) => Route::ListAgents,
            (&Method::GET, ["api", "events"]) => Route::Events,
            (&Method::POST, ["admin", "tokens"]) => Route::CreateToken,
            (&Method::GET, ["admin", "tokens"]) => Route::ListTokens,
            (&Method::DELETE, ["admin", "tokens", agent]) => Route::RevokeTokens(decode(agent)),
            (&Method::POST, ["admin", "tokens", "rotate-admin"]) => Route::RotateAdminToken,
            (&Method::GET, ["admin", "audit"]) => Route::AuditLog,
            (&Method::POST, ["admin", "tenants"]) => Route::CreateTenant,
            (&Method::GET, ["admin", "tenants"]) => Route::ListTenants,
            (&Method::PATCH, ["admin", "tenants", name]) => Route::UpdateTenant(decode(name)),
            (&Method::DELETE, ["admin", "tenants", name]) => Route::DeleteTenant(decode(name)),
            (&Method::GET, ["api", "policy"]) => Route::GetPolicy,
            (&Method::PUT, ["api", "policy"]) => Route::PutPolicy,
            (&Method::GET, ["api", "policy", "builtins"]) => Route::PolicyBuiltins,
            (&Method::GET, ["api", "policy", "shadow"]) => Route::GetShadow,
            (&Method::PUT, ["api", "policy", "shadow"]) => Route::PutShadow,
            (&Method::DELETE, ["api", "policy", "shadow"]) => Route::DeleteShadow,
            _ => return None,
        };
        Some(route)
    }

    /// The roles whose tokens may use the route; `None` for public routes. What a client or
    /// agent then sees is limited to its tenant by the handler (docs/http-api.md has the table).
    pub fn roles(&self) -> Option<&'static [Role]> {
        const ANY: &[Role] = &[Role::Client, Role::Agent, Role::Admin];
        const CLIENT_OR_ADMIN: &[Role] = &[Role::Client, Role::Admin];
        const AGENT_OR_ADMIN: &[Role] = &[Role::Agent, Role::Admin];
        const ADMIN: &[Role] = &[Role::Admin];
        match self {
            Route::Health
            | Route::Metrics
            | Route::Dashboard
            | Route::DashboardAsset(_)
            | Route::WsWithoutUpgrade => None,
            Route::SubmitTask
            | Route::SubmitBatch
            | Route::ListTasks
            | Route::DeadLetter
            | Route::Stats
            | Route::GetTask(_)
            | Route::Events
            | Route::GetPolicy
            | Route::PolicyBuiltins => Some(ANY),
            Route::RetryTask(_) | Route::CancelTask(_) => Some(CLIENT_OR_ADMIN),
            // The fleet: which agents there are and what they hold. Clients submit work; they
            // have no business with the agents that run it.
            Route::ListAgents => Some(AGENT_OR_ADMIN),
            // A shadow report's shares name the fairness keys of every tenant.
            Route::GetShadow => Some(AGENT_OR_ADMIN),
            Route::RequeueTask(_)
            | Route::CreateToken
            | Route::ListTokens
            | Route::RevokeTokens(_)
            | Route::RotateAdminToken
            | Route::AuditLog
            | Route::CreateTenant
            | Route::ListTenants
            | Route::UpdateTenant(_)
            | Route::DeleteTenant(_)
            | Route::PutPolicy
            | Route::PutShadow
            | Route::DeleteShadow => Some(ADMIN),
        }
    }
}

/// Percent-decodes a path segment. An invalid escape is kept as written, and bytes that are not
/// UTF-8 once decoded become U+FFFD: a segment always decodes to some text, which then names
/// nothing if it is wrong.
fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_with_their_roles() {
        use Role::{Admin, Agent, Client};
        let any: &[Role] = &[Client, Agent, Admin];
        type Case<'a> = (Method, &'a str, Option<Route>, Option<&'a [Role]>);
        let cases: [Case; 22] = [
            (Method::GET, "/health", Some(Route::Health), None),
            (Method::GET, "/api/events", Some(Route::Events), Some(any)),
            (
                Method::POST,
                "/api/tasks",
                Some(Route::SubmitTask),
                Some(any),
            ),
            (
                Method::GET,
                "/api/tasks/dead-letter",
                Some(Route::DeadLetter),
                Some(any),
            ),
            (
                Method::GET,
                "/api/tasks/task-1",
                Some(Route::GetTask("task-1".into())),
                Some(any),
            ),
            (
                Method::POST,
                "/api/tasks/x/retry",
                Some(Route::RetryTask("x".into())),
                Some(&[Client, Admin]),
            ),
            (
                Method::POST,
                "/api/tasks/x/requeue",
                Some(Route::RequeueTask("x".into())),
                Some(&[Admin]),
            ),
            (
                Method::GET,
                "/api/agents",
                Some(Route::ListAgents),
                Some(&[Agent, Admin]),
            ),
            (
                Method::DELETE,
                "/admin/tokens/a%20b",
                Some(Route::RevokeTokens("a b".into())),
                Some(&[Admin]),
            ),
            (
                Method::PUT,
                "/api/policy",
                Some(Route::PutPolicy),
                Some(&[Admin]),
            ),
            (
                Method::POST,
                "/admin/tokens/rotate-admin",
                Some(Route::RotateAdminToken),
                Some(&[Admin]),
            ),
            (
                Method::GET,
                "/admin/audit",
                Some(Route::AuditLog),
                Some(&[Admin]),
            ),
            (
                Method::GET,
                "/api/policy/shadow",
                Some(Route::GetShadow),
                Some(&[Agent, Admin]),
            ),
            (
                Method::PUT,
                "/api/policy/shadow",
                Some(Route::PutShadow),
                Some(&[Admin]),
            ),
            (
                Method::PATCH,
                "/admin/tenants/team-a",
                Some(Route::UpdateTenant("team-a".into())),
                Some(&[Admin]),
            ),
            (
                Method::GET,
                "/admin/tenants",
                Some(Route::ListTenants),
                Some(&[Admin]),
            ),
            (Method::PUT, "/admin/tenants/a", None, None),
            (
                Method::GET,
                "/api/policy/builtins",
                Some(Route::PolicyBuiltins),
                Some(any),
            ),
            (
                Method::GET,
                "/dashboard/app.js",
                Some(Route::DashboardAsset("app.js".into())),
                None,
            ),
            (Method::POST, "/api/policy/shadow", None, None),
            (Method::GET, "/nope", None, None),
            (Method::DELETE, "/api/tasks", None, None),
        ];
        for (method, path, route, roles) in cases {
            let resolved = Route::resolve(&method, path);
            assert_eq!(resolved, route, "{method} {path}");
            assert_eq!(resolved.and_then(|r| r.roles()), roles, "{method} {path}");
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(decode("a%2Fb"), "a/b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%%41"), "%A");
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(decode("%FF"), "\u{FFFD}");
    }
}
