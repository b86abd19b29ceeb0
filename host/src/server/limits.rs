//! The size limits of HTTP requests and answers (`serve --max-task-bytes`, `--max-batch-bytes`,
//! `--max-page-bytes`), and the body limits that follow from them.

/// How large what the handlers read and write may be.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// One task's description, metadata, capabilities and fairness key, as JSON
    /// ([`crate::wire::http::NewTask::encoded_size`]).
    pub max_task_bytes: usize,
    /// The body of `POST /api/tasks/batch`.
    pub max_batch_bytes: usize,
    /// The tasks of one listing page, as JSON; a page holds one task even if it is larger.
    pub max_page_bytes: usize,
}

/// The most a body may hold, and the `serve` flag that sets it (for the 413 to name).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub bytes: usize,
    pub flag: &'static str,
}

/// Room in a task body for the fields the task size does not count (priority, retries,
/// timeouts, weight, deadline) and for whitespace.
const TASK_BODY_SLACK: usize = 64 << 10;

/// Bodies of the small admin requests (`POST /admin/tokens`).
pub const SMALL_BODY: BodyLimit = BodyLimit {
    bytes: 64 << 10,
    flag: "fixed",
};

/// An uploaded policy component (`PUT /api/policy`).
pub const POLICY_BODY: BodyLimit = BodyLimit {
    bytes: 32 << 20,
    flag: "fixed",
};

impl HttpLimits {
    /// The body of `POST /api/tasks`: large enough for any task within
    /// [`HttpLimits::max_task_bytes`] however its sender spells it. The task is measured as the
    /// hub encodes it, and a sender may write each byte of a string as a six-byte `\uXXXX`
    /// escape, hence six times the task limit, plus [`TASK_BODY_SLACK`].
    pub fn task_body(&self) -> BodyLimit {
        BodyLimit {
            bytes: self
                .max_task_bytes
                .saturating_mul(6)
                .saturating_add(TASK_BODY_SLACK),
            flag: "6 x --max-task-bytes + 64 KiB",
        }
    }

    /// The body of `POST /api/tasks/batch`.
    pub fn batch_body(&self) -> BodyLimit {
        BodyLimit {
            bytes: self.max_batch_bytes,
            flag: "--max-batch-bytes",
        }
    }
}
