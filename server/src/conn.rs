//! One connection: read request heads (pipelined requests are answered in
//! order), answer each, and send file bodies through the backend straight
//! from the file to this socket. Every way a client can misbehave ends in
//! a status and a closed connection, never a stuck task.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{StatusCode, Version, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Sleep, timeout_at};
use zcserve_core::tokio::send_all;
use zcserve_core::{Transfer, TransferError};

use crate::access_log::{Entry, Logger};
use crate::metrics::Metrics;
use crate::request_head::{self, MAX_HEAD, Parsed, Request};
use crate::response_head::{Body, Response, plain};
use crate::site::{Site, respond};

/// Largest request body read and thrown away to keep a connection usable;
/// a static server has no use for bodies, so bigger ones get 413.
pub const MAX_DISCARD: u64 = 1 << 20;

/// The server's state that every connection (and the metrics endpoint and
/// the cache sweep) reads: what is served, how, and where it is counted.
pub struct ServerState {
    /// What is served.
    pub site: Site,
    /// How file bytes reach sockets.
    pub backend: Arc<dyn Transfer>,
    /// Time to send one whole request head.
    pub header_timeout: Duration,
    /// Idle time allowed between keep-alive requests.
    pub keepalive_timeout: Duration,
    /// Longest a response may wait on a client that reads nothing.
    pub send_timeout: Duration,
    /// TCP_NOTSENT_LOWAT for each connection, if set.
    pub notsent_lowat: Option<u32>,
    /// The access log.
    pub log: Logger,
    /// Server counters.
    pub metrics: Arc<Metrics>,
}

enum Head {
    Request(Box<Request>),
    /// The peer closed, or stayed idle, or the server is stopping: close
    /// without a word.
    Gone,
    /// Answer with this status and close.
    Refuse(StatusCode, &'static str),
}

/// Serves `stream` until the client leaves, misbehaves, or `stopping`
/// turns true between requests.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    stopping: watch::Receiver<bool>,
) {
    crate::sockopt::tune(&stream, state.notsent_lowat);
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    // One timer for the connection's whole life, armed at the first
    // request's deadline. Arming and cancelling a timer around every read
    // costs a timer-wheel insert and remove per request; see `Clock`.
    let mut clock = Clock {
        sleep: pin!(tokio::time::sleep(state.header_timeout)),
        anchor: (
            tokio::time::Instant::now(),
            crate::clock::monotonic_coarse(),
        ),
    };
    // Likewise one registration with the stop signal per connection rather
    // than one per request.
    let mut stop = Stop {
        signal: pin!({
            let mut stopping = stopping.clone();
            async move {
                let _ = stopping.wait_for(|s| *s).await;
            }
        }),
        fired: false,
    };
    let mut first = true;
    loop {
        let head = read_head(&mut stream, &mut buf, first, &state, &mut clock, &mut stop).await;
        first = false;
        // Timing is for the access log only; clock reads cost on every request.
        let started = state.log.enabled().then(Instant::now);
        let elapsed = || started.map(|t| t.elapsed()).unwrap_or_default();
        let req = match head {
            Head::Gone => break,
            Head::Refuse(status, why) => {
                let resp = plain(status, why, false, false);
                let _ = send(&mut stream, resp, &state).await;
                state.metrics.response(status.as_u16());
                state.log.log(&Entry {
                    peer,
                    method: "-",
                    target: "-",
                    version: "-",
                    status: status.as_u16(),
                    bytes: 0,
                    referer: None,
                    user_agent: None,
                    duration: elapsed(),
                });
                break;
            }
            Head::Request(req) => req,
        };
        let mut resp = if req.body_len > MAX_DISCARD {
            plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request bodies are not accepted",
                false,
                false,
            )
        } else {
            if req.body_len > 0 && !discard_body(&mut stream, &mut buf, req.body_len, &state).await
            {
                break;
            }
            respond(&req, &state.site)
        };
        if *stopping.borrow() && !resp.close {
            // Finish this response, but tell the client not to send more.
            resp = reannounce_close(resp);
        }
        let status = resp.status.as_u16();
        let close = resp.close;
        let outcome = send(&mut stream, resp, &state).await;
        state.metrics.response(status);
        let bytes = match &outcome {
            Ok(n) | Err((n, _)) => *n,
        };
        state.metrics.body_bytes.fetch_add(bytes, Ordering::Relaxed);
        if state.log.enabled() {
            let text = |h: header::HeaderName| req.headers.get(h).and_then(|v| v.to_str().ok());
            state.log.log(&Entry {
                peer,
                method: req.method.as_str(),
                target: &req.target,
                version: if req.version == Version::HTTP_10 {
                    "HTTP/1.0"
                } else {
                    "HTTP/1.1"
                },
                status,
                bytes,
                referer: text(header::REFERER),
                user_agent: text(header::USER_AGENT),
                duration: elapsed(),
            });
        }
        if let Err((_, e)) = outcome {
            state.metrics.aborted.fetch_add(1, Ordering::Relaxed);
            if !e.is_peer_gone() {
                tracing::warn!(%peer, target = %req.target, "response cut short: {e}");
            }
            // The framing is broken mid-body: the only honest end is to
            // drop the connection.
            return;
        }
        if close {
            break;
        }
    }
    linger(stream).await;
}

/// The connection's one timer. A wait with a deadline later than the armed
/// one leaves the timer alone; when it fires early, the wait re-arms it for
/// its own deadline. So a busy keep-alive connection touches the timer wheel
/// about once per timeout period instead of twice per request.
struct Clock<'a> {
    sleep: Pin<&'a mut Sleep>,
    /// The same moment on tokio's clock and on the coarse one, so that the
    /// idle deadline of every keep-alive wait can be worked out from a
    /// coarse reading (within a kernel tick) rather than a precise one.
    anchor: (tokio::time::Instant, Duration),
}

impl Clock<'_> {
    /// Now, to within a kernel tick.
    fn roughly_now(&self) -> tokio::time::Instant {
        let (at, coarse) = self.anchor;
        at + crate::clock::monotonic_coarse().saturating_sub(coarse)
    }

    /// Runs `fut` until it completes (`Some`) or `due` passes (`None`).
    async fn limit<F: Future>(&mut self, due: tokio::time::Instant, fut: F) -> Option<F::Output> {
        if self.sleep.deadline() > due {
            self.sleep.as_mut().reset(due);
        }
        let mut fut = pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                () = self.sleep.as_mut() => {
                    if tokio::time::Instant::now() >= due {
                        return None;
                    }
                    self.sleep.as_mut().reset(due);
                }
            }
        }
    }
}

/// The server's stop signal, waited on for the connection's whole life.
struct Stop<'a, F> {
    signal: Pin<&'a mut F>,
    /// The signal completed (the server is stopping or its sender is gone);
    /// it must not be polled again.
    fired: bool,
}

/// Reads until `buf` holds a whole request head, enforcing the idle and
/// head timeouts and the size limits.
async fn read_head<F: Future<Output = ()>>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    first: bool,
    state: &ServerState,
    clock: &mut Clock<'_>,
    stop: &mut Stop<'_, F>,
) -> Head {
    // The first request's clock starts at accept; a keep-alive request's
    // clock starts at its first byte, after an idle wait of its own.
    let mut deadline =
        (first || !buf.is_empty()).then(|| tokio::time::Instant::now() + state.header_timeout);
    loop {
        if !buf.is_empty() {
            match request_head::parse(buf) {
                Ok(Parsed::Complete(req, used)) => {
                    buf.drain(..used);
                    return Head::Request(req);
                }
                Ok(Parsed::Partial) => {}
                Err(r) => return Head::Refuse(r.status, r.reason),
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve((buf.len() * 2).clamp(4096, MAX_HEAD + 1024) - buf.len());
        }
        let idle = buf.is_empty();
        // Between requests, a stopping server just closes; a request
        // already under way gets to finish.
        if idle && stop.fired {
            return Head::Gone;
        }
        let due = deadline.unwrap_or_else(|| clock.roughly_now() + state.keepalive_timeout);
        let read = async {
            tokio::select! {
                biased;
                r = stream.read_buf(buf) => Some(r),
                () = stop.signal.as_mut(), if idle => {
                    stop.fired = true;
                    None
                }
            }
        };
        let got = match clock.limit(due, read).await {
            Some(None) => return Head::Gone,
            Some(Some(r)) => Some(r),
            None => None,
        };
        match got {
            None if idle => return Head::Gone,
            None => {
                return Head::Refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    "request head not received in time",
                );
            }
            Some(Ok(0)) | Some(Err(_)) => return Head::Gone,
            Some(Ok(_)) => {
                if deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + state.header_timeout);
                }
            }
        }
    }
}

/// Reads and drops `len` body bytes (some may already be in `buf`).
/// False when the client did not deliver them in time.
async fn discard_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: u64,
    state: &ServerState,
) -> bool {
    let in_buf = (len.min(buf.len() as u64)) as usize;
    buf.drain(..in_buf);
    let mut left = len - in_buf as u64;
    let mut scratch = [0u8; 8192];
    while left > 0 {
        let want = (left as usize).min(scratch.len());
        match tokio::time::timeout(state.header_timeout, stream.read(&mut scratch[..want])).await {
            Ok(Ok(n)) if n > 0 => left -= n as u64,
            _ => return false,
        }
    }
    true
}

fn reannounce_close(mut resp: Response) -> Response {
    const KEEP: &[u8] = b"Connection: keep-alive\r\n\r\n";
    if resp.head.ends_with(KEEP) {
        let at = resp.head.len() - KEEP.len();
        resp.head.truncate(at);
        resp.head.extend_from_slice(b"Connection: close\r\n\r\n");
    }
    resp.close = true;
    resp
}

/// Sends `resp`; returns body bytes sent, or those and the error that cut
/// the response short.
async fn send(
    stream: &mut TcpStream,
    resp: Response,
    state: &ServerState,
) -> Result<u64, (u64, TransferError)> {
    let head_len = resp.head.len() as u64;
    let write = |stream, bytes| write_all(stream, bytes, state.send_timeout);
    match resp.body {
        Body::Empty => write(stream, resp.head)
            .await
            .map(|_| 0)
            .map_err(|e| (0, e)),
        Body::Bytes(body) => {
            let n = body.len() as u64;
            let mut all = resp.head;
            all.extend_from_slice(&body);
            // One copy of the body is held while a slow client reads it,
            // not two (a listing can be megabytes).
            drop(body);
            write(stream, all).await.map(|_| n).map_err(|e| (0, e))
        }
        Body::File { source, range } => {
            let mut session = state
                .backend
                .start(&source, range, resp.head)
                .map_err(|e| (0, e))?;
            let sent = send_all(stream, session.as_mut(), Some(state.send_timeout)).await;
            let left = session.remaining();
            if let Err(TransferError::FileShrank { .. }) = &sent {
                // A cached descriptor must not keep promising the old length.
                state.site.cache.forget(source.file());
            }
            sent.map(|n| n - head_len)
                .map_err(|e| ((range.len() + head_len - left).saturating_sub(head_len), e))
        }
        Body::Multipart {
            source,
            parts,
            tail,
        } => {
            let mut sent = 0u64;
            let mut prefix = Some(resp.head);
            for (part_head, range) in parts {
                let mut p = prefix.take().unwrap_or_default();
                let skip = p.len() as u64;
                p.extend_from_slice(&part_head);
                let mut session = state
                    .backend
                    .start(&source, range, p)
                    .map_err(|e| (sent, e))?;
                match send_all(stream, session.as_mut(), Some(state.send_timeout)).await {
                    Ok(n) => sent += n - skip,
                    Err(e) => {
                        if let TransferError::FileShrank { .. } = &e {
                            state.site.cache.forget(source.file());
                        }
                        return Err((sent, e));
                    }
                }
            }
            let n = tail.len() as u64;
            write(stream, tail).await.map_err(|e| (sent, e))?;
            Ok(sent + n)
        }
    }
}

/// Writes `bytes` from memory, giving up after `limit` without progress.
async fn write_all(
    stream: &mut TcpStream,
    bytes: Vec<u8>,
    limit: Duration,
) -> Result<(), TransferError> {
    let failed = |e: io::Error| TransferError::sys_io(zcserve_core::Syscall::Send, &e);
    // Heads of 304s and small error pages fit an empty socket buffer: one
    // send, no timer.
    let done = match stream.try_write(&bytes) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(failed(e)),
    };
    if done == bytes.len() {
        return Ok(());
    }
    match tokio::time::timeout(limit, stream.write_all(&bytes[done..])).await {
        Ok(r) => r.map_err(failed),
        Err(_) => Err(TransferError::TimedOut(limit)),
    }
}

/// Closes the way nginx's lingering close does: stop sending, then read
/// and drop what the client still sends for a moment, so that unread
/// request bytes do not make the kernel answer with a reset that could
/// destroy the response on its way to the client.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut scratch = [0u8; 4096];
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut budget = 1usize << 20;
    while budget > 0 {
        match timeout_at(until, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
            _ => break,
        }
    }
}
