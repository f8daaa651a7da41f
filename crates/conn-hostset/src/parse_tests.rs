//! Tests of the expression parser: syntax, errors and limits.
use std::collections::HashMap;

use crate::{GroupError, GroupResolver, HostSet, Resolved};

fn names(expr: &str) -> Vec<String> {
    HostSet::parse(expr)
        .unwrap_or_else(|e| panic!("{e}"))
        .expand()
        .collect()
}

fn error(expr: &str) -> (usize, String) {
    let e = HostSet::parse(expr).expect_err(expr);
    assert!(e.to_string().contains(&format!("{expr:?}")), "{e}");
    (e.offset(), e.reason().to_string())
}

#[test]
fn lists_ranges_and_padding() {
    assert_eq!(names("a,b,h[1-3]"), ["a", "b", "h1", "h2", "h3"]);
    assert_eq!(names(" a , b "), ["a", "b"]);
    assert_eq!(names("h[01-03]"), ["h01", "h02", "h03"]);
    assert_eq!(names("h[8-10]"), ["h8", "h9", "h10"]);
    assert_eq!(names("h[098-100]"), ["h098", "h099", "h100"]);
    assert_eq!(names("h[001-10]").len(), 10);
    assert_eq!(names("h[001-10]")[9], "h010");
    assert_eq!(names("h[007]"), ["h007"]);
    assert_eq!(names("h[00-01]"), ["h00", "h01"]);
    assert_eq!(names("h[1-10/3]"), ["h1", "h4", "h7", "h10"]);
    assert_eq!(names("h[1-9/4]x"), ["h1x", "h5x", "h9x"]);
    assert_eq!(names("[1-2]a"), ["1a", "2a"]);
    let all = names("h[001-100,200]");
    assert_eq!(all.len(), 101);
    assert_eq!(
        (&all[0][..], &all[99][..], &all[100][..]),
        ("h001", "h100", "h200")
    );
}

#[test]
fn several_brackets_make_the_product() {
    let n = names("rack[1-2]-n[01-16]");
    assert_eq!(n.len(), 32);
    assert_eq!(n[0], "rack1-n01");
    assert_eq!(n[16], "rack2-n01");
    assert_eq!(names("a[1-2]b[1-2]c[1-2]").len(), 8);
    // Digits next to a bracket are just text: the name decides what its numbers are.
    assert_eq!(names("n[0-1]01"), ["n001", "n101"]);
}

#[test]
fn users_apply_to_every_name_of_their_item() {
    assert_eq!(names("root@h[1-2],db"), ["db", "root@h1", "root@h2"]);
    assert_eq!(names("u@fe80::1"), ["u@fe80::1"]);
    assert_eq!(names("a.b-c_d.example.com"), ["a.b-c_d.example.com"]);
    assert_eq!(names("ünï[1-2]"), ["ünï1", "ünï2"]);
}

#[test]
fn malformed_expressions_point_at_the_offending_character() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "empty host set"),
        ("   ", 3, "empty host set"),
        ("h[1-3", 1, "never closed"),
        ("h[1-3,", 1, "never closed"),
        ("h[", 1, "never closed"),
        ("h[]", 2, "empty brackets"),
        ("h[1,]", 4, "empty range"),
        ("h[,1]", 2, "empty range"),
        ("h[1-]", 4, "expected the end of the range"),
        ("h[a]", 2, "expected a number"),
        ("h[1-3]]", 6, "']' without"),
        ("h]", 1, "']' without"),
        ("h[[1]]", 2, "'[' inside brackets"),
        ("h[1 ]", 3, "expected ','"),
        ("h[ 1]", 2, "whitespace inside brackets"),
        ("h[5-1]", 2, "goes backwards"),
        ("h[1-010]", 4, "padding mismatch"),
        ("h[001-01]", 6, "padding mismatch"),
        ("h[1-9/0]", 6, "at least 1"),
        ("h[5/2]", 3, "a step needs a range"),
        ("h[1234567890123456789]", 2, "too long"),
        ("a,,b", 2, "empty host name before ','"),
        (",a", 0, "empty host name before ','"),
        ("a,", 1, "empty host name after ','"),
        ("a, ", 1, "empty host name after ','"),
        ("a b", 1, "whitespace inside a host name"),
        ("a\tb", 1, "whitespace inside a host name"),
        ("x;reboot", 1, "';' is not allowed"),
        ("h[1-2];x", 6, "';' is not allowed"),
        ("a\u{0}b", 1, "is not allowed"),
        ("$(reboot)", 0, "'$' is not allowed"),
        ("h/x", 1, "'/' is not allowed"),
        ("..", 0, "'..'"),
        ("a..b", 1, "'..'"),
        ("-oProxyCommand=x", 0, "must not start with '-'"),
        ("root@-x", 5, "must not start with '-'"),
        ("-u@x", 0, "user name must not start with '-'"),
        ("u..v@x", 1, "user name must not contain '..'"),
        ("@h", 0, "node groups are not available"),
        ("!a", 0, "empty host name before '!'"),
        ("a!", 1, "empty host name after '!'"),
        ("a&&b", 2, "empty host name before '&'"),
        ("a^ ", 1, "empty host name after '^'"),
        ("@", 0, "empty group name"),
        ("@we$b", 3, "'$' is not allowed in a group name"),
        ("@we*b", 3, "'*' is not allowed in a group name"),
        ("@@s;x", 3, "';' is not allowed in a source name"),
        ("@s(:*", 2, "'(' is not allowed in a source name"),
        ("@g[1-", 2, "never closed"),
        ("root@", 4, "empty host name after '@'"),
        ("a@b@c", 3, "a second '@'"),
        ("h[1-2]@x", 6, "cannot hold ranges"),
    ];
    for &(expr, offset, needle) in cases {
        let (at, reason) = error(expr);
        assert!(
            reason.contains(needle),
            "{expr:?}: {reason:?} lacks {needle:?}"
        );
        assert_eq!(at, offset, "{expr:?}: {reason}");
    }
}

#[test]
fn too_many_names_is_an_error_before_any_is_made() {
    // Would take terabytes if expanded: refused at once.
    let e = HostSet::parse("h[1-999999999999999999]").unwrap_err();
    assert_eq!(e.offset(), 1);
    assert!(e.reason().contains("1000000"), "{e}");
    let e = HostSet::parse("a[1-1000000]b[1-2]").unwrap_err();
    assert_eq!(e.offset(), 13, "{e}");
    let e = HostSet::parse_with_limit("a[1-6],b[1-5]", 10).unwrap_err();
    assert_eq!(e.offset(), 7, "{e}");
    assert!(e.reason().contains("more than 10 names"), "{e}");
    assert_eq!(
        HostSet::parse_with_limit("a[1-5],b[1-5]", 10)
            .unwrap()
            .len(),
        10
    );
    // Duplicates count: the limit is on what the expression makes.
    assert!(HostSet::parse_with_limit("a[1-6],a[1-5]", 10).is_err());
    assert!(HostSet::parse("a[1-1000],b[1-1000]").is_ok());
}

#[test]
fn operators_apply_left_to_right_as_nodeset_s() {
    assert_eq!(names("h[1-5]!h[2-3]"), ["h1", "h4", "h5"]);
    assert_eq!(names("h[1-5]&h[4-9]"), ["h4", "h5"]);
    assert_eq!(names("h[1-5]^h[4-7]"), ["h1", "h2", "h3", "h6", "h7"]);
    // No precedence: ((a ∪ b) ∖ b) ∩ a.
    assert_eq!(names("a,b!b&a"), ["a"]);
    assert_eq!(names("h[1-3]!h2,h2"), ["h1", "h2", "h3"]);
    assert_eq!(names(" h[1-3] ! h2 , x "), ["h1", "h3", "x"]);
    // A name without a user matches that host for every user; `&` keeps what `!` removes.
    assert_eq!(names("root@h[1-3],h[1-3]!h2").len(), 4);
    assert_eq!(names("root@h[1-3]&h2"), ["root@h2"]);
    assert_eq!(names("h2&root@h[1-3]"), Vec::<String>::new());
    assert_eq!(names("root@h1^h1"), ["h1"]);
}

/// A source of [`Table`]: its name and its groups (name, text).
type Source = (&'static str, Vec<(&'static str, &'static str)>);

/// Groups from a table: source -> group -> text; the first source is the default.
struct Table {
    sources: Vec<Source>,
    calls: usize,
}

impl Table {
    fn source(&self, source: Option<&str>) -> Result<&Source, GroupError> {
        match source {
            None => Ok(&self.sources[0]),
            Some(s) => self
                .sources
                .iter()
                .find(|(name, _)| *name == s)
                .ok_or_else(|| GroupError::new(format!("unknown source {s}"))),
        }
    }
}

impl GroupResolver for Table {
    fn group(&mut self, source: Option<&str>, group: &str) -> Result<Resolved, GroupError> {
        self.calls += 1;
        let (name, groups) = self.source(source)?;
        let map: HashMap<_, _> = groups.iter().copied().collect();
        match map.get(group) {
            Some(text) => Ok(Resolved {
                source: name.to_string(),
                text: text.to_string(),
            }),
            None => Err(GroupError::new(format!(
                "unknown group @{group} in source {name}"
            ))),
        }
    }
    fn all(&mut self, source: Option<&str>) -> Result<Resolved, GroupError> {
        let (name, _) = self.source(source)?;
        let text = if *name == "local" {
            "web[1-4] db[1-3]\nlb1"
        } else {
            "o[1-2],o9"
        }
        .to_string();
        Ok(Resolved {
            source: name.to_string(),
            text,
        })
    }
    fn list(&mut self, source: Option<&str>) -> Result<(String, Vec<String>), GroupError> {
        let (name, groups) = self.source(source)?;
        Ok((
            name.to_string(),
            groups.iter().map(|(g, _)| g.to_string()).collect(),
        ))
    }
}

fn table() -> Table {
    Table {
        sources: vec![
            (
                "local",
                vec![
                    ("web", "web[1-4]"),
                    ("db", "db[1-2]\ndb3"),
                    ("front", "@web,lb1"),
                    ("both", "@web @other:g1"),
                    ("rack1", "r1n[1-2]"),
                    ("rack2", "r2n[1-2]"),
                    ("loop", "x,@loop2"),
                    ("loop2", "@loop"),
                    ("bad", "h[1-"),
                    ("empty", ""),
                    ("withuser", "u@h1"),
                ],
            ),
            ("other", vec![("g1", "o[1-2]"), ("g2", "@g1,o9")]),
        ],
        calls: 0,
    }
}

fn grouped(expr: &str) -> Result<Vec<String>, crate::ParseError> {
    HostSet::parse_with_groups(expr, crate::DEFAULT_MAX_NAMES, &mut table())
        .map(|s| s.expand().collect())
}

#[test]
fn groups_expand_anywhere_a_name_may_stand() {
    assert_eq!(grouped("@web").unwrap(), ["web1", "web2", "web3", "web4"]);
    assert_eq!(grouped("@db").unwrap(), ["db1", "db2", "db3"]);
    assert_eq!(
        grouped("@web!web2,db9").unwrap(),
        ["db9", "web1", "web3", "web4"]
    );
    assert_eq!(grouped("web[1-9]&@web").unwrap().len(), 4);
    assert_eq!(
        grouped("@front").unwrap(),
        ["lb1", "web1", "web2", "web3", "web4"]
    );
    assert_eq!(grouped("@other:g1").unwrap(), ["o1", "o2"]);
    // Nested groups are looked up in the source of the group that names them.
    assert_eq!(grouped("@other:g2").unwrap(), ["o1", "o2", "o9"]);
    assert_eq!(grouped("@both").unwrap().len(), 6);
    // Brackets make several group names.
    assert_eq!(
        grouped("@rack[1-2]").unwrap(),
        ["r1n1", "r1n2", "r2n1", "r2n2"]
    );
    assert_eq!(grouped("@*").unwrap().len(), 8);
    assert_eq!(grouped("@other:*").unwrap(), ["o1", "o2", "o9"]);
    assert_eq!(grouped("@@other").unwrap(), ["g1", "g2"]);
    assert_eq!(grouped("root@@web").unwrap()[0], "root@web1");
    assert_eq!(grouped("@empty,a").unwrap(), ["a"]);
    // `-x`-like exclusion of a group, and a group excluded from everything.
    assert_eq!(grouped("@*!@web!@db").unwrap(), ["lb1"]);
}

#[test]
fn group_failures_name_the_group_and_stand_at_its_at_sign() {
    let e = grouped("a,@nope").unwrap_err();
    assert_eq!(e.offset(), 2);
    assert_eq!(e.reason(), "unknown group @nope in source local");
    let e = grouped("@nosuch:g").unwrap_err();
    assert_eq!(e.reason(), "unknown source nosuch");
    let e = grouped("@loop").unwrap_err();
    assert!(e.reason().contains("includes itself"), "{e}");
    assert!(
        e.reason()
            .contains("@local:loop -> @local:loop2 -> @local:loop"),
        "{e}"
    );
    let e = grouped("x,@bad").unwrap_err();
    assert_eq!(e.offset(), 2);
    assert!(
        e.reason()
            .starts_with("in group @local:bad: invalid host set \"h[1-\""),
        "{e}"
    );
    let e = grouped("root@@withuser").unwrap_err();
    assert!(e.reason().contains("has a user of its own"), "{e}");
    let e = grouped("@other:").unwrap_err();
    assert!(e.reason().contains("empty group name"), "{e}");
    // The limit counts the names groups make.
    let e = HostSet::parse_with_groups("@web,@db", 5, &mut table()).unwrap_err();
    assert!(e.reason().contains("more than 5 names"), "{e}");
    assert_eq!(e.offset(), 5);
}

#[test]
fn the_resolver_is_asked_once_per_reference() {
    let mut t = table();
    HostSet::parse_with_groups("@web,@db!@web", 100, &mut t).unwrap();
    assert_eq!(t.calls, 3);
}
