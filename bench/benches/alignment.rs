//! What a user buffer's alignment costs the kernel's copies into it.
//!
//! Two groups, every buffer placed at 0, 16, 64, 256 or 2048 bytes past a
//! page boundary (a [`PageBuf`] one page longer than needed, sliced at the
//! offset; 16 is where glibc's `malloc` puts a block of 128 KiB or more):
//!
//! - `pread/{size}/{offset}`: one `pread` of 32 KiB or 128 KiB from a 4 MiB
//!   file in the page cache into the buffer, walking the file; nothing but
//!   the kernel's copy to user space and the syscall.
//! - `copy/{offset}`: what the `copy` backend does for a 1 MiB body, built
//!   here with its buffer at the offset: `pread` 128 KiB, `send` it, until
//!   the body is sent, over loopback TCP to a reader thread that drains
//!   into a page-aligned buffer and says when it has the whole body.
//!
//! ```text
//! cargo bench -p zcserve-bench --bench alignment
//! cargo bench -p zcserve-bench --bench alignment -- pread/128KiB
//! ```
//!
//! Warm-up 0.5 s and measurement 2 s per id (criterion's flags override
//! them), so the whole bench takes about a minute.

#![allow(missing_docs)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zcserve_core::{PageBuf, page_size};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Offsets from a page boundary.
const OFFSETS: [usize; 5] = [0, 16, 64, 256, 2048];
/// The file `pread` walks.
const FILE_LEN: usize = 4 * MIB;
/// The body `copy/*` sends, and its chunk (`copy`'s default buffer).
const BODY: usize = MIB;
const CHUNK: usize = 128 * KIB;

/// A page-cached file of `len` bytes, unlinked (the descriptor keeps it).
fn cached_file(len: usize) -> File {
    let path = std::env::temp_dir().join(format!("zcbench-align-{}", std::process::id()));
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    File::create(&path)
        .and_then(|mut f| f.write_all(&data))
        .expect("write the bench file");
    let file = File::open(&path).expect("open the bench file");
    std::fs::remove_file(&path).expect("unlink the bench file");
    let mut back = Vec::new();
    (&file).read_to_end(&mut back).expect("warm the page cache");
    assert_eq!(back, data);
    file
}

/// A page-aligned block with room for `len` bytes at `offset` past its
/// start: the caller uses `block[offset..offset + len]`.
fn at_offset(len: usize, offset: usize) -> PageBuf {
    let buf = PageBuf::new(len + page_size());
    assert_eq!((buf.as_ptr() as usize + offset) % page_size(), offset);
    buf
}

fn pread(c: &mut Criterion) {
    let file = cached_file(FILE_LEN);
    let mut g = c.benchmark_group("pread");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (size, label) in [(32 * KIB, "32KiB"), (128 * KIB, "128KiB")] {
        g.throughput(Throughput::Bytes(size as u64));
        for offset in OFFSETS {
            let mut block = at_offset(size, offset);
            let buf = &mut block[offset..offset + size];
            let mut at = 0;
            g.bench_with_input(BenchmarkId::new(label, offset), &offset, |b, _| {
                b.iter(|| {
                    let n = file.read_at(buf, at as u64).expect("pread");
                    assert_eq!(n, size);
                    at = (at + size) % FILE_LEN;
                })
            });
        }
    }
    g.finish();
}

fn copy(c: &mut Criterion) {
    let file = cached_file(BODY);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let mut sock = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (mut peer, _) = listener.accept().expect("accept");
    sock.set_nodelay(true).expect("TCP_NODELAY");
    let (done_tx, done) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut buf = PageBuf::new(256 * KIB);
        let mut got = 0;
        loop {
            match peer.read(&mut buf).expect("read") {
                0 => return,
                n => got += n,
            }
            while got >= BODY {
                got -= BODY;
                if done_tx.send(()).is_err() {
                    return;
                }
            }
        }
    });
    let mut g = c.benchmark_group("copy");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(BODY as u64));
    for offset in OFFSETS {
        let mut block = at_offset(CHUNK, offset);
        let buf = &mut block[offset..offset + CHUNK];
        g.bench_with_input(BenchmarkId::from_parameter(offset), &offset, |b, _| {
            b.iter(|| {
                for at in (0..BODY).step_by(CHUNK) {
                    let n = file.read_at(buf, at as u64).expect("pread");
                    sock.write_all(&buf[..n]).expect("send");
                }
                done.recv().expect("the reader stopped");
            })
        });
    }
    g.finish();
    sock.shutdown(Shutdown::Write).expect("shutdown");
    drop(sock);
    reader.join().expect("reader panicked");
}

criterion_group!(benches, pread, copy);
criterion_main!(benches);
