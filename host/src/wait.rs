//! What the hub and the sidecar wait for in their `select!` loops, written once for both.

use tokio::time::Instant;

/// Resolves on SIGTERM or Ctrl-C: the process is asked to stop. Without a SIGTERM handler
/// (cannot be installed) it warns and waits for Ctrl-C only.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}

/// Sleeps until `deadline`; with no deadline, never resolves. For a `select!` branch whose
/// timer is not always armed.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
