//! Precompressed sidecars: `app.js.br`, `app.js.zst` or `app.js.gz` beside
//! `app.js`, served for `GET /app.js` to a client whose `Accept-Encoding`
//! takes it (chosen by [`crate::http::accept_encoding`]). A sidecar is
//! just another open file, so its bytes go to the socket through the
//! backend like any file's: precompression keeps the zero-copy path that
//! compressing on the fly would lose.
//!
//! The rules:
//!
//! - A sidecar is opened like any request path ([`Root::open_path`] with
//!   the server's [`Policy`]: beneath the root, hidden names and symlinks
//!   as for the file itself), must be a regular file, and is ignored if
//!   its mtime is older than its original's (a stale build output).
//! - Only a file that exists has sidecars: a `.gz` without its original is
//!   never served under the original's name; under its own name it is a
//!   plain file like any other. A name that already ends in a sidecar
//!   suffix is not looked at for sidecars of its own.
//! - Sidecars are looked for only for a request that has an
//!   `Accept-Encoding` field, and only on the way that opens files (off
//!   the event loop, in the disk pool); the open-file cache then remembers
//!   what was found and what was not ([`crate::http::file_cache`]), so a
//!   cached path costs no system call more. A request without the field
//!   (a benchmark's, a script's) never makes the server look.
//! - Every response of a path with sidecars carries
//!   `Vary: Accept-Encoding`, the identity one too (so a shared cache
//!   never hands the identity bytes to every client). That is why a
//!   request whose field refuses every configured coding (`identity`,
//!   `gzip;q=0`) still makes the server look: its answer must say that
//!   it varies. A request without the field gets `Vary` only when the
//!   path's sidecars are already known from the cache.
//! - Each sidecar has its own validators ([`OpenFile::sidecar`]); ranges
//!   and preconditions apply to the bytes sent, the encoded ones.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use http::header::ACCEPT_ENCODING;

use crate::fs::{Opened, Policy, Root};
use crate::http::accept_encoding::{Choice, Coding, Prefs};
use crate::http::file_cache::OpenFile;
use crate::http::listing::Listing;
use crate::http::request_path::{PathError, RequestPath};
use crate::request_head::Request;

/// The preferences of `req`, `None` if it has no `Accept-Encoding` or no
/// coding is configured: then nothing is looked for or chosen.
fn prefs(req: &Request, codings: &[Coding]) -> Option<Prefs> {
    if codings.is_empty() || !req.has_accept_encoding {
        return None;
    }
    Some(Prefs::parse(
        req.headers
            .get_all(ACCEPT_ENCODING)
            .iter()
            .map(|v| v.as_bytes()),
    ))
}

/// Whether answering `req` needs the sidecars looked for: sidecars are on
/// and it has an `Accept-Encoding` field (see the module's notes).
pub fn wanted(req: &Request, codings: &[Coding]) -> bool {
    !codings.is_empty() && req.has_accept_encoding
}

/// The representation of `file` to send for `req`: the file itself or one
/// of its sidecars. `None` when the request has an `Accept-Encoding`
/// but the file's sidecars were not looked for: the caller must look
/// ([`probe`]), which may wait for the disk.
pub fn pick<'a>(req: &Request, file: &'a OpenFile, codings: &[Coding]) -> Option<&'a OpenFile> {
    match &file.sidecars {
        Some(found) if found.is_empty() => Some(file),
        Some(found) => match prefs(req, codings).map(|p| p.choose(found.iter().map(coding_of))) {
            Some(Choice::Sidecar(i)) => Some(&found[i]),
            _ => Some(file),
        },
        None if wanted(req, codings) => None,
        None => Some(file),
    }
}

fn coding_of(sidecar: &Arc<OpenFile>) -> Coding {
    sidecar.coding.unwrap_or(Coding::Gzip)
}

/// Looks for the sidecars of the file at `path` (or, with `index`, of
/// `index` in the directory at `path`), whose metadata is `original`, for
/// each of `codings` in order, opened for serving as `content_type`.
/// `None` if a system error (say `EMFILE`) kept one from being looked for:
/// what exists is then unknown.
pub fn probe(
    root: &Root,
    policy: &Policy,
    path: &RequestPath,
    index: Option<&str>,
    original: &Metadata,
    content_type: &str,
    codings: &[Coding],
) -> Option<Vec<Arc<OpenFile>>> {
    let name = index.unwrap_or_else(|| path.last_segment());
    if Coding::ALL.iter().any(|c| name.ends_with(c.suffix())) {
        return Some(Vec::new());
    }
    // Re-encoded so that the decoded path parses back to itself: its
    // segments were checked already, and only `%` means something more.
    let mut raw = format!("/{}", path.key().replace('%', "%25"));
    if let Some(index) = index {
        raw.push('/');
        raw.push_str(index);
    }
    let mut found = Vec::new();
    for &c in codings {
        let Ok(sidecar_path) = RequestPath::parse(&format!("{raw}{}", c.suffix())) else {
            continue; // too long a name, say
        };
        match root.open_path(&sidecar_path, policy) {
            Ok(Opened::File(file, meta)) => {
                if (meta.mtime(), meta.mtime_nsec()) >= (original.mtime(), original.mtime_nsec()) {
                    let sidecar = OpenFile::sidecar(file, &meta, content_type.to_owned(), c);
                    found.push(Arc::new(sidecar));
                }
            }
            Ok(Opened::Dir(_)) => {}
            Err(PathError::Io(_)) => return None,
            Err(_) => {}
        }
    }
    Some(found)
}

/// Drops from `listing` the sidecars (for `codings`) of files it lists:
/// `a.js.gz` goes when `a.js` is there, and stays when it is alone.
pub fn hide_sidecars(listing: &mut Listing, codings: &[Coding]) {
    if codings.is_empty() {
        return;
    }
    let files: std::collections::HashSet<String> = listing
        .entries
        .iter()
        .filter(|e| !e.is_dir)
        .map(|e| e.name.clone())
        .collect();
    listing.entries.retain(|e| {
        e.is_dir
            || !codings.iter().any(|c| {
                e.name
                    .strip_suffix(c.suffix())
                    .is_some_and(|original| files.contains(original))
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::listing::Entry;

    fn entry(name: &str, is_dir: bool) -> Entry {
        Entry {
            name: name.into(),
            is_dir,
            len: 1,
            modified: None,
            symlink: false,
        }
    }

    fn names(l: &Listing) -> Vec<&str> {
        l.entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn listing_hides_sidecars_of_listed_files_only() {
        let all = || Listing {
            entries: vec![
                entry("a.js", false),
                entry("a.js.gz", false),
                entry("a.js.br", false),
                entry("a.js.zst", false),
                entry("lonely.css.gz", false),
                entry("d", true),
                entry("d.gz", false),
                entry("e.gz", true),
                entry("e", false),
            ],
            truncated: false,
        };
        let mut l = all();
        hide_sidecars(&mut l, &Coding::ALL);
        assert_eq!(
            names(&l),
            ["a.js", "lonely.css.gz", "d", "d.gz", "e.gz", "e"]
        );
        let mut l = all();
        hide_sidecars(&mut l, &[Coding::Gzip]);
        assert_eq!(
            names(&l),
            [
                "a.js",
                "a.js.br",
                "a.js.zst",
                "lonely.css.gz",
                "d",
                "d.gz",
                "e.gz",
                "e"
            ]
        );
        let mut l = all();
        hide_sidecars(&mut l, &[]);
        assert_eq!(l, all());
    }
}
