//! What happens to request bodies before and after a handler.
//!
//! The size limit lives where a body is read: [`axum::extract::DefaultBodyLimit`]
//! bounds every extractor that reads one (`M_TOO_LARGE` after authentication, since
//! handlers authenticate before they read), and federation's `send` reads with the
//! same bound. An endpoint that reads no body never looks at it.
//!
//! What a handler left unread is drained here after it answered, up to
//! [`DRAIN_MAX_BYTES`] or [`DRAIN_MAX_MS`], and only then is the answer sent. hyper by
//! itself discards only what has already arrived and then closes the connection; a
//! client still writing its body would get a reset (and lose the answer) instead of
//! reading a 413. Bytes drained are discarded as they come, never buffered. A client
//! that asked `Expect: 100-continue` and whose body nobody read is not asked for it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;

/// At most this much of a body a handler left unread is read and discarded.
pub const DRAIN_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// And for at most this long.
pub const DRAIN_MAX_MS: u64 = 10_000;

/// The request body, shared between the handler and this middleware, so what the
/// handler drops is still here to drain.
#[derive(Debug, Default)]
struct Shared {
    body: Option<Body>,
    polled: bool,
}

#[derive(Debug, Clone)]
struct SharedBody(Arc<Mutex<Shared>>);

impl SharedBody {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut shared = self.lock();
        shared.polled = true;
        match shared.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.lock().body.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().body.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

/// Middleware: run the handler, then drain what it left of the body (bounded), then answer.
pub async fn drain_unread_body(request: Request, next: Next) -> Response {
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let (parts, body) = request.into_parts();
    let shared = SharedBody(Arc::new(Mutex::new(Shared { body: Some(body), polled: false })));
    let response = next.run(Request::from_parts(parts, Body::new(shared.clone()))).await;
    let (rest, polled) = {
        let mut s = shared.lock();
        (s.body.take(), s.polled)
    };
    let Some(rest) = rest else { return response };
    if http_body::Body::is_end_stream(&rest) || (expects_continue && !polled) {
        return response;
    }
    let drained = tokio::time::timeout(Duration::from_millis(DRAIN_MAX_MS), drain(rest)).await;
    match drained {
        Ok(Ok(n)) => tracing::debug!(bytes = n, "discarded an unread request body"),
        Ok(Err(n)) => tracing::debug!(bytes = n, "stopped discarding an unread request body; closing"),
        Err(_) => tracing::debug!("an unread request body took too long to arrive; closing"),
    }
    response
}

/// Read and discard `body` to its end (Ok) or until the bound or an error (Err), with
/// the bytes read.
async fn drain(mut body: Body) -> Result<u64, u64> {
    let mut read = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(read) };
        if let Some(data) = frame.data_ref() {
            read = read.saturating_add(data.len() as u64);
            if read > DRAIN_MAX_BYTES {
                return Err(read);
            }
        }
    }
    Ok(read)
}
