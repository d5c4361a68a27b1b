//! zcserve, the server: HTTP/1.1 on tokio whose response bodies are moved
//! from file to socket by a zcserve backend (sendfile, splice, mmap, copy, uring).
//!
//! The connection loop is ours rather than hyper's because hyper's body API
//! cannot hand a file to `sendfile`. A request head is read off the wire
//! with `httparse` ([`request_head`]), a body it may carry is read to its
//! end and dropped ([`request_body`]); [`site`] turns it into a response
//! (method checks, redirects, listings, preconditions, ranges), using the
//! pure HTTP semantics in [`http`], the operator's [`site_rules`]
//! (`Cache-Control` by path, SPA fallback, error pages, listing order) and
//! opening files beneath the root through [`fs`]; the response head ([`response_head`]) leaves as the
//! prefix of a [`zcserve_core::Session`] that moves the body ([`conn`]).
//! Opening a path the open-file cache lacks can wait for the disk, so it
//! runs on a bounded pool ([`disk_work`]) while the worker serves others.
//! Listening sockets are bound by [`listen`] (with `--reuseport`, one per
//! worker thread, shared with other zcserve processes) or taken over from
//! systemd ([`activation`]); [`server`] accepts on them and stops
//! gracefully.
//!
//! ```no_run
//! use zcserve::{config::Settings, server::Server};
//!
//! let settings = Settings::default(); // ".", 127.0.0.1:8000, backend auto
//! let server = Server::bind(&settings)?;
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(server.run(async { tokio::signal::ctrl_c().await.ok(); }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod access_log;
pub mod activation;
pub mod clock;
pub mod config;
pub mod conn;
pub mod disk_work;
pub mod fs;
pub mod http;
pub mod listen;
pub mod metrics;
mod metrics_http;
pub mod precompressed;
pub mod request_body;
pub mod request_head;
pub mod response_head;
pub mod server;
pub mod site;
pub mod site_rules;
pub mod sockopt;
mod sys;
