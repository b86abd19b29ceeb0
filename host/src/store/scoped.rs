//! Reads limited to one tenant: its dead letter and its task counts. The status indices are not
//! kept per tenant, so these read the tasks themselves (unlike [`Store::stats`], which only
//! counts index entries): their cost grows with the tasks stored, which retention bounds.

use super::tasks::{decode_task, id_from, id_key};
use super::{Result, Stats, Store};
use crate::task::{Task, TaskStatus};
use crate::wire::http::json_len;
use heed::RoTxn;

impl Store {
    /// `tenant`'s dead-lettered tasks, oldest id first (at most `limit`, and at most
    /// `max_bytes` of them as JSON, but at least one), and how many it has in all.
    pub fn tenant_dead_letter(
        &self,
        txn: &RoTxn,
        tenant: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Task>, u64)> {
        let mut tasks = Vec::new();
        let mut bytes = 0;
        let mut full = false;
        let mut count = 0;
        for entry in self.dead_letter.iter(txn)? {
            let id = id_from(entry?.0);
            let Some(record) = self.tasks.get(txn, &id_key(id))? else {
                continue;
            };
            let task = decode_task(id, record)?;
            if task.tenant != tenant {
                continue;
            }
            count += 1;
            if full {
                continue;
            }
            let size = json_len(&task);
            if tasks.len() == limit || (!tasks.is_empty() && bytes + size > max_bytes) {
                full = true;
                continue;
            }
            bytes += size;
            tasks.push(task);
        }
        Ok((tasks, count))
    }

    /// [`Store::stats`] of `tenant`'s tasks alone.
    pub fn tenant_stats(&self, txn: &RoTxn, tenant: &str) -> Result<Stats> {
        let mut stats = Stats::default();
        for status in TaskStatus::ALL {
            stats.by_status.insert(status.as_str(), 0);
        }
        for entry in self.tasks.iter(txn)? {
            let (key, record) = entry?;
            let task = decode_task(id_from(key), record)?;
            if task.tenant != tenant {
                continue;
            }
            *stats.by_status.entry(task.status.as_str()).or_default() += 1;
            match task.status {
                TaskStatus::Queued => {
                    if let Some(count) = stats.by_priority.get_mut(task.priority as usize) {
                        *count += 1;
                    }
                }
                TaskStatus::DeadLetter => stats.dead_letter += 1,
                _ => {}
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::temp_store;
    use crate::store::{Store, TaskFilter, TaskWrite};
    use crate::task::{Task, TaskStatus};
    use crate::wire::http::NewTask;
    use crate::wire::TaskId;

    /// Tasks 1..=12; every third one belongs to tenant `b`, the rest to `a`; tasks 4 to 9 are
    /// dead-lettered.
    fn two_tenants() -> Store {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        for id in 1..=12u64 {
            let tenant = if id % 3 == 0 { "b" } else { "a" };
            let new = NewTask {
                priority: (id % 4) as u8,
                max_retries: 1,
                ..NewTask::with_description(format!("task {id}"))
            };
            let mut task = Task::new(TaskId(id), new, "tester", tenant, id);
            if (4..=9).contains(&id) {
                task.assign("x", id);
                task.fail("boom", id + 1);
                assert_eq!(task.status, TaskStatus::DeadLetter);
            }
            store
                .write_task(&mut txn, &TaskWrite::new(&task, None))
                .unwrap();
        }
        txn.commit().unwrap();
        store
    }

    #[test]
    fn a_tenant_listing_fills_its_pages_past_other_tenants_tasks() {
        let store = two_tenants();
        let txn = store.read_txn().unwrap();
        let page = |after| {
            let filter = TaskFilter {
                tenant: Some("b".into()),
                limit: 2,
                after,
                ..Default::default()
            };
            let page = store.list_tasks(&txn, &filter).unwrap();
            let ids: Vec<u64> = page.tasks.iter().map(|t| t.id.0).collect();
            (ids, page.next_cursor)
        };
        let (first, cursor) = page(None);
        assert_eq!(first, vec![3, 6]);
        assert_eq!(cursor, Some(TaskId(6)));
        // Tasks 7 and 8 (tenant a) are passed over, not a reason to end the page short.
        let (second, end) = page(cursor);
        assert_eq!((second, end), (vec![9, 12], None), "the last page");
    }

    #[test]
    fn dead_letter_and_stats_count_one_tenant() {
        let store = two_tenants();
        let txn = store.read_txn().unwrap();
        let (dead, count) = store
            .tenant_dead_letter(&txn, "b", 100, usize::MAX)
            .unwrap();
        let ids: Vec<u64> = dead.iter().map(|t| t.id.0).collect();
        assert_eq!((ids, count), (vec![6, 9], 2));
        let (dead, count) = store.tenant_dead_letter(&txn, "a", 1, usize::MAX).unwrap();
        assert_eq!(
            (dead.len(), count),
            (1, 4),
            "the count is of all, the page of one"
        );
        let stats = store.tenant_stats(&txn, "b").unwrap();
        assert_eq!(stats.by_status["queued"], 2);
        assert_eq!(stats.by_status["dead_letter"], 2);
        assert_eq!(stats.by_status["completed"], 0);
        assert_eq!(stats.dead_letter, 2);
        // Tasks 3 and 12 are queued: priorities 3 and 0.
        assert_eq!(stats.by_priority, [1, 0, 0, 1]);
        let none = store.tenant_stats(&txn, "c").unwrap();
        assert_eq!(none.by_status.values().sum::<u64>(), 0);
    }
}
