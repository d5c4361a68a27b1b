//! Peer servers zcbench starts itself: `--peer-cmd NAME=COMMAND`.
//!
//! COMMAND is a `sh -c` command line with placeholders that zcbench fills
//! in before each start: `{root}` (the fixture directory, shell-quoted),
//! `{port}` (a free port on 127.0.0.1 it picked; required) and `{threads}`
//! (how many server CPUs there are). `{{` and `}}` stand for literal braces;
//! `${...}` is left to the shell. Any other `{word}` is a mistake.

use std::path::Path;

/// The placeholders a command may hold.
pub const PLACEHOLDERS: [&str; 3] = ["root", "port", "threads"];

/// A parsed `--peer-cmd NAME=COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCommand {
    /// The target name in the report.
    pub name: String,
    /// The command line, placeholders not yet filled in.
    pub template: String,
}

/// A piece of a command template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits `template` into text and `{word}` placeholders (any word; the
/// caller checks them).
fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let bytes = template.as_bytes();
    let (mut i, mut text_from) = (0, 0);
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if (b == b'{' && next == Some(b'{')) || (b == b'}' && next == Some(b'}')) {
            // An escaped brace: the text so far plus one brace.
            out.push(Piece::Text(&template[text_from..=i]));
            i += 2;
            text_from = i;
            continue;
        }
        if b == b'{' && (i == 0 || bytes[i - 1] != b'$') {
            let word_len = bytes[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            if word_len > 0 && bytes.get(i + 1 + word_len) == Some(&b'}') {
                out.push(Piece::Text(&template[text_from..i]));
                out.push(Piece::Placeholder(&template[i + 1..i + 1 + word_len]));
                i += word_len + 2;
                text_from = i;
                continue;
            }
        }
        i += 1;
    }
    out.push(Piece::Text(&template[text_from..]));
    out.retain(|p| *p != Piece::Text(""));
    out
}

impl PeerCommand {
    /// Reads `NAME=COMMAND`, checking the name and the placeholders. The
    /// error is one line, naming the flag and what to fix.
    pub fn parse(arg: &str) -> Result<PeerCommand, String> {
        let (name, template) = arg
            .split_once('=')
            .ok_or_else(|| format!("--peer-cmd {arg:?}: write NAME=COMMAND"))?;
        let name = name.trim();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(format!(
                "--peer-cmd {arg:?}: NAME must be a word without spaces or '/'"
            ));
        }
        if template.trim().is_empty() {
            return Err(format!("--peer-cmd {name}: the COMMAND is empty"));
        }
        let mut has_port = false;
        for p in pieces(template) {
            if let Piece::Placeholder(w) = p {
                if !PLACEHOLDERS.contains(&w) {
                    return Err(format!(
                        "--peer-cmd {name}: unknown placeholder {{{w}}} (use {{root}}, {{port}}, {{threads}}; {{{{ and }}}} for literal braces)"
                    ));
                }
                has_port |= w == "port";
            }
        }
        if !has_port {
            return Err(format!(
                "--peer-cmd {name}: the COMMAND must contain {{port}}, the port it is to listen on"
            ));
        }
        Ok(PeerCommand {
            name: name.to_string(),
            template: template.to_string(),
        })
    }

    /// The command line with the placeholders filled in.
    pub fn expand(&self, root: &Path, port: u16, threads: usize) -> String {
        pieces(&self.template)
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => t.to_string(),
                Piece::Placeholder("root") => shell_quote(&root.to_string_lossy()),
                Piece::Placeholder("port") => port.to_string(),
                Piece::Placeholder("threads") => threads.to_string(),
                // parse() admits no other placeholder.
                Piece::Placeholder(w) => format!("{{{w}}}"),
            })
            .collect()
    }
}

/// `s` as one `sh` word: unchanged when it is plainly safe, else in single
/// quotes.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_expand() {
        let c = PeerCommand::parse("nginx=./nginx.sh {root} {port} on").unwrap();
        assert_eq!(c.name, "nginx");
        assert_eq!(
            c.expand(Path::new("/tmp/fix"), 8080, 1),
            "./nginx.sh /tmp/fix 8080 on"
        );
        let c =
            PeerCommand::parse("go=GOMAXPROCS={threads} gofs -root={root} -port={port}").unwrap();
        assert_eq!(
            c.expand(Path::new("/a b/it's"), 1, 2),
            "GOMAXPROCS=2 gofs -root='/a b/it'\\''s' -port=1"
        );
        // The shell's own braces and escaped ones are left alone.
        let c = PeerCommand::parse("x=echo ${HOME} {{port}} {} { } && srv {port}").unwrap();
        assert_eq!(
            c.expand(Path::new("/r"), 9, 1),
            "echo ${HOME} {port} {} { } && srv 9"
        );
        // '=' may appear in the command.
        let c = PeerCommand::parse("a=A=1 srv --port={port}").unwrap();
        assert_eq!(c.expand(Path::new("/"), 5, 1), "A=1 srv --port=5");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |s: &str| PeerCommand::parse(s).unwrap_err();
        assert!(err("nginx").contains("NAME=COMMAND"));
        assert!(err("=srv {port}").contains("NAME must be"));
        assert!(err("a b=srv {port}").contains("NAME must be"));
        assert!(err("x=  ").contains("empty"));
        assert!(err("x=srv {prot}").contains("unknown placeholder {prot}"));
        assert!(err("x=srv --root {root}").contains("must contain {port}"));
        for e in [err("nginx"), err("x=srv {prot}"), err("x=srv")] {
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/tmp/zc-fix_1.2"), "/tmp/zc-fix_1.2");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a;b"), "'a;b'");
    }
}
