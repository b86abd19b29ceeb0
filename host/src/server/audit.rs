//! `GET /admin/audit`: the audit log of admin actions, newest first, a page at a time.

use super::reply::{json, ApiResult};
use super::AppState;
use crate::wire::http::AuditQuery;
use serde_json::json;
use warp::http::StatusCode;

pub async fn list(state: &AppState, query: &str) -> ApiResult {
    let query = AuditQuery::parse(query)?;
    let page = state.read(|store, txn| store.audit_page(txn, query.cursor, query.limit))?;
    Ok(json(
        StatusCode::OK,
        json!({"records": page.records, "count": page.records.len(), "next_cursor": page.next_cursor}),
    ))
}
