//! The content codings zcserve serves precompressed files in, and the
//! choice among them by a request's `Accept-Encoding` (RFC 9110 §12.5.3).
//!
//! [`Prefs::parse`] reads the field's values into one weight per coding
//! this server knows, without allocating; [`Prefs::choose`] picks among the
//! codings of the sidecars that exist: the highest weight, ties broken by
//! the configured order, and identity unless a coding is preferred to it.
//!
//! The rules, from RFC 9110 §12.5.3:
//!
//! - Codings are compared case-insensitively; `x-gzip` is `gzip` (§8.4.1.3).
//! - `q=0` refuses a coding; a coding not listed is refused unless `*` is
//!   listed, whose weight it then takes.
//! - Identity is acceptable unless refused by `identity;q=0`, or by `*;q=0`
//!   with no entry of its own. When it has no entry at all it is the
//!   client's last choice: any acceptable coding comes first.
//! - A coding listed twice keeps its first weight.
//! - An element that does not parse (a bad `q`, a stray `;`) is ignored,
//!   as if not sent; nothing a client sends can panic here.
//! - When identity is refused and no acceptable sidecar exists,
//!   [`Prefs::choose`] still answers identity: §12.1 lets a server
//!   disregard a preference it cannot meet rather than answer 406, and
//!   that is what nginx and Apache do. A page is more use to a client with
//!   an odd header than an error.
//!
//! A request without `Accept-Encoding` says nothing about codings (§12.5.3
//! allows any); zcserve answers it with identity, as browsers always send
//! the field when they can decode something.

use std::fmt;
use std::str::FromStr;

/// A content coding a sidecar file can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// Brotli, `NAME.br`.
    Br,
    /// Zstandard, `NAME.zst`.
    Zstd,
    /// gzip, `NAME.gz`.
    Gzip,
}

impl Coding {
    /// Every coding, in the default order of preference.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// Its content-coding token, as sent in `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The file name suffix of its sidecars, dot included.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

impl FromStr for Coding {
    type Err = String;

    fn from_str(s: &str) -> Result<Coding, String> {
        Coding::ALL
            .into_iter()
            .find(|c| c.token().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown encoding `{s}` (known: br, zstd, gzip)"))
    }
}

/// A weight in thousandths: 0 refuses, 1000 is `q=1`.
type Weight = u16;

/// The weights an `Accept-Encoding` field gives, per coding zcserve knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefs {
    codings: [Option<Weight>; 3],
    identity: Option<Weight>,
    star: Option<Weight>,
}

/// What [`Prefs::choose`] picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The file as it is.
    Identity,
    /// The sidecar at this index of the list given.
    Sidecar(usize),
}

impl Prefs {
    /// Reads the values of every `Accept-Encoding` field of a request (a
    /// list split over several fields is one list, RFC 9110 §5.3).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Prefs {
        let mut prefs = Prefs::default();
        for value in values {
            for element in value.split(|&b| b == b',') {
                if let Some((name, weight)) = element_weight(element) {
                    prefs.note(name, weight);
                }
            }
        }
        prefs
    }

    fn note(&mut self, name: &[u8], weight: Weight) {
        let slot = if name == b"*" {
            &mut self.star
        } else if name.eq_ignore_ascii_case(b"identity") {
            &mut self.identity
        } else if name.eq_ignore_ascii_case(b"x-gzip") {
            &mut self.codings[Coding::Gzip.index()]
        } else if let Some(c) = Coding::ALL
            .into_iter()
            .find(|c| name.eq_ignore_ascii_case(c.token().as_bytes()))
        {
            &mut self.codings[c.index()]
        } else {
            return;
        };
        // The first entry for a name wins.
        slot.get_or_insert(weight);
    }

    /// The weight of `c`: its own entry, else `*`'s, else 0.
    pub fn weight(&self, c: Coding) -> Weight {
        self.codings[c.index()].or(self.star).unwrap_or(0)
    }

    /// Whether any of `codings` is acceptable.
    pub fn allows_any(&self, codings: &[Coding]) -> bool {
        codings.iter().any(|&c| self.weight(c) > 0)
    }

    /// Picks among the sidecars whose codings are `available` (in the
    /// configured order of preference): the acceptable one of highest
    /// weight, the first of equals, unless identity is preferred to it.
    pub fn choose(&self, available: impl IntoIterator<Item = Coding>) -> Choice {
        let mut best: Option<(usize, Weight)> = None;
        for (i, c) in available.into_iter().enumerate() {
            let w = self.weight(c);
            if w > 0 && best.is_none_or(|(_, b)| w > b) {
                best = Some((i, w));
            }
        }
        let Some((i, w)) = best else {
            return Choice::Identity;
        };
        // Identity without an entry of its own (or `*`'s) is the last
        // choice; with one, it wins only by a higher weight.
        match self.identity.or(self.star) {
            Some(identity) if identity > w => Choice::Identity,
            _ => Choice::Sidecar(i),
        }
    }
}

/// The coding name and weight of one list element, `None` if it is empty
/// or malformed.
fn element_weight(element: &[u8]) -> Option<(&[u8], Weight)> {
    let mut parts = element.split(|&b| b == b';');
    let name = trim(parts.next()?);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let mut weight = 1000;
    for param in parts {
        let (key, value) = split_once(trim(param), b'=')?;
        let (key, value) = (trim(key), trim(value));
        if key.is_empty() || !key.iter().all(|&b| is_tchar(b)) {
            return None;
        }
        if key.eq_ignore_ascii_case(b"q") {
            weight = qvalue(value)?;
        }
        // RFC 9110 defines no other parameter here; ignore any.
    }
    Some((name, weight))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn qvalue(v: &[u8]) -> Option<Weight> {
    let (int, frac) = match split_once(v, b'.') {
        Some((int, frac)) => (int, frac),
        None => (v, &[][..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: Weight = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| Weight::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn split_once(v: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = v.iter().position(|&b| b == at)?;
    Some((&v[..i], &v[i + 1..]))
}

/// Strips optional whitespace (space and tab) from both ends.
fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else {
        return &[];
    };
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &v[start..=end]
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::{Br, Gzip, Zstd};

    fn prefs(v: &str) -> Prefs {
        Prefs::parse([v.as_bytes()])
    }

    /// The coding chosen for `header` among `available`, `None` for identity.
    fn pick(header: &str, available: &[Coding]) -> Option<Coding> {
        match prefs(header).choose(available.iter().copied()) {
            Choice::Identity => None,
            Choice::Sidecar(i) => Some(available[i]),
        }
    }

    #[test]
    fn coding_names_and_suffixes() {
        assert_eq!("br".parse::<Coding>().unwrap(), Br);
        assert_eq!(" ZSTD ".parse::<Coding>().unwrap(), Zstd);
        assert_eq!("gzip".parse::<Coding>().unwrap(), Gzip);
        let e = "deflate".parse::<Coding>().unwrap_err();
        assert!(e.contains("deflate") && e.contains("br, zstd, gzip"), "{e}");
        assert_eq!(Coding::ALL.map(Coding::suffix), [".br", ".zst", ".gz"]);
        assert_eq!(Gzip.to_string(), "gzip");
    }

    #[test]
    fn browsers_get_the_configured_order_on_equal_weights() {
        let all = [Br, Zstd, Gzip];
        assert_eq!(pick("gzip, deflate, br, zstd", &all), Some(Br));
        assert_eq!(
            pick("gzip, deflate, br, zstd", &[Gzip, Zstd, Br]),
            Some(Gzip)
        );
        assert_eq!(pick("gzip, deflate", &all), Some(Gzip));
        assert_eq!(pick("gzip, deflate", &[Br, Zstd]), None);
    }

    #[test]
    fn weights_decide_before_the_order() {
        let all = [Br, Zstd, Gzip];
        assert_eq!(pick("br;q=0.5, gzip;q=0.8", &all), Some(Gzip));
        assert_eq!(pick("br;q=0.5, gzip;q=0.8, zstd;q=0.9", &all), Some(Zstd));
        assert_eq!(pick("br;q=0.001, gzip;q=0", &all), Some(Br));
        assert_eq!(pick("br ; Q = 0.7 , zstd;q=1.000", &all), Some(Zstd));
    }

    #[test]
    fn q_zero_refuses_and_unlisted_codings_are_refused() {
        assert_eq!(pick("br;q=0, gzip", &[Br, Gzip]), Some(Gzip));
        assert_eq!(pick("br;q=0", &[Br, Gzip]), None);
        assert_eq!(pick("br;q=0.000", &[Br]), None);
        assert_eq!(pick("identity", &[Br, Zstd, Gzip]), None);
        assert_eq!(pick("", &[Br, Zstd, Gzip]), None);
        assert_eq!(pick("deflate, compress", &[Br, Zstd, Gzip]), None);
    }

    #[test]
    fn star_matches_what_is_not_listed() {
        assert_eq!(pick("*", &[Zstd]), Some(Zstd));
        assert_eq!(pick("br;q=0, *", &[Br, Gzip]), Some(Gzip));
        assert_eq!(pick("*;q=0, gzip", &[Br, Gzip]), Some(Gzip));
        assert_eq!(pick("*;q=0", &[Br, Gzip]), None);
        assert_eq!(pick("gzip;q=0.2, *;q=0.5", &[Gzip, Br]), Some(Br));
    }

    #[test]
    fn identity_rules() {
        // Unlisted identity is the last choice...
        assert_eq!(pick("gzip;q=0.1", &[Gzip]), Some(Gzip));
        // ...listed, it competes by weight, and wins only by more.
        assert_eq!(pick("identity, gzip;q=0.5", &[Gzip]), None);
        assert_eq!(pick("identity;q=0.5, gzip;q=0.5", &[Gzip]), Some(Gzip));
        assert_eq!(pick("identity;q=0, gzip;q=0.1", &[Gzip]), Some(Gzip));
        // `*` speaks for identity when it has no entry of its own.
        assert_eq!(pick("*;q=0.9, gzip;q=0.5", &[Gzip]), None);
        assert_eq!(
            pick("*;q=0.9, identity;q=0.1, gzip;q=0.5", &[Gzip]),
            Some(Gzip)
        );
        // Refused identity and nothing acceptable: identity all the same.
        assert_eq!(pick("identity;q=0", &[Br]), None);
        assert_eq!(pick("*;q=0", &[]), None);
    }

    #[test]
    fn names_are_case_insensitive_and_x_gzip_is_gzip() {
        assert_eq!(pick("GZIP", &[Gzip]), Some(Gzip));
        assert_eq!(pick("Br", &[Br]), Some(Br));
        assert_eq!(pick("x-gzip", &[Gzip]), Some(Gzip));
        assert_eq!(pick("IDENTITY;Q=0, ZStd", &[Zstd]), Some(Zstd));
    }

    #[test]
    fn the_first_entry_of_a_name_wins() {
        assert_eq!(pick("gzip;q=0, gzip", &[Gzip]), None);
        assert_eq!(pick("gzip, gzip;q=0", &[Gzip]), Some(Gzip));
        assert_eq!(pick("gzip, x-gzip;q=0", &[Gzip]), Some(Gzip));
    }

    #[test]
    fn several_fields_are_one_list() {
        let p = Prefs::parse([b"br;q=0".as_slice(), b"gzip".as_slice()]);
        assert_eq!(p.choose([Br, Gzip]), Choice::Sidecar(1));
        assert!(p.allows_any(&[Gzip]) && !p.allows_any(&[Br]));
    }

    #[test]
    fn malformed_elements_are_ignored() {
        for bad in [
            "br;q=2",
            "br;q=1.5",
            "br;q=1.0001",
            "br;q=0.1234",
            "br;q=-1",
            "br;q=",
            "br;q",
            "br;=",
            "br;q=abc",
            "br;q=0.x",
            "b r",
            "br\"",
            ";q=1",
            "",
            ",,,",
        ] {
            assert_eq!(pick(bad, &[Br]), None, "{bad:?}");
        }
        assert_eq!(pick("br;q=nope, gzip", &[Br, Gzip]), Some(Gzip));
        assert_eq!(pick(" , br ,", &[Br]), Some(Br));
        assert_eq!(pick("br;level=5", &[Br]), Some(Br));
        assert_eq!(pick("br;q=1.", &[Br]), Some(Br));
        assert_eq!(pick("br;q=0.", &[Br]), None);
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.05"), Some(50));
        assert_eq!(qvalue(b"0.123"), Some(123));
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"1.001"), None);
        assert_eq!(qvalue(b"01"), None);
        assert_eq!(qvalue(b".5"), None);
    }

    #[test]
    fn allows_any_looks_only_at_the_configured_codings() {
        assert!(prefs("gzip").allows_any(&[Br, Gzip]));
        assert!(!prefs("gzip").allows_any(&[Br, Zstd]));
        assert!(!prefs("identity").allows_any(&Coding::ALL));
        assert!(prefs("*").allows_any(&[Zstd]));
        assert!(!prefs("*;q=0").allows_any(&Coding::ALL));
        assert!(!prefs("gzip").allows_any(&[]));
    }

    #[test]
    fn proptest_never_panics_and_choices_are_acceptable() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let piece = prop::sample::select(vec![
            "br", "BR", "gzip", "x-gzip", "zstd", "identity", "*", "deflate", ";", ",", "=", "q",
            "Q", "0", "1", ".", "5", "000", " ", "\t", "\"", "é", "\u{0}",
        ]);
        let glued = prop::collection::vec(piece, 0..24).prop_map(|v| v.concat().into_bytes());
        let bytes = prop::collection::vec(any::<u8>(), 0..64);
        let strategy = prop::collection::vec(prop_oneof![3 => glued, 1 => bytes], 0..3);
        let available = prop::sample::subsequence(Coding::ALL.to_vec(), 0..=3).prop_shuffle();
        let mut runner = TestRunner::new(Config {
            cases: 4000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&(strategy, available), |(values, available)| {
                let p = Prefs::parse(values.iter().map(Vec::as_slice));
                match p.choose(available.iter().copied()) {
                    Choice::Identity => {}
                    Choice::Sidecar(i) => {
                        prop_assert!(i < available.len());
                        prop_assert!(p.weight(available[i]) > 0);
                        prop_assert!(p.allows_any(&available));
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
