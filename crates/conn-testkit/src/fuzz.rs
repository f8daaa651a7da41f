//! The checks behind the fuzz targets in `fuzz/fuzz_targets/`, one function per target.
//!
//! A target is one line that calls its check here, so the same check also runs under a plain
//! `cargo test` (no nightly, no cargo-fuzz) over every saved input in
//! `fuzz/regressions/<target>/`: an input that once crashed a target stays a test case for
//! good. A check panics on a failed property, as libFuzzer expects.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use conn_core::{Error, UserHost, dquote, join_quoted, quote};

/// A fuzz target's check: panics when the input breaks a property.
pub type Check = fn(&[u8]);

/// Every fuzz target with its check, by the target's name: what the regression test runs.
///
/// `mux_decode` is not here: its check needs the native mux codec, which is private to
/// conn-openssh, so it lives there (`native_mux::fuzz_check`) and conn-openssh's own unit
/// tests replay its saved inputs.
pub const TARGETS: &[(&str, Check)] = &[("host_and_quote", host_and_quote)];

/// The directory that holds each target's saved inputs, `fuzz/regressions/` of the workspace.
pub fn regressions_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    dir.canonicalize().unwrap_or(dir)
}

/// The saved inputs of `target` (file path and bytes), sorted by path; none when it has no
/// directory.
pub fn regression_inputs(target: &str) -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let dir = regressions_dir().join(target);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    let mut inputs = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.is_file() {
            let bytes = fs::read(&path)?;
            inputs.push((path, bytes));
        }
    }
    inputs.sort();
    Ok(inputs)
}

/// Target `host_and_quote`: arbitrary text through `[user@]host` validation and the
/// shell-quoting helpers.
///
/// - `UserHost::parse` decides as its documented rule says (see [`host_should_parse`]), never
///   panics, keeps the input verbatim, re-parses to the same value, and `user()`/`host()`
///   recompose the input; a rejection names the input.
/// - `quote`: a quoted argument splits back (shlex, POSIX rules) to exactly the original; only
///   an input with a NUL byte is refused, with an error naming it. `join_quoted` does the same
///   for a whole argv (the input cut at U+0001).
/// - `dquote`: inside `"…"` the escaped text reads back as the original.
pub fn host_and_quote(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    check_host(&s);
    check_quote(&s);
}

/// Whether one character may appear in a `[user@]host` (outside the one `@` that separates
/// user and host), as the parser itself decides for `a` followed by that character.
///
/// Asking the library for the character classes (whitespace, control characters, the shell's
/// and ssh's special characters) keeps this check from drifting when a class is added, as
/// control characters once were; what this check restates on its own is the structure: how
/// `@` splits, emptiness, a leading `-`, `..`.
fn char_allowed(c: char) -> bool {
    c != '@' && UserHost::parse(&format!("a{c}")).is_ok()
}

/// The acceptance rule of `UserHost::parse` (docs/design.md, plus conn's stricter rules): with
/// its first `@` removed the text is non-empty, does not start with `-`, holds no `..` and only
/// allowed characters (no second `@` among them); with an `@`, user and host are non-empty and
/// the host does not start with `-`.
pub fn host_should_parse(s: &str) -> bool {
    let rest = s.replacen('@', "", 1);
    let whole_ok = !rest.is_empty()
        && !rest.starts_with('-')
        && !rest.contains("..")
        && rest.chars().all(char_allowed);
    let split_ok = match s.split_once('@') {
        Some((user, host)) => !user.is_empty() && !host.is_empty() && !host.starts_with('-'),
        None => true,
    };
    whole_ok && split_ok
}

fn check_host(s: &str) {
    match UserHost::parse(s) {
        Ok(uh) => {
            assert!(host_should_parse(s), "accepted {s:?}");
            // Documented outright, so checked outright too: whatever the character rule says.
            assert!(
                !s.chars().any(|c| c.is_control() || c.is_whitespace()),
                "accepted {s:?}, which holds a control or whitespace character"
            );
            assert_eq!(uh.as_str(), s);
            assert_eq!(uh.to_string(), s);
            let again = UserHost::parse(uh.as_str()).expect("re-parse of an accepted value");
            assert_eq!(again, uh);
            assert!(!uh.host().is_empty());
            match uh.user() {
                Some(user) => {
                    assert!(!user.is_empty() && !user.contains('@'));
                    assert_eq!(format!("{user}@{}", uh.host()), s);
                }
                None => {
                    assert_eq!(uh.host(), s);
                    assert!(!s.contains('@'));
                }
            }
        }
        Err(Error::InvalidHost { input, reason }) => {
            assert!(!host_should_parse(s), "rejected {s:?}: {reason}");
            assert_eq!(input, s);
        }
        Err(other) => panic!("unexpected error for {s:?}: {other}"),
    }
}

fn check_quote(s: &str) {
    match quote(s) {
        Ok(q) => {
            assert!(!s.contains('\0'));
            let q = q.to_str().expect("quoting UTF-8 gives UTF-8");
            assert_eq!(
                shlex::split(q),
                Some(vec![s.to_string()]),
                "quote({s:?}) = {q:?}"
            );
        }
        Err(Error::Unquotable { arg, .. }) => {
            assert!(s.contains('\0'), "refused to quote {s:?}");
            assert_eq!(arg, s);
        }
        Err(other) => panic!("unexpected error for {s:?}: {other}"),
    }

    let argv: Vec<&str> = s.split('\u{1}').collect();
    match join_quoted(&argv) {
        Ok(line) => {
            assert!(!s.contains('\0'));
            let line = line.to_str().expect("quoting UTF-8 gives UTF-8");
            let back = shlex::split(line).expect("a joined line splits");
            assert_eq!(back, argv, "join_quoted({argv:?}) = {line:?}");
        }
        Err(Error::Unquotable { .. }) => assert!(s.contains('\0')),
        Err(other) => panic!("unexpected error for {argv:?}: {other}"),
    }

    if !s.contains('\0') {
        let line = format!("\"{}\"", dquote(s));
        assert_eq!(
            shlex::split(&line),
            Some(vec![s.to_string()]),
            "dquote({s:?})"
        );
    }
}
