//! Tenants in the engine: their records, their live counts and their quotas.
//!
//! The engine keeps every tenant in memory ([`TenantTable`]), so a submission is checked
//! against its tenant's quotas without reading the store. Writes (create, update, delete) go
//! through the batch like token writes: durable before they are answered, and recorded in the
//! audit log.
//!
//! Counts. Each tenant's queued and assigned counts are kept as of the last sealed batch: at
//! sealing, every task the batch changed moves from its status before the batch to its status
//! now (`EngineState::seal` calls [`TenantTable::moved`]). A quota check in the open batch adds
//! the changes of that batch for its tenant (`EngineState::tenant_counts`), so it is exact; the
//! hot path (submitting to a tenant without `max_queued`, dispatching) pays nothing more than
//! the move at sealing. At load they are rebuilt from the live tasks, so they are right after a
//! restart.

use crate::task::{Task, TaskStatus};
use crate::wire::tenant::{QuotaLimit, QuotaRefusal, Tenant, DEFAULT_TENANT};
use std::collections::HashMap;

/// A tenant's live tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: u64,
    pub assigned: u64,
}

impl Counts {
    fn slot(&mut self, status: TaskStatus) -> Option<&mut u64> {
        match status {
            TaskStatus::Queued => Some(&mut self.queued),
            TaskStatus::Assigned => Some(&mut self.assigned),
            TaskStatus::Completed | TaskStatus::Cancelled | TaskStatus::DeadLetter => None,
        }
    }

    /// A task of the tenant moved from `from` (`None`: it is new) to `to`.
    pub fn moved(&mut self, from: Option<TaskStatus>, to: TaskStatus) {
        if from == Some(to) {
            return;
        }
        if let Some(slot) = from.and_then(|from| self.slot(from)) {
            *slot = slot.saturating_sub(1);
        }
        if let Some(slot) = self.slot(to) {
            *slot += 1;
        }
    }
}

/// A token bucket for `submit_rate`: it holds up to one second's worth of submissions (at
/// least one, so a rate below one a second still lets a task through now and then) and refills
/// at the rate, continuously.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date (ms).
    at: u64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, now: u64) -> Bucket {
        let mut bucket = Bucket {
            rate,
            tokens: 0.0,
            at: now,
        };
        bucket.tokens = bucket.burst();
        bucket
    }

    /// The most it holds: one second's worth, and at least one.
    pub fn burst(&self) -> f64 {
        self.rate.max(1.0)
    }

    fn refill(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.at) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst());
        self.at = self.at.max(now);
    }

    /// Whole submissions it allows at `now`.
    pub fn available(&mut self, now: u64) -> u64 {
        self.refill(now);
        // A hair of tolerance: refills in milliseconds add up to a whole token only nearly.
        (self.tokens + 1e-9).floor() as u64
    }

    /// Takes `n` submissions, all or none. Refused: the whole seconds (at least 1) until `n`
    /// would pass; a batch larger than the burst never will, and is told to wait a whole
    /// refill.
    pub fn take(&mut self, n: u64, now: u64) -> Result<(), u64> {
        self.refill(now);
        let n = n as f64;
        if self.tokens + 1e-9 >= n {
            self.tokens = (self.tokens - n).max(0.0);
            return Ok(());
        }
        let missing = n.min(self.burst()) - self.tokens;
        Err(((missing / self.rate).ceil() as u64).max(1))
    }
}

/// A tenant the engine knows: its record, and its bucket when it has a `submit_rate`.
#[derive(Debug, Clone)]
struct Entry {
    record: Tenant,
    bucket: Option<Bucket>,
}

impl Entry {
    fn new(record: Tenant, now: u64) -> Entry {
        let bucket = record.submit_rate.map(|rate| Bucket::new(rate, now));
        Entry { record, bucket }
    }
}

/// Every tenant, and the live counts by tenant name.
#[derive(Debug, Default)]
pub struct TenantTable {
    entries: HashMap<String, Entry>,
    /// As of the last sealed batch. A name may be counted without an entry only for tasks of a
    /// tenant that no longer exists (which deletion prevents while they are live).
    counts: HashMap<String, Counts>,
}

impl TenantTable {
    /// Sets the records from the store. A bucket whose rate is unchanged keeps its level, so a
    /// reload after a failed commit does not refill every bucket.
    pub fn load(&mut self, records: Vec<Tenant>, now: u64) {
        let mut old = std::mem::take(&mut self.entries);
        for record in records {
            let mut entry = Entry::new(record, now);
            if let Some(previous) = old.remove(&entry.record.name) {
                if previous.record.submit_rate == entry.record.submit_rate {
                    entry.bucket = previous.bucket;
                }
            }
            self.entries.insert(entry.record.name.clone(), entry);
        }
        if !self.entries.contains_key(DEFAULT_TENANT) {
            self.entries.insert(
                DEFAULT_TENANT.to_owned(),
                Entry::new(Tenant::default_tenant(), now),
            );
        }
    }

    /// Counts the live tasks afresh.
    pub fn recount<'a>(&mut self, tasks: impl Iterator<Item = &'a Task>) {
        self.counts.clear();
        for task in tasks {
            self.moved(&task.tenant, None, task.status);
        }
    }

    /// A task of `tenant` moved from `from` (`None`: new) to `to`.
    pub fn moved(&mut self, tenant: &str, from: Option<TaskStatus>, to: TaskStatus) {
        if from == Some(to) {
            return;
        }
        match self.counts.get_mut(tenant) {
            Some(counts) => counts.moved(from, to),
            None => {
                let mut counts = Counts::default();
                counts.moved(from, to);
                if counts != Counts::default() {
                    self.counts.insert(tenant.to_owned(), counts);
                }
            }
        }
    }

    /// The counts of `tenant` as of the last sealed batch.
    pub fn counts(&self, tenant: &str) -> Counts {
        self.counts.get(tenant).copied().unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<&Tenant> {
        self.entries.get(name).map(|e| &e.record)
    }

    /// Every tenant, by name.
    pub fn records(&self) -> Vec<&Tenant> {
        let mut records: Vec<&Tenant> = self.entries.values().map(|e| &e.record).collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    /// Adds or replaces a record. Its bucket starts full when its rate is new or changed.
    pub fn put(&mut self, record: Tenant, now: u64) {
        match self.entries.get_mut(&record.name) {
            Some(entry) if entry.record.submit_rate == record.submit_rate => entry.record = record,
            _ => {
                self.entries
                    .insert(record.name.clone(), Entry::new(record, now));
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// Takes `n` submissions from `tenant`'s bucket, if it has one. Refused: the refusal.
    pub fn take(&mut self, tenant: &str, n: u64, now: u64) -> Result<(), QuotaRefusal> {
        let Some(bucket) = self.entries.get_mut(tenant).and_then(|e| e.bucket.as_mut()) else {
            return Ok(());
        };
        bucket.take(n, now).map_err(|retry_after| {
            let rate = bucket.rate;
            let current = bucket.available(now);
            let burst = bucket.burst();
            let detail = if n as f64 > burst {
                format!(
                    "tenant {tenant} may submit {rate} tasks per second, in bursts of at most \
                     {burst}; a batch of {n} can never pass: split it"
                )
            } else {
                format!(
                    "tenant {tenant} may submit {rate} tasks per second; {current} may be \
                     submitted now, not {n}: retry in {retry_after} s"
                )
            };
            QuotaRefusal {
                error: QuotaLimit::SubmitRate.code(),
                tenant: tenant.to_owned(),
                limit: QuotaLimit::SubmitRate,
                max: serde_json::Number::from_f64(rate).unwrap_or_else(|| 0.into()),
                current,
                requested: n,
                retry_after_secs: Some(retry_after),
                detail,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_one_second_and_refills_at_its_rate() {
        let mut bucket = Bucket::new(5.0, 1_000);
        assert_eq!(bucket.available(1_000), 5);
        assert_eq!(bucket.take(5, 1_000), Ok(()));
        // Empty: one more needs 0.2 s, told as a whole second.
        assert_eq!(bucket.take(1, 1_000), Err(1));
        assert_eq!(bucket.available(1_199), 0);
        assert_eq!(bucket.available(1_200), 1);
        // All or nothing: 3 with 1 in the bucket takes nothing.
        assert_eq!(bucket.take(3, 1_200), Err(1));
        assert_eq!(bucket.available(1_200), 1);
        // Never more than the burst, however long it waited.
        assert_eq!(bucket.available(60_000), 5);
    }

    #[test]
    fn a_slow_bucket_says_how_many_seconds_to_wait() {
        let mut bucket = Bucket::new(0.25, 0);
        // A rate below one still holds one task: the first passes, the next in 4 s.
        assert_eq!(bucket.take(1, 0), Ok(()));
        assert_eq!(bucket.take(1, 0), Err(4));
        assert_eq!(bucket.take(1, 3_000), Err(1));
        assert_eq!(bucket.take(1, 4_000), Ok(()));
        assert_eq!(
            bucket.take(2, 4_000),
            Err(4),
            "a batch beyond the burst waits a refill"
        );
    }

    #[test]
    fn a_batch_beyond_the_burst_is_refused_even_when_full() {
        let mut bucket = Bucket::new(2.0, 0);
        assert_eq!(bucket.take(3, 0), Err(1));
        assert_eq!(bucket.available(0), 2);
    }

    #[test]
    fn counts_follow_moves_and_ignore_finished_tasks() {
        let mut table = TenantTable::default();
        table.moved("a", None, TaskStatus::Queued);
        table.moved("a", None, TaskStatus::Queued);
        table.moved("b", None, TaskStatus::Queued);
        table.moved("a", Some(TaskStatus::Queued), TaskStatus::Assigned);
        table.moved("a", Some(TaskStatus::Assigned), TaskStatus::Completed);
        table.moved("b", Some(TaskStatus::Queued), TaskStatus::Queued);
        table.moved("c", Some(TaskStatus::DeadLetter), TaskStatus::Cancelled);
        assert_eq!(
            table.counts("a"),
            Counts {
                queued: 1,
                assigned: 0
            }
        );
        assert_eq!(table.counts("b").queued, 1);
        assert_eq!(table.counts("c"), Counts::default());
    }

    #[test]
    fn loading_keeps_default_and_unchanged_buckets() {
        let mut table = TenantTable::default();
        let limited = Tenant {
            name: "a".into(),
            weight: 2.0,
            max_queued: None,
            submit_rate: Some(1.0),
            created_at: 0,
        };
        table.load(vec![limited.clone()], 0);
        assert!(table.get(DEFAULT_TENANT).is_some());
        table.take("a", 1, 0).unwrap();
        table.load(vec![limited], 0);
        let refusal = table.take("a", 1, 0).unwrap_err();
        assert_eq!(refusal.limit, QuotaLimit::SubmitRate);
        assert_eq!(refusal.retry_after_secs, Some(1));
        assert_eq!(refusal.current, 0);
    }
}
