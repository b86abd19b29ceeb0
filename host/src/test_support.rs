//! Helpers shared by unit tests in several modules.

use std::path::PathBuf;

/// A folder name under the system temp dir, unique to this process and moment, removed with
/// everything in it on drop. The folder itself is not created: a test of code that creates its
/// own folder needs it missing.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        TempDir(std::env::temp_dir().join(format!(
            "switchyard-{name}-{}-{nanos:x}",
            std::process::id()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
