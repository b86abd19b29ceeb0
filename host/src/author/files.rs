//! The files `switchyard policy new` writes, embedded in the binary at build time: the SDK's
//! sources exactly as this repository builds them, the contract, and the crate template
//! (`host/templates/policy/`).
//!
//! The SDK finds the contract at `../../wit` from its own folder (its `wit_bindgen::generate!`
//! path), as in this repository (`policies/sdk` and `wit/`). The new crate keeps that shape,
//! `vendor/switchyard-policy-sdk/` and `wit/`, so the SDK's sources are written unchanged.

use crate::policy::contract::{contract_package, CONTRACT_WIT};

/// Where a file goes in the new crate, and what it holds.
pub(super) struct File {
    pub path: &'static str,
    pub contents: String,
}

/// The SDK's source files, by their path under `policies/sdk/src/` (a unit test checks that
/// none is missing).
pub(super) const SDK_SOURCES: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../../policies/sdk/src/lib.rs")),
    (
        "ready.rs",
        include_str!("../../../policies/sdk/src/ready.rs"),
    ),
    (
        "testing.rs",
        include_str!("../../../policies/sdk/src/testing.rs"),
    ),
];

/// The SDK's manifest for a crate outside this workspace: the same dependencies, with the
/// versions the workspace pins written out (a unit test compares them).
const SDK_MANIFEST: &str = include_str!("../../templates/policy/sdk-Cargo.toml.in");
const MANIFEST: &str = include_str!("../../templates/policy/Cargo.toml.in");
const LIB: &str = include_str!("../../templates/policy/lib.rs.in");
const README: &str = include_str!("../../templates/policy/README.md.in");
const GITIGNORE: &str = include_str!("../../templates/policy/gitignore");

/// This workspace's lock file. Written as the new crate's, it starts the crate on the versions
/// of `serde_json` and `wit-bindgen` this repository builds and tests the SDK with; cargo drops
/// the entries the crate does not use on its first build.
const LOCK: &str = include_str!("../../../Cargo.lock");

/// Every file of a new policy crate named `name`, a name [`super::validate_name`] accepted.
pub(super) fn crate_files(name: &str) -> Vec<File> {
    let substitute = |template: &str| render(template, name);
    let mut files = vec![
        File {
            path: "Cargo.toml",
            contents: substitute(MANIFEST),
        },
        File {
            path: "src/lib.rs",
            contents: substitute(LIB),
        },
        File {
            path: "README.md",
            contents: substitute(README),
        },
        File {
            path: ".gitignore",
            contents: GITIGNORE.to_string(),
        },
        File {
            path: "Cargo.lock",
            contents: LOCK.to_string(),
        },
        File {
            path: "wit/policy.wit",
            contents: CONTRACT_WIT.to_string(),
        },
        File {
            path: "vendor/switchyard-policy-sdk/Cargo.toml",
            contents: substitute(SDK_MANIFEST),
        },
    ];
    for (file, contents) in SDK_SOURCES {
        files.push(File {
            path: sdk_path(file),
            contents: contents.to_string(),
        });
    }
    files
}

fn sdk_path(file: &str) -> &'static str {
    match file {
        "lib.rs" => "vendor/switchyard-policy-sdk/src/lib.rs",
        "ready.rs" => "vendor/switchyard-policy-sdk/src/ready.rs",
        "testing.rs" => "vendor/switchyard-policy-sdk/src/testing.rs",
        other => unreachable!("SDK_SOURCES lists {other} but sdk_path has no place for it"),
    }
}

/// Fills a template's `{{key}}` placeholders.
fn render(template: &str, name: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{type}}", &type_name(name))
        .replace("{{contract}}", contract_package())
        .replace("{{switchyard_version}}", env!("CARGO_PKG_VERSION"))
}

/// Names `src/lib.rs` imports or uses: a policy type named like one would not compile.
const TAKEN_TYPE_NAMES: &[&str] = &[
    "Agent",
    "AgentId",
    "Assignment",
    "BTreeMap",
    "BTreeSet",
    "Capability",
    "Policy",
    "ReadyAgents",
    "Task",
    "TaskId",
    "Value",
];

/// The policy's Rust type: the name in upper camel case (`my-fifo` -> `MyFifo`), with
/// `Scheduler` after it when that would clash with a name the template uses (`task` ->
/// `TaskScheduler`).
pub(super) fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect();
    if TAKEN_TYPE_NAMES.contains(&camel.as_str()) {
        camel + "Scheduler"
    } else {
        camel
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
    }

    #[test]
    fn every_sdk_source_is_embedded() {
        let dir = repo().join("policies/sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = SDK_SOURCES.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "policies/sdk/src changed: list its files in SDK_SOURCES (and sdk_path)"
        );
        for (file, _) in SDK_SOURCES {
            assert!(sdk_path(file).ends_with(file));
        }
    }

    /// The vendored manifest must ask for what the SDK's own manifest does, at the versions the
    /// workspace pins: a dependency added to the SDK, or a version moved in the workspace,
    /// fails here until the template follows.
    #[test]
    fn the_vendored_manifest_pins_the_workspace_versions() {
        let sdk = std::fs::read_to_string(repo().join("policies/sdk/Cargo.toml")).unwrap();
        let workspace = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
        let vendored = render(SDK_MANIFEST, "x");
        let mut checked = 0;
        for line in sdk.lines() {
            let Some(dep) = line.trim().strip_suffix(".workspace = true") else {
                continue;
            };
            if ["edition", "license", "rust-version"].contains(&dep) {
                continue;
            }
            let pinned = workspace
                .lines()
                .find(|l| l.starts_with(&format!("{dep} = ")))
                .unwrap_or_else(|| panic!("the workspace does not pin {dep}"));
            assert!(
                vendored.lines().any(|l| l == pinned),
                "host/templates/policy/sdk-Cargo.toml.in should have `{pinned}`"
            );
            checked += 1;
        }
        assert_eq!(checked, 2, "serde_json and wit-bindgen");
        assert!(sdk.contains("testing = []") && vendored.contains("testing = []"));
    }

    #[test]
    fn templates_are_filled_in_completely() {
        for file in crate_files("my-fifo_2") {
            for key in ["name", "type", "contract", "switchyard_version"] {
                let placeholder = format!("{{{{{key}}}}}");
                assert!(
                    !file.contents.contains(&placeholder),
                    "{} keeps {placeholder}",
                    file.path
                );
            }
        }
        let lib = crate_files("my-fifo_2")
            .into_iter()
            .find(|f| f.path == "src/lib.rs")
            .unwrap();
        assert!(lib.contents.contains("pub struct MyFifo2 {"));
        assert!(lib
            .contents
            .contains("const NAME: &'static str = \"my-fifo_2\";"));
        assert!(lib.contents.contains("export_policy!(MyFifo2);"));
    }

    #[test]
    fn the_sdk_finds_the_contract_where_the_crate_puts_it() {
        let lib = SDK_SOURCES.iter().find(|(f, _)| *f == "lib.rs").unwrap().1;
        assert!(lib.contains("path: \"../../wit\""));
        let wit = Path::new("vendor/switchyard-policy-sdk/../../wit/policy.wit");
        let files = crate_files("x");
        let normalised = wit
            .components()
            .fold(Vec::new(), |mut parts, c| {
                match c {
                    std::path::Component::ParentDir => {
                        parts.pop();
                    }
                    c => parts.push(c.as_os_str().to_string_lossy().into_owned()),
                }
                parts
            })
            .join("/");
        assert!(files.iter().any(|f| f.path == normalised));
    }

    #[test]
    fn type_names_are_upper_camel_case() {
        assert_eq!(type_name("fifo"), "Fifo");
        assert_eq!(type_name("my-fifo"), "MyFifo");
        assert_eq!(type_name("a_b-c9"), "ABC9");
        assert_eq!(type_name("policy"), "PolicyScheduler");
        assert_eq!(type_name("ready_agents"), "ReadyAgentsScheduler");
    }
}
