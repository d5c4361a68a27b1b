//! zcserve's backends: the ways of moving a byte range of a file into a
//! socket, each behind the same [`Transfer`] trait, and the one table that
//! lists them (as nginx lists its I/O methods in `ngx_os_io_t` and lighttpd
//! its `server.network-backend`s).
//!
//! ```
//! use zcserve_backends::{Backend, Choice, Config};
//!
//! let backend: Backend = "splice".parse()?;          // or "sendfile", "copy", ...
//! let transfer = backend.build(&Config::default())?; // Arc<dyn Transfer>
//! assert_eq!(transfer.name(), backend.name());
//! for b in Backend::ALL {
//!     println!("{b:10} {}", b.description());
//! }
//! // `auto` is a policy over two backends, picking one per response:
//! let auto: Choice = "auto".parse()?;
//! let transfer = auto.build(&Config::default())?;
//! println!("auto: {}", auto.rule(&Config::default()));
//! # Ok::<(), zcserve_core::TransferError>(())
//! ```
//!
//! Each backend is one file holding a [`zcserve_core::Mover`] and its
//! [`zcserve_core::Step`], and one row of [`TABLE`]; everything that picks
//! or lists backends (the CLI, `auto`, tests, benches) reads the table.
//! What a user names with `--backend` is a [`Choice`]: one backend, or
//! `auto`, which picks `copy` or `sendfile` for each response by its size.
//! Linux-only backends are compiled only on Linux; their rows stay, so
//! elsewhere they are listed and refused with the reason.
//!
//! Writes from memory use `MSG_NOSIGNAL`; `sendfile` and `splice` take no
//! such flag (nor does any send on macOS), so building any backend makes
//! sure `SIGPIPE` is ignored (Rust binaries already ignore it; a handler the
//! host installed is kept), and a peer that went away shows up as `EPIPE`,
//! never as a dead process.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use zcserve_core::disk::{Cold, PoolConfig};
use zcserve_core::{Pumping, Stats};
pub use zcserve_core::{Transfer, TransferError};

mod auto;
mod config;
mod copy;
mod mmap;
#[cfg(target_os = "linux")]
mod pipe;
mod pool;
#[cfg(target_os = "linux")]
mod sendfile;
mod sigpipe;
#[cfg(target_os = "linux")]
mod splice;
#[cfg(target_os = "linux")]
mod uring;

pub use config::Config;

/// `Some(f)` where this build is for Linux, else `None` (the backend's code
/// is not compiled there).
#[cfg(target_os = "linux")]
macro_rules! linux {
    ($f:expr) => {
        Some($f)
    };
}
#[cfg(not(target_os = "linux"))]
macro_rules! linux {
    ($f:expr) => {
        None
    };
}

/// Every backend, one row each; [`Backend`] is a row of this table.
pub const TABLE: &[Row] = &[
    Row {
        name: "sendfile",
        description: "sendfile(2): the kernel moves page-cache pages into the socket",
        platforms: "Linux",
        probe: None,
        build: linux!(sendfile::build),
    },
    Row {
        name: "splice",
        description: "splice(2): file -> pooled pipe -> socket, no copy through user space",
        platforms: "Linux",
        probe: None,
        build: linux!(splice::build),
    },
    Row {
        name: "mmap",
        description: "map the range and send from the mapping (one copy, in the kernel)",
        platforms: "Unix",
        probe: None,
        build: Some(mmap::build),
    },
    Row {
        name: "copy",
        description: "pread into a pooled buffer, then send: the portable baseline",
        platforms: "Unix",
        probe: None,
        build: Some(copy::build),
    },
    Row {
        name: "uring",
        description: "io_uring SPLICE chains file -> pipe -> socket, completion-driven",
        platforms: "Linux with io_uring enabled",
        probe: linux!(uring::probe),
        build: linux!(uring::build),
    },
];

/// One backend: what it is called, what it does, where it runs, and its code.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The name used on the command line.
    pub name: &'static str,
    /// What it does, in one line.
    pub description: &'static str,
    /// Where it runs, in words.
    pub platforms: &'static str,
    /// Whether this kernel and process can run the backend, and if not,
    /// why, for a backend that depends on more than the platform; cached
    /// by the backend, so it runs once per process.
    probe: Option<fn() -> Result<(), String>>,
    /// Makes the backend; `None` where this build's platform lacks it. The
    /// registry has validated the config, probed, and made sure SIGPIPE is
    /// ignored.
    build: Option<Build>,
}

/// A backend file's constructor.
type Build = fn(&Config, Pumping) -> Result<Arc<dyn Transfer>, TransferError>;

/// A backend: a row of [`TABLE`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend(usize);

// The names other crates use for particular backends.
#[allow(non_upper_case_globals)]
impl Backend {
    /// `sendfile(2)`.
    pub const Sendfile: Backend = Backend::named("sendfile");
    /// `splice(2)` through a pipe.
    pub const Splice: Backend = Backend::named("splice");
    /// `mmap` + `send`.
    pub const Mmap: Backend = Backend::named("mmap");
    /// `pread` + `send`.
    pub const Copy: Backend = Backend::named("copy");
    /// io_uring splice through a pipe.
    pub const Uring: Backend = Backend::named("uring");
}

impl Backend {
    /// Every backend, available here or not, in table order.
    pub const ALL: [Backend; TABLE.len()] = {
        let mut all = [Backend(0); TABLE.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = Backend(i);
            i += 1;
        }
        all
    };

    /// The backend called `name`; a name not in the table fails the build.
    const fn named(name: &str) -> Backend {
        let mut i = 0;
        while i < TABLE.len() {
            if same(TABLE[i].name.as_bytes(), name.as_bytes()) {
                return Backend(i);
            }
            i += 1;
        }
        panic!("no backend of that name in TABLE")
    }

    const fn row(self) -> &'static Row {
        &TABLE[self.0]
    }

    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        self.row().name
    }

    /// What the backend does, in one line.
    pub const fn description(self) -> &'static str {
        self.row().description
    }

    /// Whether this build on this kernel can run the backend, and if not,
    /// why. A backend with a probe (uring: the kernel or a policy may refuse
    /// io_uring at run time) is probed once per process; the others depend
    /// on the platform only.
    pub fn check(self) -> Result<(), TransferError> {
        let row = self.row();
        let unavailable = |reason: String| TransferError::Unavailable {
            backend: row.name,
            reason,
        };
        if row.build.is_none() {
            return Err(unavailable(format!("it needs {}", row.platforms)));
        }
        match row.probe {
            Some(probe) => probe().map_err(unavailable),
            None => Ok(()),
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

    /// The backend [`Choice::Auto`] sends large bodies with: `sendfile` on
    /// Linux, `copy` elsewhere (the portable one); bodies below
    /// [`Config::auto_threshold`] go through `copy`.
    ///
    /// `sendfile` copies nothing through user space, makes one syscall per
    /// chunk where splice makes two, holds no pipe or ring, and is the one
    /// that did not fall behind on large files (results/FINDINGS.md §5, §7).
    pub const fn auto() -> Backend {
        if cfg!(target_os = "linux") {
            Backend::Sendfile
        } else {
            Backend::Copy
        }
    }

    /// Makes the backend with `config`: checks the config and the backend's
    /// availability, makes sure SIGPIPE is ignored (counted in the new
    /// backend's stats), then runs the backend's own build.
    pub fn build(self, config: &Config) -> Result<Arc<dyn Transfer>, TransferError> {
        self.build_with(config, cold(config)?)
    }

    /// [`Backend::build`] with the disk's oracle and pool given rather than
    /// made from `config.disk_threads` (tests hold reads on a latch with
    /// it); `None` reads on the pump's thread.
    pub fn build_with(
        self,
        config: &Config,
        cold: Option<Cold>,
    ) -> Result<Arc<dyn Transfer>, TransferError> {
        config.validate()?;
        self.check()?;
        let build = self.row().build.expect("check passed, so the code is here");
        let stats = Arc::new(Stats::new());
        sigpipe::ensure_ignored(&stats)?;
        let pumping = Pumping::new(self.name(), stats, config.max_chunk).cold(cold);
        build(config, pumping)
    }
}

/// The disk's oracle and pool `config.disk_threads` asks for.
fn cold(config: &Config) -> Result<Option<Cold>, TransferError> {
    Cold::with_pool(PoolConfig {
        threads: config.disk_threads,
        priority: config.disk_priority,
        ..PoolConfig::default()
    })
    .map(|cold| {
        cold.map(|c| {
            c.with_pool_sends(config.cold_sends_on_pool)
                .with_read_in(config.read_in)
        })
    })
    .map_err(|e| TransferError::InvalidConfig {
        setting: "disk_threads",
        reason: format!("cannot start {} disk threads: {e}", config.disk_threads),
    })
}

/// What `--backend` names: one backend, or `auto`, the policy that picks
/// `copy` or `sendfile` for each response by the length of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    /// Every response through this backend.
    One(Backend),
    /// `copy` below [`Config::auto_threshold`] bytes of body, from there
    /// [`Backend::auto`].
    Auto,
}

impl Choice {
    /// `auto`, or the backend's name.
    pub const fn name(self) -> &'static str {
        match self {
            Choice::One(b) => b.name(),
            Choice::Auto => "auto",
        }
    }

    /// How responses are sent, in words: the backend's name, or `auto`'s
    /// rule with `config`'s threshold ("copy below 32 KiB; sendfile from
    /// 32 KiB").
    pub fn rule(self, config: &Config) -> String {
        match self {
            Choice::One(b) => b.name().to_string(),
            Choice::Auto => auto::rule(config.auto_threshold),
        }
    }

    /// Builds the backend, or both of `auto`'s sharing one disk pool.
    pub fn build(self, config: &Config) -> Result<Arc<dyn Transfer>, TransferError> {
        self.build_with(config, cold(config)?)
    }

    /// [`Choice::build`] with the disk's oracle and pool given (see
    /// [`Backend::build_with`]); `auto`'s backends share it.
    pub fn build_with(
        self,
        config: &Config,
        cold: Option<Cold>,
    ) -> Result<Arc<dyn Transfer>, TransferError> {
        match self {
            Choice::One(b) => b.build_with(config, cold),
            Choice::Auto => auto::build(config, cold),
        }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Parses `auto` or a backend's name, case-insensitive.
impl FromStr for Choice {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(Choice::Auto)
        } else {
            s.parse().map(Choice::One)
        }
    }
}

/// `a == b`, in a const context on the workspace's oldest Rust.
const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Parses a backend name; `auto` gives [`Backend::auto`], the backend of
/// `auto`'s large bodies (parse a [`Choice`] for the per-response policy).
/// Case-insensitive.
impl FromStr for Backend {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let want = s.trim();
        if want.eq_ignore_ascii_case("auto") {
            return Ok(Backend::auto());
        }
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(want))
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
            assert!(!b.description().is_empty());
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
    fn choice_is_auto_or_one_backend() {
        assert_eq!(" Auto ".parse::<Choice>().unwrap(), Choice::Auto);
        assert_eq!(
            "SPLICE".parse::<Choice>().unwrap(),
            Choice::One(Backend::Splice)
        );
        assert_eq!(Choice::Auto.name(), "auto");
        assert_eq!(Choice::One(Backend::Mmap).rule(&Config::default()), "mmap");
        let msg = "nope".parse::<Choice>().unwrap_err().to_string();
        assert!(msg.contains("copy, uring, auto"), "{msg}");
        let t = Choice::Auto.build(&Config::default()).unwrap();
        assert_eq!(t.name(), "auto");
        assert!(!t.delegates().is_empty());
    }

    #[test]
    fn named_backends_are_their_rows() {
        for (b, name) in [
            (Backend::Sendfile, "sendfile"),
            (Backend::Splice, "splice"),
            (Backend::Mmap, "mmap"),
            (Backend::Copy, "copy"),
            (Backend::Uring, "uring"),
        ] {
            assert_eq!(b.name(), name);
        }
        let names: Vec<_> = TABLE.iter().map(|r| r.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "two rows share a name");
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
    fn building_counts_its_sigaction() {
        for b in Backend::available() {
            let t = b.build(&Config::default()).unwrap();
            let s = t.stats().snapshot();
            // One query; a second call only where SIGPIPE had the default
            // action (never in a Rust test binary, which ignores it).
            assert_eq!(s.syscalls(zcserve_core::Syscall::Sigaction), 1, "{b}: {s}");
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
