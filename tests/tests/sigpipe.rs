//! A peer that goes away never kills the process, even when the host left
//! SIGPIPE at its default (fatal) action, as a C host would: building a
//! backend sets it to ignored, and sendfile and splice then see EPIPE.
//! Alone in its binary because it changes a process-wide signal action.

use nix::sys::signal::{SigHandler, Signal, signal};
use zcserve_core::ByteRange;
use zcserve_tests::{Driver, Link, SockKind, TestFile, drive};

#[test]
fn sigpipe_at_its_default_action_does_not_kill_the_process() {
    let file = TestFile::random(1 << 20, 4);
    for backend in zcserve_tests::backends_under_test() {
        // SAFETY: SigDfl installs no Rust code as a handler.
        unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.unwrap();
        let transfer = backend.build(&Default::default()).unwrap();
        for kind in [SockKind::Tcp, SockKind::Unix] {
            let link = Link::new(kind, Some(4096));
            drop(link.recv);
            let mut s = transfer
                .start(&file.source(), ByteRange::full(1 << 20), Vec::new())
                .unwrap();
            let e = drive(s.as_mut(), &link.send, kind, Driver::Blocking).unwrap_err();
            assert!(e.is_peer_gone(), "{backend} {kind:?}: {e}");
        }
    }
}
