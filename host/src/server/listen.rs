//! The accept loop, driven here rather than by `warp::serve`, for what warp cannot do: cap the
//! open connections, time out slow request headers (slowloris), tell the handlers who is
//! calling (the source address the auth throttle and the per-address caps key on), log a
//! client that hangs up mid-request at debug (anyone can do that, so it must not fill the log at
//! ERROR), and stop within a deadline whatever clients are doing.

use super::conns::{Connections, Open};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use warp::hyper::body::Incoming;
use warp::hyper::service::Service as _;

/// Connections over the cap being answered at once, at most.
const MAX_REFUSING: usize = 64;

/// Who a request came from, put in every request's extensions for the filters to read.
#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The socket's place in the connection count, which an upgraded WebSocket keeps.
    pub open: Arc<Open>,
}

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// A request whose headers have not all arrived this long after the connection started
    /// waiting for them is dropped (the socket closes); the same bounds an idle keep-alive.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for open connections before it stops anyway.
    pub shutdown_timeout: Duration,
}

/// The routes as one filter, boxed so the loop needs no warp generics.
pub type Routes = warp::filters::BoxedFilter<(warp::reply::Response,)>;

/// Accepts connections until `shutdown` resolves. Then it stops accepting (the port closes),
/// flips `closing` (WebSocket connections send their close frames), asks every HTTP connection
/// to finish the request in hand and close, and waits for the open sockets to drain, at most
/// [`ListenLimits::shutdown_timeout`]; whatever is still open then is abandoned.
pub async fn run(
    listener: TcpListener,
    routes: Routes,
    conns: Connections,
    limits: ListenLimits,
    closing: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let refusing = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors, typically: the connections open now must close first.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(open) = conns.open() else {
            tracing::debug!(%addr, "connection refused: too many open");
            // Each refusal holds its socket a moment; past a few at once, a flood is dropped
            // unanswered rather than allowed to use up the file descriptors.
            if refusing.fetch_add(1, Ordering::AcqRel) < MAX_REFUSING {
                let refusing = refusing.clone();
                let max_connections = conns.limits().max_connections;
                tokio::spawn(async move {
                    super::refusals::refused(super::refusals::Limit::Connections);
                    refuse(stream, max_connections).await;
                    refusing.fetch_sub(1, Ordering::AcqRel);
                });
            } else {
                refusing.fetch_sub(1, Ordering::AcqRel);
            }
            continue;
        };
        let peer = Peer { addr, open };
        tokio::spawn(serve_one(
            stream,
            peer,
            routes.clone(),
            limits,
            closing.subscribe(),
        ));
    }
    drop(listener);
    tracing::info!(
        open = conns.count(),
        "stopped accepting; closing connections"
    );
    let _ = closing.send(true);
    if !conns.drained(limits.shutdown_timeout).await {
        tracing::warn!(
            open = conns.count(),
            timeout_ms = limits.shutdown_timeout.as_millis() as u64,
            "connections still open at the shutdown deadline; stopping anyway"
        );
    }
}

/// Serves the HTTP requests of one connection (and hands an upgrade over to its WebSocket).
async fn serve_one(
    stream: TcpStream,
    peer: Peer,
    routes: Routes,
    limits: ListenLimits,
    mut closing: watch::Receiver<bool>,
) {
    let addr = peer.addr;
    let inner = hyper_util::service::TowerToHyperService::new(warp::service(routes));
    let service =
        warp::hyper::service::service_fn(move |mut request: warp::http::Request<Incoming>| {
            request.extensions_mut().insert(peer.clone());
            let answer = inner.call(request);
            async move { Ok::<_, Infallible>(answer.await.unwrap_or_else(|never| match never {})) }
        });
    let mut http = warp::hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = http
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = closed(&mut closing) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // A client that hangs up mid-request, sends garbage or is too slow with its headers: its
    // problem, not the hub's, and anyone can cause it at will.
    if let Err(error) = result {
        tracing::debug!(%addr, %error, "HTTP connection ended with an error");
    }
}

/// Resolves once `closing` turns true (or its sender is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

/// Answers a connection over the cap with 503 and closes it. The request is read (briefly, a
/// little) before closing so the answer is not lost to a reset.
async fn refuse(mut stream: TcpStream, max_connections: usize) {
    let body = format!(
        "{{\"error\":\"too_many_connections\",\"limit\":{max_connections},\
         \"detail\":\"the hub has {max_connections} connections open (--max-connections)\"}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut request = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut request)).await;
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Wait (briefly) for the client to close, so unread request bytes do not turn the
        // close into a reset that discards the answer.
        let mut rest = [0u8; 4096];
        while stream.read(&mut rest).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), exchange).await;
}
