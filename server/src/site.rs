//! From a parsed request to the response to send: method checks, path
//! resolution under the root, redirects, listings, preconditions and
//! ranges. Files are opened here (through [`crate::fs`] and the file
//! cache), but nothing here touches a socket.

use std::fmt::Write as _;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode, header};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use zcserve_core::{ByteRange, Source};

use crate::fs::{Dir, Opened, Policy, Root};
use crate::http::accept_encoding::Coding;
use crate::http::conditional::{self, Precondition};
use crate::http::file_cache::{FileCache, OpenFile, VARY};
use crate::http::listing;
use crate::http::range::{self, RangeRequest};
use crate::http::request_path::{PathError, RequestPath};
use crate::precompressed;
use crate::request_head::{Request, split_target};
use crate::response_head::{Body, Head, Response, plain, replace_content, with_body};
use crate::site_rules::{Page, SiteRules, wants_fallback};

/// What is served and how.
#[derive(Debug)]
pub struct Site {
    /// The directory served.
    pub root: Root,
    /// Hidden files and symlinks.
    pub policy: Policy,
    /// Directory listings on.
    pub listing: bool,
    /// Most entries one listing page shows (`--listing-max-entries`).
    pub listing_max_entries: usize,
    /// Most ranges honoured in one request.
    pub max_ranges: usize,
    /// Files opened recently, reused while unchanged.
    pub cache: FileCache,
    /// Codings served from sidecars, in order of preference (see
    /// [`crate::precompressed`]); empty when off.
    pub precompressed: Vec<Coding>,
    /// Listings show sidecars beside their files.
    pub listing_show_sidecars: bool,
    /// Cache rules, fallback, error pages, listing order.
    pub rules: SiteRules,
}

/// The response to `req`.
pub fn respond(req: &Request, site: &Site) -> Response {
    match from_memory(req, site) {
        Ok(resp) => resp,
        Err(miss) => from_disk(req, miss, site),
    }
}

/// A request [`from_memory`] could not answer: its path must be opened,
/// or its error page.
#[derive(Debug)]
pub struct Miss(Missing);

#[derive(Debug)]
enum Missing {
    /// The path, to open.
    Path(RequestPath),
    /// An error answered from memory whose configured page is to be sent.
    ErrorPage(Response),
}

impl Miss {
    /// Whether the path names a directory (it had a trailing slash): its
    /// `index.html` is probed, or it is listed.
    pub fn is_directory(&self) -> bool {
        matches!(&self.0, Missing::Path(path) if path.has_trailing_slash())
    }
}

/// The response to `req` if it needs nothing from the disk: a refused
/// method or target, or a file in the open-file cache. Otherwise the
/// [`Miss`] to finish with [`from_disk`], which may wait for the disk
/// (also for an error whose page is configured: pages are files).
pub fn from_memory(req: &Request, site: &Site) -> Result<Response, Miss> {
    match answer_from_memory(req, site) {
        Ok(resp) if site.rules.error_pages.get(resp.status).is_some() => {
            Err(Miss(Missing::ErrorPage(resp)))
        }
        answer => answer,
    }
}

fn answer_from_memory(req: &Request, site: &Site) -> Result<Response, Miss> {
    let keep_alive = req.keep_alive;
    let head_only = req.method == Method::HEAD;
    if req.method != Method::GET && !head_only {
        let status = if is_known_method(&req.method) {
            StatusCode::METHOD_NOT_ALLOWED
        } else {
            StatusCode::NOT_IMPLEMENTED
        };
        return Ok(plain(status, "", false, keep_alive));
    }
    let Some((raw_path, _)) = split_target(&req.target) else {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            "unsupported request target",
            head_only,
            keep_alive,
        ));
    };
    let path = match RequestPath::parse(raw_path) {
        Ok(p) => p,
        Err(e) => return Ok(path_error(e, head_only, keep_alive, &site.cache)),
    };
    let ctx = Ctx {
        req,
        head_only,
        keep_alive,
        cache_control: None,
        vary_accept: false,
    };
    let cache = &site.cache;
    if cache.enabled()
        && let Some(file) = cache.get(path.key())
        // Unless its sidecars are still to be looked for.
        && let Some(chosen) = precompressed::pick(req, &file, &site.precompressed)
    {
        let ctx = ctx.with_rule(site, path.key(), &file);
        return Ok(serve_file(&ctx, chosen, site.max_ranges));
    }
    Err(Miss(Missing::Path(path)))
}

/// Finishes what [`from_memory`] left: opens the path beneath the root
/// (and its `index.html`, or lists it) and answers, with the error page
/// configured for the status if there is one. Blocks on the disk.
pub fn from_disk(req: &Request, miss: Miss, site: &Site) -> Response {
    let resp = match miss.0 {
        Missing::Path(path) => open_and_answer(req, path, site),
        Missing::ErrorPage(resp) => resp,
    };
    with_error_page(req, resp, site)
}

/// The configured page of `resp`'s status in place of its built-in text,
/// with every other field kept (`Allow`, `Content-Range`, ...), and the
/// body sent from the file by the backend. `resp` as it is if no page is
/// configured for its status or the page cannot be opened now.
fn with_error_page(req: &Request, resp: Response, site: &Site) -> Response {
    let Some(page) = site.rules.error_pages.get(resp.status) else {
        return resp;
    };
    let file = match open_page(&page.path, site) {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(
                "error page {} for {}: {e}; sent the built-in text",
                page.path.decoded(),
                resp.status.as_u16()
            );
            return resp;
        }
    };
    let len = file.len;
    let body = if req.method == Method::HEAD || len == 0 {
        Body::Empty
    } else {
        Body::File {
            source: Source::with_len(file.file.clone(), len),
            range: ByteRange::full(len),
        }
    };
    Response {
        status: resp.status,
        head: replace_content(resp.head, &file.content_type, len),
        body,
        body_len: len,
        close: resp.close,
    }
}

fn open_and_answer(req: &Request, path: RequestPath, site: &Site) -> Response {
    let keep_alive = req.keep_alive;
    let head_only = req.method == Method::HEAD;
    // `from_memory` accepted the target.
    let (_, query) = split_target(&req.target).unwrap_or((&req.target, None));
    let ctx = Ctx {
        req,
        head_only,
        keep_alive,
        cache_control: None,
        vary_accept: false,
    };
    let cache = &site.cache;
    let key = cache.enabled().then(|| path.key());
    // The window of a cached file starts before it is opened.
    let opened_at = key.as_ref().map(|_| cache.now());
    let keep = |file: OpenFile| {
        let file = Arc::new(file);
        if let (Some(key), Some(at)) = (&key, opened_at) {
            cache.insert(key, file.clone(), at);
        }
        file
    };
    match site.root.open_path(&path, &site.policy) {
        Err(PathError::NotFound)
            if let Some(page) = &site.rules.fallback
                && wants_fallback(path.last_segment(), req.headers.get_all(header::ACCEPT)) =>
        {
            serve_fallback(&ctx, page, site)
                .unwrap_or_else(|| plain(StatusCode::NOT_FOUND, "", head_only, keep_alive))
        }
        Err(e) => path_error(e, head_only, keep_alive, cache),
        Ok(Opened::File(file, meta)) => {
            if path.has_trailing_slash() {
                // A file is not a directory: /a.txt/ names nothing.
                return plain(StatusCode::NOT_FOUND, "", head_only, keep_alive);
            }
            let ctype = content_type(path.last_segment());
            let sidecars = sidecars(req, site, &path, None, &meta, &ctype);
            let file = keep(OpenFile::with_sidecars(file, &meta, ctype, sidecars));
            let ctx = ctx.with_rule(site, path.key(), &file);
            let chosen = precompressed::pick(req, &file, &site.precompressed);
            serve_file(&ctx, chosen.unwrap_or(&file), site.max_ranges)
        }
        Ok(Opened::Dir(dir)) => {
            if !path.has_trailing_slash() {
                return redirect_to_slash(&path, query, head_only, keep_alive);
            }
            match dir.open_index(&site.policy) {
                Ok(Some((file, meta))) => {
                    let ctype = content_type("index.html");
                    let sidecars = sidecars(req, site, &path, Some("index.html"), &meta, &ctype);
                    let file = keep(OpenFile::with_sidecars(file, &meta, ctype, sidecars));
                    let ctx = ctx.with_rule(site, path.key(), &file);
                    let chosen = precompressed::pick(req, &file, &site.precompressed);
                    serve_file(&ctx, chosen.unwrap_or(&file), site.max_ranges)
                }
                Ok(None) if site.listing => listing_page(&path, &dir, site, &ctx, query),
                Ok(None) => plain(
                    StatusCode::FORBIDDEN,
                    "directory listing is off",
                    head_only,
                    keep_alive,
                ),
                Err(e) => path_error(e, head_only, keep_alive, cache),
            }
        }
    }
}

/// The sidecars of the file just opened at `path` (or its `index`), if
/// `req` wants them looked for.
fn sidecars(
    req: &Request,
    site: &Site,
    path: &RequestPath,
    index: Option<&str>,
    meta: &std::fs::Metadata,
    ctype: &str,
) -> Option<Vec<Arc<OpenFile>>> {
    if !precompressed::wanted(req, &site.precompressed) {
        return None;
    }
    let codings = &site.precompressed;
    precompressed::probe(&site.root, &site.policy, path, index, meta, ctype, codings)
}

/// The listing page of `dir`, at most `site.listing_max_entries` entries,
/// as HTML or, if the request asks for it ([`listing::wants_json`]), as
/// JSON (then `X-Listing-Truncated: true` says the cap was reached); in
/// the configured order either way, and `Vary: Accept`.
///
/// A HEAD gets the page's head without the page: RFC 9110 9.3.2 lets a
/// response to HEAD omit the header fields whose values are only known by
/// generating the content, and Content-Length (8.6) is one, so the
/// directory is opened (for GET's status) but not read, and
/// Content-Length is left out. (The listing is `no-cache` and has no
/// validators, so nothing else depends on its bytes.) A GET builds the
/// page once, as the body.
fn listing_page(
    path: &RequestPath,
    dir: &Dir,
    site: &Site,
    ctx: &Ctx<'_>,
    query: Option<&str>,
) -> Response {
    let (head_only, keep_alive) = (ctx.head_only, ctx.keep_alive);
    let accept = ctx.req.headers.get_all(header::ACCEPT);
    let json = listing::wants_json(query, accept.iter().map(|v| v.as_bytes()));
    let sort = site.rules.listing_sort;
    let mut head = Head::new(StatusCode::OK);
    head.header(
        "Content-Type",
        if json {
            "application/json"
        } else {
            "text/html; charset=utf-8"
        },
    )
    .header("Cache-Control", "no-cache")
    .header("Vary", "Accept");
    let listed = if head_only {
        // Opened as for a GET, so that the status is the same; not read.
        dir.check_readable()
            .map(|()| with_body(StatusCode::OK, head, Vec::new(), true, keep_alive))
    } else {
        dir.entries(&site.policy, site.listing_max_entries)
            .map(|mut entries| {
                if !site.listing_show_sidecars {
                    precompressed::hide_sidecars(&mut entries, &site.precompressed);
                }
                let page = if json {
                    if entries.truncated {
                        head.header("X-Listing-Truncated", "true");
                    }
                    listing::render_json(entries, sort)
                } else {
                    listing::render(&path.decoded(), entries, sort).into_bytes()
                };
                head.header("Content-Length", page.len());
                with_body(StatusCode::OK, head, page, false, keep_alive)
            })
    };
    match listed {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!("listing {}: {e}", path.decoded());
            plain(StatusCode::FORBIDDEN, "", head_only, keep_alive)
        }
    }
}

/// The fallback page for a request that found nothing (see
/// [`wants_fallback`]), as if it had been asked for, with its own
/// validators, ranges and `Cache-Control` rule; `Vary: Accept`, as another
/// `Accept` gets a 404. `None` if the page cannot be opened any more.
fn serve_fallback(ctx: &Ctx<'_>, page: &Page, site: &Site) -> Option<Response> {
    let file = match open_page(&page.path, site) {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!("fallback {}: {e}", page.path.decoded());
            return None;
        }
    };
    let ctx = Ctx {
        vary_accept: true,
        ..ctx.with_rule(site, page.path.key(), &file)
    };
    Some(serve_file(&ctx, &file, site.max_ranges))
}

/// Opens a configured page (the fallback, an error page) like a request
/// for its path, through the open-file cache.
fn open_page(path: &RequestPath, site: &Site) -> Result<Arc<OpenFile>, PathError> {
    let cache = &site.cache;
    if cache.enabled()
        && let Some(file) = cache.get(path.key())
    {
        return Ok(file);
    }
    let opened_at = cache.enabled().then(|| cache.now());
    match site.root.open_path(path, &site.policy)? {
        Opened::File(file, meta) => {
            let ctype = content_type(path.last_segment());
            let file = Arc::new(OpenFile::new(file, &meta, ctype));
            if let Some(at) = opened_at {
                cache.insert(path.key(), file.clone(), at);
            }
            Ok(file)
        }
        Opened::Dir(_) => Err(PathError::NotFound),
    }
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    req: &'a Request,
    head_only: bool,
    keep_alive: bool,
    /// The `Cache-Control` rule matching the file served, if any.
    cache_control: Option<&'a str>,
    /// The response depends on `Accept` (the SPA fallback).
    vary_accept: bool,
}

impl<'a> Ctx<'a> {
    /// With the `Cache-Control` rule for `file`, served under `key`: looked
    /// up once per opened file, then remembered with it.
    fn with_rule(self, site: &'a Site, key: &str, file: &OpenFile) -> Ctx<'a> {
        let rules = &site.rules.cache_control;
        if rules.is_empty() {
            return self;
        }
        let rule = *file.cache_rule.get_or_init(|| rules.index_for_key(key));
        Ctx {
            cache_control: rule.map(|i| rules.value(i)),
            ..self
        }
    }

    /// Fields every 200, 206 and 304 of the file carries besides its own.
    fn extra_fields(&self, head: &mut Head) {
        if let Some(value) = self.cache_control {
            head.header("Cache-Control", value);
        }
        if self.vary_accept {
            head.header("Vary", "Accept");
        }
    }
}

fn is_known_method(m: &Method) -> bool {
    [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ]
    .contains(m)
}

fn path_error(e: PathError, head_only: bool, keep_alive: bool, cache: &FileCache) -> Response {
    let detail = match &e {
        PathError::BadRequest(why) => why,
        PathError::Io(errno) => {
            if *errno == libc::EMFILE || *errno == libc::ENFILE {
                // Descriptors the cache holds are the ones to give back.
                cache.clear();
            }
            // EMFILE and the like: the server's trouble, not the client's.
            tracing::error!(
                "opening a file failed: {}",
                std::io::Error::from_raw_os_error(*errno)
            );
            ""
        }
        PathError::NotFound | PathError::Forbidden => "",
    };
    plain(e.status(), detail, head_only, keep_alive)
}

/// Characters encoded in one path segment of a `Location`: controls,
/// space, what ends or splits a segment (`/ ? #`), `%` itself, and what
/// RFC 3986 does not allow unencoded in a path. Non-ASCII is always
/// encoded as UTF-8.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// 301 to the same directory with a slash, query kept.
///
/// The `Location` is rebuilt from the normalised, decoded segments, each
/// percent-encoded again, never copied from the request: `//evil.com`
/// would otherwise be a protocol-relative URL naming another host. So it
/// starts with exactly one `/` and holds no empty, `.` or `..` segment.
/// The query is kept as sent, with anything outside visible ASCII encoded
/// so the header stays a valid field value.
fn redirect_to_slash(
    path: &RequestPath,
    query: Option<&str>,
    head_only: bool,
    keep_alive: bool,
) -> Response {
    let mut location = String::with_capacity(path.key().len() + 2);
    for segment in path.segments() {
        location.push('/');
        location.extend(utf8_percent_encode(segment, SEGMENT));
    }
    location.push('/');
    if let Some(query) = query {
        location.push('?');
        for b in query.bytes() {
            if b.is_ascii_graphic() {
                location.push(b as char);
            } else {
                location.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let body = format!("301 Moved Permanently\n{location}\n").into_bytes();
    let mut head = Head::new(StatusCode::MOVED_PERMANENTLY);
    head.header("Location", &location)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Content-Length", body.len());
    with_body(
        StatusCode::MOVED_PERMANENTLY,
        head,
        body,
        head_only,
        keep_alive,
    )
}

fn content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let essence = mime.essence_str();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    if textual && mime.get_param("charset").is_none() {
        format!("{essence}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

fn serve_file(ctx: &Ctx<'_>, file: &OpenFile, max_ranges: usize) -> Response {
    let len = file.len;
    let v = &file.validators;
    let headers: &HeaderMap = &ctx.req.headers;
    let validators = |head: &mut Head| {
        head.header("ETag", &v.etag)
            .header("Last-Modified", &file.last_modified);
        if file.vary {
            head.fields(VARY.as_bytes());
        }
    };
    let precondition = if ctx.req.has_preconditions {
        conditional::evaluate(&ctx.req.method, headers, v)
    } else {
        Precondition::Proceed
    };
    match precondition {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let mut head = Head::new(StatusCode::NOT_MODIFIED);
            validators(&mut head);
            ctx.extra_fields(&mut head);
            return Response {
                status: StatusCode::NOT_MODIFIED,
                head: head.finish(ctx.keep_alive),
                body: Body::Empty,
                body_len: 0,
                close: !ctx.keep_alive,
            };
        }
        Precondition::Failed => {
            let mut failed = plain(
                StatusCode::PRECONDITION_FAILED,
                "",
                ctx.head_only,
                ctx.keep_alive,
            );
            if file.vary {
                // Before the blank line that ends the head.
                let at = failed.head.len() - 2;
                failed.head.splice(at..at, VARY.bytes());
            }
            return failed;
        }
    }
    let ctype = &file.content_type;
    let source = Source::with_len(file.file.clone(), len);
    let range = if ctx.req.has_range {
        headers.get(header::RANGE)
    } else {
        None
    };
    // One range at most of encoded bytes: `multipart/byteranges` parts
    // have no place for a Content-Encoding, so more get the whole (RFC 9110
    // 14.2 lets a server ignore a Range).
    let max_ranges = if file.coding.is_some() {
        max_ranges.min(1)
    } else {
        max_ranges
    };
    let ranges = match range {
        Some(value)
            if ctx.req.method == Method::GET && conditional::if_range_allows(headers, v) =>
        {
            range::parse_range(value.as_bytes(), len, max_ranges)
        }
        _ => RangeRequest::Full,
    };
    let boundary = match &ranges {
        RangeRequest::Partial(ranges) if ranges.len() > 1 => boundary(),
        _ => None,
    };
    let (status, mut head, body, body_len) = match ranges {
        RangeRequest::Partial(ranges) if ranges.len() > 1 && boundary.is_none() => {
            // No boundary to be had: a 200 with the whole file is also an
            // answer to a range request (RFC 9110 14.2).
            tracing::warn!("no random multipart boundary: ranges ignored");
            return serve_file(ctx, file, 1);
        }
        RangeRequest::Full => {
            // The common case: every field but Date was formatted when the
            // file was opened.
            let mut head = Head::new(StatusCode::OK);
            head.fields(&file.ok_fields);
            ctx.extra_fields(&mut head);
            let body = if ctx.head_only {
                Body::Empty
            } else {
                Body::File {
                    source,
                    range: ByteRange::full(len),
                }
            };
            return Response {
                status: StatusCode::OK,
                head: head.finish(ctx.keep_alive),
                body,
                body_len: len,
                close: !ctx.keep_alive,
            };
        }
        RangeRequest::Unsatisfiable => {
            let mut head = Head::new(StatusCode::RANGE_NOT_SATISFIABLE);
            head.header("Content-Range", range::unsatisfied_range(len))
                .header("Content-Length", 0);
            validators(&mut head);
            let close = !ctx.keep_alive;
            return Response {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                head: head.finish(ctx.keep_alive),
                body: Body::Empty,
                body_len: 0,
                close,
            };
        }
        RangeRequest::Partial(ranges) if ranges.len() == 1 => {
            let r = ranges[0];
            let mut head = Head::new(StatusCode::PARTIAL_CONTENT);
            head.header("Content-Type", ctype);
            if let Some(c) = file.coding {
                head.header("Content-Encoding", c);
            }
            head.header("Content-Range", range::content_range(r, len))
                .header("Content-Length", r.len());
            (
                StatusCode::PARTIAL_CONTENT,
                head,
                Body::File { source, range: r },
                r.len(),
            )
        }
        RangeRequest::Partial(ranges) => {
            let boundary = boundary.unwrap_or_default();
            let mut parts = Vec::with_capacity(ranges.len());
            let mut total = 0u64;
            for r in ranges {
                let part = format!(
                    "\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: {}\r\n\r\n",
                    range::content_range(r, len)
                )
                .into_bytes();
                total += part.len() as u64 + r.len();
                parts.push((part, r));
            }
            let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
            total += tail.len() as u64;
            let mut head = Head::new(StatusCode::PARTIAL_CONTENT);
            head.header(
                "Content-Type",
                format!("multipart/byteranges; boundary={boundary}"),
            )
            .header("Content-Length", total);
            (
                StatusCode::PARTIAL_CONTENT,
                head,
                Body::Multipart {
                    source,
                    parts,
                    tail,
                },
                total,
            )
        }
    };
    head.header("Accept-Ranges", "bytes");
    validators(&mut head);
    ctx.extra_fields(&mut head);
    Response {
        status,
        head: head.finish(ctx.keep_alive),
        body: if ctx.head_only { Body::Empty } else { body },
        body_len,
        close: !ctx.keep_alive,
    }
}

/// A fresh `multipart/byteranges` boundary: 128 bits from the operating
/// system's random source for every response, so that no one can know it
/// before the response is sent. A file can hold any bytes, so a boundary
/// derived from something visible (the ETag, as it once was) could be
/// planted in the file to forge parts; one that is unknown until it is sent
/// cannot be, and scanning every part's bytes for it is not needed. `None`
/// if the random source fails (the caller then ignores the ranges).
fn boundary() -> Option<String> {
    let mut bits = [0u8; 16];
    getrandom::fill(&mut bits).ok()?;
    let mut out = String::with_capacity(8 + 32);
    out.push_str("zcserve-");
    for b in bits {
        let _ = write!(out, "{b:02x}");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("a.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("a.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a.json"), "application/json; charset=utf-8");
        assert_eq!(content_type("a.png"), "image/png");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn preformatted_fields_are_the_fields_one_by_one() {
        let path = std::env::temp_dir().join(format!("zcserve-okfields-{}.js", std::process::id()));
        std::fs::write(&path, b"let x = 1;\n").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let meta = file.metadata().unwrap();
        let f = OpenFile::new(file, &meta, content_type("a.js"));
        std::fs::remove_file(&path).unwrap();
        let mut fast = Head::new(StatusCode::OK);
        fast.fields(&f.ok_fields);
        let mut slow = Head::new(StatusCode::OK);
        slow.header("Content-Type", &f.content_type)
            .header("Content-Length", f.len)
            .header("Accept-Ranges", "bytes")
            .header("ETag", &f.validators.etag)
            .header("Last-Modified", &f.last_modified);
        let undated = |h: Vec<u8>| {
            String::from_utf8(h)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("Date: "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(undated(fast.finish(true)), undated(slow.finish(true)));
    }

    #[test]
    fn redirect_keeps_query_and_encodes() {
        let redirect = |raw, query, head_only| {
            let p = RequestPath::parse(raw).unwrap();
            let r = redirect_to_slash(&p, query, head_only, true);
            (String::from_utf8(r.head).unwrap(), r.body)
        };
        let (head, _) = redirect("/a%20b", Some("x=1"), false);
        assert!(head.contains("Location: /a%20b/?x=1\r\n"), "{head}");
        let (head, body) = redirect("/d\u{e9}", None, true);
        assert!(head.contains("Location: /d%C3%A9/\r\n"), "{head}");
        assert!(matches!(body, Body::Empty));
        // Rebuilt from segments: one leading slash, names re-encoded.
        let (head, _) = redirect("//evil.com", None, false);
        assert!(head.contains("Location: /evil.com/\r\n"), "{head}");
        let (head, _) = redirect("/.//x%2F%2Fy/%3F%23%25", Some("q=\u{e9}"), false);
        assert!(
            head.contains("Location: /x/y/%3F%23%25/?q=%C3%A9\r\n"),
            "{head}"
        );
    }
}
