//! Reading a policy component from a file, as `--policy FILE` and `PUT /api/policy
//! {"path": ...}` name one: regular files only, at most a set size, within a deadline.
//!
//! The path comes from an operator, but over HTTP it is only a string: a FIFO would block the
//! read forever and `/dev/zero` would fill memory. So the file's type and size are checked
//! before anything is read (the open does not block on a FIFO), at most the limit (plus one
//! byte, to notice a file that grew) is read, and the whole read runs on its own thread under
//! a deadline, so a stuck filesystem costs the caller the deadline, not the request forever.

use super::PolicyError;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The largest component read from a file unless `serve --max-policy-bytes` says otherwise.
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 32 << 20;

/// How long reading a component file may take.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);

static MAX_COMPONENT_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_COMPONENT_BYTES);

/// Sets the largest component the hub reads from a file or takes as an upload.
pub fn set_max_component_bytes(bytes: u64) {
    MAX_COMPONENT_BYTES.store(bytes, Ordering::Relaxed);
}

/// The largest component the hub reads from a file or takes as an upload.
pub fn max_component_bytes() -> u64 {
    MAX_COMPONENT_BYTES.load(Ordering::Relaxed)
}

/// Reads the component at `path` within [`READ_DEADLINE`], refusing anything but a regular
/// file of at most [`max_component_bytes`].
pub fn read_component_file(path: &Path) -> Result<Vec<u8>, PolicyError> {
    read_within(path.to_owned(), max_component_bytes(), READ_DEADLINE)
}

fn read_within(path: PathBuf, limit: u64, deadline: Duration) -> Result<Vec<u8>, PolicyError> {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    let reading = path.clone();
    std::thread::Builder::new()
        .name("switchyard-policy-read".into())
        .spawn(move || {
            let _ = done.send(read_checked(&reading, limit));
        })
        .map_err(|source| PolicyError::ReadFile {
            path: path.clone(),
            source,
        })?;
    match result.recv_timeout(deadline) {
        Ok(read) => read,
        // The thread is left to finish (or stay stuck) on its own; its result is dropped.
        Err(_) => Err(PolicyError::ReadTimeout {
            path,
            seconds: deadline.as_secs_f64(),
        }),
    }
}

fn read_checked(path: &Path, limit: u64) -> Result<Vec<u8>, PolicyError> {
    let io_error = |source| PolicyError::ReadFile {
        path: path.to_owned(),
        source,
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(PolicyError::NotARegularFile {
            path: path.to_owned(),
            what,
        });
    }
    let too_large = || PolicyError::ComponentTooLarge {
        what: path.display().to_string(),
        limit,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-component-file-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = temp("ok");
        let path = dir.join("p.wasm");
        fs::write(&path, b"\0asm1234").unwrap();
        assert_eq!(
            read_within(path.clone(), 8, READ_DEADLINE).unwrap(),
            b"\0asm1234"
        );
        let refused = read_within(path, 7, READ_DEADLINE).unwrap_err();
        assert!(matches!(
            refused,
            PolicyError::ComponentTooLarge { limit: 7, .. }
        ));
        assert!(refused.to_string().contains("7 bytes"), "{refused}");
    }

    #[test]
    fn devices_fifos_and_folders_are_refused_at_once() {
        let dir = temp("special");
        let fifo = dir.join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a plain mkfifo on a path this test owns.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        for (path, what) in [
            (fifo, "a FIFO"),
            (PathBuf::from("/dev/zero"), "a character device"),
            (dir.clone(), "a directory"),
        ] {
            let refused = read_within(path.clone(), 1 << 20, READ_DEADLINE).unwrap_err();
            assert!(
                matches!(refused, PolicyError::NotARegularFile { what: w, .. } if w == what),
                "{}: {refused}",
                path.display()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(2), "quickly");
    }
}
