//! The command line for people: `tasks`, `agents`, `status` and `task ID` print tables by
//! default and the hub's JSON with `--json`, the two agree, and the exit code says what
//! happened (README, "Exit codes").

use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::harness::{Hub, HubOpts};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Runs `switchyard ARGS` against `hub` with its admin token; stdout is a pipe, so no colours
/// and no cutting.
fn run(hub: &Hub, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SWITCHYARD_HUB", format!("http://{}", hub.addr()))
        .env("SWITCHYARD_TOKEN", hub.api().admin_token())
        .env_remove("NO_COLOR")
        .output()
        .expect("run switchyard")
}

/// The command's standard output, after checking that it succeeded.
fn stdout(hub: &Hub, args: &[&str]) -> String {
    let out = run(hub, args);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "switchyard {args:?} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains('\x1b'), "colours in a pipe: {text:?}");
    text
}

fn json_of(hub: &Hub, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let text = stdout(hub, &args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} --json: {e}\n{text}"))
}

/// The cells of a table's line, split on the two-space gap.
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The value of a `name: value` line.
fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_by_default_and_json_that_agrees() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let mut agent = hub.agent("cli-a1").await;
    let first = api
        .submit(json!({"description": "first", "priority": "high"}))
        .await;
    let assign = agent.expect_type("task_assign").await;
    assert_eq!(assign["task_id"], first.as_str());
    let second = api.submit(json!({"description": "second\nline"})).await;

    // tasks: a header, then one line per task, as many as --json lists.
    let table = stdout(&hub, &["tasks"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        cells(lines[0]),
        [
            "ID",
            "STATUS",
            "PRIORITY",
            "TENANT",
            "AGENT",
            "RETRIES",
            "CREATED",
            "DESCRIPTION"
        ],
        "{table}"
    );
    let listed = json_of(&hub, &["tasks"]);
    let tasks = listed["tasks"].as_array().expect("tasks");
    assert_eq!(lines.len(), 1 + tasks.len(), "{table}");
    for (line, task) in lines[1..].iter().zip(tasks) {
        let row = cells(line);
        assert_eq!(row[0], task["id"].as_str().unwrap(), "{table}");
        assert_eq!(row[1], task["status"].as_str().unwrap(), "{table}");
    }
    let first_row = cells(lines[1]);
    assert_eq!(
        first_row[..5],
        [first.as_str(), "assigned", "high", "default", "cli-a1"]
    );
    assert!(first_row[6].ends_with('Z'), "an RFC 3339 UTC time: {table}");
    assert_eq!(cells(lines[2])[0], second, "{table}");
    assert!(
        lines[2].ends_with("second line"),
        "one line per task: {table}"
    );

    // agents: the connected agent, its state and task.
    let table = stdout(&hub, &["agents"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let agents = json_of(&hub, &["agents"]);
    let listed = &agents["agents"][0];
    let row = cells(lines[1]);
    assert_eq!(row[0], "cli-a1", "{table}");
    assert_eq!(row[2], listed["fsm_state"].as_str().unwrap(), "{table}");
    assert_eq!(row[3], first, "{table}");

    // status: one queued, one assigned, one agent, the policy in force.
    let table = stdout(&hub, &["status"]);
    let status = json_of(&hub, &["status"]);
    assert_eq!(status["stats"]["by_status"]["queued"], 1, "{status}");
    let count = |name: &str| -> Vec<String> {
        table
            .lines()
            .map(cells)
            .find(|c| c.first() == Some(&name))
            .unwrap_or_else(|| panic!("no {name} line in {table}"))
            .iter()
            .map(|c| c.to_string())
            .collect()
    };
    assert_eq!(count("queued"), ["queued", "1"]);
    assert_eq!(count("assigned"), ["assigned", "1"]);
    assert_eq!(count("normal"), ["normal", "1"]);
    let policy = status["policy"]["name"].as_str().expect("a policy name");
    assert!(field(&table, "in force").starts_with(policy), "{table}");
    assert!(field(&table, "health") == "ok", "{table}");

    // task ID: its fields, then every event of its history, oldest first.
    let table = stdout(&hub, &["task", &first]);
    let record = json_of(&hub, &["task", &first]);
    assert_eq!(record["id"], first.as_str());
    assert_eq!(field(&table, "id"), first, "{table}");
    assert_eq!(field(&table, "assigned to"), "cli-a1", "{table}");
    let (_, timeline) = table.split_once("History\n").expect("a history");
    let timeline: Vec<&str> = timeline.lines().collect();
    assert_eq!(cells(timeline[0]), ["TIME", "EVENT", "DETAILS"], "{table}");
    let history = record["history"].as_array().expect("history");
    assert!(!history.is_empty());
    assert_eq!(timeline.len(), 1 + history.len(), "{table}");
    for (line, entry) in timeline[1..].iter().zip(history.iter().rev()) {
        assert_eq!(cells(line)[1], entry["event"].as_str().unwrap(), "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_code_says_what_happened() {
    let hub = Hub::start(HubOpts::default()).await;
    let missing = run(&hub, &["task", "task-00000000000000ff"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("the hub refused (404"));

    let usage = run(&hub, &["task"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    let usage = run(&hub, &["tasks", "--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");

    // A port nothing listens on: the hub's own, once it has stopped.
    let addr = hub.addr();
    let token = hub.api().admin_token().to_string();
    drop(hub);
    let unreachable = Command::new(BIN)
        .args([
            "status",
            "--hub",
            &format!("http://{addr}"),
            "--token",
            &token,
        ])
        .output()
        .expect("run switchyard");
    assert_eq!(unreachable.status.code(), Some(3), "{unreachable:?}");
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the hub"));
}

/// `tasks --limit N` pages: the table's last line names the next `--cursor`, and following it
/// lists every task once, in submission order, with no cursor after the last page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_page_with_the_cursor_the_table_names() {
    let hub = Hub::start(HubOpts::default()).await;
    let tasks: Vec<Value> = (0..5)
        .map(|i| json!({"description": format!("paged {i}")}))
        .collect();
    let submitted = hub.api().submit_batch(tasks).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut args = vec!["tasks", "--limit", "2"];
        if let Some(cursor) = &cursor {
            args.extend(["--cursor", cursor.as_str()]);
        }
        let table = stdout(&hub, &args);
        let lines: Vec<&str> = table.lines().collect();
        cursor = lines
            .last()
            .and_then(|line| line.strip_prefix("more tasks follow: --cursor "))
            .map(str::to_owned);
        let rows = if cursor.is_some() {
            &lines[1..lines.len() - 1]
        } else {
            &lines[1..]
        };
        assert!(rows.len() <= 2, "{table}");
        seen.extend(rows.iter().map(|row| cells(row)[0].to_owned()));
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "still paging after ten pages");
    assert_eq!(seen, submitted);
    let bad = run(&hub, &["tasks", "--cursor", "not-a-cursor"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
}

/// `token create --role --tenant` makes the token asked for; `token list` shows role and tenant;
/// a role that is none of the three is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_takes_a_role_and_a_tenant() {
    let hub = Hub::start(HubOpts::default()).await;
    hub.api().create_tenant("team-a").await;
    let made: Value = serde_json::from_str(&stdout(
        &hub,
        &[
            "token", "create", "ci-a", "--role", "client", "--tenant", "team-a",
        ],
    ))
    .expect("token create prints JSON");
    assert_eq!(
        (&made["agent_id"], &made["role"], &made["tenant"]),
        (&json!("ci-a"), &json!("client"), &json!("team-a")),
        "{made}"
    );
    let token = made["token"].as_str().expect("the token, shown once");
    let table = stdout(&hub, &["token", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        cells(lines[0]),
        ["AGENT", "ROLE", "TENANT", "TOKEN PREFIX"],
        "{table}"
    );
    let row = lines
        .iter()
        .map(|line| cells(line))
        .find(|row| row[0] == "ci-a")
        .unwrap_or_else(|| panic!("ci-a listed: {table}"));
    assert_eq!(row[1..], ["client", "team-a", &token[..8]], "{table}");

    let refused = run(&hub, &["token", "create", "x", "--role", "boss"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("\"boss\" is not a role: expected agent, client or admin"),
        "{stderr}"
    );
    let refused = run(&hub, &["token", "create", "x", "--tenant", "nope"]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("tenant_not_found"),
        "{refused:?}"
    );
}
