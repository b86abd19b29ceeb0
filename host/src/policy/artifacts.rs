//! Compiled policy code kept on disk between runs.
//!
//! Compiling a policy component takes a noticeable time (about 14 ms in a release build, a few
//! hundred in a debug build, more for a bigger policy), and the hub does it at every start and
//! every swap. Loading the compiled artifact back takes a small fraction of that, so the hub
//! keeps each compiled component in its data folder (`<data-dir>/policy-cache/`), named after
//! the component's content and the engine it was compiled for.
//!
//! The cache only saves time: a file that is missing, unreadable, truncated or from another
//! engine is ignored (and rewritten), and one that cannot be written is only logged.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::PolicyError;

/// Artifacts kept at most; the least recently written beyond this are removed. An operator
/// trying out policies leaves one file per distinct component (a few hundred KB each).
const MAX_ARTIFACTS: usize = 16;

/// Compiled artifact files end with this.
const EXTENSION: &str = "cwasm";

/// Length of the checksum that starts every artifact file.
const CHECKSUM_LEN: usize = 32;

/// Where a component's compiled code came from, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provenance {
    /// The in-memory cache of this process.
    Memory,
    /// An artifact file written by an earlier compilation.
    Disk,
    /// Compiled just now.
    Compiled,
}

impl Provenance {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Provenance::Memory => "memory",
            Provenance::Disk => "disk",
            Provenance::Compiled => "compiled",
        }
    }
}

/// What a compiled component is cached under: the component's content and the engine's
/// compatibility hash (the wasmtime version and every setting that changes generated code),
/// so an artifact from another build of the hub is never even opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArtifactKey {
    component: [u8; 32],
    engine: [u8; 32],
}

impl ArtifactKey {
    pub(crate) fn new(engine: &Engine, component_digest: &[u8; 32]) -> ArtifactKey {
        // wasmtime exposes the compatibility hash as `impl Hash`; feeding it to SHA-256 gives a
        // name that is stable across runs, unlike std's `DefaultHasher`, whose algorithm may
        // change between Rust releases.
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactKey {
            component: *component_digest,
            engine: hasher.0.finalize().into(),
        }
    }

    fn file_name(&self) -> String {
        format!(
            "{}-{}.{EXTENSION}",
            hex::encode(self.component),
            hex::encode(&self.engine[..8])
        )
    }
}

/// A [`Hasher`] that feeds SHA-256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(
            digest[..8]
                .try_into()
                .expect("a SHA-256 digest has 32 bytes"),
        )
    }
}

/// The component compiled from `bytes`: loaded from `dir` when an artifact for `key` is there
/// and sound, else compiled and written there for next time.
pub(crate) fn load_or_compile(
    engine: &Engine,
    bytes: &[u8],
    key: &ArtifactKey,
    dir: &Path,
) -> Result<(Component, Provenance), PolicyError> {
    let path = dir.join(key.file_name());
    match read_artifact(engine, &path) {
        Ok(Some(component)) => {
            debug!(path = %path.display(), "policy artifact loaded from the cache");
            return Ok((component, Provenance::Disk));
        }
        Ok(None) => {}
        Err(why) => warn!(
            path = %path.display(),
            %why,
            "cached policy artifact is unusable; compiling again"
        ),
    }
    let component =
        Component::new(engine, bytes).map_err(|e| PolicyError::Compile(format!("{e:#}")))?;
    match write_artifact(dir, &path, &component) {
        Ok(()) => prune(dir, &path),
        // A cache that cannot be written costs a compilation next time, nothing more.
        Err(why) => warn!(path = %path.display(), %why, "cannot cache the compiled policy"),
    }
    Ok((component, Provenance::Compiled))
}

/// The artifact at `path`; `None` when there is none. An error says why an existing file is
/// unusable.
fn read_artifact(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    let file = match fs::read(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    if file.len() < CHECKSUM_LEN {
        return Err("it is truncated".into());
    }
    let (checksum, artifact) = file.split_at(CHECKSUM_LEN);
    if Sha256::digest(artifact).as_slice() != checksum {
        return Err("its checksum does not match (truncated or corrupted)".into());
    }
    // SAFETY: `Component::deserialize` trusts its input to be code that wasmtime compiled: it
    // maps it executable without validating it, so arbitrary bytes could do anything. These
    // bytes are such code:
    // - the file is in the hub's own data folder, in a subfolder created owner-only (0700), and
    //   only `write_artifact` writes there: `Component::serialize` output, written to a
    //   temporary file and renamed into place, so the name never shows a partial file;
    // - the checksum above matches, so these are the bytes that were written, not a truncated
    //   or bit-rotted copy;
    // - the name carries the engine's compatibility hash, so the code was generated for this
    //   wasmtime version and configuration (and wasmtime itself checks the version and settings
    //   recorded inside the artifact again, refusing a mismatch with an error).
    // What remains is someone who can write into the data folder on purpose. They can already
    // replace the hub's tasks and admin token there; with this cache they could also run code as
    // the hub's user, so the data folder must be protected like the binary itself (README).
    let component = unsafe { Component::deserialize(engine, artifact) }
        .map_err(|e| format!("wasmtime refuses it: {e:#}"))?;
    Ok(Some(component))
}

/// Writes `component` to `path` atomically: a temporary file in the same folder, flushed to
/// disk, then renamed over `path`.
fn write_artifact(dir: &Path, path: &Path, component: &Component) -> Result<(), String> {
    static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
    create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let artifact = component
        .serialize()
        .map_err(|e| format!("cannot serialize the component: {e:#}"))?;
    let checksum = Sha256::digest(&artifact);
    let temp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact"),
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(&checksum)?;
        file.write_all(&artifact)?;
        // On disk before the rename: after a crash the name holds the whole file or nothing.
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temp);
        format!("cannot write it: {e}")
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Removes the least recently written artifacts beyond [`MAX_ARTIFACTS`], never `keep`.
fn prune(dir: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut artifacts: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == EXTENSION) && path != keep)
        .filter_map(|path| Some((fs::metadata(&path).ok()?.modified().ok()?, path)))
        .collect();
    // `keep` is one more.
    let excess = (artifacts.len() + 1).saturating_sub(MAX_ARTIFACTS);
    artifacts.sort();
    for (_, path) in artifacts.into_iter().take(excess) {
        match fs::remove_file(&path) {
            Ok(()) => debug!(path = %path.display(), "removed an old policy artifact"),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot remove an old policy artifact")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::time::Instant;

    fn greedy_component() -> (&'static [u8], [u8; 32]) {
        let bytes = crate::policy::builtin::BUILTIN_POLICIES
            .iter()
            .find(|(name, _)| *name == "greedy")
            .map(|(_, bytes)| *bytes)
            .expect("greedy is built in");
        (bytes, Sha256::digest(bytes).into())
    }

    fn artifact_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The first load compiles and writes the artifact (and nothing else: no temporary file is
    /// left); the second loads it back. A corrupted file is compiled again and rewritten.
    #[test]
    fn a_second_load_comes_from_disk_and_a_corrupt_file_is_replaced() {
        let engine = super::super::wasm::engine().expect("engine");
        let (bytes, digest) = greedy_component();
        let key = ArtifactKey::new(engine, &digest);
        let dir = TempDir::new("artifacts");

        let started = Instant::now();
        let (_, first) = load_or_compile(engine, bytes, &key, &dir.0).expect("compiles");
        let compile_time = started.elapsed();
        assert_eq!(first, Provenance::Compiled);
        let files = artifact_files(&dir.0);
        assert_eq!(
            files,
            [dir.0.join(key.file_name())],
            "one artifact, no temp file"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&dir.0)
            .expect("cache dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the cache folder is owner-only");

        let started = Instant::now();
        let (component, second) = load_or_compile(engine, bytes, &key, &dir.0).expect("loads");
        let load_time = started.elapsed();
        assert_eq!(second, Provenance::Disk);
        // The loaded code is usable: it instantiates and answers.
        let compiled = super::super::wasm::Compiled::from_component(engine, &component)
            .expect("a policy component");
        let (name, _) = compiled.probe().expect("about works");
        assert_eq!(name, "greedy");
        eprintln!("greedy: compiled in {compile_time:?}, loaded from disk in {load_time:?}");

        // Flip one byte of the code: the checksum catches it.
        let path = &files[0];
        let mut file = fs::read(path).expect("artifact");
        let last = file.len() - 1;
        file[last] ^= 0xff;
        fs::write(path, &file).expect("corrupt it");
        let (_, third) = load_or_compile(engine, bytes, &key, &dir.0).expect("recompiles");
        assert_eq!(third, Provenance::Compiled);
        let (_, fourth) = load_or_compile(engine, bytes, &key, &dir.0).expect("loads");
        assert_eq!(fourth, Provenance::Disk, "the corrupt file was rewritten");

        // Garbage that passes no check at all, and a file too short for a checksum.
        for garbage in [
            &b"not an artifact at all, but long enough for a checksum"[..],
            b"x",
        ] {
            fs::write(path, garbage).expect("garbage");
            let (_, again) = load_or_compile(engine, bytes, &key, &dir.0).expect("recompiles");
            assert_eq!(again, Provenance::Compiled);
        }
    }

    /// An artifact whose checksum matches but that wasmtime does not accept (here: valid bytes
    /// of something that is not an artifact) is compiled again rather than trusted further.
    #[test]
    fn a_well_formed_file_wasmtime_refuses_is_compiled_again() {
        let engine = super::super::wasm::engine().expect("engine");
        let (bytes, digest) = greedy_component();
        let key = ArtifactKey::new(engine, &digest);
        let dir = TempDir::new("artifacts-refused");
        create_private_dir(&dir.0).expect("dir");
        let bogus = b"\x7fELF but not wasmtime's".to_vec();
        let mut file = Sha256::digest(&bogus).to_vec();
        file.extend_from_slice(&bogus);
        fs::write(dir.0.join(key.file_name()), file).expect("write");
        let (_, provenance) = load_or_compile(engine, bytes, &key, &dir.0).expect("compiles");
        assert_eq!(provenance, Provenance::Compiled);
        let (_, provenance) = load_or_compile(engine, bytes, &key, &dir.0).expect("loads");
        assert_eq!(provenance, Provenance::Disk);
    }

    #[test]
    fn old_artifacts_beyond_the_limit_are_pruned() {
        let dir = TempDir::new("artifacts-prune");
        create_private_dir(&dir.0).expect("dir");
        for i in 0..MAX_ARTIFACTS + 3 {
            fs::write(dir.0.join(format!("{i:02}.{EXTENSION}")), b"x").expect("write");
        }
        fs::write(dir.0.join("unrelated.txt"), b"x").expect("write");
        let keep = dir.0.join(format!("00.{EXTENSION}"));
        prune(&dir.0, &keep);
        let files = artifact_files(&dir.0);
        let artifacts = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == EXTENSION))
            .count();
        assert_eq!(artifacts, MAX_ARTIFACTS);
        assert!(files.contains(&keep), "the artifact just written stays");
        assert!(
            files.contains(&dir.0.join("unrelated.txt")),
            "other files stay"
        );
    }

    #[test]
    fn keys_differ_by_component_and_are_stable_per_engine() {
        let engine = super::super::wasm::engine().expect("engine");
        let a = ArtifactKey::new(engine, &[1; 32]);
        assert_eq!(a, ArtifactKey::new(engine, &[1; 32]));
        assert_ne!(
            a.file_name(),
            ArtifactKey::new(engine, &[2; 32]).file_name()
        );
        assert!(a.file_name().ends_with(".cwasm"));
    }
}
