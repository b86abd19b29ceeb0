//! The binary form of task records (schema version 2).
//!
//! A task is written on each of its three or four state changes and read back, a million at a
//! time, on every restart. As JSON that was the largest user-space cost of a commit and most of
//! a restart (BENCHMARKS.md). This form is the task's fields in declaration order: integers as
//! LEB128 varints, strings length-prefixed, options behind a presence byte, the two free-form
//! JSON values (`metadata`, `result`) as length-prefixed JSON text.
//!
//! The first byte tells the forms apart: a JSON record starts with `{`, a binary one with
//! [`FORMAT`]. Records written by schema version 1 are therefore read as they are, with no
//! rewrite on upgrade, and become binary the next time their task changes.

use crate::task::{Details, HistoryEntry, Task, TaskStatus};
use crate::wire::TaskId;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::VecDeque;

/// The first byte of a binary task record (never `{`): the form this build writes. Form 3
/// adds the tenant after the timeouts; form 2 records end with the run and heartbeat timeouts
/// and belong to the default tenant; form 1 records (schema 2) end with the history and are
/// read with no timeouts.
const FORMAT: u8 = 3;
const FORMAT_WITHOUT_TENANT: u8 = 2;
const FORMAT_WITHOUT_TIMEOUTS: u8 = 1;

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record ends early")]
    Truncated,
    #[error("unknown record format {0:#04x}")]
    UnknownFormat(u8),
    #[error("bad {0}")]
    Invalid(&'static str),
    #[error("{0} bytes left over")]
    Trailing(usize),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub fn encode_task(task: &Task) -> Vec<u8> {
    let mut out = Encoder(Vec::with_capacity(256));
    out.byte(FORMAT);
    out.varint(task.id.0);
    out.str(&task.description);
    out.json(&task.metadata);
    out.byte(task.priority);
    out.byte(status_code(task.status));
    out.opt_str(task.assigned_to.as_deref());
    out.opt_varint(task.assigned_at);
    out.opt_varint(task.accepted_at);
    out.varint(task.generation);
    out.varint(task.retry_count.into());
    out.varint(task.reclaim_count.into());
    out.varint(task.max_retries.into());
    out.varint(task.needed_capabilities.len() as u64);
    for capability in &task.needed_capabilities {
        out.str(capability);
    }
    out.str(&task.fairness_key);
    out.0.extend_from_slice(&task.weight.to_le_bytes());
    out.opt_str(task.last_error.as_deref());
    out.opt_varint(task.complete_by);
    match &task.result {
        Some(result) => {
            out.byte(1);
            out.json(result);
        }
        None => out.byte(0),
    }
    out.opt_varint(task.tokens_used);
    out.str(&task.submitted_by);
    out.varint(task.created_at);
    out.varint(task.updated_at);
    out.varint(task.queued_at);
    out.varint(task.history.len() as u64);
    for entry in &task.history {
        out.str(&entry.event);
        out.varint(entry.timestamp);
        out.details(&entry.details);
    }
    out.opt_varint(task.run_timeout_ms);
    out.opt_varint(task.heartbeat_timeout_ms);
    out.str(&task.tenant);
    out.0
}

/// Decodes a task record in either form.
pub fn decode_task(bytes: &[u8]) -> Result<Task, DecodeError> {
    match bytes.first() {
        Some(b'{') => {
            let mut task: Task = serde_json::from_slice(bytes)?;
            // The JSON decoder grows the history as it reads; every live task stays in memory.
            task.history.shrink_to_fit();
            Ok(task)
        }
        Some(&form @ (FORMAT | FORMAT_WITHOUT_TENANT | FORMAT_WITHOUT_TIMEOUTS)) => {
            let mut input = Decoder(&bytes[1..]);
            let task = input.task(form)?;
            match input.0.len() {
                0 => Ok(task),
                left => Err(DecodeError::Trailing(left)),
            }
        }
        Some(&other) => Err(DecodeError::UnknownFormat(other)),
        None => Err(DecodeError::Truncated),
    }
}

fn status_code(status: TaskStatus) -> u8 {
    match status {
        TaskStatus::Queued => 0,
        TaskStatus::Assigned => 1,
        TaskStatus::Completed => 2,
        TaskStatus::DeadLetter => 3,
        TaskStatus::Cancelled => 4,
    }
}

/// History event names the hub writes, read back without an allocation each.
const EVENTS: [&str; 12] = [
    "submitted",
    "assigned",
    "accepted",
    "completed",
    "failed",
    "rejected",
    "reclaimed",
    "cancelled",
    "retried",
    "queued",
    "dead_letter",
    "requeued",
];

// Presence bits of a history entry's details, in field order.
const AGENT_ID: u8 = 1;
const ERROR: u8 = 1 << 1;
const GENERATION: u8 = 1 << 2;
const PRIORITY: u8 = 1 << 3;
const REASON: u8 = 1 << 4;
const RECLAIM_COUNT: u8 = 1 << 5;
const RETRY_COUNT: u8 = 1 << 6;
const ALL_DETAILS: u8 = (1 << 7) - 1;

struct Encoder(Vec<u8>);

impl Encoder {
    fn byte(&mut self, byte: u8) {
        self.0.push(byte);
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn opt_varint(&mut self, value: Option<u64>) {
        match value {
            Some(value) => {
                self.byte(1);
                self.varint(value);
            }
            None => self.byte(0),
        }
    }

    fn str(&mut self, text: &str) {
        self.varint(text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
    }

    fn opt_str(&mut self, text: Option<&str>) {
        match text {
            Some(text) => {
                self.byte(1);
                self.str(text);
            }
            None => self.byte(0),
        }
    }

    /// JSON text behind a fixed four-byte length, written in place (no intermediate buffer).
    fn json(&mut self, value: &Value) {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        serde_json::to_writer(&mut self.0, value).expect("JSON values serialize");
        let len = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn details(&mut self, details: &Details) {
        let bit = |present: bool, bit: u8| if present { bit } else { 0 };
        self.byte(
            bit(details.agent_id.is_some(), AGENT_ID)
                | bit(details.error.is_some(), ERROR)
                | bit(details.generation.is_some(), GENERATION)
                | bit(details.priority.is_some(), PRIORITY)
                | bit(details.reason.is_some(), REASON)
                | bit(details.reclaim_count.is_some(), RECLAIM_COUNT)
                | bit(details.retry_count.is_some(), RETRY_COUNT),
        );
        if let Some(agent_id) = &details.agent_id {
            self.opt_str(agent_id.as_deref());
        }
        if let Some(error) = &details.error {
            self.str(error);
        }
        if let Some(generation) = details.generation {
            self.varint(generation);
        }
        if let Some(priority) = details.priority {
            self.byte(priority);
        }
        if let Some(reason) = &details.reason {
            self.opt_str(reason.as_deref());
        }
        if let Some(count) = details.reclaim_count {
            self.varint(count.into());
        }
        if let Some(count) = details.retry_count {
            self.varint(count.into());
        }
    }
}

struct Decoder<'a>(&'a [u8]);

impl<'a> Decoder<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            // The tenth byte holds the 64th bit only.
            if shift == 63 && byte > 1 {
                return Err(DecodeError::Invalid("varint"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Invalid("varint"))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Invalid(what))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid("presence byte")),
        }
    }

    fn opt_varint(&mut self) -> Result<Option<u64>, DecodeError> {
        Ok(if self.flag()? {
            Some(self.varint()?)
        } else {
            None
        })
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Invalid("UTF-8"))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(if self.flag()? {
            Some(self.string()?)
        } else {
            None
        })
    }

    fn json(&mut self) -> Result<Value, DecodeError> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes"));
        Ok(serde_json::from_slice(self.take(len as usize)?)?)
    }

    fn task(&mut self, form: u8) -> Result<Task, DecodeError> {
        let id = TaskId(self.varint()?);
        let description = self.string()?;
        let metadata = self.json()?;
        let priority = self.byte()?;
        let status = match self.byte()? {
            0 => TaskStatus::Queued,
            1 => TaskStatus::Assigned,
            2 => TaskStatus::Completed,
            3 => TaskStatus::DeadLetter,
            4 => TaskStatus::Cancelled,
            _ => return Err(DecodeError::Invalid("status")),
        };
        let assigned_to = self.opt_string()?;
        let assigned_at = self.opt_varint()?;
        let accepted_at = self.opt_varint()?;
        let generation = self.varint()?;
        let retry_count = self.u32("retry count")?;
        let reclaim_count = self.u32("reclaim count")?;
        let max_retries = self.u32("max retries")?;
        let capabilities = self.varint()?;
        // Bounded by what is left, so a corrupt count cannot ask for a huge allocation.
        let mut needed_capabilities =
            Vec::with_capacity(capabilities.min(self.0.len() as u64) as usize);
        for _ in 0..capabilities {
            needed_capabilities.push(self.string()?);
        }
        let fairness_key = self.string()?;
        let weight = f64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes"));
        let last_error = self.opt_string()?;
        let complete_by = self.opt_varint()?;
        let result = if self.flag()? {
            Some(self.json()?)
        } else {
            None
        };
        let tokens_used = self.opt_varint()?;
        let submitted_by = self.string()?;
        let created_at = self.varint()?;
        let updated_at = self.varint()?;
        let queued_at = self.varint()?;
        let entries = self.varint()?;
        let mut history = VecDeque::with_capacity(entries.min(self.0.len() as u64) as usize);
        for _ in 0..entries {
            history.push_back(self.history_entry()?);
        }
        let (run_timeout_ms, heartbeat_timeout_ms) = if form >= FORMAT_WITHOUT_TENANT {
            (self.opt_varint()?, self.opt_varint()?)
        } else {
            (None, None)
        };
        let tenant = if form >= FORMAT {
            self.string()?
        } else {
            crate::wire::tenant::default_tenant()
        };
        Ok(Task {
            id,
            description,
            metadata,
            priority,
            status,
            assigned_to,
            assigned_at,
            accepted_at,
            generation,
            retry_count,
            reclaim_count,
            max_retries,
            needed_capabilities,
            fairness_key,
            weight,
            last_error,
            complete_by,
            run_timeout_ms,
            heartbeat_timeout_ms,
            result,
            tokens_used,
            submitted_by,
            tenant,
            created_at,
            updated_at,
            queued_at,
            history,
        })
    }

    fn history_entry(&mut self) -> Result<HistoryEntry, DecodeError> {
        let event = self.str()?;
        let event = match EVENTS.iter().find(|known| **known == event) {
            Some(known) => Cow::Borrowed(*known),
            None => Cow::Owned(event.to_owned()),
        };
        let timestamp = self.varint()?;
        let present = self.byte()?;
        if present & !ALL_DETAILS != 0 {
            return Err(DecodeError::Invalid("history details"));
        }
        let mut details = Details::default();
        if present & AGENT_ID != 0 {
            details.agent_id = Some(self.opt_string()?);
        }
        if present & ERROR != 0 {
            details.error = Some(self.string()?);
        }
        if present & GENERATION != 0 {
            details.generation = Some(self.varint()?);
        }
        if present & PRIORITY != 0 {
            details.priority = Some(self.byte()?);
        }
        if present & REASON != 0 {
            details.reason = Some(self.opt_string()?);
        }
        if present & RECLAIM_COUNT != 0 {
            details.reclaim_count = Some(self.u32("reclaim count")?);
        }
        if present & RETRY_COUNT != 0 {
            details.retry_count = Some(self.u32("retry count")?);
        }
        Ok(HistoryEntry {
            event,
            timestamp,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::ReclaimReason;
    use crate::wire::http::NewTask;
    use serde_json::json;

    fn task() -> Task {
        let new = NewTask {
            description: "résumé ✓ \"quoted\"".into(),
            priority: 1,
            metadata: json!({"repo": "x", "n": [1, 2.5, null]}),
            max_retries: 3,
            complete_by: Some(99_999_999_999),
            needed_capabilities: vec!["gpu".into(), "rust".into()],
            fairness_key: Some("team-a".into()),
            weight: 2.5,
            run_timeout_ms: Some(1_800_000),
            heartbeat_timeout_ms: Some(60_000),
        };
        Task::new(
            TaskId(0xdead_beef),
            new,
            "submitter",
            "team-a",
            1_700_000_000_000,
        )
    }

    /// A task through every kind of history entry the state machine writes.
    fn eventful_task() -> Task {
        let mut task = task();
        task.assign("agent-1", 10);
        task.accept(11);
        task.fail("boom", 12);
        task.assign("agent-2", 13);
        task.reject(Some("busy"), 14);
        task.assign("agent-3", 15);
        task.reclaim(ReclaimReason::Disconnected, 5, 16);
        task.assign("agent-4", 17);
        task.complete(json!({"ok": true}), Some(1234), 18);
        task
    }

    #[test]
    fn binary_records_round_trip() {
        for task in [task(), eventful_task()] {
            let bytes = encode_task(&task);
            assert_eq!(bytes[0], FORMAT);
            assert_eq!(decode_task(&bytes).unwrap(), task);
        }
    }

    #[test]
    fn records_of_the_form_before_timeouts_decode_with_none() {
        let mut task = eventful_task();
        task.run_timeout_ms = None;
        task.heartbeat_timeout_ms = None;
        task.tenant = crate::wire::tenant::default_tenant();
        // Form 1 is form 3 without the tenant ("default": 1 + 7 bytes) and the two trailing
        // absent options.
        let mut bytes = encode_task(&task);
        bytes.truncate(bytes.len() - 8);
        assert_eq!(bytes.split_off(bytes.len() - 2), vec![0, 0]);
        bytes[0] = FORMAT_WITHOUT_TIMEOUTS;
        assert_eq!(decode_task(&bytes).unwrap(), task);
    }

    #[test]
    fn records_of_the_form_before_tenants_belong_to_the_default_tenant() {
        let mut task = eventful_task();
        task.tenant = crate::wire::tenant::default_tenant();
        let mut bytes = encode_task(&task);
        bytes.truncate(bytes.len() - 8);
        bytes[0] = FORMAT_WITHOUT_TENANT;
        assert_eq!(decode_task(&bytes).unwrap(), task);
    }

    #[test]
    fn every_detail_field_round_trips() {
        let mut task = task();
        task.history[0].details = Details {
            agent_id: Some(None),
            error: Some("e".into()),
            generation: Some(u64::MAX),
            priority: Some(3),
            reason: Some(Some("why".into())),
            reclaim_count: Some(7),
            retry_count: Some(u32::MAX),
        };
        task.history[0].event = Cow::Owned("some_future_event".into());
        let decoded = decode_task(&encode_task(&task)).unwrap();
        assert_eq!(decoded, task);
        assert!(matches!(decoded.history[0].event, Cow::Owned(_)));
    }

    /// A float in a result is stored as JSON text: it must read back as the same number (see
    /// `floats_read_back_unchanged` in wire/agent/client.rs).
    #[test]
    fn float_results_round_trip() {
        let mut task = task();
        let result: Value =
            serde_json::from_str(r#"{"x":0.123456789412345678901234567890}"#).unwrap();
        task.assign("a", 1);
        task.complete(result, None, 2);
        assert_eq!(decode_task(&encode_task(&task)).unwrap(), task);
    }

    #[test]
    fn json_records_of_schema_1_still_decode() {
        let task = eventful_task();
        let json = serde_json::to_vec(&task).unwrap();
        assert_eq!(decode_task(&json).unwrap(), task);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bytes = encode_task(&eventful_task());
        for len in 0..bytes.len() {
            assert!(decode_task(&bytes[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode_task(&longer),
            Err(DecodeError::Trailing(1))
        ));
        assert!(matches!(
            decode_task(&[7, 1, 2]),
            Err(DecodeError::UnknownFormat(7))
        ));
        // An id of eleven bytes of varint, or whose tenth byte carries more than the 64th bit.
        let mut long = vec![FORMAT];
        long.extend([0xff; 9]);
        long.push(0x02);
        assert!(matches!(
            decode_task(&long),
            Err(DecodeError::Invalid("varint"))
        ));
        let mut max = Encoder(vec![FORMAT]);
        max.varint(u64::MAX);
        assert_eq!(Decoder(&max.0[1..]).varint().unwrap(), u64::MAX);
        let plain = task();
        let mut bad_status = encode_task(&plain);
        // FORMAT, id (5 varint bytes), description, metadata, priority, then the status byte.
        let metadata_len = serde_json::to_vec(&plain.metadata).unwrap().len();
        let status_at = 1 + 5 + 1 + plain.description.len() + 4 + metadata_len + 1;
        assert_eq!(bad_status[status_at], 0, "status byte found");
        bad_status[status_at] = 9;
        assert!(matches!(
            decode_task(&bad_status),
            Err(DecodeError::Invalid("status"))
        ));
    }
}
