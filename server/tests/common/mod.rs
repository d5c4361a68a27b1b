//! A zcserve running in this process on a fresh port, over a temporary
//! root, for each backend; plus raw-socket and hyper clients.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use zcserve::config::{AccessLog, Settings};
use zcserve::metrics::Metrics;
use zcserve::server::Server;
use zcserve_backends::Backend;
pub use zcserve_tests::TempDir;

/// The backend names every per-backend test runs (see
/// [`zcserve_tests::backends_under_test`]: an unrunnable backend fails the
/// test unless skipping it was allowed when the suite was built).
pub fn backends() -> Vec<&'static str> {
    zcserve_tests::backends_under_test()
        .into_iter()
        .map(Backend::name)
        .collect()
}

/// A server on 127.0.0.1:<free port>, stopped and joined on drop.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub metrics: Arc<Metrics>,
    /// Where metrics are served, if asked for.
    pub metrics_addr: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Serves `root` with `backend`; `tweak` may change any setting.
    pub fn start(backend: &str, root: &Path, tweak: impl FnOnce(&mut Settings)) -> TestServer {
        let mut s = Settings {
            root: root.to_path_buf(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            backend: backend.to_string(),
            threads: 2,
            access_log: AccessLog::Off,
            ..Settings::default()
        };
        tweak(&mut s);
        let server = Server::bind(&s).unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = server.local_addrs()[0];
        let metrics = server.metrics();
        let metrics_addr = server.metrics_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let threads = s.threads;
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(server.run(async {
                let _ = rx.await;
            }));
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        TestServer {
            addr,
            metrics,
            metrics_addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A connected socket with 10 s read/write timeouts.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends `request` bytes on a new connection and returns everything
    /// received until the server closes (or 10 s pass).
    pub fn raw(&self, request: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        read_to_close(&mut s)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads until EOF, an error, or the socket's read timeout.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read_r(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One parsed response off a byte stream.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header fields, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (Content-Length bytes; none for HEAD/304/204).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The first response in `bytes`, if it is all there, and its length.
pub fn try_parse(bytes: &[u8], head_only: bool) -> Option<(RawResponse, usize)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut slots);
    let n = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(e) => panic!(
            "unparsable response ({e}): {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ),
    };
    let status = r.code.unwrap();
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let len = if head_only || status == 304 || status == 204 {
        0
    } else {
        len
    };
    if bytes.len() < n + len {
        return None;
    }
    Some((
        RawResponse {
            status,
            headers,
            body: bytes[n..n + len].to_vec(),
        },
        n + len,
    ))
}

/// Splits `bytes` into consecutive responses. `head_only[i]` says the i-th
/// response answers a HEAD (no body despite Content-Length).
pub fn parse_responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let head = head_only.get(out.len()).copied().unwrap_or(false);
        let Some((r, n)) = try_parse(bytes, head) else {
            panic!(
                "truncated response: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        };
        out.push(r);
        bytes = &bytes[n..];
    }
    out
}

/// A GET through hyper's HTTP/1 client: status, headers, body.
pub async fn hyper_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
    hyper_request(addr, http::Method::GET, path, headers).await
}

/// A hyper HTTP/1 client connection to `addr`, its driver spawned.
pub async fn hyper_connect(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Any method through hyper's HTTP/1 client.
pub async fn hyper_request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    let mut send = hyper_connect(addr).await;
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(
            req.body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

/// `read` that retries `EINTR`, as every client must. The in-process server
/// makes it happen here: a thread that built a `uring` backend is a user of
/// its rings, and the kernel interrupts that thread's blocking calls with a
/// task-work notification when such a ring closes; a read with a timeout
/// then fails with `EINTR` instead of restarting.
pub trait ReadRetry {
    /// Reads like [`Read::read`], again after `Interrupted`.
    fn read_r(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl<T: Read> ReadRetry for T {
    fn read_r(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}
