//! A request target's path, decoded and normalised into something that can
//! be looked up beneath the served root (by [`crate::fs::Root::open_path`]).
//!
//! [`RequestPath::parse`] percent-decodes the path exactly once and rejects
//! what no file name should contain (`..`, NUL, backslashes, invalid UTF-8);
//! `.` and empty segments are dropped. [`PathError`] says why a path cannot
//! be served, here or when it is opened, and with which status.
//!
//! Pure functions: nothing here touches the filesystem.

use std::borrow::Cow;
use std::fmt;
use std::io;

use nix::errno::Errno;

/// Why a path cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// 400: the path is malformed; the reason is for the log.
    BadRequest(&'static str),
    /// 404: nothing (visible) by that name.
    NotFound,
    /// 403: the name exists but may not be served (a symlink leading out of
    /// the root, no permission, a FIFO or device).
    Forbidden,
    /// 500: an unexpected system error (e.g. `EMFILE`), as an `errno` value.
    Io(i32),
}

impl PathError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            PathError::BadRequest(_) => http::StatusCode::BAD_REQUEST,
            PathError::NotFound => http::StatusCode::NOT_FOUND,
            PathError::Forbidden => http::StatusCode::FORBIDDEN,
            PathError::Io(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn from_errno(e: Errno) -> PathError {
        match e {
            Errno::ENOENT | Errno::ENOTDIR => PathError::NotFound,
            Errno::EXDEV | Errno::ELOOP | Errno::EACCES | Errno::EPERM => PathError::Forbidden,
            // Sockets (ENXIO) and devices without a driver (ENODEV).
            Errno::ENXIO | Errno::ENODEV => PathError::Forbidden,
            Errno::ENAMETOOLONG => PathError::BadRequest("path or file name too long"),
            e => PathError::Io(e as i32),
        }
    }

    pub(crate) fn from_io(e: &io::Error) -> PathError {
        match e.raw_os_error() {
            Some(n) => PathError::from_errno(Errno::from_raw(n)),
            None => match e.kind() {
                io::ErrorKind::NotFound => PathError::NotFound,
                io::ErrorKind::PermissionDenied => PathError::Forbidden,
                _ => PathError::Io(libc::EIO),
            },
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::BadRequest(reason) => write!(f, "bad request path: {reason}"),
            PathError::NotFound => f.write_str("not found"),
            PathError::Forbidden => f.write_str("forbidden"),
            PathError::Io(n) => write!(f, "{}", io::Error::from_raw_os_error(*n)),
        }
    }
}

impl std::error::Error for PathError {}

/// A validated, percent-decoded request path: a list of segments none of
/// which is empty, `.`, `..`, or contains `/`, `\` or NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// The segments joined with `/`, plus a `/` if the request had a
    /// trailing slash (`"/"` alone for the root): one string rather than
    /// one per segment, as every request parses one of these.
    text: String,
    trailing_slash: bool,
}

impl RequestPath {
    /// Parses the path of an origin-form request target (query already
    /// removed, still percent-encoded).
    ///
    /// The path must start with `/`. It is percent-decoded exactly once
    /// (`%252e` is the literal name `%2e`); a malformed escape, bytes that
    /// are not UTF-8 (including overlong forms such as `%c0%ae`), NUL, a
    /// backslash (raw or encoded) or a `..` segment make it a
    /// [`PathError::BadRequest`]. `.` and empty segments are dropped.
    pub fn parse(raw_path: &str) -> Result<RequestPath, PathError> {
        if !raw_path.starts_with('/') {
            return Err(PathError::BadRequest("path does not start with '/'"));
        }
        if raw_path.contains('\\') {
            return Err(PathError::BadRequest("backslash in path"));
        }
        // Most paths have nothing to decode: no copy for them.
        let decoded = if raw_path.contains('%') {
            let bytes = percent_decode_strict(raw_path.as_bytes())?;
            if bytes.contains(&0) {
                return Err(PathError::BadRequest("NUL byte in path"));
            }
            if bytes.contains(&b'\\') {
                return Err(PathError::BadRequest("encoded backslash in path"));
            }
            Cow::Owned(
                String::from_utf8(bytes)
                    .map_err(|_| PathError::BadRequest("path is not valid UTF-8"))?,
            )
        } else if raw_path.contains('\0') {
            return Err(PathError::BadRequest("NUL byte in path"));
        } else {
            Cow::Borrowed(raw_path)
        };

        let mut text = String::with_capacity(decoded.len());
        let mut trailing_slash = false;
        // The decoded path starts with '/', as '/' is not '%'.
        for segment in decoded[1..].split('/') {
            match segment {
                // `/a/` and `/a/.` both name the directory `a` with a slash.
                "" | "." => trailing_slash = true,
                ".." => return Err(PathError::BadRequest("'..' segment in path")),
                name => {
                    if !text.is_empty() {
                        text.push('/');
                    }
                    text.push_str(name);
                    trailing_slash = false;
                }
            }
        }
        if trailing_slash {
            text.push('/');
        }
        Ok(RequestPath {
            text,
            trailing_slash,
        })
    }

    /// The segments joined with `/`, without a trailing slash; empty for
    /// the root.
    pub(crate) fn joined(&self) -> &str {
        self.text.strip_suffix('/').unwrap_or(&self.text)
    }

    /// The decoded segments, root first; empty for `/`.
    pub fn segments(&self) -> Vec<&str> {
        self.joined().split('/').filter(|s| !s.is_empty()).collect()
    }

    /// The last segment; empty for `/`.
    pub fn last_segment(&self) -> &str {
        self.joined().rsplit('/').next().unwrap_or("")
    }

    /// Whether the path ended with `/` (or `/.`); always true for `/`.
    pub fn has_trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// Whether any segment names a dotfile or dot-directory.
    pub fn is_hidden(&self) -> bool {
        self.text.split('/').any(|s| s.starts_with('.'))
    }

    /// The normalised, decoded path: `/` followed by the segments joined
    /// with `/`, plus a trailing `/` if the request had one (for log lines
    /// and listing titles; not for URLs, as it is not percent-encoded).
    pub fn decoded(&self) -> String {
        if self.text == "/" {
            return self.text.clone();
        }
        format!("/{}", self.text)
    }

    /// The decoded path relative to the root, with a trailing `/` if the
    /// request had one: two requests with the same key name the same thing.
    pub fn key(&self) -> &str {
        &self.text
    }

    /// The path relative to the root, as given to `openat2`.
    pub(crate) fn relative(&self) -> &str {
        match self.joined() {
            "" => ".",
            rel => rel,
        }
    }
}

/// Percent-decodes `raw`, refusing `%` not followed by two hex digits.
fn percent_decode_strict(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    fn hex(b: Option<&u8>) -> Option<u8> {
        let b = *b?;
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(PathError::BadRequest("malformed percent-escape")),
            }
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(raw: &str) -> Vec<String> {
        let p = RequestPath::parse(raw).unwrap();
        p.segments().iter().map(|s| s.to_string()).collect()
    }

    fn bad(raw: &str) -> bool {
        matches!(RequestPath::parse(raw), Err(PathError::BadRequest(_)))
    }

    #[test]
    fn parse_decodes_once_and_normalises() {
        assert_eq!(segs("/"), Vec::<String>::new());
        assert_eq!(segs("/a/b.txt"), ["a", "b.txt"]);
        assert_eq!(segs("//a///./b/."), ["a", "b"]);
        assert_eq!(segs("/a%20b/%C3%A9"), ["a b", "é"]);
        assert_eq!(segs("/%252e%252e"), ["%2e%2e"]);
        assert_eq!(segs("/a%2fb"), ["a", "b"]);
        assert_eq!(segs("/%2e/x"), ["x"]);
        assert_eq!(segs("/..."), ["..."]);
        assert_eq!(segs("/.a/..b"), [".a", "..b"]);
        assert_eq!(RequestPath::parse("/a/b/").unwrap().decoded(), "/a/b/");
        assert_eq!(RequestPath::parse("/a%20b").unwrap().decoded(), "/a b");
        assert_eq!(RequestPath::parse("/").unwrap().decoded(), "/");
    }

    #[test]
    fn parse_rejects_traversal_and_bad_bytes() {
        for raw in [
            "",
            "a/b",
            "*",
            "/..",
            "/../x",
            "/a/../b",
            "/%2e%2e",
            "/%2E%2E/x",
            "/.%2e/x",
            "/%2e./x",
            "/%2e%2e%2fx",
            "/a%2f%2e%2e%2fb",
            "/%c0%ae%c0%ae/x",
            "/%e0%80%ae",
            "/%ff",
            "/a%80",
            "/a%00",
            "/%00/x",
            "/a\\b",
            "/..\\x",
            "/%5c",
            "/..%5cx",
            "/%",
            "/%4",
            "/%zz",
            "/%%32%65",
            "/a%2",
            "/a%g0",
        ] {
            assert!(bad(raw), "{raw:?} should be a bad request");
        }
    }

    #[test]
    fn trailing_slash_and_hidden() {
        let p = |raw| RequestPath::parse(raw).unwrap();
        assert!(p("/").has_trailing_slash());
        assert!(p("/a/").has_trailing_slash());
        assert!(p("/a/.").has_trailing_slash());
        assert!(p("/a//").has_trailing_slash());
        assert!(!p("/a").has_trailing_slash());
        assert!(!p("/a//b").has_trailing_slash());
        assert!(p("/.git/config").is_hidden());
        assert!(p("/a/.env").is_hidden());
        assert!(p("/%2eenv").is_hidden());
        assert!(!p("/a/b.c").is_hidden());
        assert!(!p("/").is_hidden());
    }

    #[test]
    fn error_statuses() {
        assert_eq!(PathError::BadRequest("x").status(), 400);
        assert_eq!(PathError::NotFound.status(), 404);
        assert_eq!(PathError::Forbidden.status(), 403);
        assert_eq!(PathError::Io(libc::EMFILE).status(), 500);
        assert_eq!(
            PathError::from_errno(Errno::EMFILE),
            PathError::Io(libc::EMFILE)
        );
        assert_eq!(PathError::from_errno(Errno::ENOTDIR), PathError::NotFound);
    }
}
