//! The fuzz targets: what each decoder must do with any input.
//!
//! A target returns a short name for what happened (which variant was read, which error), which
//! the driver uses as its feedback, and panics when a property fails. Every target must return,
//! without a panic, for every input: arbitrary bytes give an error, never a crash.

use serde_json::{json, Value};
use switchyard::store::{decode_task, encode_task};
use switchyard::task::{ReclaimReason, Task, TaskStatus};
use switchyard::wire::agent::{parse_frame, ClientMessage, ErrorCode, HubMessage, ServerMessage};
use switchyard::wire::http::{object, token_request, NewTask, PolicyChange, TaskQuery};
use switchyard::wire::TaskId;

/// One target: a name for the command line, the function, its seed inputs and the longest
/// input it is given.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> String,
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Inputs are cut to this length. The hub's own limits are larger (1 MiB frames, 32 MiB
    /// bodies), but past a few kilobytes longer inputs only cost time: the mutator's long runs
    /// and deep nesting reach every limit the decoders have at this size.
    pub max_len: usize,
}

pub fn all() -> Vec<Target> {
    vec![
        Target {
            name: "agent_frame",
            run: agent_frame,
            seeds: agent_frame_seeds,
            max_len: 64 * 1024,
        },
        Target {
            name: "http_body",
            run: http_body,
            seeds: http_body_seeds,
            max_len: 64 * 1024,
        },
        Target {
            name: "store_record",
            run: store_record,
            seeds: store_record_seeds,
            max_len: 64 * 1024,
        },
    ]
}

pub fn by_name(name: &str) -> Option<Target> {
    all().into_iter().find(|t| t.name == name)
}

/// The hub's handling of one agent text frame, as `server/ws.rs` does it: decode it; a frame
/// that decodes is read back unchanged from the sidecar's writing of it (`to_json`), and a
/// frame that does not is answered with an `error` frame the sidecar reads back as the same
/// code.
///
/// The WebSocket layer passes only valid UTF-8 as text; other bytes are taken lossily (U+FFFD),
/// which is what a broken sidecar that replaces them would send.
pub fn agent_frame(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    match parse_frame(&text) {
        Ok(message) => {
            let written = message.to_json();
            let again = parse_frame(&written).unwrap_or_else(|e| {
                panic!("the sidecar's writing of {message:?} is refused ({e:?}): {written}")
            });
            assert_eq!(
                again, message,
                "read back differently from the sidecar's writing {written}"
            );
            format!("ok:{}", variant(&message))
        }
        Err(error) => {
            let reply = ServerMessage::error(error).to_json();
            match HubMessage::parse(&reply) {
                Ok(HubMessage::Error { error: read }) => {
                    assert_eq!(read, ErrorCode::from(error), "error frame {reply}")
                }
                other => panic!("the sidecar cannot read the hub's error frame {reply}: {other:?}"),
            }
            format!("err:{}", error.as_str())
        }
    }
}

fn variant(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Identify(_) => "identify",
        ClientMessage::Ping => "ping",
        ClientMessage::TaskAccepted { .. } => "task_accepted",
        ClientMessage::TaskProgress { .. } => "task_progress",
        ClientMessage::TaskComplete { .. } => "task_complete",
        ClientMessage::TaskFailed { .. } => "task_failed",
        ClientMessage::TaskRejected { .. } => "task_rejected",
        ClientMessage::TaskRecovering { .. } => "task_recovering",
        ClientMessage::Status { .. } => "status",
        ClientMessage::ListAgents => "list_agents",
    }
}

fn agent_frame_seeds() -> Vec<Vec<u8>> {
    [
        json!({"type": "identify", "agent_id": "a1", "token": "t", "name": "n",
               "status": {"load": 0.5}, "capabilities": ["rust", {"name": "gpu"}, 7]}),
        json!({"type": "ping"}),
        json!({"type": "task_accepted", "task_id": "task-0000000000000001", "generation": 1}),
        json!({"type": "task_accepted", "task_id": "task-0000000000000001"}),
        json!({"type": "task_progress", "task_id": "task-0000000000000001", "percent": 50}),
        json!({"type": "task_complete", "task_id": "task-0000000000000001", "generation": 2,
               "result": {"pages": 12, "tokens_used": 7}, "tokens_used": 9}),
        json!({"type": "task_failed", "task_id": "t", "generation": 3, "error": "boom"}),
        json!({"type": "task_failed", "task_id": "t", "reason": "r"}),
        json!({"type": "task_rejected", "task_id": "t", "reason": "busy"}),
        json!({"type": "task_recovering", "task_id": "t"}),
        json!({"type": "status", "status": "idle"}),
        json!({"type": "list_agents"}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .chain([b"not json".to_vec(), b"[]".to_vec(), Vec::new()])
    .collect()
}

/// The HTTP API's parsers: a body read as a JSON object, then as a task (`POST /api/tasks`),
/// a batch, a token request and a policy change; a query string read as a task listing's
/// filters and as a policy upload's. A task that is accepted holds what the rest of the hub
/// relies on.
///
/// The input is split at its first NUL byte: query string before, body after (no NUL: all
/// body, and the body's text as the query too).
pub fn http_body(data: &[u8]) -> String {
    let (query, body) = match data.iter().position(|&b| b == 0) {
        Some(at) => (String::from_utf8_lossy(&data[..at]), &data[at + 1..]),
        None => (String::from_utf8_lossy(data), data),
    };
    let mut outcome = String::new();
    match TaskQuery::parse(&query) {
        Ok(parsed) => {
            assert!(
                (1..=TaskQuery::MAX_LIMIT).contains(&parsed.limit),
                "limit {} out of range for {query:?}",
                parsed.limit
            );
            assert!(parsed.priority.is_none_or(|p| p <= 3), "{parsed:?}");
            outcome.push_str("query:ok ");
        }
        Err(e) => outcome.push_str(&format!("query:{} ", prefix(&e.0))),
    }
    for content_type in [Some("application/wasm"), Some("application/json"), None] {
        let change = PolicyChange::parse(content_type, &query, body.to_vec());
        outcome.push_str(if change.is_ok() {
            "policy:ok "
        } else {
            "policy:err "
        });
    }
    let fields = match object(body) {
        Ok(fields) => fields,
        Err(e) => return outcome + &format!("body:{}", prefix(&e.0)),
    };
    match NewTask::parse(&fields) {
        Ok(task) => {
            check_new_task(&task);
            outcome.push_str("task:ok ");
        }
        Err(e) => outcome.push_str(&format!("task:{} ", prefix(&e.0))),
    }
    match NewTask::parse_batch(&fields) {
        Ok(tasks) => {
            assert!(!tasks.is_empty());
            tasks.iter().for_each(check_new_task);
            outcome.push_str("batch:ok ");
        }
        Err(e) => outcome.push_str(&format!("batch:{} ", prefix(&e.0))),
    }
    match token_request(&fields) {
        Ok(request) => {
            let id = &request.agent_id;
            assert!(!id.is_empty() && id.len() <= 128, "agent id {id:?}");
            assert!(
                switchyard::wire::tenant::valid_tenant_name(&request.tenant),
                "tenant {:?}",
                request.tenant
            );
            outcome.push_str("token:ok");
        }
        Err(e) => outcome.push_str(&format!("token:{}", prefix(&e.0))),
    }
    outcome
}

/// What an accepted task promises the engine and the store (wire/http.rs).
fn check_new_task(task: &NewTask) {
    assert!(task.priority <= 3, "{task:?}");
    assert!(task.metadata.is_object(), "{task:?}");
    assert!((1..=1000).contains(&task.max_retries), "{task:?}");
    assert!(task.weight.is_finite() && task.weight > 0.0, "{task:?}");
    assert!(
        task.needed_capabilities.windows(2).all(|w| w[0] < w[1]),
        "capabilities sorted without duplicates: {task:?}"
    );
    assert!(task.fairness_key.as_ref().is_none_or(|k| !k.is_empty()));
    for timeout in [task.run_timeout_ms, task.heartbeat_timeout_ms] {
        assert!(timeout.is_none_or(|ms| ms <= switchyard::wire::http::MAX_TIMEOUT_MS));
    }
}

/// The start of an error message, without the parts that quote the input (the driver's
/// feedback would otherwise count every input as new).
fn prefix(message: &str) -> String {
    message.chars().take(24).collect()
}

fn http_body_seeds() -> Vec<Vec<u8>> {
    let bodies = [
        json!({"description": "build the docs", "priority": "urgent", "metadata": {"k": [1, 2.5]},
               "max_retries": 5, "complete_by": 99_999_999_999_999u64,
               "needed_capabilities": ["rust", "gpu", "rust"], "fairness_key": "team-a",
               "weight": 2.5, "run_timeout_ms": 60_000, "heartbeat_timeout_ms": 0}),
        json!({"description": "x", "priority": 3}),
        json!({"tasks": [{"description": "a"}, {"description": "b", "priority": "low"}]}),
        json!({"agent_id": "worker-1"}),
        json!({"builtin": "fair", "config": {"weights": {"a": 2}}}),
        json!({"path": "/tmp/policy.wasm"}),
    ];
    let queries = [
        "status=queued&priority=high&limit=10",
        "cursor=task-0000000000000001&assigned_to=a%201&fairness_key=k",
        "config=%7B%22a%22%3A1%7D",
        "",
    ];
    let mut seeds = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let mut input = queries[i % queries.len()].as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(body.to_string().as_bytes());
        seeds.push(input);
        seeds.push(body.to_string().into_bytes());
    }
    seeds
}

/// The store's record decoder. Arbitrary bytes give a record or an error, never a panic; a
/// record that decodes is written again and reads back the same (bytes equal, and the task
/// equal unless its weight is NaN, which equals nothing), in the form this build writes.
///
/// Inputs that start with 0xA5 are not decoded but read as a recipe for a valid task (fields
/// and a run of state changes, see [`task_from_recipe`]), which must round-trip exactly: the
/// valid records are explored as well as the damaged ones.
pub fn store_record(data: &[u8]) -> String {
    if let Some((&0xA5, recipe)) = data.split_first() {
        let task = task_from_recipe(recipe);
        let bytes = encode_task(&task);
        let back = decode_task(&bytes)
            .unwrap_or_else(|e| panic!("a valid task does not decode ({e}): {task:?}"));
        assert_eq!(back, task, "decode(encode(task)) differs");
        return format!("recipe:{:?}:{}", task.status, task.history.len().min(8));
    }
    match decode_task(data) {
        Ok(task) => {
            let bytes = encode_task(&task);
            let back = decode_task(&bytes)
                .unwrap_or_else(|e| panic!("a decoded task does not decode again ({e}): {task:?}"));
            assert_eq!(
                encode_task(&back),
                bytes,
                "re-encoding differs for {task:?}"
            );
            if !task.weight.is_nan() {
                assert_eq!(back, task, "decode(encode(task)) differs");
            }
            format!(
                "ok:{:?}:{}",
                task.status,
                data.first().copied().unwrap_or(0)
            )
        }
        Err(e) => {
            let text = e.to_string();
            format!("err:{}", prefix(&text))
        }
    }
}

/// Reads bytes as choices, and zero when they run out.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in bytes.iter_mut().take(1 + self.byte() as usize % 8) {
            *b = self.byte();
        }
        u64::from_le_bytes(bytes)
    }

    fn text(&mut self) -> String {
        let len = self.byte() as usize % 40;
        let bytes: Vec<u8> = (0..len).map(|_| self.byte()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A task made the way the hub makes them: parsed from a submission, then moved through its
/// state machine by the hub's own transitions, each chosen by the recipe.
pub fn task_from_recipe(recipe: &[u8]) -> Task {
    let mut c = Choices(recipe);
    let mut fields = serde_json::Map::new();
    fields.insert("description".into(), Value::String(c.text()));
    fields.insert("priority".into(), json!(c.byte() % 4));
    fields.insert(
        "metadata".into(),
        json!({ c.text(): c.text(), "n": c.u64() }),
    );
    fields.insert("max_retries".into(), json!(1 + c.byte() as u64 % 5));
    if c.byte() % 2 == 0 {
        fields.insert("complete_by".into(), json!(c.u64()));
    }
    fields.insert("needed_capabilities".into(), json!([c.text(), c.text()]));
    if c.byte() % 2 == 0 {
        fields.insert("fairness_key".into(), json!(format!("k{}", c.text())));
    }
    fields.insert("weight".into(), json!(0.001 + c.byte() as f64 / 7.0));
    if c.byte() % 2 == 0 {
        fields.insert("run_timeout_ms".into(), json!(c.u64() % 1_000_000));
        fields.insert("heartbeat_timeout_ms".into(), json!(c.u64() % 1_000_000));
    }
    let new = NewTask::parse(&fields).unwrap_or_else(|e| panic!("recipe made a bad task: {e}"));
    let mut now = c.u64() % (1 << 50);
    let mut task = Task::new(TaskId(c.u64()), new, &c.text(), &c.text(), now);
    for _ in 0..c.byte() % 64 {
        now += c.byte() as u64;
        let agent = format!("agent-{}", c.byte() % 4);
        // Each transition only from the state the engine calls it in (task.rs asserts some).
        match (task.status, c.byte() % 6) {
            (TaskStatus::Queued, 0..=3) => task.assign(&agent, now),
            (TaskStatus::Queued, 4) => task.cancel(now),
            (TaskStatus::Queued, _) => task.expire(now),
            (TaskStatus::Assigned, 0) => task.accept(now),
            (TaskStatus::Assigned, 1) => {
                let _ = task.fail(&c.text(), now);
            }
            (TaskStatus::Assigned, 2) => {
                let reason = c.text();
                task.reject(Some(reason.as_str()).filter(|r| !r.is_empty()), now)
            }
            (TaskStatus::Assigned, 3) => {
                let _ = task.reclaim(ReclaimReason::Disconnected, 3, now);
            }
            (TaskStatus::Assigned, 4) => {
                task.complete(json!({ "out": c.text() }), Some(c.u64()), now)
            }
            (TaskStatus::Assigned, _) => {
                let _ = task.requeue_by_hand(now);
            }
            (TaskStatus::DeadLetter, 0..=2) => {
                let _ = task.retry_from_dead_letter(now);
            }
            _ => {}
        }
    }
    task
}

fn store_record_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for i in 0u8..8 {
        let recipe: Vec<u8> = (0..200u16)
            .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i * 17))
            .collect();
        let task = task_from_recipe(&recipe);
        seeds.push(encode_task(&task));
        seeds.push(serde_json::to_vec(&task).expect("tasks serialize"));
        let mut as_recipe = vec![0xA5];
        as_recipe.extend_from_slice(&recipe);
        seeds.push(as_recipe);
    }
    seeds
}
