//! Running one task with the configured worker: a command per task, or AgentCom's file
//! contract ([`contract`]). Either way the worker's programs are run by
//! [`program`](super::program).
//!
//! A run is a tokio task that reports through the sidecar's event channel: `Spawned` when the
//! worker's process group exists (so it can be marked on disk), `Finished` with its verdict.
//! Stopping a run (cancel, reassignment, shutdown) kills the group and reports nothing.

use crate::sidecar::config::{CommandWorker, Worker};
use crate::sidecar::contract;
use crate::sidecar::process::ProcessMark;
use crate::sidecar::program::{
    exit_error, run_program, seconds, with_tail, Captured, Ended, RunControl, TaskInput,
    MAX_RESULT_BYTES,
};
use crate::sidecar::state::{TaskRecord, Verdict};
use serde_json::{json, Value};
use std::process::ExitStatus;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// What a run tells the sidecar.
#[derive(Debug)]
pub enum RunEvent {
    Spawned { run: u64, mark: ProcessMark },
    Finished { run: u64, verdict: Verdict },
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
        let spawned = events.clone();
        let mut control = RunControl::new(stop_rx, move |mark| {
            let _ = spawned.send(RunEvent::Spawned { run: id, mark });
        });
        let verdict = match &*worker {
            Worker::Command(command) => run_command(command, &input, &mut control).await,
            Worker::Files(files) => contract::run_files(files, &input, resume, &mut control).await,
        };
        if let Some(verdict) = verdict {
            let _ = events.send(RunEvent::Finished { run: id, verdict });
        }
    });
    Run {
        id,
        stop: Some(stop_tx),
        handle,
    }
}

// ---- a command per task --------------------------------------------------------------------

async fn run_command(
    worker: &CommandWorker,
    input: &TaskInput,
    control: &mut RunControl,
) -> Option<Verdict> {
    match run_program(&worker.program, input, &[], worker.timeout, control).await {
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
        }) => Some(command_verdict(status, stdout, &stderr_tail)),
    }
}

/// Exit 0: stdout is the result (a JSON object as it is, anything else as `{"output": text}`).
/// Anything else: a failure whose error ends with the tail of stderr.
fn command_verdict(status: ExitStatus, stdout: Captured, stderr_tail: &str) -> Verdict {
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

fn result_of(stdout: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(stdout) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "output": String::from_utf8_lossy(stdout).trim_end() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::config::Program;
    use crate::wire::TaskId;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use tokio::time::Instant;

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
            verdict: None,
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
        let verdict = events.iter().find_map(|e| match e {
            RunEvent::Finished { verdict, .. } => Some(verdict.clone()),
            _ => None,
        });
        (verdict, events)
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
            command_verdict(success, ok("{\"n\": 1}\n"), ""),
            Verdict::Success {
                result: json!({"n": 1})
            }
        );
        assert_eq!(
            command_verdict(success, ok("plain text\n\n"), ""),
            Verdict::Success {
                result: json!({"output": "plain text"})
            }
        );
        assert_eq!(
            command_verdict(success, ok("[1]"), ""),
            Verdict::Success {
                result: json!({"output": "[1]"})
            }
        );
        let big = Captured {
            bytes: vec![],
            overflow: true,
        };
        assert!(
            matches!(command_verdict(success, big, ""), Verdict::Failure { error } if error.starts_with("output_too_large"))
        );
        assert_eq!(
            command_verdict(ExitStatus::from_raw(3 << 8), ok(""), "boom"),
            Verdict::Failure {
                error: "exit code 3: boom".into()
            }
        );
        assert_eq!(
            command_verdict(ExitStatus::from_raw(9), ok(""), ""),
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
        let (verdict, events) = run(
            command(&["python3", "-c", script, "fixed"], None),
            description,
        )
        .await;
        assert!(
            matches!(events.first(), Some(RunEvent::Spawned { .. })),
            "{events:?}"
        );
        assert_eq!(
            verdict,
            Some(Verdict::Success {
                result: json!({"d": description, "argv": ["fixed"], "id": "task-0000000000000005",
                               "gen": "2", "token": null})
            })
        );
    }

    #[tokio::test]
    async fn a_failure_carries_the_tail_of_stderr() {
        let (verdict, _) = run(
            command(&["sh", "-c", "echo starting; echo boom >&2; exit 4"], None),
            "",
        )
        .await;
        assert_eq!(
            verdict,
            Some(Verdict::Failure {
                error: "exit code 4: boom".into()
            })
        );
    }

    #[tokio::test]
    async fn a_program_that_does_not_exist_is_rejected() {
        let (verdict, _) = run(command(&["/nonexistent/worker"], None), "").await;
        assert!(
            matches!(verdict, Some(Verdict::Rejected { reason }) if reason.contains("/nonexistent/worker"))
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
        let (verdict, _) = run(
            command(&["sh", "-c", &script], Some(Duration::from_millis(500))),
            "",
        )
        .await;
        assert!(
            matches!(&verdict, Some(Verdict::Failure { error }) if error.starts_with("timeout")),
            "{verdict:?}"
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
