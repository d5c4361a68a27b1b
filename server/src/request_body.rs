//! Finding the end of a request body so that it can be thrown away and the
//! connection kept: a static server reads no body, but the next pipelined
//! request starts where this one's body ends.
//!
//! A body is framed by `Content-Length` or by the chunked transfer coding
//! (RFC 9112 §7.1), which every HTTP/1.1 recipient must be able to parse.
//! [`BodyReader`] is fed the bytes as they arrive, in pieces of any size,
//! and says where the body ended; it holds no bytes itself, so a body of
//! any shape costs a few words of state. Both framings are bounded by the
//! same byte limit, counted on the wire (a chunked body's sizes, extensions
//! and trailers included): past it the answer is 413.
//!
//! The chunked grammar is enforced strictly, since a lenient reading that
//! differs from a proxy's in front is how requests get smuggled: lines end
//! in CRLF only (a bare LF or CR is an error), chunk sizes are hex digits
//! only (no sign, no `0x`, no spaces before them), extensions and trailer
//! fields are held to their token / quoted-string / field-value syntax
//! (no control bytes, no obs-fold).

use http::StatusCode;

/// Why a body could not be read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The chunked framing is broken; the connection cannot be read on.
    Malformed(&'static str),
    /// More bytes than the limit.
    TooLarge,
}

impl BodyError {
    /// The status to answer with (the connection closes after it).
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::Malformed(_) => StatusCode::BAD_REQUEST,
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// What was wrong, for the response body.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::Malformed(why) => why,
            BodyError::TooLarge => "request bodies are not accepted",
        }
    }
}

/// What a [`BodyReader::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// Every byte given belongs to the body, which goes on.
    More,
    /// The body ended after this many of the bytes given; the rest belong
    /// to what follows on the connection.
    Done(usize),
}

/// Reads a body of either framing to its end.
#[derive(Debug, Clone)]
pub enum BodyReader {
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// Chunked.
    Chunked(Chunked),
}

impl BodyReader {
    /// Feeds the next bytes of the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, BodyError> {
        match self {
            BodyReader::Length(left) => {
                let n = (*left).min(input.len() as u64);
                *left -= n;
                // `n` is at most `input.len()`.
                Ok(if *left == 0 {
                    Fed::Done(n as usize)
                } else {
                    Fed::More
                })
            }
            BodyReader::Chunked(c) => c.feed(input),
        }
    }
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; `digits` read so far.
    Size { digits: u32 },
    /// After the size or an extension: BWS, then `;` or the line's CR.
    ExtSemi,
    /// After `;`: BWS, then an extension name.
    ExtNameStart,
    /// In an extension name.
    ExtName,
    /// After an extension name and BWS: `=`, `;` or CR.
    ExtAfterName,
    /// After `=`: BWS, then a token or a quoted string.
    ExtValueStart,
    /// In a token value.
    ExtToken,
    /// In a quoted-string value.
    ExtQuoted,
    /// After a backslash in a quoted string.
    ExtQuotedPair,
    /// The size line's CR was read: LF next.
    SizeLf,
    /// In chunk data, this many bytes left.
    Data { left: u64 },
    /// After chunk data: CR next.
    DataCr,
    /// After chunk data and CR: LF next.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// A trailer line's CR was read: LF next.
    TrailerLf,
    /// The final line's CR was read: LF next.
    FinalLf,
    /// The body is over.
    Done,
}

/// A chunked body being read (RFC 9112 §7.1).
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    /// The size of the chunk whose size line is being read.
    size: u64,
    /// Bytes consumed so far, all of them counted against `limit`.
    wire: u64,
    limit: u64,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `qdtext` of RFC 9110 §5.6.4.
fn is_qdtext(b: u8) -> bool {
    b == b'\t' || b == b' ' || b == 0x21 || (0x23..=0x5b).contains(&b) || b >= 0x5d && b != 0x7f
}

/// `field-vchar`, SP or HTAB: a byte a field value may hold.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

impl Chunked {
    /// A chunked body of at most `limit` bytes on the wire.
    pub fn new(limit: u64) -> Chunked {
        Chunked {
            state: State::Size { digits: 0 },
            size: 0,
            wire: 0,
            limit,
        }
    }

    /// True once the final CRLF has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds the next bytes of the connection. After an error the reader
    /// must not be fed again (the connection is unusable).
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, BodyError> {
        use State::*;
        let bad = |why| Err(BodyError::Malformed(why));
        let mut i = 0;
        while i < input.len() {
            if self.state == Done {
                break;
            }
            if let Data { left } = self.state {
                let n = left.min((input.len() - i) as u64);
                self.count(n)?;
                i += n as usize;
                self.state = if n == left {
                    DataCr
                } else {
                    Data { left: left - n }
                };
                continue;
            }
            self.count(1)?;
            let b = input[i];
            i += 1;
            self.state = match self.state {
                Size { digits } => match (b as char).to_digit(16) {
                    Some(d) => {
                        match self.size.checked_mul(16).map(|s| s + u64::from(d)) {
                            Some(size) if size <= self.limit => self.size = size,
                            // Cannot fit, however it goes on.
                            _ => return Err(BodyError::TooLarge),
                        }
                        Size { digits: digits + 1 }
                    }
                    None if digits == 0 => return bad("chunk size is not hex digits"),
                    None => match b {
                        b'\r' => SizeLf,
                        b';' => ExtNameStart,
                        b if is_ws(b) => ExtSemi,
                        _ => return bad("malformed chunk size line"),
                    },
                },
                ExtSemi => match b {
                    b'\r' => SizeLf,
                    b';' => ExtNameStart,
                    b if is_ws(b) => ExtSemi,
                    _ => return bad("malformed chunk extension"),
                },
                ExtNameStart => match b {
                    b if is_ws(b) => ExtNameStart,
                    b if is_tchar(b) => ExtName,
                    _ => return bad("malformed chunk extension"),
                },
                ExtName => match b {
                    b if is_tchar(b) => ExtName,
                    b if is_ws(b) => ExtAfterName,
                    b'=' => ExtValueStart,
                    b';' => ExtNameStart,
                    b'\r' => SizeLf,
                    _ => return bad("malformed chunk extension"),
                },
                ExtAfterName => match b {
                    b if is_ws(b) => ExtAfterName,
                    b'=' => ExtValueStart,
                    b';' => ExtNameStart,
                    b'\r' => SizeLf,
                    _ => return bad("malformed chunk extension"),
                },
                ExtValueStart => match b {
                    b if is_ws(b) => ExtValueStart,
                    b'"' => ExtQuoted,
                    b if is_tchar(b) => ExtToken,
                    _ => return bad("malformed chunk extension"),
                },
                ExtToken => match b {
                    b if is_tchar(b) => ExtToken,
                    b if is_ws(b) => ExtSemi,
                    b';' => ExtNameStart,
                    b'\r' => SizeLf,
                    _ => return bad("malformed chunk extension"),
                },
                ExtQuoted => match b {
                    b'"' => ExtSemi,
                    b'\\' => ExtQuotedPair,
                    b if is_qdtext(b) => ExtQuoted,
                    _ => return bad("malformed chunk extension"),
                },
                ExtQuotedPair => match b {
                    b if is_field_byte(b) => ExtQuoted,
                    _ => return bad("malformed chunk extension"),
                },
                SizeLf => match b {
                    b'\n' if self.size == 0 => TrailerStart,
                    b'\n' => {
                        let left = std::mem::take(&mut self.size);
                        Data { left }
                    }
                    _ => return bad("chunk size line not ended by CRLF"),
                },
                DataCr => match b {
                    b'\r' => DataLf,
                    _ => return bad("chunk data not followed by CRLF"),
                },
                DataLf => match b {
                    b'\n' => Size { digits: 0 },
                    _ => return bad("chunk data not followed by CRLF"),
                },
                TrailerStart => match b {
                    b'\r' => FinalLf,
                    b if is_tchar(b) => TrailerName,
                    _ => return bad("malformed trailer field"),
                },
                TrailerName => match b {
                    b if is_tchar(b) => TrailerName,
                    b':' => TrailerValue,
                    _ => return bad("malformed trailer field"),
                },
                TrailerValue => match b {
                    b'\r' => TrailerLf,
                    b if is_field_byte(b) => TrailerValue,
                    _ => return bad("malformed trailer field"),
                },
                TrailerLf => match b {
                    b'\n' => TrailerStart,
                    _ => return bad("trailer field not ended by CRLF"),
                },
                FinalLf => match b {
                    b'\n' => Done,
                    _ => return bad("chunked body not ended by CRLF"),
                },
                Data { .. } | Done => unreachable!("handled above"),
            };
        }
        Ok(if self.state == Done {
            Fed::Done(i)
        } else {
            Fed::More
        })
    }

    /// Counts `n` more bytes against the limit.
    fn count(&mut self, n: u64) -> Result<(), BodyError> {
        self.wire += n;
        if self.wire > self.limit {
            Err(BodyError::TooLarge)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1 << 20;

    /// Feeds `input` whole, then one byte at a time; both must agree.
    fn feed(input: &[u8]) -> Result<Fed, BodyError> {
        let whole = Chunked::new(LIMIT).feed(input);
        let mut c = Chunked::new(LIMIT);
        let mut bytewise = Ok(Fed::More);
        for (i, b) in input.iter().enumerate() {
            match c.feed(std::slice::from_ref(b)) {
                Ok(Fed::More) => {}
                Ok(Fed::Done(1)) => {
                    bytewise = Ok(Fed::Done(i + 1));
                    break;
                }
                other => {
                    bytewise = other;
                    break;
                }
            }
        }
        assert_eq!(whole, bytewise, "{:?}", String::from_utf8_lossy(input));
        whole
    }

    #[test]
    fn bodies_end_where_they_end() {
        for body in [
            &b"0\r\n\r\n"[..],
            b"5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"A\r\n0123456789\r\n0\r\n\r\n",
            b"a\r\n0123456789\r\n000\r\n\r\n",
            b"5;name\r\nhello\r\n0\r\n\r\n",
            b"5 ; name = value ; other\r\nhello\r\n0;last\r\n\r\n",
            b"5;q=\"a \\\"quoted\\\" ; , value\"\r\nhello\r\n0\r\n\r\n",
            b"0\r\nExpires: never\r\nX-Trailer:\r\n\r\n",
            b"3\r\n\r\n\r\r\n0\r\n\r\n",
        ] {
            let mut with_next = body.to_vec();
            with_next.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(
                feed(&with_next),
                Ok(Fed::Done(body.len())),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(feed(b"5\r\nhel"), Ok(Fed::More));
        assert_eq!(feed(b"0\r\nA: b\r\n"), Ok(Fed::More));
    }

    #[test]
    fn malformed_framings_are_refused() {
        for body in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b" 5\r\n",
            b"5\nhello\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\rhello",
            b"5;\r\n",
            b"5;a=\r\n",
            b"5;a\nb\r\n",
            b"5;a=\"x\r\n",
            b"5;a=\"\x01\"\r\n",
            b"5 x\r\n",
            b"0\r\n\n",
            b"0\r\nA b: c\r\n",
            b"0\r\n folded\r\n",
            b"0\r\nA: b\nB: c\r\n\r\n",
            b"0\r\nA: \x00\r\n\r\n",
            b"0\r\nA\r\n\r\n",
            b"0\r\n\rx",
        ] {
            assert!(
                matches!(feed(body), Err(BodyError::Malformed(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(body),
                feed(body)
            );
        }
    }

    #[test]
    fn limit_counts_every_byte_on_the_wire() {
        // A chunk larger than the limit is refused at its size line.
        assert_eq!(
            Chunked::new(LIMIT).feed(b"100001\r\n"),
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            Chunked::new(LIMIT).feed(b"ffffffffffffffffffffffff\r\n"),
            Err(BodyError::TooLarge)
        );
        // Exactly at the limit is fine; one byte over is not.
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        let n = body.len() as u64;
        assert_eq!(Chunked::new(n).feed(body), Ok(Fed::Done(body.len())));
        assert_eq!(Chunked::new(n - 1).feed(body), Err(BodyError::TooLarge));
        // Many small chunks: overhead counts too.
        let mut c = Chunked::new(1000);
        let mut got = Ok(Fed::More);
        for _ in 0..1000 {
            got = c.feed(b"1\r\nx\r\n");
            if got.is_err() {
                break;
            }
        }
        assert_eq!(got, Err(BodyError::TooLarge));
    }

    #[test]
    fn content_length_bodies() {
        let mut r = BodyReader::Length(5);
        assert_eq!(r.feed(b"he"), Ok(Fed::More));
        assert_eq!(r.feed(b"lloGET"), Ok(Fed::Done(3)));
        assert_eq!(BodyReader::Length(0).feed(b"x"), Ok(Fed::Done(0)));
    }

    #[test]
    fn errors_map_to_statuses() {
        assert_eq!(BodyError::Malformed("x").status(), StatusCode::BAD_REQUEST);
        assert_eq!(BodyError::TooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
