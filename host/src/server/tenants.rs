//! The admin's `/admin/tenants`: tenants are made, changed and deleted through the engine (so
//! each change is durable before it is answered, and in the audit log), and listed with their
//! live counts.

use super::auth::Caller;
use super::body::LazyBody;
use super::reply::{json, ApiError, ApiResult};
use super::AppState;
use crate::engine::Command;
use crate::wire::http::AuditAction;
use crate::wire::tenant::{valid_tenant_name, NewTenant, TenantPatch};
use serde_json::json;
use warp::http::StatusCode;

/// `POST /admin/tenants`: 201 with the tenant; 409 if the name is taken.
pub async fn create(state: &AppState, caller: &Caller, body: LazyBody) -> ApiResult {
    let tenant = NewTenant::parse(&body.read_object(super::limits::SMALL_BODY).await?)?;
    let name = tenant.name.clone();
    let created = state
        .engine
        .ask_audited(caller.audit(AuditAction::TenantCreate, name), |reply| {
            Command::CreateTenant { tenant, reply }
        })
        .await?;
    Ok(json(StatusCode::CREATED, json!(created)))
}

/// `GET /admin/tenants`: every tenant by name, with its queued and assigned counts and its
/// share of the tasks assigned right now.
pub async fn list(state: &AppState) -> ApiResult {
    let tenants = state
        .engine
        .ask(|reply| Command::ListTenants { reply })
        .await?;
    Ok(json(StatusCode::OK, json!({ "tenants": tenants })))
}

/// `PATCH /admin/tenants/:name`: any of weight, max_queued, submit_rate (`null` clears a
/// quota); answers the tenant as it is now.
pub async fn update(state: &AppState, caller: &Caller, name: String, body: LazyBody) -> ApiResult {
    // A name that cannot be a tenant's names none: the same 404 as an unknown one.
    if !valid_tenant_name(&name) {
        return Err(ApiError::tenant_not_found(&name));
    }
    let patch = TenantPatch::parse(&body.read_object(super::limits::SMALL_BODY).await?)?;
    let target = name.clone();
    let tenant = state
        .engine
        .ask_audited(caller.audit(AuditAction::TenantUpdate, target), |reply| {
            Command::UpdateTenant { name, patch, reply }
        })
        .await?;
    Ok(json(StatusCode::OK, json!(tenant)))
}

/// `DELETE /admin/tenants/:name`: 409 while tokens or live tasks belong to it, and always
/// for `default`.
pub async fn delete(state: &AppState, caller: &Caller, name: String) -> ApiResult {
    if !valid_tenant_name(&name) {
        return Err(ApiError::tenant_not_found(&name));
    }
    let target = name.clone();
    state
        .engine
        .ask_audited(caller.audit(AuditAction::TenantDelete, target), |reply| {
            Command::DeleteTenant {
                name: name.clone(),
                reply,
            }
        })
        .await?;
    Ok(json(
        StatusCode::OK,
        json!({"status": "deleted", "tenant": name}),
    ))
}
