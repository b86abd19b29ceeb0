//! Running one task: a command per task (or, through [`contract`], AgentCom's file contract).
//!
//! Never through a shell. The program and its arguments come from the config, verbatim; the
//! task (description, metadata…) reaches the worker only as JSON on its stdin and as a few
//! environment variables that hold ids and numbers. Task text never becomes part of a command
//! line, so a description like `$(rm -rf ~)` is only ever data (AgentCom pasted it into one).
//!
//! A run is a tokio task that reports through the sidecar's event channel: `Spawned` when the
//! worker's process group exists (so it can be marked on disk), `Finished` with the outcome.
//! Stopping a run (cancel, reassignment, shutdown) kills the group and reports nothing.

use crate::sidecar::config::{CommandWorker, Program, Worker};
use crate::sidecar::contract;
use crate::sidecar::process::{self, ProcessMark};
use crate::sidecar::state::{TaskRecord, Verdict};
use crate::wire::TaskId;
use serde_json::{json, Value};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The most of a worker's stdout (or result file) taken as its result. The hub refuses frames
/// over 1 MiB by default, and a refused frame would be sent again after every reconnect, so a
/// larger result is reported as a failure instead.
pub const MAX_RESULT_BYTES: usize = 512 << 10;
/// How much of the end of stderr goes into a failure's error.
const STDERR_TAIL_BYTES: usize = 2 << 10;
/// Environment variables the worker must not inherit: the agent's own credentials.
const SECRET_VARS: [&str; 2] = ["SWITCHYARD_AGENT_TOKEN", "SWITCHYARD_TOKEN"];

/// What a run tells the sidecar.
#[derive(Debug)]
pub enum RunEvent {
    Spawned { run: u64, mark: ProcessMark },
    Finished { run: u64, outcome: Verdict },
}

/// A run in progress. Dropping it stops it too, but without waiting for the kill.
#[derive(Debug)]
pub struct Run {
    pub id: u64,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Run {
    /// Kills the worker's process group and waits until it is gone.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.handle).await;
    }
}

/// What the worker is told about its task.
pub(super) struct TaskInput {
    pub(super) task_id: TaskId,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
}

impl TaskInput {
    fn new(record: &TaskRecord, agent_id: &str) -> TaskInput {
        let stdin = json!({
            "task_id": record.task_id,
            "generation": record.generation,
            "description": record.description,
            "metadata": record.metadata,
            "assigned_at": record.assigned_at,
            "attempt": record.attempt,
            "agent_id": agent_id,
        });
        let env = vec![
            ("SWITCHYARD_TASK_ID".to_owned(), record.task_id.to_string()),
            (
                "SWITCHYARD_TASK_GENERATION".to_owned(),
                record.generation.to_string(),
            ),
            (
                "SWITCHYARD_TASK_ATTEMPT".to_owned(),
                record.attempt.to_string(),
            ),
            ("SWITCHYARD_AGENT_ID".to_owned(), agent_id.to_owned()),
        ];
        TaskInput {
            task_id: record.task_id,
            env,
            stdin: serde_json::to_vec(&stdin).expect("task input serializes"),
        }
    }
}

/// Starts running `record` with `worker`. `resume`: the sidecar restarted while this task was
/// in flight (the file contract may then find the worker already on it).
pub fn start(
    worker: Arc<Worker>,
    agent_id: &str,
    record: &TaskRecord,
    resume: bool,
    id: u64,
    events: mpsc::UnboundedSender<RunEvent>,
) -> Run {
    let input = TaskInput::new(record, agent_id);
    let (stop_tx, stop_rx) = oneshot::channel();
    let handle = tokio::spawn(async move {
        let mut ctx = RunCtx {
            id,
            events: events.clone(),
            stop: stop_rx,
        };
        let outcome = match &*worker {
            Worker::Command(command) => run_command(command, &input, &mut ctx).await,
            Worker::Files(files) => contract::run_files(files, &input, resume, &mut ctx).await,
        };
        if let Some(outcome) = outcome {
            let _ = events.send(RunEvent::Finished { run: id, outcome });
        }
    });
    Run {
        id,
        stop: Some(stop_tx),
        handle,
    }
}

pub(super) struct RunCtx {
    id: u64,
    events: mpsc::UnboundedSender<RunEvent>,
    /// Fires (or closes) when the run must stop.
    pub(super) stop: oneshot::Receiver<()>,
}

/// How a process ended.
pub(super) enum Ended {
    Exited {
        status: ExitStatus,
        stdout: Captured,
        stderr_tail: String,
    },
    TimedOut {
        stderr_tail: String,
    },
    Stopped,
}

/// A stream read to its end, keeping at most a limit.
#[derive(Debug, Default)]
pub(super) struct Captured {
    bytes: Vec<u8>,
    overflow: bool,
}

/// Runs one program to its end, its deadline, or a stop. `Err` when it cannot be started.
pub(super) async fn run_program(
    program: &Program,
    input: &TaskInput,
    extra_env: &[(String, String)],
    timeout: Option<Duration>,
    ctx: &mut RunCtx,
) -> Result<Ended, String> {
    let mut command = tokio::process::Command::new(&program.argv[0]);
    command
        .args(&program.argv[1..])
        .envs(&program.env)
        .envs(input.env.iter().cloned())
        .envs(extra_env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a kill reaches everything the worker started.
        .process_group(0)
        .kill_on_drop(true);
    for name in SECRET_VARS {
        command.env_remove(name);
    }
    if let Some(cwd) = &program.cwd {
        command.current_dir(cwd);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", program.argv[0]))?;
    let pid = child.id().expect("a child that was just spawned has a pid");
    tracing::debug!(pid, program = %program.argv[0], "worker started");
    if let Some(mark) = process::mark(pid) {
        let _ = ctx.events.send(RunEvent::Spawned { run: ctx.id, mark });
    }

    // The worker may not read its stdin at all: write it aside, and never wait on it.
    if let Some(mut stdin) = child.stdin.take() {
        let bytes = input.stdin.clone();
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let stdout = tokio::spawn(capture(child.stdout.take(), MAX_RESULT_BYTES));
    let stderr = tokio::spawn(tail(child.stderr.take(), STDERR_TAIL_BYTES));
    let deadline = timeout.map(|t| Instant::now() + t);

    let status = tokio::select! {
        status = child.wait() => status,
        _ = sleep_until(deadline) => {
            process::kill_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            let stderr_tail = stderr.await.unwrap_or_default();
            return Ok(Ended::TimedOut { stderr_tail });
        }
        _ = &mut ctx.stop => {
            process::kill_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            return Ok(Ended::Stopped);
        }
    };
    // The leader is done; whatever it left behind in its group goes too (it would also keep
    // the pipes open, and the reads below would never end).
    process::kill_group(pid, libc::SIGKILL);
    let status = status.map_err(|e| format!("cannot wait for `{}`: {e}", program.argv[0]))?;
    Ok(Ended::Exited {
        status,
        stdout: stdout.await.unwrap_or_default(),
        stderr_tail: stderr.await.unwrap_or_default(),
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn capture(stream: Option<impl AsyncRead + Unpin>, limit: usize) -> Captured {
    let mut captured = Captured::default();
    let Some(mut stream) = stream else {
        return captured;
    };
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return captured,
            Ok(n) => {
                let room = limit.saturating_sub(captured.bytes.len());
                captured.bytes.extend_from_slice(&buffer[..n.min(room)]);
                captured.overflow |= n > room;
            }
        }
    }
}

/// The last `limit` bytes of a stream, as text.
async fn tail(stream: Option<impl AsyncRead + Unpin>, limit: usize) -> String {
    let mut kept = Vec::new();
    if let Some(mut stream) = stream {
        let mut buffer = [0u8; 8192];
        while let Ok(n @ 1..) = stream.read(&mut buffer).await {
            kept.extend_from_slice(&buffer[..n]);
            if kept.len() > 2 * limit {
                kept.drain(..kept.len() - limit);
            }
        }
    }
    let start = kept.len().saturating_sub(limit);
    String::from_utf8_lossy(&kept[start..]).trim().to_owned()
}

// ---- a command per task --------------------------------------------------------------------

async fn run_command(
    worker: &CommandWorker,
    input: &TaskInput,
    ctx: &mut RunCtx,
) -> Option<Verdict> {
    match run_program(&worker.program, input, &[], worker.timeout, ctx).await {
        Err(reason) => Some(Verdict::Rejected { reason }),
        Ok(Ended::Stopped) => None,
        Ok(Ended::TimedOut { stderr_tail }) => Some(Verdict::Failure {
            error: with_tail(
                format!(
                    "timeout: killed after {}",
                    seconds(worker.timeout.unwrap_or_default())
                ),
                &stderr_tail,
            ),
        }),
        Ok(Ended::Exited {
            status,
            stdout,
            stderr_tail,
        }) => Some(command_outcome(status, stdout, &stderr_tail)),
    }
}

pub(super) fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

pub(super) fn with_tail(error: String, stderr_tail: &str) -> String {
    if stderr_tail.is_empty() {
        error
    } else {
        format!("{error}: {stderr_tail}")
    }
}

/// Exit 0: stdout is the result (a JSON object as it is, anything else as `{"output": text}`).
/// Anything else: a failure whose error ends with the tail of stderr.
fn command_outcome(status: ExitStatus, stdout: Captured, stderr_tail: &str) -> Verdict {
    if !status.success() {
        return Verdict::Failure {
            error: exit_error(status, stderr_tail),
        };
    }
    if stdout.overflow {
        return Verdict::Failure {
            error: format!("output_too_large: stdout is over {MAX_RESULT_BYTES} bytes"),
        };
    }
    Verdict::Success {
        result: result_of(&stdout.bytes),
    }
}

/// "exit code 3: <stderr tail>", "killed by signal 9 (nothing on stderr)".
pub(super) fn exit_error(status: ExitStatus, stderr_tail: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended abnormally".to_owned(),
    };
    if stderr_tail.is_empty() {
        format!("{how} (nothing on stderr)")
    } else {
        format!("{how}: {stderr_tail}")
    }
}

fn result_of(stdout: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(stdout) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "output": String::from_utf8_lossy(stdout).trim_end() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn program(argv: &[&str]) -> Program {
        Program {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            env: BTreeMap::new(),
        }
    }

    fn record(description: &str) -> TaskRecord {
        TaskRecord {
            task_id: TaskId(5),
            generation: 2,
            description: description.into(),
            metadata: json!({}),
            assigned_at: 1,
            attempt: 1,
            worker: None,
            outcome: None,
        }
    }

    async fn run(worker: Worker, description: &str) -> (Option<Verdict>, Vec<RunEvent>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let run = start(Arc::new(worker), "a1", &record(description), false, 1, tx);
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            let done = matches!(event, RunEvent::Finished { .. });
            events.push(event);
            if done {
                break;
            }
        }
        run.stop().await;
        let outcome = events.iter().find_map(|e| match e {
            RunEvent::Finished { outcome, .. } => Some(outcome.clone()),
            _ => None,
        });
        (outcome, events)
    }

    fn command(argv: &[&str], timeout: Option<Duration>) -> Worker {
        Worker::Command(CommandWorker {
            program: program(argv),
            timeout,
        })
    }

    #[test]
    fn stdout_maps_to_a_result() {
        let ok = |text: &str| Captured {
            bytes: text.as_bytes().to_vec(),
            overflow: false,
        };
        use std::os::unix::process::ExitStatusExt;
        let success = ExitStatus::from_raw(0);
        assert_eq!(
            command_outcome(success, ok("{\"n\": 1}\n"), ""),
            Verdict::Success {
                result: json!({"n": 1})
            }
        );
        assert_eq!(
            command_outcome(success, ok("plain text\n\n"), ""),
            Verdict::Success {
                result: json!({"output": "plain text"})
            }
        );
        assert_eq!(
            command_outcome(success, ok("[1]"), ""),
            Verdict::Success {
                result: json!({"output": "[1]"})
            }
        );
        let big = Captured {
            bytes: vec![],
            overflow: true,
        };
        assert!(
            matches!(command_outcome(success, big, ""), Verdict::Failure { error } if error.starts_with("output_too_large"))
        );
        assert_eq!(
            command_outcome(ExitStatus::from_raw(3 << 8), ok(""), "boom"),
            Verdict::Failure {
                error: "exit code 3: boom".into()
            }
        );
        assert_eq!(
            command_outcome(ExitStatus::from_raw(9), ok(""), ""),
            Verdict::Failure {
                error: "killed by signal 9 (nothing on stderr)".into()
            }
        );
    }

    #[tokio::test]
    async fn the_task_arrives_on_stdin_and_in_the_environment_never_in_argv() {
        let script = "import json,os,sys; t=json.load(sys.stdin); \
                      print(json.dumps({'d': t['description'], 'argv': sys.argv[1:], \
                      'id': os.environ['SWITCHYARD_TASK_ID'], 'gen': os.environ['SWITCHYARD_TASK_GENERATION'], \
                      'token': os.environ.get('SWITCHYARD_AGENT_TOKEN')}))";
        let description = "$(touch /tmp/never) `id` \"; rm -rf x '";
        let (outcome, events) = run(
            command(&["python3", "-c", script, "fixed"], None),
            description,
        )
        .await;
        assert!(
            matches!(events.first(), Some(RunEvent::Spawned { .. })),
            "{events:?}"
        );
        assert_eq!(
            outcome,
            Some(Verdict::Success {
                result: json!({"d": description, "argv": ["fixed"], "id": "task-0000000000000005",
                               "gen": "2", "token": null})
            })
        );
    }

    #[tokio::test]
    async fn a_failure_carries_the_tail_of_stderr() {
        let (outcome, _) = run(
            command(&["sh", "-c", "echo starting; echo boom >&2; exit 4"], None),
            "",
        )
        .await;
        assert_eq!(
            outcome,
            Some(Verdict::Failure {
                error: "exit code 4: boom".into()
            })
        );
    }

    #[tokio::test]
    async fn a_program_that_does_not_exist_is_rejected() {
        let (outcome, _) = run(command(&["/nonexistent/worker"], None), "").await;
        assert!(
            matches!(outcome, Some(Verdict::Rejected { reason }) if reason.contains("/nonexistent/worker"))
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        // The shell starts a grandchild and waits for it; both must die.
        let dir = std::env::temp_dir().join(format!("switchyard-runner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pids = dir.join("pids");
        let script = format!("sleep 60 & echo $! > {}; wait", pids.display());
        let started = Instant::now();
        let (outcome, _) = run(
            command(&["sh", "-c", &script], Some(Duration::from_millis(500))),
            "",
        )
        .await;
        assert!(
            matches!(&outcome, Some(Verdict::Failure { error }) if error.starts_with("timeout")),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let grandchild = std::fs::read_to_string(&pids).unwrap().trim().to_owned();
        let gone = (0..100).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .map(|s| !s.contains(") Z"))
                .unwrap_or(false);
            if alive {
                std::thread::sleep(Duration::from_millis(50));
            }
            !alive
        });
        assert!(gone, "the grandchild {grandchild} outlived the timeout");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn stopping_a_run_reports_nothing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let run = start(
            Arc::new(command(&["sleep", "60"], None)),
            "a1",
            &record(""),
            false,
            9,
            tx,
        );
        let spawned = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap();
        assert!(matches!(spawned, Some(RunEvent::Spawned { run: 9, .. })));
        tokio::time::timeout(Duration::from_secs(10), run.stop())
            .await
            .unwrap();
        assert!(rx.recv().await.is_none(), "no Finished after a stop");
    }
}
