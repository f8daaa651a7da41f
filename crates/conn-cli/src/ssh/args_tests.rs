//! ssh's getopt rules, case by case, as OpenSSH 9.2's ssh.c applies them.

use super::*;

fn words(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn parsed(list: &[&str]) -> SshLine {
    parse(&words(list)).unwrap_or_else(|e| panic!("{list:?}: {e:?}"))
}

fn opt(letter: u8, value: Option<&str>, after_destination: bool) -> SshOpt {
    SshOpt {
        letter,
        value: value.map(OsString::from),
        after_destination,
    }
}

fn ssh_usage(list: &[&str]) -> SshUsage {
    match parse(&words(list)) {
        Err(ParseError::Ssh(u)) => *u,
        other => panic!("{list:?}: expected ssh's usage error, got {other:?}"),
    }
}

#[test]
fn every_letter_of_ssh_s_getopt_string_is_known_with_its_argument_kind() {
    for flag in b"1246afgknqstvxACGKMNPTVXYy" {
        assert_eq!(letter_kind(*flag), Some(false), "{}", *flag as char);
    }
    for valued in b"bceilmopBDEFIJLOQRSWw" {
        assert_eq!(letter_kind(*valued), Some(true), "{}", *valued as char);
    }
    for unknown in b"dhjruzHUZ:-3" {
        assert_eq!(letter_kind(*unknown), None, "{}", *unknown as char);
    }
}

#[test]
fn clustered_flags_and_attached_or_separate_arguments() {
    let line = parsed(&[
        "-qT",
        "-p2222",
        "-l",
        "me",
        "-vvo",
        "Compression=yes",
        "h",
        "true",
    ]);
    assert_eq!(
        line.options,
        [
            opt(b'q', None, false),
            opt(b'T', None, false),
            opt(b'p', Some("2222"), false),
            opt(b'l', Some("me"), false),
            opt(b'v', None, false),
            opt(b'v', None, false),
            opt(b'o', Some("Compression=yes"), false),
        ]
    );
    assert_eq!(line.destination.host, "h");
    assert_eq!(line.command, words(&["true"]));
    // A flag cluster ending in a letter that takes an argument takes the next word, even one
    // that starts with '-'.
    let line = parsed(&["-qi", "-key", "h"]);
    assert_eq!(line.options[1], opt(b'i', Some("-key"), false));
    assert_eq!(line.destination.host, "h");
}

#[test]
fn options_after_the_destination_are_read_until_the_command() {
    let line = parsed(&["h", "-p", "22", "-T", "echo", "-n", "x"]);
    assert_eq!(
        line.options,
        [opt(b'p', Some("22"), true), opt(b'T', None, true)]
    );
    assert_eq!(line.command, words(&["echo", "-n", "x"]));
    // `--` ends them; the words after it are the command, dashes and all.
    let line = parsed(&["h", "--", "-n", "x"]);
    assert!(line.options.is_empty());
    assert_eq!(line.command, words(&["-n", "x"]));
    // A `--` before the destination ends the options after it too.
    let line = parsed(&["-q", "--", "h", "-v", "x"]);
    assert_eq!(line.options, [opt(b'q', None, false)]);
    assert_eq!(line.command, words(&["-v", "x"]));
    // A lone "-" is no option: it is the destination (ssh then fails on it).
    assert_eq!(parsed(&["-", "x"]).destination.host, "-");
}

#[test]
fn conn_s_long_options_come_before_the_destination_and_leave_ssh_s_line() {
    let line = parsed(&[
        "--mux",
        "process",
        "-p",
        "2",
        "--socket-dir=/tmp/s",
        "--exit-on-shutdown",
        "h",
        "x",
    ]);
    assert_eq!(line.conn.mux.as_deref(), Some("process"));
    assert_eq!(line.conn.socket_dir.as_deref(), Some(OsStr::new("/tmp/s")));
    assert!(line.conn.exit_on_shutdown);
    assert_eq!(line.ssh_argv, words(&["-p", "2", "h", "x"]));
    assert_eq!(parse(&words(&["-q", "--help"])), Err(ParseError::Help));
    assert_eq!(parse(&words(&["--help", "h", "x"])), Err(ParseError::Help));
    for (bad, needle) in [
        (&["--nope", "h"][..], "unknown conn option --nope"),
        (&["--mux"][..], "--mux needs a value"),
        (&["--help=1", "h"][..], "--help takes no value"),
    ] {
        match parse(&words(bad)) {
            Err(ParseError::Conn(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // After the destination a long option is what ssh makes of it: a usage error.
    let u = ssh_usage(&["h", "--mux", "native", "x"]);
    assert!(u.reason.contains("unknown option -- -"), "{}", u.reason);
    assert_eq!(u.ssh_argv, words(&["h", "--mux", "native", "x"]));
}

#[test]
fn what_ssh_refuses_goes_to_ssh_with_the_same_words() {
    for (line, needle) in [
        (&["-z", "h"][..], "unknown option -- z"),
        (&["-p"][..], "option requires an argument -- p"),
        (&["-q"][..], "no destination"),
        (&[][..], "no destination"),
        (&["@h", "x"][..], "empty user"),
        (&["ssh://h/path", "x"][..], "path"),
    ] {
        let u = ssh_usage(line);
        assert!(u.reason.contains(needle), "{line:?}: {}", u.reason);
        assert_eq!(u.ssh_argv, words(line), "{line:?}");
    }
    let u = ssh_usage(&["--mux", "process", "-z", "h"]);
    assert_eq!(u.ssh_argv, words(&["-z", "h"]));
    assert_eq!(u.conn.mux.as_deref(), Some("process"));
}

#[test]
fn destinations_split_as_ssh_splits_them() {
    let d = |s: &str| destination(OsStr::new(s));
    let dest = |user: Option<&str>, host: &str, port: Option<u16>| Destination {
        user: user.map(OsString::from),
        host: host.into(),
        port,
    };
    assert_eq!(d("h"), Ok(dest(None, "h", None)));
    assert_eq!(d("u@h"), Ok(dest(Some("u"), "h", None)));
    // The last '@' splits a plain destination.
    assert_eq!(d("a@b@h"), Ok(dest(Some("a@b"), "h", None)));
    assert_eq!(d("ssh://h"), Ok(dest(None, "h", None)));
    assert_eq!(
        d("ssh://u@127.0.0.1:2222"),
        Ok(dest(Some("u"), "127.0.0.1", Some(2222)))
    );
    assert_eq!(d("ssh://u;fp=x@h:22/"), Ok(dest(Some("u"), "h", Some(22))));
    assert_eq!(d("ssh://a%40b+c@h"), Ok(dest(Some("a@b c"), "h", None)));
    assert_eq!(d("ssh://[h1]:7"), Ok(dest(None, "h1", Some(7))));
    assert_eq!(
        d("ssh://h.example.:7"),
        Ok(dest(None, "h.example", Some(7)))
    );
    assert_eq!(d("ssh://h:"), Ok(dest(None, "h", None)));
    for bad in [
        "ssh://",
        "ssh://@h",
        "ssh://u@",
        "ssh://h:0",
        "ssh://h:x",
        "ssh://h:/",
        "ssh://h:99999",
        "ssh://[h",
        "ssh://[h]x",
        "ssh://[::1]",
        "ssh://-h",
        "ssh://a..b",
        "ssh://h/p",
        "ssh://a%4@h",
        "ssh://a%+1@h",
    ] {
        assert!(d(bad).is_err(), "{bad}: {:?}", d(bad));
    }
}

#[test]
fn words_that_are_not_utf8_pass_through_unchanged() {
    let odd = OsString::from_vec(b"caf\xe9".to_vec());
    let line = parse(&[OsString::from("h"), odd.clone()]).unwrap();
    assert_eq!(line.command, std::slice::from_ref(&odd));
    assert_eq!(line.ssh_argv, [OsString::from("h"), odd]);
}
