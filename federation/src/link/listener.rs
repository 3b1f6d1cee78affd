//! The link listener: accept, then run each handshake under a deadline and within a
//! bound on concurrent handshakes (`link.max_pending_handshakes`; more are closed at
//! once). A stranger, a wrong key, garbage or a replayed handshake gets nothing and
//! holds nothing past the deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::transport::Links;

/// Accept link connections until the process ends.
pub async fn run(listener: TcpListener, links: Arc<Links>) {
    let timeout = Duration::from_millis(links.handshake_timeout_ms());
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "link accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(links.handshakes()).try_acquire_owned() else {
            tracing::debug!(%addr, "too many link handshakes at once; closed");
            continue;
        };
        let links = Arc::clone(&links);
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, links.answer(stream)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::info!(%addr, error = %e, "refused a link connection"),
                Err(_) => tracing::info!(%addr, "a link handshake timed out"),
            }
        });
    }
}
