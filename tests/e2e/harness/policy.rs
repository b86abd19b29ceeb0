//! Which policy the suite tests, where the test policies' components are, and reading the
//! policy status (`GET /api/policy`).
//!
//! `scripts/test.sh` runs the suite once per bundled policy by setting
//! `SWITCHYARD_TEST_POLICY=builtin:NAME`; every hub a test starts then runs that policy unless
//! the test names its own ([`super::HubOpts::policy`]). Most tests hold for any correct policy.
//! A test that checks what only the default policy promises (strict priority across everyone,
//! say) or that picks its policies itself says so with [`skip_unless_default_policy`], so the
//! runs for other policies skip it visibly rather than fail it or run it again to no purpose.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The policy a hub runs when it is started without `--policy`.
pub const DEFAULT_POLICY: &str = "builtin:greedy";

/// `SWITCHYARD_TEST_POLICY`, when set and not empty.
pub(crate) fn policy_under_test_flag() -> Option<String> {
    std::env::var("SWITCHYARD_TEST_POLICY")
        .ok()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
}

/// The policy the suite is testing, as a `--policy` value (`builtin:greedy` unless
/// `SWITCHYARD_TEST_POLICY` says otherwise).
pub fn policy_under_test() -> String {
    policy_under_test_flag().unwrap_or_else(|| DEFAULT_POLICY.to_string())
}

/// Whether the suite is testing the default policy.
pub fn default_policy_under_test() -> bool {
    policy_under_test() == DEFAULT_POLICY
}

/// For a test that only applies to the default policy, or that chooses its policies itself
/// (so running it again for another policy would repeat the same run): true, with a line on
/// stderr saying why, when the suite tests another policy. Use as
/// `if skip_unless_default_policy("test_name", "why") { return; }`.
pub fn skip_unless_default_policy(test: &str, why: &str) -> bool {
    if default_policy_under_test() {
        return false;
    }
    eprintln!(
        "SKIPPED {test} under SWITCHYARD_TEST_POLICY={}: {why}",
        policy_under_test()
    );
    true
}

/// The component file host/build.rs leaves for the policy crate in `policies/<name>` or
/// `tests/policies/<name>`: `<target>/policies/<name>.wasm`. The target folder is
/// `CARGO_TARGET_DIR` when set (relative to the workspace, as cargo reads it), else found above
/// the `switchyard` binary under test (`<target>/debug/switchyard`, or deeper with `--target`).
pub fn policy_file(name: &str) -> PathBuf {
    let file = Path::new("policies").join(format!("{name}.wasm"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is inside the workspace");
    let mut tried = Vec::new();
    let from_env = std::env::var_os("CARGO_TARGET_DIR").map(|dir| workspace.join(dir));
    let above_binary = Path::new(env!("CARGO_BIN_EXE_switchyard"))
        .ancestors()
        .skip(1)
        .map(Path::to_path_buf);
    for target in from_env.into_iter().chain(above_binary) {
        let candidate = target.join(&file);
        if candidate.is_file() {
            return candidate;
        }
        tried.push(candidate);
    }
    panic!(
        "no component for policy `{name}`; host/build.rs writes it when it builds the hub \
         (is there a crate in policies/{name} or tests/policies/{name}?). Looked at: {tried:#?}"
    );
}

/// A counter of a `GET /api/policy` body (`counters.<name>`), failing the test with the body
/// when it is missing.
pub fn policy_counter(status: &Value, name: &str) -> u64 {
    status
        .get("counters")
        .and_then(|c| c.get(name))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("policy status without counter `{name}`: {status}"))
}

/// The counters that count failures and refusals, as `(name, value)`, for assertions that
/// compare them all at once (so a failure shows every one).
pub fn failure_counters(status: &Value) -> [(&'static str, u64); 4] {
    ["traps", "timeouts", "rejected_proposals", "fallbacks"].map(|n| (n, policy_counter(status, n)))
}

/// The `cabi_realloc` export of the hand-written policy modules (WAT): a bump allocator from the
/// module's `$heap` global, aligned as asked, growing memory when it runs past the end. The
/// host calls it to pass strings and lists in.
pub const CABI_REALLOC: &str = r#"  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.const 16)))))
    (local.get $p))"#;
