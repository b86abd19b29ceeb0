//! `switchyard policy build [DIR] [-o FILE]`: cargo builds the crate for wasm32, this binary
//! wraps the module as a component and checks it as a hub checks what it loads.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::AuthorError;
use crate::policy::contract::{
    missing_target_advice, wasm_target_installed, wrap_core_module, WASM_TARGET,
};
use crate::policy::{inspect_component, ComponentInfo};

/// What [`build_crate`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The component file.
    pub component: PathBuf,
    /// The core module cargo built, which the component wraps.
    pub module: PathBuf,
    /// The component as a hub sees it: name, version, digest, size.
    pub info: ComponentInfo,
    /// The contract it speaks, `switchyard:policy@VERSION`.
    pub contract: &'static str,
}

/// Builds the policy crate in `dir` and writes its component to `out`, by default
/// `<target dir>/policy/<package>.wasm`. Cargo's own messages go to stderr as it prints them.
pub fn build_crate(dir: &Path, out: Option<&Path>) -> Result<Built, AuthorError> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(AuthorError::NoManifest(dir.to_path_buf()));
    }
    let manifest = std::fs::canonicalize(&manifest).map_err(|source| AuthorError::Io {
        what: "find",
        path: manifest.clone(),
        source,
    })?;
    let package = package_name(&manifest)?;

    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    if !wasm_target_installed(&rustc, dir).map_err(AuthorError::Rustc)? {
        return Err(AuthorError::MissingTarget(missing_target_advice()));
    }

    let module_path = cargo_build(dir, &manifest)?;
    let module = std::fs::read(&module_path).map_err(|source| AuthorError::Io {
        what: "read the module",
        path: module_path.clone(),
        source,
    })?;
    let (component, version) = wrap_core_module(&module).map_err(|source| AuthorError::Wrap {
        module: module_path.clone(),
        source,
    })?;
    let info = inspect_component(&component).map_err(AuthorError::Refused)?;

    let out = match out {
        Some(out) => out.to_path_buf(),
        None => default_output(&module_path, &package),
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| AuthorError::Io {
            what: "create the folder",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(&out, &component).map_err(|source| AuthorError::Io {
        what: "write the component to",
        path: out.clone(),
        source,
    })?;
    Ok(Built {
        component: std::path::absolute(&out).unwrap_or(out),
        module: module_path,
        info,
        contract: version.package(),
    })
}

/// The `[package] name` of a manifest.
fn package_name(manifest: &Path) -> Result<String, AuthorError> {
    let text = std::fs::read_to_string(manifest).map_err(|source| AuthorError::Io {
        what: "read",
        path: manifest.to_path_buf(),
        source,
    })?;
    let bad = |why: String| AuthorError::BadManifest {
        path: manifest.to_path_buf(),
        why,
    };
    let parsed: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    parsed
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| bad("it has no [package] name".to_string()))
}

/// The command `policy build` runs, as shown in messages.
const CARGO_COMMAND: &str = "cargo build --release --lib --target wasm32-unknown-unknown";

/// Runs cargo and returns the `.wasm` it built for the crate's `cdylib`, read from cargo's JSON
/// messages rather than guessed from the target folder (which `CARGO_TARGET_DIR`, a
/// `.cargo/config.toml` or an enclosing workspace may move).
fn cargo_build(dir: &Path, manifest: &Path) -> Result<PathBuf, AuthorError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut child = Command::new(&cargo)
        .current_dir(dir)
        .args(["build", "--release", "--lib", "--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        // Diagnostics rendered for people on stderr; only the artifact records on stdout.
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| AuthorError::CargoMissing {
            cargo: cargo.clone(),
            source,
        })?;
    let mut module = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Value>(&line) {
                Ok(message) => {
                    if let Some(path) = cdylib_wasm(&message, manifest) {
                        module = Some(path);
                    }
                }
                // Not cargo's: pass it on rather than lose it.
                Err(_) => eprintln!("{line}"),
            }
        }
    }
    let status = child.wait().map_err(|source| AuthorError::CargoMissing {
        cargo: cargo.clone(),
        source,
    })?;
    if !status.success() {
        return Err(AuthorError::CargoFailed {
            command: CARGO_COMMAND.to_string(),
            status: status.to_string(),
        });
    }
    module.ok_or_else(|| AuthorError::NoModule {
        manifest: manifest.to_path_buf(),
    })
}

/// The `.wasm` file of a `compiler-artifact` message for the `cdylib` of the crate at
/// `manifest`.
fn cdylib_wasm(message: &Value, manifest: &Path) -> Option<PathBuf> {
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    if Path::new(message.get("manifest_path")?.as_str()?) != manifest {
        return None;
    }
    let kinds = message.get("target")?.get("kind")?.as_array()?;
    if !kinds.iter().any(|k| k.as_str() == Some("cdylib")) {
        return None;
    }
    message
        .get("filenames")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
}

/// `<target>/policy/<package>.wasm`, where cargo left the module at
/// `<target>/wasm32-unknown-unknown/release/<lib>.wasm`; beside the module should the layout
/// ever differ.
fn default_output(module: &Path, package: &str) -> PathBuf {
    let file = format!("{package}.wasm");
    let target_dir = module
        .parent()
        .filter(|release| release.file_name().is_some_and(|n| n == "release"))
        .and_then(Path::parent)
        .filter(|triple| triple.file_name().is_some_and(|n| n == WASM_TARGET))
        .and_then(Path::parent);
    match target_dir {
        Some(target) => target.join("policy").join(file),
        None => module.with_file_name(file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_module_is_read_from_cargos_messages() {
        let manifest = Path::new("/w/p/Cargo.toml");
        let artifact = |manifest: &str, kind: &str, file: &str| {
            json!({"reason": "compiler-artifact", "manifest_path": manifest,
                   "target": {"kind": [kind]}, "filenames": [file]})
        };
        assert_eq!(
            cdylib_wasm(
                &artifact("/w/p/Cargo.toml", "cdylib", "/t/x.wasm"),
                manifest
            ),
            Some(PathBuf::from("/t/x.wasm"))
        );
        // A dependency, the rlib, a build script's message: not the module.
        assert_eq!(
            cdylib_wasm(
                &artifact("/w/sdk/Cargo.toml", "cdylib", "/t/y.wasm"),
                manifest
            ),
            None
        );
        assert_eq!(
            cdylib_wasm(&artifact("/w/p/Cargo.toml", "lib", "/t/x.rlib"), manifest),
            None
        );
        assert_eq!(
            cdylib_wasm(
                &json!({"reason": "build-finished", "success": true}),
                manifest
            ),
            None
        );
    }

    #[test]
    fn the_package_name_is_read_from_the_manifest_or_the_fault_named() {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-manifest-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("Cargo.toml");
        std::fs::write(&manifest, "[package]\nname = \"my-fifo\"\n").unwrap();
        assert_eq!(package_name(&manifest).unwrap(), "my-fifo");
        std::fs::write(&manifest, "[workspace]\n").unwrap();
        let err = package_name(&manifest).unwrap_err().to_string();
        assert!(err.contains("no [package] name"), "{err}");
        std::fs::write(&manifest, "[package\n").unwrap();
        let err = package_name(&manifest).unwrap_err();
        assert!(matches!(err, AuthorError::BadManifest { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_component_goes_under_the_target_folder_by_default() {
        assert_eq!(
            default_output(
                Path::new("/c/target/wasm32-unknown-unknown/release/my_fifo.wasm"),
                "my-fifo"
            ),
            Path::new("/c/target/policy/my-fifo.wasm")
        );
        assert_eq!(
            default_output(Path::new("/elsewhere/my_fifo.wasm"), "my-fifo"),
            Path::new("/elsewhere/my-fifo.wasm")
        );
    }
}
