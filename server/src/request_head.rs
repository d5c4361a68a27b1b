//! Reading one request head off the wire: `httparse` does the syntax, this
//! module enforces what a static server must (Host on 1.1, one valid
//! Content-Length, no Content-Length beside Transfer-Encoding, chunked as
//! the final transfer coding) and turns every refusal into the status the
//! client should get. A higher HTTP/1 minor version is read as 1.1 (RFC
//! 9110 §2.5); another major version gets 505.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Most bytes a request head may take (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields a request may carry.
pub const MAX_HEADERS: usize = 100;

/// A parsed request head.
#[derive(Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request target as sent (origin-form or absolute-form).
    pub target: String,
    /// HTTP/1.0 or HTTP/1.1 (also for HTTP/1.2 and later minors, which
    /// are processed as 1.1).
    pub version: Version,
    /// The header fields this server reads ([`READ_HEADERS`]); the others
    /// were checked by the parser and left out.
    pub headers: HeaderMap,
    /// Bytes of body that follow the head (from Content-Length).
    pub body_len: u64,
    /// The body is chunked (Transfer-Encoding, chunked the final and only
    /// coding): its end is found by decoding it
    /// ([`crate::request_body`]).
    pub chunked_body: bool,
    /// An HTTP/1.1 request with `Expect: 100-continue`: the client may
    /// wait for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// The client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// Some `If-*` header is present; without one there is no
    /// precondition to evaluate (and the header map need not be searched).
    pub has_preconditions: bool,
    /// A `Range` header is present.
    pub has_range: bool,
    /// An `Accept-Encoding` header is present (see
    /// [`crate::http::accept_encoding`]).
    pub has_accept_encoding: bool,
}

/// The header fields a static file server reads: the framing and
/// connection fields, `Range`, the preconditions, `Accept-Encoding` (for
/// precompressed files), and what the access log records. Browsers send a
/// dozen more (`Accept`, `Sec-Fetch-*`,
/// cookies); copying each into the map cost an allocation or two for
/// nothing. `Accept` is read for the SPA fallback and JSON listings.
pub const READ_HEADERS: [&str; 15] = [
    "accept",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "referer",
    "user-agent",
    "accept-encoding",
];

fn is_read(name: &str) -> bool {
    READ_HEADERS
        .iter()
        .any(|r| r.len() == name.len() && r.eq_ignore_ascii_case(name))
}

/// What the header loop noticed, so that absent headers are not searched
/// for again: most requests carry none of the ones a file server reads
/// besides Host.
#[derive(Default)]
struct Seen<'a> {
    hosts: usize,
    host: Option<&'a [u8]>,
    framing: bool,
    connection: bool,
    expect: bool,
    preconditions: bool,
    range: bool,
    accept_encoding: bool,
}

impl<'a> Seen<'a> {
    fn note(&mut self, name: &HeaderName, value: &'a [u8]) {
        if *name == header::HOST {
            self.hosts += 1;
            self.host = Some(value);
        } else if *name == header::CONTENT_LENGTH || *name == header::TRANSFER_ENCODING {
            self.framing = true;
        } else if *name == header::CONNECTION {
            self.connection = true;
        } else if *name == header::EXPECT {
            self.expect = true;
        } else if *name == header::RANGE {
            self.range = true;
        } else if *name == header::ACCEPT_ENCODING {
            self.accept_encoding = true;
        } else if *name == header::IF_MATCH
            || *name == header::IF_NONE_MATCH
            || *name == header::IF_MODIFIED_SINCE
            || *name == header::IF_UNMODIFIED_SINCE
            || *name == header::IF_RANGE
        {
            self.preconditions = true;
        }
    }
}

/// Why a request head was refused; the connection closes after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status to answer with.
    pub status: StatusCode,
    /// What was wrong, for the log and the response body.
    pub reason: &'static str,
}

fn refuse(status: StatusCode, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// The result of looking at the bytes received so far.
#[derive(Debug)]
pub enum Parsed {
    /// A whole head: the request and how many bytes it took.
    Complete(Box<Request>, usize),
    /// More bytes are needed.
    Partial,
}

/// Parses the head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, Refusal> {
    parse_head(buf, true)
}

/// [`parse`]; `other_versions` lets a version httparse refuses be looked
/// at again (once) by [`other_version`].
fn parse_head(buf: &[u8], other_versions: bool) -> Result<Parsed, Refusal> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields",
            ));
        }
        Err(httparse::Error::Version) if other_versions => return other_version(buf),
        Err(httparse::Error::Version) => {
            return Err(refuse(StatusCode::BAD_REQUEST, "malformed HTTP version"));
        }
        Err(e) => return Err(refuse(StatusCode::BAD_REQUEST, describe(e))),
    };
    let len = match status {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => {
            return if buf.len() >= MAX_HEAD {
                Err(refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head larger than 16 KiB",
                ))
            } else {
                Ok(Parsed::Partial)
            };
        }
    };
    if len > MAX_HEAD {
        return Err(refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head larger than 16 KiB",
        ));
    }
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(refuse(StatusCode::BAD_REQUEST, "malformed HTTP version")),
    };
    let method = req
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "malformed method"))?;
    let target = req.path.unwrap_or_default();
    if target.is_empty() {
        return Err(refuse(StatusCode::BAD_REQUEST, "empty request target"));
    }
    let mut headers = HeaderMap::new();
    let mut seen = Seen::default();
    for h in req.headers.iter() {
        // httparse has already held every name to RFC 9110's token syntax
        // and every value to its field-value bytes, exactly what `http`
        // checks below; a field nobody reads needs nothing more.
        if !is_read(h.name) {
            continue;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| refuse(StatusCode::BAD_REQUEST, "malformed header name"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| refuse(StatusCode::BAD_REQUEST, "malformed header value"))?;
        seen.note(&name, h.value);
        headers.append(name, value);
    }
    if seen.hosts > 1 {
        return Err(refuse(StatusCode::BAD_REQUEST, "more than one Host header"));
    }
    if version == Version::HTTP_11 && seen.hosts == 0 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "HTTP/1.1 request without Host",
        ));
    }
    if let Some(host) = seen.host
        && !valid_host(host)
    {
        return Err(refuse(StatusCode::BAD_REQUEST, "invalid Host"));
    }
    let (body_len, chunked_body) = if seen.framing {
        body_framing(&headers, version)?
    } else {
        (0, false)
    };
    let keep_alive = if seen.connection {
        wants_keep_alive(&headers, version)
    } else {
        version == Version::HTTP_11
    };
    // RFC 9110 §10.1.1: an HTTP/1.0 client does not understand 1xx, so its
    // Expect is ignored.
    let expect_continue = seen.expect
        && version == Version::HTTP_11
        && headers
            .get_all(header::EXPECT)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|e| trim(e).eq_ignore_ascii_case(b"100-continue"));
    Ok(Parsed::Complete(
        Box::new(Request {
            method,
            target: target.to_string(),
            version,
            headers,
            body_len,
            chunked_body,
            expect_continue,
            keep_alive,
            has_preconditions: seen.preconditions,
            has_range: seen.range,
            has_accept_encoding: seen.accept_encoding,
        }),
        len,
    ))
}

/// RFC 9112 §3.2: Host is `uri-host [ ":" port ]` (RFC 3986), or empty
/// when the target has no authority. No userinfo, no spaces.
fn valid_host(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    let Ok(text) = std::str::from_utf8(v) else {
        return false;
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        // An IP literal: the bracketed part, then an optional port.
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        if literal.is_empty()
            || !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'))
        {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("x", Some(port)),
            None if after.is_empty() => ("x", None),
            None => return false,
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    // reg-name: unreserved / pct-encoded / sub-delims.
    let host_ok = host.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    });
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// How the request body is framed (RFC 9112 §6.3), refusing the ambiguous
/// framings that enable request smuggling.
fn body_framing(headers: &HeaderMap, version: Version) -> Result<(u64, bool), Refusal> {
    let te: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if version == Version::HTTP_10 {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        transfer_codings(&te)?;
        return Ok((0, true));
    }
    match cl.as_slice() {
        [] => Ok((0, false)),
        [one] => parse_content_length(one.as_bytes()).map(|n| (n, false)),
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "more than one Content-Length",
        )),
    }
}

/// Checks the transfer codings of a request (RFC 9112 §6): the body's end
/// is knowable only when chunked is the final coding (else 400, §6.3), and
/// chunked is applied once (§6.1). Chunked is the only coding this server
/// implements; another one before it is one it does not understand: 501
/// (§6.1). Empty list elements are allowed (RFC 9110 §5.6.1);
/// parameters are ignored.
fn transfer_codings(values: &[&HeaderValue]) -> Result<(), Refusal> {
    let bad = |why| Err(refuse(StatusCode::BAD_REQUEST, why));
    let mut codings = Vec::new();
    for v in values {
        for element in v.as_bytes().split(|&b| b == b',') {
            if trim(element).is_empty() {
                continue;
            }
            let mut parts = element.split(|&b| b == b';').map(trim);
            let name = parts.next().unwrap_or_default();
            // transfer-parameter = token BWS "=" BWS ( token / quoted-string )
            let param_ok = |p: &[u8]| match p.iter().position(|&b| b == b'=') {
                Some(eq) => {
                    let (k, v) = (trim(&p[..eq]), trim(&p[eq + 1..]));
                    is_token(k)
                        && (is_token(v)
                            || (v.len() >= 2
                                && v.starts_with(b"\"")
                                && v.ends_with(b"\"")
                                && !v[1..v.len() - 1].contains(&b'"')))
                }
                None => false,
            };
            if !is_token(name) || !parts.all(param_ok) {
                return bad("malformed Transfer-Encoding");
            }
            codings.push(name);
        }
    }
    let chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
    match codings.split_last() {
        None => bad("empty Transfer-Encoding"),
        Some((last, _)) if !chunked(last) => bad("chunked is not the final transfer coding"),
        Some((_, before)) if before.iter().any(chunked) => bad("chunked applied twice"),
        Some((_, [])) => Ok(()),
        Some(_) => Err(refuse(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported transfer coding",
        )),
    }
}

/// RFC 9110 §5.6.2 `token`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Without leading and trailing spaces and tabs (OWS).
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A request line whose version httparse refused (it knows exactly
/// `HTTP/1.0` and `HTTP/1.1`). RFC 9110 §2.5: a recipient processes a
/// higher minor version of a major version it implements as the highest
/// minor it implements, so `HTTP/1.2` (or `HTTP/1.9`) is read as 1.1, by
/// parsing a copy with the version rewritten in place (same length, same
/// offsets). Another major version (`HTTP/2.0`, `HTTP/0.9`) in an HTTP/1
/// request line gets 505 once the request line is whole and otherwise
/// valid. Anything else is a malformed version: 400.
fn other_version(buf: &[u8]) -> Result<Parsed, Refusal> {
    let bad = || refuse(StatusCode::BAD_REQUEST, "malformed HTTP version");
    // httparse skips empty lines before the request line (RFC 9112 §2.2).
    let mut start = 0;
    while let Some(rest) = buf.get(start..) {
        if rest.starts_with(b"\r\n") {
            start += 2;
        } else if rest.starts_with(b"\n") {
            start += 1;
        } else {
            break;
        }
    }
    let rest = &buf[start..];
    let (line, whole) = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => (&rest[..end], true),
        None => (rest, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(space) = line.iter().rposition(|&b| b == b' ') else {
        return Err(bad());
    };
    let at = start + space + 1;
    let version = &line[space + 1..];
    const SHAPE: &[u8] = b"HTTP/0.0";
    let fits = |(i, &b): (usize, &u8)| {
        if SHAPE[i] == b'0' {
            b.is_ascii_digit()
        } else {
            b == SHAPE[i]
        }
    };
    if version.len() > SHAPE.len() || !version.iter().enumerate().all(fits) {
        return Err(bad());
    }
    if !whole || version.len() < SHAPE.len() {
        return if whole {
            Err(bad())
        } else if buf.len() >= MAX_HEAD {
            Err(refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head larger than 16 KiB",
            ))
        } else {
            Ok(Parsed::Partial)
        };
    }
    let (major, minor) = (version[5], version[7]);
    let mut copy = buf.to_vec();
    copy[at..at + SHAPE.len()].copy_from_slice(b"HTTP/1.1");
    if major == b'1' {
        if minor <= b'1' {
            // httparse refused a 1.0 or 1.1 line for its spacing (say two
            // spaces before the version), not for the version.
            return Err(refuse(StatusCode::BAD_REQUEST, "malformed request line"));
        }
        return parse_head(&copy, false);
    }
    // Another major version: 505, but only for a request line that is
    // otherwise well-formed.
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut slots).parse(&copy) {
        Ok(_) | Err(httparse::Error::TooManyHeaders) => Err(refuse(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "only HTTP/1.x is served here",
        )),
        Err(e) => Err(refuse(StatusCode::BAD_REQUEST, describe(e))),
    }
}

fn parse_content_length(v: &[u8]) -> Result<u64, Refusal> {
    let bad = || refuse(StatusCode::BAD_REQUEST, "invalid Content-Length");
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes
/// unless told `keep-alive`.
fn wants_keep_alive(headers: &HeaderMap, version: Version) -> bool {
    let mut close = false;
    let mut keep = false;
    for v in headers.get_all(header::CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',') {
            let t = token.trim();
            close |= t.eq_ignore_ascii_case("close");
            keep |= t.eq_ignore_ascii_case("keep-alive");
        }
    }
    if close {
        false
    } else {
        version == Version::HTTP_11 || keep
    }
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "malformed header name",
        httparse::Error::HeaderValue => "malformed header value",
        httparse::Error::NewLine => "malformed line ending",
        httparse::Error::Token => "malformed request line",
        httparse::Error::Status | httparse::Error::Version => "malformed HTTP version",
        httparse::Error::TooManyHeaders => "too many header fields",
    }
}

/// The path and query of a request target, for origin-form (`/a?b`) and
/// absolute-form (`http://host/a?b`) targets. `None` for anything else
/// (authority-form, `*`, garbage).
pub fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    let rest = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..8).map(str::to_ascii_lowercase)?;
        let after = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return None;
        };
        match after.find('/') {
            Some(i) => &after[i..],
            None => "/",
        }
    };
    // A fragment never belongs in a request target; drop it like a query.
    let rest = rest.split('#').next().unwrap_or(rest);
    Some(match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Request {
        match parse(raw.as_bytes()) {
            Ok(Parsed::Complete(r, n)) => {
                assert_eq!(n, raw.len());
                *r
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn refused(raw: &[u8]) -> StatusCode {
        match parse(raw) {
            Err(r) => r.status,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn simple_get_and_keep_alive_rules() {
        let r = ok("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            (r.method, r.target.as_str(), r.keep_alive),
            (Method::GET, "/a", true)
        );
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            !ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n").keep_alive
        );
    }

    #[test]
    fn headers_the_server_reads_are_noticed_case_insensitively() {
        let r = ok("GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        assert!(!r.has_preconditions && !r.has_range);
        for h in [
            "If-Match: *",
            "if-none-match: \"x\"",
            "IF-MODIFIED-SINCE: Sun, 06 Nov 1994 08:49:37 GMT",
            "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
            "If-Range: \"x\"",
        ] {
            let r = ok(&format!("GET /a HTTP/1.1\r\nHost: x\r\n{h}\r\n\r\n"));
            assert!(r.has_preconditions && !r.has_range, "{h}");
        }
        let r = ok("GET /a HTTP/1.1\r\nrange: bytes=0-1\r\nHost: x\r\n\r\n");
        assert!(r.has_range && !r.has_preconditions);
        let r = ok("GET /a HTTP/1.1\r\nHost: x\r\ncOnNeCtIoN: close\r\n\r\n");
        assert!(!r.keep_alive);
        let r = ok("GET /a HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(r.body_len, 5);
    }

    #[test]
    fn only_the_fields_the_server_reads_are_kept() {
        let raw = b"GET /a HTTP/1.1\r\nHost: x\r\nAccept-Language: en\r\nX-Odd: \x80\xff\r\n\
                    User-Agent: ua\r\nReferer: /r\r\nSec-Fetch-Mode: navigate\r\n\r\n";
        let Ok(Parsed::Complete(r, _)) = parse(raw) else {
            panic!("refused")
        };
        let names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host", "user-agent", "referer"]);
        let r = ok("GET /a HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n");
        assert_eq!(r.headers.get("accept").unwrap(), "text/html");
        // What is not kept is still held to the field syntax.
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: x\r\nX(y): 1\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-Y: a\x7fb\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn partial_until_blank_line() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Ok(Parsed::Partial)
        ));
        assert!(matches!(parse(b"GE"), Ok(Parsed::Partial)));
    }

    #[test]
    fn limits() {
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(refused(&big), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(refused(&many), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn smuggling_framings_are_refused() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(refused(raw), StatusCode::BAD_REQUEST);
        }
        let r = ok("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(r.chunked_body);
        assert_eq!(
            ok("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n").body_len,
            12
        );
    }

    #[test]
    fn host_values() {
        for good in [
            "x",
            "a.example:8080",
            "127.0.0.1:80",
            "[::1]:8000",
            "[::1]",
            "",
            "h:",
        ] {
            assert!(valid_host(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "bad host", "u@h", "h:8x", "[::1", "[::1]x", "[]", "a/b", "h\\x", "a:b:c",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn host_rules() {
        assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        ok("GET / HTTP/1.0\r\n\r\n");
    }

    #[test]
    fn bad_lines() {
        for raw in [
            &b"GET / HTTX/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.10\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.2 \r\nHost: x\r\n\r\n",
            b"GET / HTTP/1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/3\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.x\r\nHost: x\r\n\r\n",
            b"GET / http/1.2\r\nHost: x\r\n\r\n",
            b"GET /a b HTTP/1.2\r\nHost: x\r\n\r\n",
            b"G\x01T / HTTP/1.2\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.2\r\nHo st: x\r\n\r\n",
            b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /  HTTP/1.2\r\nHost: x\r\n\r\n",
            b"GET /  HTTP/2.0\r\nHost: x\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad\r\n\r\n",
            b"\x00GET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                refused(raw),
                StatusCode::BAD_REQUEST,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn transfer_codings_follow_rfc_9112() {
        let te = |v: &str| format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {v}\r\n\r\n");
        for good in [
            "chunked",
            "Chunked",
            "CHUNKED",
            " chunked ",
            "chunked,",
            ", chunked",
        ] {
            assert!(ok(&te(good)).chunked_body, "{good:?}");
        }
        // RFC 9112 §6.3: chunked not the final coding → 400.
        for final_not_chunked in [
            "gzip",
            "identity",
            "chunked, gzip",
            "chunked, identity",
            "gzip, chunked, deflate",
            "x-unknown",
        ] {
            assert_eq!(
                refused(te(final_not_chunked).as_bytes()),
                StatusCode::BAD_REQUEST,
                "{final_not_chunked:?}"
            );
        }
        // §6.1: chunked at most once; and what is no coding at all.
        for bad in [
            "chunked, chunked",
            "",
            ",",
            "chunked;",
            "ch unked",
            "chunked, \"x\"",
        ] {
            assert_eq!(
                refused(te(bad).as_bytes()),
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
        // Chunked last after a coding this server does not implement: the
        // end is knowable, the coding is not understood → 501.
        for unknown in [
            "gzip, chunked",
            "identity, chunked",
            "br;q=1, chunked",
            "x; a=\"b\", chunked",
        ] {
            assert_eq!(
                refused(te(unknown).as_bytes()),
                StatusCode::NOT_IMPLEMENTED,
                "{unknown:?}"
            );
        }
        // Over two field lines, the list is the concatenation.
        let two = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\
                   Transfer-Encoding: chunked\r\n\r\n";
        assert_eq!(refused(two.as_bytes()), StatusCode::NOT_IMPLEMENTED);
        let two = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                   Transfer-Encoding: gzip\r\n\r\n";
        assert_eq!(refused(two.as_bytes()), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn higher_minor_versions_are_read_as_1_1() {
        for minor in 2..=9 {
            let raw = format!("GET /a HTTP/1.{minor}\r\nHost: x\r\n\r\n");
            let r = ok(&raw);
            assert_eq!((r.version, r.target.as_str()), (Version::HTTP_11, "/a"));
            assert!(r.keep_alive);
        }
        // 1.1's rules apply: Host is required.
        assert_eq!(refused(b"GET / HTTP/1.2\r\n\r\n"), StatusCode::BAD_REQUEST);
        // Leading empty lines are skipped as for 1.1.
        ok("\r\n\nGET / HTTP/1.5\r\nHost: x\r\n\r\n");
        // Bytes after the head stay unread.
        match parse(b"GET / HTTP/1.2\r\nHost: x\r\n\r\nGET") {
            Ok(Parsed::Complete(_, n)) => assert_eq!(n, 27),
            other => panic!("{other:?}"),
        }
        // Byte by byte, a 1.2 head is Partial until its blank line.
        let raw = b"GET /a HTTP/1.2\r\nHost: x\r\n\r\n";
        for k in 0..raw.len() {
            assert!(matches!(parse(&raw[..k]), Ok(Parsed::Partial)), "{k}");
        }
    }

    #[test]
    fn other_major_versions_get_505() {
        for v in ["HTTP/2.0", "HTTP/3.0", "HTTP/9.9", "HTTP/0.9"] {
            let raw = format!("GET / {v}\r\nHost: x\r\n\r\n");
            assert_eq!(
                refused(raw.as_bytes()),
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "{v}"
            );
        }
        // As soon as the request line is whole.
        assert_eq!(
            refused(b"PRI * HTTP/2.0\r\n"),
            StatusCode::HTTP_VERSION_NOT_SUPPORTED
        );
        assert!(matches!(parse(b"GET / HTTP/2.0"), Ok(Parsed::Partial)));
        assert!(matches!(parse(b"GET / HTTP/2"), Ok(Parsed::Partial)));
    }

    #[test]
    fn expect_100_continue() {
        let r =
            ok("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        assert!(r.expect_continue);
        assert!(ok("PUT / HTTP/1.1\r\nHost: x\r\nexpect:  100-Continue \r\n\r\n").expect_continue);
        assert!(!ok("PUT / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n").expect_continue);
        assert!(!ok("PUT / HTTP/1.1\r\nHost: x\r\n\r\n").expect_continue);
        // An HTTP/1.0 client is never sent a 1xx.
        assert!(!ok("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("/a/b?x=1"), Some(("/a/b", Some("x=1"))));
        assert_eq!(split_target("http://h:1/a?q"), Some(("/a", Some("q"))));
        assert_eq!(split_target("HTTP://h"), Some(("/", None)));
        assert_eq!(split_target("/a#frag"), Some(("/a", None)));
        assert_eq!(split_target("*"), None);
        assert_eq!(split_target("h:80"), None);
        assert_eq!(split_target("ftp://h/a"), None);
    }
}
