//! The task routes under `/api/tasks`: submitting, listing and reading tasks (from the store),
//! and retry, cancel and requeue (through the engine). A client or agent sees only its
//! tenant's tasks (an agent also those it is or was assigned): any other task answers exactly
//! as an unknown id does, so its existence is not revealed.

use super::auth::Caller;
use super::body::LazyBody;
use super::reply::{json, ApiError, ApiResult};
use super::AppState;
use crate::engine::{Command, EngineError, Submitted};
use crate::store::TaskFilter;
use crate::wire::http::{tenant_query, AuditAction, NewTask, TaskQuery, PRIORITY_NAMES};
use crate::wire::{now_ms, TaskId};
use serde_json::{json, Map, Value};
use warp::http::StatusCode;

/// Dead-lettered tasks `GET /api/tasks/dead-letter` lists at most: as many as one page of
/// `GET /api/tasks` may hold (the answer's `count` still counts them all).
const DEAD_LETTER_LIMIT: usize = TaskQuery::MAX_LIMIT;

/// The task a path names. Text that cannot be a task id names no task, so it gets the same 404
/// as an id no task has.
fn task_id(text: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(text).ok_or_else(|| ApiError::task_not_found(text))
}

/// `POST /api/tasks`: one task.
pub async fn submit(state: &AppState, caller: &Caller, body: LazyBody) -> ApiResult {
    let task = NewTask::parse(&body.read_object(state.limits.task_body()).await?)?;
    check(state, &task, now_ms()).map_err(|refusal| refusal.naming(None))?;
    let submitted = submit_all(state, vec![task], caller).await?;
    // The engine answers one entry per task submitted.
    let Submitted {
        task_id,
        priority,
        created_at,
    } = &submitted[0];
    Ok(json(
        StatusCode::CREATED,
        json!({"status": "queued", "task_id": task_id, "priority": priority, "created_at": created_at}),
    ))
}

/// `POST /api/tasks/batch`: all the tasks or none.
pub async fn submit_batch(state: &AppState, caller: &Caller, body: LazyBody) -> ApiResult {
    let tasks = NewTask::parse_batch(&body.read_object(state.limits.batch_body()).await?)?;
    let now = now_ms();
    for (index, task) in tasks.iter().enumerate() {
        check(state, task, now).map_err(|refusal| refusal.naming(Some(index)))?;
    }
    let submitted = submit_all(state, tasks, caller).await?;
    let task_ids: Vec<TaskId> = submitted.iter().map(|s| s.task_id).collect();
    Ok(json(StatusCode::CREATED, json!({ "task_ids": task_ids })))
}

/// Why a task that parsed is still refused.
enum Unacceptable {
    TooLarge(usize),
    Deadline(String),
}

impl Unacceptable {
    /// The answer, naming the task's place in a batch if it has one.
    fn naming(self, index: Option<usize>) -> ApiError {
        let place = index.map_or(String::new(), |index| format!("tasks[{index}]: "));
        match self {
            Unacceptable::TooLarge(limit) => ApiError::too_large(
                format!("{place}the task (description, metadata, needed_capabilities and fairness_key as JSON)"),
                limit,
                "--max-task-bytes",
            ),
            Unacceptable::Deadline(why) => ApiError::bad_request(format!("{place}{why}")),
        }
    }
}

/// The checks a parsed task still has to pass: the size limit (so its `task_assign` fits
/// what agents accept) and a deadline that has not passed.
fn check(state: &AppState, task: &NewTask, now: u64) -> Result<(), Unacceptable> {
    let limit = state.limits.max_task_bytes;
    if task.encoded_size() > limit {
        return Err(Unacceptable::TooLarge(limit));
    }
    task.check_complete_by(now)
        .map_err(|crate::wire::http::BadRequest(why)| Unacceptable::Deadline(why))
}

/// Submits `tasks` as the caller's, in the caller's tenant.
async fn submit_all(
    state: &AppState,
    tasks: Vec<NewTask>,
    caller: &Caller,
) -> Result<Vec<Submitted>, EngineError> {
    state
        .engine
        .ask(|reply| Command::Submit {
            tasks,
            submitted_by: caller.agent_id.clone(),
            tenant: caller.tenant.clone(),
            reply,
        })
        .await
}

/// The tenant a listing reads: the one `?tenant=` names for an admin (none: all of them), the
/// caller's own for anyone else, who may name only that one.
fn listing_tenant(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (caller.scope(), asked) {
        (None, asked) => Ok(asked),
        (Some(own), Some(asked)) if asked != own => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: a {} token reads only its own tenant's tasks ({own:?})",
                caller.role
            ),
        )),
        (Some(own), _) => Ok(Some(own.to_owned())),
    }
}

/// Listings read and encoded at once, at most; more wait their turn. A listing page is up to
/// `--max-page-bytes` of tasks, held once decoded and once as text: this bounds the memory
/// all listings together can take, whatever the number of callers.
const CONCURRENT_LISTINGS: usize = 4;
static LISTINGS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_LISTINGS);

/// Runs a listing's read and encoding on the blocking pool, [`CONCURRENT_LISTINGS`] at most at
/// once: decoding and encoding megabytes of tasks would otherwise hold an async worker thread,
/// and with it every request queued behind it, `GET /health` included.
async fn listing(
    state: &AppState,
    encode: impl FnOnce(&crate::store::Store) -> Result<Vec<u8>, ApiError> + Send + 'static,
) -> ApiResult {
    let _turn = LISTINGS
        .acquire()
        .await
        .map_err(|_| ApiError::storage_unavailable())?;
    let store = state.store.clone();
    let body = tokio::task::spawn_blocking(move || encode(&store))
        .await
        .map_err(|_| ApiError::storage_unavailable())??;
    let mut response = warp::reply::Response::new(body.into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `GET /api/tasks`: one page of tasks in submission order, filtered by the query.
pub async fn list(state: &AppState, caller: &Caller, query: &str) -> ApiResult {
    let mut query = TaskQuery::parse(query)?;
    query.tenant = listing_tenant(caller, query.tenant.take())?;
    let filter = task_filter(query, state.limits.max_page_bytes);
    listing(state, move |store| {
        let page = super::read_store(store, |store, txn| store.list_tasks(txn, &filter))?;
        // Encoded straight from the tasks, without a JSON tree in between.
        let answer = Page {
            count: page.tasks.len(),
            tasks: &page.tasks,
            next_cursor: page.next_cursor,
        };
        serde_json::to_vec(&answer).map_err(|_| ApiError::storage_unavailable())
    })
    .await
}

/// The answer of `GET /api/tasks/dead-letter`.
#[derive(serde::Serialize)]
struct DeadLetter<'a> {
    tasks: &'a [crate::task::Task],
    count: u64,
}

/// The answer of a listing.
#[derive(serde::Serialize)]
struct Page<'a> {
    tasks: &'a [crate::task::Task],
    count: usize,
    next_cursor: Option<TaskId>,
}

/// The store's filter for what a query asks.
fn task_filter(query: TaskQuery, max_bytes: usize) -> TaskFilter {
    TaskFilter {
        status: query.status,
        priority: query.priority,
        assigned_to: query.assigned_to,
        fairness_key: query.fairness_key,
        tenant: query.tenant,
        after: query.cursor,
        limit: query.limit,
        max_bytes,
    }
}

/// `GET /api/tasks/dead-letter`: every tenant's (an admin's, unless `?tenant=` names one) or
/// the caller's tenant's.
pub async fn dead_letter(state: &AppState, caller: &Caller, query: &str) -> ApiResult {
    let tenant = listing_tenant(caller, tenant_query(query)?)?;
    let max_bytes = state.limits.max_page_bytes;
    listing(state, move |store| {
        let (tasks, count) = super::read_store(store, |store, txn| match &tenant {
            None => store.dead_letter(txn, DEAD_LETTER_LIMIT, max_bytes),
            Some(tenant) => store.tenant_dead_letter(txn, tenant, DEAD_LETTER_LIMIT, max_bytes),
        })?;
        let answer = DeadLetter {
            tasks: &tasks,
            count,
        };
        serde_json::to_vec(&answer).map_err(|_| ApiError::storage_unavailable())
    })
    .await
}

/// `GET /api/tasks/stats`: tasks by status, queued tasks by priority name, the dead letter. Of
/// every tenant (from the status indices, at once), or of one (the caller's, or the one an
/// admin's `?tenant=` names): its tasks are read, so that runs as a listing does.
pub async fn stats(state: &AppState, caller: &Caller, query: &str) -> ApiResult {
    match listing_tenant(caller, tenant_query(query)?)? {
        None => {
            let stats = state.read(|store, txn| store.stats(txn))?;
            Ok(json(StatusCode::OK, stats_body(&stats)))
        }
        Some(tenant) => {
            listing(state, move |store| {
                let stats =
                    super::read_store(store, |store, txn| store.tenant_stats(txn, &tenant))?;
                serde_json::to_vec(&stats_body(&stats)).map_err(|_| ApiError::storage_unavailable())
            })
            .await
        }
    }
}

fn stats_body(stats: &crate::store::Stats) -> Value {
    let by_priority: Map<String, Value> = PRIORITY_NAMES
        .iter()
        .zip(stats.by_priority)
        .map(|(name, count)| (name.to_string(), json!(count)))
        .collect();
    json!({"by_status": stats.by_status, "by_priority": by_priority, "dead_letter": stats.dead_letter})
}

/// `GET /api/tasks/:id`.
pub async fn get(state: &AppState, caller: &Caller, id: &str) -> ApiResult {
    let task_id = task_id(id)?;
    let task = state
        .read(|store, txn| store.task(txn, task_id))?
        .filter(|task| caller.sees(task))
        .ok_or_else(|| ApiError::task_not_found(id))?;
    Ok(json(StatusCode::OK, json!(task)))
}

/// Refuses a change to a task the caller may not see with the 404 the engine gives an unknown
/// id. A task's tenant never changes, and a submission is answered once committed, so the
/// stored task is enough to decide.
fn check_visible(state: &AppState, caller: &Caller, task: TaskId) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    match state.read(|store, txn| store.task(txn, task))? {
        Some(found) if caller.sees(&found) => Ok(()),
        _ => Err(ApiError::task_not_found(task)),
    }
}

/// `POST /api/tasks/:id/retry` (admin, or a client of the task's tenant): a dead-lettered task
/// goes back to the queue.
pub async fn retry(state: &AppState, caller: &Caller, id: &str) -> ApiResult {
    let task = task_id(id)?;
    check_visible(state, caller, task)?;
    let record = caller.audit(AuditAction::TaskRetry, task.to_string());
    let priority = state
        .engine
        .ask_audited(record, |reply| Command::RetryDeadLetter { task, reply })
        .await
        .map_err(|error| match error {
            EngineError::InvalidState(status) => ApiError::new(
                StatusCode::CONFLICT,
                format!("task is {status}; only dead_letter tasks can be retried"),
            ),
            other => other.into(),
        })?;
    Ok(json(
        StatusCode::OK,
        json!({"status": "requeued", "task_id": task, "priority": priority}),
    ))
}

/// `POST /api/tasks/:id/requeue` (admin): an assigned task back to the queue; its agent is
/// told with `task_cancel`.
pub async fn requeue(state: &AppState, caller: &Caller, id: &str) -> ApiResult {
    let task = task_id(id)?;
    let record = caller.audit(AuditAction::TaskRequeue, task.to_string());
    state
        .engine
        .ask_audited(record, |reply| Command::Requeue { task, reply })
        .await?;
    Ok(json(
        StatusCode::OK,
        json!({"status": "queued", "task_id": task}),
    ))
}

/// `POST /api/tasks/:id/cancel` (admin, or a client of the task's tenant): the assignee, if
/// any, is told to stop.
pub async fn cancel(state: &AppState, caller: &Caller, id: &str) -> ApiResult {
    let task = task_id(id)?;
    check_visible(state, caller, task)?;
    let record = caller.audit(AuditAction::TaskCancel, task.to_string());
    state
        .engine
        .ask_audited(record, |reply| Command::Cancel { task, reply })
        .await?;
    Ok(json(
        StatusCode::OK,
        json!({"status": "cancelled", "task_id": task}),
    ))
}
