//! The writer: commits sealed batches on a thread of its own, so the engine applies the next
//! batch while the disk flushes the last one (pipelined group commit).
//!
//! A commit here waits for two device flushes, milliseconds on an ordinary disk, and the engine
//! used to sit idle through them. Now the engine seals a batch (tasks encoded, everything else to
//! write, the pushes and answers it owes), hands it over, and goes on applying commands into
//! the next batch. One batch is with the writer at a time: the next is sealed only when the
//! writer reports the last one, so batches grow with the load and commits stay in order.
//!
//! What a batch owes the outside world leaves only once the batch is durable: the writer
//! releases its pushes and answers after the commit, or refuses them if it failed.

use crate::engine::command::EngineError;
use crate::engine::events::EventHub;
use crate::engine::outbox::{Outbound, Outbox};
use crate::store::{
    AgentRecord, PersistedPolicy, Purged, Store, StoreError, TaskWrite, TokenRecord,
};
use crate::wire::events::Event;
use crate::wire::http::AuditRecord;
use crate::wire::tenant::Tenant;
use crate::wire::TaskId;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Finished tasks purged per commit at most, so a purge never stalls the pipeline.
const PURGE_BATCH: usize = 1_000;

/// An answer that waits for its batch's commit: called with whether it succeeded.
pub type Deferred = Box<dyn FnOnce(Result<(), EngineError>) + Send>;

/// Durable writes of a batch other than tasks.
#[derive(Default)]
pub struct Writes {
    pub tokens: Vec<(String, TokenRecord)>,
    pub revoked: Vec<String>,
    /// Single tokens revoked, by hash (admin tokens: rotated, or revoked by prefix).
    pub revoked_hashes: Vec<[u8; 32]>,
    pub agents: Vec<AgentRecord>,
    pub policy: Option<(PersistedPolicy, Option<Vec<u8>>)>,
    pub purge_before: Option<u64>,
    pub next_seq: Option<u64>,
    /// Admin actions of this batch, recorded in its commit.
    pub audit: Vec<AuditRecord>,
    /// Tenants created, changed or deleted, in the order they were.
    pub tenants: Vec<TenantWrite>,
}

/// A change to the tenants table.
pub enum TenantWrite {
    Put(Tenant),
    Delete(String),
}

impl Writes {
    fn is_empty(&self) -> bool {
        self.tokens.is_empty()
            && self.revoked.is_empty()
            && self.revoked_hashes.is_empty()
            && self.audit.is_empty()
            && self.tenants.is_empty()
            && self.agents.is_empty()
            && self.policy.is_none()
            && self.purge_before.is_none()
            && self.next_seq.is_none()
    }
}

/// Everything one batch writes and owes, sealed by the engine.
#[derive(Default)]
pub struct Batch {
    pub tasks: Vec<TaskWrite>,
    /// Tasks this batch finished: they leave the engine's memory once it is committed.
    pub finished: Vec<TaskId>,
    pub writes: Writes,
    pub pushes: Vec<(Outbox, Outbound)>,
    pub deferred: Vec<Deferred>,
    /// What the batch publishes on the event stream once it is durable.
    pub events: Vec<Event>,
    pub hub: Option<Arc<EventHub>>,
}

impl Batch {
    /// Whether committing the batch would write anything.
    pub fn writes_anything(&self) -> bool {
        !self.tasks.is_empty() || !self.writes.is_empty()
    }

    /// Whether the batch only answers requests: nothing to write and nothing to push. Such a
    /// batch may be released at once by the engine, on its own thread, when no batch is with the
    /// writer. One that pushes goes through the writer even with nothing to write, so its
    /// frames leave after those of the batch before (the writer may still be releasing them).
    pub fn answers_only(&self) -> bool {
        !self.writes_anything() && self.pushes.is_empty() && self.events.is_empty()
    }

    /// Lets the pushes out, then the answers: the batch is durable (or wrote nothing).
    /// Events go last, so the answers do not wait for their framing.
    pub fn release(self) {
        for (outbox, outbound) in self.pushes {
            outbox.control(outbound);
        }
        for answer in self.deferred {
            answer(Ok(()));
        }
        if let Some(hub) = &self.hub {
            hub.publish(self.events);
        }
    }

    /// Drops the pushes and refuses every request: nothing of the batch was kept.
    pub fn refuse(self) {
        for answer in self.deferred {
            answer(Err(EngineError::Unavailable));
        }
    }
}

/// What the writer reports of one batch.
pub struct Committed {
    pub finished: Vec<TaskId>,
    /// Agents whose tokens the batch revoked.
    pub revoked: Vec<String>,
    /// What the batch's purge of finished tasks did.
    pub purged: Purged,
    pub result: Result<(), StoreError>,
}

/// What the writer has done since the hub started, for `/metrics` and the load generator.
#[derive(Debug)]
pub struct CommitStats {
    /// Each transaction's write and commit, disk flush included, failed ones too.
    pub latency: super::histogram::Histogram,
    commits: AtomicU64,
    failures: AtomicU64,
    task_writes: AtomicU64,
    micros: AtomicU64,
    pruned: AtomicU64,
}

impl Default for CommitStats {
    fn default() -> CommitStats {
        CommitStats {
            latency: super::histogram::Histogram::new(super::histogram::WORK_BUCKETS),
            commits: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            task_writes: AtomicU64::new(0),
            micros: AtomicU64::new(0),
            pruned: AtomicU64::new(0),
        }
    }
}

impl CommitStats {
    /// Transactions committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Transactions that failed (their batches were refused).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Task records written by committed transactions.
    pub fn task_writes(&self) -> u64 {
        self.task_writes.load(Ordering::Relaxed)
    }

    /// Finished tasks deleted after their retention by committed transactions.
    pub fn pruned(&self) -> u64 {
        self.pruned.load(Ordering::Relaxed)
    }

    /// Time spent writing and committing, flushes included.
    pub fn seconds(&self) -> f64 {
        self.micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn record(&self, batch: &Batch, took: std::time::Duration, purged: Option<Purged>) {
        if let Some(purged) = purged {
            self.pruned
                .fetch_add(purged.purged as u64, Ordering::Relaxed);
            self.commits.fetch_add(1, Ordering::Relaxed);
            self.task_writes
                .fetch_add(batch.tasks.len() as u64, Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.latency.observe(took);
    }
}

/// The handle the engine holds: batches go in, reports come back.
pub struct Writer {
    batches: Sender<Batch>,
    pub reports: Receiver<Committed>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread. It stops when the handle is dropped, after the batch in hand.
    pub fn start(store: Arc<Store>, stats: Arc<CommitStats>) -> Writer {
        let (batches, inbox) = crossbeam_channel::bounded::<Batch>(1);
        let (report, reports) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("switchyard-writer".into())
            .spawn(move || {
                for batch in inbox {
                    if !commit(&store, batch, &report, &stats) {
                        break;
                    }
                }
            })
            .expect("the writer thread starts");
        Writer {
            batches,
            reports,
            thread,
        }
    }

    /// Stops the writer once the batch in hand, if any, is committed (and its answers sent),
    /// and waits for that: a stopping hub finishes the commit in flight.
    pub fn finish(self) {
        let Writer {
            batches,
            reports,
            thread,
        } = self;
        drop(batches);
        // Its report has no one to go to: the engine has stopped.
        drop(reports);
        let _ = thread.join();
    }

    pub fn send(&self, batch: Batch) {
        // The writer stops only when `batches` is dropped or the engine stops taking reports,
        // and the engine holds both ends.
        let _ = self.batches.send(batch);
    }
}

/// Commits `batch`, reports it to the engine, then releases or refuses what it owes. The report
/// goes first: a client answered by this commit may act on the answer at once (identify with
/// a token made here, say), and the engine must know of the commit before it sees that.
fn commit(
    store: &Store,
    mut batch: Batch,
    report: &Sender<Committed>,
    stats: &CommitStats,
) -> bool {
    // A batch that only pushes frames opens no transaction; it is here to keep their order.
    let result = if batch.writes_anything() {
        let started = Instant::now();
        let result = write(store, &batch);
        stats.record(&batch, started.elapsed(), result.as_ref().ok().copied());
        result
    } else {
        Ok(Purged::default())
    };
    let committed = result.is_ok();
    let purged = result.as_ref().ok().copied().unwrap_or_default();
    let reported = report.send(Committed {
        finished: std::mem::take(&mut batch.finished),
        revoked: std::mem::take(&mut batch.writes.revoked),
        purged,
        result: result.map(|_| ()),
    });
    if committed {
        batch.release();
    } else {
        batch.refuse();
    }
    reported.is_ok()
}

fn write(store: &Store, batch: &Batch) -> Result<Purged, StoreError> {
    let mut txn = store.write_txn()?;
    for task in &batch.tasks {
        store.write_task(&mut txn, task)?;
    }
    let writes = &batch.writes;
    if let Some(seq) = writes.next_seq {
        store.set_next_seq(&mut txn, seq)?;
    }
    // Revocations first: the tokens left in `tokens` were made after them (`EngineState::revoke`).
    for agent_id in &writes.revoked {
        store.revoke_tokens(&mut txn, agent_id)?;
    }
    for hash in &writes.revoked_hashes {
        store.delete_token(&mut txn, hash)?;
    }
    for (token, record) in &writes.tokens {
        store.put_token(&mut txn, token, record)?;
    }
    for change in &writes.tenants {
        match change {
            TenantWrite::Put(tenant) => store.put_tenant(&mut txn, tenant)?,
            TenantWrite::Delete(name) => {
                store.delete_tenant(&mut txn, name)?;
            }
        }
    }
    for record in &writes.agents {
        store.put_agent(&mut txn, record)?;
    }
    if let Some((policy, upload)) = &writes.policy {
        store.set_policy(&mut txn, policy, upload.as_deref())?;
    }
    store.append_audit(&mut txn, &writes.audit)?;
    let mut purged = Purged::default();
    if let Some(before) = writes.purge_before {
        purged = store.purge_finished(&mut txn, before, PURGE_BATCH)?;
        if purged.purged > 0 {
            tracing::info!(
                purged = purged.purged,
                "pruned finished tasks past their retention"
            );
        }
    }
    txn.commit()?;
    Ok(purged)
}
