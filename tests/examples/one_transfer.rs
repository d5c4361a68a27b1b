//! Runs exactly one transfer and prints the backend's counters, to look at
//! by hand next to `strace -c -f` (the test `counters_match_strace` in
//! `tests/counters.rs` makes that comparison for every backend, limited to
//! the backend's own calls):
//!
//! ```text
//! cargo build --release -p zcserve-tests --example one_transfer
//! strace -c -f target/release/examples/one_transfer sendfile 1048576
//! ```
//!
//! The file is made and the socket connected before the counters are read,
//! so only the transfer's own calls differ (the reader thread's `read`s and
//! the setup show in strace too).

use std::os::fd::AsFd;
use std::process::ExitCode;

use zcserve_backends::{Backend, Config};
use zcserve_core::{ByteRange, blocking};
use zcserve_tests::{Link, SockKind, Speed, TestFile};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(len)) = (args.next(), args.next()) else {
        let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
        eprintln!(
            "usage: one_transfer BACKEND BYTES   (backends: {})",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let backend: Backend = match name.parse() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Ok(len) = len.parse::<u64>() else {
        eprintln!("BYTES must be a whole number, not {len:?}");
        return ExitCode::from(2);
    };
    let t = match backend.build(&Config::default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let file = TestFile::random(len as usize, 1);
    let source = file.source();
    let link = Link::new(SockKind::Tcp, None);
    let kind = link.kind;
    let (send, reader) = link.read_all(Speed::Fast);
    let before = t.stats().snapshot();
    let mut session = t
        .start(&source, ByteRange::full(len), Vec::new())
        .expect("start");
    let sent = blocking::send_all(session.as_mut(), send.as_fd(), None);
    drop(session);
    let d = t.stats().snapshot().since(&before);
    drop(send);
    let got = reader.finish().expect("reader").len();
    println!("{backend} {len} B over {kind:?}: sent {sent:?}, received {got}");
    println!("{d}");
    ExitCode::SUCCESS
}
