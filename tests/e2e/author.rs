//! A policy author's path with only the binary and a Rust toolchain: from an empty folder
//! outside this workspace, `switchyard policy new`, `cargo test`, `switchyard policy build`, then
//! the component loads on a running hub and completes tasks. Also what `new` and `build` refuse.
//!
//! It needs the `wasm32-unknown-unknown` target and the crates the new crate depends on
//! (`serde_json`, `wit-bindgen`) in cargo's cache or from the registry. Without them it says it
//! is skipped and why, unless `SWITCHYARD_E2E_REQUIRE_AUTHOR=1` (CI sets it: `.ci/run`), which
//! turns the skip into a failure. Its cargo builds share `<target>/author-e2e`, so a second run
//! compiles only the policy crate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::hub::unique_name;
use crate::harness::{
    assert_each_completed_once, failure_counters, skip_unless_default_policy, str_field, Crew, Hub,
    HubOpts, WorkerOpts,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const NAME: &str = "author-e2e-fifo";
/// The longest one cargo step may take: a first build on a busy two-core machine takes minutes.
const CARGO_TIMEOUT: Duration = Duration::from_secs(900);

/// The workspace's target folder: above the binary under test (`<target>/debug/switchyard`).
fn target_dir() -> PathBuf {
    Path::new(BIN)
        .ancestors()
        .nth(2)
        .expect("the binary is in <target>/<profile>/")
        .to_path_buf()
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is inside the workspace")
}

/// A command for the author's tools, without what the outer `cargo test` put in the
/// environment that would change a nested build (flags and wrappers meant for this workspace),
/// and with the shared target folder.
fn tool(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir);
    for name in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MANIFEST_DIR",
    ] {
        command.env_remove(name);
    }
    command.env("CARGO_TARGET_DIR", target_dir().join("author-e2e"));
    command
}

/// Runs `command` to the end and returns what it printed; past [`CARGO_TIMEOUT`] it is killed
/// and the test fails.
async fn run(command: Command) -> Output {
    let shown = format!("{command:?}");
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    match tokio::time::timeout(CARGO_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run {shown}: {e}"),
        Err(_) => panic!("{shown} ran past {CARGO_TIMEOUT:?}; killed"),
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn succeeded(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn failed(output: Output, what: &str) -> String {
    assert!(
        !output.status.success(),
        "{what} succeeded: {}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Why the author's path cannot run on this machine, if it cannot. `crate_dir` is a crate made
/// by `policy new`; cargo is asked whether its dependencies are at hand (from the cache, else
/// from the registry). Returns whether cargo must stay offline.
async fn toolchain_missing(crate_dir: &Path) -> Result<bool, String> {
    let libdir = run({
        let mut c = tool("rustc", crate_dir);
        c.args([
            "--print",
            "target-libdir",
            "--target",
            "wasm32-unknown-unknown",
        ]);
        c
    })
    .await;
    let libdir = String::from_utf8_lossy(&libdir.stdout).trim().to_string();
    let has_core = std::fs::read_dir(&libdir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false);
    if !has_core {
        return Err("the wasm32-unknown-unknown target is not installed \
                    (scripts/setup.sh installs it)"
            .into());
    }
    let offline = run({
        let mut c = tool(cargo(), crate_dir);
        c.args(["fetch", "--offline"]);
        c
    })
    .await;
    if offline.status.success() {
        return Ok(true);
    }
    let online = run({
        let mut c = tool(cargo(), crate_dir);
        c.arg("fetch");
        c
    })
    .await;
    if online.status.success() {
        return Ok(false);
    }
    Err(format!(
        "the policy crate's dependencies are neither in cargo's cache nor reachable: {}",
        String::from_utf8_lossy(&online.stderr).trim()
    ))
}

/// The cargo running this test (cargo sets `CARGO` for it), as the author's would be.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// A value of `policy build`'s report (`component: PATH`, `digest: sha256:…`).
fn report_field(report: &str, field: &str) -> String {
    report
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|value| value.trim().to_string())
        .unwrap_or_else(|| panic!("no `{field}:` in the build report:\n{report}"))
}

/// A folder outside the workspace, removed at the end unless `SWITCHYARD_E2E_KEEP` is set.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SWITCHYARD_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_made_outside_the_repository_runs_on_a_hub() {
    const TEST: &str = "a_policy_made_outside_the_repository_runs_on_a_hub";
    if skip_unless_default_policy(TEST, "it builds and runs its own policy") {
        return;
    }
    let scratch = Scratch(std::env::temp_dir().join(unique_name("switchyard-author")));
    std::fs::create_dir_all(&scratch.0).expect("scratch folder");
    assert!(
        !scratch.0.starts_with(workspace()),
        "the scratch folder must be outside the workspace"
    );
    let crate_dir = scratch.0.join(NAME);

    // policy new: a crate, then refusals that write nothing.
    let out = succeeded(
        run({
            let mut c = tool(BIN, &scratch.0);
            c.args(["policy", "new", NAME]);
            c
        })
        .await,
        "policy new",
    );
    assert!(out.contains(&format!("created policy `{NAME}`")), "{out}");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "wit/policy.wit",
        ".gitignore",
        "README.md",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file} missing");
    }
    let err = failed(
        run({
            let mut c = tool(BIN, &scratch.0);
            c.args(["policy", "new", NAME, "--name", "other"]);
            c
        })
        .await,
        "policy new into a non-empty folder",
    );
    assert!(err.contains("is not empty"), "{err}");
    let err = failed(
        run({
            let mut c = tool(BIN, &scratch.0);
            c.args(["policy", "new", "bad-name", "--name", "Bad Name"]);
            c
        })
        .await,
        "policy new with an invalid name",
    );
    assert!(err.contains("invalid policy name `Bad Name`"), "{err}");
    assert!(!scratch.0.join("bad-name").exists(), "nothing written");

    let offline = match toolchain_missing(&crate_dir).await {
        Ok(offline) => offline,
        Err(why) => {
            if std::env::var_os("SWITCHYARD_E2E_REQUIRE_AUTHOR").is_some() {
                panic!("{TEST} cannot run and SWITCHYARD_E2E_REQUIRE_AUTHOR is set: {why}");
            }
            eprintln!("SKIPPED {TEST}: {why}");
            return;
        }
    };
    let cargo_tool = |dir: &Path| {
        let mut c = tool(cargo(), dir);
        if offline {
            c.env("CARGO_NET_OFFLINE", "true");
        }
        c
    };
    let switchyard = |dir: &Path| {
        let mut c = tool(BIN, dir);
        if offline {
            c.env("CARGO_NET_OFFLINE", "true");
        }
        c
    };

    // The crate's own tests, green out of the box.
    let started = Instant::now();
    let out = succeeded(
        run({
            let mut c = cargo_tool(&crate_dir);
            c.arg("test");
            c
        })
        .await,
        "cargo test in the new crate",
    );
    assert!(
        out.contains("test result: ok") && !out.contains("test result: FAILED"),
        "{out}"
    );
    eprintln!("cargo test of the new crate: {:?}", started.elapsed());

    // policy build: a component, checked, reported.
    let started = Instant::now();
    let out_file = scratch.0.join("out").join("policy.wasm");
    let report = succeeded(
        run({
            let mut c = switchyard(&crate_dir);
            c.args(["policy", "build", "-o"]).arg(&out_file);
            c
        })
        .await,
        "policy build",
    );
    eprintln!("policy build: {:?}\n{report}", started.elapsed());
    assert!(
        report.contains(&format!(
            "built policy `{NAME}` 0.1.0 for contract switchyard:policy@"
        )),
        "{report}"
    );
    let component = PathBuf::from(report_field(&report, "component"));
    assert_eq!(component, out_file);
    let bytes = std::fs::read(&component).expect("the component was written");
    let digest = report_field(&report, "digest");
    assert_eq!(
        digest,
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    );
    assert_eq!(
        report_field(&report, "size"),
        format!("{} bytes", bytes.len())
    );
    // policy check: the same sandbox as the hub, a smoke workload, nothing refused.
    let check = succeeded(
        run({
            let mut c = switchyard(&crate_dir);
            c.args(["policy", "check"]).arg(&component);
            c
        })
        .await,
        "policy check",
    );
    assert!(
        check.contains(&format!("policy    {NAME} 0.1.0")),
        "{check}"
    );
    assert!(check.contains(&format!("digest    {digest}")), "{check}");
    assert!(
        check.contains("refused   none") && check.contains("failures  0 traps, 0 timeouts"),
        "{check}"
    );

    // Without -o, from inside the crate: under the target folder.
    let report = succeeded(
        run({
            let mut c = switchyard(&crate_dir);
            c.args(["policy", "build"]);
            c
        })
        .await,
        "policy build with the default output",
    );
    let default_out = PathBuf::from(report_field(&report, "component"));
    assert_eq!(
        default_out,
        target_dir()
            .join("author-e2e")
            .join("policy")
            .join(format!("{NAME}.wasm"))
    );
    assert_eq!(std::fs::read(&default_out).expect("written"), bytes);

    // The component on a running hub: it is the policy in force and it completes tasks,
    // matching capabilities.
    let hub = Hub::start(HubOpts::default().policy(component.display().to_string(), None)).await;
    let api = hub.api();
    let status = api.policy().await;
    assert_eq!(str_field(&status, "name"), NAME, "{status}");
    assert_eq!(str_field(&status, "digest"), digest, "{status}");
    let mut crew = Crew::new();
    crew.spawn(hub.agent("plain-1").await, WorkerOpts::default());
    crew.spawn(
        hub.agent_with_capabilities("gpu-1", &["gpu"]).await,
        WorkerOpts::default(),
    );
    let mut ids = Vec::new();
    let gpu_task = api
        .submit(json!({"description": "needs a gpu", "needed_capabilities": ["gpu"]}))
        .await;
    ids.push(gpu_task.clone());
    for i in 0..8 {
        ids.push(
            api.submit(json!({"description": format!("plain {i}")}))
                .await,
        );
    }
    crew.wait_completed(ids.len(), Duration::from_secs(60))
        .await;
    let reports = crew.stop().await;
    let all: Vec<_> = reports.iter().map(|(_, r)| r).collect();
    assert_each_completed_once(&all, &ids);
    let gpu = all.iter().find(|r| r.agent_id == "gpu-1").expect("gpu-1");
    assert!(gpu.completed.contains(&gpu_task), "{:?}", gpu.completed);
    let status = api.policy().await;
    assert_eq!(
        failure_counters(&status),
        [
            ("traps", 0),
            ("timeouts", 0),
            ("rejected_proposals", 0),
            ("fallbacks", 0)
        ],
        "{status}"
    );
    assert!(
        status["counters"]["assignments"].as_u64() >= Some(ids.len() as u64),
        "{status}"
    );

    // What `policy build` refuses, each with its cause.
    let err = failed(
        run({
            let mut c = switchyard(&scratch.0);
            c.args(["policy", "build"]);
            c
        })
        .await,
        "policy build without a crate",
    );
    assert!(err.contains("no Cargo.toml in"), "{err}");

    let fake_rustc = scratch.0.join("rustc-without-wasm");
    std::fs::write(
        &fake_rustc,
        format!("#!/bin/sh\necho {}\n", scratch.0.display()),
    )
    .expect("fake rustc");
    let mut perms = std::fs::metadata(&fake_rustc).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake_rustc, perms).expect("chmod");
    let err = failed(
        run({
            let mut c = switchyard(&crate_dir);
            c.env("RUSTC", &fake_rustc).args(["policy", "build"]);
            c
        })
        .await,
        "policy build without the wasm target",
    );
    assert!(
        err.contains("rustup target add wasm32-unknown-unknown"),
        "{err}"
    );

    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).expect("lib.rs");
    let export = source
        .lines()
        .find(|l| l.starts_with("switchyard_policy_sdk::export_policy!"))
        .expect("the template exports its policy")
        .to_string();
    std::fs::write(&lib, source.replace(&export, "")).expect("edit lib.rs");
    let err = failed(
        run({
            let mut c = switchyard(&crate_dir);
            c.args(["policy", "build"]);
            c
        })
        .await,
        "policy build of a crate that exports nothing",
    );
    assert!(
        err.contains("exports no policy") && err.contains("export_policy!"),
        "{err}"
    );

    std::fs::write(&lib, format!("{source}\nfn broken( {{\n")).expect("break lib.rs");
    let err = failed(
        run({
            let mut c = switchyard(&crate_dir);
            c.args(["policy", "build"]);
            c
        })
        .await,
        "policy build of a crate that does not compile",
    );
    assert!(
        err.contains("`cargo build --release --lib --target wasm32-unknown-unknown` failed"),
        "{err}"
    );
}
