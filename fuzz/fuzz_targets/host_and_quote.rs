//! Arbitrary strings through `[user@]host` validation and the shell-quoting helpers.
//!
//! - `UserHost::parse` accepts exactly what an independent restatement of the rules accepts
//!   (SPEC §3 plus conn's two stricter rules), never panics, keeps the input verbatim, re-parses
//!   to the same value, and `user()`/`host()` recompose the input; a rejection names the input.
//! - `quote`: a quoted argument splits back (shlex, POSIX rules) to exactly the original; only
//!   an input with a NUL byte is refused, with an error naming it. `join_quoted` does the same
//!   for a whole argv (the input cut at U+0001), `quote_if_remote(_, false)` changes nothing.
//! - `dquote`: inside `"…"` the escaped text reads back as the original.
#![no_main]

use conn_core::{Error, UserHost, dquote, join_quoted, quote, quote_if_remote};
use libfuzzer_sys::fuzz_target;

const FORBIDDEN: &str = "\"'`~!@#$%^&*()+={}[]|;<>?,\\/";

/// The acceptance rule, restated from the specification without looking at the parser.
fn should_accept(s: &str) -> bool {
    let rest = s.replacen('@', "", 1);
    let spec_ok = !rest.is_empty()
        && !rest.starts_with('-')
        && !rest.contains("..")
        && !rest
            .chars()
            .any(|c| c.is_whitespace() || FORBIDDEN.contains(c));
    // conn's stricter rules: with an '@', user and host are non-empty and the host does not
    // start with '-'.
    let split_ok = match s.split_once('@') {
        Some((user, host)) => !user.is_empty() && !host.is_empty() && !host.starts_with('-'),
        None => true,
    };
    spec_ok && split_ok
}

fn check_host(s: &str) {
    match UserHost::parse(s) {
        Ok(uh) => {
            assert!(should_accept(s), "accepted {s:?}");
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
            assert!(!should_accept(s), "rejected {s:?}: {reason}");
            assert_eq!(input, s);
        }
        Err(other) => panic!("unexpected error for {s:?}: {other}"),
    }
}

fn check_quote(s: &str) {
    match quote(s) {
        Ok(q) => {
            assert!(!s.contains('\0'));
            assert_eq!(
                shlex::split(&q),
                Some(vec![s.to_string()]),
                "quote({s:?}) = {q:?}"
            );
            assert_eq!(quote_if_remote(s, true).unwrap(), q);
        }
        Err(Error::Unquotable { arg, .. }) => {
            assert!(s.contains('\0'), "refused to quote {s:?}");
            assert_eq!(arg, s);
        }
        Err(other) => panic!("unexpected error for {s:?}: {other}"),
    }
    assert_eq!(quote_if_remote(s, false).unwrap(), s);

    let argv: Vec<&str> = s.split('\u{1}').collect();
    match join_quoted(&argv) {
        Ok(line) => {
            assert!(!s.contains('\0'));
            let back = shlex::split(&line).expect("a joined line splits");
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

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    check_host(&s);
    check_quote(&s);
});
