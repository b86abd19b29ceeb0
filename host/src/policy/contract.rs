//! The policy contract as this binary speaks it, and turning a policy's compiled core module
//! into a component checked against it.
//!
//! Two builds share this file: the hub (`switchyard policy build`, through [`super`]) and
//! `host/build.rs`, which compiles the bundled policies and includes this file with `#[path]`.
//! It therefore names nothing of the host crate and depends only on `wit-component`,
//! `wit-parser` and `thiserror`, which are all build- and normal dependencies of the host.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// The WIT contract (`wit/policy.wit`), embedded at build time. `switchyard policy new` writes it
/// into every crate it creates, so a policy is always built against the contract of the binary
/// that made it.
pub const CONTRACT_WIT: &str = include_str!("../../../wit/policy.wit");

/// The contract as it was at 0.1.0 (`wit/compat/0.1.0/policy.wit`): the hub still loads
/// components built against it, and the tests build such components.
pub const COMPAT_WIT_0_1_0: &str = include_str!("../../../wit/compat/0.1.0/policy.wit");

/// A version of the policy contract the hub loads components of. The current one is
/// [`ContractVersion::CURRENT`] (the version of [`CONTRACT_WIT`]); older ones run behind an
/// adapter that translates the current events (docs/writing-a-policy.md says how).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContractVersion {
    /// `switchyard:policy@0.1.0`: no tenants, no run time of a finished task.
    V0_1_0,
    /// `switchyard:policy@0.2.0`: a task names its tenant, the policy is told tenant weights,
    /// a finished task reports how long it held its agent.
    V0_2_0,
}

impl ContractVersion {
    /// The version `switchyard policy new` writes and built-in policies speak.
    pub const CURRENT: Self = Self::V0_2_0;

    /// Every version a hub loads, oldest first.
    pub const ALL: [Self; 2] = [Self::V0_1_0, Self::V0_2_0];

    /// `0.1.0`, `0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_1_0 => "0.1.0",
            Self::V0_2_0 => "0.2.0",
        }
    }

    /// The WIT document of this version.
    pub fn wit(self) -> &'static str {
        match self {
            Self::V0_1_0 => COMPAT_WIT_0_1_0,
            Self::V0_2_0 => CONTRACT_WIT,
        }
    }

    /// The interface a component of this version exports,
    /// `switchyard:policy/scheduler@VERSION`.
    pub fn interface(self) -> &'static str {
        match self {
            Self::V0_1_0 => "switchyard:policy/scheduler@0.1.0",
            Self::V0_2_0 => "switchyard:policy/scheduler@0.2.0",
        }
    }

    /// The package of this version, `switchyard:policy@VERSION`.
    pub fn package(self) -> &'static str {
        match self {
            Self::V0_1_0 => "switchyard:policy@0.1.0",
            Self::V0_2_0 => "switchyard:policy@0.2.0",
        }
    }

    /// The version whose interface is `name`, if the hub speaks it.
    pub fn of_interface(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.interface() == name)
    }

    /// `0.1.0 and 0.2.0`: for messages naming what the hub speaks.
    pub fn spoken() -> String {
        let all: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
        match all.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => all.join(""),
        }
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The target policies are compiled for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The package [`CONTRACT_WIT`] declares, `namespace:name@version` (`switchyard:policy@0.2.0`).
pub fn contract_package() -> &'static str {
    package_of(CONTRACT_WIT).expect("wit/policy.wit declares its package on a `package` line")
}

/// The contract's version, the part of [`contract_package`] after `@`.
pub fn contract_version() -> &'static str {
    contract_package()
        .split_once('@')
        .map(|(_, version)| version)
        .expect("the contract package carries a version")
}

/// The interface a policy exports, `namespace:name/scheduler@version`.
pub fn contract_interface() -> String {
    let package = contract_package();
    match package.split_once('@') {
        Some((name, version)) => format!("{name}/scheduler@{version}"),
        None => format!("{package}/scheduler"),
    }
}

/// The `package NAME;` declaration of a WIT document.
fn package_of(wit: &str) -> Option<&str> {
    wit.lines().find_map(|line| {
        line.trim()
            .strip_prefix("package ")
            .and_then(|rest| rest.trim().strip_suffix(';'))
            .map(str::trim)
    })
}

/// Why a module cannot be made into a policy component.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error("it is not WebAssembly (no \\0asm header)")]
    NotWasm,
    #[error(
        "it is already a component, not the core module cargo builds; load it as it is \
         (`switchyard policy load FILE`)"
    )]
    AlreadyComponent,
    #[error("it is not a valid WebAssembly module: {0}")]
    InvalidModule(String),
    #[error(
        "it exports no policy: the module carries no WIT world (does src/lib.rs end with \
         `switchyard_policy_sdk::export_policy!(YourPolicy);`, and does the crate build a \
         cdylib?)"
    )]
    MissingExport,
    #[error(
        "it exports `{found}`, but this binary's contract is `{expected}` (it also loads \
         `switchyard:policy/scheduler@0.1.0`); create the crate again with this binary's \
         `switchyard policy new` (or copy its wit/ and vendor/ folders) and build again"
    )]
    WorldMismatch { found: String, expected: String },
    #[error(
        "wit-component cannot make a component of it (a function of the contract missing?): {0}"
    )]
    Encode(String),
}

/// Wraps a policy's core module (what cargo leaves for a `cdylib` on `wasm32-unknown-unknown`)
/// as a component, after checking that the WIT world the SDK embedded in it is a contract
/// version the hub loads ([`ContractVersion::ALL`]), so a crate built against another contract
/// is named as such instead of failing later with a type error. Returns the component and the
/// version it speaks.
pub fn wrap_core_module(module: &[u8]) -> Result<(Vec<u8>, ContractVersion), WrapError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE_VERSION: &[u8] = &[1, 0, 0, 0];
    if !module.starts_with(MAGIC) {
        return Err(WrapError::NotWasm);
    }
    if module.get(4..8) != Some(CORE_MODULE_VERSION) {
        return Err(WrapError::AlreadyComponent);
    }
    let (stripped, bindgen) = wit_component::metadata::decode(module)
        .map_err(|e| WrapError::InvalidModule(format!("{e:#}")))?;
    if stripped.is_none() {
        return Err(WrapError::MissingExport);
    }
    // The worlds of the module's `component-type` sections, merged: what it exports, by name.
    let world = &bindgen.resolve.worlds[bindgen.world];
    let exports: Vec<String> = world
        .exports
        .keys()
        .map(|key| bindgen.resolve.name_world_key(key))
        .collect();
    let Some(version) = exports
        .iter()
        .find_map(|e| ContractVersion::of_interface(e))
    else {
        if exports.is_empty() {
            return Err(WrapError::MissingExport);
        }
        return Err(WrapError::WorldMismatch {
            found: exports.join(", "),
            expected: contract_interface(),
        });
    };
    let component = encode(module)?;
    Ok((component, version))
}

/// Embeds `wit`'s `policy-component` world in `module` as wit-bindgen does, so that
/// [`wrap_core_module`] can make a component of a core module written by hand (the tests' WAT
/// policies). The module must export the functions the world's canonical ABI names.
pub fn embed_world(module: &mut Vec<u8>, wit: &str) -> Result<(), WrapError> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_str("policy.wit", wit)
        .map_err(|e| WrapError::Encode(format!("the WIT does not parse: {e:#}")))?;
    let world = resolve
        .select_world(&[package], Some("policy-component"))
        .map_err(|e| WrapError::Encode(format!("{e:#}")))?;
    wit_component::embed_component_metadata(
        module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .map_err(|e| WrapError::Encode(format!("{e:#}")))
}

/// Makes a component of a core module that exports `version`'s functions by their canonical ABI
/// names but carries no WIT world (one written by hand, as the tests' WAT policies are): embeds
/// the world of `version` and wraps the module.
pub fn wrap_core_module_for(version: ContractVersion, module: &[u8]) -> Result<Vec<u8>, WrapError> {
    let mut module = module.to_vec();
    embed_world(&mut module, version.wit())?;
    encode(&module)
}

/// wit-component's wrap step, validating the result.
fn encode(module: &[u8]) -> Result<Vec<u8>, WrapError> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| WrapError::Encode(format!("{e:#}")))
}

/// Whether the standard library for [`WASM_TARGET`] is installed for `rustc` (run in `dir`, so
/// a `rust-toolchain.toml` there picks the toolchain). Without it a build fails with "can't
/// find crate for `core`", which does not say what to do. An error says why `rustc` could not
/// be asked.
pub fn wasm_target_installed(rustc: &OsStr, dir: &Path) -> Result<bool, String> {
    let output = Command::new(rustc)
        .current_dir(dir)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    if !output.status.success() {
        return Ok(false);
    }
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let has_core = std::fs::read_dir(&libdir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libcore-") && name.ends_with(".rlib")
            })
        })
        .unwrap_or(false);
    Ok(has_core)
}

/// What to tell someone whose toolchain lacks [`WASM_TARGET`].
pub fn missing_target_advice() -> String {
    format!(
        "the {WASM_TARGET} target is not installed; policies are built for it. \
         Install it with: rustup target add {WASM_TARGET}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module implementing the contract, edited by `wit_edit`, with the world embedded
    /// as wit-bindgen embeds it: what cargo leaves for a policy crate.
    fn module(wit_edit: Option<(&str, &str)>) -> Vec<u8> {
        crate::policy::tests::Hostile {
            name: "stub",
            create_error: None,
            decide: crate::policy::tests::DECIDE_NOTHING,
            wit_edit,
            contract: ContractVersion::CURRENT,
        }
        .core_module()
    }

    #[test]
    fn the_contract_is_read_from_the_wit() {
        assert_eq!(contract_package(), "switchyard:policy@0.2.0");
        assert_eq!(contract_version(), "0.2.0");
        assert_eq!(contract_interface(), "switchyard:policy/scheduler@0.2.0");
        assert_eq!(ContractVersion::CURRENT.as_str(), contract_version());
        assert_eq!(ContractVersion::CURRENT.package(), contract_package());
        assert_eq!(ContractVersion::CURRENT.interface(), contract_interface());
        assert_eq!(ContractVersion::CURRENT.wit(), CONTRACT_WIT);
        for version in ContractVersion::ALL {
            let package = package_of(version.wit()).unwrap();
            assert_eq!(package, version.package());
            assert_eq!(package.rsplit_once('@').unwrap().1, version.as_str());
            assert_eq!(
                ContractVersion::of_interface(version.interface()),
                Some(version)
            );
        }
        assert_eq!(
            ContractVersion::of_interface("switchyard:policy/scheduler@0.3.0"),
            None
        );
        assert_eq!(ContractVersion::spoken(), "0.1.0 and 0.2.0");
        assert_eq!(package_of("// x\npackage a:b@1.2.3;\n"), Some("a:b@1.2.3"));
        assert_eq!(package_of("interface x {}"), None);
    }

    #[test]
    fn a_module_of_this_contract_becomes_a_component() {
        let (component, version) = wrap_core_module(&module(None)).expect("wraps");
        assert_eq!(version, ContractVersion::CURRENT);
        let info = crate::policy::inspect_component(&component).expect("a hub would load it");
        assert_eq!(info.name, "stub");
        assert_eq!(info.contract, ContractVersion::CURRENT);
        assert_eq!(info.size, component.len());
        assert!(info.digest.starts_with("sha256:"), "{}", info.digest);
        // And a component is not wrapped twice.
        assert!(matches!(
            wrap_core_module(&component),
            Err(WrapError::AlreadyComponent)
        ));
    }

    #[test]
    fn a_module_of_another_contract_version_is_named() {
        let older = Some(("switchyard:policy@0.2.0", "switchyard:policy@0.0.9"));
        let err = wrap_core_module(&module(older)).unwrap_err();
        assert!(matches!(err, WrapError::WorldMismatch { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("switchyard:policy/scheduler@0.0.9")
                && message.contains("switchyard:policy/scheduler@0.2.0")
                && message.contains("switchyard:policy/scheduler@0.1.0"),
            "{message}"
        );
    }

    #[test]
    fn other_files_are_refused_with_what_they_are() {
        assert!(matches!(
            wrap_core_module(b"hello"),
            Err(WrapError::NotWasm)
        ));
        // A module cargo would build without `export_policy!`: no world at all.
        let plain = wat::parse_str("(module (func (export \"f\")))").unwrap();
        let err = wrap_core_module(&plain).unwrap_err();
        assert!(matches!(err, WrapError::MissingExport), "{err}");
        assert!(err.to_string().contains("export_policy!"), "{err}");
        let mut truncated = module(None);
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            wrap_core_module(&truncated),
            Err(WrapError::InvalidModule(_))
        ));
    }

    #[test]
    fn the_advice_for_a_missing_target_is_the_command() {
        assert!(missing_target_advice().contains("rustup target add wasm32-unknown-unknown"));
        let installed = wasm_target_installed("rustc".as_ref(), Path::new("."));
        // This repository's build needs the target, so a test binary proves it is there.
        assert_eq!(installed, Ok(true));
        assert!(wasm_target_installed("/nonexistent/rustc".as_ref(), Path::new(".")).is_err());
    }
}
