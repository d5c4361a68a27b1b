//! Start-up and the accept loops: open the root, build the backend, bind
//! the listeners (each failure a message that says what to fix), then
//! accept connections until told to stop, and stop gracefully.
//!
//! With `--reuseport` and several threads, each worker thread runs its own
//! single-threaded runtime accepting on its own `SO_REUSEPORT` listeners
//! (see [`crate::listen`]): the kernel spreads connections over the
//! threads, and a connection stays on the thread that accepted it, as with
//! nginx's workers. Otherwise one runtime (multi-threaded for `--threads`
//! above 1) accepts on one listener per address.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::errno::Errno;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use zcserve_backends::Choice;

use crate::access_log::Logger;
use crate::clock::Clock;
use crate::config::Settings;
use crate::conn::{self, ServerState};
use crate::disk_work::{DiskWork, Gate};
use crate::fs::{Policy, Root};
use crate::http::file_cache::FileCache;
use crate::http::range::DEFAULT_MAX_RANGES;
use crate::listen::{Groups, listen_on};
use crate::metrics::Metrics;
use crate::site::Site;
use crate::site_rules::SiteRules;

/// A bound, ready server.
pub struct Server {
    /// `listeners[i]` is accepted on by worker `i`; the first by the
    /// runtime [`Server::run`] runs on.
    listeners: Groups,
    /// Stopping accepts what the listeners' queues hold first (see
    /// [`crate::listen`]).
    drain: bool,
    metrics_listener: Option<StdListener>,
    state: Arc<ServerState>,
    backend: Choice,
    max_connections: usize,
    grace: Duration,
}

impl Server {
    /// Opens the root, builds the backend and binds every listener. The
    /// error is one line for the user.
    pub fn bind(settings: &Settings) -> Result<Server, String> {
        Server::bind_with_clock(settings, Clock::coarse())
    }

    /// [`Server::bind`], with the file cache's windows and the keep-alive
    /// deadlines timed on `clock` (tests use tokio's, with paused time).
    pub fn bind_with_clock(settings: &Settings, clock: Clock) -> Result<Server, String> {
        Server::bind_from(settings, clock, None)
    }

    /// [`Server::bind_with_clock`], serving `inherited` listeners (from
    /// systemd socket activation, see [`crate::activation`]) instead of
    /// binding `listen`, which must then not be given.
    pub fn bind_from(
        settings: &Settings,
        clock: Clock,
        inherited: Option<Vec<StdListener>>,
    ) -> Result<Server, String> {
        let root = Root::open(&settings.root)
            .map_err(|e| format!("cannot serve {}: {e}", settings.root.display()))?;
        let backend: Choice = settings
            .backend
            .parse()
            .map_err(|e| format!("--backend: {e}"))?;
        let transfer = backend
            .build(&settings.backend_config)
            .map_err(|e| format!("backend {backend}: {e}"))?;
        if let Some(why) = transfer.disk_pool().and_then(|p| p.priority_refused()) {
            tracing::warn!(
                "--disk-priority {}: refused ({why}); the disk threads run at the server's \
                 own priority (--disk-priority normal silences this)",
                settings.backend_config.disk_priority
            );
        }
        let listeners = match inherited {
            None => {
                crate::listen::bind_all(&settings.listen, settings.reuseport, settings.threads)?
            }
            Some(_) if settings.listen_given => {
                return Err("listen: systemd passed the sockets to serve (LISTEN_FDS); \
                     remove --listen/listen, or set the addresses in the .socket unit"
                    .into());
            }
            Some(_) if settings.reuseport => {
                return Err(
                    "reuseport: systemd passed the sockets to serve (LISTEN_FDS); \
                     set ReusePort=yes in the .socket unit instead of --reuseport"
                        .into(),
                );
            }
            Some(inherited) => vec![inherited],
        };
        let metrics_listener = settings
            .metrics
            .map(|addr| {
                listen_on(addr, false)
                    .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))
            })
            .transpose()?;
        let log = Logger::start(&settings.access_log, settings.log_format)?;
        let policy = Policy {
            show_hidden: settings.show_hidden,
            follow_symlinks: settings.follow_symlinks,
        };
        let rules = SiteRules::new(settings, &root, &policy)?;
        let state = Arc::new(ServerState {
            site: Site {
                root,
                policy,
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
                precompressed: settings.precompressed.clone(),
                listing_show_sidecars: settings.listing_show_sidecars,
                rules,
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
            drain: settings.reuseport,
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
            .take(1)
            .flatten()
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

    /// The wait for the access log's last line to be written, for after
    /// [`Server::run`] and the runtime are gone (see [`Logger::written`]).
    pub fn log_written(&self) -> Option<crate::access_log::Written> {
        self.state.log.written()
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
        // Worker threads keep serving their connections until this says
        // the grace period is over.
        let (done_tx, done_rx) = watch::channel(false);
        // Each worker drops its sender once it has stopped accepting: the
        // wait for the connections' slots must not start before, or it
        // would take the slots a worker's last accepts need.
        let (accepting_tx, mut accepting_rx) = tokio::sync::mpsc::channel::<()>(1);
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let accept = Accept {
            state: self.state.clone(),
            slots: slots.clone(),
            stopping: stop_rx.clone(),
            drain: self.drain,
        };
        let mut groups = self.listeners.into_iter();
        let mut own = groups.next().unwrap_or_default();
        let mut workers = Vec::new();
        for (i, group) in groups.enumerate() {
            let worker = (accept.clone(), accepting_tx.clone(), done_rx.clone());
            match spawn_worker(i + 1, group, worker) {
                Ok(w) => workers.push(w),
                Err((e, group)) => {
                    // Its listeners are in the group already: serve them
                    // here rather than let connections queue unserved.
                    tracing::warn!("cannot start worker thread {}: {e}", i + 1);
                    own.extend(group);
                }
            }
        }
        let accepts = match accept.start(own) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("cannot register listener: {e}");
                return;
            }
        };
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
        drop(accepting_tx);
        let _ = accepting_rx.recv().await;
        // Every connection, on any thread, holds a slot; all slots back
        // means all done.
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
        let _ = done_tx.send(true);
        for w in workers {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
    }
}

/// What every accept loop shares.
#[derive(Clone)]
struct Accept {
    state: Arc<ServerState>,
    slots: Arc<Semaphore>,
    stopping: watch::Receiver<bool>,
    drain: bool,
}

impl Accept {
    /// Spawns one accept loop per listener on the current runtime.
    fn start(
        &self,
        listeners: Vec<StdListener>,
    ) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
        let mut loops = Vec::new();
        for l in listeners {
            let listener = TcpListener::from_std(l)?;
            loops.push(tokio::spawn(accept_loop(listener, self.clone())));
        }
        Ok(loops)
    }

    /// Serves `stream` on a task of the current runtime, holding `permit`
    /// until it closes.
    fn serve(&self, stream: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        let state = self.state.clone();
        let stop = self.stopping.clone();
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
}

/// Starts worker thread `n`: a single-threaded runtime that accepts on
/// `listeners` and serves what it accepts until `done`. On failure the
/// listeners come back with the error.
fn spawn_worker(
    n: usize,
    listeners: Vec<StdListener>,
    (accept, accepting, mut done): (Accept, tokio::sync::mpsc::Sender<()>, watch::Receiver<bool>),
) -> Result<std::thread::JoinHandle<()>, (std::io::Error, Vec<StdListener>)> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err((e, listeners)),
    };
    // The listeners travel to the thread through this slot so that they
    // can be returned if the thread cannot start.
    let slot = Arc::new(std::sync::Mutex::new(Some(listeners)));
    let taken = slot.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("zcserve-worker-{n}"))
        .spawn(move || {
            let listeners = taken.lock().ok().and_then(|mut s| s.take());
            runtime.block_on(async {
                match accept.start(listeners.unwrap_or_default()) {
                    Ok(loops) => {
                        for l in loops {
                            let _ = l.await;
                        }
                    }
                    Err(e) => tracing::error!("worker {n}: cannot register listener: {e}"),
                }
                drop(accepting);
                let _ = done.wait_for(|d| *d).await;
            });
            // Connections past the grace period are dropped with it.
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
    spawned.map_err(|e| {
        let back = slot.lock().ok().and_then(|mut s| s.take());
        (e, back.unwrap_or_default())
    })
}

async fn accept_loop(listener: TcpListener, accept: Accept) {
    let Accept {
        state,
        slots,
        mut stopping,
        ..
    } = accept.clone();
    loop {
        // Take a slot before accepting: past max-connections, clients wait
        // in the kernel's backlog instead of being accepted and starved.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stopping.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((stream, peer)) => accept.serve(stream, peer, permit),
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
    if accept.drain {
        drain(listener, &accept);
    }
    // The listener closes here.
}

/// Accepts, without waiting, every connection queued on `listener` and
/// serves it: under `--reuseport` those were meant for this process, and
/// closing the listener would reset them unless the kernel migrates them
/// (see [`crate::listen`]). tokio's readiness may lag the queue, so this
/// asks the socket itself until it says `EAGAIN`.
fn drain(listener: TcpListener, accept: &Accept) {
    let Ok(listener) = listener.into_std() else {
        return;
    };
    loop {
        let Ok(permit) = accept.slots.clone().try_acquire_owned() else {
            tracing::warn!(
                "stopping at max-connections: connections still queued are left to the kernel"
            );
            return;
        };
        match listener.accept() {
            Ok((stream, peer)) => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream));
                match stream {
                    Ok(stream) => accept.serve(stream, peer, permit),
                    Err(e) => tracing::warn!("cannot serve a queued connection: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A connection reset while queued, or out of descriptors: the
            // rest stay queued for the kernel to migrate or reset.
            Err(e) => {
                tracing::warn!("draining the accept queue: {e}");
                if e.raw_os_error() != Some(libc::ECONNABORTED) {
                    return;
                }
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
