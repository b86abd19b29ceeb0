//! The network side: WebSocket for agents and the HTTP API, on warp.

pub mod http;
pub mod ws;

use crate::engine::Engine;
use crate::store::Store;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::http::StatusCode;
use warp::{Buf, Filter};

pub use ws::WsLimits;

/// Largest HTTP body accepted: a batch of tasks or an uploaded policy component.
const MAX_BODY_BYTES: usize = 32 << 20;

/// What request handlers share.
pub struct AppState {
    pub engine: Engine,
    pub store: Arc<Store>,
}

/// A request body that is read only when the handler asks, after authentication.
pub struct LazyBody(
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>, warp::Error>> + Send>>,
);

impl LazyBody {
    /// Reads the whole body, refusing one over the size limit.
    pub async fn read(mut self) -> Result<Vec<u8>, http::ApiError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.0.next().await {
            let chunk = chunk.map_err(|e| {
                http::ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("body could not be read: {e}"),
                )
            })?;
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY_BYTES {
                return Err(http::ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body is larger than {MAX_BODY_BYTES} bytes"),
                ));
            }
        }
        Ok(body)
    }
}

fn lazy_body<S, B>(stream: S) -> LazyBody
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    LazyBody(Box::pin(stream.map(|chunk| {
        chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining()).to_vec())
    })))
}

/// Serves until `shutdown` resolves; then asks every WebSocket to close and returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: WsLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (closing, closed) = watch::channel(false);
    let ws_state = state.clone();
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
        .map(move |on_upgrade, _checked: warp::ws::Ws, key: String| {
            let engine = ws_state.engine.clone();
            ws::accept(on_upgrade, &key, engine, limits, closed.clone())
        });
    let api = warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::body::stream().map(lazy_body))
        .then(
            move |method,
                  path: warp::path::FullPath,
                  authorization,
                  content_type,
                  query,
                  body: LazyBody| {
                let state = state.clone();
                async move {
                    match http::Route::resolve(&method, path.as_str()) {
                        Some(route) => {
                            let request = http::Request {
                                route,
                                authorization,
                                query,
                                content_type,
                                body,
                            };
                            http::handle(state, request).await
                        }
                        None => http::not_found(),
                    }
                }
            },
        );
    let routes = websocket
        .or(api)
        .recover(|_rejection: warp::Rejection| async {
            Ok::<_, std::convert::Infallible>(http::not_found())
        });
    warp::serve(routes)
        .incoming(listener)
        .graceful(async move {
            shutdown.await;
            let _ = closing.send(true);
        })
        .run()
        .await;
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
