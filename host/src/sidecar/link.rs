//! One WebSocket connection to the hub: opened and identified, read a frame at a time, written
//! with a deadline. What the sidecar does over it is [`connection`](super::connection)'s and
//! [`slot`](super::slot)'s business.

use crate::sidecar::config::AgentConfig;
use crate::wire::agent::{ClientMessage, CloseReason, ErrorCode, HubMessage, Identify};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Opening the socket and the identify handshake, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame that cannot be written this long means the connection is dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close is given to reach the hub.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a connection to the hub could not be had, or was given up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("timed out")]
    ConnectTimedOut,
    #[error(transparent)]
    Socket(Box<tungstenite::Error>),
    #[error("no answer to identify")]
    NoAnswerToIdentify,
    #[error("the hub closed the connection during identify")]
    EndedDuringIdentify,
    #[error("the hub refused to identify agent {agent_id}: {code}")]
    IdentifyRefused { agent_id: String, code: ErrorCode },
    /// The hub sent a close frame.
    #[error("the hub closed the connection ({code} {reason})")]
    Closed { code: u16, reason: String },
    /// The connection ended without a close frame.
    #[error("the hub closed the connection")]
    Ended,
    #[error("sending to the hub timed out")]
    SendTimedOut,
    #[error("no pong within {0:?}")]
    NoPong(Duration),
    /// A result was reported and the hub said nothing of it: it is sent again over a new
    /// connection.
    #[error("the hub did not acknowledge the result")]
    ResultNotAcknowledged,
}

impl LinkError {
    /// Why the hub closed the connection, when it said so with a reason this build knows.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self {
            LinkError::Closed { code, reason } => CloseReason::parse(*code, reason),
            _ => None,
        }
    }

    fn closed(frame: Option<CloseFrame>) -> LinkError {
        match frame {
            Some(frame) => LinkError::Closed {
                code: u16::from(frame.code),
                reason: frame.reason.as_str().to_owned(),
            },
            None => LinkError::Ended,
        }
    }
}

impl From<tungstenite::Error> for LinkError {
    fn from(error: tungstenite::Error) -> LinkError {
        LinkError::Socket(Box::new(error))
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An identified connection to the hub.
pub struct HubLink {
    ws: Ws,
}

impl HubLink {
    /// Opens the socket and identifies as the configured agent. A refused identify is a failed
    /// attempt like any other (the caller backs off).
    pub async fn open(config: &AgentConfig) -> Result<HubLink, LinkError> {
        let url = config.hub_url.as_str();
        let (ws, _) = timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| LinkError::ConnectTimedOut)??;
        let mut link = HubLink { ws };
        let identify = ClientMessage::Identify(Identify {
            agent_id: config.agent_id.clone(),
            token: config.token.clone(),
            name: config.name.clone(),
            status: None,
            capabilities: config.capabilities.clone(),
        });
        link.send(&identify).await?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            let frame = timeout_at(deadline, link.ws.next())
                .await
                .map_err(|_| LinkError::NoAnswerToIdentify)?;
            match frame {
                None => return Err(LinkError::EndedDuringIdentify),
                Some(Err(error)) => return Err(error.into()),
                Some(Ok(Message::Close(frame))) => return Err(LinkError::closed(frame)),
                Some(Ok(Message::Text(text))) => match HubMessage::parse(text.as_str()) {
                    Ok(HubMessage::Identified { .. }) => return Ok(link),
                    Ok(HubMessage::Error { error }) => {
                        link.close().await;
                        return Err(LinkError::IdentifyRefused {
                            agent_id: config.agent_id.clone(),
                            code: error,
                        });
                    }
                    _ => continue,
                },
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Writes one frame.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), LinkError> {
        match timeout(SEND_TIMEOUT, self.ws.send(Message::text(message.to_json()))).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(LinkError::SendTimedOut),
        }
    }

    /// The next frame from the hub the agent can read. A text frame that does not parse is
    /// logged and skipped, and so are the socket's own frames. Cancel-safe: nothing is lost
    /// when the future is dropped.
    pub async fn next(&mut self) -> Result<HubMessage, LinkError> {
        loop {
            match self.ws.next().await {
                None => return Err(LinkError::Ended),
                Some(Err(error)) => return Err(error.into()),
                Some(Ok(Message::Close(frame))) => return Err(LinkError::closed(frame)),
                Some(Ok(Message::Text(text))) => match HubMessage::parse(text.as_str()) {
                    Ok(message) => return Ok(message),
                    Err(error) => {
                        tracing::warn!(%error, frame = %text.as_str(), "ignoring a frame the agent cannot read");
                    }
                },
                Some(Ok(_)) => {}
            }
        }
    }

    /// Closes the connection, waiting a moment at most.
    pub async fn close(&mut self) {
        let _ = timeout(CLOSE_TIMEOUT, self.ws.close(None)).await;
    }
}
