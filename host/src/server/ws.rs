//! One agent's WebSocket connection.
//!
//! The connection answers what needs no shared state itself (`ping`, malformed frames, frames
//! before `identify`) and forwards the rest to the engine. Everything the engine says to the agent,
//! replies and pushes alike, arrives through the connection's outbox in the order the engine
//! decided it.

use super::conns::{Connections, Unidentified};
use super::listen::Peer;
use super::refusals::{refused, Limit};
use super::reply::ApiError;
use super::throttle::AuthThrottle;
use crate::engine::outbox::{Outbound, Outbox};
use crate::engine::{Command, Engine};
use crate::wire::agent::{
    parse_frame, ClientMessage, CloseReason, ErrorCode, FrameError, ServerMessage,
};
use crate::wire::now_ms;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use warp::http::StatusCode;
use warp::hyper::upgrade::{OnUpgrade, Upgraded};
use warp::Reply;

/// Failed `identify` attempts after which a connection is closed
/// ([`CloseReason::TooManyFailedIdentifies`]).
const MAX_FAILED_IDENTIFIES: u32 = 5;

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// Frames larger than this get `frame_too_large` and [`CloseReason::FrameTooLarge`].
    pub max_frame_bytes: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    /// A connection that has not identified this long after it opened is closed
    /// ([`CloseReason::IdentifyTimeout`]); pings do not extend it.
    pub identify_timeout: Duration,
}

/// What every connection shares.
#[derive(Clone)]
pub struct WsContext {
    pub engine: Engine,
    pub limits: WsLimits,
    /// Turns true when the hub stops: every connection sends its close frame.
    pub closing: watch::Receiver<bool>,
    pub conns: Connections,
    pub throttle: Arc<AuthThrottle>,
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// An agent's upgraded connection.
pub type AgentSocket = WebSocketStream<hyper_util::rt::TokioIo<Upgraded>>;

/// tungstenite's read buffer per connection. Agent frames are a few hundred bytes; larger ones
/// still arrive whole (the buffer grows to fit a frame), this only sizes each read. It stays
/// resident for the connection's life, so it is kept small: 10,000 agents are connected at once.
const READ_BUFFER_BYTES: usize = 4 << 10;

/// Answers a WebSocket upgrade whose headers `warp::ws()` has checked, and serves the
/// connection once hyper hands the socket over.
///
/// warp's own `Ws::on_upgrade` does the same, but it cannot set tungstenite's read buffer, and
/// the 128 KiB default costs twice. tungstenite zeroes the free part of that buffer before every
/// read attempt, including the ones that find nothing to read: under load that memset was a
/// fifth of the hub's CPU (see BENCHMARKS.md). And 10,000 connections would each keep 128 KiB
/// resident.
///
/// An address already holding its share of unidentified connections, or locked out by the auth
/// throttle, gets 429 instead of the upgrade.
pub fn accept(
    on_upgrade: Option<OnUpgrade>,
    key: &str,
    peer: Option<Peer>,
    context: WsContext,
) -> warp::reply::Response {
    let limits = context.limits;
    let (addr, open, unidentified) = match peer {
        Some(Peer { addr, open }) => {
            if let Err(retry_after) = context.throttle.check(addr.ip()) {
                return ApiError::too_many_auth_failures(retry_after).into_response();
            }
            match context.conns.unidentified(addr.ip()) {
                Some(unidentified) => (Some(addr), Some(open), Some(unidentified)),
                None => {
                    let limit = context.conns.limits().max_unidentified_per_ip;
                    tracing::debug!(%addr, limit, "WebSocket refused: too many unidentified");
                    return ApiError::too_many_unidentified(limit).into_response();
                }
            }
        }
        None => (None, None, None),
    };
    // Leave room above the protocol's limit so an oversize frame reaches the connection and is
    // answered with `frame_too_large`, not dropped by the socket layer.
    let socket_limit = limits.max_frame_bytes.saturating_mul(2).max(64 << 10);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(socket_limit))
        .max_frame_size(Some(socket_limit));
    // Numbered here, as the request is answered, so connection ids count up in the order the
    // hub accepted the sockets (the order agents waiting for work are served in).
    let conn = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let accepted_at = now_ms();
    match on_upgrade {
        Some(on_upgrade) => {
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let io = hyper_util::rt::TokioIo::new(upgraded);
                        let socket =
                            WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                        serve_connection(socket, (conn, accepted_at, addr), unidentified, context)
                            .await;
                        // The socket leaves the connection count only now.
                        drop(open);
                    }
                    Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
                }
            });
        }
        None => tracing::debug!("a WebSocket request without upgrade state (not HTTP/1.1?)"),
    }
    let reply = warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS);
    let reply = warp::reply::with_header(reply, "connection", "upgrade");
    let reply = warp::reply::with_header(reply, "upgrade", "websocket");
    let accept_key = derive_accept_key(key.trim().as_bytes());
    warp::reply::with_header(reply, "sec-websocket-accept", accept_key).into_response()
}

/// The error frame that answers a message the socket layer refused, and the close that
/// follows it; `None` for a failure of the connection itself, which gets neither.
///
/// Both refusals end the connection, because the socket reads nothing after an error. For a
/// text message that is not UTF-8 there is no choice: tungstenite checks the bytes before it
/// hands a message over and reports only an error, so the hub never sees the frame to answer
/// it and read on as it does for other bad frames. It answers `invalid_json`, then fails the
/// connection as RFC 6455 asks for invalid UTF-8 (close 1007).
fn refusal_of_unreadable(error: &WsError) -> Option<(FrameError, CloseReason)> {
    match error {
        WsError::Capacity(_) => Some((FrameError::FrameTooLarge, CloseReason::FrameTooLarge)),
        WsError::Utf8(_) => Some((FrameError::InvalidJson, CloseReason::InvalidUtf8)),
        _ => None,
    }
}

fn close_message(close: CloseReason) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(close.code()),
        reason: close.reason().into(),
    }))
}

/// Serves one upgraded connection until it closes. `context.closing` turning true closes it.
/// `unidentified` is the connection's place among its address's unidentified ones, given up
/// when it identifies.
async fn serve_connection(
    socket: AgentSocket,
    (conn, accepted_at, peer): (u64, u64, Option<SocketAddr>),
    mut unidentified: Option<Unidentified>,
    context: WsContext,
) {
    let WsContext {
        engine,
        limits,
        closing: mut shutdown,
        throttle,
        ..
    } = context;
    let identify_by = tokio::time::sleep(limits.identify_timeout);
    tokio::pin!(identify_by);
    let (outbox, mut inbox) = Outbox::channel();
    let (mut sink, mut stream) = socket.split();
    let mut agent: Option<String> = None;
    let mut failed_identifies = 0;
    let mut report_alive = false;
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);

    // The loop ends with why the hub closes the connection, if it does.
    let close: Option<CloseReason> = loop {
        tokio::select! {
            frame = stream.next() => {
                let message = match frame {
                    None => break None,
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        let Some((reply, close)) = refusal_of_unreadable(&error) else {
                            tracing::debug!(conn, %error, "connection error");
                            break None;
                        };
                        tracing::debug!(conn, %error, %close, "unreadable frame; closing");
                        let reply = refuse(&engine, reply);
                        let _ = sink.send(Message::text(reply.to_json())).await;
                        break Some(close);
                    }
                };
                idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                if report_alive {
                    if let Some(agent) = &agent {
                        engine.send(Command::Alive { conn, agent: agent.clone() });
                    }
                    report_alive = false;
                }
                if message.is_close() {
                    break None;
                }
                if message.is_ping() || message.is_pong() {
                    continue;
                }
                let text = match &message {
                    Message::Text(text) => text.as_str(),
                    _ => {
                        let reply = refuse(&engine, FrameError::InvalidJson);
                        if sink.send(Message::text(reply.to_json())).await.is_err() {
                            break None;
                        }
                        continue;
                    }
                };
                if text.len() > limits.max_frame_bytes {
                    let reply = refuse(&engine, FrameError::FrameTooLarge);
                    let _ = sink.send(Message::text(reply.to_json())).await;
                    break Some(CloseReason::FrameTooLarge);
                }
                let direct = match parse_frame(text) {
                    Err(error) => Some(refuse(&engine, error)),
                    Ok(ClientMessage::Identify(identify)) => {
                        if let Some(ip) = peer.map(|peer| peer.ip()) {
                            if throttle.check(ip).is_err() {
                                refused(Limit::AuthThrottled);
                                break Some(CloseReason::TooManyAuthFailures);
                            }
                        }
                        let agent_id = identify.agent_id.clone();
                        let (done, outcome) = oneshot::channel();
                        engine.send(Command::Identify { conn, accepted_at, peer, outbox: outbox.clone(), identify, done });
                        // Frames are not read until the engine has decided, so nothing the agent
                        // sends next can overtake its identification.
                        if outcome.await.unwrap_or(false) {
                            unidentified = None;
                            if let Some(previous) = agent.replace(agent_id.clone()) {
                                if previous != agent_id {
                                    engine.send(Command::Disconnected { conn, agent: previous });
                                }
                            }
                        } else {
                            failed_identifies += 1;
                            flush(&mut sink, &mut inbox).await;
                            let ip = peer.map(|peer| peer.ip());
                            let delay = ip.map(|ip| throttle.failed(ip));
                            if failed_identifies >= MAX_FAILED_IDENTIFIES {
                                break Some(CloseReason::TooManyFailedIdentifies);
                            }
                            if let (Some(ip), Some(delay)) = (ip, delay) {
                                // Slows the guesser down: nothing more is read meanwhile.
                                tokio::time::sleep(delay).await;
                                if throttle.check(ip).is_err() {
                                    refused(Limit::AuthThrottled);
                                break Some(CloseReason::TooManyAuthFailures);
                                }
                            }
                        }
                        None
                    }
                    Ok(_) if agent.is_none() => Some(refuse(&engine, ErrorCode::NotIdentified)),
                    Ok(ClientMessage::Ping) => Some(ServerMessage::Pong { timestamp: now_ms() }),
                    Ok(message) => {
                        let agent = agent.clone().expect("identified");
                        engine.send(Command::Message { conn, agent, outbox: outbox.clone(), message });
                        None
                    }
                };
                if let Some(reply) = direct {
                    if sink.send(Message::text(reply.to_json())).await.is_err() {
                        break None;
                    }
                }
            }
            Some(outbound) = inbox.recv() => {
                match send_waiting(&mut sink, &mut inbox, outbound, &mut report_alive).await {
                    Ok(None) => {}
                    Ok(Some(close)) => break Some(close),
                    Err(()) => break None,
                }
            }
            _ = &mut idle => break Some(CloseReason::IdleTimeout),
            _ = &mut identify_by, if agent.is_none() => break Some(CloseReason::IdentifyTimeout),
            _ = shutdown.changed() => break Some(CloseReason::ShuttingDown),
        }
    };
    if let Some(close) = close {
        let _ = sink.send(close_message(close)).await;
        let _ = sink.close().await;
    }
    drop(unidentified);
    if let Some(agent) = agent {
        engine.send(Command::Disconnected { conn, agent });
    }
    tracing::debug!(conn, ?close, "connection closed");
}

/// Frames written before one flush at most, so a flood of pushes cannot keep the connection
/// from reading.
const MAX_FRAMES_PER_FLUSH: usize = 64;

/// Handles `first` and whatever else the outbox already holds, in order, then flushes once.
/// What one commit releases for an agent arrives together (typically a `task_ack` and the next
/// `task_assign`), so this costs one write per batch instead of one per frame, and the
/// connection's loop wakes once for the lot. Returns the close to send if the engine asked for
/// one (frames before it are flushed first), or `Err` when the socket failed.
async fn send_waiting<S>(
    sink: &mut S,
    inbox: &mut tokio::sync::mpsc::UnboundedReceiver<Outbound>,
    first: Outbound,
    report_alive: &mut bool,
) -> Result<Option<CloseReason>, ()>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut next = Some(first);
    let mut close = None;
    let mut written = 0;
    while let Some(outbound) = next.take() {
        match outbound {
            Outbound::Frame(text) => {
                sink.feed(Message::text(text)).await.map_err(|_| ())?;
                written += 1;
            }
            Outbound::Unresponsive => *report_alive = true,
            Outbound::Close(reason) => {
                close = Some(reason);
                break;
            }
        }
        if written < MAX_FRAMES_PER_FLUSH {
            next = inbox.try_recv().ok();
        }
    }
    sink.flush().await.map_err(|_| ())?;
    Ok(close)
}

/// Sends the frames already waiting in the outbox. The engine pushes its reply before it reports
/// an outcome, so a refusal's error frame is here by the time the outcome is.
async fn flush<S>(sink: &mut S, inbox: &mut tokio::sync::mpsc::UnboundedReceiver<Outbound>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Ok(Outbound::Frame(text)) = inbox.try_recv() {
        let _ = sink.send(Message::text(text)).await;
    }
}

/// The error frame refusing an agent's frame with `code`, counted for `/metrics`.
fn refuse(engine: &Engine, code: impl Into<ErrorCode>) -> ServerMessage {
    let code = code.into();
    engine.stats().refused_frame(&code);
    ServerMessage::error(code)
}
