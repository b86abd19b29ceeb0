//! Durable state in LMDB (through heed): tasks, their status indices, hashed tokens, agents,
//! tenants, and meta (schema version, the next task sequence number, the policy in force).
//!
//! One environment per process, opened once. Once it is open, only the engine's writer thread
//! writes, one transaction per batch (group commit); HTTP handlers and the engine read through
//! their own read transactions, which see exactly what has been committed.

mod audit;
mod backup;
mod codec;
mod files;
mod listing;
mod scoped;
mod tasks;
mod tenants;
mod tokens;

pub use audit::AuditPage;
pub use backup::{backup, BackupError};
/// The record codec, public for the fuzz targets (`fuzz/`), which feed its decoder arbitrary
/// bytes; the rest of the hub reads and writes records through [`Store`].
pub use codec::{decode_task, encode_task, DecodeError};
pub use files::{create_data_dir, write_admin_token, FileError, ADMIN_TOKEN_FILE};
pub use listing::{TaskFilter, TaskPage};
pub use tasks::{Purged, Stats, TaskWrite};
pub use tokens::{hash_token, AgentRecord, Role, TokenRecord, ADMIN_AGENT_ID, PREFIX_LEN};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The layout version of the data folder. Bumped on any incompatible change.
///
/// 2: task records may be binary (`codec`). A version 1 folder is taken as it is (its JSON
/// task records still decode) and marked 2, after which a version 1 build refuses it.
/// 3: binary records may carry run and heartbeat timeouts (`codec`'s form 2). Older folders
/// are taken as they are and marked 3, after which older builds refuse them.
pub const SCHEMA_VERSION: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Files(#[from] FileError),
    #[error("LMDB error: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("stored record is corrupt ({what}): {source}")]
    Corrupt {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("stored task {id} is corrupt: {source}")]
    CorruptTask {
        id: crate::wire::TaskId,
        source: codec::DecodeError,
    },
    #[error(
        "data folder has schema version {found}, this build reads versions 1 to {SCHEMA_VERSION}"
    )]
    SchemaMismatch { found: u32 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

type Db = Database<'static, Bytes, Bytes>;

/// The policy in force, remembered so a restart loads it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedPolicy {
    /// `builtin:NAME`, a file path, or `upload` for bytes given over HTTP. The component of a
    /// file or an upload is kept in meta, so a restart never depends on a file outside the data
    /// folder.
    pub source: String,
    pub config: serde_json::Value,
    /// `sha256:<hex>` of the kept component, checked before it is loaded again. Absent in
    /// records written before components of files were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

pub struct Store {
    env: Env<WithoutTls>,
    /// The data folder.
    dir: PathBuf,
    /// id (u64 BE) → task record: binary (`codec`), or JSON if schema version 1 wrote it and
    /// the task has not changed since.
    tasks: Db,
    /// priority (u8) ++ id → ().
    queued: Db,
    /// id → ().
    assigned: Db,
    /// id → ().
    dead_letter: Db,
    /// finished-at ms (u64 BE) ++ id → (), for completed tasks; purged after retention.
    completed: Db,
    /// likewise for cancelled tasks.
    cancelled: Db,
    /// sha256(token) → token record JSON.
    tokens: Db,
    /// agent id → agent record JSON.
    agents: Db,
    /// name → value.
    meta: Db,
    /// record id (u64 BE) → audit record JSON (`audit`). Made on first open by a build that
    /// has it; older folders simply gain it.
    audit: Db,
    /// tenant name → tenant record JSON (`tenants`). The `default` tenant is not stored until
    /// an admin changes it.
    tenants: Db,
}

const META_SCHEMA: &[u8] = b"schema_version";
const META_NEXT_SEQ: &[u8] = b"next_seq";
const META_POLICY: &[u8] = b"policy";
const META_POLICY_BYTES: &[u8] = b"policy_bytes";

impl Store {
    /// Opens (creating if needed) the store in `dir`. `map_size` is the largest the data may
    /// grow to; it is address space, not memory.
    pub fn open(dir: &Path, map_size: usize) -> Result<Store> {
        create_data_dir(dir)?;
        // SAFETY: heed requires that the same path is not opened twice in one process and that
        // the files are not modified by anything but LMDB; the hub opens its folder once.
        let env = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .map_size(map_size)
                .max_dbs(16)
                .max_readers(1024)
                .open(dir)?
        };
        let wtxn = env.write_txn()?;
        let dbs = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                let mut open = |name| opener.create_database::<Bytes, Bytes>(wtxn, Some(name));
                let dbs = [
                    open("tasks")?,
                    open("queued")?,
                    open("assigned")?,
                    open("dead_letter")?,
                    open("completed")?,
                    open("cancelled")?,
                    open("tokens")?,
                    open("agents")?,
                    open("meta")?,
                    open("audit")?,
                    open("tenants")?,
                ];
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit(dbs))
            })?
            .unwrap_commit();
        let [tasks, queued, assigned, dead_letter, completed, cancelled, tokens, agents, meta, audit, tenants] =
            dbs;
        let store = Store {
            env,
            dir: dir.to_owned(),
            tasks,
            queued,
            assigned,
            dead_letter,
            completed,
            cancelled,
            tokens,
            agents,
            meta,
            audit,
            tenants,
        };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<()> {
        let mut wtxn = self.write_txn()?;
        match self.meta.get(&wtxn, META_SCHEMA)? {
            Some(bytes) => {
                let found = u32::from_be_bytes(bytes.try_into().unwrap_or([0; 4]));
                match found {
                    SCHEMA_VERSION => {}
                    1 | 2 => {
                        tracing::info!(from = found, to = SCHEMA_VERSION, "data folder upgraded");
                        self.meta
                            .put(&mut wtxn, META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                    }
                    _ => return Err(StoreError::SchemaMismatch { found }),
                }
            }
            None => {
                // A new folder: its task ids start from its birth time, so they never repeat
                // those of a folder it replaces (see `first_task_id`).
                self.meta
                    .put(&mut wtxn, META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                self.set_next_seq(&mut wtxn, first_task_id(crate::wire::now_ms()))?;
            }
        }
        wtxn.commit()?;
        Ok(())
    }

    /// The data folder the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn write_txn(&self) -> Result<RwTxn<'_>> {
        Ok(self.env.write_txn()?)
    }

    pub fn read_txn(&self) -> Result<RoTxn<'_, WithoutTls>> {
        Ok(self.env.read_txn()?)
    }

    /// The sequence number the next submitted task gets (ids are never reused, even after
    /// finished tasks are purged). A folder made before ids started from the folder's birth
    /// time has none stored until its first task, and counts from 1.
    pub fn next_seq(&self, txn: &RoTxn) -> Result<u64> {
        Ok(match self.meta.get(txn, META_NEXT_SEQ)? {
            Some(bytes) => u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8])),
            None => 1,
        })
    }

    pub fn set_next_seq(&self, txn: &mut RwTxn, seq: u64) -> Result<()> {
        Ok(self.meta.put(txn, META_NEXT_SEQ, &seq.to_be_bytes())?)
    }

    /// The policy in force at the last swap, and its component's bytes if it came from a file
    /// or over HTTP.
    pub fn policy(&self, txn: &RoTxn) -> Result<Option<(PersistedPolicy, Option<Vec<u8>>)>> {
        let Some(bytes) = self.meta.get(txn, META_POLICY)? else {
            return Ok(None);
        };
        let policy = serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
            what: "policy",
            source,
        })?;
        let upload = self.meta.get(txn, META_POLICY_BYTES)?.map(<[u8]>::to_vec);
        Ok(Some((policy, upload)))
    }

    pub fn set_policy(
        &self,
        txn: &mut RwTxn,
        policy: &PersistedPolicy,
        upload: Option<&[u8]>,
    ) -> Result<()> {
        let json = serde_json::to_vec(policy).expect("policy records serialize");
        self.meta.put(txn, META_POLICY, &json)?;
        match upload {
            Some(bytes) => self.meta.put(txn, META_POLICY_BYTES, bytes)?,
            None => {
                self.meta.delete(txn, META_POLICY_BYTES)?;
            }
        }
        Ok(())
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { what, source })
}

/// The first task id of a data folder created at `now` (ms): the time in the high bits (so
/// `task-` and the first 11 hex digits read as the folder's birth), a random offset below
/// 2^19 in the low 20. Ids then grow by one per task, so they sort by submission, and a folder
/// created later (a wiped one, say) starts above every id an earlier one could have reached
/// unless that one averaged over half a million tasks a millisecond. Sidecars keep files by
/// task id across hub restarts; this keeps a new folder's ids from meeting an old folder's.
/// Fits the 16 hex digits of the id's wire form until the year 2527.
pub fn first_task_id(now: u64) -> u64 {
    (now << 20) | rand::random_range(0..1 << 19)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::Store;
    use std::path::PathBuf;

    /// A fresh temporary folder (left behind for inspection; stores in tests are small).
    pub fn temp_dir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-store-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A store in a fresh temporary folder.
    pub fn temp_store() -> Store {
        Store::open(&temp_dir(), 64 << 20).expect("temporary store opens")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Task, TaskStatus};
    use crate::wire::http::NewTask;
    use crate::wire::tenant::DEFAULT_TENANT;
    use crate::wire::TaskId;

    fn set_schema(store: &Store, version: u32) {
        let mut txn = store.write_txn().unwrap();
        store
            .meta
            .put(&mut txn, META_SCHEMA, &version.to_be_bytes())
            .unwrap();
        txn.commit().unwrap();
    }

    #[test]
    fn a_version_1_folder_is_read_as_it_is_and_marked_current() {
        let dir = test_support::temp_dir();
        let new = NewTask::with_description("old");
        let task = Task::new(TaskId(1), new, "tester", DEFAULT_TENANT, 1_000);
        {
            // What schema version 1 wrote: the task as JSON, and its queued index entry.
            let store = Store::open(&dir, 64 << 20).unwrap();
            set_schema(&store, 1);
            let mut txn = store.write_txn().unwrap();
            store
                .tasks
                .put(
                    &mut txn,
                    &1u64.to_be_bytes(),
                    &serde_json::to_vec(&task).unwrap(),
                )
                .unwrap();
            let mut queued_key = vec![2u8];
            queued_key.extend_from_slice(&1u64.to_be_bytes());
            store.queued.put(&mut txn, &queued_key, &[]).unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&dir, 64 << 20).unwrap();
        let txn = store.read_txn().unwrap();
        let found = store.meta.get(&txn, META_SCHEMA).unwrap().unwrap();
        assert_eq!(found, SCHEMA_VERSION.to_be_bytes());
        let active = store.active_tasks(&txn).unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(*active[0], task);
        assert_eq!(active[0].status, TaskStatus::Queued);
    }

    /// A folder as the build before the audit log left it: its nine databases, no `audit`.
    /// It opens unchanged (same schema version, same data) and gains an empty audit log.
    #[test]
    fn a_folder_without_an_audit_log_opens_and_gains_one() {
        let dir = test_support::temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        {
            // SAFETY: this test opens the folder once at a time.
            let env = unsafe {
                EnvOpenOptions::new()
                    .map_size(64 << 20)
                    .max_dbs(16)
                    .open(&dir)
                    .unwrap()
            };
            let wtxn = env.write_txn().unwrap();
            let meta = env
                .create_databases_and_commit(wtxn, |opener, wtxn| {
                    for name in [
                        "tasks",
                        "queued",
                        "assigned",
                        "dead_letter",
                        "completed",
                        "cancelled",
                        "tokens",
                        "agents",
                    ] {
                        opener.create_database::<Bytes, Bytes>(wtxn, Some(name))?;
                    }
                    let meta = opener.create_database::<Bytes, Bytes>(wtxn, Some("meta"))?;
                    meta.put(wtxn, META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                    meta.put(wtxn, META_NEXT_SEQ, &77u64.to_be_bytes())?;
                    Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit(meta))
                })
                .unwrap()
                .unwrap_commit();
            let _ = meta;
        }
        let store = Store::open(&dir, 64 << 20).unwrap();
        let txn = store.read_txn().unwrap();
        assert_eq!(store.next_seq(&txn).unwrap(), 77);
        assert_eq!(
            store.meta.get(&txn, META_SCHEMA).unwrap().unwrap(),
            SCHEMA_VERSION.to_be_bytes()
        );
        assert!(store.audit_page(&txn, None, 10).unwrap().records.is_empty());
    }

    #[test]
    fn a_folder_from_a_later_version_is_refused() {
        let dir = test_support::temp_dir();
        let store = Store::open(&dir, 64 << 20).unwrap();
        set_schema(&store, SCHEMA_VERSION + 1);
        drop(store);
        let refused = Store::open(&dir, 64 << 20).err().expect("refused");
        assert!(
            matches!(refused, StoreError::SchemaMismatch { found } if found == SCHEMA_VERSION + 1)
        );
        assert!(
            refused
                .to_string()
                .contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{refused}"
        );
    }

    #[test]
    fn a_new_folder_numbers_tasks_from_its_birth_time_and_an_old_one_from_1() {
        let before = crate::wire::now_ms();
        let store = test_support::temp_store();
        let txn = store.read_txn().unwrap();
        let first = store.next_seq(&txn).unwrap();
        assert!(first >= before << 20, "{first}");
        assert!(first < (crate::wire::now_ms() + 1) << 20, "{first}");
        assert_eq!(TaskId(first).to_string().len(), "task-".len() + 16);
        drop(txn);

        // A folder made before: a schema but no sequence stored yet.
        let dir = test_support::temp_dir();
        let store = Store::open(&dir, 64 << 20).unwrap();
        let mut txn = store.write_txn().unwrap();
        store.meta.delete(&mut txn, META_NEXT_SEQ).unwrap();
        store
            .meta
            .put(&mut txn, META_SCHEMA, &2u32.to_be_bytes())
            .unwrap();
        txn.commit().unwrap();
        drop(store);
        let store = Store::open(&dir, 64 << 20).unwrap();
        assert_eq!(store.next_seq(&store.read_txn().unwrap()).unwrap(), 1);
    }
}
