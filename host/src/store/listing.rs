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
    fn page_of_ids(
        &self,
        txn: &RoTxn,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;
    use crate::store::TaskWrite;
    use crate::wire::http::NewTask;
    use crate::wire::tenant::DEFAULT_TENANT;
    use heed::RwTxn;
    use serde_json::json;

    /// Encodes and writes `task` in one step, as a commit does.
    fn put(store: &Store, txn: &mut RwTxn, task: &Task) {
        store.write_task(txn, &TaskWrite::new(task, None)).unwrap();
    }

    fn new_task(id: u64, priority: u8) -> Task {
        let new = NewTask {
            priority,
            ..NewTask::with_description(format!("task {id}"))
        };
        Task::new(TaskId(id), new, "tester", DEFAULT_TENANT, 1_000 + id)
    }

    /// A task of each status by a fixed pattern over its id, priorities cycling.
    fn task_in_some_status(id: u64) -> Task {
        let mut task = new_task(id, (id % 4) as u8);
        match id % 5 {
            0 => {}
            1 => task.assign("x", 1),
            2 => {
                task.assign("x", 1);
                task.complete(json!(null), None, 2);
            }
            3 => task.cancel(2),
            _ => {
                task.max_retries = 1;
                task.assign("x", 1);
                task.fail("boom", 2);
            }
        }
        task
    }

    #[test]
    fn listing_filters_pages_and_dead_letter() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        for id in 1..=10 {
            let mut task = new_task(id, (id % 4) as u8);
            if id == 7 {
                task.assign("x", 1);
                task.fail("boom", 2);
                task.assign("x", 3);
                task.fail("boom", 4);
                task.assign("x", 5);
                task.fail("boom", 6);
            }
            put(&store, &mut txn, &task);
        }
        txn.commit().unwrap();
        let txn = store.read_txn().unwrap();
        let page = store
            .list_tasks(
                &txn,
                &TaskFilter {
                    limit: 4,
                    ..Default::default()
                },
            )
            .unwrap();
        let ids: Vec<u64> = page.tasks.iter().map(|t| t.id.0).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        let page = store
            .list_tasks(
                &txn,
                &TaskFilter {
                    limit: 4,
                    after: Some(TaskId(4)),
                    priority: Some(1),
                    ..Default::default()
                },
            )
            .unwrap();
        let ids: Vec<u64> = page.tasks.iter().map(|t| t.id.0).collect();
        assert_eq!(ids, vec![5, 9]);
        assert_eq!(page.next_cursor, None);
        let (dead, count) = store.dead_letter(&txn, 100, usize::MAX).unwrap();
        assert_eq!((dead.len(), count, dead[0].id), (1, 1, TaskId(7)));
    }

    #[test]
    fn pages_are_bounded_by_bytes_and_hold_at_least_one_task() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        for id in 1..=10 {
            put(&store, &mut txn, &new_task(id, 2));
        }
        txn.commit().unwrap();
        let txn = store.read_txn().unwrap();
        let one = json_len(&store.task(&txn, TaskId(1)).unwrap().unwrap());
        let page = |after, max_bytes| {
            let filter = TaskFilter {
                after,
                max_bytes,
                ..Default::default()
            };
            let page = store.list_tasks(&txn, &filter).unwrap();
            let ids: Vec<u64> = page.tasks.iter().map(|t| t.id.0).collect();
            (ids, page.next_cursor)
        };
        // Three tasks and a bit fit; the fourth starts the next page.
        assert_eq!(
            page(None, one * 3 + one / 2),
            (vec![1, 2, 3], Some(TaskId(3)))
        );
        assert_eq!(
            page(Some(TaskId(3)), one * 3 + one / 2),
            (vec![4, 5, 6], Some(TaskId(6)))
        );
        assert_eq!(
            page(None, 1),
            (vec![1], Some(TaskId(1))),
            "one task at least"
        );
        assert_eq!(page(Some(TaskId(8)), one * 5).1, None, "the last page");
        let (dead, _) = store.dead_letter(&txn, 100, 1).unwrap();
        assert!(dead.len() <= 1);
    }

    /// Every status filter, with and without a priority, paged in sevens, gives exactly the
    /// tasks a plain scan keeps, in id order: the queued index (by priority first) is merged
    /// back into submission order.
    #[test]
    fn status_listings_match_a_scan_in_submission_order() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        let all: Vec<Task> = (1..=300).map(task_in_some_status).collect();
        for task in &all {
            put(&store, &mut txn, task);
        }
        txn.commit().unwrap();
        let txn = store.read_txn().unwrap();
        for status in TaskStatus::ALL {
            for priority in [None, Some(0), Some(3)] {
                let expected: Vec<u64> = all
                    .iter()
                    .filter(|t| t.status == status && priority.is_none_or(|p| p == t.priority))
                    .map(|t| t.id.0)
                    .collect();
                let mut listed = Vec::new();
                let mut after = None;
                for _ in 0..100 {
                    let filter = TaskFilter {
                        status: Some(status),
                        priority,
                        after,
                        limit: 7,
                        ..Default::default()
                    };
                    let page = store.list_tasks(&txn, &filter).unwrap();
                    listed.extend(page.tasks.iter().map(|t| t.id.0));
                    match page.next_cursor {
                        Some(cursor) => after = Some(cursor),
                        None => break,
                    }
                }
                assert_eq!(listed, expected, "{status:?} priority {priority:?}");
            }
        }
    }

    /// The queued tasks behind more finished tasks than one page may read are on the first
    /// page of `status=queued`: the listing reads the queued index, not the tasks before them.
    #[test]
    fn queued_tasks_behind_many_finished_ones_are_on_the_first_page() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        let finished = SCAN_LIMIT as u64 + 10;
        for id in 1..=finished {
            let mut task = new_task(id, 2);
            task.cancel(2);
            put(&store, &mut txn, &task);
        }
        for id in finished + 1..=finished + 3 {
            put(&store, &mut txn, &new_task(id, 3 - (id % 2) as u8));
        }
        txn.commit().unwrap();
        let txn = store.read_txn().unwrap();
        let filter = TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        };
        let page = store.list_tasks(&txn, &filter).unwrap();
        let ids: Vec<u64> = page.tasks.iter().map(|t| t.id.0).collect();
        assert_eq!(ids, [finished + 1, finished + 2, finished + 3]);
        assert_eq!(page.next_cursor, None);
    }
}
