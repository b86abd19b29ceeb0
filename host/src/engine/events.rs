//! The fan-out of `GET /api/events`: a ring of the most recent events, for resuming, and one
//! bounded buffer per subscriber.
//!
//! Events are published by whoever releases a committed batch (the writer thread, mostly), so
//! an event never leaves before the commit that made it durable. Publishing never waits: a
//! subscriber whose buffer is full is cut off (its stream ends with `dropped`) instead of
//! slowing the thread that publishes. Subscribing takes the replay from the ring and joins the
//! live subscribers under the same lock, so the replay and the live events meet with no gap and
//! no duplicate.
//!
//! A subscriber may be limited to one tenant (a client's or agent's stream): it then gets only
//! the task events of that tenant, and the ring's replay is filtered the same way. Its sequence
//! numbers have gaps where other tenants' events were; resuming works the same.

use crate::wire::events::{frame, Event};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Events kept for resuming unless `serve --event-ring` says otherwise.
pub const DEFAULT_EVENT_RING: usize = 10_000;
/// Events buffered per subscriber unless `serve --event-buffer` says otherwise.
pub const DEFAULT_EVENT_BUFFER: usize = 1_000;

/// One event, framed once for every subscriber.
pub type Framed = Arc<str>;

/// An event as the ring keeps it: framed, and the tenant whose subscribers may see it (none:
/// only subscribers of every tenant, the admins, see it).
struct Kept {
    seq: u64,
    framed: Framed,
    tenant: Option<Arc<str>>,
}

impl Kept {
    fn visible_to(&self, scope: Option<&str>) -> bool {
        match scope {
            None => true,
            Some(scope) => self.tenant.as_deref() == Some(scope),
        }
    }
}

pub struct EventHub {
    inner: Mutex<Inner>,
    ring_limit: usize,
    buffer: usize,
}

struct Inner {
    /// The last sequence number given (0: none yet).
    last: u64,
    ring: VecDeque<Kept>,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    sender: mpsc::Sender<Framed>,
    dropped: Arc<AtomicBool>,
    /// The one tenant whose events it gets; none: every event.
    scope: Option<String>,
}

/// Where a subscription starts.
pub enum Start {
    /// Replay these events (those after the resume point), then follow.
    Replay(Vec<Framed>),
    /// The resume point is no longer in the ring (or was never given out): reload, then follow.
    Reset,
}

/// A subscriber's end.
pub struct Subscription {
    /// The last sequence number published when it subscribed.
    pub last: u64,
    /// The oldest sequence number the ring still holds.
    pub oldest: u64,
    pub start: Start,
    pub live: mpsc::Receiver<Framed>,
    dropped: Arc<AtomicBool>,
    /// The buffer's size, in events.
    pub limit: usize,
}

impl Subscription {
    /// Whether the hub cut this subscriber off for being too slow (once `live` has ended).
    pub fn was_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }
}

impl EventHub {
    pub fn new(ring_limit: usize, buffer: usize) -> EventHub {
        EventHub {
            inner: Mutex::new(Inner {
                last: 0,
                ring: VecDeque::new(),
                subscribers: Vec::new(),
            }),
            ring_limit: ring_limit.max(1),
            buffer: buffer.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under the lock can panic half-way through a change that matters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers, frames, keeps and sends `events`, in order.
    pub fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for event in events {
            inner.last += 1;
            let seq = inner.last;
            let kept = Kept {
                seq,
                framed: frame(Some(seq), event.kind(), &event.data()).into(),
                tenant: event.tenant().map(Arc::from),
            };
            inner.subscribers.retain(|subscriber| {
                if !kept.visible_to(subscriber.scope.as_deref()) {
                    return true;
                }
                match subscriber.sender.try_send(kept.framed.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        subscriber.dropped.store(true, Ordering::Release);
                        tracing::warn!(limit = self.buffer, "event subscriber too slow; dropped");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            if inner.ring.len() == self.ring_limit {
                inner.ring.pop_front();
            }
            inner.ring.push_back(kept);
        }
    }

    /// Subscribes, resuming after `after` when given; to `scope`'s events only, when given.
    pub fn subscribe(&self, after: Option<u64>, scope: Option<&str>) -> Subscription {
        let (sender, live) = mpsc::channel(self.buffer);
        let dropped = Arc::new(AtomicBool::new(false));
        let mut inner = self.lock();
        let oldest = inner.ring.front().map_or(inner.last + 1, |kept| kept.seq);
        let start = match after {
            None => Start::Replay(Vec::new()),
            // From the future (a hub that restarted numbers from 1) or past what the ring
            // holds: events were missed.
            Some(after) if after > inner.last || after + 1 < oldest => Start::Reset,
            Some(after) => Start::Replay(
                inner
                    .ring
                    .iter()
                    .filter(|kept| kept.seq > after && kept.visible_to(scope))
                    .map(|kept| kept.framed.clone())
                    .collect(),
            ),
        };
        inner.subscribers.push(Subscriber {
            sender,
            dropped: dropped.clone(),
            scope: scope.map(str::to_owned),
        });
        Subscription {
            last: inner.last,
            oldest,
            start,
            live,
            dropped,
            limit: self.buffer,
        }
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::events::{AgentChange, AgentEvent, TaskEvent};

    impl EventHub {
        fn subscribe_all(&self, after: Option<u64>) -> Subscription {
            self.subscribe(after, None)
        }
    }

    fn task_event(n: u64, tenant: &str) -> Event {
        Event::Task(TaskEvent {
            task_id: format!("t{n}"),
            status: "queued".into(),
            priority: 2,
            assigned_to: None,
            generation: 0,
            fairness_key: String::new(),
            tenant: tenant.into(),
            event: "created".into(),
            at: n,
        })
    }

    #[test]
    fn a_tenant_subscriber_gets_its_tenant_task_events_only() {
        let hub = EventHub::new(100, 10);
        let mut all = hub.subscribe(None, None);
        let mut a = hub.subscribe(None, Some("a"));
        hub.publish(vec![
            task_event(1, "a"),
            task_event(2, "b"),
            event(3),
            task_event(4, "a"),
        ]);
        let received = |sub: &mut Subscription| {
            std::iter::from_fn(|| sub.live.try_recv().ok())
                .map(|framed| framed.lines().next().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(received(&mut all), ["id: 1", "id: 2", "id: 3", "id: 4"]);
        assert_eq!(received(&mut a), ["id: 1", "id: 4"]);
        let Start::Replay(replay) = hub.subscribe(Some(1), Some("b")).start else {
            panic!("expected a replay")
        };
        assert_eq!(replay.len(), 1);
        assert!(replay[0].starts_with("id: 2\n"));
    }

    fn event(n: u64) -> Event {
        Event::Agent(AgentEvent {
            agent_id: format!("a{n}"),
            fsm_state: "idle".into(),
            current_task_id: None,
            capabilities: vec![],
            connected_at: None,
            last_seen: n,
            event: AgentChange::Connected,
        })
    }

    #[test]
    fn resumes_without_gap_and_resets_when_too_old() {
        let hub = EventHub::new(3, 10);
        hub.publish((1..=5).map(event).collect());
        let sub = hub.subscribe_all(Some(3));
        assert_eq!(sub.last, 5);
        assert_eq!(sub.oldest, 3);
        let Start::Replay(replay) = sub.start else {
            panic!("expected a replay")
        };
        assert_eq!(replay.len(), 2);
        assert!(replay[0].starts_with("id: 4\n"));
        assert!(matches!(hub.subscribe_all(Some(1)).start, Start::Reset));
        assert!(matches!(hub.subscribe_all(Some(9)).start, Start::Reset));
        assert!(matches!(hub.subscribe_all(Some(2)).start, Start::Replay(_)));
    }

    #[test]
    fn a_full_subscriber_is_dropped_without_blocking() {
        let hub = EventHub::new(100, 2);
        let mut slow = hub.subscribe_all(None);
        let mut fast = hub.subscribe_all(None);
        hub.publish((1..=2).map(event).collect());
        assert!(fast.live.try_recv().is_ok());
        assert!(fast.live.try_recv().is_ok());
        hub.publish(vec![event(3)]);
        assert!(slow.was_dropped());
        assert!(!fast.was_dropped());
        assert_eq!(hub.subscribers(), 1);
        assert!(slow.live.try_recv().is_ok());
        assert!(slow.live.try_recv().is_ok());
        assert!(slow.live.try_recv().is_err());
    }
}
