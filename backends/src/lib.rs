//! zcserve's backends: the ways of moving a byte range of a file into a
//! socket, each behind the same [`Transfer`] trait, and the table that
//! picks one by name (as nginx picks its `ngx_os_io_t` at start-up and
//! lighttpd its `server.network-backend`).
//!
//! ```
//! use zcserve_backends::{Backend, Config};
//!
//! let backend: Backend = "auto".parse()?;            // or "sendfile", "copy", ...
//! let transfer = backend.build(&Config::default())?; // Arc<dyn Transfer>
//! assert_eq!(transfer.name(), backend.name());
//! # Ok::<(), zcserve_core::TransferError>(())
//! ```
//!
//! | backend | how | platforms |
//! |---|---|---|
//! | `sendfile` | `sendfile(2)` file -> socket | Linux |
//! | `splice` | `splice(2)` file -> pooled pipe -> socket | Linux |
//! | `mmap` | map the range, `send` from the mapping | Unix |
//! | `copy` | `pread` into a pooled buffer, `send` | Unix |
//! | `uring` | io_uring `SPLICE` file -> pipe -> socket, completion-driven | Linux with io_uring enabled |
//!
//! One file per backend; Linux-only ones are compiled only on Linux.
//! Writes from memory use `MSG_NOSIGNAL`; `sendfile` and `splice` take no
//! such flag (nor does any send on macOS), so building any backend makes sure `SIGPIPE` is ignored (Rust
//! binaries already ignore it; a handler the host installed is kept), and a
//! peer that went away shows up as `EPIPE`, never as a dead process.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use zcserve_core::{Transfer, TransferError};

mod copy;
mod mmap;
#[cfg(target_os = "linux")]
mod pipe;
mod pool;
#[cfg(target_os = "linux")]
mod sendfile;
mod sigpipe;
mod sock;
#[cfg(target_os = "linux")]
mod splice;
#[cfg(target_os = "linux")]
mod uring;

pub use copy::Copy;
pub use mmap::Mmap;
#[cfg(target_os = "linux")]
pub use sendfile::{MAX_SENDFILE, Sendfile};
#[cfg(target_os = "linux")]
pub use splice::Splice;
#[cfg(target_os = "linux")]
pub use uring::Uring;

/// Knobs of the backends; each backend reads the ones it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most bytes one pump sends before yielding to other connections
    /// (nginx's `sendfile_max_chunk`). All backends; it also bounds a single
    /// sendfile/splice call and uring's chains.
    pub max_chunk: usize,
    /// Requested capacity of each splice pipe (`F_SETPIPE_SZ`).
    pub pipe_size: usize,
    /// Size of each copy buffer.
    pub buffer_size: usize,
    /// Idle pipes or buffers a backend keeps for reuse.
    pub max_idle: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // lighttpd's size per sendfile call. Measured with zcbench on
            // loopback: 256 KiB moved 1 MiB x 16 and 256 MiB x 1 1.5-2x
            // faster, at less CPU per GB, than 2 MiB; 128 KiB was slower
            // again (README, Results).
            max_chunk: 256 << 10,
            pipe_size: 1 << 20,
            buffer_size: 128 << 10,
            max_idle: 64,
        }
    }
}

impl Config {
    /// Checks that every knob has a usable value.
    pub fn validate(&self) -> Result<(), TransferError> {
        let positive = |setting: &'static str, v: usize| {
            if v == 0 {
                Err(TransferError::InvalidConfig {
                    setting,
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("max_chunk", self.max_chunk)?;
        positive("pipe_size", self.pipe_size)?;
        positive("buffer_size", self.buffer_size)?;
        if self.pipe_size > i32::MAX as usize {
            return Err(TransferError::InvalidConfig {
                setting: "pipe_size",
                reason: format!("{} is larger than the kernel accepts", self.pipe_size),
            });
        }
        Ok(())
    }
}

/// The backends by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `sendfile(2)`.
    Sendfile,
    /// `splice(2)` through a pipe.
    Splice,
    /// `mmap` + `send`.
    Mmap,
    /// `pread` + `send`.
    Copy,
    /// io_uring splice through a pipe.
    Uring,
}

impl Backend {
    /// Every backend, available here or not.
    pub const ALL: [Backend; 5] = [
        Backend::Sendfile,
        Backend::Splice,
        Backend::Mmap,
        Backend::Copy,
        Backend::Uring,
    ];

    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Sendfile => "sendfile",
            Backend::Splice => "splice",
            Backend::Mmap => "mmap",
            Backend::Copy => "copy",
            Backend::Uring => "uring",
        }
    }

    /// Whether this build on this kernel can run the backend, and if not,
    /// why. `uring` is probed once per process (the kernel or a policy may
    /// refuse io_uring at run time); the others depend on the platform only.
    pub fn check(self) -> Result<(), TransferError> {
        let unavailable = |reason: &str| {
            Err(TransferError::Unavailable {
                backend: self.name(),
                reason: reason.into(),
            })
        };
        match self {
            Backend::Mmap | Backend::Copy => Ok(()),
            Backend::Sendfile | Backend::Splice if cfg!(target_os = "linux") => Ok(()),
            Backend::Sendfile | Backend::Splice => unavailable("it needs Linux"),
            #[cfg(target_os = "linux")]
            Backend::Uring => {
                static PROBE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
                match PROBE.get_or_init(|| {
                    Uring::new(&Config::default())
                        .map(drop)
                        .map_err(|e| match e {
                            TransferError::Unavailable { reason, .. } => reason,
                            other => other.to_string(),
                        })
                }) {
                    Ok(()) => Ok(()),
                    Err(reason) => unavailable(reason),
                }
            }
            #[cfg(not(target_os = "linux"))]
            Backend::Uring => unavailable("it needs Linux"),
        }
    }

    /// True when [`Backend::check`] passes.
    pub fn is_available(self) -> bool {
        self.check().is_ok()
    }

    /// The backends this platform can run.
    pub fn available() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| b.is_available())
            .collect()
    }

    /// The backend `auto` stands for here.
    ///
    /// On Linux, `sendfile`. Measured with zcbench on this project's 2-core
    /// VM over loopback (README, "Results"), no backend is best everywhere:
    /// `copy` leads 4 KiB requests by ~7 % (one `sendmsg` carries head and
    /// body) and `splice` leads 1 MiB x 16 (8.4 vs 5.9 GB/s), but `sendfile`
    /// is 2x every other backend on one 256 MiB download, where `splice`
    /// falls to half, at about half their CPU per GB. It copies nothing
    /// through user space, makes one syscall per chunk where splice makes
    /// two, and holds no pipe or ring.
    /// Elsewhere, `copy`, the portable one.
    pub const fn auto() -> Backend {
        if cfg!(target_os = "linux") {
            Backend::Sendfile
        } else {
            Backend::Copy
        }
    }

    /// Makes the backend with `config`.
    pub fn build(self, config: &Config) -> Result<Arc<dyn Transfer>, TransferError> {
        if !matches!(self, Backend::Uring) {
            // uring's constructor says itself, in more detail, why not.
            self.check()?;
        }
        Ok(match self {
            #[cfg(target_os = "linux")]
            Backend::Sendfile => Arc::new(Sendfile::new(config)?),
            #[cfg(target_os = "linux")]
            Backend::Splice => Arc::new(Splice::new(config)?),
            Backend::Mmap => Arc::new(Mmap::new(config)?),
            Backend::Copy => Arc::new(Copy::new(config)?),
            #[cfg(target_os = "linux")]
            Backend::Uring => Arc::new(Uring::new(config)?),
            #[cfg(not(target_os = "linux"))]
            Backend::Sendfile | Backend::Splice | Backend::Uring => {
                unreachable!("checked above")
            }
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a backend name; `auto` gives [`Backend::auto`]. Case-insensitive.
impl FromStr for Backend {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let want = s.trim().to_ascii_lowercase();
        if want == "auto" {
            return Ok(Backend::auto());
        }
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == want)
            .ok_or_else(|| TransferError::UnknownBackend {
                name: s.to_string(),
                known: Backend::ALL
                    .iter()
                    .map(|b| b.name())
                    .chain(["auto"])
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_a_clear_error() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(b.name().to_uppercase().parse::<Backend>().unwrap(), b);
        }
        assert_eq!("auto".parse::<Backend>().unwrap(), Backend::auto());
        let err = "sendfiel".parse::<Backend>().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"sendfiel\"") && msg.contains("splice, mmap, copy, uring, auto"),
            "{msg}"
        );
    }

    #[test]
    fn auto_is_available_and_all_available_ones_build() {
        assert!(Backend::auto().is_available());
        for b in Backend::available() {
            let t = b.build(&Config::default()).unwrap();
            assert_eq!(t.name(), b.name());
        }
    }

    #[test]
    fn zero_knobs_are_rejected_by_every_backend() {
        for (setting, cfg) in [
            (
                "max_chunk",
                Config {
                    max_chunk: 0,
                    ..Config::default()
                },
            ),
            (
                "pipe_size",
                Config {
                    pipe_size: 0,
                    ..Config::default()
                },
            ),
            (
                "buffer_size",
                Config {
                    buffer_size: 0,
                    ..Config::default()
                },
            ),
        ] {
            for b in Backend::available() {
                match b.build(&cfg) {
                    Err(TransferError::InvalidConfig { setting: s, .. }) => assert_eq!(s, setting),
                    other => panic!("{b} with {setting}=0 gave {:?}", other.map(|t| t.name())),
                }
            }
        }
    }
}
