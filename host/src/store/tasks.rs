//! Tasks and the indices derived from their status. An index entry exists exactly for the
//! status the task is in, so a restart rebuilds the live state with two range scans (queued and
//! assigned) and never reads a finished task.

use super::{codec, Result, Store, StoreError};
use crate::task::{Task, TaskStatus};
use crate::wire::http::json_len;
use crate::wire::TaskId;
use heed::{RoTxn, RwTxn};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Counts for `GET /api/tasks/stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub by_status: BTreeMap<&'static str, u64>,
    /// Queued tasks only, by priority number.
    pub by_priority: [u64; 4],
    pub dead_letter: u64,
}

pub(super) fn id_key(id: TaskId) -> [u8; 8] {
    id.0.to_be_bytes()
}

pub(super) fn queued_key(priority: u8, id: TaskId) -> [u8; 9] {
    let mut key = [0; 9];
    key[0] = priority;
    key[1..].copy_from_slice(&id.0.to_be_bytes());
    key
}

fn finished_key(at: u64, id: TaskId) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&at.to_be_bytes());
    key[8..].copy_from_slice(&id.0.to_be_bytes());
    key
}

pub(super) fn id_from(bytes: &[u8]) -> TaskId {
    let mut raw = [0; 8];
    raw.copy_from_slice(&bytes[bytes.len() - 8..]);
    TaskId(u64::from_be_bytes(raw))
}

pub(super) fn decode_task(id: TaskId, bytes: &[u8]) -> Result<Task> {
    let task =
        codec::decode_task(bytes).map_err(|source| StoreError::CorruptTask { id, source })?;
    if task.id != id {
        return Err(StoreError::CorruptTask {
            id,
            source: codec::DecodeError::Invalid("task id (the record names another task)"),
        });
    }
    Ok(task)
}

/// Below this many records decoding stays on the calling thread.
const PARALLEL_DECODE_MIN: usize = 10_000;

/// Decodes task records, in order, split across the machine's cores when there are many.
// Boxed here because the engine keeps each task boxed: boxing later would move every task twice.
#[allow(clippy::vec_box)]
fn decode_tasks(records: &[(TaskId, &[u8])]) -> Result<Vec<Box<Task>>> {
    let decode_part = |part: &[(TaskId, &[u8])]| -> Result<Vec<Box<Task>>> {
        part.iter()
            .map(|&(id, bytes)| decode_task(id, bytes).map(Box::new))
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads == 1 || records.len() < PARALLEL_DECODE_MIN {
        return decode_part(records);
    }
    let part_len = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = records
            .chunks(part_len)
            .map(|part| scope.spawn(move || decode_part(part)))
            .collect();
        let mut tasks = Vec::with_capacity(records.len());
        for part in parts {
            tasks.extend(
                part.join()
                    .expect("decoding a task record does not panic")?,
            );
        }
        Ok(tasks)
    })
}

/// One task as a commit writes it: the record encoded and what its index entries need. Made on
/// the engine thread when a batch is sealed, so the writer thread needs nothing of the live state.
#[derive(Debug)]
pub struct TaskWrite {
    id: TaskId,
    priority: u8,
    status: TaskStatus,
    /// The status before the batch (None for a new task): whose index entry to remove.
    previous: Option<TaskStatus>,
    updated_at: u64,
    record: Vec<u8>,
}

impl TaskWrite {
    pub fn new(task: &Task, previous: Option<TaskStatus>) -> TaskWrite {
        TaskWrite {
            id: task.id,
            priority: task.priority,
            status: task.status,
            previous,
            updated_at: task.updated_at,
            record: codec::encode_task(task),
        }
    }
}

impl Store {
    /// Writes an encoded task, moving its index entry from the status it had before the batch
    /// (none for a new task) to its current one.
    pub fn write_task(&self, txn: &mut RwTxn, task: &TaskWrite) -> Result<()> {
        self.tasks.put(txn, &id_key(task.id), &task.record)?;
        if task.previous == Some(task.status) {
            return Ok(());
        }
        if let Some(previous) = task.previous {
            match previous {
                TaskStatus::Queued => {
                    self.queued
                        .delete(txn, &queued_key(task.priority, task.id))?;
                }
                TaskStatus::Assigned => {
                    self.assigned.delete(txn, &id_key(task.id))?;
                }
                TaskStatus::DeadLetter => {
                    self.dead_letter.delete(txn, &id_key(task.id))?;
                }
                // Completed and cancelled are final; their entries leave only with the task.
                TaskStatus::Completed | TaskStatus::Cancelled => {}
            }
        }
        match task.status {
            TaskStatus::Queued => self
                .queued
                .put(txn, &queued_key(task.priority, task.id), &[])?,
            TaskStatus::Assigned => self.assigned.put(txn, &id_key(task.id), &[])?,
            TaskStatus::DeadLetter => self.dead_letter.put(txn, &id_key(task.id), &[])?,
            TaskStatus::Completed => {
                self.completed
                    .put(txn, &finished_key(task.updated_at, task.id), &[])?
            }
            TaskStatus::Cancelled => {
                self.cancelled
                    .put(txn, &finished_key(task.updated_at, task.id), &[])?
            }
        }
        Ok(())
    }

    pub fn task(&self, txn: &RoTxn, id: TaskId) -> Result<Option<Task>> {
        self.tasks
            .get(txn, &id_key(id))?
            .map(|bytes| decode_task(id, bytes))
            .transpose()
    }

    fn tasks_by_ids(&self, txn: &RoTxn, ids: impl Iterator<Item = TaskId>) -> Result<Vec<Task>> {
        let mut tasks = Vec::new();
        for id in ids {
            if let Some(task) = self.task(txn, id)? {
                tasks.push(task);
            }
        }
        Ok(tasks)
    }

    /// Every queued and assigned task: the live state, read once at start, boxed as the engine
    /// keeps them. With a million tasks queued a restart is mostly decoding records, so the
    /// records are found first (borrowed from the map, no copy) and decoded on every core.
    pub fn active_tasks(&self, txn: &RoTxn) -> Result<Vec<Box<Task>>> {
        let mut records = Vec::new();
        for index in [&self.queued, &self.assigned] {
            for entry in index.iter(txn)? {
                let id = id_from(entry?.0);
                if let Some(bytes) = self.tasks.get(txn, &id_key(id))? {
                    records.push((id, bytes));
                }
            }
        }
        decode_tasks(&records)
    }

    /// Dead-lettered tasks (at most `limit`, and at most `max_bytes` of them as JSON, but at
    /// least one) and how many there are in all.
    pub fn dead_letter(
        &self,
        txn: &RoTxn,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Task>, u64)> {
        let mut ids = Vec::new();
        for entry in self.dead_letter.iter(txn)?.take(limit) {
            ids.push(id_from(entry?.0));
        }
        let mut tasks = Vec::new();
        let mut bytes = 0;
        for task in self.tasks_by_ids(txn, ids.into_iter())? {
            bytes += json_len(&task);
            if !tasks.is_empty() && bytes > max_bytes {
                break;
            }
            tasks.push(task);
        }
        Ok((tasks, self.dead_letter.len(txn)?))
    }

    pub fn stats(&self, txn: &RoTxn) -> Result<Stats> {
        let mut stats = Stats::default();
        let counts = [
            (TaskStatus::Queued, self.queued.len(txn)?),
            (TaskStatus::Assigned, self.assigned.len(txn)?),
            (TaskStatus::Completed, self.completed.len(txn)?),
            (TaskStatus::DeadLetter, self.dead_letter.len(txn)?),
            (TaskStatus::Cancelled, self.cancelled.len(txn)?),
        ];
        for (status, count) in counts {
            stats.by_status.insert(status.as_str(), count);
        }
        for entry in self.queued.iter(txn)? {
            let priority = entry?.0[0] as usize;
            if let Some(count) = stats.by_priority.get_mut(priority) {
                *count += 1;
            }
        }
        stats.dead_letter = counts[3].1;
        Ok(stats)
    }

    /// Deletes up to `limit` finished tasks (completed, cancelled, dead-lettered) that finished
    /// before `before`. Completed and cancelled tasks are indexed by when they finished, so the
    /// oldest go first; the dead letter is indexed by id, so it is walked from where the last
    /// call stopped (kept in meta), `limit` entries at most per call, reading when each entry
    /// was dead-lettered. `more` says whether a call soon after may find more to delete.
    pub fn purge_finished(&self, txn: &mut RwTxn, before: u64, limit: usize) -> Result<Purged> {
        let mut purged = 0;
        let mut more = false;
        let mut counts = [0; 3];
        for (slot, index) in [&self.completed, &self.cancelled].into_iter().enumerate() {
            let end = finished_key(before, TaskId(0));
            let mut keys = Vec::new();
            let range = (Bound::Unbounded, Bound::Excluded(&end[..]));
            for entry in index.range(txn, &range)?.take(limit - purged) {
                keys.push(entry?.0.to_vec());
            }
            for key in keys {
                index.delete(txn, &key)?;
                self.tasks.delete(txn, &id_key(id_from(&key)))?;
                purged += 1;
                counts[slot] += 1;
            }
        }
        if purged == limit {
            return Ok(Purged {
                purged,
                more: true,
                counts,
            });
        }
        // The dead letter, from the cursor.
        let from = match self.meta.get(txn, META_DEAD_LETTER_CURSOR)? {
            Some(bytes) => u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8])),
            None => 0,
        };
        let start = from.to_be_bytes();
        let range = (Bound::Included(&start[..]), Bound::Unbounded);
        let mut doomed = Vec::new();
        let mut next = 0;
        for (examined, entry) in self.dead_letter.range(txn, &range)?.enumerate() {
            if examined == limit - purged {
                next = id_from(entry?.0).0;
                more = true;
                break;
            }
            let id = id_from(entry?.0);
            let Some(bytes) = self.tasks.get(txn, &id_key(id))? else {
                doomed.push(id);
                continue;
            };
            if decode_task(id, bytes)?.updated_at < before {
                doomed.push(id);
            }
        }
        for id in doomed {
            self.dead_letter.delete(txn, &id_key(id))?;
            self.tasks.delete(txn, &id_key(id))?;
            purged += 1;
            counts[2] += 1;
        }
        self.meta
            .put(txn, META_DEAD_LETTER_CURSOR, &next.to_be_bytes())?;
        Ok(Purged {
            purged,
            more,
            counts,
        })
    }
}

/// What one [`Store::purge_finished`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Tasks deleted.
    pub purged: usize,
    /// Whether it stopped at its limit: more may be due.
    pub more: bool,
    /// Of `purged`: completed, cancelled and dead-lettered tasks, in [`Purged::STATUSES`]' order.
    pub counts: [usize; 3],
}

impl Purged {
    /// The statuses of [`Purged::counts`].
    pub const STATUSES: [TaskStatus; 3] = [
        TaskStatus::Completed,
        TaskStatus::Cancelled,
        TaskStatus::DeadLetter,
    ];

    /// Tasks deleted by status.
    pub fn by_status(&self) -> impl Iterator<Item = (TaskStatus, u64)> + '_ {
        Self::STATUSES
            .into_iter()
            .zip(self.counts.iter().map(|&n| n as u64))
    }
}

/// Meta key: the dead-letter id the next purge starts from.
const META_DEAD_LETTER_CURSOR: &[u8] = b"dead_letter_purge_cursor";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;
    use crate::wire::http::NewTask;
    use crate::wire::tenant::DEFAULT_TENANT;
    use serde_json::json;

    impl Store {
        /// Encodes and writes `task` in one step, as a commit does.
        fn put_task(
            &self,
            txn: &mut RwTxn,
            task: &Task,
            previous: Option<TaskStatus>,
        ) -> Result<()> {
            self.write_task(txn, &TaskWrite::new(task, previous))
        }
    }

    fn new_task(id: u64, priority: u8) -> Task {
        let new = NewTask {
            priority,
            ..NewTask::with_description(format!("task {id}"))
        };
        Task::new(TaskId(id), new, "tester", DEFAULT_TENANT, 1_000 + id)
    }

    #[test]
    fn indices_follow_status_and_survive_reopen_of_a_txn() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        let mut a = new_task(1, 3);
        let b = new_task(2, 0);
        store.put_task(&mut txn, &a, None).unwrap();
        store.put_task(&mut txn, &b, None).unwrap();
        a.assign("agent", 5);
        store
            .put_task(&mut txn, &a, Some(TaskStatus::Queued))
            .unwrap();
        txn.commit().unwrap();

        let txn = store.read_txn().unwrap();
        let stats = store.stats(&txn).unwrap();
        assert_eq!(stats.by_status["queued"], 1);
        assert_eq!(stats.by_status["assigned"], 1);
        assert_eq!(stats.by_priority, [1, 0, 0, 0]);
        let mut active: Vec<_> = store
            .active_tasks(&txn)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        active.sort();
        assert_eq!(active, vec![TaskId(1), TaskId(2)]);
        assert_eq!(
            store.task(&txn, TaskId(1)).unwrap().unwrap().status,
            TaskStatus::Assigned
        );
    }

    #[test]
    fn many_records_decode_in_order() {
        // Binary records, and every tenth one JSON as schema version 1 wrote them.
        let records: Vec<(TaskId, Vec<u8>)> = (1..=PARALLEL_DECODE_MIN as u64 + 7)
            .map(|id| {
                let task = new_task(id, (id % 4) as u8);
                let bytes = if id % 10 == 0 {
                    serde_json::to_vec(&task).unwrap()
                } else {
                    codec::encode_task(&task)
                };
                (TaskId(id), bytes)
            })
            .collect();
        let slices: Vec<(TaskId, &[u8])> = records.iter().map(|(id, b)| (*id, &b[..])).collect();
        let tasks = decode_tasks(&slices).unwrap();
        let ids: Vec<u64> = tasks.iter().map(|t| t.id.0).collect();
        assert_eq!(
            ids,
            (1..=PARALLEL_DECODE_MIN as u64 + 7).collect::<Vec<_>>()
        );
        let mut corrupt = slices.clone();
        corrupt[PARALLEL_DECODE_MIN / 2].1 = b"{";
        let error = decode_tasks(&corrupt).unwrap_err();
        assert!(
            matches!(error, StoreError::CorruptTask { id, .. } if id.0 == PARALLEL_DECODE_MIN as u64 / 2 + 1)
        );
    }

    #[test]
    fn purge_removes_only_old_finished_tasks() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        for id in 1..=3 {
            let mut task = new_task(id, 2);
            task.assign("a", 10);
            task.complete(json!({}), None, id * 100);
            store.put_task(&mut txn, &task, None).unwrap();
        }
        let purged = store.purge_finished(&mut txn, 250, 100).unwrap();
        assert_eq!(
            purged,
            Purged {
                purged: 2,
                more: false,
                counts: [2, 0, 0],
            }
        );
        assert!(store.task(&txn, TaskId(1)).unwrap().is_none());
        assert!(store.task(&txn, TaskId(3)).unwrap().is_some());
    }

    #[test]
    fn purge_takes_old_dead_letters_a_bounded_walk_at_a_time() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        // Dead-lettered at 100, 200, ..., 500 (ids in another order than times).
        for (id, at) in [(1, 500), (2, 100), (3, 200), (4, 400), (5, 300)] {
            let mut task = new_task(id, 2);
            task.assign("a", 10);
            task.expire(at);
            assert_eq!(task.status, TaskStatus::DeadLetter);
            store.put_task(&mut txn, &task, None).unwrap();
        }
        // Two entries examined per call: ids 1 (kept) and 2 (purged), then 3 and 4, then 5.
        let first = store.purge_finished(&mut txn, 350, 2).unwrap();
        assert_eq!(
            first,
            Purged {
                purged: 1,
                more: true,
                counts: [0, 0, 1],
            }
        );
        let second = store.purge_finished(&mut txn, 350, 2).unwrap();
        assert_eq!(
            second,
            Purged {
                purged: 1,
                more: true,
                counts: [0, 0, 1],
            }
        );
        let third = store.purge_finished(&mut txn, 350, 2).unwrap();
        assert_eq!(
            third,
            Purged {
                purged: 1,
                more: false,
                counts: [0, 0, 1],
            }
        );
        let left: Vec<u64> = (1..=5)
            .filter(|&id| store.task(&txn, TaskId(id)).unwrap().is_some())
            .collect();
        assert_eq!(left, [1, 4]);
        let (dead, count) = store.dead_letter(&txn, 10, usize::MAX).unwrap();
        assert_eq!((dead.len(), count), (2, 2));
        // Wrapped around: the next walk starts from the first again.
        assert_eq!(
            store.purge_finished(&mut txn, 1_000, 10).unwrap(),
            Purged {
                purged: 2,
                more: false,
                counts: [0, 0, 2],
            }
        );
    }
}
