//! No connection waits for another's disk work (issue 11): on a server
//! with one worker thread, while the open of one path is held inside the
//! disk pool (by a gate the test controls, standing in for a slow disk),
//! a request for a file in the open-file cache is answered in full; then
//! the held request completes byte-exact. For a file, a directory listing
//! and a directory's index.html, on every backend; and with the pool off
//! the server works as before and offloads nothing.

mod common;
use common::*;

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zcserve::config::{AccessLog, Settings};
use zcserve::server::Server;

/// Longer than anything here takes by far: only catches a hang.
const HANG: Duration = Duration::from_secs(10);

/// Paths whose disk work is held: on entering the pool the job reports on
/// the first channel, then waits for the second.
type Holds = Arc<Mutex<HashMap<String, (Sender<()>, Receiver<()>)>>>;

/// A zcserve like `zcserve --threads 1`: one current-thread runtime.
struct OneThread {
    addr: SocketAddr,
    metrics: SocketAddr,
    holds: Holds,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OneThread {
    fn start(backend: &str, root: &Path, disk_threads: usize) -> OneThread {
        let s = Settings {
            root: root.to_path_buf(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            backend: backend.to_string(),
            threads: 1,
            disk_threads,
            access_log: AccessLog::Off,
            // Nothing expires during the test: a hit stays a hit.
            file_cache_valid: Duration::from_secs(600),
            ..Settings::default()
        };
        let mut server = Server::bind(&s).unwrap_or_else(|e| panic!("bind: {e}"));
        let holds: Holds = Arc::default();
        let gate_holds = holds.clone();
        server.set_disk_gate(Arc::new(move |target: &str| {
            let hold = gate_holds.lock().unwrap().remove(target);
            if let Some((entered, release)) = hold {
                entered.send(()).unwrap();
                release.recv().unwrap();
            }
        }));
        let addr = server.local_addrs()[0];
        let metrics = server.metrics_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(server.run(async {
                let _ = rx.await;
            }));
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        OneThread {
            addr,
            metrics,
            holds,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Arranges for the disk work of `target` to be held; returns the
    /// channel that says it is held and the sender that releases it.
    fn hold(&self, target: &str) -> (Receiver<()>, Sender<()>) {
        let (entered_tx, entered) = channel();
        let (release, release_rx) = channel();
        self.holds
            .lock()
            .unwrap()
            .insert(target.to_string(), (entered_tx, release_rx));
        (entered, release)
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(HANG)).unwrap();
        s
    }

    /// The value of the unlabelled (or fully labelled) sample `name`.
    fn metric(&self, name: &str) -> f64 {
        metric(self.metrics, name)
    }

    fn offloaded(&self, work: &str) -> f64 {
        self.metric(&format!("zcserve_disk_offloaded_total{{work=\"{work}\"}}"))
    }
}

impl Drop for OneThread {
    fn drop(&mut self) {
        // Nothing may stay held, or the server could not stop.
        self.holds.lock().unwrap().clear();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_get(s: &mut TcpStream, path: &str) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
}

/// Reads one whole response off a keep-alive connection.
fn read_response(s: &mut TcpStream) -> RawResponse {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some((r, n)) = try_parse(&got, false) {
            assert_eq!(n, got.len(), "bytes after the response");
            return r;
        }
        match s.read_r(&mut buf) {
            Ok(0) => panic!("closed after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no whole response after {} bytes: {e}", got.len()),
        }
    }
}

fn get(s: &mut TcpStream, path: &str) -> RawResponse {
    send_get(s, path);
    read_response(s)
}

/// Deterministic, distinct file contents.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// The tree: a hot file, a large cold file, a directory to list and one
/// with an index.html.
fn tree(root: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let hot = pattern(4096, 1);
    let cold = pattern((1 << 20) + 123, 2);
    let index = b"<p>the index</p>\n".to_vec();
    std::fs::write(root.join("hot.bin"), &hot).unwrap();
    std::fs::write(root.join("cold.bin"), &cold).unwrap();
    std::fs::create_dir(root.join("list")).unwrap();
    std::fs::write(root.join("list/entry-one.txt"), b"1").unwrap();
    std::fs::create_dir(root.join("site")).unwrap();
    std::fs::write(root.join("site/index.html"), &index).unwrap();
    (hot, cold, index)
}

#[test]
fn a_cached_file_is_served_while_another_open_is_held() {
    for b in backends() {
        let root = TempDir::new();
        let (hot_body, cold_body, index_body) = tree(root.path());
        // One pool thread: a hot request that went to the pool would queue
        // behind the held job and never be answered.
        let s = OneThread::start(b, root.path(), 1);
        let mut hot = s.connect();
        let first = get(&mut hot, "/hot.bin");
        assert_eq!((first.status, &first.body), (200, &hot_body), "{b}");
        // That was a miss, opened on the pool; from now on it is a hit.
        assert_eq!(s.offloaded("open"), 1.0, "{b}");

        type Check<'a> = Box<dyn Fn(&RawResponse) + 'a>;
        let cases: [(&str, &str, Check); 3] = [
            (
                "/cold.bin",
                "open",
                Box::new(|r| {
                    assert_eq!(r.status, 200, "{b}");
                    assert!(r.body == cold_body, "{b}: cold body differs");
                }),
            ),
            (
                "/list/",
                "directory",
                Box::new(|r| {
                    let html = String::from_utf8_lossy(&r.body);
                    assert_eq!(r.status, 200, "{b}");
                    assert!(html.contains("entry-one.txt"), "{b}: {html}");
                }),
            ),
            (
                "/site/",
                "directory",
                Box::new(|r| {
                    assert_eq!((r.status, &r.body), (200, &index_body), "{b}");
                }),
            ),
        ];
        for (path, work, check) in cases {
            let before = s.offloaded(work);
            let (entered, release) = s.hold(path);
            let mut cold = s.connect();
            send_get(&mut cold, path);
            entered
                .recv_timeout(HANG)
                .unwrap_or_else(|_| panic!("{b}: {path} never reached the pool"));
            // The held request's disk work is under way on the pool...
            for _ in 0..3 {
                let r = get(&mut hot, "/hot.bin");
                assert_eq!((r.status, &r.body), (200, &hot_body), "{b} during {path}");
            }
            // ...and still held: no byte of its response exists yet.
            cold.set_nonblocking(true).unwrap();
            let mut one = [0u8; 1];
            let early = cold.read_r(&mut one);
            assert!(
                matches!(&early, Err(e) if e.kind() == ErrorKind::WouldBlock),
                "{b}: {path} answered while held: {early:?}"
            );
            cold.set_nonblocking(false).unwrap();
            assert_eq!(s.offloaded(work), before + 1.0, "{b}: {path}");
            release.send(()).unwrap();
            check(&read_response(&mut cold));
            // The connection goes on as usual.
            let again = get(&mut cold, "/hot.bin");
            assert_eq!((again.status, &again.body), (200, &hot_body), "{b}");
        }
        // The hits never touched the pool: one open for the first
        // /hot.bin and /cold.bin each, two directories.
        assert_eq!(s.offloaded("open"), 2.0, "{b}");
        assert_eq!(s.offloaded("directory"), 2.0, "{b}");
        assert_eq!(s.metric("zcserve_disk_queue_depth"), 0.0, "{b}");
        assert_eq!(s.metric("zcserve_disk_threads"), 1.0, "{b}");
    }
}

#[test]
fn requests_past_the_pool_bound_wait_for_it_and_then_complete() {
    for b in backends() {
        let root = TempDir::new();
        let (hot_body, cold_body, _) = tree(root.path());
        let s = OneThread::start(b, root.path(), 1);
        let mut hot = s.connect();
        assert_eq!(get(&mut hot, "/hot.bin").body, hot_body, "{b}");
        let (entered, release) = s.hold("/cold.bin");
        let mut held = s.connect();
        send_get(&mut held, "/cold.bin");
        entered.recv_timeout(HANG).unwrap();
        // The only pool thread is busy: this miss waits in the queue.
        let mut queued = s.connect();
        send_get(&mut queued, "/site/");
        // Once it shows in the queue, the worker is still free for hits.
        let start = std::time::Instant::now();
        while s.metric("zcserve_disk_queue_depth") != 1.0 {
            assert!(start.elapsed() < HANG, "{b}: the miss never queued");
            std::thread::yield_now();
        }
        assert_eq!(get(&mut hot, "/hot.bin").body, hot_body, "{b}");
        assert_eq!(s.metric("zcserve_disk_queue_depth_max"), 1.0, "{b}");
        release.send(()).unwrap();
        assert!(read_response(&mut held).body == cold_body, "{b}");
        assert_eq!(read_response(&mut queued).status, 200, "{b}");
        assert_eq!(s.metric("zcserve_disk_queue_depth"), 0.0, "{b}");
        assert!(
            s.metric("zcserve_disk_queue_wait_seconds_total") > 0.0,
            "{b}"
        );
        assert!(s.metric("zcserve_disk_run_seconds_total") > 0.0, "{b}");
    }
}

#[test]
fn with_the_pool_off_everything_is_served_inline_as_before() {
    for b in backends() {
        let root = TempDir::new();
        let (hot_body, cold_body, index_body) = tree(root.path());
        let s = OneThread::start(b, root.path(), 0);
        let mut c = s.connect();
        for _ in 0..2 {
            assert_eq!(get(&mut c, "/hot.bin").body, hot_body, "{b}");
            assert!(get(&mut c, "/cold.bin").body == cold_body, "{b}");
            assert_eq!(get(&mut c, "/site/").body, index_body, "{b}");
            let listing = get(&mut c, "/list/");
            assert!(String::from_utf8_lossy(&listing.body).contains("entry-one.txt"));
            assert_eq!(get(&mut c, "/missing").status, 404, "{b}");
        }
        assert_eq!(s.metric("zcserve_disk_threads"), 0.0, "{b}");
        assert_eq!(s.offloaded("open"), 0.0, "{b}");
        assert_eq!(s.offloaded("directory"), 0.0, "{b}");
    }
}
