//! Bearer tokens: who is calling, and whether their role lets them use a route and see a task.

use super::reply::ApiError;
use super::AppState;
use crate::store::Role;
use crate::task::Task;
use crate::wire::http::{AuditAction, AuditRecord};
use warp::http::StatusCode;

/// Who is calling, as its token says. Every handler decides from this what the caller may do
/// and see: an admin everything, a client or agent its own tenant's tasks (and an agent the
/// tasks it is or was assigned too).
pub struct Caller {
    /// The agent the token belongs to (`admin` for the admin token).
    pub agent_id: String,
    /// The token's first characters, as listings show them.
    pub token_prefix: String,
    pub role: Role,
    /// The tenant its submissions belong to and its reads are limited to (unless admin).
    pub tenant: String,
}

impl Caller {
    /// The caller of a public route: no token, so it sees no task.
    pub fn anonymous() -> Caller {
        Caller {
            agent_id: String::new(),
            token_prefix: String::new(),
            role: Role::Client,
            tenant: String::new(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The tenant a listing is limited to: the caller's own, unless it is an admin (`None`:
    /// every tenant, or the one `?tenant=` names).
    pub fn scope(&self) -> Option<&str> {
        (!self.is_admin()).then_some(self.tenant.as_str())
    }

    /// Whether the caller may read `task`. Anyone else gets the 404 an unknown id gets, so a
    /// task's existence is not revealed outside its tenant.
    pub fn sees(&self, task: &Task) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Client => task.tenant == self.tenant,
            Role::Agent => task.tenant == self.tenant || self.was_assigned(task),
        }
    }

    /// Whether the caller holds `task` or its history records an assignment to it.
    fn was_assigned(&self, task: &Task) -> bool {
        let mine = |agent: &Option<String>| agent.as_deref() == Some(self.agent_id.as_str());
        mine(&task.assigned_to)
            || task
                .history
                .iter()
                .any(|entry| entry.details.agent_id.as_ref().is_some_and(mine))
    }

    /// The audit record of `action` on `target` by this caller (the engine stamps the time).
    pub fn audit(&self, action: AuditAction, target: impl Into<String>) -> AuditRecord {
        AuditRecord {
            id: 0,
            at: 0,
            actor: self.agent_id.clone(),
            token_prefix: self.token_prefix.clone(),
            action,
            target: target.into(),
        }
    }
}

/// Checks the `Authorization: Bearer <token>` header against the roles a route allows: 401
/// without a known token, 403 when the token's role is not among them.
pub fn authenticate(
    state: &AppState,
    authorization: Option<&str>,
    allowed: &[Role],
) -> Result<Caller, ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized");
    let token = authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(unauthorized)?;
    let record = state
        .read(|store, txn| store.find_token(txn, token))?
        .ok_or_else(unauthorized)?;
    if !allowed.contains(&record.role) {
        return Err(forbidden(record.role, allowed));
    }
    Ok(Caller {
        agent_id: record.agent_id,
        token_prefix: record.token_prefix,
        role: record.role,
        tenant: record.tenant,
    })
}

/// The 403 of a token whose role a route does not allow, naming the roles it does.
fn forbidden(role: Role, allowed: &[Role]) -> ApiError {
    let message = match allowed {
        [Role::Admin] => "forbidden: this needs an admin token".to_owned(),
        _ => {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            format!(
                "forbidden: this needs a token of role {}, not {role}",
                names.join(" or ")
            )
        }
    };
    ApiError::new(StatusCode::FORBIDDEN, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Task;
    use crate::wire::http::NewTask;
    use crate::wire::TaskId;

    fn caller(role: Role, agent_id: &str, tenant: &str) -> Caller {
        Caller {
            agent_id: agent_id.into(),
            token_prefix: String::new(),
            role,
            tenant: tenant.into(),
        }
    }

    #[test]
    fn tenants_limit_what_clients_and_agents_see() {
        let mut task = Task::new(TaskId(1), NewTask::with_description("d"), "c", "b", 1);
        assert!(caller(Role::Admin, "admin", "default").sees(&task));
        assert!(caller(Role::Client, "c", "b").sees(&task));
        assert!(!caller(Role::Client, "c", "a").sees(&task));
        let agent = caller(Role::Agent, "w1", "a");
        assert!(!agent.sees(&task), "never assigned");
        task.assign("w1", 2);
        assert!(agent.sees(&task), "assigned");
        task.fail("boom", 3);
        task.assign("w2", 4);
        assert!(agent.sees(&task), "was assigned");
        assert!(!caller(Role::Agent, "w3", "a").sees(&task));
        assert!(!Caller::anonymous().sees(&task));
    }

    #[test]
    fn forbidden_names_the_roles_a_route_allows() {
        let error = forbidden(Role::Agent, &[Role::Admin]);
        assert_eq!(error.body["error"], "forbidden: this needs an admin token");
        let error = forbidden(Role::Agent, &[Role::Client, Role::Admin]);
        assert_eq!(
            error.body["error"],
            "forbidden: this needs a token of role client or admin, not agent"
        );
    }
}
