//! Connection accounting: how many sockets are open (the cap on all connections, and what
//! shutdown waits for), and how many WebSocket connections of each source address have not
//! identified yet (the cap that keeps one address from holding the hub's sockets idle).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The limits [`Connections`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open sockets at most, HTTP and WebSocket together.
    pub max_connections: usize,
    /// WebSocket connections that have not identified, per source address.
    pub max_unidentified_per_ip: usize,
}

/// The open connections of one server. Cheap to clone.
#[derive(Clone)]
pub struct Connections(Arc<Inner>);

struct Inner {
    limits: ConnLimits,
    open: AtomicUsize,
    /// Notified whenever a connection closes, so shutdown can wait for the last one.
    closed: Notify,
    unidentified: Mutex<HashMap<IpAddr, usize>>,
}

impl Connections {
    pub fn new(limits: ConnLimits) -> Connections {
        Connections(Arc::new(Inner {
            limits,
            open: AtomicUsize::new(0),
            closed: Notify::new(),
            unidentified: Mutex::new(HashMap::new()),
        }))
    }

    pub fn limits(&self) -> ConnLimits {
        self.0.limits
    }

    /// Counts a newly accepted socket; `None` when [`ConnLimits::max_connections`] are already
    /// open. The socket stays counted until every clone of the guard is dropped (an upgraded
    /// WebSocket outlives the HTTP connection it came from).
    pub fn open(&self) -> Option<Arc<Open>> {
        let max = self.0.limits.max_connections;
        self.0
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Arc::new(Open(self.0.clone())))
    }

    /// Sockets open now.
    pub fn count(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// Waits until no socket is open, or `deadline` passes; true if none is open.
    pub async fn drained(&self, deadline: Duration) -> bool {
        let wait = async {
            loop {
                let closed = self.0.closed.notified();
                if self.count() == 0 {
                    return;
                }
                closed.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }

    /// Counts an unidentified WebSocket connection from `ip`; `None` when that address already
    /// has [`ConnLimits::max_unidentified_per_ip`] of them.
    pub fn unidentified(&self, ip: IpAddr) -> Option<Unidentified> {
        let mut counts = self
            .0
            .unidentified
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.0.limits.max_unidentified_per_ip {
            return None;
        }
        *count += 1;
        Some(Unidentified {
            conns: self.0.clone(),
            ip,
        })
    }
}

/// One open socket; dropping the last clone closes the count.
pub struct Open(Arc<Inner>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
    }
}

/// One WebSocket connection of an address that has not identified; dropped when it identifies
/// or closes.
pub struct Unidentified {
    conns: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for Unidentified {
    fn drop(&mut self) {
        let mut counts = self
            .conns
            .unidentified
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(max_connections: usize, max_unidentified_per_ip: usize) -> Connections {
        Connections::new(ConnLimits {
            max_connections,
            max_unidentified_per_ip,
        })
    }

    #[test]
    fn the_cap_counts_open_sockets_until_their_last_guard_goes() {
        let conns = conns(2, 1);
        let a = conns.open().unwrap();
        let a2 = a.clone();
        let _b = conns.open().unwrap();
        assert!(conns.open().is_none());
        drop(a);
        assert!(conns.open().is_none(), "a clone still holds the socket");
        drop(a2);
        assert!(conns.open().is_some());
    }

    #[test]
    fn unidentified_connections_are_counted_per_address() {
        let conns = conns(10, 2);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let first = conns.unidentified(one).unwrap();
        let _second = conns.unidentified(one).unwrap();
        assert!(conns.unidentified(one).is_none());
        assert!(conns.unidentified(two).is_some());
        drop(first);
        assert!(conns.unidentified(one).is_some());
    }

    #[tokio::test]
    async fn drained_waits_for_the_last_socket() {
        let conns = conns(10, 1);
        let open = conns.open().unwrap();
        assert!(!conns.drained(Duration::from_millis(10)).await);
        let waiter = tokio::spawn({
            let conns = conns.clone();
            async move { conns.drained(Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        drop(open);
        assert!(waiter.await.unwrap());
    }
}
