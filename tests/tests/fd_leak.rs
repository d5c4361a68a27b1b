//! No descriptor leaks: 1,000 transfers per backend, good and failed ones
//! mixed, leave the process with the descriptors it started with once the
//! backends (and their pools) are dropped. Alone in its binary so that no
//! other test opens descriptors while it counts.

use std::fs::OpenOptions;

use zcserve_backends::Config;
use zcserve_core::{ByteRange, TransferError};
use zcserve_tests::{
    Driver, Link, SockKind, Speed, TestFile, backends, drive, open_fds, pump_until_full,
    small_config, transfer,
};

#[test]
fn a_thousand_transfers_leak_no_descriptor() {
    let good = TestFile::random(200 << 10, 1);
    // A tokio runtime built with the `signal` feature (on when the whole
    // workspace is built, for the server) opens a process-wide self-pipe
    // the first time and keeps it: that is not a leak, so make it exist
    // before counting.
    drop(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    let before = open_fds();
    for config in [small_config(), Config::default()] {
        let all = backends(&config);
        for backend in &all {
            for i in 0..1000u32 {
                let kind = if i % 2 == 0 {
                    SockKind::Tcp
                } else {
                    SockKind::Unix
                };
                let driver = if i % 3 == 0 {
                    Driver::Tokio
                } else {
                    Driver::Blocking
                };
                match i % 5 {
                    // Range past the end: refused before any byte.
                    0 => {
                        let out = transfer(
                            backend.as_ref(),
                            &good,
                            ByteRange::new(0, 1 << 30).unwrap(),
                            b"h",
                            Link::new(kind, None),
                            Speed::Fast,
                            driver,
                        );
                        assert!(matches!(
                            out.result,
                            Err(TransferError::RangePastEof { .. })
                        ));
                    }
                    // Peer gone before the first byte.
                    1 => {
                        let link = Link::new(kind, Some(4096));
                        drop(link.recv);
                        let mut s = backend
                            .start(&good.source(), ByteRange::full(200 << 10), b"h".to_vec())
                            .unwrap();
                        let e = drive(s.as_mut(), &link.send, kind, driver).unwrap_err();
                        assert!(e.is_peer_gone(), "{e}");
                    }
                    // Dropped mid-transfer with bytes still in its pipe or buffer.
                    2 => {
                        let link = Link::new(kind, Some(4096));
                        let mut s = backend
                            .start(&good.source(), ByteRange::full(200 << 10), Vec::new())
                            .unwrap();
                        pump_until_full(s.as_mut(), link.fd()).unwrap();
                    }
                    // Truncated file under a session.
                    3 => {
                        let f = TestFile::random(64 << 10, i as u64);
                        let mut s = backend
                            .start(&f.source(), ByteRange::full(64 << 10), Vec::new())
                            .unwrap();
                        OpenOptions::new()
                            .write(true)
                            .open(&f.path)
                            .unwrap()
                            .set_len(1000)
                            .unwrap();
                        let link = Link::new(kind, None);
                        let (send, reader) = link.read_all(Speed::Fast);
                        let e = drive(s.as_mut(), &send, kind, driver).unwrap_err();
                        assert!(e.is_file_shrank(), "{}: {e}", backend.name());
                        drop((s, send));
                        reader.finish().unwrap();
                    }
                    _ => {
                        let out = transfer(
                            backend.as_ref(),
                            &good,
                            ByteRange::full(200 << 10),
                            b"h",
                            Link::new(kind, None),
                            Speed::Fast,
                            driver,
                        );
                        assert_eq!(out.result.unwrap(), 1 + (200 << 10));
                    }
                }
            }
        }
        drop(all);
    }
    let after = open_fds();
    assert_eq!(
        before, after,
        "descriptors open before and after 1,000 transfers per backend and config"
    );
}
