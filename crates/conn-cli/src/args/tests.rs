//! The command line's definitions, parsed as users type them.

use std::ffi::OsString;

use conn_openssh::DEFAULT_EXTRA_OPTIONS;

use super::*;
use clap::CommandFactory;

#[test]
fn the_command_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn run_takes_the_command_after_the_options_with_or_without_dashes() {
    for argv in [
        &["conn", "run", "-H", "h", "--", "ls", "-l"][..],
        &["conn", "run", "-H", "h", "ls", "-l"][..],
    ] {
        let Command::Run(r) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not run");
        };
        assert_eq!(r.command, ["ls", "-l"]);
        assert_eq!(r.targets.hosts, ["h"]);
    }
}

#[test]
fn host_sets_come_from_w_and_h_alike_with_exclusions_and_output_modes() {
    let Command::Run(r) = Cli::try_parse_from([
        "conn", "run", "-w", "h[1-3]", "-H", "db1", "-x", "h2", "-b", "--", "true",
    ])
    .unwrap()
    .command
    else {
        panic!("not run");
    };
    assert_eq!(r.targets.hosts, ["h[1-3]", "db1"]);
    assert_eq!(r.targets.exclude, ["h2"]);
    assert!(r.output.gather && !r.output.json);
    assert!(Cli::try_parse_from(["conn", "run", "-w", "h", "--json", "-b", "true"]).is_err());
    assert!(Cli::try_parse_from(["conn", "run", "--local", "-x", "h", "true"]).is_err());
    // -x alone names no target.
    assert!(Cli::try_parse_from(["conn", "run", "-x", "h", "true"]).is_err());
    let Command::Hosts(h) =
        Cli::try_parse_from(["conn", "hosts", "a[1-2]", "b", "-x", "a1", "--fold"])
            .unwrap()
            .command
    else {
        panic!("not hosts");
    };
    assert_eq!(
        (h.exprs.as_slice(), h.exclude.as_slice()),
        (
            &["a[1-2]".to_string(), "b".into()][..],
            &["a1".to_string()][..]
        )
    );
    assert!(h.fold);
    assert!(Cli::try_parse_from(["conn", "hosts"]).is_err());
}

#[test]
fn run_needs_a_target_and_a_command() {
    assert!(Cli::try_parse_from(["conn", "run", "--", "true"]).is_err());
    assert!(Cli::try_parse_from(["conn", "run", "-H", "h"]).is_err());
    assert!(Cli::try_parse_from(["conn", "run", "--local", "-H", "h", "true"]).is_err());
    assert!(Cli::try_parse_from(["conn", "run", "--local", "true"]).is_ok());
}

#[test]
fn user_options_come_before_the_defaults() {
    let Command::Run(r) =
        Cli::try_parse_from(["conn", "run", "-H", "h", "-o", "BatchMode=no", "true"])
            .unwrap()
            .command
    else {
        panic!("not run");
    };
    let extra = r.ssh.extra_options();
    assert_eq!(extra[0], "-oBatchMode=no");
    assert_eq!(&extra[1..], DEFAULT_EXTRA_OPTIONS);
    assert!(r.ssh.validate().is_ok());
}

#[test]
fn mux_parses_with_the_transport_s_own_names() {
    let run = |extra: &[&str]| {
        let mut argv = vec!["conn", "run", "-H", "h"];
        argv.extend(extra);
        argv.push("true");
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Run(r)) => Ok(r.mux),
            Ok(_) => panic!("not run"),
            Err(e) => Err(e.to_string()),
        }
    };
    assert_eq!(run(&[]), Ok(Mux::Native), "native by default");
    assert_eq!(run(&["--mux", "process"]), Ok(Mux::Process));
    assert_eq!(run(&["--mux", "native"]), Ok(Mux::Native));
    assert!(run(&["--mux", "nativ"]).unwrap_err().contains("neither"));
}

#[test]
fn bench_takes_lists_of_thread_counts_and_back_ends() {
    let bench = |extra: &[&str]| {
        let mut argv = vec!["conn", "bench"];
        argv.extend(extra);
        argv.push("h");
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Bench(b) => b,
            _ => panic!("not bench"),
        }
    };
    let b = bench(&[]);
    assert_eq!(b.threads, [8, 32]);
    assert_eq!(b.mux, [Mux::Native, Mux::Process]);
    assert_eq!(b.ssh.capacity, 8);
    let b = bench(&["-t", "32,8", "-t", "16", "--mux", "process"]);
    assert_eq!(b.threads, [32, 8, 16]);
    assert_eq!(b.mux, [Mux::Process]);
    assert!(Cli::try_parse_from(["conn", "bench", "-t", "8,0", "h"]).is_err());
    let Command::Demo(d) = Cli::try_parse_from(["conn", "demo", "-t", "8,32"])
        .unwrap()
        .command
    else {
        panic!("not demo")
    };
    assert_eq!(d.threads, [8, 32]);
    assert!(!d.builtin && !b.builtin);
    assert!(bench(&["--builtin"]).builtin);
}

#[test]
fn ssh_options_survive_the_round_trip_through_a_child_s_command_line() {
    let Command::Bench(b) = Cli::try_parse_from([
        "conn",
        "bench",
        "--ssh-program",
        "/usr/bin/ssh",
        "-p",
        "2222",
        "-F",
        "rel/config",
        "-c",
        "",
        "--connect-timeout",
        "3",
        "-vv",
        "-o",
        "Compression=yes",
        "-o",
        "User=x y",
        "--control-persist",
        "90",
        "--capacity",
        "4",
        "--socket-dir",
        "/tmp/s d",
        "--location",
        "dst",
        "--exit-on-shutdown",
        "h",
    ])
    .unwrap()
    .command
    else {
        panic!("not bench")
    };
    let mut argv: Vec<OsString> = vec!["conn".into(), "run".into()];
    argv.extend(b.ssh.to_cli_args());
    argv.extend(["-H", "h", "true"].map(OsString::from));
    let Command::Run(r) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not run")
    };
    let expected = SshArgs {
        exit_on_shutdown: false,
        ..b.ssh.clone()
    };
    assert_eq!(r.ssh, expected);
    // And the defaults stay defaults.
    let Command::Bench(b) = Cli::try_parse_from(["conn", "bench", "h"]).unwrap().command else {
        panic!("not bench")
    };
    let mut argv: Vec<OsString> = vec!["conn".into(), "run".into()];
    argv.extend(b.ssh.to_cli_args());
    argv.extend(["-H", "h", "true"].map(OsString::from));
    let Command::Run(r) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not run")
    };
    assert_eq!(r.ssh, b.ssh);
}

/// (clap drops a `--` that comes first, which ssh counts: `main` hands `conn ssh` its raw
/// words before clap sees them; the CLI tests run that path.)
#[test]
fn ssh_gets_every_word_unchanged_dashes_and_all() {
    for words in [
        &["-qT", "--mux", "process", "-p", "22", "h", "--", "-n", "x"][..],
        &["h", "--help"][..],
        &["--help"][..],
        &["-h"][..],
        &[][..],
    ] {
        let mut argv = vec!["conn", "ssh"];
        argv.extend(words);
        let Command::Ssh(s) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("not ssh");
        };
        assert_eq!(s.args, words.iter().map(OsString::from).collect::<Vec<_>>());
    }
}

#[test]
fn seconds_parse_with_fractions_and_refuse_nonsense() {
    assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_secs("30"), Ok(Duration::from_secs(30)));
    for bad in ["0", "-1", "x", "nan", "inf"] {
        assert!(parse_secs(bad).is_err(), "{bad}");
    }
}
