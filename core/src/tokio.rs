//! Runs a session on a tokio socket: each pump happens when tokio says the
//! socket is writable, and a full socket parks the task instead of a thread.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::errno::Errno;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::{Pump, Session, Syscall, TransferError};

/// A socket registered with tokio that can run a closure when writable and
/// re-arm its readiness when the closure reports `WouldBlock`.
pub trait AsyncSocket: AsFd + Sync {
    /// Calls `f` once the socket is writable, again after each
    /// `WouldBlock`, and returns its first other result.
    fn write_io<R: Send>(
        &self,
        f: impl FnMut() -> io::Result<R> + Send,
    ) -> impl Future<Output = io::Result<R>> + Send;
}

impl AsyncSocket for tokio::net::TcpStream {
    fn write_io<R: Send>(
        &self,
        f: impl FnMut() -> io::Result<R> + Send,
    ) -> impl Future<Output = io::Result<R>> + Send {
        self.async_io(Interest::WRITABLE, f)
    }
}

impl AsyncSocket for tokio::net::UnixStream {
    fn write_io<R: Send>(
        &self,
        f: impl FnMut() -> io::Result<R> + Send,
    ) -> impl Future<Output = io::Result<R>> + Send {
        self.async_io(Interest::WRITABLE, f)
    }
}

impl<T: AsRawFd + AsFd + Send + Sync> AsyncSocket for AsyncFd<T> {
    fn write_io<R: Send>(
        &self,
        mut f: impl FnMut() -> io::Result<R> + Send,
    ) -> impl Future<Output = io::Result<R>> + Send {
        self.async_io(Interest::WRITABLE, move |_| f())
    }
}

/// Sends everything `session` holds into `sock` and returns the number of
/// bytes sent. The socket must be non-blocking (tokio's always are).
///
/// With `stall`, a peer that takes no bytes for that long (more exactly:
/// one pump budget's worth of progress takes longer) ends the transfer with
/// [`TransferError::TimedOut`], like nginx's `send_timeout`, so a client
/// that stops reading cannot hold a connection forever.
pub async fn send_all<S: AsyncSocket>(
    sock: &S,
    session: &mut dyn Session,
    stall: Option<Duration>,
) -> Result<u64, TransferError> {
    let total = session.remaining();
    loop {
        let fd = sock.as_fd();
        let io = sock.write_io(|| match session.pump(fd) {
            Ok(Pump::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            other => Ok(other),
        });
        let step = match stall {
            None => io.await,
            Some(limit) => match tokio::time::timeout(limit, io).await {
                Ok(step) => step,
                Err(_) => return Err(TransferError::TimedOut(limit)),
            },
        };
        match step {
            Ok(Ok(Pump::Done)) => return Ok(total - session.remaining()),
            Ok(Ok(Pump::Yield)) => tokio::task::yield_now().await,
            Ok(Ok(Pump::WouldBlock)) => unreachable!("WouldBlock is turned into a wait above"),
            Ok(Err(e)) => return Err(e),
            // Only the readiness machinery itself fails here.
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32));
                return Err(TransferError::sys(Syscall::Poll, errno));
            }
        }
    }
}
