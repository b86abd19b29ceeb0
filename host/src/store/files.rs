//! The data folder itself and the one secret file in it, `admin.token`.
//!
//! The folder holds hashed tokens, every task and compiled policy code the hub runs, so it is
//! created owner-only whatever the umask, and an existing folder others can read or enter is
//! reported. `admin.token` is never written through a link: an attacker who can plant a
//! symlink in the folder's place must not get the admin token written where they can read it.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file the admin token is written to, in the data folder.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Why a file of the data folder could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot create data folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is a symbolic link; the admin token is never written through one (remove it)")]
    Symlink { path: PathBuf },
    #[error("{path} exists and is not a regular file; remove it")]
    NotAFile { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Creates `dir` (and its parents) owner-only (0700). An existing folder is left as it is, but
/// if its group or others may use it a warning says so: what is inside is as sensitive as the
/// admin token. Returns whether the folder is private.
pub fn create_data_dir(dir: &Path) -> Result<bool, FileError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| FileError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    let mode = fs::metadata(dir)
        .map_err(|source| FileError::CreateDir {
            path: dir.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    let private = mode & 0o077 == 0;
    if !private {
        tracing::warn!(
            path = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data folder can be used by other users; it holds every task, the hashed \
             tokens and policy code the hub runs: chmod 700 it"
        );
    }
    Ok(private)
}

/// Writes `token` to `DIR/admin.token`, mode 0600. A new file is created with `O_EXCL` and
/// `O_NOFOLLOW`; an existing regular file is replaced whole (a new file made the same way,
/// then renamed over it); a symbolic link or anything else there is refused.
pub fn write_admin_token(dir: &Path, token: &str) -> Result<PathBuf, FileError> {
    let path = dir.join(ADMIN_TOKEN_FILE);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(FileError::Symlink { path }),
        Ok(meta) if !meta.file_type().is_file() => return Err(FileError::NotAFile { path }),
        Ok(_) => {
            static NEXT_TEMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let temp = dir.join(format!(
                ".{ADMIN_TOKEN_FILE}.{}-{}.tmp",
                std::process::id(),
                NEXT_TEMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let _ = fs::remove_file(&temp);
            create_secret(&temp, token)?;
            fs::rename(&temp, &path).map_err(|source| {
                let _ = fs::remove_file(&temp);
                FileError::Write {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_secret(&path, token)?,
        Err(source) => return Err(FileError::Write { path, source }),
    }
    Ok(path)
}

/// Creates `path` (which must not exist, and is not followed if it is a link) with `secret` and
/// a newline, mode 0600, flushed to disk.
fn create_secret(path: &Path, secret: &str) -> Result<(), FileError> {
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(path)?;
        writeln!(file, "{secret}")?;
        file.sync_all()
    };
    write().map_err(|source| match fs::symlink_metadata(path) {
        // Planted between the check and the open: O_EXCL refused it.
        Ok(meta) if meta.file_type().is_symlink() => FileError::Symlink {
            path: path.to_owned(),
        },
        _ => FileError::Write {
            path: path.to_owned(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_dir;

    #[test]
    fn the_folder_is_owner_only_whatever_the_umask() {
        let dir = temp_dir().join("nested").join("data");
        // SAFETY: umask is process-wide; this test only restores what it found.
        let old = unsafe { libc::umask(0) };
        let created = create_data_dir(&dir);
        unsafe { libc::umask(old) };
        assert!(created.unwrap(), "private");
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!create_data_dir(&dir).unwrap(), "reported as shared");
    }

    #[test]
    fn the_token_file_is_0600_replaced_whole_and_never_through_a_link() {
        let dir = temp_dir();
        create_data_dir(&dir).unwrap();
        let path = write_admin_token(&dir, "first").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "first\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_admin_token(&dir, "second").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second\n");

        let target = dir.join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let refused = write_admin_token(&dir, "third").unwrap_err();
        assert!(matches!(refused, FileError::Symlink { .. }), "{refused}");
        assert!(refused.to_string().contains("symbolic link"), "{refused}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        // O_NOFOLLOW and O_EXCL hold on their own, without the check before them.
        assert!(create_secret(&path, "fourth").is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
    }
}
