//! One agent's WebSocket connection.
//!
//! The connection answers what needs no shared state itself (`ping`, malformed frames, frames
//! before `identify`) and forwards the rest to the core. Everything the core says to the agent,
//! replies and pushes alike, arrives through the connection's outbox in the order the core
//! decided it.

use crate::core::outbox::{Outbound, Outbox};
use crate::core::{Command, Core};
use crate::wire::agent::{parse_frame, ClientMessage, FrameError, ServerMessage};
use crate::wire::now_ms;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use warp::ws::{Message, WebSocket};

/// Failed `identify` attempts after which a connection is closed (policy violation).
const MAX_FAILED_IDENTIFIES: u32 = 5;

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// Frames larger than this get `frame_too_large` and a 1009 close.
    pub max_frame_bytes: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Serves one upgraded connection until it closes. `shutdown` turning true closes it.
pub async fn serve_connection(
    socket: WebSocket,
    core: Core,
    limits: WsLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let conn = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut inbox) = Outbox::channel();
    let (mut sink, mut stream) = socket.split();
    let mut agent: Option<String> = None;
    let mut failed_identifies = 0;
    let mut report_alive = false;
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);

    // The loop ends with the close code and reason to send, if the hub closes.
    let close: Option<(u16, &'static str)> = loop {
        tokio::select! {
            frame = stream.next() => {
                let message = match frame {
                    None => break None,
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        if error.to_string().contains("too long") {
                            let reply = ServerMessage::error(FrameError::FrameTooLarge.as_str());
                            let _ = sink.send(Message::text(reply.to_json())).await;
                            break Some((1009, "frame_too_large"));
                        }
                        tracing::debug!(conn, %error, "connection error");
                        break None;
                    }
                };
                idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                if report_alive {
                    if let Some(agent) = &agent {
                        core.send(Command::Alive { conn, agent: agent.clone() });
                    }
                    report_alive = false;
                }
                if message.is_close() {
                    break None;
                }
                if message.is_ping() || message.is_pong() {
                    continue;
                }
                let text = match message.to_str() {
                    Ok(text) if message.is_text() => text,
                    _ => {
                        let reply = ServerMessage::error(FrameError::InvalidJson.as_str());
                        if sink.send(Message::text(reply.to_json())).await.is_err() {
                            break None;
                        }
                        continue;
                    }
                };
                if text.len() > limits.max_frame_bytes {
                    let reply = ServerMessage::error(FrameError::FrameTooLarge.as_str());
                    let _ = sink.send(Message::text(reply.to_json())).await;
                    break Some((1009, "frame_too_large"));
                }
                let direct = match parse_frame(text) {
                    Err(error) => Some(ServerMessage::error(error.as_str())),
                    Ok(ClientMessage::Identify(identify)) => {
                        let agent_id = identify.agent_id.clone();
                        let (done, outcome) = oneshot::channel();
                        core.send(Command::Identify { conn, outbox: outbox.clone(), identify, done });
                        // Frames are not read until the core has decided, so nothing the agent
                        // sends next can overtake its identification.
                        if outcome.await.unwrap_or(false) {
                            if let Some(previous) = agent.replace(agent_id.clone()) {
                                if previous != agent_id {
                                    core.send(Command::Disconnected { conn, agent: previous });
                                }
                            }
                        } else {
                            failed_identifies += 1;
                            if failed_identifies >= MAX_FAILED_IDENTIFIES {
                                flush(&mut sink, &mut inbox).await;
                                break Some((1008, "too many failed identifies"));
                            }
                        }
                        None
                    }
                    Ok(_) if agent.is_none() => Some(ServerMessage::error("not_identified")),
                    Ok(ClientMessage::Ping) => Some(ServerMessage::Pong { timestamp: now_ms() }),
                    // The lease is the connection's liveness, refreshed above by any frame.
                    Ok(ClientMessage::TaskProgress { .. }) => None,
                    Ok(message) => {
                        let agent = agent.clone().expect("identified");
                        core.send(Command::Message { conn, agent, outbox: outbox.clone(), message });
                        None
                    }
                };
                if let Some(reply) = direct {
                    if sink.send(Message::text(reply.to_json())).await.is_err() {
                        break None;
                    }
                }
            }
            Some(outbound) = inbox.recv() => match outbound {
                Outbound::Frame(text) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        break None;
                    }
                }
                Outbound::Unresponsive => report_alive = true,
                Outbound::Close { code, reason } => break Some((code, reason)),
            },
            _ = &mut idle => break Some((1000, "idle_timeout")),
            _ = shutdown.changed() => break Some((1001, "hub shutting down")),
        }
    };
    if let Some((code, reason)) = close {
        let _ = sink.send(Message::close_with(code, reason)).await;
        let _ = sink.close().await;
    }
    if let Some(agent) = agent {
        core.send(Command::Disconnected { conn, agent });
    }
    tracing::debug!(conn, ?close, "connection closed");
}

/// Sends the frames already waiting in the outbox. The core pushes its reply before it reports
/// an outcome, so a refusal's error frame is here by the time the outcome is.
async fn flush<S>(sink: &mut S, inbox: &mut tokio::sync::mpsc::UnboundedReceiver<Outbound>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Ok(Outbound::Frame(text)) = inbox.try_recv() {
        let _ = sink.send(Message::text(text)).await;
    }
}
