//! Listing tasks (`GET /api/tasks`): pages in submission order, filtered, resumed after a
//! cursor.
//!
//! A filter on a status whose index is keyed by task id (queued, assigned, dead letter) reads
//! that index, so a page of the queue costs the page, not the tasks before it: with a million
//! tasks completed ahead of a thousand queued ones, `status=queued` reads a thousand records.
//! The queued index is ordered by priority first, so its four priorities are merged by id. Any
//! other filter reads the tasks themselves in id order, at most [`SCAN_LIMIT`] per page.

use super::tasks::{decode_task, id_from, id_key, queued_key};
use super::{Result, Store};
use crate::task::{Task, TaskStatus};
use crate::wire::http::json_len;
use crate::wire::TaskId;
use heed::RoTxn;
use std::ops::Bound;

/// Filters of `GET /api/tasks`.
#[derive(Debug, Clone)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub priority: Option<u8>,
    pub assigned_to: Option<String>,
    pub fairness_key: Option<String>,
    /// Only this tenant's tasks. A page skips other tenants' tasks without coming back short
    /// for them: only the end of the tasks or the scan limit ends a page early.
    pub tenant: Option<String>,
    /// Start after this task.
    pub after: Option<TaskId>,
    pub limit: usize,
    /// The page's tasks, as JSON, at most this many bytes; a page holds its first task
    /// whatever its size, so a listing always moves on.
    pub max_bytes: usize,
}

impl Default for TaskFilter {
    /// Every task, in pages of 100, bounded by count only.
    fn default() -> TaskFilter {
        TaskFilter {
            status: None,
            priority: None,
            assigned_to: None,
            fairness_key: None,
            tenant: None,
            after: None,
            limit: 100,
            max_bytes: usize::MAX,
        }
    }
}

/// One page of a listing. `next_cursor` is set when more tasks may follow.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next_cursor: Option<TaskId>,
}

impl TaskFilter {
    /// Whether `task` passes every filter.
    fn keeps(&self, task: &Task) -> bool {
        self.status.is_none_or(|s| s == task.status)
            && self.priority.is_none_or(|p| p == task.priority)
            && self
                .assigned_to
                .as_ref()
                .is_none_or(|a| task.assigned_to.as_ref() == Some(a))
            && self
                .fairness_key
                .as_ref()
                .is_none_or(|k| *k == task.fairness_key)
            && self.tenant.as_ref().is_none_or(|t| *t == task.tenant)
    }
}

/// Tasks a listing reads at most before it returns a page, so a filter that matches little
/// cannot make one request read the whole store. A page that stops here comes back short (even
/// empty) with a `next_cursor` to go on from.
pub(super) const SCAN_LIMIT: usize = 50_000;

impl Store {
    /// Tasks in submission order, filtered.
    pub fn list_tasks(&self, txn: &RoTxn, filter: &TaskFilter) -> Result<TaskPage> {
        let start = filter.after.map_or(0, |id| id.0.saturating_add(1));
        let from = id_key(TaskId(start));
        let by_id = (Bound::Included(&from[..]), Bound::Unbounded);
        match filter.status {
            Some(TaskStatus::Queued) => {
                let priorities = match filter.priority {
                    Some(p) => p..=p,
                    None => 0..=3,
                };
                let mut ranges = Vec::with_capacity(4);
                for priority in priorities {
                    let lo = queued_key(priority, TaskId(start));
                    let hi = queued_key(priority, TaskId(u64::MAX));
                    let range = (Bound::Included(&lo[..]), Bound::Included(&hi[..]));
                    let ids = self.queued.range(txn, &range)?.map(|e| Ok(id_from(e?.0)));
                    ranges.push(ids.peekable());
                }
                self.page_of_ids(txn, merge_by_id(ranges), filter)
            }
            Some(TaskStatus::Assigned) => {
                let ids = self.assigned.range(txn, &by_id)?.map(|e| Ok(id_from(e?.0)));
                self.page_of_ids(txn, ids, filter)
            }
            Some(TaskStatus::DeadLetter) => {
                let ids = self.dead_letter.range(txn, &by_id)?;
                self.page_of_ids(txn, ids.map(|e| Ok(id_from(e?.0))), filter)
            }
            _ => {
                let records = self.tasks.range(txn, &by_id)?.map(|entry| {
                    let (key, bytes) = entry?;
                    Ok((id_from(key), Some(bytes)))
                });
                page(records, filter)
            }
        }
    }

    /// A page from index entries: each id's record, read from the tasks.
    fn page_of_ids<'t>(
        &self,
        txn: &'t RoTxn,
        ids: impl Iterator<Item = Result<TaskId>>,
        filter: &TaskFilter,
    ) -> Result<TaskPage> {
        let tasks = &self.tasks;
        let records = ids.map(|id| {
            let id = id?;
            Ok((id, tasks.get(txn, &id_key(id))?))
        });
        page(records, filter)
    }
}

/// Ids from several ranges, each in ascending order, merged into one ascending sequence.
fn merge_by_id<I>(mut ranges: Vec<std::iter::Peekable<I>>) -> impl Iterator<Item = Result<TaskId>>
where
    I: Iterator<Item = Result<TaskId>>,
{
    std::iter::from_fn(move || {
        let mut next: Option<(usize, TaskId)> = None;
        for (i, range) in ranges.iter_mut().enumerate() {
            match range.peek() {
                // An error ends the listing: hand it on at once.
                Some(Err(_)) => return range.next(),
                Some(Ok(id)) if next.is_none_or(|(_, best)| *id < best) => next = Some((i, *id)),
                _ => {}
            }
        }
        let (i, _) = next?;
        ranges[i].next()
    })
}

/// One page from `records` in id order (a record may be missing: an index entry whose task is
/// gone is skipped): those the filter keeps, up to its limit and byte budget, reading at most
/// [`SCAN_LIMIT`] records.
fn page<'t>(
    records: impl Iterator<Item = Result<(TaskId, Option<&'t [u8]>)>>,
    filter: &TaskFilter,
) -> Result<TaskPage> {
    let mut tasks = Vec::new();
    let mut last = None;
    let mut page_bytes = 0;
    for (scanned, record) in records.enumerate() {
        if tasks.len() >= filter.limit || scanned >= SCAN_LIMIT {
            return Ok(TaskPage {
                tasks,
                next_cursor: last,
            });
        }
        let (id, bytes) = record?;
        let kept = match bytes {
            Some(bytes) => Some(decode_task(id, bytes)?).filter(|task| filter.keeps(task)),
            None => None,
        };
        if let Some(task) = kept {
            let size = json_len(&task);
            if !tasks.is_empty() && page_bytes + size > filter.max_bytes {
                // The next page starts with this task.
                return Ok(TaskPage {
                    tasks,
                    next_cursor: last,
                });
            }
            page_bytes += size;
            tasks.push(task);
        }
        last = Some(id);
    }
    Ok(TaskPage {
        tasks,
        next_cursor: None,
    })
}
