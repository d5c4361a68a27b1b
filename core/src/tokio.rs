//! Runs a session on a tokio socket: each pump happens when tokio says the
//! socket is writable, and a full socket parks the task instead of a thread.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::transfer::pending_fd;
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
/// A session that answers [`Pump::Pending`] is pumped again when its
/// [`Session::completion_fd`] turns readable; that descriptor is registered
/// with tokio for the rest of this call.
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
    let fd = sock.as_fd();
    let mut completions: Option<AsyncFd<Completions>> = None;
    let mut next = Wait::Writable;
    loop {
        let step = match next {
            Wait::Writable => {
                let io = sock.write_io(|| match session.pump(fd) {
                    Ok(Pump::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
                    other => Ok(other),
                });
                with_stall(stall, io).await?
            }
            Wait::Completions => {
                let afd = match &completions {
                    Some(afd) => afd,
                    None => completions.insert(register(&*session)?),
                };
                let io = afd.async_io(Interest::READABLE, |_| match session.pump(fd) {
                    Ok(Pump::Pending) => Err(io::ErrorKind::WouldBlock.into()),
                    other => Ok(other),
                });
                with_stall(stall, io).await?
            }
        };
        match step {
            Ok(Pump::Done) => return Ok(total - session.remaining()),
            Ok(Pump::Yield) => {
                tokio::task::yield_now().await;
                next = Wait::Writable;
            }
            Ok(Pump::WouldBlock) => next = Wait::Writable,
            Ok(Pump::Pending) => next = Wait::Completions,
            Err(e) => return Err(e),
        }
    }
}

/// What the next pump waits for.
#[derive(Clone, Copy)]
enum Wait {
    Writable,
    Completions,
}

/// A session's completion descriptor, borrowed for as long as the session
/// lives (the contract of [`Session::completion_fd`]); never closed here.
struct Completions(RawFd);

impl AsRawFd for Completions {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn register(session: &dyn Session) -> Result<AsyncFd<Completions>, TransferError> {
    let fd = pending_fd(session)?.as_raw_fd();
    // SAFETY: `Session::completion_fd` promises the descriptor stays open
    // and the same until the session is dropped, and `send_all` drops this
    // registration before it returns, while it still borrows the session.
    unsafe { AsyncFd::register_with_interest(Completions(fd), Interest::READABLE) }
        .map_err(|e| readiness_error(e.into_parts().1))
}

/// Runs `io`, failing after `stall` without it finishing.
///
/// Most pumps find room in the socket and finish at their first poll, and
/// arming a timer costs a timer-wheel insert and removal: the timer is armed
/// only once `io` has to wait.
async fn with_stall<R>(
    stall: Option<Duration>,
    io: impl Future<Output = io::Result<R>>,
) -> Result<R, TransferError> {
    let mut io = pin!(io);
    let r = match stall {
        None => io.await,
        Some(limit) => match poll_once(io.as_mut()).await {
            Some(r) => r,
            None => match tokio::time::timeout(limit, io).await {
                Ok(r) => r,
                Err(_) => return Err(TransferError::TimedOut(limit)),
            },
        },
    };
    r.map_err(readiness_error)
}

/// Polls `f` once: its output if it was ready, `None` if it must wait (its
/// waker is then registered, and polling it again later is allowed).
async fn poll_once<F: Future>(mut f: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Only the readiness machinery itself fails with an `io::Error` here.
fn readiness_error(e: io::Error) -> TransferError {
    TransferError::sys_io(Syscall::Poll, &e)
}
