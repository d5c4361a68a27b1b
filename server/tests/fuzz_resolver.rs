//! The path resolver under a bounded, seeded fuzz run: generated request
//! paths (percent-encoding, `..`, `//`, NUL, backslashes, unicode, names
//! of symlinks leading out of the root or to dotfiles) go through the
//! parser and `Root::open_path`; none may panic, and every descriptor
//! opened must be one of the root's own inodes (checked by `fstat`
//! against a walk of the tree made before the run), never a hidden one
//! unless hidden files are shown. See `resolver_harness` for the tree.
//!
//! `ZCSERVE_FUZZ_CASES` (default 50,000) and `ZCSERVE_FUZZ_SEED` change
//! the run; a failure prints the seed and the path. For coverage-guided
//! runs, see `fuzz/` (cargo-fuzz).
mod resolver_harness;

use resolver_harness::{Fixture, Rng, generate};

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn resolver_never_opens_outside_the_root() {
    let cases = env_u64("ZCSERVE_FUZZ_CASES", 50_000);
    let seed = env_u64("ZCSERVE_FUZZ_SEED", 0x007a_6373_6572_7665);
    let fixture = Fixture::new();
    let mut rng = Rng(seed);
    let (mut files, mut dirs, mut refused) = (0, 0, 0);
    for i in 0..cases {
        let raw = generate(&mut rng);
        let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fixture.check(&raw)))
            .unwrap_or_else(|_| panic!("case {i} of seed {seed}: {raw:?} panicked"));
        files += seen.files;
        dirs += seen.dirs;
        refused += seen.refused;
    }
    println!(
        "{cases} cases, seed {seed}: {files} files and {dirs} directories opened, {refused} refused"
    );
    // The generator reaches real files and directories and also makes
    // paths the parser refuses, so every check above was exercised.
    assert!(
        files > cases / 50,
        "only {files} files opened in {cases} cases"
    );
    assert!(
        dirs > cases / 50,
        "only {dirs} directories opened in {cases} cases"
    );
    assert!(
        refused > cases / 50,
        "only {refused} paths refused in {cases} cases"
    );
}

/// The checks bite: a fixture in which a symlink out of the root is
/// followed (`--follow-symlinks`) is caught by the same inode test.
#[test]
fn the_inode_check_catches_an_escape() {
    use zcserve::fs::{Opened, Policy};
    use zcserve::http::request_path::RequestPath;
    let fixture = Fixture::new();
    let follow = Policy {
        show_hidden: false,
        follow_symlinks: true,
    };
    let p = RequestPath::parse("/out_rel").unwrap();
    let Ok(Opened::File(f, _)) = fixture.root.open_path(&p, &follow) else {
        panic!("/out_rel not followed");
    };
    assert!(!fixture.is_inside(&f.metadata().unwrap()));
    // And the default policy never gets that far.
    assert!(fixture.check("/out_rel").files == 0);
}
