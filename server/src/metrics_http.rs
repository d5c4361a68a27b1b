//! The `--metrics` listener: answers `GET /metrics` with the Prometheus
//! text of the server's and the backend's counters, one request per
//! connection, and 404 for anything else.
//!
//! At most [`MAX_CONNECTIONS`] connections are served at once; one more is
//! closed as soon as it is accepted (and counted), so a client that opens
//! connections to it and sends nothing cannot grow tasks without bound or
//! eat the descriptors the main listener shares with it. A scraper needs
//! one.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::conn::ServerState;
use crate::request_head::{self, MAX_HEAD, Parsed, split_target};
use crate::response_head::{Head, plain};

/// Metrics connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

/// Serves metrics on `listener` until `stopping` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut stopping: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.wait_for(|s| *s) => return,
        };
        let Ok((mut stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state
                .metrics
                .metrics_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut buf = Vec::with_capacity(1024);
            let work = async {
                loop {
                    if stream.read_buf(&mut buf).await? == 0 || buf.len() > MAX_HEAD {
                        return Ok::<_, std::io::Error>(None);
                    }
                    match request_head::parse(&buf) {
                        Ok(Parsed::Complete(req, _)) => return Ok(Some(req)),
                        Ok(Parsed::Partial) => continue,
                        Err(_) => return Ok(None),
                    }
                }
            };
            let req = match tokio::time::timeout(Duration::from_secs(10), work).await {
                Ok(Ok(r)) => r,
                _ => return,
            };
            let resp = match req.as_deref().and_then(|r| split_target(&r.target)) {
                Some(("/metrics", _)) => {
                    let mut text = state.metrics.render(
                        &crate::metrics::backend_counters(state.backend.as_ref()),
                        state.log.dropped(),
                    );
                    state.disk.stats().render(state.disk.threads(), &mut text);
                    if let Some(pool) = state.backend.disk_pool() {
                        crate::metrics::render_read_in(&pool.stats().snapshot(), &mut text);
                    }
                    let body = text.into_bytes();
                    let mut head = Head::new(StatusCode::OK);
                    head.header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                        .header("Content-Length", body.len());
                    let mut all = head.finish(false);
                    all.extend_from_slice(&body);
                    all
                }
                _ => {
                    let r = plain(
                        StatusCode::NOT_FOUND,
                        "metrics are at /metrics",
                        false,
                        false,
                    );
                    let mut all = r.head;
                    if let crate::response_head::Body::Bytes(b) = r.body {
                        all.extend_from_slice(&b);
                    }
                    all
                }
            };
            let _ = stream.write_all(&resp).await;
            let _ = stream.shutdown().await;
        });
    }
}
