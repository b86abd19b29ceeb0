//! A simulated agent speaking the WebSocket protocol.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{str_field, u64_field, RECV_TIMEOUT};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One thing read from the socket.
// The payloads are read through `Debug`, in failure messages.
#[allow(dead_code)]
#[derive(Debug)]
pub enum Incoming {
    Json(Value),
    /// A text frame that is not JSON.
    NotJson(String),
    /// A binary frame (its length).
    Binary(usize),
    /// A close frame: code and reason.
    Close(Option<u16>, String),
    /// The stream ended without a close frame.
    Eof,
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
}

/// A JSON frame sent or received, with its connection number (1 for the first connection).
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Instant,
    pub dir: Dir,
    pub conn: u32,
    pub msg: Value,
}

/// A `task_assign` as received.
#[derive(Debug, Clone)]
pub struct Assign {
    pub task_id: String,
    pub generation: u64,
    pub description: String,
    pub metadata: Value,
    pub assigned_at: u64,
    /// When the frame arrived.
    pub at: Instant,
}

impl Assign {
    /// Parses and checks the shape of a `task_assign` frame.
    pub fn parse(v: &Value, at: Instant) -> Assign {
        assert_eq!(v.get("type").and_then(Value::as_str), Some("task_assign"));
        let metadata = v
            .get("metadata")
            .cloned()
            .unwrap_or_else(|| panic!("task_assign without `metadata`: {v}"));
        assert!(
            metadata.is_object(),
            "task_assign metadata must be an object: {v}"
        );
        Assign {
            task_id: str_field(v, "task_id").to_string(),
            generation: u64_field(v, "generation"),
            description: str_field(v, "description").to_string(),
            metadata,
            assigned_at: u64_field(v, "assigned_at"),
            at,
        }
    }
}

/// Messages the hub pushes on its own; replies to our requests are everything else.
fn is_push(v: &Value) -> bool {
    matches!(
        v.get("type").and_then(Value::as_str),
        Some("task_assign" | "task_cancel")
    )
}

fn type_of(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

pub struct Agent {
    pub id: String,
    pub token: String,
    url: String,
    ws: Option<Ws>,
    conn: u32,
    /// Pushed frames read while waiting for something else, with their arrival time.
    stash: VecDeque<(Instant, Value)>,
    /// Every JSON frame sent and received, over all connections of this agent.
    pub log: Vec<Entry>,
}

async fn open_ws(url: &str) -> Ws {
    match tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _response))) => ws,
        Ok(Err(e)) => panic!("websocket connect to {url} failed: {e}"),
        Err(_) => panic!("websocket connect to {url} timed out after {RECV_TIMEOUT:?}"),
    }
}

impl Agent {
    /// Opens a connection without identifying.
    pub async fn open(url: &str, agent_id: &str, token: &str) -> Agent {
        let ws = open_ws(url).await;
        Agent {
            id: agent_id.to_string(),
            token: token.to_string(),
            url: url.to_string(),
            ws: Some(ws),
            conn: 1,
            stash: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// Opens a connection and identifies.
    pub async fn connect(url: &str, agent_id: &str, token: &str) -> Agent {
        let mut agent = Agent::open(url, agent_id, token).await;
        agent.identify().await;
        agent
    }

    /// Sends `identify` with this agent's id and token and expects `identified`.
    pub async fn identify(&mut self) {
        let msg = json!({"type": "identify", "agent_id": self.id, "token": self.token});
        self.identify_with(msg).await;
    }

    /// Sends the given identify message and expects exactly `{"type":"identified","agent_id"}`.
    pub async fn identify_with(&mut self, msg: Value) {
        self.send(msg).await;
        let reply = self.expect_reply().await;
        assert_eq!(
            reply,
            json!({"type": "identified", "agent_id": self.id}),
            "agent {}: identify answered {reply}",
            self.id
        );
    }

    /// Drops the TCP connection without a close frame.
    pub fn cut(&mut self) {
        let ws = self.ws.take();
        assert!(
            ws.is_some(),
            "agent {}: cut() without a connection",
            self.id
        );
        drop(ws);
    }

    /// Opens a new connection to `url` (the same hub, or a restarted one) and identifies.
    pub async fn reconnect_to(&mut self, url: &str) {
        assert!(
            self.ws.is_none(),
            "agent {}: reconnect while still connected (cut or close first)",
            self.id
        );
        self.url = url.to_string();
        self.ws = Some(open_ws(url).await);
        self.conn += 1;
        self.stash.clear();
        self.identify().await;
    }

    /// Opens a new connection to the same hub and identifies.
    pub async fn reconnect(&mut self) {
        let url = self.url.clone();
        self.reconnect_to(&url).await;
    }

    /// Closes the connection with a close frame and waits for the hub's close.
    pub async fn close(&mut self) {
        let Some(mut ws) = self.ws.take() else {
            panic!("agent {}: close() without a connection", self.id)
        };
        let _ = ws.close(None).await;
        let deadline = Instant::now() + RECV_TIMEOUT;
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline.into(), ws.next()).await {}
    }

    fn ws(&mut self) -> &mut Ws {
        let id = &self.id;
        self.ws
            .as_mut()
            .unwrap_or_else(|| panic!("agent {id}: no open connection"))
    }

    async fn send_message(&mut self, msg: Message) {
        let id = self.id.clone();
        let ws = self.ws();
        match tokio::time::timeout(RECV_TIMEOUT, ws.send(msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("agent {id}: send failed: {e}"),
            Err(_) => panic!("agent {id}: send timed out"),
        }
    }

    /// Sends a JSON text frame.
    pub async fn send(&mut self, msg: Value) {
        self.log.push(Entry {
            at: Instant::now(),
            dir: Dir::Out,
            conn: self.conn,
            msg: msg.clone(),
        });
        self.send_message(Message::text(msg.to_string())).await;
    }

    /// Sends an arbitrary text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_message(Message::text(text.to_string())).await;
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.send_message(Message::binary(bytes.to_vec())).await;
    }

    /// The next frame from the socket (not the stash), or `None` after `timeout`.
    /// Cancel-safe: nothing is lost when the future is dropped before it completes.
    pub async fn next_incoming(&mut self, timeout: Duration) -> Option<Incoming> {
        let deadline = Instant::now() + timeout;
        let conn = self.conn;
        let ws = self.ws();
        let incoming = loop {
            let item = match tokio::time::timeout_at(deadline.into(), ws.next()).await {
                Err(_) => return None,
                Ok(item) => item,
            };
            break match item {
                None => Incoming::Eof,
                Some(Err(e)) => Incoming::Error(e.to_string()),
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(t.as_str()) {
                    Ok(v) => Incoming::Json(v),
                    Err(_) => Incoming::NotJson(t.to_string()),
                },
                Some(Ok(Message::Binary(b))) => Incoming::Binary(b.len()),
                Some(Ok(Message::Close(frame))) => match frame {
                    Some(f) => Incoming::Close(Some(u16::from(f.code)), f.reason.to_string()),
                    None => Incoming::Close(None, String::new()),
                },
                // Protocol-level ping/pong are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            };
        };
        if let Incoming::Json(v) = &incoming {
            self.log.push(Entry {
                at: Instant::now(),
                dir: Dir::In,
                conn,
                msg: v.clone(),
            });
        }
        Some(incoming)
    }

    /// The last few logged frames, for failure messages.
    pub fn recent(&self) -> String {
        let start = self.log.len().saturating_sub(10);
        self.log[start..]
            .iter()
            .map(|e| {
                let arrow = if e.dir == Dir::In { "<-" } else { "->" };
                format!("\n    [conn {}] {arrow} {}", e.conn, e.msg)
            })
            .collect()
    }

    /// Takes all stashed (pushed) frames.
    pub fn take_stash(&mut self) -> Vec<(Instant, Value)> {
        self.stash.drain(..).collect()
    }

    /// The next JSON frame (stashed pushes first), whatever its type.
    pub async fn recv_json(&mut self) -> Value {
        if let Some((_, v)) = self.stash.pop_front() {
            return v;
        }
        match self.next_incoming(RECV_TIMEOUT).await {
            Some(Incoming::Json(v)) => v,
            None => panic!(
                "agent {}: no frame within {RECV_TIMEOUT:?}; recent frames:{}",
                self.id,
                self.recent()
            ),
            Some(other) => panic!(
                "agent {}: expected a JSON frame, got {other:?}; recent frames:{}",
                self.id,
                self.recent()
            ),
        }
    }

    /// Reads until a frame of type `ty` arrives (or is found in the stash) and returns it with
    /// its arrival time. `pong`s are skipped; pushed frames (`task_assign`, `task_cancel`) of
    /// another type are stashed for later; any other frame fails the test.
    pub async fn expect_type_at(&mut self, ty: &str) -> (Instant, Value) {
        if let Some(i) = self.stash.iter().position(|(_, v)| type_of(v) == ty) {
            return self.stash.remove(i).expect("index from position");
        }
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_incoming(left).await {
                Some(Incoming::Json(v)) => {
                    let at = Instant::now();
                    if type_of(&v) == ty {
                        return (at, v);
                    } else if type_of(&v) == "pong" {
                        continue;
                    } else if is_push(&v) {
                        self.stash.push_back((at, v));
                    } else {
                        panic!(
                            "agent {}: waiting for `{ty}`, got {v}; recent frames:{}",
                            self.id,
                            self.recent()
                        );
                    }
                }
                None => panic!(
                    "agent {}: no `{ty}` within {RECV_TIMEOUT:?}; recent frames:{}",
                    self.id,
                    self.recent()
                ),
                Some(other) => panic!(
                    "agent {}: waiting for `{ty}`, got {other:?}; recent frames:{}",
                    self.id,
                    self.recent()
                ),
            }
        }
    }

    /// [`Agent::expect_type_at`] without the arrival time.
    pub async fn expect_type(&mut self, ty: &str) -> Value {
        self.expect_type_at(ty).await.1
    }

    /// The next reply to something we sent: skips `pong`s (unless `keep_pong`), stashes pushes.
    async fn next_reply(&mut self, keep_pong: bool) -> Value {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_incoming(left).await {
                Some(Incoming::Json(v)) => {
                    if is_push(&v) {
                        self.stash.push_back((Instant::now(), v));
                    } else if type_of(&v) == "pong" && !keep_pong {
                        continue;
                    } else {
                        return v;
                    }
                }
                None => panic!(
                    "agent {}: no reply within {RECV_TIMEOUT:?}; recent frames:{}",
                    self.id,
                    self.recent()
                ),
                Some(other) => panic!(
                    "agent {}: expected a JSON reply, got {other:?}; recent frames:{}",
                    self.id,
                    self.recent()
                ),
            }
        }
    }

    /// The next frame that is neither a `pong` nor a push (pushes are stashed).
    pub async fn expect_reply(&mut self) -> Value {
        self.next_reply(false).await
    }

    /// Expects exactly `{"type":"error","error":<error>}` as the next reply (a `pong` here is a
    /// wrong reply too: every `ping` helper consumes its own).
    pub async fn expect_error(&mut self, error: &str) {
        let reply = self.next_reply(true).await;
        assert_eq!(
            reply,
            json!({"type": "error", "error": error}),
            "agent {}: expected error {error:?}; recent frames:{}",
            self.id,
            self.recent()
        );
    }

    /// Sends `ping` and expects the next reply to be exactly `{"type":"pong","timestamp":ms}`.
    pub async fn ping(&mut self) {
        self.send(json!({"type": "ping"})).await;
        let reply = self.next_reply(true).await;
        assert_eq!(
            type_of(&reply),
            "pong",
            "agent {}: ping answered {reply}; recent frames:{}",
            self.id,
            self.recent()
        );
        let obj = reply.as_object().expect("pong is an object");
        assert!(
            obj.len() == 2 && obj.get("timestamp").and_then(Value::as_u64).is_some(),
            "pong must be {{\"type\":\"pong\",\"timestamp\":ms}}, got {reply}"
        );
    }

    /// A ping round trip, then asserts that nothing was pushed to this agent meanwhile (and
    /// nothing is stashed). Everything pushed before the ping was answered arrives before the
    /// pong on the same connection.
    pub async fn expect_quiet(&mut self) {
        self.ping().await;
        assert!(
            self.stash.is_empty(),
            "agent {}: expected no pushed frames, got {:?}",
            self.id,
            self.stash
        );
    }

    /// Reads until the connection closes; returns the close code (`None`: no close frame or no
    /// code) and the JSON frames that came before it.
    pub async fn expect_close(&mut self, timeout: Duration) -> (Option<u16>, String, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_incoming(left).await {
                Some(Incoming::Json(v)) => before.push(v),
                Some(Incoming::Close(code, reason)) => {
                    self.ws = None;
                    return (code, reason, before);
                }
                Some(Incoming::Eof | Incoming::Error(_)) => {
                    self.ws = None;
                    return (None, String::new(), before);
                }
                Some(other) => panic!("agent {}: unexpected {other:?} before close", self.id),
                None => panic!(
                    "agent {}: connection not closed within {timeout:?}; recent frames:{}",
                    self.id,
                    self.recent()
                ),
            }
        }
    }

    /// Waits for a `task_assign` (stashed or new) and checks its shape.
    pub async fn expect_assign(&mut self) -> Assign {
        let (at, v) = self.expect_type_at("task_assign").await;
        Assign::parse(&v, at)
    }

    /// Expects exactly `{"type":"task_ack","task_id","status"}` as the next reply.
    pub async fn expect_ack(&mut self, task_id: &str, status: &str) {
        let reply = self.expect_reply().await;
        assert_eq!(
            reply,
            json!({"type": "task_ack", "task_id": task_id, "status": status}),
            "agent {}: expected a `{status}` ack for {task_id}; recent frames:{}",
            self.id,
            self.recent()
        );
    }

    /// `task_accepted` with the assignment's generation, expecting the `accepted` ack.
    pub async fn accept(&mut self, a: &Assign) {
        self.send(
            json!({"type": "task_accepted", "task_id": a.task_id, "generation": a.generation}),
        )
        .await;
        self.expect_ack(&a.task_id, "accepted").await;
    }

    /// `task_complete` with `result` `{"by": agent_id}`, expecting the `complete` ack.
    pub async fn complete(&mut self, task_id: &str, generation: u64) {
        let result = json!({"by": self.id});
        self.send(json!({
            "type": "task_complete",
            "task_id": task_id,
            "generation": generation,
            "result": result
        }))
        .await;
        self.expect_ack(task_id, "complete").await;
    }

    /// `task_recovering`, expecting exactly `task_continue` with `generation`.
    pub async fn recover(&mut self, task_id: &str, generation: u64) {
        self.send(json!({"type": "task_recovering", "task_id": task_id, "progress": "halfway"}))
            .await;
        let reply = self.expect_reply().await;
        assert_eq!(
            reply,
            json!({"type": "task_continue", "task_id": task_id, "generation": generation}),
            "agent {}: task_recovering for {task_id}; recent frames:{}",
            self.id,
            self.recent()
        );
    }
}

/// Walks an agent's log (over all its connections) and fails if a `task_assign` for one task
/// arrived while the agent still held another: held from its `task_assign` until the agent
/// sent `task_complete`, `task_failed` or `task_rejected` for it, or got `task_cancel`.
pub fn assert_one_task_at_a_time(agent: &Agent) {
    let mut holding: Option<String> = None;
    for e in &agent.log {
        let ty = type_of(&e.msg);
        let id = e
            .msg
            .get("task_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        match (e.dir, ty) {
            (Dir::In, "task_assign") => {
                if let (Some(h), Some(new)) = (&holding, &id) {
                    assert_eq!(
                        h,
                        new,
                        "agent {}: task_assign {new} while holding {h}; log:{}",
                        agent.id,
                        agent.recent()
                    );
                }
                holding = id;
            }
            (Dir::Out, "task_complete" | "task_failed" | "task_rejected")
            | (Dir::In, "task_cancel")
                if holding == id =>
            {
                holding = None;
            }
            _ => {}
        }
    }
}
