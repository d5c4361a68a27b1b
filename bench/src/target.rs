//! What zcbench loads: zcserve with each backend asked for, servers already
//! running at a URL, and servers it starts with a command; read from the
//! command line's `--backends`, `--peer`, `--peer-pid` and `--peer-cmd`.

use std::net::SocketAddr;
use std::path::Path;

use crate::launch::{self, Running, Setup};
use crate::peer::PeerCommand;

/// Something to load.
#[derive(Debug)]
pub struct Target {
    /// Its name in the report: `zcserve-sendfile`, `nginx`, ...
    pub name: String,
    /// How it is started.
    pub kind: Kind,
}

/// How a target is started.
#[derive(Debug)]
pub enum Kind {
    /// zcserve with this backend, started by zcbench.
    Zcserve(String),
    /// A server already running at a URL; its pid if given.
    Url {
        /// Where it listens.
        addr: SocketAddr,
        /// The URL path of the fixture directory, ending in '/'.
        base: String,
        /// The root of its process tree, for CPU and memory.
        pid: Option<u32>,
    },
    /// A server zcbench starts with a command.
    Cmd(PeerCommand),
}

impl Target {
    /// The zcserve backend, for zcserve targets.
    pub fn backend(&self) -> Option<String> {
        match &self.kind {
            Kind::Zcserve(b) => Some(b.clone()),
            _ => None,
        }
    }

    /// Starts (or, for a URL peer, looks up) its server.
    pub fn start(&self, setup: &Setup<'_>) -> Result<Running, String> {
        match &self.kind {
            Kind::Zcserve(b) => launch::start_zcserve(setup, b),
            Kind::Url { addr, base, pid } => Ok(Running::already(*addr, base.clone(), *pid)),
            Kind::Cmd(pc) => launch::start_peer(setup, pc),
        }
    }
}

/// The target flags as given on the command line.
#[derive(Debug, Clone, Copy)]
pub struct TargetArgs<'a> {
    /// `--backends`: names, `available`, or empty strings (none).
    pub backends: &'a [String],
    /// `--peer NAME=URL`.
    pub peers: &'a [String],
    /// `--peer-pid NAME=PID`.
    pub peer_pids: &'a [String],
    /// `--peer-cmd NAME=COMMAND`.
    pub peer_cmds: &'a [String],
}

/// The targets the arguments name, in order: zcserve backends (`available`
/// expands to every backend this kernel can run; the others are named on
/// stderr), URL peers, command peers. Names must be unique; zcserve must
/// exist at `zcserve` when a backend is asked for.
pub fn targets(args: TargetArgs<'_>, zcserve: &Path) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    let mut backends = Vec::new();
    for b in args.backends {
        if b == "available" {
            for b in zcserve_backends::Backend::ALL {
                match b.check() {
                    Ok(()) => backends.push(b.name().to_string()),
                    Err(e) => eprintln!("zcbench: skipping backend {b}: {e}"),
                }
            }
        } else {
            backends.push(b.clone());
        }
    }
    for b in &backends {
        if b.is_empty() {
            continue;
        }
        if !zcserve.is_file() {
            return Err(format!(
                "zcserve binary not found at {} (build it with `cargo build --release -p zcserve`, or pass --zcserve)",
                zcserve.display()
            ));
        }
        targets.push(Target {
            name: format!("zcserve-{b}"),
            kind: Kind::Zcserve(b.clone()),
        });
    }
    let mut pids = Vec::new();
    for p in args.peer_pids {
        let (name, pid) = p
            .split_once('=')
            .ok_or_else(|| format!("--peer-pid {p:?}: write NAME=PID"))?;
        let pid = pid
            .parse::<u32>()
            .map_err(|_| format!("--peer-pid {name}: {pid:?} is not a pid"))?;
        if !args
            .peers
            .iter()
            .any(|p| p.split_once('=').is_some_and(|(n, _)| n == name))
        {
            return Err(format!("--peer-pid {name}: there is no --peer {name}=URL"));
        }
        pids.push((name.to_string(), pid));
    }
    for p in args.peers {
        let (name, url) = p
            .split_once('=')
            .ok_or_else(|| format!("--peer {p:?}: write NAME=URL"))?;
        let (addr, base) = parse_url(url).ok_or_else(|| {
            format!("--peer {name}: cannot read URL {url:?} (http://HOST:PORT/PATH/)")
        })?;
        let pid = pids.iter().find(|(n, _)| n == name).map(|(_, p)| *p);
        targets.push(Target {
            name: name.to_string(),
            kind: Kind::Url { addr, base, pid },
        });
    }
    for c in args.peer_cmds {
        let pc = PeerCommand::parse(c)?;
        targets.push(Target {
            name: pc.name.clone(),
            kind: Kind::Cmd(pc),
        });
    }
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|u| u.name == t.name) {
            return Err(format!(
                "two targets are named {}: give each its own NAME",
                t.name
            ));
        }
    }
    if targets.is_empty() {
        return Err("nothing to measure: give --backends, --peer or --peer-cmd".into());
    }
    Ok(targets)
}

/// `http://127.0.0.1:8080/some/dir/` -> (addr, "/some/dir/"); the port
/// defaults to 80, the path to `/`, and always ends in `/`.
pub fn parse_url(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .ok()?
        .next()?;
    let mut path = path.to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    Some((addr, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (a, p) = parse_url("http://127.0.0.1:8080/files").unwrap();
        assert_eq!((a.port(), p.as_str()), (8080, "/files/"));
        assert_eq!(parse_url("http://127.0.0.1:9").unwrap().1, "/");
        assert_eq!(parse_url("http://127.0.0.1/").unwrap().0.port(), 80);
        assert!(parse_url("https://x/").is_none());
        assert!(parse_url("http://127.0.0.1:notaport/").is_none());
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn targets_come_in_order_with_unique_names() {
        let (b, p, pp, pc) = (
            strings(&["copy"]),
            strings(&["n=http://127.0.0.1:8080/d"]),
            strings(&["n=42"]),
            strings(&["x=srv {port}"]),
        );
        let args = TargetArgs {
            backends: &b,
            peers: &p,
            peer_pids: &pp,
            peer_cmds: &pc,
        };
        let me = std::env::current_exe().unwrap();
        let t = targets(args, &me).unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["zcserve-copy", "n", "x"]);
        assert_eq!(t[0].backend().as_deref(), Some("copy"));
        assert!(matches!(t[1].kind, Kind::Url { pid: Some(42), ref base, .. } if base == "/d/"));
        let err = targets(args, Path::new("/nonexistent/zcserve")).unwrap_err();
        assert!(err.contains("cargo build --release -p zcserve"), "{err}");
        let twice = strings(&["x=a {port}", "x=b {port}"]);
        let err = targets(
            TargetArgs {
                backends: &[],
                peer_cmds: &twice,
                ..args
            },
            &me,
        )
        .unwrap_err();
        assert!(err.contains("two targets are named x"), "{err}");
    }
}
