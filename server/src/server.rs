//! Start-up and the accept loops: open the root, build the backend, bind
//! the listeners (each failure a message that says what to fix), then
//! accept connections until told to stop, and stop gracefully.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt,
    socket, sockopt,
};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use zcserve_backends::Choice;

use crate::access_log::Logger;
use crate::clock::Clock;
use crate::config::Settings;
use crate::conn::{self, ServerState};
use crate::disk_work::{DiskWork, Gate};
use crate::fs::{Policy, Root};
use crate::http::file_cache::FileCache;
use crate::http::range::DEFAULT_MAX_RANGES;
use crate::metrics::Metrics;
use crate::site::Site;

/// A bound, ready server.
pub struct Server {
    listeners: Vec<StdListener>,
    metrics_listener: Option<StdListener>,
    state: Arc<ServerState>,
    backend: Choice,
    max_connections: usize,
    grace: Duration,
}

/// Pending connections the kernel queues per listener (nginx uses 511).
const BACKLOG: i32 = 1024;

impl Server {
    /// Opens the root, builds the backend and binds every listener. The
    /// error is one line for the user.
    pub fn bind(settings: &Settings) -> Result<Server, String> {
        Server::bind_with_clock(settings, Clock::coarse())
    }

    /// [`Server::bind`], with the file cache's windows and the keep-alive
    /// deadlines timed on `clock` (tests use tokio's, with paused time).
    pub fn bind_with_clock(settings: &Settings, clock: Clock) -> Result<Server, String> {
        let root = Root::open(&settings.root)
            .map_err(|e| format!("cannot serve {}: {e}", settings.root.display()))?;
        let backend: Choice = settings
            .backend
            .parse()
            .map_err(|e| format!("--backend: {e}"))?;
        let transfer = backend
            .build(&settings.backend_config)
            .map_err(|e| format!("backend {backend}: {e}"))?;
        let mut listeners = Vec::new();
        for addr in &settings.listen {
            listeners.push(listen_on(*addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?);
        }
        let metrics_listener = settings
            .metrics
            .map(|addr| {
                listen_on(addr).map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))
            })
            .transpose()?;
        let log = Logger::start(&settings.access_log, settings.log_format)?;
        let state = Arc::new(ServerState {
            site: Site {
                root,
                policy: Policy {
                    show_hidden: settings.show_hidden,
                    follow_symlinks: settings.follow_symlinks,
                },
                listing: settings.listing,
                listing_max_entries: settings.listing_max_entries,
                max_ranges: DEFAULT_MAX_RANGES,
                cache: if settings.file_cache {
                    FileCache::with_clock(
                        cache_capacity(settings.file_cache_entries),
                        settings.file_cache_valid,
                        settings.file_cache_check,
                        clock.clone(),
                    )
                } else {
                    FileCache::off()
                },
            },
            backend: transfer,
            header_timeout: settings.header_timeout,
            keepalive_timeout: settings.keepalive_timeout,
            send_timeout: settings.keepalive_timeout.max(Duration::from_secs(60)),
            notsent_lowat: settings.notsent_lowat,
            log,
            metrics: Arc::default(),
            clock,
            disk: DiskWork::new(settings.disk_threads),
        });
        Ok(Server {
            listeners,
            metrics_listener,
            state,
            backend,
            max_connections: settings.max_connections,
            grace: settings.shutdown_grace,
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Where metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The backend in use, or `auto`.
    pub fn backend(&self) -> Choice {
        self.backend
    }

    /// The server's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// Makes every request's disk work call `gate` with the request target
    /// first, on the disk pool's thread (see [`DiskWork::set_gate`]): a
    /// seam for tests that hold one path's open. Before [`Server::run`].
    pub fn set_disk_gate(&mut self, gate: Gate) {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.disk.set_gate(gate);
        }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight responses finish for up to the grace period, and returns.
    /// Must run inside a tokio runtime.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut accepts = Vec::new();
        for l in self.listeners {
            let listener = match TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("cannot register listener: {e}");
                    return;
                }
            };
            accepts.push(tokio::spawn(accept_loop(
                listener,
                self.state.clone(),
                slots.clone(),
                stop_rx.clone(),
            )));
        }
        if let Some(l) = self.metrics_listener
            && let Ok(l) = TcpListener::from_std(l)
        {
            tokio::spawn(crate::metrics_http::serve(
                l,
                self.state.clone(),
                stop_rx.clone(),
            ));
        }
        if self.state.site.cache.enabled() {
            tokio::spawn(sweep_cache(self.state.clone(), stop_rx.clone()));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        for a in accepts {
            let _ = a.await;
        }
        // Every connection holds a slot; all slots back means all done.
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(self.grace, slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                "{} connections still busy after the {:?} grace period; closing them",
                self.state.metrics.open_connections.load(Ordering::Relaxed),
                self.grace
            );
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    slots: Arc<Semaphore>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        // Take a slot before accepting: past max-connections, clients wait
        // in the kernel's backlog instead of being accepted and starved.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stopping.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let state = state.clone();
                let stop = stopping.clone();
                state.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                state
                    .metrics
                    .open_connections
                    .fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    conn::serve(stream, peer, state.clone(), stop).await;
                    state
                        .metrics
                        .open_connections
                        .fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Err(e) => {
                state.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                let errno = e.raw_os_error().map(Errno::from_raw);
                // Out of descriptors or memory: the condition persists, so
                // accepting again at once would spin. Back off and retry;
                // connections finishing meanwhile free what is missing.
                let pause = match errno {
                    Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM) => {
                        // Descriptors the file cache holds are the ones to
                        // give back first.
                        state.site.cache.clear();
                        Duration::from_millis(100)
                    }
                    _ => Duration::from_millis(5),
                };
                tracing::warn!("accept failed: {e}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Closes expired cache entries every validity window, so that an idle
/// server does not keep deleted files allocated through their descriptors.
async fn sweep_cache(state: Arc<ServerState>, mut stopping: watch::Receiver<bool>) {
    let cache = &state.site.cache;
    let mut tick = tokio::time::interval(cache.valid());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => cache.sweep(),
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// The cache may hold at most an eighth of the descriptors the process may
/// open, so that connections never starve for them.
fn cache_capacity(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return wanted;
    }
    let share = usize::try_from(lim.rlim_cur / 8).unwrap_or(usize::MAX);
    wanted.min(share)
}

/// A non-blocking listening socket on `addr` with a deep backlog (std's
/// `TcpListener::bind` fixes it at 128, which drops SYNs under bursts).
fn listen_on(addr: SocketAddr) -> Result<StdListener, Errno> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        // An IPv6 listener takes only IPv6, so IPv4 and IPv6 listeners on
        // the same port can coexist, as with nginx's `listen [::]:80`.
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    match addr {
        SocketAddr::V4(a) => bind(raw, &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(raw, &SockaddrIn6::from(a))?,
    }
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    Ok(StdListener::from(fd))
}
