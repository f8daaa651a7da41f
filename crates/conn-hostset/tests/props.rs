//! Property tests: folding and expanding keep the set, expressions expand as a naive reference
//! says, exclusion is set difference, and no input makes the parser panic.

use std::collections::BTreeSet;

use conn_hostset::HostSet;
use proptest::prelude::*;

/// A plain host name with up to three numbers, some zero-padded, some digit runs long enough
/// to be text, a few non-ASCII characters; never `..` and never a leading `-`.
fn host() -> impl Strategy<Value = String> {
    let number = (0u64..40, 0usize..4).prop_map(|(v, width)| format!("{v:0width$}"));
    let text = prop::sample::select(vec![
        "",
        "a",
        "b",
        "-",
        ".",
        "x-",
        "é",
        "_",
        ":",
        "1234567890123456789",
    ]);
    (
        prop::sample::select(vec!["h", "n", "rack", "db", "é"]),
        prop::collection::vec((number, text), 0..4),
    )
        .prop_map(|(head, parts)| {
            let mut s = head.to_string();
            for (n, t) in parts {
                s.push_str(&n);
                s.push_str(t);
            }
            s
        })
        .prop_filter("no '..'", |s| !s.contains(".."))
}

/// `host` or `user@host`.
fn name() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop::sample::select(vec!["root", "u1"])),
        host(),
    )
        .prop_map(|(user, host)| match user {
            Some(u) => format!("{u}@{host}"),
            None => host,
        })
}

/// One bracket range as text, and the names it stands for by the documented rule: every
/// number written with at least the start's width.
fn range() -> impl Strategy<Value = (String, Vec<String>)> {
    (0u64..120, 0u64..12, 1u64..4, 0usize..4).prop_map(|(start, len, step, pad)| {
        let end = start + len;
        let start_text = format!("{start:0pad$}");
        let width = start_text.len();
        let values: Vec<String> = (start..=end)
            .step_by(step as usize)
            .map(|v| format!("{v:0width$}"))
            .collect();
        let text = match (len, step) {
            (0, _) => start_text,
            (_, 1) => format!("{start_text}-{end}"),
            _ => format!("{start_text}-{end}/{step}"),
        };
        (text, values)
    })
}

/// An item: text and brackets in turn, with its names by naive string concatenation.
fn item() -> impl Strategy<Value = (String, Vec<String>)> {
    let bracket = prop::collection::vec(range(), 1..3).prop_map(|ranges| {
        let text = format!(
            "[{}]",
            ranges
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let values: Vec<String> = ranges.into_iter().flat_map(|(_, v)| v).collect();
        (text, values)
    });
    (
        prop::option::of(prop::sample::select(vec!["root", "u1"])),
        prop::sample::select(vec!["h", "rack", "n-", "a.b"]),
        prop::collection::vec(
            (bracket, prop::sample::select(vec!["", "-n", "x", ".e"])),
            0..3,
        ),
    )
        .prop_map(|(user, head, parts)| {
            let mut text = String::new();
            if let Some(u) = user {
                text.push_str(u);
                text.push('@');
            }
            text.push_str(head);
            let mut names = vec![text.clone()];
            for ((bracket, values), tail) in parts {
                text.push_str(&bracket);
                text.push_str(tail);
                names = names
                    .iter()
                    .flat_map(|n| values.iter().map(move |v| format!("{n}{v}{tail}")))
                    .collect();
            }
            (text, names)
        })
}

fn expression() -> impl Strategy<Value = (String, BTreeSet<String>)> {
    prop::collection::vec(item(), 1..4).prop_map(|items| {
        let text = items
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let names = items.into_iter().flat_map(|(_, n)| n).collect();
        (text, names)
    })
}

fn expanded(set: &HostSet) -> Vec<String> {
    set.expand().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn folding_then_expanding_gives_the_same_set(names in prop::collection::vec(name(), 0..80)) {
        let set = HostSet::from_names(&names).unwrap();
        let unique: BTreeSet<String> = names.iter().cloned().collect();
        let out = expanded(&set);
        prop_assert_eq!(out.len(), set.len());
        prop_assert_eq!(out.len(), unique.len());
        prop_assert_eq!(out.iter().cloned().collect::<BTreeSet<_>>(), unique);
        let folded = set.fold();
        let again = HostSet::parse(&folded);
        if set.is_empty() {
            prop_assert!(again.is_err());
        } else {
            let again = again.map_err(|e| TestCaseError::fail(format!("{folded}: {e}")))?;
            prop_assert_eq!(expanded(&again), out, "folded: {}", folded);
            prop_assert_eq!(&again, &set);
            // Canonical: the same set folds to the same text.
            prop_assert_eq!(again.fold(), folded);
        }
    }

    #[test]
    fn expressions_expand_as_the_naive_reference_and_round_trip((expr, reference) in expression()) {
        let set = HostSet::parse(&expr).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(set.len(), reference.len());
        let names = expanded(&set);
        prop_assert_eq!(names.iter().cloned().collect::<BTreeSet<_>>(), reference);
        for n in &names {
            prop_assert!(set.contains(n), "{} not contained", n);
        }
        let folded = set.fold();
        let again = HostSet::parse(&folded).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(expanded(&again), names, "folded: {}", folded);
    }

    #[test]
    fn exclusion_is_set_difference(
        a in prop::collection::vec(name(), 0..40),
        b in prop::collection::vec(name(), 0..20),
    ) {
        let sa = HostSet::from_names(&a).unwrap();
        let sb = HostSet::from_names(&b).unwrap();
        let removed: BTreeSet<&str> = b.iter().map(String::as_str).collect();
        let host_of = |n: &str| n.split_once('@').map_or(n, |(_, h)| h).to_string();
        let expected: BTreeSet<String> = a
            .iter()
            .filter(|n| {
                // A user-less excluded name removes the host for every user.
                !removed.contains(n.as_str()) && !removed.contains(host_of(n).as_str())
            })
            .cloned()
            .collect();
        let left = sa.difference(&sb);
        prop_assert_eq!(left.len(), expected.len());
        prop_assert_eq!(expanded(&left).into_iter().collect::<BTreeSet<_>>(), expected);
        // And union puts back exactly what b holds.
        let mut union = left.clone();
        union.extend(&sb);
        let mut both: BTreeSet<String> = expanded(&left).into_iter().collect();
        both.extend(b.iter().cloned());
        prop_assert_eq!(expanded(&union).into_iter().collect::<BTreeSet<_>>(), both);
    }

    #[test]
    fn parsing_never_panics_on_arbitrary_input(input in ".{0,40}") {
        check_error_shape(&input);
    }

    #[test]
    fn parsing_never_panics_on_syntax_soup(input in "[\\[\\]0-9a-c,@ \\-/.é\t]{0,40}") {
        check_error_shape(&input);
    }
}

/// Whatever the input, parsing returns; an error's offset is a character boundary within the
/// input and its caret renders.
fn check_error_shape(input: &str) {
    match HostSet::parse_with_limit(input, 10_000) {
        Ok(set) => {
            let _ = set.fold();
        }
        Err(e) => {
            assert!(e.offset() <= input.len());
            assert!(input.is_char_boundary(e.offset()));
            let (line, caret) = e.caret();
            assert!(caret.ends_with('^'));
            assert!(caret.chars().count() <= line.chars().count() + 1);
            assert!(!e.to_string().is_empty());
        }
    }
}
