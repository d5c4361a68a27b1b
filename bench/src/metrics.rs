//! zcserve's own counters, read from its `/metrics` listener around a run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Total backend syscalls zcserve at `metrics` has counted; `None` when it
/// cannot be asked.
pub fn syscalls(metrics: SocketAddr) -> Option<u64> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: zcbench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(sum_syscalls(&text))
}

/// The sum of every `zcserve_backend_syscalls_total{...}` sample in a
/// Prometheus text page.
pub fn sum_syscalls(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("zcserve_backend_syscalls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_samples_are_summed() {
        let page = "# HELP zcserve_backend_syscalls_total x\n\
                    zcserve_backend_syscalls_total{backend=\"sendfile\",call=\"sendfile\"} 40\n\
                    zcserve_backend_syscalls_total{backend=\"sendfile\",call=\"fstat\"} 2\n\
                    zcserve_requests_total 7\n";
        assert_eq!(sum_syscalls(page), 42);
        assert_eq!(sum_syscalls(""), 0);
    }
}
