//! The listener: accepts connections and serves the router on each over HTTP/1.1 (TLS and
//! HTTP/2 belong to the reverse proxy in front), within `[limits]`:
//! - at most `max_connections` open; further connections wait in the kernel's listen backlog
//!   (they cost the broker nothing there), and a warning says the limit was reached;
//! - `header_read_timeout` to send a request's line and headers, counted from the connection's
//!   start and again after each response (so idle kept-alive connections close too): a client
//!   that sends slowly, or nothing, cannot hold a connection;
//! - `max_header_bytes` of request line and headers (more: 431), and a read buffer of twice
//!   that: a connection sending a huge header is closed before it holds more;
//! - `request_timeout` from the headers to the response of a request with a body: a body
//!   trickled in slowly gets 408 and the connection closes.
//!
//! Each request carries the peer address (`ConnectInfo<SocketAddr>`) for the per-source limits.

use crate::config::Limits;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How long connections in flight may finish after `shutdown` resolves.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The "connection limit reached" warning is repeated at most this often.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Serve `app` on `listener` until `shutdown` resolves, within `limits`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout))
        .max_header_size(limits.max_header_bytes)
        .max_buf_size((2 * limits.max_header_bytes).max(8192));
    tokio::pin!(shutdown);
    let mut warned: Option<Instant> = None;
    loop {
        // A connection slot first: at the limit, new connections stay in the backlog.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if warned.is_none_or(|w| w.elapsed() >= FULL_WARNING_EVERY) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait until one closes (limits.max_connections)"
                    );
                    warned = Some(Instant::now());
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let request_timeout = Duration::from_secs(limits.request_timeout);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            // Only a request with a body can be held open by its client after its headers; one
            // without is answered at the pace of the broker alone (and spares a timer).
            let has_body = req.headers().contains_key(hyper::header::TRANSFER_ENCODING)
                || req
                    .headers()
                    .get(hyper::header::CONTENT_LENGTH)
                    .is_some_and(|v| v.as_bytes() != b"0");
            let handled = app.clone().oneshot(req);
            async move {
                if !has_body {
                    return handled.await;
                }
                match tokio::time::timeout(request_timeout, handled).await {
                    Ok(response) => response,
                    Err(_) => {
                        tracing::info!(%peer, "request timed out (limits.request_timeout): 408");
                        Ok(super::error::request_timeout())
                    }
                }
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Timeouts, oversized headers, clients that went away: routine, not errors.
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("connections still open after the shutdown grace period; closing");
        }
    }
}
