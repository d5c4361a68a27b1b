//! One connection: read request heads (pipelined requests are answered in
//! order), read and drop any request body, answer each, and send file
//! bodies through the backend straight from the file to this socket.
//! Every way a client can misbehave ends in a status and a closed
//! connection, never a stuck task.
//!
//! The deadlines: a request's head *and body* must arrive within
//! `header_timeout` of its first byte (of the accept, for the first
//! request), one deadline for both, so a body dripped a byte at a time
//! cannot hold a connection slot for longer than a slow head could (408
//! when it passes). Between requests the idle limit is
//! `keepalive_timeout`. A response may stall (the client reading nothing)
//! for at most `send_timeout` at a time, for every kind of body.

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
use crate::disk_work::{DiskWork, Work};
use crate::metrics::Metrics;
use crate::request_body::{BodyReader, Chunked, Fed};
use crate::request_head::{self, MAX_HEAD, Parsed, Request};
use crate::response_head::{Body, Response, plain};
use crate::site::{self, Site, respond};

/// Largest request body read and thrown away to keep a connection usable
/// (counted on the wire for a chunked body); a static server has no use
/// for bodies, so bigger ones get 413.
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
    /// Longest a response may wait on a client that reads nothing (a
    /// stall, not the whole response).
    pub send_timeout: Duration,
    /// TCP_NOTSENT_LOWAT for each connection, if set.
    pub notsent_lowat: Option<u32>,
    /// The access log.
    pub log: Logger,
    /// Server counters.
    pub metrics: Arc<Metrics>,
    /// What keep-alive deadlines are read from between timer wake-ups.
    pub clock: crate::clock::Clock,
    /// Where opens that miss the file cache run.
    pub disk: DiskWork,
}

enum Head {
    /// A request, and the deadline its body (if any) must also meet.
    Request(Box<Request>, tokio::time::Instant),
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
        anchor: (tokio::time::Instant::now(), state.clock.now()),
        coarse: &state.clock,
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
        let (req, deadline) = match head {
            Head::Gone => break,
            Head::Refuse(status, why) => {
                let resp = plain(status, why, false, false);
                send(&mut stream, resp, &state).await;
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
            Head::Request(req, deadline) => (req, deadline),
        };
        let (mut resp, req) = if req.body_len > MAX_DISCARD {
            // Known from the head: answered at once, body unread.
            let resp = plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request bodies are not accepted",
                false,
                false,
            );
            (resp, req)
        } else if req.expect_continue && has_body(&req) {
            // RFC 9110 §10.1.1: the final status at once when the head
            // decides it, else 100 Continue before reading the body.
            let Some((resp, req)) = produce(req, &state).await else {
                // The runtime is shutting down under this connection.
                return;
            };
            if resp.status.is_client_error() || resp.status.is_server_error() {
                // The client may never send the body: closing is the only
                // way to be sure what the next bytes are.
                (reannounce_close(resp), req)
            } else {
                if buf.is_empty() {
                    let sent = write_all(&mut stream, CONTINUE.to_vec(), state.send_timeout).await;
                    if sent.is_err() {
                        break;
                    }
                }
                match read_body(&mut stream, &mut buf, &req, &mut clock, deadline).await {
                    BodyEnd::Read => (resp, req),
                    BodyEnd::Refuse(status, why) => (plain(status, why, false, false), req),
                    BodyEnd::Gone => break,
                }
            }
        } else {
            match read_body(&mut stream, &mut buf, &req, &mut clock, deadline).await {
                BodyEnd::Read => match produce(req, &state).await {
                    Some(done) => done,
                    // The runtime is shutting down under this connection.
                    None => return,
                },
                BodyEnd::Refuse(status, why) => (plain(status, why, false, false), req),
                BodyEnd::Gone => break,
            }
        };
        if *stopping.borrow() && !resp.close {
            // Finish this response, but tell the client not to send more.
            resp = reannounce_close(resp);
        }
        let close = resp.close;
        let planned = resp.status.as_u16();
        let via = sent_by(&resp.body, state.backend.as_ref());
        let outcome = send(&mut stream, resp, &state).await;
        let (status, bytes) = match &outcome {
            Sent::Done(n) | Sent::Cut(n, _) => (planned, *n),
            Sent::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE.as_u16(), 0),
        };
        state.metrics.response(status);
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
        match outcome {
            Sent::Done(_) => {}
            Sent::Cut(_, e) => {
                state.metrics.aborted.fetch_add(1, Ordering::Relaxed);
                if !e.is_peer_gone() {
                    tracing::warn!(%peer, target = %req.target, backend = via, "response cut short: {e}");
                }
                // The framing is broken mid-body: the only honest end is to
                // drop the connection.
                return;
            }
            Sent::Unavailable(e) => {
                state
                    .metrics
                    .backend_unavailable
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(%peer, target = %req.target, backend = via, "answered 503: the backend could not start: {e}");
                if matches!(
                    e.errno(),
                    Some(nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE)
                ) {
                    // Descriptors the cache holds are the ones to give back.
                    state.site.cache.clear();
                }
                break;
            }
        }
        if close {
            break;
        }
    }
    linger(stream).await;
}

/// The response to `req` (handed back with it). What memory can answer
/// (a file in the open-file cache, a refused request) is answered here on
/// the worker, as is everything when the disk pool is off; opening a path
/// (a miss: `openat2` and `statx`, `index.html`, a listing) runs on the
/// disk pool, so that the other connections on this worker are served
/// meanwhile. `None` if the runtime dropped the work (it is shutting down).
async fn produce(req: Box<Request>, state: &Arc<ServerState>) -> Option<(Response, Box<Request>)> {
    if !state.disk.is_on() {
        return Some((respond(&req, &state.site), req));
    }
    let miss = match site::from_memory(&req, &state.site) {
        Ok(resp) => return Some((resp, req)),
        Err(miss) => miss,
    };
    let work = if miss.is_directory() {
        Work::Directory
    } else {
        Work::Open
    };
    let shared = Arc::clone(state);
    let job = move || {
        shared.disk.enter(&req.target);
        let resp = site::from_disk(&req, miss, &shared.site);
        (resp, req)
    };
    state.disk.run(work, job).await
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
    coarse: &'a crate::clock::Clock,
}

impl Clock<'_> {
    /// Now, to within a kernel tick.
    fn roughly_now(&self) -> tokio::time::Instant {
        let (at, coarse) = self.anchor;
        at + self.coarse.now().saturating_sub(coarse)
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
                    let deadline = deadline
                        .unwrap_or_else(|| tokio::time::Instant::now() + state.header_timeout);
                    return Head::Request(req, deadline);
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
        // already under way gets to finish, and so does one whose bytes
        // wait in the socket already (tokio's readiness may not know of
        // them yet: ask the socket), which the client sent trusting the
        // connection and would otherwise see reset. A connection that has
        // not had its first request yet is not idle but new: its client
        // connected in order to send one, and may be about to (a stop
        // drains the accept queue, so it may even have been accepted
        // after the stop). Closing it would reset that request; like
        // nginx, which closes only keep-alive connections at a graceful
        // stop, it gets its header timeout, counted from the accept, and
        // `--shutdown-grace` bounds the stop as a whole.
        if idle && stop.fired && !first && !crate::sockopt::has_unread(stream) {
            return Head::Gone;
        }
        let due = deadline.unwrap_or_else(|| clock.roughly_now() + state.keepalive_timeout);
        let read = async {
            tokio::select! {
                biased;
                r = stream.read_buf(buf) => Some(r),
                () = stop.signal.as_mut(), if idle && !stop.fired => {
                    stop.fired = true;
                    None
                }
            }
        };
        let got = match clock.limit(due, read).await {
            // Decided at the top of the loop.
            Some(None) => continue,
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

/// The interim response to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Whether a body follows `req`'s head.
fn has_body(req: &Request) -> bool {
    req.body_len > 0 || req.chunked_body
}

/// How reading a request body ended.
enum BodyEnd {
    /// Read to its end (and dropped); what follows it is in `buf`.
    Read,
    /// Answer with this status and close.
    Refuse(StatusCode, &'static str),
    /// The peer closed or failed.
    Gone,
}

/// Reads `req`'s body (Content-Length or chunked; some of it may already be
/// in `buf`) and drops it, leaving in `buf` whatever follows it, by
/// `deadline`: the one its head had.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    req: &Request,
    clock: &mut Clock<'_>,
    deadline: tokio::time::Instant,
) -> BodyEnd {
    if !has_body(req) {
        return BodyEnd::Read;
    }
    let mut body = if req.chunked_body {
        BodyReader::Chunked(Chunked::new(MAX_DISCARD))
    } else {
        BodyReader::Length(req.body_len)
    };
    loop {
        if !buf.is_empty() {
            match body.feed(buf) {
                Ok(Fed::Done(n)) => {
                    buf.drain(..n);
                    return BodyEnd::Read;
                }
                Ok(Fed::More) => buf.clear(),
                Err(e) => return BodyEnd::Refuse(e.status(), e.reason()),
            }
        }
        if buf.capacity() < 8192 {
            buf.reserve(8192);
        }
        match clock.limit(deadline, stream.read_buf(buf)).await {
            None => {
                return BodyEnd::Refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time",
                );
            }
            Some(Ok(0) | Err(_)) => return BodyEnd::Gone,
            Some(Ok(_)) => {}
        }
    }
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

/// What became of a response.
enum Sent {
    /// All of it went out; this many body bytes.
    Done(u64),
    /// Cut short after this many body bytes.
    Cut(u64, TransferError),
    /// The backend failed before a byte of the head left (out of
    /// descriptors or memory for a pipe or ring, say): a 503 went out
    /// instead, or was tried, and the connection closes.
    Unavailable(TransferError),
}

/// Sends `resp`.
async fn send(stream: &mut TcpStream, resp: Response, state: &ServerState) -> Sent {
    let head_len = resp.head.len() as u64;
    let write = |stream, bytes| write_all(stream, bytes, state.send_timeout);
    match resp.body {
        Body::Empty => match write(stream, resp.head).await {
            Ok(()) => Sent::Done(0),
            Err(e) => Sent::Cut(0, e),
        },
        Body::Bytes(body) => {
            let n = body.len() as u64;
            let mut all = resp.head;
            all.extend_from_slice(&body);
            // One copy of the body is held while a slow client reads it,
            // not two (a listing can be megabytes).
            drop(body);
            match write(stream, all).await {
                Ok(()) => Sent::Done(n),
                Err(e) => Sent::Cut(0, e),
            }
        }
        Body::File { source, range } => {
            let mut session = match state.backend.start(&source, range, resp.head) {
                Ok(s) => s,
                Err(e) => return unavailable(stream, e, state).await,
            };
            let sent = send_all(stream, session.as_mut(), Some(state.send_timeout)).await;
            let left = session.remaining();
            if let Err(TransferError::FileShrank { .. }) = &sent {
                // A cached descriptor must not keep promising the old
                // length.
                state.site.cache.forget(source.file());
            }
            match sent {
                Ok(n) => Sent::Done(n - head_len),
                Err(e) if left == head_len + range.len() && server_side(&e) => {
                    unavailable(stream, e, state).await
                }
                Err(e) => Sent::Cut((range.len() + head_len - left).saturating_sub(head_len), e),
            }
        }
        Body::Multipart {
            source,
            parts,
            tail,
        } => {
            let mut sent = 0u64;
            let mut prefix = Some(resp.head);
            for (part_head, range) in parts {
                let first = prefix.is_some();
                let mut p = prefix.take().unwrap_or_default();
                let skip = p.len() as u64;
                p.extend_from_slice(&part_head);
                let total = p.len() as u64 + range.len();
                let mut session = match state.backend.start(&source, range, p) {
                    Ok(s) => s,
                    Err(e) if first => return unavailable(stream, e, state).await,
                    Err(e) => return Sent::Cut(sent, e),
                };
                let part = send_all(stream, session.as_mut(), Some(state.send_timeout)).await;
                if let Err(TransferError::FileShrank { .. }) = &part {
                    state.site.cache.forget(source.file());
                }
                match part {
                    Ok(n) => sent += n - skip,
                    Err(e) if first && session.remaining() == total && server_side(&e) => {
                        return unavailable(stream, e, state).await;
                    }
                    Err(e) => return Sent::Cut(sent, e),
                }
            }
            let n = tail.len() as u64;
            if let Err(e) = write(stream, tail).await {
                return Sent::Cut(sent, e);
            }
            Sent::Done(sent + n)
        }
    }
}

/// The backend that sends `body`'s file bytes, for the logs: under `auto`
/// the one it picks for the range's length ("auto" for a multipart body
/// whose parts went to different ones); "none" for a body from memory.
fn sent_by(body: &Body, transfer: &dyn Transfer) -> &'static str {
    match body {
        Body::Empty | Body::Bytes(_) => "none",
        Body::File { range, .. } => transfer.name_for(range.len()),
        Body::Multipart { parts, .. } => {
            let mut names = parts.iter().map(|(_, r)| transfer.name_for(r.len()));
            let first = names.next().unwrap_or("none");
            if names.all(|n| n == first) {
                first
            } else {
                transfer.name()
            }
        }
    }
}

/// An error of the server's own making (not the client's going away or
/// reading nothing), which a 503 may stand in for while no byte has left.
fn server_side(e: &TransferError) -> bool {
    !e.is_peer_gone() && !matches!(e, TransferError::TimedOut(_))
}

/// Answers 503 in place of a response whose body the backend could not
/// start.
async fn unavailable(stream: &mut TcpStream, e: TransferError, state: &ServerState) -> Sent {
    let resp = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is short of resources; try again",
        false,
        false,
    );
    let mut all = resp.head;
    if let Body::Bytes(body) = resp.body {
        all.extend_from_slice(&body);
    }
    let _ = write_all(stream, all, state.send_timeout).await;
    Sent::Unavailable(e)
}

/// Writes `bytes` from memory, giving up when the socket takes nothing for
/// `stall`: like a file body, an in-memory one (a listing, an error page)
/// goes to a client that reads slowly but steadily however long it takes,
/// and only a client that stops reading is dropped.
async fn write_all(
    stream: &mut TcpStream,
    bytes: Vec<u8>,
    stall: Duration,
) -> Result<(), TransferError> {
    let failed = |e: io::Error| TransferError::sys_io(zcserve_core::Syscall::Send, &e);
    let mut done = 0;
    while done < bytes.len() {
        // Heads of 304s and small error pages fit an empty socket buffer:
        // one send, no timer.
        match stream.try_write(&bytes[done..]) {
            Ok(0) => return Err(failed(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                done += n;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(failed(e)),
        }
        match tokio::time::timeout(stall, stream.writable()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(failed(e)),
            Err(_) => return Err(TransferError::TimedOut(stall)),
        }
    }
    Ok(())
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
