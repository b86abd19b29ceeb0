//! Custody of the hub's credentials and data: admin tokens (rotation, revocation, the
//! environment's token), the audit log, policy files (bounded reads, kept in the data folder,
//! the fallback when the policy in force cannot be loaded), capability limits and the release
//! of names no longer used, retention of finished tasks, online backups, and the data folder's
//! permissions.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::hub::{admin_token, unique_name};
use crate::harness::{
    policy_file, poll_until, skip_unless_default_policy, str_field, Agent, Hub, HubOpts,
    STATE_TIMEOUT,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A fresh folder under the system temp dir (removed by whoever adopts it, or left for
/// inspection: these are small).
fn temp_folder(prefix: &str) -> PathBuf {
    let path = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&path).expect("create a temp folder");
    path
}

/// The value of an unlabelled sample in `/metrics`.
async fn metric(hub: &Hub, name: &str) -> f64 {
    let text = hub.api().get("/metrics").await.text;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// Runs `switchyard ARGS` to its end (commands that exit by themselves).
fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("SWITCHYARD_ADMIN_TOKEN");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run switchyard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_rotates_and_the_last_one_cannot_be_revoked() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let old = api.admin_token().to_string();

    let refused = api
        .request(Method::DELETE, "/admin/tokens/admin", Some(&old), None)
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(
        refused.error().contains("last admin token"),
        "{}",
        refused.text
    );

    let rotated = api
        .post("/admin/tokens/rotate-admin", &json!({}))
        .await
        .expect(200, "rotate the admin token");
    let new = str_field(&rotated, "token").to_string();
    assert_ne!(new, old);
    let file = hub.data_dir().join("admin.token");
    assert_eq!(
        str_field(&rotated, "written_to"),
        file.display().to_string()
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), new);
    assert_eq!(mode(&file), 0o600);

    let with_old = api
        .request(Method::GET, "/admin/tokens", Some(&old), None)
        .await;
    assert_eq!(with_old.status, 401, "the old admin token is revoked");
    let listed = api
        .request(Method::GET, "/admin/tokens", Some(&new), None)
        .await
        .expect(200, "list tokens with the new admin token");
    let admins: Vec<&Value> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "admin")
        .collect();
    assert_eq!(admins.len(), 1, "{listed}");
    assert_eq!(admins[0]["token_prefix"], new[..8], "{listed}");

    // The command line does the same, and prints the token once.
    let out = run(
        &[
            "token",
            "rotate-admin",
            "--hub",
            &format!(
                "http://{}",
                hub.ws_url()
                    .trim_start_matches("ws://")
                    .trim_end_matches("/ws")
            ),
            "--token",
            &new,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let newest = str_field(&printed, "token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), newest);
    let with_new = api
        .request(Method::GET, "/admin/tokens", Some(&new), None)
        .await;
    assert_eq!(with_new.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_admin_token_replaces_the_previous_one_and_a_short_one_is_refused() {
    let hub = Hub::start(HubOpts::default()).await;
    let first = hub.api().admin_token().to_string();
    let mut stopped = hub.kill9();
    let second = admin_token();
    stopped.set_admin_token(&second);
    let hub = Hub::restart_on(stopped).await;
    let api = hub.api();
    let old = api
        .request(Method::GET, "/admin/tokens", Some(&first), None)
        .await;
    assert_eq!(old.status, 401, "the previous env token is no longer valid");
    let listed = api.get("/admin/tokens").await.expect(200, "list tokens");
    let admins = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "admin")
        .count();
    assert_eq!(admins, 1, "{listed}");

    let dir = temp_folder("switchyard-e2e-short-token");
    let data = dir.join("data");
    let out = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[("SWITCHYARD_ADMIN_TOKEN", "a")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SWITCHYARD_ADMIN_TOKEN is 1 characters long")
            && stderr.contains("at least 32"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_audited_newest_first_a_page_at_a_time() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let id = api.submit(json!({"description": "to cancel"})).await;
    api.post(&format!("/api/tasks/{id}/cancel"), &json!({}))
        .await
        .expect(200, "cancel");
    api.create_token("audited-agent").await;
    api.request(
        Method::DELETE,
        "/admin/tokens/audited-agent",
        Some(api.admin_token()),
        None,
    )
    .await
    .expect(200, "revoke");
    api.put_policy(&json!({"builtin": "greedy"}))
        .await
        .expect(200, "swap the policy");
    // Refused actions leave no record.
    api.post(&format!("/api/tasks/{id}/cancel"), &json!({}))
        .await
        .expect(409, "cancel again");

    let page = api.get("/admin/audit?limit=2").await.expect(200, "audit");
    let records = page["records"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (str_field(r, "action"), str_field(r, "target")))
        .collect();
    assert_eq!(
        seen,
        [
            ("policy_swap", "builtin:greedy"),
            ("token_revoke", "audited-agent")
        ],
        "{page}"
    );
    for record in records {
        assert_eq!(record["actor"], "admin", "{record}");
        assert_eq!(record["token_prefix"], api.admin_token()[..8], "{record}");
        assert!(record["at"].as_u64().unwrap() >= started, "{record}");
    }
    let cursor = page["next_cursor"]
        .as_u64()
        .expect("a cursor: more records");
    let rest = api
        .get(&format!("/admin/audit?limit=2&cursor={cursor}"))
        .await
        .expect(200, "audit, second page");
    let seen: Vec<(&str, &str)> = rest["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (str_field(r, "action"), str_field(r, "target")))
        .collect();
    assert_eq!(
        seen,
        [
            ("token_create", "audited-agent"),
            ("task_cancel", id.as_str())
        ],
        "{rest}"
    );
    assert_eq!(rest["next_cursor"], Value::Null, "{rest}");

    let bad = api.get("/admin/audit?limit=0").await;
    assert_eq!(bad.status, 400);
    assert!(bad.error().starts_with("limit must be"), "{}", bad.text);

    // `switchyard audit` shows the same, and the log survives a restart.
    let hub = Hub::restart_on(hub.kill9()).await;
    let hub_url = format!(
        "http://{}",
        hub.ws_url()
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
    );
    let out = run(
        &[
            "audit",
            "--json",
            "--limit",
            "1",
            "--hub",
            &hub_url,
            "--token",
            hub.api().admin_token(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(printed["records"][0]["action"], "policy_swap", "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_path_must_be_a_regular_file_within_the_limit() {
    let hub = Hub::start(HubOpts::default().flag("--max-policy-bytes", 1000)).await;
    let api = hub.api();
    let before = api.policy().await;
    let dir = temp_folder("switchyard-e2e-policy-files");
    let fifo = dir.join("fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path this test owns.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let big = dir.join("big.wasm");
    std::fs::write(&big, vec![0u8; 1001]).unwrap();

    let started = Instant::now();
    for (path, status, needle) in [
        (fifo.display().to_string(), 400, "is a FIFO"),
        ("/dev/zero".to_string(), 400, "is a character device"),
        (big.display().to_string(), 413, "limit of 1000 bytes"),
    ] {
        let refused = api.put_policy(&json!({"path": path})).await;
        assert_eq!(refused.status, status, "{path}: {}", refused.text);
        assert!(refused.error().contains(needle), "{path}: {}", refused.text);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused quickly"
    );
    let upload = api.put_policy_wasm(vec![0u8; 1001], None).await;
    assert_eq!(upload.status, 413, "{}", upload.text);
    assert_eq!(
        api.policy().await["digest"],
        before["digest"],
        "nothing changed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_policy_outlives_its_file_and_an_unloadable_one_falls_back_to_greedy() {
    if skip_unless_default_policy(
        "a_file_policy_outlives_its_file_and_an_unloadable_one_falls_back_to_greedy",
        "it picks its policies itself",
    ) {
        return;
    }
    let hub = Hub::start(HubOpts::default().persisted_policy()).await;
    let dir = temp_folder("switchyard-e2e-kept-policy");
    let file = dir.join("hostile-copy.wasm");
    std::fs::copy(policy_file("hostile"), &file).unwrap();
    let config = json!({"mode": "well_behaved"});
    let swapped = hub
        .api()
        .put_policy(&json!({"path": file, "config": config}))
        .await
        .expect(200, "swap to the file");
    std::fs::remove_file(&file).unwrap();

    let hub = Hub::restart_on(hub.kill9()).await;
    let status = hub.api().policy().await;
    for field in ["name", "digest", "source", "config"] {
        assert_eq!(status[field], swapped[field], "{field}: {status}");
    }
    assert!(status.get("startup_fallback").is_none(), "{status}");

    // A record as a hub before this one left it (no kept component), whose file is gone.
    let stopped = hub.kill9();
    {
        let store = switchyard::store::Store::open(stopped.path(), 64 << 20).unwrap();
        let mut txn = store.write_txn().unwrap();
        let old = switchyard::store::PersistedPolicy {
            source: file.display().to_string(),
            config,
            digest: None,
        };
        store.set_policy(&mut txn, &old, None).unwrap();
        txn.commit().unwrap();
    }
    let hub = Hub::restart_on(stopped).await;
    let status = hub.api().policy().await;
    assert_eq!(status["name"], "greedy", "{status}");
    let fallback = &status["startup_fallback"];
    assert_eq!(fallback["wanted"], file.display().to_string(), "{status}");
    assert!(
        str_field(fallback, "reason").contains("cannot read the policy file"),
        "{status}"
    );
    hub.wait_for_log(&["starting on builtin:greedy"]).await;
    // It schedules.
    let mut agent = hub.agent("after-fallback").await;
    let id = hub.api().submit(json!({"description": "x"})).await;
    assert_eq!(agent.expect_assign().await.task_id, id);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_bounded_and_names_no_longer_used_are_released() {
    let per_agent = 300;
    let hub = Hub::start(HubOpts::default().flag("--max-capabilities", per_agent)).await;
    let api = hub.api();
    let token = api.create_token("churn").await;
    let url = hub.ws_url();

    let mut agent = Agent::open(&url, "churn", &token).await;
    let too_many: Vec<String> = (0..=per_agent).map(|i| format!("c{i}")).collect();
    agent
        .send(json!({"type": "identify", "agent_id": "churn", "token": token, "capabilities": too_many}))
        .await;
    agent.expect_error("too_many_capabilities").await;
    let long = "x".repeat(129);
    agent
        .send(json!({"type": "identify", "agent_id": "churn", "token": token, "capabilities": [long]}))
        .await;
    agent.expect_error("capability_name_too_long").await;
    agent.close().await;

    // Thirty identifies, each with 300 names never seen before: 9,000 names.
    let rounds = 30;
    let mut last = Vec::new();
    for round in 0..rounds {
        let names: Vec<String> = (0..per_agent).map(|i| format!("r{round}-n{i}")).collect();
        let mut agent = Agent::open(&url, "churn", &token).await;
        agent
            .identify_with(json!({"type": "identify", "agent_id": "churn", "token": token, "capabilities": names}))
            .await;
        if round + 1 == rounds {
            last = names;
            hub.wait_for_log(&["capability names no longer in use were released"])
                .await;
            // Kept connected: its names are in use.
            let interned = metric(&hub, "switchyard_capability_names").await;
            assert!(
                interned < 1024.0 + per_agent as f64,
                "{interned} names interned after {} sent",
                rounds * per_agent
            );
            // Scheduling still matches names after the renumbering.
            let id = api
                .submit(
                    json!({"description": "needs a late name", "needed_capabilities": [last[7]]}),
                )
                .await;
            let a = agent.expect_assign().await;
            assert_eq!(a.task_id, id);
            agent.accept(&a).await;
            agent.complete(&id, a.generation).await;
        } else {
            agent.close().await;
        }
    }
    assert_eq!(last.len(), per_agent);
}

/// Completes, cancels and dead-letters a task each; returns their ids.
async fn finish_three(hub: &Hub) -> [String; 3] {
    let api = hub.api();
    let mut agent = hub.agent("finisher").await;
    let completed = api.submit(json!({"description": "complete me"})).await;
    let a = agent.expect_assign().await;
    agent.accept(&a).await;
    agent.complete(&completed, a.generation).await;

    let dead = api
        .submit(json!({"description": "fail me", "max_retries": 1}))
        .await;
    // Failed at every attempt until it runs out of them (bounded: max_retries is 1).
    for attempt in 0.. {
        assert!(
            attempt < 5,
            "still not dead-lettered after {attempt} failures"
        );
        let a = agent.expect_assign().await;
        assert_eq!(a.task_id, dead);
        agent.accept(&a).await;
        agent
            .send(json!({"type": "task_failed", "task_id": dead, "generation": a.generation, "error": "no"}))
            .await;
        agent.expect_type("task_ack").await;
        if api.get_task(&dead).await["status"] == "dead_letter" {
            break;
        }
    }

    let cancelled = api
        .submit(json!({"description": "cancel me", "needed_capabilities": ["none-has-it"]}))
        .await;
    api.post(&format!("/api/tasks/{cancelled}/cancel"), &json!({}))
        .await
        .expect(200, "cancel");
    [completed, dead, cancelled]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_are_pruned_after_their_retention() {
    let opts = HubOpts::default().flag("--retain", "1s");
    let hub = Hub::start(opts).await;
    let finished = finish_three(&hub).await;
    let queued = hub
        .api()
        .submit(json!({"description": "stays", "needed_capabilities": ["none-has-it"]}))
        .await;
    // Retention is an age: let a second pass. The purge runs at start and every minute, so a
    // restart runs one now.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let hub = Hub::restart_on(hub.kill9()).await;
    poll_until("three tasks pruned", STATE_TIMEOUT, || async {
        match metric(&hub, "switchyard_tasks_pruned_total").await {
            n if n >= 3.0 => Ok(n),
            n => Err(format!("{n} pruned")),
        }
    })
    .await;
    assert_eq!(metric(&hub, "switchyard_tasks_pruned_total").await, 3.0);
    for id in &finished {
        let gone = hub.api().get(&format!("/api/tasks/{id}")).await;
        assert_eq!(gone.status, 404, "{id}: {}", gone.text);
    }
    assert_eq!(hub.api().get_task(&queued).await["status"], "queued");

    // `--retain 0` keeps everything.
    let hub = Hub::start(HubOpts::default().flag("--retain", "0")).await;
    let kept = finish_three(&hub).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let hub = Hub::restart_on(hub.kill9()).await;
    // A submit goes through a commit after the start: a purge would have run by then.
    hub.api()
        .submit(json!({"description": "after the start"}))
        .await;
    assert_eq!(metric(&hub, "switchyard_tasks_pruned_total").await, 0.0);
    for id in &kept {
        hub.api()
            .get(&format!("/api/tasks/{id}"))
            .await
            .expect(200, "kept");
    }

    let bad = run(&["serve", "--retain", "7x"], &[]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("unknown unit \"x\""), "{stderr}");
    // A bare number would be seconds: refused, so `--retain 7` cannot mean 7 s by mistake.
    let bare = run(&["serve", "--retain", "7"], &[]);
    assert!(!bare.status.success());
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(stderr.contains("needs a unit"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_hub_restores_and_serves() {
    let hub = Hub::start(HubOpts::default()).await;
    let finished = finish_three(&hub).await;
    let queued = hub
        .api()
        .submit(
            json!({"description": "queued at the backup", "needed_capabilities": ["none-has-it"]}),
        )
        .await;
    let folder = temp_folder("switchyard-e2e-backup");
    let file = folder.join("hub.backup");
    let out = run(
        &[
            "backup",
            "--to",
            file.to_str().unwrap(),
            "--data-dir",
            hub.data_dir().to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&file), 0o600);
    // The hub goes on meanwhile; the copy is of one commit.
    hub.api()
        .submit(json!({"description": "after the backup"}))
        .await;
    let again = run(
        &[
            "backup",
            "--to",
            file.to_str().unwrap(),
            "--data-dir",
            hub.data_dir().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // Restore: the copy becomes data.mdb of a new folder.
    let restored = folder.join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::set_permissions(&restored, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(&file, restored.join("data.mdb")).unwrap();
    let copy = Hub::start_on(restored, HubOpts::default()).await;
    let api = copy.api();
    for (id, status) in finished
        .iter()
        .zip(["completed", "dead_letter", "cancelled"])
        .chain([(&queued, "queued")])
    {
        assert_eq!(api.get_task(id).await["status"], status, "{id}");
    }
    let listed = api.list_tasks("").await;
    assert_eq!(
        listed["count"], 4,
        "the task after the backup is not in it: {listed}"
    );
    // It schedules what was queued.
    let token = api.create_token("restorer").await;
    let mut agent = Agent::open(&copy.ws_url(), "restorer", &token).await;
    agent
        .identify_with(json!({"type": "identify", "agent_id": "restorer", "token": token, "capabilities": ["none-has-it"]}))
        .await;
    assert_eq!(agent.expect_assign().await.task_id, queued);

    let not_a_folder = run(
        &[
            "backup",
            "--to",
            "x",
            "--data-dir",
            folder.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!not_a_folder.status.success());
    assert!(String::from_utf8_lossy(&not_a_folder.stderr).contains("not a switchyard data folder"));
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_is_private_and_admin_token_is_never_written_through_a_link() {
    let parent = temp_folder("switchyard-e2e-folder");
    let fresh = parent.join("nested").join("data");
    let hub = Hub::start_on(fresh.clone(), HubOpts::default()).await;
    assert_eq!(mode(&fresh), 0o700);
    drop(hub);

    let planted = parent.join("planted");
    std::fs::create_dir(&planted).unwrap();
    let target = parent.join("readable-by-all");
    std::fs::write(&target, "").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&target, planted.join("admin.token")).unwrap();
    let out = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            planted.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "",
        "nothing written through it"
    );
    let _ = std::fs::remove_dir_all(&parent);
}
