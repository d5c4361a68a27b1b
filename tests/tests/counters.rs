//! The counters tell the truth: zero-copy backends report no byte through
//! user space, copy reports every byte twice (in and out), and syscall
//! counts follow from the sizes (checked against `strace -c` by hand with
//! the `one_transfer` example).

use zcserve_backends::{Backend, Config};
use zcserve_core::{ByteRange, Snapshot, Syscall};
use zcserve_tests::{Driver, Link, SockKind, Speed, TestFile, transfer};

const LEN: u64 = 1 << 20;
const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n";

/// The counters of one 1 MiB transfer with a head, the session dropped.
fn one(backend: Backend, config: &Config) -> Snapshot {
    let file = TestFile::random(LEN as usize, 11);
    let t = backend.build(config).unwrap();
    let before = t.stats().snapshot();
    let out = transfer(
        t.as_ref(),
        &file,
        ByteRange::full(LEN),
        HEAD,
        Link::new(SockKind::Tcp, None),
        Speed::Fast,
        Driver::Blocking,
    );
    assert_eq!(out.result.unwrap(), LEN + HEAD.len() as u64);
    let d = t.stats().snapshot().since(&before);
    assert_eq!(
        (d.body_bytes, d.prefix_bytes),
        (LEN, HEAD.len() as u64),
        "{backend}"
    );
    assert_eq!(
        (d.sessions_started, d.sessions_completed, d.sessions_failed),
        (1, 1, 0)
    );
    d
}

#[test]
fn sendfile_copies_nothing_through_user_space() {
    let d = one(Backend::Sendfile, &Config::default());
    assert_eq!((d.copied_in, d.copied_out), (0, 0));
    // The head goes out with send(MSG_MORE), the body in sendfile calls of
    // at most max_chunk, one more after each would-block.
    assert_eq!(d.syscalls(Syscall::Send), 1);
    let calls = d.syscalls(Syscall::Sendfile);
    let budgets = LEN.div_ceil(Config::default().max_chunk as u64);
    assert!(calls >= budgets && calls <= budgets + d.would_block, "{d}");
    assert_eq!(
        d.syscalls(Syscall::Pread) + d.syscalls(Syscall::Splice) + d.syscalls(Syscall::Mmap),
        0
    );
}

#[test]
fn splice_copies_nothing_through_user_space() {
    let cfg = Config {
        pipe_size: 64 << 10,
        ..Config::default()
    };
    let d = one(Backend::Splice, &cfg);
    assert_eq!((d.copied_in, d.copied_out), (0, 0));
    // Sixteen pipe-fulls in, at least sixteen splices out; the pool's pipe
    // was made when the backend was built, not per transfer.
    let calls = d.syscalls(Syscall::Splice);
    assert!(calls >= 32 && calls <= 32 + d.would_block, "{d}");
    assert_eq!(d.syscalls(Syscall::Pipe), 0, "{d}");
    assert_eq!(d.syscalls(Syscall::Send), 1);
}

#[test]
fn mmap_copies_out_of_the_mapping_only() {
    let d = one(Backend::Mmap, &Config::default());
    assert_eq!((d.copied_in, d.copied_out), (0, LEN));
    assert_eq!(
        (
            d.syscalls(Syscall::Mmap),
            d.syscalls(Syscall::Madvise),
            d.syscalls(Syscall::Munmap)
        ),
        (1, 1, 1),
        "{d}"
    );
    // Head and first body bytes share one sendmsg.
    assert!(d.syscalls(Syscall::Sendmsg) >= 1, "{d}");
    assert_eq!(d.syscalls(Syscall::Pread), 0);
}

#[test]
fn copy_copies_every_byte_in_and_out() {
    let cfg = Config {
        buffer_size: 64 << 10,
        ..Config::default()
    };
    let d = one(Backend::Copy, &cfg);
    assert_eq!((d.copied_in, d.copied_out), (LEN, LEN));
    assert_eq!(d.syscalls(Syscall::Pread), 16, "{d}");
    // The first chunk leaves with the head in one sendmsg; the rest in
    // sends, at least one per chunk.
    assert_eq!(d.syscalls(Syscall::Sendmsg), 1, "{d}");
    assert!(d.syscalls(Syscall::Send) >= 15, "{d}");
}
