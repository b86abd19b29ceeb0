//! `GET /api/events`: the event stream as Server-Sent Events (`wire::events`, fanned out by
//! `engine::events`). A task per subscriber copies its subscription into the response body; a
//! client that stops reading fills its buffer at the hub and is dropped there, never here.

use super::auth::Caller;
use super::reply::{ApiError, ApiResult};
use super::AppState;
use crate::engine::events::{Start, Subscription};
use crate::wire::events::{frame, Dropped, EventKind, Hello, Reset, KEEPALIVE, KEEPALIVE_SECS};
use crate::wire::now_ms;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use warp::http::HeaderValue;
use warp::Reply;

/// Chunks waiting for the socket per subscriber; the real buffer is the hub's.
const CHUNKS: usize = 16;

/// Answers `GET /api/events`, resuming after `?after=` or the `Last-Event-ID` header. An admin
/// gets every event; a client or agent only its tenant's task events (agents' changes name
/// tasks of every tenant, so they are not shown to it).
pub async fn stream(
    state: &AppState,
    caller: &Caller,
    query: &str,
    last_event_id: Option<&str>,
) -> ApiResult {
    let after = resume_point(query, last_event_id)?;
    let scope = caller.scope();
    let subscription = state.engine.events().subscribe(after, scope);
    let hello = Hello {
        seq: subscription.last,
        oldest: subscription.oldest,
        role: caller.role.as_str().to_owned(),
        tenant: scope.map(str::to_owned),
        at: now_ms(),
    };
    let (chunks, body) = mpsc::channel(CHUNKS);
    tokio::spawn(forward(subscription, hello, chunks));
    let mut response = warp::reply::stream(Body(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The resume point: `?after=` wins over `Last-Event-ID`; either must be a whole number.
fn resume_point(query: &str, last_event_id: Option<&str>) -> Result<Option<u64>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let given = pairs
        .iter()
        .find(|(key, _)| key == "after")
        .map(|(_, value)| ("after", value.as_str()))
        .or(last_event_id.map(|value| ("Last-Event-ID", value)));
    match given {
        None => Ok(None),
        Some((name, value)) => value.trim().parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an event id (a whole number), not {value:?}"
            ))
        }),
    }
}

/// Sends hello, the reset or the replay, then live events with keepalives, until the client
/// leaves or the hub drops it (then `dropped`).
async fn forward(mut subscription: Subscription, hello: Hello, chunks: mpsc::Sender<String>) {
    let mut first = json_frame(EventKind::Hello, &hello);
    match std::mem::replace(&mut subscription.start, Start::Replay(Vec::new())) {
        Start::Reset => first.push_str(&json_frame(
            EventKind::Reset,
            &Reset {
                reason: "resume_point_too_old".into(),
                oldest: subscription.oldest,
            },
        )),
        Start::Replay(events) => events.iter().for_each(|event| first.push_str(event)),
    }
    if chunks.send(first).await.is_err() {
        return;
    }
    let keepalive = Duration::from_secs(KEEPALIVE_SECS);
    loop {
        let chunk = tokio::select! {
            event = subscription.live.recv() => match event {
                Some(event) => event.to_string(),
                None => break,
            },
            () = tokio::time::sleep(keepalive) => KEEPALIVE.to_owned(),
            () = chunks.closed() => return,
        };
        if chunks.send(chunk).await.is_err() {
            return;
        }
    }
    if subscription.was_dropped() {
        let dropped = Dropped {
            reason: "subscriber_too_slow".into(),
            limit: subscription.limit,
        };
        let _ = chunks.send(json_frame(EventKind::Dropped, &dropped)).await;
    }
}

fn json_frame(kind: EventKind, payload: &impl serde::Serialize) -> String {
    let data = serde_json::to_string(payload).expect("event payloads serialize");
    frame(None, kind, &data)
}

/// The response body: the chunks `forward` sends, until it stops.
struct Body(mpsc::Receiver<String>);

impl futures_util::Stream for Body {
    type Item = Result<String, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_parse_or_are_refused() {
        assert_eq!(resume_point("", None).unwrap(), None);
        assert_eq!(resume_point("after=5", Some("9")).unwrap(), Some(5));
        assert_eq!(resume_point("", Some("9")).unwrap(), Some(9));
        assert!(resume_point("after=x", None).is_err());
        assert!(resume_point("", Some("-1")).is_err());
    }
}
