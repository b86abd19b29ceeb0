//! AgentCom's file contract, for workers written for it.
//!
//! Per task: run the wake command (the task on its stdin, as for a command worker), then wait
//! for the worker to write `RESULTS/<task_id>.started` within the confirmation timeout and
//! `RESULTS/<task_id>.json` within the task's timeout. `{"status":"success", ...}` is the
//! result, whole; anything else a failure with its `reason`. The worker runs on its own, outside
//! the sidecar, so a restarted sidecar finds it where it was: a worker that already confirmed
//! (or finished) is not woken again.

use crate::sidecar::config::FileWorker;
use crate::sidecar::program::{
    exit_error, run_program, seconds, with_tail, Ended, RunControl, TaskInput, MAX_RESULT_BYTES,
};
use crate::sidecar::state::Verdict;
use crate::wire::TaskId;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// How often the files are looked for.
const FILE_POLL: Duration = Duration::from_millis(200);
/// A result file that does not parse is read again until it has not changed for this long: the
/// worker may still be writing it.
const RESULT_SETTLE: Duration = Duration::from_secs(1);

/// The two files of the contract for one task.
pub struct ContractFiles {
    pub started: PathBuf,
    pub result: PathBuf,
}

impl ContractFiles {
    /// Task ids are checked on the wire (`task-` and 16 hex digits), so they are safe as file
    /// names: no separator, no `..`.
    pub fn new(worker: &FileWorker, task_id: TaskId) -> ContractFiles {
        ContractFiles {
            started: worker.results_dir.join(format!("{task_id}.started")),
            result: worker.results_dir.join(format!("{task_id}.json")),
        }
    }

    /// Removes both files: once the verdict is on disk, or when the task is taken away.
    pub fn remove(&self) {
        for path in [&self.started, &self.result] {
            if let Err(error) = std::fs::remove_file(path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a result file");
                }
            }
        }
    }
}

/// Wake the worker, wait for `<id>.started` within the confirmation timeout, then for
/// `<id>.json` within the task's timeout. On a resumed run, a worker that already confirmed
/// (or finished) is not woken again.
pub(super) async fn run_files(
    worker: &FileWorker,
    input: &TaskInput,
    resume: bool,
    control: &mut RunControl,
) -> Option<Verdict> {
    let files = ContractFiles::new(worker, input.task_id);
    let begun = Instant::now();
    let deadline = worker.timeout.map(|t| begun + t);
    let already = resume && (files.started.exists() || files.result.exists());
    if already {
        tracing::info!(task_id = %input.task_id, "the worker was already on this task; not waking it again");
    } else {
        files.remove();
        let env = [
            (
                "SWITCHYARD_RESULTS_DIR".to_owned(),
                path_text(&worker.results_dir),
            ),
            (
                "SWITCHYARD_STARTED_FILE".to_owned(),
                path_text(&files.started),
            ),
            (
                "SWITCHYARD_RESULT_FILE".to_owned(),
                path_text(&files.result),
            ),
        ];
        match run_program(
            &worker.wake,
            input,
            &env,
            Some(worker.confirmation_timeout),
            control,
        )
        .await
        {
            Err(reason) => return Some(Verdict::Rejected { reason }),
            Ok(Ended::Stopped) => return None,
            Ok(Ended::TimedOut { stderr_tail }) => {
                return Some(Verdict::Failure {
                    error: with_tail(
                        "wake_failed: the wake command did not return in time".into(),
                        &stderr_tail,
                    ),
                })
            }
            Ok(Ended::Exited {
                status,
                stderr_tail,
                ..
            }) if !status.success() => {
                return Some(Verdict::Failure {
                    error: format!("wake_failed: {}", exit_error(status, &stderr_tail)),
                });
            }
            Ok(Ended::Exited { .. }) => {}
        }
    }

    let confirm_by = begun + worker.confirmation_timeout;
    let mut confirmed = already;
    // The last unparsable content of the result file, and since when it has not changed.
    let mut unsettled: Option<(Vec<u8>, Instant)> = None;
    loop {
        if let Some(bytes) = read_capped(&files.result) {
            if bytes.len() > MAX_RESULT_BYTES {
                return Some(Verdict::Failure {
                    error: format!(
                        "output_too_large: {} is over {MAX_RESULT_BYTES} bytes",
                        files.result.display()
                    ),
                });
            }
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) => return Some(file_verdict(value)),
                Err(error) => match &unsettled {
                    Some((previous, since))
                        if *previous == bytes && since.elapsed() >= RESULT_SETTLE =>
                    {
                        return Some(Verdict::Failure {
                            error: format!("result_parse_error: {error}"),
                        })
                    }
                    Some((previous, _)) if *previous == bytes => {}
                    _ => unsettled = Some((bytes, Instant::now())),
                },
            }
            confirmed = true;
        }
        if !confirmed && files.started.exists() {
            tracing::debug!(task_id = %input.task_id, "the worker confirmed the task");
            confirmed = true;
        }
        let now = Instant::now();
        if !confirmed && now >= confirm_by {
            return Some(Verdict::Failure {
                error: "confirmation_timeout".into(),
            });
        }
        if deadline.is_some_and(|d| now >= d) {
            return Some(Verdict::Failure {
                error: format!(
                    "timeout: no result after {}",
                    seconds(worker.timeout.unwrap_or_default())
                ),
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(FILE_POLL) => {}
            _ = &mut control.stop => return None,
        }
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Reads a file, but not more than one byte past the result limit.
fn read_capped(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_RESULT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// `{"status":"success", ...}` is the result, whole; anything else a failure with its `reason`
/// (or `error`).
fn file_verdict(value: Value) -> Verdict {
    if value.get("status").and_then(Value::as_str) == Some("success") {
        return Verdict::Success { result: value };
    }
    let error = ["reason", "error"]
        .iter()
        .find_map(|key| match value.get(*key) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
        .unwrap_or_else(|| "unknown".to_owned());
    Verdict::Failure { error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_files_map_to_verdicts() {
        assert_eq!(
            file_verdict(json!({"status": "success", "output": "x"})),
            Verdict::Success {
                result: json!({"status": "success", "output": "x"})
            }
        );
        assert_eq!(
            file_verdict(json!({"status": "failed", "reason": "oom"})),
            Verdict::Failure {
                error: "oom".into()
            }
        );
        assert_eq!(
            file_verdict(json!({"status": "failed", "error": "e"})),
            Verdict::Failure { error: "e".into() }
        );
        assert_eq!(
            file_verdict(json!({})),
            Verdict::Failure {
                error: "unknown".into()
            }
        );
    }
}
