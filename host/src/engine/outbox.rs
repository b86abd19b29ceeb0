//! The channel from the engine to one WebSocket connection. Replies and unsolicited pushes travel
//! the same channel, so an agent sees them in the order the engine decided them (a `task_ack`
//! always before the next `task_assign`).

use crate::wire::agent::{CloseReason, ServerMessage};
use tokio::sync::mpsc;

/// What the engine asks a connection to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// Send this frame.
    Frame(String),
    /// The agent missed an acceptance deadline; report the next frame it sends.
    Unresponsive,
    /// Close the connection, saying why.
    Close(CloseReason),
}

#[derive(Debug, Clone)]
pub struct Outbox(mpsc::UnboundedSender<Outbound>);

impl Outbox {
    pub fn channel() -> (Outbox, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Outbox(tx), rx)
    }

    /// Queues a frame. A connection that is gone is not an error: it has nothing left to tell.
    pub fn send(&self, message: &ServerMessage) {
        let _ = self.0.send(Outbound::Frame(message.to_json()));
    }

    pub fn control(&self, outbound: Outbound) {
        let _ = self.0.send(outbound);
    }
}
