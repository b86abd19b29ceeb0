//! The durable state folder: the task in flight and its result until the hub has it.
//!
//! The sidecar holds at most one task, so the folder holds at most one record, `task.json`.
//! It is written before the sidecar acknowledges anything to the hub (`task_accepted`, then the
//! result), always as write-temp + fsync + rename + fsync-folder, so after a crash the file is
//! either the old record or the new one, never a torn mix. It is removed once the hub has
//! acknowledged the result (or has taken the task away). A lock file keeps two sidecars from
//! sharing one folder, which would have them overwrite each other's record.

use crate::sidecar::process::ProcessMark;
use crate::wire::TaskId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const RECORD: &str = "task.json";
const TEMP: &str = "task.json.tmp";
const LOCK: &str = "lock";

/// The one task this sidecar holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: TaskId,
    pub generation: u64,
    pub description: String,
    pub metadata: Value,
    pub assigned_at: u64,
    /// How many times this sidecar has started the worker for it: more than 1 after a restart
    /// of the sidecar interrupted a run.
    pub attempt: u32,
    /// The worker's process group while it runs, so a restarted sidecar can kill what a
    /// crashed one left running.
    #[serde(default)]
    pub worker: Option<ProcessMark>,
    /// How the task ended here, kept until the hub acknowledges the report of it. (Named
    /// `outcome` in the file, as state folders written before the rename have it.)
    #[serde(default, rename = "outcome")]
    pub verdict: Option<Verdict>,
}

/// How a task ended on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// Reported with `task_complete`.
    Success { result: Value },
    /// Reported with `task_failed`: the hub retries or dead-letters it.
    Failure { error: String },
    /// The worker could not be started at all: reported with `task_rejected`, so the task goes
    /// back to the queue without counting as one of its failed attempts.
    Rejected { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state folder {0} is in use by another switchyard agent")]
    Locked(PathBuf),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The open, locked state folder.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// Held for the life of the sidecar: the flock goes with it.
    _lock: File,
}

impl StateDir {
    /// Creates and locks the folder, and reads the record a previous run left, if any. A
    /// record that cannot be read is moved aside (and logged) rather than stopping the agent.
    pub fn open(dir: &Path) -> Result<(StateDir, Option<TaskRecord>), StateError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let lock_path = dir.join(LOCK);
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StateError::Locked(dir.to_path_buf()));
        }
        // For whoever looks at the folder: which process holds it.
        let _ = lock
            .set_len(0)
            .and_then(|()| writeln!(lock, "{}", std::process::id()));

        let _ = std::fs::remove_file(dir.join(TEMP));
        let state = StateDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        let path = dir.join(RECORD);
        let record = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<TaskRecord>(&bytes) {
                Ok(record) => Some(record),
                Err(error) => {
                    let aside = dir.join(format!("task.json.unreadable-{}", crate::wire::now_ms()));
                    tracing::error!(path = %path.display(), %error, aside = %aside.display(),
                        "the saved task cannot be read; moving it aside");
                    std::fs::rename(&path, &aside).map_err(io("move aside", &path))?;
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", &path)(e)),
        };
        Ok((state, record))
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Replaces the record, durably: temp file, fsync, rename, fsync of the folder.
    ///
    /// Blocking on purpose: the file is small, there is one task at a time, and nothing may be
    /// acknowledged to the hub until this returns.
    pub fn save(&self, record: &TaskRecord) -> Result<(), StateError> {
        let temp = self.dir.join(TEMP);
        let path = self.dir.join(RECORD);
        let bytes = serde_json::to_vec_pretty(record).expect("a task record always serializes");
        let mut file = File::create(&temp).map_err(io("create", &temp))?;
        file.write_all(&bytes).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        drop(file);
        std::fs::rename(&temp, &path).map_err(io("rename into place", &path))?;
        self.sync_dir()
    }

    /// Removes the record (the hub has the result, or took the task away).
    pub fn clear(&self) -> Result<(), StateError> {
        let path = self.dir.join(RECORD);
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }

    /// A rename or removal is durable only once the folder's entry is on disk too.
    fn sync_dir(&self) -> Result<(), StateError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("fsync", &self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-state-{name}-{}-{}",
            std::process::id(),
            crate::wire::now_ms()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn record() -> TaskRecord {
        TaskRecord {
            task_id: TaskId(7),
            generation: 3,
            description: "say \"hi\" $(touch x)".into(),
            metadata: json!({"k": [1, 2]}),
            assigned_at: 11,
            attempt: 1,
            worker: None,
            verdict: None,
        }
    }

    #[test]
    fn saves_reads_back_and_clears() {
        let dir = temp_dir("roundtrip");
        let (state, found) = StateDir::open(&dir).unwrap();
        assert_eq!(found, None);
        let mut saved = record();
        state.save(&saved).unwrap();
        saved.verdict = Some(Verdict::Failure {
            error: "exit code 1: no".into(),
        });
        state.save(&saved).unwrap();
        drop(state);

        let (state, found) = StateDir::open(&dir).unwrap();
        assert_eq!(found, Some(saved));
        assert!(!dir.join(TEMP).exists());
        state.clear().unwrap();
        state.clear().unwrap();
        drop(state);
        assert_eq!(StateDir::open(&dir).unwrap().1, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_sidecar_per_folder() {
        let dir = temp_dir("lock");
        let (first, _) = StateDir::open(&dir).unwrap();
        assert!(matches!(StateDir::open(&dir), Err(StateError::Locked(_))));
        drop(first);
        assert!(StateDir::open(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_record_is_moved_aside() {
        let dir = temp_dir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(RECORD), b"{not json").unwrap();
        let (_state, found) = StateDir::open(&dir).unwrap();
        assert_eq!(found, None);
        let aside = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("task.json.unreadable-")
            });
        assert!(aside);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn verdicts_have_a_stable_shape() {
        let success = Verdict::Success {
            result: json!({"n": 1}),
        };
        assert_eq!(
            serde_json::to_value(&success).unwrap(),
            json!({"status": "success", "result": {"n": 1}})
        );
        let rejected = Verdict::Rejected { reason: "r".into() };
        assert_eq!(
            serde_json::to_value(&rejected).unwrap(),
            json!({"status": "rejected", "reason": "r"})
        );
        let failed = TaskRecord {
            verdict: Some(Verdict::Failure { error: "e".into() }),
            ..record()
        };
        let on_disk = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            on_disk["outcome"],
            json!({"status": "failure", "error": "e"})
        );
        assert_eq!(
            serde_json::from_value::<TaskRecord>(on_disk).unwrap(),
            failed
        );
    }
}
