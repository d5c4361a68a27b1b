//! Socket options every accepted connection gets before its first response.

use std::io;

use socket2::SockRef;
use tokio::net::TcpStream;

/// Sets `TCP_NODELAY` and, when given, `TCP_NOTSENT_LOWAT`.
///
/// Both are performance hints: a kernel that refuses one still serves the
/// same bytes, so failures are ignored.
pub fn tune(stream: &TcpStream, notsent_lowat: Option<u32>) {
    // Small responses must not wait for Nagle behind the client's delayed
    // ACK (~40 ms each); heads are coalesced with bodies by MSG_MORE instead.
    let _ = stream.set_nodelay(true);
    if let Some(bytes) = notsent_lowat {
        let _ = set_notsent_lowat(stream, bytes);
    }
}

/// Whether bytes from the peer wait in `stream`'s receive queue, asked of
/// the socket itself (a peek that does not wait) rather than of tokio's
/// readiness, which learns of them only at the reactor's next turn.
pub fn has_unread(stream: &TcpStream) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut one = [0u8; 1];
    matches!(
        recv(
            stream.as_raw_fd(),
            &mut one,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Ok(1..)
    )
}

/// Limits the bytes queued in the kernel but not yet sent: past it, the
/// socket counts as full (sends stop short, poll reports no room), so a
/// large body is fed to TCP as it drains rather than megabytes ahead.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn set_notsent_lowat(stream: &TcpStream, bytes: u32) -> io::Result<()> {
    SockRef::from(stream).set_tcp_notsent_lowat(bytes)
}

/// Not available here; the kernel's behaviour stays.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn set_notsent_lowat(_stream: &TcpStream, _bytes: u32) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (s, c)
    }

    #[tokio::test]
    async fn tune_sets_nodelay_and_the_limit() {
        let (s, _c) = pair().await;
        let before = SockRef::from(&s).tcp_notsent_lowat().unwrap();
        assert_ne!(
            before, 65536,
            "the test needs a kernel default other than 65536"
        );
        tune(&s, Some(65536));
        assert!(s.nodelay().unwrap());
        assert_eq!(SockRef::from(&s).tcp_notsent_lowat().unwrap(), 65536);
    }

    #[tokio::test]
    async fn none_keeps_the_kernel_setting() {
        let (s, _c) = pair().await;
        let before = SockRef::from(&s).tcp_notsent_lowat().unwrap();
        tune(&s, None);
        assert!(s.nodelay().unwrap());
        assert_eq!(SockRef::from(&s).tcp_notsent_lowat().unwrap(), before);
    }
}
