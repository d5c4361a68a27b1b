//! A server's process tree, read from `/proc`: which processes belong to it,
//! the CPU time they used and the memory they hold, and stopping a whole
//! process group.
//!
//! A server is more than one process when it has workers (nginx's master
//! and worker) or is started through a script or `sh -c`. Its tree is the
//! root process, every process descended from it (by parent pid), and, when
//! the root leads a process group, every member of that group: a
//! grandchild whose parent exited is re-parented away but keeps the group.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What `/proc/PID/stat` says about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Process group id.
    pub pgrp: u32,
    /// State letter: `R`, `S`, `Z` (zombie), ...
    pub state: char,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
    /// cutime + cstime (children waited for), in clock ticks.
    pub child_ticks: u64,
}

/// Parses the text of `/proc/PID/stat`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. From there: state(0) ppid(1) pgrp(2) ... utime(11)
    // stime(12) cutime(13) cstime(14).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(ProcStat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: u32::try_from(num(1)?).ok()?,
        pgrp: u32::try_from(num(2)?).ok()?,
        ticks: num(11)? + num(12)?,
        child_ticks: num(13)? + num(14)?,
    })
}

/// The stat of `pid`, if it exists.
pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process visible in `/proc`.
pub fn all() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// The processes of the tree rooted at `root` among `procs` (see the module
/// documentation), the root first; zombies are left out.
pub fn tree_of(root: u32, procs: &[ProcStat]) -> Vec<ProcStat> {
    let mut children: HashMap<u32, Vec<&ProcStat>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let leads_group = procs.iter().any(|p| p.pid == root && p.pgrp == root);
    let mut out: Vec<ProcStat> = Vec::new();
    let mut queue: Vec<&ProcStat> = procs.iter().filter(|p| p.pid == root).collect();
    if leads_group {
        queue.extend(procs.iter().filter(|p| p.pgrp == root && p.pid != root));
    }
    while let Some(p) = queue.pop() {
        if out.iter().any(|q| q.pid == p.pid) {
            continue;
        }
        out.push(*p);
        if let Some(c) = children.get(&p.pid) {
            queue.extend(c.iter().copied());
        }
    }
    out.retain(|p| p.state != 'Z');
    // Root first, then by pid, so the order is stable.
    out.sort_by_key(|p| (p.pid != root, p.pid));
    out
}

/// The living processes of `root`'s tree, now.
pub fn tree(root: u32) -> Vec<ProcStat> {
    tree_of(root, &all())
}

/// Seconds per clock tick.
fn tick() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1.0 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU seconds (user + system, of each process and of the children it has
/// waited for) used by `root`'s tree; `None` when `root` does not exist.
///
/// A process's time moves into its parent's children's time when the
/// parent waits for it, so nothing is counted twice; time of a process
/// that exited and was reaped outside the tree is lost.
pub fn cpu_seconds(root: u32) -> Option<f64> {
    let t = tree(root);
    if t.is_empty() {
        return None;
    }
    let ticks: u64 = t.iter().map(|p| p.ticks + p.child_ticks).sum();
    Some(ticks as f64 * tick())
}

/// The value in KiB of `field` (`VmRSS`, `VmHWM`) in `/proc/PID/status`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `field` (`VmRSS`, `VmHWM`) summed over `root`'s tree, and how many
/// processes it has; `None` when `root` does not exist. Pages shared
/// between the processes count once per process.
pub fn memory_kib(root: u32, field: &str) -> Option<(u64, usize)> {
    let t = tree(root);
    if t.is_empty() {
        return None;
    }
    let kib = t.iter().filter_map(|p| status_kib(p.pid, field)).sum();
    Some((kib, t.len()))
}

/// Resets the peak resident set (`VmHWM`) of every process in `root`'s
/// tree, so that the next peak read is of what follows.
pub fn reset_peaks(root: u32) {
    for p in tree(root) {
        // Writing 5 to clear_refs resets VmHWM.
        let _ = std::fs::write(format!("/proc/{}/clear_refs", p.pid), "5");
    }
}

/// Whether process group `pgid` still has a living (non-zombie) member.
pub fn group_alive(pgid: u32) -> bool {
    all().iter().any(|p| p.pgrp == pgid && p.state != 'Z')
}

/// Sends `sig` to process group `pgid`.
pub fn signal_group(pgid: u32, sig: libc::c_int) {
    let Ok(g) = i32::try_from(pgid) else {
        return;
    };
    if g > 1 {
        // SAFETY: kill has no memory-safety preconditions; a negative pid
        // names a process group, and g > 1 rules out "every process".
        unsafe {
            libc::kill(-g, sig);
        }
    }
}

/// Stops process group `pgid`: SIGTERM, then SIGKILL if any member still
/// lives after `grace`; `reap` is called while waiting (to wait for the
/// direct child, which would stay a zombie otherwise). Returns once no
/// living member is left, or after SIGKILL and a further second.
pub fn stop_group(pgid: u32, grace: Duration, mut reap: impl FnMut()) {
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        reap();
        if !group_alive(pgid) {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_group(pgid, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        reap();
        if !group_alive(pgid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, pgrp: u32, state: char) -> ProcStat {
        ProcStat {
            pid,
            ppid,
            pgrp,
            state,
            ticks: 1,
            child_ticks: 0,
        }
    }

    #[test]
    fn stat_lines_parse_with_odd_names() {
        let s = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                 7 3 2 1 20 0 1 0 12345 1000 100 18446744073709551615";
        let st = parse_stat(s).unwrap();
        assert_eq!(
            st,
            ProcStat {
                pid: 4242,
                ppid: 1,
                pgrp: 4242,
                state: 'S',
                ticks: 10,
                child_ticks: 3
            }
        );
        assert!(parse_stat("garbage").is_none());
        let me = stat(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
    }

    #[test]
    fn trees_follow_parents_and_the_group() {
        let procs = [
            p(1, 0, 1, 'S'),
            p(10, 1, 10, 'S'),  // the root, leading group 10
            p(11, 10, 10, 'S'), // its child
            p(12, 11, 12, 'S'), // grandchild in a group of its own
            p(13, 1, 10, 'S'),  // re-parented, still in the group
            p(14, 10, 10, 'Z'), // a zombie
            p(20, 1, 20, 'S'),  // unrelated
        ];
        let pids: Vec<u32> = tree_of(10, &procs).iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![10, 11, 12, 13]);
        // Not a group leader: its group is not followed.
        let pids: Vec<u32> = tree_of(11, &procs).iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![11, 12]);
        assert!(tree_of(99, &procs).is_empty());
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let (rss, n) = memory_kib(std::process::id(), "VmRSS").unwrap();
        assert!(rss > 0 && n >= 1);
        assert!(cpu_seconds(std::process::id()).is_some());
        assert!(status_kib(std::process::id(), "VmHWM").is_some());
        assert!(status_kib(std::process::id(), "NoSuchField").is_none());
    }
}
