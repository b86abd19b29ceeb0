//! The network side: WebSocket for agents and the HTTP API, on warp.
//!
//! `serve` holds the warp filters; the WebSocket connection is `ws`'s, and the API is `http`'s
//! (routing and dispatch) with its handlers grouped by concept in the modules below it.

mod agents;
mod audit;
mod auth;
mod body;
pub mod conns;
mod dashboard;
mod events;
mod http;
pub mod limits;
pub mod listen;
mod metrics;
mod policy;
mod public;
mod refusals;
mod reply;
mod routes;
mod tasks;
mod tenants;
pub mod throttle;
pub mod ws;

use crate::engine::Engine;
use crate::store::{self, Store};
use body::LazyBody;
use conns::Connections;
use listen::{ListenLimits, Peer};
use reply::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;
use throttle::AuthThrottle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::{Filter, Reply};

pub use limits::HttpLimits;
pub use ws::WsLimits;

/// What request handlers share.
pub struct AppState {
    pub engine: Engine,
    pub store: Arc<Store>,
    pub limits: HttpLimits,
    pub throttle: Arc<AuthThrottle>,
}

/// Everything `serve` needs to know of its limits besides the handlers' [`HttpLimits`].
pub struct ServeLimits {
    pub ws: WsLimits,
    pub conns: conns::ConnLimits,
    pub listen: ListenLimits,
}

impl AppState {
    /// Runs `read` in a read transaction of the store. A failed read is logged and refused with
    /// 503 `storage_unavailable`: the request may succeed later.
    fn read<T>(
        &self,
        read: impl FnOnce(&Store, &heed::RoTxn) -> store::Result<T>,
    ) -> Result<T, ApiError> {
        read_store(&self.store, read)
    }
}

/// [`AppState::read`] for a handler that reads off the async threads (with a store it owns).
fn read_store<T>(
    store: &Store,
    read: impl FnOnce(&Store, &heed::RoTxn) -> store::Result<T>,
) -> Result<T, ApiError> {
    store
        .read_txn()
        .and_then(|txn| read(store, &txn))
        .map_err(|error| {
            tracing::error!(%error, "read failed");
            ApiError::storage_unavailable()
        })
}

/// Serves until `shutdown` resolves; then stops accepting, closes every connection (each
/// WebSocket with 1001) and returns once they are all closed or the shutdown deadline passed
/// (see [`listen::run`]).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: ServeLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (closing, closed) = watch::channel(false);
    let conns = Connections::new(limits.conns);
    let ws_context = ws::WsContext {
        engine: state.engine.clone(),
        limits: limits.ws,
        closing: closed,
        conns: conns.clone(),
        throttle: state.throttle.clone(),
    };
    // `warp::ws()` checks the upgrade headers (a plain GET falls through to the API's answer);
    // the upgrade itself is `ws::accept`'s, which configures the socket as warp cannot. The
    // upgrade handle is taken before `warp::ws()` takes it for itself.
    let websocket = warp::path("ws")
        .and(warp::path::end())
        .and(warp::filters::ext::optional::<
            warp::hyper::upgrade::OnUpgrade,
        >())
        .and(warp::ws())
        .and(warp::header::<String>("sec-websocket-key"))
        .and(warp::filters::ext::optional::<Peer>())
        .map(
            move |on_upgrade, _checked: warp::ws::Ws, key: String, peer: Option<Peer>| {
                ws::accept(on_upgrade, &key, peer, ws_context.clone())
            },
        );
    let api = warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("last-event-id"))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::filters::ext::optional::<Peer>())
        .and(warp::body::stream().map(LazyBody::new))
        .then(
            move |method,
                  path: warp::path::FullPath,
                  authorization,
                  content_type,
                  last_event_id,
                  query,
                  peer: Option<Peer>,
                  body| {
                let state = state.clone();
                let request = http::Request {
                    method,
                    path: path.as_str().to_owned(),
                    authorization,
                    query,
                    content_type,
                    last_event_id,
                    peer: peer.map(|peer| peer.addr),
                    body,
                };
                async move { http::handle(&state, request).await }
            },
        );
    let routes = websocket
        .or(api)
        .recover(|_rejection: warp::Rejection| async {
            Ok::<_, std::convert::Infallible>(ApiError::not_found().into_response())
        })
        .map(Reply::into_response)
        .boxed();
    listen::run(listener, routes, conns, limits.listen, closing, shutdown).await;
}

/// Binds the listening socket, with an error that names the address.
///
/// The socket has `TCP_NODELAY`, which the connections it accepts inherit (warp offers no hook
/// on accepted connections). The hub writes small frames back to back: after a commit, an
/// agent typically gets `task_ack` and then its next `task_assign`. With Nagle's algorithm the
/// second frame waits until the first is acknowledged, and an agent that has nothing to say
/// after an ack delays that acknowledgement (40 ms on Linux), so every task handed out this way
/// would wait 40 ms for nothing.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As std's `TcpListener::bind` does: a restarted hub can take its port back at once.
        socket.set_reuseaddr(true)?;
        socket.set_nodelay(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    };
    listen().map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
