//! `switchyard backup`: a consistent copy of a data folder's store, taken while the hub runs.
//!
//! LMDB copies an environment inside one read transaction, so the copy is exactly some commit
//! and the hub's writer is never blocked (readers do not block the writer). With compaction
//! the copy leaves out free pages, so it is no larger than the live data. The copy is written
//! to a temporary file beside the target and renamed into place only once it is complete and
//! on disk: a failed or interrupted backup never leaves a partial file under the target name.

use heed::{CompactionOption, EnvOpenOptions};
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a backup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not a switchyard data folder (it has no data.mdb)")]
    NotADataFolder(PathBuf),
    #[error("{0} already exists; choose another file or remove it")]
    TargetExists(PathBuf),
    #[error("cannot open the store in {path}: {source}")]
    Open { path: PathBuf, source: heed::Error },
    #[error("cannot write the copy to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot copy the store: {0}")]
    Copy(heed::Error),
}

/// Copies the store of the data folder `dir` to the new file `to` (compacted, mode 0600), and
/// returns its size in bytes. The hub may be running on `dir` meanwhile.
pub fn backup(dir: &Path, to: &Path) -> Result<u64, BackupError> {
    if !dir.join("data.mdb").is_file() {
        return Err(BackupError::NotADataFolder(dir.to_owned()));
    }
    if fs::symlink_metadata(to).is_ok() {
        return Err(BackupError::TargetExists(to.to_owned()));
    }
    // SAFETY: this process opens the environment once, and only LMDB (here and in the hub)
    // writes its files. Opening it beside a running hub is how LMDB is meant to be shared
    // between processes: the lock file coordinates them. The map size only bounds this
    // process's view; LMDB takes the file's size when it is larger.
    let env = unsafe {
        EnvOpenOptions::new()
            .read_txn_without_tls()
            .max_dbs(16)
            .open(dir)
    }
    .map_err(|source| BackupError::Open {
        path: dir.to_owned(),
        source,
    })?;
    let write_error = |source| BackupError::Write {
        path: to.to_owned(),
        source,
    };
    let temp = to.with_file_name(format!(
        ".{}.{}.partial",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("backup"),
        std::process::id()
    ));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(write_error)?;
    let copied = env
        .copy_to_file(&mut file, CompactionOption::Enabled)
        .map_err(BackupError::Copy)
        .and_then(|()| file.sync_all().map_err(write_error))
        .and_then(|()| file.metadata().map_err(write_error))
        .and_then(|meta| {
            // No replacing: a file that appeared at the target meanwhile is kept.
            fs::hard_link(&temp, to).map_err(write_error)?;
            Ok(meta.len())
        });
    let _ = fs::remove_file(&temp);
    copied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_dir;
    use crate::store::Store;

    #[test]
    fn a_copy_opens_as_a_store_with_the_same_data() {
        let dir = temp_dir();
        let store = Store::open(&dir, 64 << 20).unwrap();
        let mut txn = store.write_txn().unwrap();
        store.set_next_seq(&mut txn, 4242).unwrap();
        txn.commit().unwrap();
        // One process opens a folder once (heed refuses a second open); the copy beside a
        // running hub, from another process, is the end-to-end suite's.
        drop(store);
        let target = temp_dir();
        fs::create_dir_all(&target).unwrap();
        let copy = target.join("switchyard.backup");
        let size = backup(&dir, &copy).unwrap();
        assert!(size > 0);
        let again = backup(&dir, &copy).unwrap_err();
        assert!(matches!(again, BackupError::TargetExists(_)), "{again}");

        let restored = temp_dir();
        fs::create_dir_all(&restored).unwrap();
        fs::copy(&copy, restored.join("data.mdb")).unwrap();
        let store = Store::open(&restored, 64 << 20).unwrap();
        assert_eq!(store.next_seq(&store.read_txn().unwrap()).unwrap(), 4242);

        let refused = backup(&target, &target.join("x")).unwrap_err();
        assert!(refused.to_string().contains("not a switchyard data folder"));
    }
}
