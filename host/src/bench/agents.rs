//! Simulated agents: real WebSocket connections that speak the agent protocol as fast as they
//! can. Each agent is one tokio task; it records when each `task_assign` arrived (by the
//! generator's own monotonic clock) and hands the record back when it stops, so the hot path
//! takes no lock.

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer per connection: hub frames are a few hundred bytes.
const READ_BUFFER_BYTES: usize = 8 << 10;

/// What an agent does with a task it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accept and complete at once: a no-op worker, so the hub is the bottleneck.
    Complete,
    /// Accept and keep it: a busy fleet, for measuring what the hub holds in memory.
    Hold,
}

/// Counters every agent of a scenario adds to; read by the progress line and the report.
#[derive(Debug, Default)]
pub struct Counters {
    pub identified: AtomicU64,
    pub assigned: AtomicU64,
    /// Completions the hub acknowledged (`task_ack` with status `complete`).
    pub completed: AtomicU64,
    /// `error` frames, and connections that failed.
    pub errors: AtomicU64,
    /// Connections the hub closed or dropped before the scenario ended.
    pub lost: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// An agent identity the generator created a token for.
#[derive(Debug, Clone)]
pub struct Identity {
    pub agent_id: String,
    pub token: String,
}

/// The frames the agent reads. Borrowed, and only the fields it needs: `description` and
/// `metadata` are skipped by the parser, not built.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    task_id: Option<&'a str>,
    #[serde(default)]
    generation: Option<u64>,
    #[serde(default)]
    status: Option<&'a str>,
    #[serde(default)]
    error: Option<&'a str>,
}

/// A task id's sequence number (`task-` + 16 hex digits), so records stay two words wide.
pub fn task_seq(task_id: &str) -> Option<u64> {
    crate::wire::TaskId::parse(task_id).map(|id| id.0)
}

/// An open connection, not identified yet.
pub struct Connected {
    identity: Identity,
    ws: Ws,
}

/// Opens the WebSocket. Identifying waits for [`run`], so a scenario can open every connection
/// first and start them all at once.
///
/// Nagle's algorithm is off (as the hub's side is): an agent writes small frames back to back.
/// The read buffer is small because tungstenite zeroes the whole free read buffer before every
/// read attempt: with its 128 KiB default that memset is most of a no-op agent's CPU, which
/// here is CPU taken from the hub being measured.
pub async fn connect(url: &str, identity: Identity) -> anyhow::Result<Connected> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (ws, _) = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .context("WebSocket connect timed out")?
        .with_context(|| format!("cannot open {url}"))?;
    Ok(Connected { identity, ws })
}

/// Identifies, then serves tasks according to `mode` until `stop` turns true or the hub closes
/// the connection. Returns (task sequence number, when its `task_assign` arrived) per task.
pub async fn run(
    agent: Connected,
    mode: Mode,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Vec<(u64, Instant)> {
    let Connected { identity, mut ws } = agent;
    let mut received = Vec::new();
    let identify = serde_json::json!({
        "type": "identify",
        "agent_id": identity.agent_id,
        "token": identity.token,
        "capabilities": ["bench"],
    });
    if ws.send(Message::text(identify.to_string())).await.is_err() {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return received;
    }
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            _ = stop.changed() => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                if !*stop.borrow() {
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                }
                return received;
            }
            Some(Ok(_)) => continue,
        };
        let at = Instant::now();
        let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match frame.kind {
            "identified" => {
                counters.identified.fetch_add(1, Ordering::Relaxed);
            }
            "task_assign" => {
                let (Some(task_id), Some(generation)) = (frame.task_id, frame.generation) else {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if let Some(seq) = task_seq(task_id) {
                    received.push((seq, at));
                }
                counters.assigned.fetch_add(1, Ordering::Relaxed);
                // Both frames go out in one flush: a no-op worker answers at once.
                let accepted = format!(
                    r#"{{"type":"task_accepted","task_id":"{task_id}","generation":{generation}}}"#
                );
                let sent = if mode == Mode::Complete {
                    let complete = format!(
                        r#"{{"type":"task_complete","task_id":"{task_id}","generation":{generation},"result":{{}}}}"#
                    );
                    match ws.feed(Message::text(accepted)).await {
                        Ok(()) => ws.send(Message::text(complete)).await,
                        Err(e) => Err(e),
                    }
                } else {
                    ws.send(Message::text(accepted)).await
                };
                if sent.is_err() {
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                    return received;
                }
            }
            "task_ack" if frame.status == Some("complete") => {
                counters.completed.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                let n = counters.errors.fetch_add(1, Ordering::Relaxed);
                if n < 5 {
                    tracing::warn!(agent = %identity.agent_id, error = frame.error.unwrap_or(""), "hub sent an error");
                }
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    received
}
