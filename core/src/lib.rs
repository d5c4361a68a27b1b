//! The core of zcserve: how a backend moves a byte range of an open file
//! into a socket, and how that work is counted.
//!
//! A [`Transfer`] (one per backend; `zcserve-backends` lists them) starts a
//! [`Session`] for each response: a prefix (the HTTP head) followed by a
//! [`ByteRange`] of a [`Source`] file. A session is a *pump*: every
//! [`Session::pump`] call moves as many bytes as the kernel takes without
//! blocking and answers [`Pump::WouldBlock`] when the socket is full. Two
//! drivers run any session to the end: [`blocking::send_all`] on the calling
//! thread, and `tokio::send_all` (feature `tokio`) on a tokio socket. Every
//! session reports bytes, syscalls by kind and waits into the backend's
//! [`Stats`], so measurements come from the code that did the work.
//!
//! Backends share one pump ([`Pumping`]): a backend's [`Step`] only tries
//! one move (one syscall, or one io_uring submit or reap) and says what
//! happened ([`Moved`]); the pump owns the head, the per-pump budget,
//! `EINTR`, `Done`/`Yield`/`WouldBlock` and the counting.
//!
//! ```no_run
//! use std::{fs::File, sync::Arc, os::fd::AsFd};
//! use zcserve_core::{blocking, ByteRange, Source, Transfer};
//!
//! fn send(backend: &dyn Transfer, path: &str, sock: &std::net::TcpStream)
//!     -> Result<u64, Box<dyn std::error::Error>> {
//!     let source = Source::new(Arc::new(File::open(path)?))?;
//!     let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
//!     let mut session = backend.start(&source, ByteRange::full(source.len()), head)?;
//!     Ok(blocking::send_all(session.as_mut(), sock.as_fd(), None)?)
//! }
//! ```
//!
//! The crate's API has no async runtime in it; the `tokio` module is an
//! optional driver on top.

pub mod blocking;
mod buf;
pub mod disk;
mod error;
mod pump;
mod range;
pub mod sock;
mod stats;
#[cfg(feature = "tokio")]
pub mod tokio;
mod transfer;

pub use buf::{PageBuf, page_size};
pub use error::{TransferError, errno_of};
pub use pump::{Attempt, Move, Moved, Mover, Pumping, READ_IN_SPAN, Step};
pub use range::ByteRange;
pub use stats::{Snapshot, Stats, Syscall};
pub use transfer::{Pump, Session, Source, Transfer};
