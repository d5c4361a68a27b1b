//! `zcserve`: serve a directory over HTTP/1.1, with file bodies moved to
//! the socket by the chosen backend.
//!
//! `zcserve` alone serves the current directory on 127.0.0.1:8000 with the
//! `auto` backend; `zcserve --help` lists the rest. Wrong flags, a missing
//! root, a busy port or a bad config key print one line that says what to
//! fix and exit with status 2.

use std::process::ExitCode;

use clap::Parser;
use zcserve::config::{Args, Settings};
use zcserve::server::Server;
use zcserve_backends::{Backend, Choice, Config};

fn main() -> ExitCode {
    // Before anything starts a thread: taking the sockets edits the
    // environment. A bad one is reported once logging is set up.
    // SAFETY: no other thread exists yet.
    let inherited = unsafe { zcserve::activation::take() };
    // clap prints usage errors itself and exits with 2.
    let args = Args::parse();
    if args.list_backends {
        list_backends(args.auto_threshold);
        return ExitCode::SUCCESS;
    }
    match run(args, inherited) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("zcserve: error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn list_backends(auto_threshold: Option<u64>) {
    for b in Backend::ALL {
        let state = match b.check() {
            Ok(()) => "available".to_string(),
            Err(e) => format!("not available here: {e}"),
        };
        println!("{:<9} {state}", b.name());
    }
    let config = Config {
        auto_threshold: auto_threshold.unwrap_or(Config::default().auto_threshold),
        ..Config::default()
    };
    println!(
        "{:<9} {} (--auto-threshold)",
        "auto",
        Choice::Auto.rule(&config)
    );
}

fn run(
    args: Args,
    inherited: Result<Option<Vec<std::net::TcpListener>>, String>,
) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZCSERVE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let settings = Settings::resolve(args)?;
    let inherited = inherited?;
    let per_thread = settings.reuseport && inherited.is_none();
    let runtime = if settings.threads == 1 || per_thread {
        // One thread does everything, like one nginx worker: no hand-offs
        // between an accept thread and workers. With --reuseport each
        // further worker thread gets a runtime of its own (see server.rs).
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the runtime: {e}"))?;
    // Inside the runtime from here: signal streams need its driver.
    let entered = runtime.enter();
    let server = Server::bind_from(&settings, zcserve::clock::Clock::coarse(), inherited)?;
    // Watch SIGINT/SIGTERM before announcing the server: a signal that
    // arrives right after the start line must stop it gracefully, not kill
    // it with the default action.
    let shutdown = shutdown_signal()?;
    let root = std::fs::canonicalize(&settings.root).unwrap_or_else(|_| settings.root.clone());
    let addrs: Vec<String> = server
        .local_addrs()
        .iter()
        .map(|a| format!("http://{a}/"))
        .collect();
    let backend = match server.backend() {
        Choice::Auto => format!("auto ({})", Choice::Auto.rule(&settings.backend_config)),
        Choice::One(b) => b.to_string(),
    };
    let metrics = server
        .metrics_addr()
        .map(|a| format!(", metrics at http://{a}/metrics"))
        .unwrap_or_default();
    println!(
        "zcserve: serving {} on {} with backend {backend}, {} thread{}{metrics}",
        root.display(),
        addrs.join(" "),
        settings.threads,
        if settings.threads == 1 { "" } else { "s" },
    );
    zcserve::activation::notify("READY=1");
    let log_written = server.log_written();
    runtime.block_on(server.run(shutdown));
    drop(entered);
    // Connections past the grace period are dropped with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    // Their log lines are written before the exit.
    if let Some(w) = log_written
        && !w.wait(std::time::Duration::from_secs(5))
    {
        tracing::warn!("the access log's last lines may not have been written");
    }
    Ok(())
}

/// A future that completes on the first SIGINT or SIGTERM; the handlers
/// are installed when this is called, not when the future is first polled.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let watch = |kind| signal(kind).map_err(|e| format!("cannot watch signals: {e}"));
    let mut int = watch(SignalKind::interrupt())?;
    let mut term = watch(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: no new connections, finishing responses in flight");
        zcserve::activation::notify("STOPPING=1");
    })
}
