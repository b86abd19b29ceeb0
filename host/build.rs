//! Builds the policies shipped inside the `switchyard` binary, and the test policies.
//!
//! Every crate under `policies/*/` or `tests/policies/*/` whose `Cargo.toml` asks for a
//! `cdylib` is a policy (the SDK is a plain library and is skipped). Each is compiled for
//! `wasm32-unknown-unknown` with the workspace's `guest` profile by a nested cargo with its own
//! target directory (so it never waits on the outer build's lock), turned into a component by
//! `src/policy/contract.rs` (the wrap step `switchyard policy build` uses too), and written to `<target>/policies/<dir>.wasm`, so tests and docs can load it
//! from a file (`--policy target/policies/greedy.wasm`).
//!
//! Only the crates under `policies/` are shipped: they are also written to
//! `$OUT_DIR/policies/<dir>.wasm` and listed in `$OUT_DIR/builtin_policies.rs` as
//! `BUILTIN_POLICIES`, which the host embeds (`--policy builtin:<dir>`). The crates under
//! `tests/policies/` (a deliberately broken policy, say) exist for the tests alone and must
//! never be offered to operators as built-ins.
//!
//! Doing this here rather than in a separate step means a fresh clone builds everything with a
//! plain `cargo build`. Cost: about half a minute the first time, a second or two afterwards.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The contract, its checks and the wrap step, shared with `switchyard policy build` so that a
/// bundled policy and an author's are turned into components the same way.
#[allow(dead_code)] // the build script uses only part of it
#[path = "src/policy/contract.rs"]
mod contract;

use contract::WASM_TARGET;

const GUEST_PROFILE: &str = "guest";

/// Environment a cargo running a build script sets or inherits that would leak into the nested
/// build and change or break it: flags meant for the host target, an outer target directory or
/// target triple, compiler wrappers (clippy-driver, coverage or caching wrappers), and the
/// per-package variables cargo sets for this build script.
const CLEARED_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_BUILD_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTDOC",
];

/// Prefixes of per-build variables cargo sets for this build script (features, cfgs, package
/// metadata, profile overrides of the outer build).
const CLEARED_ENV_PREFIXES: &[&str] = &[
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "DEP_",
    "CARGO_PROFILE_",
];

/// Where policy crates live, relative to the workspace, and whether the binary ships them.
const POLICY_FOLDERS: &[(&str, Shipped)] = &[
    ("policies", Shipped::Builtin),
    ("tests/policies", Shipped::TestsOnly),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shipped {
    /// Embedded in the binary as `builtin:<dir>`.
    Builtin,
    /// Only left in `<target>/policies/` for the tests to load as files.
    TestsOnly,
}

struct PolicyCrate {
    /// The directory name under its folder: the component's file name, and for a builtin its
    /// builtin name.
    dir_name: String,
    /// The cargo package name.
    package: String,
    shipped: Shipped,
}

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        panic!("building the policy components failed: {message}");
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("the host crate has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };

    for path in [
        "wit",
        "Cargo.toml",
        "Cargo.lock",
        "host/src/policy/contract.rs",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let mut policies = Vec::new();
    for &(folder, shipped) in POLICY_FOLDERS {
        let folder = workspace.join(folder);
        println!("cargo:rerun-if-changed={}", folder.display());
        policies.extend(find_policies(&folder, shipped)?);
    }
    if !policies.iter().any(|p| p.shipped == Shipped::Builtin) {
        return Err(format!(
            "no policy crates (a Cargo.toml with crate-type cdylib) under {}",
            workspace.join("policies").display()
        ));
    }
    check_unique_names(&policies)?;

    check_wasm_target(&workspace)?;

    let guest_target_dir = target_dir.join("guest");
    build_guests(&workspace, &guest_target_dir, &policies)?;

    let module_dir = guest_target_dir.join(WASM_TARGET).join(GUEST_PROFILE);
    let out_policies = out_dir.join("policies");
    let shared_policies = target_dir.join("policies");
    for dir in [&out_policies, &shared_policies] {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }

    let mut table = String::from(
        "/// Policies built into the binary: (builtin name, component bytes). Generated by \
         host/build.rs.\npub const BUILTIN_POLICIES: &[(&str, &[u8])] = &[\n",
    );
    for policy in &policies {
        let module_path = module_dir.join(format!("{}.wasm", policy.package.replace('-', "_")));
        let module = fs::read(&module_path).map_err(|e| {
            format!(
                "cannot read the built module {}: {e}",
                module_path.display()
            )
        })?;
        let (component, version) = contract::wrap_core_module(&module).map_err(|e| {
            format!(
                "cannot turn {} into a policy component: {e}",
                module_path.display()
            )
        })?;
        // Bundled policies are built with this repository's SDK: they speak the current
        // contract, which `GET /api/policy` reports for every built-in.
        if version != contract::ContractVersion::CURRENT {
            return Err(format!(
                "{} speaks contract {version}, not this repository's {}",
                module_path.display(),
                contract::ContractVersion::CURRENT
            ));
        }

        let file_name = format!("{}.wasm", policy.dir_name);
        write_if_changed(&shared_policies.join(&file_name), &component)?;
        if policy.shipped == Shipped::TestsOnly {
            continue;
        }
        let out_path = out_policies.join(&file_name);
        write_if_changed(&out_path, &component)?;
        writeln!(
            table,
            "    ({:?}, include_bytes!({:?})),",
            policy.dir_name,
            out_path.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    table.push_str("];\n");
    write_if_changed(&out_dir.join("builtin_policies.rs"), table.as_bytes())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

/// The crates in `policies_dir` that build a `cdylib`, in name order (so the generated table,
/// and therefore the binary, does not depend on directory listing order). A missing folder
/// holds none (a checkout without tests still builds).
fn find_policies(policies_dir: &Path, shipped: Shipped) -> Result<Vec<PolicyCrate>, String> {
    if shipped == Shipped::TestsOnly && !policies_dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = fs::read_dir(policies_dir)
        .map_err(|e| format!("cannot list {}: {e}", policies_dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", policies_dir.display()))?;
        let manifest_path = entry.path().join("Cargo.toml");
        let Ok(manifest) = fs::read_to_string(&manifest_path) else {
            continue;
        };
        if !builds_cdylib(&manifest) {
            continue;
        }
        let package = package_name(&manifest)
            .ok_or_else(|| format!("no [package] name in {}", manifest_path.display()))?;
        found.push(PolicyCrate {
            dir_name: entry.file_name().to_string_lossy().into_owned(),
            package,
            shipped,
        });
    }
    found.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
    Ok(found)
}

/// Every component lands in one folder, `<target>/policies/<dir>.wasm`: a test policy named
/// like a built-in one would overwrite it there.
fn check_unique_names(policies: &[PolicyCrate]) -> Result<(), String> {
    for (i, policy) in policies.iter().enumerate() {
        if policies[..i].iter().any(|p| p.dir_name == policy.dir_name) {
            return Err(format!(
                "two policy crates are named `{}` (under policies/ and tests/policies/); \
                 their components would overwrite each other in target/policies/",
                policy.dir_name
            ));
        }
    }
    Ok(())
}

/// Whether a manifest declares `crate-type = [..., "cdylib", ...]`. A line-level look is enough
/// for the manifests in this repository and avoids a TOML parser in every host build.
fn builds_cdylib(manifest: &str) -> bool {
    manifest.lines().any(|line| {
        let line = line.trim();
        !line.starts_with('#') && line.starts_with("crate-type") && line.contains("\"cdylib\"")
    })
}

/// The `name` in the `[package]` table.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            if key.trim() == "name" {
                return Some(value.trim().trim_matches('"').to_string());
            }
        }
    }
    None
}

/// Fails early, with the fix, when the standard library for the wasm target is not installed
/// (otherwise the nested build fails with "can't find crate for `core`").
fn check_wasm_target(workspace: &Path) -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    if contract::wasm_target_installed(&rustc, workspace)? {
        Ok(())
    } else {
        Err(contract::missing_target_advice())
    }
}

fn build_guests(
    workspace: &Path,
    guest_target_dir: &Path,
    policies: &[PolicyCrate],
) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace)
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["--target", WASM_TARGET, "--profile", GUEST_PROFILE])
        .arg("--target-dir")
        .arg(guest_target_dir);
    for policy in policies {
        command.args(["-p", &policy.package]);
    }
    for name in CLEARED_ENV {
        command.env_remove(name);
    }
    for (name, _) in env::vars_os() {
        let name = name.to_string_lossy();
        if CLEARED_ENV_PREFIXES.iter().any(|p| name.starts_with(p)) {
            command.env_remove(name.as_ref());
        }
    }
    // The nested cargo's output goes to this build script's log, which cargo shows on failure.
    let status = command
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo build --target {WASM_TARGET} --profile {GUEST_PROFILE}` of the policies \
             failed ({status}); its output is above"
        ))
    }
}

/// Writes only when the bytes differ, so an unchanged policy does not touch mtimes and
/// trigger rebuilds of whatever includes it.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if fs::read(path).map(|old| old == bytes).unwrap_or(false) {
        return Ok(());
    }
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
