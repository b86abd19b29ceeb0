//! Starting, killing and restarting the real `switchyard` binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::agent::Agent;
use super::api::Api;
use super::policy::policy_under_test_flag;
use super::{poll_until, STATE_TIMEOUT};

/// A debug build compiles its wasm policy at start-up, and tests run in parallel on small
/// machines: give the listening line this long to appear.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The line the hub prints on stdout once it listens (followed by the address).
const LISTENING_PREFIX: &str = "switchyard listening on ";

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process run: prefix, pid, counter, clock.
pub fn unique_name(prefix: &str) -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// A fresh admin token, as long as the hub asks of one (32 characters at least).
pub fn admin_token() -> String {
    unique_name("e2e-admin-token-padded-to-32-characters")
}

/// Which `--policy` a hub is started with.
#[derive(Clone, Debug, Default)]
pub enum PolicyArg {
    /// The policy the suite is testing (`SWITCHYARD_TEST_POLICY`; without it no `--policy`, so
    /// the hub's default).
    #[default]
    UnderTest,
    /// This policy (a component file or `builtin:NAME`) and configuration, whatever the suite is
    /// testing: for tests about a particular policy.
    Named {
        policy: String,
        config: Option<Value>,
    },
    /// No `--policy` at all, whatever the suite is testing: the hub loads the policy in force
    /// when it last stopped (greedy on a fresh data folder). For tests of that persistence.
    Persisted,
}

/// Command-line timeouts and limits of one hub; `None` leaves the hub's default.
#[derive(Clone, Debug, Default)]
pub struct HubOpts {
    pub acceptance_timeout_ms: Option<u64>,
    pub reconnect_grace_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub reject_cooldown_ms: Option<u64>,
    pub max_reclaims: Option<u64>,
    pub max_frame_bytes: Option<u64>,
    pub run_timeout_ms: Option<u64>,
    /// `--map-size-mib`: how large the store may grow.
    pub map_size_mib: Option<u64>,
    pub policy: PolicyArg,
    /// `--listen` (default 127.0.0.1:0, a free port); set by [`Hub::restart_on_same_port`].
    pub listen: Option<SocketAddr>,
    /// Any other `serve` flags, with their values, in order.
    pub flags: Vec<(String, String)>,
    /// Environment variables for the hub process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl HubOpts {
    pub fn acceptance_timeout_ms(mut self, ms: u64) -> Self {
        self.acceptance_timeout_ms = Some(ms);
        self
    }
    pub fn reconnect_grace_ms(mut self, ms: u64) -> Self {
        self.reconnect_grace_ms = Some(ms);
        self
    }
    pub fn idle_timeout_ms(mut self, ms: u64) -> Self {
        self.idle_timeout_ms = Some(ms);
        self
    }
    pub fn max_reclaims(mut self, n: u64) -> Self {
        self.max_reclaims = Some(n);
        self
    }
    pub fn run_timeout_ms(mut self, ms: u64) -> Self {
        self.run_timeout_ms = Some(ms);
        self
    }

    pub fn max_frame_bytes(mut self, n: u64) -> Self {
        self.max_frame_bytes = Some(n);
        self
    }
    pub fn map_size_mib(mut self, n: u64) -> Self {
        self.map_size_mib = Some(n);
        self
    }
    /// Starts with `policy` (a file or `builtin:NAME`) and `config`; see [`PolicyArg::Named`].
    pub fn policy(mut self, policy: impl Into<String>, config: Option<Value>) -> Self {
        self.policy = PolicyArg::Named {
            policy: policy.into(),
            config,
        };
        self
    }
    /// Adds `--NAME VALUE` (give the name with its dashes).
    pub fn flag(mut self, name: &str, value: impl ToString) -> Self {
        self.flags.push((name.to_string(), value.to_string()));
        self
    }
    /// Sets an environment variable of the hub process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }
    /// Starts without `--policy`; see [`PolicyArg::Persisted`].
    pub fn persisted_policy(mut self) -> Self {
        self.policy = PolicyArg::Persisted;
        self
    }

    fn args(&self) -> Vec<String> {
        let flags = [
            ("--acceptance-timeout-ms", self.acceptance_timeout_ms),
            ("--reconnect-grace-ms", self.reconnect_grace_ms),
            ("--idle-timeout-ms", self.idle_timeout_ms),
            ("--reject-cooldown-ms", self.reject_cooldown_ms),
            ("--max-reclaims", self.max_reclaims),
            ("--max-frame-bytes", self.max_frame_bytes),
            ("--run-timeout-ms", self.run_timeout_ms),
            ("--map-size-mib", self.map_size_mib),
        ];
        let mut args = Vec::new();
        for (flag, value) in flags {
            if let Some(v) = value {
                args.push(flag.to_string());
                args.push(v.to_string());
            }
        }
        for (flag, value) in &self.flags {
            args.push(flag.clone());
            args.push(value.clone());
        }
        match &self.policy {
            // The whole suite can be pointed at another policy (e.g. `builtin:fair` or a file).
            PolicyArg::UnderTest => {
                if let Some(policy) = policy_under_test_flag() {
                    args.push("--policy".to_string());
                    args.push(policy);
                }
            }
            PolicyArg::Named { policy, config } => {
                args.push("--policy".to_string());
                args.push(policy.clone());
                if let Some(config) = config {
                    args.push("--policy-config".to_string());
                    args.push(config.to_string());
                }
            }
            PolicyArg::Persisted => {}
        }
        args
    }
}

/// A data folder under the system temp dir, removed when dropped (unless the environment
/// variable `SWITCHYARD_E2E_KEEP` is set, to inspect it after a failure).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    fn create() -> DataDir {
        let path = std::env::temp_dir().join(unique_name("switchyard-e2e"));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create data dir {}: {e}", path.display()));
        // Owner-only, as the hub makes its own: it warns about a folder others may use.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("cannot chmod data dir {}: {e}", path.display()));
        DataDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes `path` (an existing folder) as a data folder, removed like the others.
    pub fn adopt(path: PathBuf) -> DataDir {
        DataDir { path }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::env::var_os("SWITCHYARD_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Kills (SIGKILL) and reaps the child when dropped, including on a panic during start-up.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What is left of a hub killed with [`Hub::kill9`]: its data folder, admin token and options,
/// ready for [`Hub::restart_on`].
#[derive(Debug)]
pub struct StoppedHub {
    dir: DataDir,
    admin_token: String,
    opts: HubOpts,
    /// Where it listened.
    addr: SocketAddr,
}

impl StoppedHub {
    /// The options the hub starts with again.
    pub fn opts_mut(&mut self) -> &mut HubOpts {
        &mut self.opts
    }

    /// The data folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts again with another `SWITCHYARD_ADMIN_TOKEN`.
    pub fn set_admin_token(&mut self, token: &str) {
        self.admin_token = token.to_string();
    }
}

/// What [`Hub::terminate`] saw.
#[derive(Debug)]
pub struct Terminated {
    pub status: Option<std::process::ExitStatus>,
    pub took: Duration,
    pub stopped: StoppedHub,
}

/// One running `switchyard serve` process with its own data folder.
pub struct Hub {
    child: ChildGuard,
    addr: SocketAddr,
    admin_token: String,
    opts: HubOpts,
    // Declared after `child`, and taken by `kill9`: removed only once the process is gone.
    dir: Option<DataDir>,
    api: Api,
    /// Every line the process wrote to stderr (its log), without terminal colour codes.
    log: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    /// Starts a hub on a fresh data folder and waits for its listening line.
    pub async fn start(opts: HubOpts) -> Hub {
        Hub::spawn(DataDir::create(), admin_token(), opts).await
    }

    /// Starts a hub on an existing folder (a restored backup, say), which is removed when the
    /// hub is dropped.
    pub async fn start_on(dir: PathBuf, opts: HubOpts) -> Hub {
        Hub::spawn(DataDir::adopt(dir), admin_token(), opts).await
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("data dir present until kill9")
            .path()
    }

    /// Starts a hub again on the data folder (and with the admin token and options) of a
    /// killed one.
    pub async fn restart_on(stopped: StoppedHub) -> Hub {
        Hub::spawn(stopped.dir, stopped.admin_token, stopped.opts).await
    }

    /// [`Hub::restart_on`], listening on the address the killed hub had, so that clients
    /// configured with its URL (the agent sidecar) find it again.
    pub async fn restart_on_same_port(mut stopped: StoppedHub) -> Hub {
        stopped.opts.listen = Some(stopped.addr);
        Hub::restart_on(stopped).await
    }

    async fn spawn(dir: DataDir, admin_token: String, opts: HubOpts) -> Hub {
        let label = unique_name("hub")
            .split('-')
            .take(3)
            .collect::<Vec<_>>()
            .join("-");
        let args = opts.args();
        let listen = match opts.listen {
            Some(addr) => addr.to_string(),
            None => "127.0.0.1:0".to_string(),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .arg("serve")
            .arg("--listen")
            .arg(&listen)
            .arg("--data-dir")
            .arg(dir.path())
            .args(&args)
            .env("SWITCHYARD_ADMIN_TOKEN", &admin_token)
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut child = ChildGuard(child);
        eprintln!(
            "[{label}] started pid {} on {} with {args:?}",
            child.0.id(),
            dir.path().display()
        );

        // stderr: forwarded line by line to the test's stderr (captured by the test harness and
        // shown when the test fails), and kept for `Hub::log_lines`. Threads spawned from a test
        // thread inherit its capture.
        let err_label = label.clone();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::Builder::new()
            .name(format!("{label}-stderr"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    match line {
                        Ok(line) => {
                            eprintln!("[{err_label}] {line}");
                            let plain = strip_ansi(&line);
                            kept.lock().unwrap_or_else(|p| p.into_inner()).push(plain);
                        }
                        Err(_) => break,
                    }
                }
            })
            .expect("spawn stderr forwarder");

        // stdout: the listening line goes back to us, anything else is forwarded.
        let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let out_label = label.clone();
        std::thread::Builder::new()
            .name(format!("{label}-stdout"))
            .spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.trim().strip_prefix(LISTENING_PREFIX) {
                        if let Ok(addr) = rest.trim().parse::<SocketAddr>() {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(addr);
                                continue;
                            }
                        }
                    }
                    eprintln!("[{out_label} stdout] {line}");
                }
            })
            .expect("spawn stdout reader");

        let addr = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => {
                // stdout closed without the line: the process is exiting.
                let status = child.0.wait();
                panic!(
                    "[{label}] switchyard exited ({status:?}) before printing \
                     `{LISTENING_PREFIX}ADDR` on stdout (see its stderr above)"
                );
            }
            Err(_) => panic!(
                "[{label}] switchyard did not print `{LISTENING_PREFIX}ADDR` on stdout within \
                 {START_TIMEOUT:?}"
            ),
        };
        assert!(
            addr.ip().is_loopback(),
            "[{label}] asked to listen on 127.0.0.1 but reports {addr}"
        );
        eprintln!("[{label}] listening on {addr}");
        let api = Api::new(addr, &admin_token);
        Hub {
            child,
            addr,
            admin_token,
            opts,
            dir: Some(dir),
            api,
            log,
        }
    }

    /// The lines of the hub's log (stderr) read so far, without colour codes.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a log line containing every one of `parts` and returns it. (stderr is read by
    /// its own thread: even a line logged before the listening line may arrive a moment later.)
    pub async fn wait_for_log(&self, parts: &[&str]) -> String {
        let what = format!("a log line containing {parts:?}");
        poll_until(&what, STATE_TIMEOUT, || async {
            let lines = self.log_lines();
            match lines.iter().find(|l| parts.iter().all(|p| l.contains(p))) {
                Some(line) => Ok(line.clone()),
                None => Err(format!(
                    "{} lines, the last: {:?}",
                    lines.len(),
                    lines.last()
                )),
            }
        })
        .await
    }

    /// Kills the process with SIGKILL (no chance to flush or shut down cleanly) and keeps its
    /// data folder for [`Hub::restart_on`].
    pub fn kill9(mut self) -> StoppedHub {
        // std's Child::kill sends SIGKILL on unix.
        self.child.0.kill().expect("SIGKILL the hub");
        let status = self.child.0.wait().expect("reap the hub");
        eprintln!("[hub {}] killed: {status:?}", self.addr);
        StoppedHub {
            dir: self.dir.take().expect("data dir present until kill9"),
            admin_token: self.admin_token.clone(),
            opts: self.opts.clone(),
            addr: self.addr,
        }
    }

    /// Sends SIGTERM and waits, at most `within`, for the process to exit. Returns its exit
    /// status (`None`: still running at `within`, then killed), how long it took, and what is
    /// left for [`Hub::restart_on`].
    pub async fn terminate(mut self, within: Duration) -> Terminated {
        let pid = self.child.0.id() as i32;
        let started = std::time::Instant::now();
        // SAFETY: kill(2) on our own child's pid, which it keeps until reaped below.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let mut status = None;
        // Polls the exit status (std offers no way to await it), for `within` at most.
        while started.elapsed() < within {
            if let Some(exited) = self.child.0.try_wait().expect("wait for the hub") {
                status = Some(exited);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = started.elapsed();
        eprintln!("[hub {}] SIGTERM: {status:?} after {took:?}", self.addr);
        if status.is_none() {
            let _ = self.child.0.kill();
            let _ = self.child.0.wait();
        }
        Terminated {
            status,
            took,
            stopped: StoppedHub {
                dir: self.dir.take().expect("data dir present until stopped"),
                admin_token: self.admin_token.clone(),
                opts: self.opts.clone(),
                addr: self.addr,
            },
        }
    }

    /// Where the hub listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Creates a token for `agent_id`, connects and identifies.
    pub async fn agent(&self, agent_id: &str) -> Agent {
        let token = self.api.create_token(agent_id).await;
        Agent::connect(&self.ws_url(), agent_id, &token).await
    }

    /// [`Hub::agent`], identifying with `capabilities`.
    pub async fn agent_with_capabilities(&self, agent_id: &str, capabilities: &[&str]) -> Agent {
        let token = self.api.create_token(agent_id).await;
        let mut agent = Agent::open(&self.ws_url(), agent_id, &token).await;
        agent
            .identify_with(serde_json::json!({
                "type": "identify",
                "agent_id": agent_id,
                "token": token,
                "capabilities": capabilities,
            }))
            .await;
        agent
    }
}

/// `line` without ANSI escape sequences (the log's colours), so tests can match field values.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters, ended by a letter.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
