//! Reading an `strace -f` log as the independent count that a backend's own
//! counters ([`zcserve_core::Stats`]) are held against.
//!
//! The traced program marks a window on one thread with [`mark`] (a harmless
//! `access(2)` of a path no one uses, which strace logs like any call);
//! [`Window`] then takes the calls that thread made between the two marks.
//! Other threads (a reader draining the socket, the test harness) and
//! everything before and after the window (the runtime's start-up, building
//! the file and the sockets) drop out, so what is left is the work of the
//! sessions run inside it.

use std::collections::{BTreeMap, HashMap};

use zcserve_core::Syscall;

/// The path whose `access(2)` opens a window.
pub const BEGIN: &str = "/zcserve-strace-window-begin";
/// The path whose `access(2)` closes a window.
pub const END: &str = "/zcserve-strace-window-end";

/// Makes a call that strace logs with `marker` in it (see [`BEGIN`] and
/// [`END`]); its result does not matter.
pub fn mark(marker: &str) {
    let _ = nix::unistd::access(marker, nix::unistd::AccessFlags::F_OK);
}

/// One call as strace logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The thread that made it.
    pub tid: u32,
    /// The syscall's name (`sendfile`, `pread64`, ...).
    pub name: String,
    /// The rest of the line: arguments and result.
    pub rest: String,
}

/// Parses the lines of `strace -f -o FILE` into calls. A call another
/// thread interrupted in the log (`... <unfinished ...>`, then later
/// `<... name resumed> ...`) is joined back into one; signals and exits
/// are left out.
pub fn parse(log: &str) -> Vec<Call> {
    const UNFINISHED: &str = " <unfinished ...>";
    let mut calls: Vec<Call> = Vec::new();
    let mut open: HashMap<u32, usize> = HashMap::new();
    for line in log.lines() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(tid) = tid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            if let Some(i) = open.remove(&tid) {
                calls[i].rest.push_str(tail);
            }
            continue;
        }
        let Some(paren) = rest.find('(') else {
            continue;
        };
        let name = &rest[..paren];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let mut args = rest[paren..].to_string();
        if let Some(cut) = args.strip_suffix(UNFINISHED) {
            args = cut.to_string();
            open.insert(tid, calls.len());
        }
        calls.push(Call {
            tid,
            name: name.to_string(),
            rest: args,
        });
    }
    calls
}

/// Where a window lies in a parsed trace: the calls of the thread that
/// marked it, and of every thread it started inside it (threads the
/// backend's work started, such as uring's reaper), between the marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The thread that marked it.
    pub tid: u32,
    /// The index of its [`BEGIN`] mark.
    pub begin: usize,
    /// The index of its [`END`] mark.
    pub end: usize,
    /// Threads the marking thread started inside the window.
    pub born: Vec<u32>,
}

impl Window {
    /// Finds the window in `calls`. Fails unless exactly one thread marked
    /// exactly one window.
    pub fn find(calls: &[Call]) -> Result<Window, String> {
        let begins: Vec<usize> = positions(calls, BEGIN);
        let [begin] = begins[..] else {
            return Err(format!("{} window begin marks in the trace", begins.len()));
        };
        let ends: Vec<usize> = positions(calls, END);
        let [end] = ends[..] else {
            return Err(format!("{} window end marks in the trace", ends.len()));
        };
        let tid = calls[begin].tid;
        if calls[end].tid != tid || end < begin {
            return Err(
                "the window's end was not marked after its begin by the same thread".into(),
            );
        }
        // Threads the marking thread started inside the window: the tids
        // its clone calls there returned.
        let born = calls[begin + 1..end]
            .iter()
            .filter(|c| c.tid == tid && (c.name == "clone" || c.name == "clone3"))
            .filter_map(|c| c.rest.rsplit_once(" = ")?.1.trim().parse::<u32>().ok())
            .collect();
        Ok(Window {
            tid,
            begin,
            end,
            born,
        })
    }

    /// Whether the call at `index` of the trace, made by `tid`, is inside.
    pub fn holds(&self, index: usize, tid: u32) -> bool {
        (tid == self.tid || self.born.contains(&tid)) && index > self.begin && index < self.end
    }

    /// The calls the marking thread made between the marks.
    pub fn calls<'a>(&self, all: &'a [Call]) -> Vec<&'a Call> {
        all.iter()
            .enumerate()
            .filter(|(i, c)| self.holds(*i, c.tid))
            .map(|(_, c)| c)
            .collect()
    }
}

fn positions(calls: &[Call], marker: &str) -> Vec<usize> {
    let quoted = format!("\"{marker}\"");
    calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.rest.contains(&quoted))
        .map(|(i, _)| i)
        .collect()
}

/// The names strace may print for `kind`: the C library may reach a call
/// through a newer syscall (glibc's `fstat` is `newfstatat`, `poll` is
/// `ppoll` where there is no `poll`).
pub fn strace_names(kind: Syscall) -> &'static [&'static str] {
    match kind {
        Syscall::Fstat => &["fstat", "newfstatat", "fstat64", "fstatat64"],
        Syscall::Poll => &["poll", "ppoll"],
        Syscall::Mmap => &["mmap", "mmap2"],
        Syscall::Send => &["sendto", "send"],
        Syscall::Pipe => &["pipe2", "pipe"],
        Syscall::Fcntl => &["fcntl", "fcntl64"],
        Syscall::Sigaction => &["rt_sigaction"],
        Syscall::Sendfile => &["sendfile", "sendfile64"],
        Syscall::Splice => &["splice"],
        Syscall::Pread => &["pread64"],
        Syscall::Sendmsg => &["sendmsg"],
        Syscall::Madvise => &["madvise"],
        Syscall::Munmap => &["munmap"],
        Syscall::UringSetup => &["io_uring_setup"],
        Syscall::UringEnter => &["io_uring_enter"],
        Syscall::UringRegister => &["io_uring_register"],
        _ => &[],
    }
}

/// Calls in a window that are nobody's transfer work and that [`Stats`]
/// has no kind for: the allocator's (`brk`; its anonymous `mmap`s and the
/// `munmap`s of them are told apart in [`tally`]), closing descriptors,
/// waking or waiting on a lock, and the kernel resuming a call a signal or
/// io_uring's task work interrupted (`restart_syscall`, which the program
/// made once), and starting a thread (uring's reaper is started on first
/// use: `clone3`, and the new thread's own set-up, which the C library and
/// the Rust runtime make).
///
/// [`Stats`]: zcserve_core::Stats
const NOT_TRANSFER_WORK: &[&str] = &[
    "brk",
    "close",
    "futex",
    "restart_syscall",
    "clone",
    "clone3",
    "gettid",
    "mprotect",
    "prctl",
    "rseq",
    "rt_sigprocmask",
    "sched_getaffinity",
    "set_robust_list",
    "sigaltstack",
];

/// What a window's calls add up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Calls of each kind the backends count.
    pub counted: BTreeMap<&'static str, u64>,
    /// Calls that are none of [`Syscall::ALL`] and not known to be outside
    /// the transfer's work: each one is a call no counter can show.
    pub unknown: BTreeMap<String, u64>,
    /// The allocator's and other calls left out, by name, for the record.
    pub left_out: BTreeMap<String, u64>,
}

impl Tally {
    /// How many calls of `kind` strace saw.
    pub fn of(&self, kind: Syscall) -> u64 {
        self.counted.get(kind.name()).copied().unwrap_or(0)
    }
}

/// Sorts the calls inside `window` by [`Syscall`] kind.
///
/// Memory the allocator maps is not a backend's: an anonymous `mmap`, and a
/// `munmap` or `madvise` of an address inside an anonymous mapping, are left
/// out. Which mapping an address belongs to is followed through the whole
/// trace in order (every thread's calls, since memory may be freed by a
/// thread other than the one that mapped it, and the kernel reuses
/// addresses). An `fcntl(fd, F_GETFD)` right before `close(fd)` is the
/// standard library's check (in debug builds) that the descriptor it closes
/// is open: part of closing, not a call of the backend's.
pub fn tally(all: &[Call], window: &Window) -> Tally {
    let mut maps = Mappings::default();
    let mut t = Tally::default();
    for (i, c) in all.iter().enumerate() {
        let inside = window.holds(i, c.tid);
        let name = c.name.as_str();
        let allocator = if strace_names(Syscall::Mmap).contains(&name) {
            let anon = c.rest.contains("MAP_ANONYMOUS");
            maps.mapped(c, anon);
            anon
        } else if name == "munmap" || name == "madvise" {
            let anon = maps.anonymous_at(c);
            if name == "munmap" {
                maps.unmapped(c);
            }
            anon
        } else if name == "fcntl" && c.rest.contains("F_GETFD") {
            all[i + 1..]
                .iter()
                .find(|n| n.tid == c.tid)
                .is_some_and(|n| n.name == "close" && arg(&n.rest, 0) == arg(&c.rest, 0))
        } else {
            false
        };
        if !inside {
            continue;
        }
        let kind = Syscall::ALL
            .into_iter()
            .find(|&k| strace_names(k).contains(&name));
        match kind {
            Some(k) if !allocator => *t.counted.entry(k.name()).or_default() += 1,
            _ if allocator || NOT_TRANSFER_WORK.contains(&name) => {
                *t.left_out.entry(c.name.clone()).or_default() += 1
            }
            _ => *t.unknown.entry(c.name.clone()).or_default() += 1,
        }
    }
    t
}

/// The mappings a trace made, by start address: length and whether
/// anonymous.
#[derive(Debug, Default)]
struct Mappings(BTreeMap<u64, (u64, bool)>);

impl Mappings {
    fn mapped(&mut self, c: &Call, anon: bool) {
        let (Some(at), Some(len)) = (
            result_of(&c.rest).and_then(number),
            arg(&c.rest, 1).and_then(number),
        ) else {
            return;
        };
        self.0.insert(at, (len, anon));
    }

    fn unmapped(&mut self, c: &Call) {
        if let Some(at) = arg(&c.rest, 0).and_then(number) {
            self.0.remove(&at);
        }
    }

    /// Whether the address `c` names lies in an anonymous mapping.
    fn anonymous_at(&self, c: &Call) -> bool {
        let Some(at) = arg(&c.rest, 0).and_then(number) else {
            return false;
        };
        self.0
            .range(..=at)
            .next_back()
            .is_some_and(|(&start, &(len, anon))| anon && at < start + len)
    }
}

/// `0x1f` or `31`.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The `n`th argument of `(a, b, c) = r` (arguments without commas of
/// their own, such as addresses, lengths and descriptors).
fn arg(rest: &str, n: usize) -> Option<&str> {
    rest.strip_prefix('(')?
        .split([',', ')'])
        .nth(n)
        .map(str::trim)
}

/// `0x7f..` from `(...) = 0x7f..`.
fn result_of(rest: &str) -> Option<&str> {
    rest.rsplit_once(" = ")
        .map(|(_, r)| r.split_whitespace().next().unwrap_or(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thread 100 marks the window; 101 is a reader. Inside: the
    /// allocator maps 0x...2000 anonymously and frees it, the kernel then
    /// hands the same address to a file mapping, which is the backend's; a
    /// madvise inside the anonymous arena at 0x...a000 is the allocator's.
    const LOG: &str = r#"100 execve("/x", ["x"], 0x7ffd /* 3 vars */) = 0
100 mmap(NULL, 135168, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000001000
101 mmap(NULL, 67108864, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, -1, 0) = 0x7f000000a000
101 read(5,  <unfinished ...>
100 access("/zcserve-strace-window-begin", F_OK) = -1 ENOENT (No such file or directory)
100 sendfile(4, 3, [0] => [262144], 262144) = 262144
101 <... read resumed>"abc", 262144) = 3
100 sendfile(4, 3, [262144], 262144 <unfinished ...>
101 sendfile(9, 8, NULL, 1) = 1
100 <... sendfile resumed>) = -1 EAGAIN (Resource temporarily unavailable)
100 poll([{fd=4, events=POLLOUT}], 1, -1) = 1 ([{fd=4, revents=POLLOUT}])
100 mmap(NULL, 4096, PROT_READ, MAP_SHARED, 3, 0) = 0x7f0000009000
100 madvise(0x7f0000009000, 4096, MADV_SEQUENTIAL) = 0
100 mmap(NULL, 135168, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>
101 close(9) = 0
100 <... mmap resumed>) = 0x7f0000002000
100 munmap(0x7f0000001000, 135168) = 0
100 munmap(0x7f0000002000, 135168) = 0
100 mmap(NULL, 8192, PROT_READ, MAP_SHARED, 3, 0) = 0x7f0000002000
100 madvise(0x7f000000b000, 65536, MADV_DONTNEED) = 0
100 munmap(0x7f0000009000, 4096) = 0
100 munmap(0x7f0000002000, 8192) = 0
100 newfstatat(3, "", {st_mode=S_IFREG|0644, st_size=10, ...}, AT_EMPTY_PATH) = 0
100 fcntl(7, F_GETFD <unfinished ...>
101 close(10) = 0
100 <... fcntl resumed>) = 0x1 (flags FD_CLOEXEC)
100 close(7) = 0
100 fcntl(8, F_GETFD) = 0x1 (flags FD_CLOEXEC)
100 ioctl(4, FIONREAD, [0]) = 0
--- SIGCHLD {si_signo=SIGCHLD} ---
100 access("/zcserve-strace-window-end", F_OK) = -1 ENOENT (No such file or directory)
100 sendfile(4, 3, [0], 1) = 1
+++ exited with 0 +++
"#;

    #[test]
    fn the_window_is_one_threads_calls_between_the_marks() {
        let calls = parse(LOG);
        let w = Window::find(&calls).unwrap().calls(&calls);
        assert!(w.iter().all(|c| c.tid == 100), "{w:?}");
        let names: Vec<&str> = w.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sendfile",
                "sendfile",
                "poll",
                "mmap",
                "madvise",
                "mmap",
                "munmap",
                "munmap",
                "mmap",
                "madvise",
                "munmap",
                "munmap",
                "newfstatat",
                "fcntl",
                "close",
                "fcntl",
                "ioctl"
            ]
        );
    }

    #[test]
    fn the_tally_counts_kinds_and_names_what_no_counter_shows() {
        let calls = parse(LOG);
        let t = tally(&calls, &Window::find(&calls).unwrap());
        assert_eq!(t.of(Syscall::Sendfile), 2);
        assert_eq!(t.of(Syscall::Poll), 1);
        assert_eq!(
            t.of(Syscall::Mmap),
            2,
            "the file mappings, not the anonymous one"
        );
        assert_eq!(
            t.of(Syscall::Madvise),
            1,
            "of the file mapping, not the arena"
        );
        assert_eq!(
            t.of(Syscall::Munmap),
            2,
            "of the file mappings, one at an address the allocator had before"
        );
        assert_eq!(t.of(Syscall::Fstat), 1);
        assert_eq!(
            t.of(Syscall::Fcntl),
            1,
            "the one not closing its descriptor"
        );
        assert_eq!(t.of(Syscall::Splice), 0);
        assert_eq!(t.unknown, BTreeMap::from([("ioctl".to_string(), 1)]));
        assert_eq!(
            t.left_out,
            BTreeMap::from([
                ("close".to_string(), 1),
                ("fcntl".to_string(), 1),
                ("madvise".to_string(), 1),
                ("mmap".to_string(), 1),
                ("munmap".to_string(), 2)
            ])
        );
    }

    #[test]
    fn an_interrupted_call_is_one_call_with_its_result() {
        let calls = parse(LOG);
        let sendfiles: Vec<&Call> = calls
            .iter()
            .filter(|c| c.tid == 100 && c.name == "sendfile")
            .collect();
        assert_eq!(sendfiles.len(), 3);
        assert_eq!(
            sendfiles[1].rest,
            "(4, 3, [262144], 262144) = -1 EAGAIN (Resource temporarily unavailable)"
        );
        assert_eq!(calls.iter().filter(|c| c.name == "read").count(), 1);
    }

    #[test]
    fn a_trace_without_one_window_is_refused() {
        let calls = parse(LOG);
        assert!(Window::find(&calls[..3]).is_err(), "no marks");
        let mut twice = calls.clone();
        twice.extend(calls.iter().cloned());
        assert!(Window::find(&twice).is_err(), "two windows");
        let mut other = calls.clone();
        let end = other.iter().position(|c| c.rest.contains(END)).unwrap();
        other[end].tid = 101;
        assert!(Window::find(&other).is_err(), "ended by another thread");
    }

    #[test]
    fn every_kind_has_a_name_strace_prints() {
        for k in Syscall::ALL {
            assert!(strace_names(k).contains(&k.name()), "{k}");
        }
    }
}
