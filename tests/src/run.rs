//! Running one transfer end to end through either driver.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use zcserve_core::{ByteRange, Transfer, TransferError, blocking};

use crate::{Link, SockKind, Speed, TestFile};

/// Which driver runs the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `blocking::send_all`, waiting in poll.
    Blocking,
    /// `tokio::send_all` on a current-thread runtime.
    Tokio,
}

/// What one transfer produced.
#[derive(Debug)]
pub struct Outcome {
    /// The driver's answer: bytes sent, or the error.
    pub result: Result<u64, TransferError>,
    /// Everything the reader received before EOF.
    pub received: Vec<u8>,
}

/// No test transfer may take longer than this to make progress; a stuck
/// one fails instead of hanging the suite.
pub const STALL: Duration = Duration::from_secs(20);

/// Sends `prefix` + `range` of `file` through `backend` over `link` with
/// `driver`, the peer reading at `speed`, and collects what arrived.
pub fn transfer(
    backend: &dyn Transfer,
    file: &TestFile,
    range: ByteRange,
    prefix: &[u8],
    link: Link,
    speed: Speed,
    driver: Driver,
) -> Outcome {
    let kind = link.kind;
    let (send, reader) = link.read_all(speed);
    let result = backend
        .start(&file.source(), range, prefix.to_vec())
        .and_then(|mut session| drive(session.as_mut(), &send, kind, driver));
    drop(send);
    let received = reader.finish().expect("reader");
    Outcome { result, received }
}

/// Runs `session` to the end on `send` (a socket of `kind`) with `driver`.
pub fn drive(
    session: &mut dyn zcserve_core::Session,
    send: &OwnedFd,
    kind: SockKind,
    driver: Driver,
) -> Result<u64, TransferError> {
    match driver {
        Driver::Blocking => blocking::send_all(session, send.as_fd(), Some(STALL)),
        Driver::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            // A duplicate of the descriptor, so the caller's end stays open
            // for it to close (which is what ends the reader).
            let dup = send.try_clone().expect("dup");
            rt.block_on(async {
                match kind {
                    SockKind::Tcp => {
                        let s = tokio::net::TcpStream::from_std(dup.into()).expect("register");
                        timeout(zcserve_core::tokio::send_all(&s, session, None)).await
                    }
                    SockKind::Unix => {
                        let s = tokio::net::UnixStream::from_std(dup.into()).expect("register");
                        timeout(zcserve_core::tokio::send_all(&s, session, None)).await
                    }
                }
            })
        }
    }
}

async fn timeout(
    f: impl std::future::Future<Output = Result<u64, TransferError>>,
) -> Result<u64, TransferError> {
    tokio::time::timeout(STALL, f)
        .await
        .unwrap_or(Err(TransferError::TimedOut(STALL)))
}

/// What the reader must receive: the prefix, then `file[range]`.
pub fn expected(file: &TestFile, range: ByteRange, prefix: &[u8]) -> Vec<u8> {
    let mut want = prefix.to_vec();
    want.extend_from_slice(&file.data[range.start() as usize..range.end() as usize]);
    want
}
