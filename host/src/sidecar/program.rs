//! Running one worker program for a task, to its end, its deadline or a stop.
//!
//! Never through a shell. The program and its arguments come from the config, verbatim; the
//! task (description, metadata…) reaches the program only as JSON on its stdin and as a few
//! environment variables that hold ids and numbers. Task text never becomes part of a command
//! line, so a description like `$(rm -rf ~)` is only ever data (AgentCom pasted it into one).
//!
//! The program gets a process group of its own, so a deadline or a stop kills everything it
//! started. Its stdout is kept up to [`MAX_RESULT_BYTES`], and the end of its stderr for the
//! error of a failure. Both kinds of worker run their programs here: a command worker
//! ([`runner`](super::runner)) and the file contract's wake command
//! ([`contract`](super::contract)).

use crate::sidecar::config::Program;
use crate::sidecar::process::{self, ProcessMark};
use crate::sidecar::state::TaskRecord;
use crate::wait::sleep_until;
use crate::wire::TaskId;
use serde_json::json;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The most of a worker's stdout (or result file) taken as its result. The hub refuses frames
/// over 1 MiB by default, and a refused frame would be sent again after every reconnect, so a
/// larger result is reported as a failure instead.
pub const MAX_RESULT_BYTES: usize = 512 << 10;
/// How much of the end of stderr goes into a failure's error.
const STDERR_TAIL_BYTES: usize = 2 << 10;
/// Environment variables the worker must not inherit: the agent's own credentials.
const SECRET_VARS: [&str; 2] = ["SWITCHYARD_AGENT_TOKEN", "SWITCHYARD_TOKEN"];

/// What the worker is told about its task.
pub(super) struct TaskInput {
    pub(super) task_id: TaskId,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
}

impl TaskInput {
    pub(super) fn new(record: &TaskRecord, agent_id: &str) -> TaskInput {
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

/// How the run that starts a program watches over it.
pub(super) struct RunControl {
    /// Told each program's process group as soon as it exists, so that the sidecar can mark it
    /// on disk before anything else happens.
    on_spawn: Box<dyn FnMut(ProcessMark) + Send>,
    /// Fires (or closes) when the run must stop.
    pub(super) stop: oneshot::Receiver<()>,
}

impl RunControl {
    pub(super) fn new(
        stop: oneshot::Receiver<()>,
        on_spawn: impl FnMut(ProcessMark) + Send + 'static,
    ) -> RunControl {
        RunControl {
            on_spawn: Box::new(on_spawn),
            stop,
        }
    }
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
    pub(super) bytes: Vec<u8>,
    /// There was more than the limit; the rest was read and dropped.
    pub(super) overflow: bool,
}

/// Runs one program to its end, its deadline, or a stop. `Err` when it cannot be started.
pub(super) async fn run_program(
    program: &Program,
    input: &TaskInput,
    extra_env: &[(String, String)],
    timeout: Option<Duration>,
    control: &mut RunControl,
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
        (control.on_spawn)(mark);
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
        _ = &mut control.stop => {
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

/// A duration as errors give it: `1.5s`.
pub(super) fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

/// `error`, then the end of stderr if there is any.
pub(super) fn with_tail(error: String, stderr_tail: &str) -> String {
    if stderr_tail.is_empty() {
        error
    } else {
        format!("{error}: {stderr_tail}")
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
