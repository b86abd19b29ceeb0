//! The agent sidecar, `switchyard agent`, against the real hub: real worker processes (small
//! Python scripts written into a temporary folder), real crashes (SIGKILL of the sidecar, of
//! the hub), and the outcome checked through the hub's HTTP API.
//!
//! Every wait is for an event (a line in the worker's log file, a file appearing or going, a
//! process gone, a task status over HTTP), bounded by a deadline.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::hub::unique_name;
use crate::harness::{
    completed_events, poll_until, str_field, u64_field, Hub, HubOpts, STATE_TIMEOUT,
};

/// How long a worker or a sidecar may take to react (a debug build, tests in parallel).
const REACT_TIMEOUT: Duration = Duration::from_secs(30);

/// The worker: one Python script whose behaviour the task's `metadata.mode` chooses. It logs
/// `start`/`finish` lines (pid, task id, generation, attempt) to `runs.log` in its folder.
const WORKER: &str = r#"
import json, os, subprocess, sys, time
task = json.load(sys.stdin)
work = os.environ["WORK_DIR"]
task_id = os.environ["SWITCHYARD_TASK_ID"]
generation = os.environ["SWITCHYARD_TASK_GENERATION"]
attempt = os.environ["SWITCHYARD_TASK_ATTEMPT"]
mode = task["metadata"].get("mode", "echo")

def log(event):
    with open(os.path.join(work, "runs.log"), "a") as f:
        f.write(f"{event} {os.getpid()} {task_id} {generation} {attempt}\n")

def wait_for(path, seconds):
    deadline = time.time() + seconds
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit("gave up waiting for " + path)
        time.sleep(0.02)

log("start")
if mode == "fail":
    print("some output first")
    print("boom: " + task["description"], file=sys.stderr)
    sys.exit(3)
if mode == "text":
    print("plain text for " + task["description"])
    log("finish")
    sys.exit(0)
if mode == "hang":
    child = subprocess.Popen(["sleep", "120"])
    with open(os.path.join(work, "pids-" + task_id + ".tmp"), "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.rename(os.path.join(work, "pids-" + task_id + ".tmp"), os.path.join(work, "pids-" + task_id))
    time.sleep(120)
    sys.exit(0)
if mode == "wait":
    wait_for(os.path.join(work, "release-" + task_id), 120)
log("finish")
print(json.dumps({
    "echo": task["description"],
    "metadata": task["metadata"],
    "stdin_task_id": task["task_id"],
    "env_task_id": task_id,
    "generation": int(generation),
    "stdin_generation": task["generation"],
}))
"#;

/// AgentCom's file contract: the wake command confirms and answers through RESULTS/ as the
/// task's `metadata.mode` says ("ok", "fail" or "silent": never confirms).
const WAKE: &str = r#"
import json, os, sys
task = json.load(sys.stdin)
results = os.environ["SWITCHYARD_RESULTS_DIR"]
mode = task["metadata"].get("mode")
base = os.path.join(results, task["task_id"])
def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)
if mode in ("ok", "fail"):
    write(base + ".started", "")
if mode == "ok":
    write(base + ".json", json.dumps({"status": "success", "output": "did " + task["description"]}))
if mode == "fail":
    write(base + ".json", json.dumps({"status": "failed", "reason": "nope: " + task["description"]}))
"#;

/// A folder for one test's files, removed at the end (kept with `SWITCHYARD_E2E_KEEP`).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(unique_name("switchyard-sidecar"));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SWITCHYARD_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One `switchyard agent` process. Dropped: stopped with SIGTERM (which stops its worker too),
/// SIGKILL if it does not exit in time.
struct AgentProcess {
    child: Option<Child>,
    label: String,
}

impl AgentProcess {
    fn start(config: &Path) -> AgentProcess {
        let label = unique_name("agent")
            .split('-')
            .take(3)
            .collect::<Vec<_>>()
            .join("-");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("agent")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,switchyard=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchyard agent");
        eprintln!("[{label}] started pid {}", child.id());
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let label = label.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[{label}] {line}");
                }
            });
        }
        AgentProcess {
            child: Some(child),
            label,
        }
    }

    /// SIGKILL: no chance to stop its worker or save anything.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        let status = child.wait().unwrap();
        eprintln!("[{}] killed: {status:?}", self.label);
    }

    /// SIGTERM, and waits for the exit (bounded).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("[{}] stopped: {status:?}", self.label);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("[{}] did not stop within 10 s of SIGTERM", self.label);
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        } else {
            self.stop();
        }
    }
}

/// A hub, an agent token, a work folder with the worker scripts and a sidecar config.
struct Setup {
    hub: Hub,
    dir: TempDir,
    config: PathBuf,
}

impl Setup {
    /// `worker`: the config's worker table (`[command]` or `[file_contract]`), with `{dir}`
    /// standing for the work folder.
    async fn new(opts: HubOpts, worker: &str) -> Setup {
        let hub = Hub::start(opts).await;
        let dir = TempDir::new();
        let token = hub.api().create_token("sidecar-1").await;
        std::fs::write(dir.0.join("token"), format!("{token}\n")).unwrap();
        std::fs::write(dir.0.join("worker.py"), WORKER).unwrap();
        std::fs::write(dir.0.join("wake.py"), WAKE).unwrap();
        let config = dir.0.join("agent.toml");
        let text = format!(
            r#"
hub_url = "{url}"
agent_id = "sidecar-1"
token_file = "token"
capabilities = ["python", "sidecar-test"]
state_dir = "state"

[connection]
ping_interval = "1s"
pong_timeout = "5s"
reconnect_min = "100ms"
reconnect_max = "500ms"
progress_interval = "500ms"

{worker}
"#,
            url = hub.ws_url(),
            worker = worker.replace("{dir}", &dir.0.display().to_string()),
        );
        std::fs::write(&config, text).unwrap();
        Setup { hub, dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn agent(&self) -> AgentProcess {
        AgentProcess::start(&self.config)
    }

    /// The worker's log lines for `task_id`: (event, pid, generation, attempt).
    fn runs(&self, task_id: &str) -> Vec<(String, u32, u64, u32)> {
        let text = std::fs::read_to_string(self.path("runs.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.len() == 5 && f[2] == task_id).then(|| {
                    (
                        f[0].to_owned(),
                        f[1].parse().unwrap(),
                        f[3].parse().unwrap(),
                        f[4].parse().unwrap(),
                    )
                })
            })
            .collect()
    }

    /// Waits until the worker has logged `count` lines of `event` for `task_id`.
    async fn wait_runs(
        &self,
        task_id: &str,
        event: &str,
        count: usize,
    ) -> Vec<(String, u32, u64, u32)> {
        poll_until(
            &format!("{count} `{event}` of {task_id} in runs.log"),
            REACT_TIMEOUT,
            || async {
                let runs: Vec<_> = self
                    .runs(task_id)
                    .into_iter()
                    .filter(|r| r.0 == event)
                    .collect();
                if runs.len() >= count {
                    Ok(runs)
                } else {
                    Err(format!("{:?}", self.runs(task_id)))
                }
            },
        )
        .await
    }

    /// Waits until the task's status is `status`; returns the task.
    async fn wait_status(&self, id: &str, status: &str) -> Value {
        poll_until(&format!("{id} to be {status}"), STATE_TIMEOUT, || async {
            let task = self.hub.api().get_task(id).await;
            if task["status"] == status {
                Ok(task)
            } else {
                Err(task.to_string())
            }
        })
        .await
    }

    /// Waits until the sidecar's state folder holds no task.
    async fn wait_state_cleared(&self) {
        let record = self.path("state").join("task.json");
        poll_until(
            "the sidecar's state folder to be empty",
            REACT_TIMEOUT,
            || async {
                match std::fs::read_to_string(&record) {
                    Err(_) => Ok(()),
                    Ok(text) => Err(text),
                }
            },
        )
        .await
    }
}

const COMMAND: &str = r#"
[command]
argv = ["python3", "{dir}/worker.py"]
cwd = "{dir}"
timeout = "60s"
env = { WORK_DIR = "{dir}" }
"#;

/// Whether a process is alive (a zombie is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .map(str::trim_start)
                .and_then(|s| s.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

async fn wait_dead(pid: u32, what: &str) {
    poll_until(
        &format!("{what} (pid {pid}) to be gone"),
        REACT_TIMEOUT,
        || async {
            if alive(pid) {
                Err("alive".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await
}

/// Reads the `pids-<task>` file of a hanging worker: its own pid and its child's.
async fn hang_pids(setup: &Setup, task_id: &str) -> (u32, u32) {
    let path = setup.path(&format!("pids-{task_id}"));
    poll_until("the hanging worker's pids", REACT_TIMEOUT, || async {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let pids: Vec<u32> = text
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        Ok((pids[0], pids[1]))
    })
    .await
}

/// Three tasks, run one after the other by a real command: each completes once, and the
/// result is what the command printed (JSON as it is, text wrapped as `{"output": …}`). The
/// command got the task on stdin and its id and generation in its environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_command_completes_tasks_and_its_stdout_is_the_result() {
    let setup = Setup::new(HubOpts::default(), COMMAND).await;
    let _agent = setup.agent();
    let api = setup.hub.api();
    let first = api
        .submit(json!({"description": "first", "metadata": {"mode": "echo", "n": 1}, "needed_capabilities": ["sidecar-test"]}))
        .await;
    let second = api
        .submit(json!({"description": "second", "metadata": {"mode": "echo", "n": 2}}))
        .await;
    let text = api
        .submit(json!({"description": "third", "metadata": {"mode": "text"}}))
        .await;

    for (id, description, n) in [(&first, "first", 1), (&second, "second", 2)] {
        let task = setup.wait_status(id, "completed").await;
        assert_eq!(completed_events(&task), 1, "{task}");
        assert_eq!(task["assigned_to"], "sidecar-1", "{task}");
        let generation = u64_field(&task, "generation");
        assert_eq!(
            task["result"],
            json!({
                "echo": description,
                "metadata": {"mode": "echo", "n": n},
                "stdin_task_id": id,
                "env_task_id": id,
                "generation": generation,
                "stdin_generation": generation,
            }),
            "{task}"
        );
        assert_eq!(
            setup.runs(id).len(),
            2,
            "started and finished once: {:?}",
            setup.runs(id)
        );
    }
    let task = setup.wait_status(&text, "completed").await;
    assert_eq!(
        task["result"],
        json!({"output": "plain text for third"}),
        "{task}"
    );
    assert_eq!(completed_events(&task), 1, "{task}");
    setup.wait_state_cleared().await;
}

/// A command that exits non-zero fails the task with the tail of its stderr; the hub retries
/// it (on the same agent, the only one) until `max_retries`, then dead-letters it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_is_retried_then_dead_lettered_with_its_stderr() {
    let setup = Setup::new(HubOpts::default(), COMMAND).await;
    let _agent = setup.agent();
    let id = setup
        .hub
        .api()
        .submit(json!({"description": "doomed", "metadata": {"mode": "fail"}, "max_retries": 2}))
        .await;
    let task = setup.wait_status(&id, "dead_letter").await;
    assert_eq!(task["last_error"], "exit code 3: boom: doomed", "{task}");
    assert_eq!(u64_field(&task, "retry_count"), 2, "{task}");
    let starts = setup.runs(&id);
    assert_eq!(starts.len(), 2, "ran once per attempt: {starts:?}");
    assert!(
        starts[0].2 < starts[1].2,
        "each attempt under a new generation: {starts:?}"
    );
    setup.wait_state_cleared().await;
}

/// Task text full of shell syntax reaches the worker byte for byte and executes nothing: the
/// sidecar never uses a shell and never puts task text in a command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_syntax_in_a_task_executes_nothing() {
    let setup = Setup::new(HubOpts::default(), COMMAND).await;
    let _agent = setup.agent();
    let marker = |n: u32| setup.path(&format!("PWNED{n}")).display().to_string();
    let description = format!(
        "$(touch {}) `touch {}` \"; touch {}; echo ' && touch {} | touch {}\n$HOME ${{PATH}} %s %n \\",
        marker(1),
        marker(2),
        marker(3),
        marker(4),
        marker(5)
    );
    let metadata = json!({"mode": "echo", "also": format!("$(touch {})", marker(6))});
    let id = setup
        .hub
        .api()
        .submit(json!({"description": description, "metadata": metadata}))
        .await;
    let task = setup.wait_status(&id, "completed").await;
    assert_eq!(task["result"]["echo"], json!(description), "{task}");
    assert_eq!(task["result"]["metadata"], metadata, "{task}");
    let pwned: Vec<String> = std::fs::read_dir(&setup.dir.0)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("PWNED"))
        .collect();
    assert!(pwned.is_empty(), "task text was executed: {pwned:?}");
}

/// The sidecar is killed with SIGKILL while its worker runs, then started again: it kills the
/// orphaned worker, asks the hub (`task_recovering`), gets the task back at the same generation
/// and runs it again; the task completes exactly once and the orphan never finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_agent_mid_task_then_restart_completes_the_task_exactly_once() {
    let setup = Setup::new(HubOpts::default().reconnect_grace_ms(30_000), COMMAND).await;
    let mut agent = setup.agent();
    let id = setup
        .hub
        .api()
        .submit(json!({"description": "survive", "metadata": {"mode": "wait"}}))
        .await;
    let first = setup.wait_runs(&id, "start", 1).await[0].clone();
    assert_eq!(first.3, 1, "first attempt: {first:?}");

    agent.kill9();
    assert!(
        alive(first.1),
        "the worker outlives a SIGKILLed sidecar (it is its own group)"
    );
    let _agent = setup.agent();
    wait_dead(first.1, "the orphaned worker").await;
    let second = setup.wait_runs(&id, "start", 2).await[1].clone();
    assert_eq!(
        (second.2, second.3),
        (first.2, 2),
        "same generation, second attempt: {second:?}"
    );

    std::fs::write(setup.path(&format!("release-{id}")), "").unwrap();
    let task = setup.wait_status(&id, "completed").await;
    assert_eq!(completed_events(&task), 1, "{task}");
    assert_eq!(
        u64_field(&task, "generation"),
        first.2,
        "never reassigned: {task}"
    );
    assert_eq!(task["result"]["echo"], "survive", "{task}");
    let finishes = setup
        .runs(&id)
        .into_iter()
        .filter(|r| r.0 == "finish")
        .count();
    assert_eq!(
        finishes,
        1,
        "only the second run finished: {:?}",
        setup.runs(&id)
    );
    setup.wait_state_cleared().await;
}

/// The hub is killed while the worker runs; the worker finishes while the hub is down (the
/// result waits in the state folder); the hub comes back on the same address: the sidecar
/// reconnects and delivers the result under its generation, and the hub accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_down_while_the_task_finishes_then_the_result_is_delivered() {
    let setup = Setup::new(HubOpts::default().reconnect_grace_ms(30_000), COMMAND).await;
    let _agent = setup.agent();
    let id = setup
        .hub
        .api()
        .submit(json!({"description": "offline", "metadata": {"mode": "wait"}}))
        .await;
    let start = setup.wait_runs(&id, "start", 1).await[0].clone();

    let Setup { hub, dir, config } = setup;
    let stopped = hub.kill9();
    std::fs::write(dir.0.join(format!("release-{id}")), "").unwrap();
    let record = dir.0.join("state").join("task.json");
    let saved: Value = poll_until(
        "the result saved in the state folder",
        REACT_TIMEOUT,
        || async {
            let text = std::fs::read_to_string(&record).map_err(|e| e.to_string())?;
            let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if value["outcome"].is_object() {
                Ok(value)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert_eq!(saved["outcome"]["status"], "success", "{saved}");
    assert_eq!(saved["generation"], start.2, "{saved}");

    let hub = Hub::restart_on_same_port(stopped).await;
    let setup = Setup { hub, dir, config };
    let task = setup.wait_status(&id, "completed").await;
    assert_eq!(completed_events(&task), 1, "{task}");
    assert_eq!(u64_field(&task, "generation"), start.2, "{task}");
    assert_eq!(task["result"]["echo"], "offline", "{task}");
    assert_eq!(setup.runs(&id).len(), 2, "ran once: {:?}", setup.runs(&id));
    setup.wait_state_cleared().await;
}

/// Cancelling a running task over HTTP stops its command, child processes included; the agent
/// then takes the next task as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_the_http_api_stops_the_command() {
    let setup = Setup::new(HubOpts::default(), COMMAND).await;
    let _agent = setup.agent();
    let api = setup.hub.api();
    let id = api
        .submit(json!({"description": "endless", "metadata": {"mode": "hang"}}))
        .await;
    let (worker, grandchild) = hang_pids(&setup, &id).await;
    assert!(alive(worker) && alive(grandchild));

    let answer = api
        .request(
            Method::POST,
            &format!("/api/tasks/{id}/cancel"),
            Some(api.admin_token()),
            None,
        )
        .await
        .expect(200, "cancel");
    assert_eq!(answer["status"], "cancelled", "{answer}");
    wait_dead(worker, "the cancelled worker").await;
    wait_dead(grandchild, "the cancelled worker's child").await;
    setup.wait_state_cleared().await;
    let task = api.get_task(&id).await;
    assert_eq!(task["status"], "cancelled", "{task}");
    assert!(task["result"].is_null(), "{task}");

    let next = api
        .submit(json!({"description": "next", "metadata": {"mode": "echo"}}))
        .await;
    let task = setup.wait_status(&next, "completed").await;
    assert_eq!(task["result"]["echo"], "next", "{task}");
}

/// A command that hangs past the task timeout is killed (its whole process group) and the
/// task fails with a timeout error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_command_is_killed_at_the_timeout_and_reported() {
    let setup = Setup::new(HubOpts::default(), &COMMAND.replace("\"60s\"", "\"1s\"")).await;
    let _agent = setup.agent();
    let id = setup
        .hub
        .api()
        .submit(json!({"description": "too slow", "metadata": {"mode": "hang"}, "max_retries": 1}))
        .await;
    let (worker, grandchild) = hang_pids(&setup, &id).await;
    let task = setup.wait_status(&id, "dead_letter").await;
    let error = str_field(&task, "last_error");
    assert!(error.starts_with("timeout: killed after 1s"), "{task}");
    assert!(
        !alive(worker) && !alive(grandchild),
        "worker {worker} and its child {grandchild} must be gone"
    );
    setup.wait_state_cleared().await;
}

/// AgentCom's file contract: the wake command, then `RESULTS/<id>.started` and
/// `RESULTS/<id>.json`. Success gives the result file as the result; a failure its `reason`;
/// no `.started` within the confirmation timeout fails with `confirmation_timeout`. The files
/// are removed once the outcome is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentcom_file_contract() {
    let contract = r#"
[file_contract]
wake = ["python3", "{dir}/wake.py"]
results_dir = "RESULTS"
confirmation_timeout = "1s"
timeout = "30s"
"#;
    let setup = Setup::new(HubOpts::default(), contract).await;
    let _agent = setup.agent();
    let api = setup.hub.api();
    let ok = api
        .submit(json!({"description": "the job", "metadata": {"mode": "ok"}}))
        .await;
    let fail = api
        .submit(json!({"description": "bad job", "metadata": {"mode": "fail"}, "max_retries": 1}))
        .await;
    let silent = api
        .submit(
            json!({"description": "no answer", "metadata": {"mode": "silent"}, "max_retries": 1}),
        )
        .await;

    let task = setup.wait_status(&ok, "completed").await;
    assert_eq!(
        task["result"],
        json!({"status": "success", "output": "did the job"}),
        "{task}"
    );
    let task = setup.wait_status(&fail, "dead_letter").await;
    assert_eq!(task["last_error"], "nope: bad job", "{task}");
    let task = setup.wait_status(&silent, "dead_letter").await;
    assert_eq!(task["last_error"], "confirmation_timeout", "{task}");
    setup.wait_state_cleared().await;
    let left: Vec<_> = std::fs::read_dir(setup.path("RESULTS"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "result files left behind: {left:?}");
}

/// A bad config stops the sidecar at once with a message naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_naming_the_field() {
    let dir = TempDir::new();
    let cases = [
        ("hub_url = \"ws://127.0.0.1:1/ws\"\ntoken = \"t\"\n[command]\nargv = [\"true\"]\n", "`agent_id` is missing"),
        ("hub_url = \"ws://127.0.0.1:1/ws\"\nagent_id = \"a\"\ntoken = \"t\"\n", "no worker is configured"),
        (
            "hub_url = \"ws://127.0.0.1:1/ws\"\nagent_id = \"a\"\ntoken = \"t\"\n[command]\nargv = [\"true\"]\ntimeout = \"soon\"\n",
            "`command.timeout`",
        ),
        ("hub_url = \"ws://127.0.0.1:1/ws\"\nagent_id = \"a\"\ntokn = \"t\"\n", "tokn"),
    ];
    for (i, (text, expected)) in cases.into_iter().enumerate() {
        let config = dir.0.join(format!("bad-{i}.toml"));
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("agent")
            .arg("--config")
            .arg(&config)
            .env_remove("SWITCHYARD_AGENT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = poll_until("the agent to exit", REACT_TIMEOUT, || {
            let status = child.try_wait();
            async move {
                match status {
                    Ok(Some(status)) => Ok(status),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "case {i}: {stderr}");
        assert!(
            stderr.contains(expected),
            "case {i}: expected {expected:?} in {stderr:?}"
        );
    }
}
