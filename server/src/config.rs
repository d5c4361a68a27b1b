//! Settings from the command line and an optional TOML file (same keys,
//! flags win), resolved into one [`Settings`] with every default filled in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use zcserve_core::disk::ThreadPriority;

use crate::http::accept_encoding::Coding;
use crate::http::cache_rules::CacheRules;
use crate::http::listing::Sort as ListingSort;

/// The `zcserve` command line.
#[derive(Debug, Parser, Default)]
#[command(
    name = "zcserve",
    version,
    about = "Serve a directory over HTTP/1.1; file bodies go to the socket through a chosen zero-copy backend.",
    after_help = "Every option can also be set in the --config TOML file under the same name \
                  (e.g. `backend = \"splice\"`, `listen = [\"127.0.0.1:8000\"]`, `show-hidden = true`); \
                  command-line flags override the file."
)]
pub struct Args {
    /// Directory to serve [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Address to listen on, IPv4 or IPv6; repeat for several [default: 127.0.0.1:8000]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// How file bytes reach the socket: sendfile, splice, mmap, copy, uring or auto [default: auto]
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
    /// Worker threads; 1 runs everything on one thread (for pinned benchmarks) [default: CPUs]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Threads for disk work that could stall a worker: reading body ranges that are not in the page cache (every backend; with uring the pool also keeps cold ranges out of its ring, whose splices run in the kernel's workers at the loop's priority), opening a path the file cache lacks (every path with --no-file-cache), index.html, listings; each of the two pools gets N; 0 does it all on the workers, as before [default: 16]
    #[arg(long, value_name = "N")]
    pub disk_threads: Option<usize>,
    /// Who sends the bytes of a body range the disk pool read in: pool (its threads, like nginx's aio threads; the worker stays free for other connections) or worker (the connection's worker, once the read is done) [default: pool]
    #[arg(long, value_enum, value_name = "WHO")]
    pub cold_sends: Option<ColdSends>,
    /// Most bytes of a cold body range one disk-pool read brings into the page cache; on a disk limited in requests per second, cold throughput is this times the requests [default: 4 MiB]
    #[arg(long, value_name = "BYTES")]
    pub read_in: Option<u64>,
    /// Scheduling of the threads that read and send cold body ranges (Linux): idle (SCHED_IDLE: they run when the workers leave the CPU, and a worker with a request preempts them at once), normal (the server's own priority), or a nice value 1-19 [default: idle]
    #[arg(long, value_name = "PRIORITY")]
    pub disk_priority: Option<ThreadPriority>,
    /// Read settings from this TOML file first
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Answer 403 for directories without index.html instead of listing them
    #[arg(long)]
    pub no_listing: bool,
    /// Serve dotfiles and dot-directories (hidden by default: 404)
    #[arg(long)]
    pub show_hidden: bool,
    /// Follow symlinks that point outside the root (refused by default: 403)
    #[arg(long)]
    pub follow_symlinks: bool,
    /// Open every file afresh for every request instead of reusing recently opened ones
    #[arg(long)]
    pub no_file_cache: bool,
    /// Seconds a cached path may keep serving the file it was opened to; changes to the file itself are seen at once [default: 1]
    #[arg(long, value_name = "SECS")]
    pub file_cache_valid: Option<f64>,
    /// Seconds a cached file is trusted before its descriptor is checked (fstat) for changes again; 0 checks at every use [default: 0.01]
    #[arg(long, value_name = "SECS")]
    pub file_cache_check: Option<f64>,
    /// Most files the cache keeps open (also at most an eighth of the descriptor limit) [default: 1024]
    #[arg(long, value_name = "N")]
    pub file_cache_entries: Option<usize>,
    /// Most connections served at once; more wait in the listen backlog [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a whole request head (slow-loris guard) [default: 10]
    #[arg(long, value_name = "SECS")]
    pub header_timeout: Option<f64>,
    /// Seconds an idle keep-alive connection is kept [default: 60]
    #[arg(long, value_name = "SECS")]
    pub keepalive_timeout: Option<f64>,
    /// Seconds in-flight responses get to finish after SIGINT/SIGTERM [default: 30]
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace: Option<f64>,
    /// Access log: stdout, off, or a file path to append to [default: stdout]
    #[arg(long, value_name = "stdout|off|FILE")]
    pub access_log: Option<String>,
    /// Access log line format [default: combined]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Serve Prometheus metrics at http://ADDR/metrics
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Most bytes one pump sends before other connections get a turn [default: 256 KiB]
    #[arg(long, value_name = "BYTES")]
    pub max_chunk: Option<usize>,
    /// Unsent bytes a connection may queue in the kernel before it counts as full (TCP_NOTSENT_LOWAT); 0 keeps the kernel's setting [default: 64 KiB]
    #[arg(long, value_name = "BYTES")]
    pub notsent_lowat: Option<u64>,
    /// Capacity of each splice pipe [default: 1 MiB]
    #[arg(long, value_name = "BYTES")]
    pub pipe_size: Option<usize>,
    /// Size of each copy buffer [default: 256 KiB]
    #[arg(long, value_name = "BYTES")]
    pub buffer_size: Option<usize>,
    /// List the backends this machine can run and the rule `auto` picks by, then exit
    #[arg(long)]
    pub list_backends: bool,
    /// Most entries a directory listing shows; a bigger directory's page says it is truncated [default: 10000]
    #[arg(long, value_name = "N")]
    pub listing_max_entries: Option<usize>,
    /// Bind every listen address with SO_REUSEPORT, one socket per worker thread, so that several zcserve processes (same user) can share a port and one can stop without the others dropping connections (see README, Running in production)
    #[arg(long)]
    pub reuseport: bool,
    /// Serve NAME.br / NAME.zst / NAME.gz beside a file to clients that accept them, chosen by the client's weights, then this order; off serves files only as they are [default: br,zstd,gzip]
    #[arg(long, value_name = "br,zstd,gzip|off")]
    pub precompressed: Option<String>,
    /// List precompressed sidecars (a.js.gz beside a.js) in directory listings too
    #[arg(long)]
    pub listing_show_sidecars: bool,
    /// Cache-Control for files whose path (relative to the root) matches GLOB, e.g. '*.html=no-cache' or 'assets/**=public, max-age=31536000, immutable'; repeat for more, the first match wins; a GLOB without '/' matches in any directory [default: none]
    #[arg(long = "cache-control", value_name = "GLOB=VALUE")]
    pub cache_control: Vec<String>,
    /// Single-page-app fallback: a file (relative to the root) served with 200 for a GET/HEAD that finds nothing, when its last path segment has no extension and it accepts text/html [default: none]
    #[arg(long, value_name = "FILE")]
    pub fallback: Option<String>,
    /// Serve FILE (relative to the root) as the body of responses with STATUS (4xx or 5xx), e.g. 404=404.html; repeat for more [default: built-in text]
    #[arg(long, value_name = "STATUS=FILE")]
    pub error_page: Vec<String>,
    /// Order of directory listings (HTML and JSON), directories first: name, mtime (newest first) or size (largest first) [default: name]
    #[arg(long, value_enum, value_name = "ORDER")]
    pub listing_sort: Option<ListingSort>,
    /// With --backend auto: bodies (or ranges) of fewer bytes go through copy, the rest through sendfile; 0 sends all through sendfile [default: 32768]
    #[arg(long, value_name = "BYTES")]
    pub auto_threshold: Option<u64>,
}

/// Who sends the bytes of a body range the disk pool read in
/// (`--cold-sends`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ColdSends {
    /// A pool thread, right after the read (nginx `aio threads`).
    #[default]
    Pool,
    /// The connection's worker, once the read is done.
    Worker,
}

/// Access log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// The Apache/nginx "combined" format.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// The TOML file: the same settings as the flags, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    root: Option<PathBuf>,
    listen: Option<Vec<SocketAddr>>,
    backend: Option<String>,
    threads: Option<usize>,
    disk_threads: Option<usize>,
    cold_sends: Option<ColdSends>,
    read_in: Option<u64>,
    disk_priority: Option<PriorityValue>,
    listing: Option<bool>,
    show_hidden: Option<bool>,
    follow_symlinks: Option<bool>,
    file_cache: Option<bool>,
    file_cache_valid: Option<f64>,
    file_cache_check: Option<f64>,
    file_cache_entries: Option<usize>,
    max_connections: Option<usize>,
    header_timeout: Option<f64>,
    keepalive_timeout: Option<f64>,
    shutdown_grace: Option<f64>,
    access_log: Option<String>,
    log_format: Option<LogFormat>,
    metrics: Option<SocketAddr>,
    max_chunk: Option<usize>,
    notsent_lowat: Option<u64>,
    pipe_size: Option<usize>,
    buffer_size: Option<usize>,
    listing_max_entries: Option<usize>,
    reuseport: Option<bool>,
    precompressed: Option<Precompressed>,
    listing_show_sidecars: Option<bool>,
    cache_control: Option<Vec<String>>,
    fallback: Option<String>,
    error_page: Option<BTreeMap<String, String>>,
    listing_sort: Option<ListingSort>,
    auto_threshold: Option<u64>,
}

/// `precompressed` in the TOML file: a list of codings, or `"off"` (or one
/// string like the flag's, `"br,gzip"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Precompressed {
    List(Vec<String>),
    Text(String),
}

/// `disk-priority` in the TOML file: `"idle"`, `"normal"`, or a nice
/// value, quoted or not.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PriorityValue {
    Text(String),
    Nice(i64),
}

impl std::fmt::Display for PriorityValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PriorityValue::Text(t) => f.write_str(t),
            PriorityValue::Nice(n) => write!(f, "{n}"),
        }
    }
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Not written.
    Off,
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

/// Every setting, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Directory served.
    pub root: PathBuf,
    /// Addresses listened on.
    pub listen: Vec<SocketAddr>,
    /// Backend name as asked for (`auto` or a name).
    pub backend: String,
    /// Worker threads.
    pub threads: usize,
    /// Most threads doing blocking disk work at once; 0 does it inline on
    /// the workers (see [`crate::disk_work`]).
    pub disk_threads: usize,
    /// Directory listings on.
    pub listing: bool,
    /// Dotfiles served.
    pub show_hidden: bool,
    /// Symlinks out of the root followed.
    pub follow_symlinks: bool,
    /// Recently opened files reused (see [`crate::http::file_cache`]).
    pub file_cache: bool,
    /// How long a cached path keeps serving the file it was opened to.
    pub file_cache_valid: Duration,
    /// How long a passed check of a cached file is trusted.
    pub file_cache_check: Duration,
    /// Most files the cache keeps open.
    pub file_cache_entries: usize,
    /// Connection cap.
    pub max_connections: usize,
    /// Time to send a request head.
    pub header_timeout: Duration,
    /// Idle keep-alive time.
    pub keepalive_timeout: Duration,
    /// Time in-flight responses get at shutdown.
    pub shutdown_grace: Duration,
    /// Access log target.
    pub access_log: AccessLog,
    /// Access log format.
    pub log_format: LogFormat,
    /// Metrics listener.
    pub metrics: Option<SocketAddr>,
    /// TCP_NOTSENT_LOWAT for every connection; `None` leaves the kernel's.
    pub notsent_lowat: Option<u32>,
    /// Backend knobs.
    pub backend_config: zcserve_backends::Config,
    /// Most entries a listing page shows.
    pub listing_max_entries: usize,
    /// Listeners bound with SO_REUSEPORT, one per worker thread.
    pub reuseport: bool,
    /// `listen` was given (flag or file), not defaulted: systemd socket
    /// activation refuses it rather than ignore it.
    pub listen_given: bool,
    /// Codings served from precompressed sidecars, in order of preference;
    /// empty when off (see [`crate::precompressed`]).
    pub precompressed: Vec<Coding>,
    /// Listings show sidecars beside their files.
    pub listing_show_sidecars: bool,
    /// `Cache-Control` by path (`--cache-control`).
    pub cache_control: CacheRules,
    /// The SPA fallback file, relative to the root (`--fallback`).
    pub fallback: Option<String>,
    /// Error pages by status, files relative to the root (`--error-page`).
    pub error_pages: BTreeMap<u16, String>,
    /// Order of listings (`--listing-sort`).
    pub listing_sort: ListingSort,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::resolve(Args::default()).expect("defaults are valid")
    }
}

impl Settings {
    /// Reads the config file (if any) and merges the flags over it.
    pub fn resolve(args: Args) -> Result<Settings, String> {
        let file = match &args.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| {
                    // Point at the offending line, which names the key.
                    let at = e
                        .span()
                        .and_then(|span| {
                            let line_no = text.get(..span.start)?.matches('\n').count() + 1;
                            let line = text.lines().nth(line_no - 1)?.trim();
                            Some(format!(", line {line_no} (`{line}`)"))
                        })
                        .unwrap_or_default();
                    format!("config file {}{at}: {}", path.display(), e.message())
                })?
            }
        };
        let defaults = zcserve_backends::Config::default();
        let listen_given = !args.listen.is_empty() || file.listen.is_some();
        let listen = if args.listen.is_empty() {
            file.listen
                .unwrap_or_else(|| vec!["127.0.0.1:8000".parse().expect("literal")])
        } else {
            args.listen
        };
        if listen.is_empty() {
            return Err("listen: give at least one address".into());
        }
        let threads = args
            .threads
            .or(file.threads)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 {
            return Err("threads must be at least 1".into());
        }
        let disk_threads = args
            .disk_threads
            .or(file.disk_threads)
            .unwrap_or(DEFAULT_DISK_THREADS);
        let disk_priority = match (args.disk_priority, file.disk_priority) {
            (Some(p), _) => p,
            (None, Some(value)) => value
                .to_string()
                .parse::<ThreadPriority>()
                .map_err(|e| format!("disk-priority: {e}"))?,
            (None, None) => DEFAULT_DISK_PRIORITY,
        };
        if disk_threads > MAX_DISK_THREADS {
            return Err(format!(
                "disk-threads: {disk_threads} is more than {MAX_DISK_THREADS} (0 turns the pool off)"
            ));
        }
        let max_connections = args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(10_000);
        if max_connections == 0 {
            return Err("max-connections must be at least 1".into());
        }
        let file_cache_entries = args
            .file_cache_entries
            .or(file.file_cache_entries)
            .unwrap_or(1024);
        if file_cache_entries == 0 {
            return Err(
                "file-cache-entries must be at least 1 (--no-file-cache turns the cache off)"
                    .into(),
            );
        }
        let notsent_lowat = match args.notsent_lowat.or(file.notsent_lowat) {
            None => Some(DEFAULT_NOTSENT_LOWAT),
            Some(0) => None,
            Some(n) => Some(
                u32::try_from(n)
                    .ok()
                    .filter(|&n| n <= i32::MAX as u32)
                    .ok_or_else(|| {
                        format!(
                            "notsent-lowat: {n} is more than the kernel takes (at most {}; 0 keeps the kernel's setting)",
                            i32::MAX
                        )
                    })?,
            ),
        };
        let listing_max_entries = args
            .listing_max_entries
            .or(file.listing_max_entries)
            .unwrap_or(DEFAULT_LISTING_MAX_ENTRIES);
        if listing_max_entries == 0 {
            return Err(
                "listing-max-entries must be at least 1 (--no-listing turns listings off)".into(),
            );
        }
        let precompressed = match (args.precompressed, file.precompressed) {
            (Some(flag), _) => codings(flag.split(','))?,
            (None, Some(Precompressed::Text(text))) => codings(text.split(','))?,
            (None, Some(Precompressed::List(list))) => codings(list.iter().map(String::as_str))?,
            (None, None) => Coding::ALL.to_vec(),
        };
        let access_log = match args.access_log.or(file.access_log).as_deref() {
            None | Some("stdout") | Some("-") => AccessLog::Stdout,
            Some("off") => AccessLog::Off,
            Some("") => return Err("access-log: give stdout, off or a file path".into()),
            Some(path) => AccessLog::File(path.into()),
        };
        let read_in = args.read_in.or(file.read_in).unwrap_or(defaults.read_in);
        if read_in == 0 {
            return Err(
                "read-in: give the most bytes one disk read brings in (1 or more, e.g. 4194304)"
                    .into(),
            );
        }
        Ok(Settings {
            root: args
                .root
                .or(file.root)
                .unwrap_or_else(|| PathBuf::from(".")),
            listen,
            backend: args
                .backend
                .or(file.backend)
                .unwrap_or_else(|| "auto".into()),
            threads,
            disk_threads,
            listing: !args.no_listing && file.listing.unwrap_or(true),
            show_hidden: args.show_hidden || file.show_hidden.unwrap_or(false),
            follow_symlinks: args.follow_symlinks || file.follow_symlinks.unwrap_or(false),
            file_cache: !args.no_file_cache && file.file_cache.unwrap_or(true),
            file_cache_valid: seconds(
                "file-cache-valid",
                args.file_cache_valid.or(file.file_cache_valid),
                1.0,
            )?,
            file_cache_check: {
                let s = args
                    .file_cache_check
                    .or(file.file_cache_check)
                    .unwrap_or(0.01);
                Duration::try_from_secs_f64(s).map_err(|_| {
                    format!("file-cache-check: {s} is not a number of seconds (0 or more)")
                })?
            },
            file_cache_entries,
            max_connections,
            header_timeout: seconds(
                "header-timeout",
                args.header_timeout.or(file.header_timeout),
                10.0,
            )?,
            keepalive_timeout: seconds(
                "keepalive-timeout",
                args.keepalive_timeout.or(file.keepalive_timeout),
                60.0,
            )?,
            shutdown_grace: seconds(
                "shutdown-grace",
                args.shutdown_grace.or(file.shutdown_grace),
                30.0,
            )?,
            access_log,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            metrics: args.metrics.or(file.metrics),
            notsent_lowat,
            backend_config: zcserve_backends::Config {
                max_chunk: args
                    .max_chunk
                    .or(file.max_chunk)
                    .unwrap_or(defaults.max_chunk),
                pipe_size: args
                    .pipe_size
                    .or(file.pipe_size)
                    .unwrap_or(defaults.pipe_size),
                buffer_size: args
                    .buffer_size
                    .or(file.buffer_size)
                    .unwrap_or(defaults.buffer_size),
                max_idle: defaults.max_idle,
                // One setting for both pools: the server's (opens, stats,
                // listings) and the backends' (cold body ranges).
                disk_threads,
                cold_sends_on_pool: args.cold_sends.or(file.cold_sends).unwrap_or_default()
                    == ColdSends::Pool,
                read_in,
                disk_priority,
                auto_threshold: args
                    .auto_threshold
                    .or(file.auto_threshold)
                    .unwrap_or(defaults.auto_threshold),
            },
            listing_max_entries,
            reuseport: args.reuseport || file.reuseport.unwrap_or(false),
            listen_given,
            precompressed,
            listing_show_sidecars: args.listing_show_sidecars
                || file.listing_show_sidecars.unwrap_or(false),
            cache_control: CacheRules::parse(&if args.cache_control.is_empty() {
                file.cache_control.unwrap_or_default()
            } else {
                args.cache_control
            })?,
            fallback: args.fallback.or(file.fallback),
            error_pages: error_pages(file.error_page, &args.error_page)?,
            listing_sort: args.listing_sort.or(file.listing_sort).unwrap_or_default(),
        })
    }
}

/// The codings of `precompressed`: names in order (each once), or `off`
/// alone for none.
fn codings<'a>(names: impl Iterator<Item = &'a str>) -> Result<Vec<Coding>, String> {
    let names: Vec<&str> = names.map(str::trim).collect();
    if names.is_empty() {
        return Err("precompressed: empty list (give br, zstd, gzip or off)".into());
    }
    if let [off] = names[..]
        && off.eq_ignore_ascii_case("off")
    {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in names {
        if name.is_empty() {
            return Err("precompressed: empty encoding name (give br, zstd, gzip or off)".into());
        }
        let c: Coding = name
            .parse()
            .map_err(|e| format!("precompressed: {e}, or off"))?;
        if out.contains(&c) {
            return Err(format!("precompressed: {c} listed twice"));
        }
        out.push(c);
    }
    Ok(out)
}

/// Measured with zcbench over loopback (results/FINDINGS.md §2): with
/// 64 KiB one 256 MiB `sendfile` download ran 1.2-1.5x as fast, at less CPU per GB,
/// as with the kernel's default (no limit: a socket buffer of several MiB
/// fills before the connection counts as full), and 7-15 % faster than
/// with 128 KiB, in three short runs; 4 KiB and 1 MiB files and the other
/// backends moved within the noise.
const DEFAULT_NOTSENT_LOWAT: u32 = 64 << 10;

/// Enough reads and opens in flight to keep a disk's queue busy (nginx's
/// default `aio threads` pool has 32 threads) while a burst of cold
/// requests cannot start hundreds of threads; hot requests never wait for
/// these threads, whatever their number. Measured with zcbench's cold
/// scenario (results/FINDINGS.md §9).
const DEFAULT_DISK_THREADS: usize = 16;

/// The cold-range threads run only when the workers leave the CPU, so a
/// worker with a request never waits for a pool thread's send or copy;
/// measured with zcbench's cold scenario (results/FINDINGS.md §9).
const DEFAULT_DISK_PRIORITY: ThreadPriority = ThreadPriority::Idle;

/// More threads than any disk queue could use.
const MAX_DISK_THREADS: usize = 1024;

/// Bounds the memory and time one listing request can cost, whatever the
/// directory holds, while leaving directories meant for browsing whole;
/// chosen from the measured page size and build time per entry (README,
/// Security).
const DEFAULT_LISTING_MAX_ENTRIES: usize = 10_000;

/// The error pages of the config file's `[error-page]` table, then of the
/// `--error-page STATUS=FILE` flags (a flag replaces the file's page for
/// its status). A status must be a 4xx or 5xx.
fn error_pages(
    file: Option<BTreeMap<String, String>>,
    flags: &[String],
) -> Result<BTreeMap<u16, String>, String> {
    let mut pages = BTreeMap::new();
    let flags = flags.iter().map(|flag| match flag.split_once('=') {
        Some((status, page)) => Ok((status.to_owned(), page.to_owned())),
        None => Err(format!(
            "error-page: `{}`: give STATUS=FILE, e.g. 404=404.html",
            flag.escape_debug()
        )),
    });
    for entry in file.unwrap_or_default().into_iter().map(Ok).chain(flags) {
        let (status, page) = entry?;
        let code = status
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (400..=599).contains(c))
            .ok_or_else(|| {
                format!(
                    "error-page: `{}` is not a 4xx or 5xx status",
                    status.escape_debug()
                )
            })?;
        pages.insert(code, page);
    }
    Ok(pages)
}

fn seconds(name: &str, v: Option<f64>, default: f64) -> Result<Duration, String> {
    let s = v.unwrap_or(default);
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{name}: {s} is not a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let args = Args::try_parse_from(std::iter::once("zcserve").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Settings::resolve(args)
    }

    fn with_file(text: &str, args: &[&str]) -> Result<Settings, String> {
        // One name per call: tests run in parallel, and two texts of one
        // length once shared a file.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join(format!("zcserve-config-{}-{call}.toml", std::process::id(),));
        std::fs::write(&path, text).unwrap();
        let mut all = vec!["--config", path.to_str().unwrap()];
        all.extend_from_slice(args);
        let r = parse(&all);
        std::fs::remove_file(&path).unwrap();
        r
    }

    #[test]
    fn defaults_serve_cwd_on_8000_with_auto() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.root, PathBuf::from("."));
        assert_eq!(s.listen, vec!["127.0.0.1:8000".parse().unwrap()]);
        assert_eq!(s.backend, "auto");
        assert!(s.listing && !s.show_hidden && !s.follow_symlinks);
        assert_eq!(s.access_log, AccessLog::Stdout);
    }

    #[test]
    fn file_then_flags_override() {
        let s = with_file(
            "backend = \"splice\"\nlisten = [\"[::1]:9000\", \"127.0.0.1:9001\"]\nlisting = false\nthreads = 3\n",
            &["--threads", "1"],
        )
        .unwrap();
        assert_eq!(s.backend, "splice");
        assert_eq!(s.listen.len(), 2);
        assert!(!s.listing);
        assert_eq!(s.threads, 1);
    }

    #[test]
    fn file_cache_switch_and_knobs() {
        let s = parse(&[]).unwrap();
        assert!(s.file_cache);
        assert_eq!(s.file_cache_check, Duration::from_millis(10));
        assert_eq!(s.file_cache_valid, Duration::from_secs(1));
        assert_eq!(s.file_cache_entries, 1024);
        let s = with_file(
            "file-cache = false\nfile-cache-valid = 0.25\nfile-cache-check = 0\nfile-cache-entries = 7\n",
            &[],
        )
        .unwrap();
        assert!(!s.file_cache);
        assert_eq!(s.file_cache_check, Duration::ZERO);
        assert_eq!(s.file_cache_valid, Duration::from_millis(250));
        assert_eq!(s.file_cache_entries, 7);
        let s = parse(&[
            "--no-file-cache",
            "--file-cache-check",
            "2",
            "--file-cache-valid",
            "5",
            "--file-cache-entries",
            "3",
        ])
        .unwrap();
        assert!(!s.file_cache);
        assert_eq!(s.file_cache_check, Duration::from_secs(2));
        assert_eq!(s.file_cache_valid, Duration::from_secs(5));
        assert_eq!(s.file_cache_entries, 3);
        assert!(
            parse(&["--file-cache-entries", "0"])
                .unwrap_err()
                .contains("--no-file-cache")
        );
        assert!(
            parse(&["--file-cache-valid", "0"])
                .unwrap_err()
                .contains("file-cache-valid")
        );
        assert!(
            parse(&["--file-cache-check=-1"])
                .unwrap_err()
                .contains("file-cache-check")
        );
    }

    #[test]
    fn disk_threads_default_file_flag_and_bound() {
        assert_eq!(parse(&[]).unwrap().disk_threads, DEFAULT_DISK_THREADS);
        assert_eq!(parse(&["--disk-threads", "0"]).unwrap().disk_threads, 0);
        let s = with_file("disk-threads = 4\n", &[]).unwrap();
        assert_eq!(s.disk_threads, 4);
        let s = with_file("disk-threads = 4\n", &["--disk-threads", "2"]).unwrap();
        assert_eq!(s.disk_threads, 2);
        let e = parse(&["--disk-threads", "5000"]).unwrap_err();
        assert!(e.contains("disk-threads") && e.contains("0 turns"), "{e}");
        assert!(
            parse(&["--disk-threads=-1"])
                .unwrap_err()
                .contains("--disk-threads")
        );
    }

    #[test]
    fn cold_sends_and_disk_nice_default_file_flag_and_bound() {
        let s = parse(&[]).unwrap();
        assert!(s.backend_config.cold_sends_on_pool);
        assert_eq!(s.backend_config.disk_priority, DEFAULT_DISK_PRIORITY);
        let s = parse(&["--cold-sends", "worker", "--disk-priority", "normal"]).unwrap();
        assert!(!s.backend_config.cold_sends_on_pool);
        assert_eq!(s.backend_config.disk_priority, ThreadPriority::Normal);
        let s = with_file("cold-sends = \"worker\"\ndisk-priority = 5\n", &[]).unwrap();
        assert!(!s.backend_config.cold_sends_on_pool);
        assert_eq!(s.backend_config.disk_priority, ThreadPriority::Nice(5));
        let s = with_file(
            "cold-sends = \"worker\"\ndisk-priority = \"5\"\n",
            &["--cold-sends", "pool", "--disk-priority", "idle"],
        )
        .unwrap();
        assert!(s.backend_config.cold_sends_on_pool);
        assert_eq!(s.backend_config.disk_priority, ThreadPriority::Idle);
        let e = parse(&["--disk-priority", "20"]).unwrap_err();
        assert!(e.contains("--disk-priority") && e.contains("19"), "{e}");
        let e = with_file("disk-priority = \"lowest\"\n", &[]).unwrap_err();
        assert!(e.contains("disk-priority") && e.contains("idle"), "{e}");
        let e = parse(&["--cold-sends", "loop"]).unwrap_err();
        assert!(e.contains("--cold-sends") && e.contains("worker"), "{e}");
    }

    #[test]
    fn read_in_default_file_flag_and_zero() {
        assert_eq!(parse(&[]).unwrap().backend_config.read_in, 4 << 20);
        let s = with_file("read-in = 524288\n", &[]).unwrap();
        assert_eq!(s.backend_config.read_in, 512 << 10);
        let s = with_file("read-in = 524288\n", &["--read-in", "131072"]).unwrap();
        assert_eq!(s.backend_config.read_in, 128 << 10);
        let e = parse(&["--read-in", "0"]).unwrap_err();
        assert!(e.contains("read-in") && e.contains("1 or more"), "{e}");
        let e = parse(&["--read-in=-1"]).unwrap_err();
        assert!(e.contains("--read-in"), "{e}");
        let e = with_file("read-in = \"big\"\n", &[]).unwrap_err();
        assert!(e.contains("read-in"), "{e}");
    }

    #[test]
    fn notsent_lowat_default_zero_and_bytes() {
        assert_eq!(parse(&[]).unwrap().notsent_lowat, Some(64 << 10));
        assert_eq!(
            parse(&["--notsent-lowat", "0"]).unwrap().notsent_lowat,
            None
        );
        let s = with_file("notsent-lowat = 65536\n", &[]).unwrap();
        assert_eq!(s.notsent_lowat, Some(65536));
        let s = with_file("notsent-lowat = 65536\n", &["--notsent-lowat", "16384"]).unwrap();
        assert_eq!(s.notsent_lowat, Some(16384));
    }

    #[test]
    fn bad_inputs_say_what_to_fix() {
        let e = with_file("backnd = \"x\"\n", &[]).unwrap_err();
        assert!(e.contains("unknown field `backnd`"), "{e}");
        let e = with_file("backend = \"copy\"\nthreads = \"many\"\n", &[]).unwrap_err();
        assert!(e.contains("line 2 (`threads = \"many\"`)"), "{e}");
        assert!(parse(&["--threads", "0"]).unwrap_err().contains("threads"));
        assert!(
            parse(&["--header-timeout", "0"])
                .unwrap_err()
                .contains("header-timeout")
        );
        assert!(
            parse(&["--keepalive-timeout=-1"])
                .unwrap_err()
                .contains("keepalive-timeout")
        );
        assert!(
            parse(&["--listen", "nowhere"])
                .unwrap_err()
                .contains("--listen")
        );
        assert!(parse(&["--bogus"]).unwrap_err().contains("--bogus"));
        let e = parse(&["--notsent-lowat", "4294967296"]).unwrap_err();
        assert!(e.contains("notsent-lowat") && e.contains("0 keeps"), "{e}");
        let e = parse(&["--config", "/nonexistent/zc.toml"]).unwrap_err();
        assert!(e.contains("/nonexistent/zc.toml"), "{e}");
    }

    #[test]
    fn reuseport_flag_and_key() {
        let s = parse(&[]).unwrap();
        assert!(!s.reuseport && !s.listen_given);
        assert!(parse(&["--reuseport"]).unwrap().reuseport);
        assert!(with_file("reuseport = true\n", &[]).unwrap().reuseport);
        assert!(
            with_file("listen = [\"127.0.0.1:1\"]\n", &[])
                .unwrap()
                .listen_given
        );
        assert!(parse(&["--listen", "127.0.0.1:1"]).unwrap().listen_given);
    }

    #[test]
    fn listing_max_entries_flag_and_key() {
        assert_eq!(parse(&[]).unwrap().listing_max_entries, 10_000);
        let s = with_file("listing-max-entries = 50\n", &[]).unwrap();
        assert_eq!(s.listing_max_entries, 50);
        let s = with_file(
            "listing-max-entries = 50\n",
            &["--listing-max-entries", "7"],
        )
        .unwrap();
        assert_eq!(s.listing_max_entries, 7);
        let e = parse(&["--listing-max-entries", "0"]).unwrap_err();
        assert!(
            e.contains("listing-max-entries") && e.contains("--no-listing"),
            "{e}"
        );
    }

    #[test]
    fn precompressed_flag_and_key() {
        use Coding::{Br, Gzip, Zstd};
        let s = parse(&[]).unwrap();
        assert_eq!(s.precompressed, [Br, Zstd, Gzip]);
        assert!(!s.listing_show_sidecars);
        let s = parse(&["--precompressed", "gzip,BR", "--listing-show-sidecars"]).unwrap();
        assert_eq!(s.precompressed, [Gzip, Br]);
        assert!(s.listing_show_sidecars);
        assert!(
            parse(&["--precompressed", "off"])
                .unwrap()
                .precompressed
                .is_empty()
        );
        let s = with_file(
            "precompressed = [\"zstd\"]\nlisting-show-sidecars = true\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.precompressed, [Zstd]);
        assert!(s.listing_show_sidecars);
        let s = with_file("precompressed = \"off\"\n", &[]).unwrap();
        assert!(s.precompressed.is_empty());
        let s = with_file("precompressed = \"off\"\n", &["--precompressed", "br"]).unwrap();
        assert_eq!(s.precompressed, [Br]);
        // Every refusal names the key.
        for e in [
            parse(&["--precompressed", "deflate"]).unwrap_err(),
            parse(&["--precompressed", ""]).unwrap_err(),
            parse(&["--precompressed", "br,"]).unwrap_err(),
            parse(&["--precompressed", "br,off"]).unwrap_err(),
            parse(&["--precompressed", "gzip,gzip"]).unwrap_err(),
            with_file("precompressed = []\n", &[]).unwrap_err(),
            with_file("precompressed = [\"br\", \"lzma\"]\n", &[]).unwrap_err(),
            with_file("precompressed = 3\n", &[]).unwrap_err(),
        ] {
            assert!(e.contains("precompressed"), "{e}");
        }
        let e = parse(&["--precompressed", "deflate"]).unwrap_err();
        assert!(e.contains("deflate") && e.contains("br, zstd, gzip"), "{e}");
    }

    #[test]
    fn cache_control_flag_and_key() {
        assert!(parse(&[]).unwrap().cache_control.is_empty());
        let s = with_file(
            "cache-control = [\"*.html=no-cache\", \"assets/**=max-age=60\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.cache_control.lookup("a/b.html"), Some("no-cache"));
        assert_eq!(s.cache_control.lookup("assets/x.js"), Some("max-age=60"));
        // Flags replace the file's list.
        let s = with_file(
            "cache-control = [\"*.html=no-cache\"]\n",
            &["--cache-control", "*.js=no-store"],
        )
        .unwrap();
        assert_eq!(s.cache_control.lookup("a.html"), None);
        assert_eq!(s.cache_control.lookup("a.js"), Some("no-store"));
        let e = parse(&["--cache-control", "a[=x"]).unwrap_err();
        assert!(e.starts_with("cache-control: `a[=x`"), "{e}");
        let e = with_file("cache-control = [\"*.html\"]\n", &[]).unwrap_err();
        assert!(e.starts_with("cache-control: "), "{e}");
    }

    #[test]
    fn fallback_flag_and_key() {
        assert_eq!(parse(&[]).unwrap().fallback, None);
        let s = with_file("fallback = \"index.html\"\n", &[]).unwrap();
        assert_eq!(s.fallback.as_deref(), Some("index.html"));
        let s = with_file("fallback = \"index.html\"\n", &["--fallback", "app.html"]).unwrap();
        assert_eq!(s.fallback.as_deref(), Some("app.html"));
    }

    #[test]
    fn error_page_flags_and_table() {
        assert!(parse(&[]).unwrap().error_pages.is_empty());
        let s = with_file(
            "[error-page]\n404 = \"404.html\"\n503 = \"busy.html\"\n",
            &[
                "--error-page",
                "404=missing.html",
                "--error-page",
                "403=no.html",
            ],
        )
        .unwrap();
        let pages: Vec<(u16, &str)> = s
            .error_pages
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert_eq!(
            pages,
            [(403, "no.html"), (404, "missing.html"), (503, "busy.html")]
        );
        for bad in [
            "200=a.html",
            "99=a.html",
            "abc=a.html",
            "600=a.html",
            "=a.html",
        ] {
            let e = parse(&["--error-page", bad]).unwrap_err();
            assert!(
                e.starts_with("error-page: `") && e.contains("4xx or 5xx"),
                "{bad}: {e}"
            );
        }
        let e = parse(&["--error-page", "404"]).unwrap_err();
        assert!(e.contains("STATUS=FILE"), "{e}");
        let e = with_file("[error-page]\n302 = \"a.html\"\n", &[]).unwrap_err();
        assert!(e.starts_with("error-page: `302`"), "{e}");
    }

    #[test]
    fn listing_sort_flag_and_key() {
        assert_eq!(parse(&[]).unwrap().listing_sort, ListingSort::Name);
        let s = with_file("listing-sort = \"mtime\"\n", &[]).unwrap();
        assert_eq!(s.listing_sort, ListingSort::Mtime);
        let s = with_file("listing-sort = \"mtime\"\n", &["--listing-sort", "size"]).unwrap();
        assert_eq!(s.listing_sort, ListingSort::Size);
        let e = parse(&["--listing-sort", "date"]).unwrap_err();
        assert!(e.contains("--listing-sort"), "{e}");
        let e = with_file("listing-sort = \"date\"\n", &[]).unwrap_err();
        assert!(e.contains("listing-sort = \"date\""), "{e}");
    }

    #[test]
    fn auto_threshold_flag_and_key() {
        let default = zcserve_backends::Config::default().auto_threshold;
        assert_eq!(parse(&[]).unwrap().backend_config.auto_threshold, default);
        let s = with_file("auto-threshold = 4096\n", &[]).unwrap();
        assert_eq!(s.backend_config.auto_threshold, 4096);
        let s = with_file("auto-threshold = 4096\n", &["--auto-threshold", "0"]).unwrap();
        assert_eq!(s.backend_config.auto_threshold, 0);
        let e = parse(&["--auto-threshold", "64k"]).unwrap_err();
        assert!(e.contains("--auto-threshold"), "{e}");
        let e = with_file("auto-threshold = -1\n", &[]).unwrap_err();
        assert!(e.contains("auto-threshold"), "{e}");
    }
}
