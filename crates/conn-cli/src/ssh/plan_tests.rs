//! Which lines the pool serves, with what master identity, and which go to ssh.

use super::*;
use crate::ssh::args::parse;

fn decided(list: &[&str]) -> Decision {
    let words: Vec<OsString> = list.iter().map(OsString::from).collect();
    decide(&parse(&words).unwrap(), false)
}

fn served(list: &[&str]) -> Serve {
    match decided(list) {
        Decision::Serve(s) => *s,
        Decision::Handover { reason, .. } => panic!("{list:?} handed over: {reason}"),
    }
}

fn handed_over(list: &[&str]) -> String {
    match decided(list) {
        Decision::Handover { reason, .. } => reason,
        Decision::Serve(s) => panic!("{list:?} served: {s:?}"),
    }
}

#[test]
fn the_command_is_the_words_joined_with_single_spaces() {
    let s = served(&["h", "echo", "'a  b'", "c"]);
    assert_eq!(s.remote, Remote::Command("echo 'a  b' c".into()));
    let s = served(&[
        "h",
        "printf '%s|' one 'two three'; echo $HOME > /dev/null | cat",
    ]);
    assert_eq!(
        s.remote,
        Remote::Command("printf '%s|' one 'two three'; echo $HOME > /dev/null | cat".into())
    );
    let s = served(&["-s", "h", "sftp"]);
    assert_eq!(s.remote, Remote::Subsystem("sftp".into()));
    assert!(!s.stdin_null);
    assert!(served(&["-n", "h", "true"]).stdin_null);
}

#[test]
fn user_and_port_go_to_whichever_comes_first_as_in_ssh() {
    let s = served(&["-l", "a", "-p", "2222", "127.0.0.1", "true"]);
    assert_eq!((s.user_host.as_str(), s.port), ("a@127.0.0.1", Some(2222)));
    assert_eq!(served(&["-l", "a", "b@h", "x"]).user_host, "a@h");
    assert_eq!(served(&["b@h", "-l", "a", "x"]).user_host, "b@h");
    assert_eq!(served(&["h", "-l", "a", "x"]).user_host, "a@h");
    assert_eq!(served(&["-oUser=c", "b@h", "x"]).user_host, "c@h");
    assert_eq!(served(&["-l", "a", "-oUser=c", "h", "x"]).user_host, "a@h");
    let s = served(&["ssh://u@h:7", "-p", "9", "x"]);
    assert_eq!((s.user_host.as_str(), s.port), ("u@h", Some(7)));
    assert_eq!(served(&["-p", "9", "ssh://h:7", "x"]).port, Some(9));
    assert_eq!(served(&["-o", "Port 5", "-p", "9", "h", "x"]).port, Some(5));
    assert_eq!(served(&["ssh://h", "x"]).port, None);
    // These never reach the master's other options: the endpoint carries them.
    assert!(
        served(&["-l", "a", "-p", "2", "-oUser=c", "-oPort=3", "h", "x"])
            .identity
            .is_empty()
    );
    assert!(handed_over(&["-p", "0", "h", "x"]).contains("port"));
    assert!(handed_over(&["-p", "ssh", "h", "x"]).contains("port"));
}

#[test]
fn session_options_do_not_split_masters() {
    let s = served(&[
        "-q",
        "-T",
        "-x",
        "-a",
        "-n",
        "-e",
        "none",
        "-S",
        "/tmp/x",
        "-E",
        "/tmp/log",
        "-oRequestTTY=no",
        "-oRemoteCommand=none",
        "-oPermitLocalCommand=yes",
        "-oClearAllForwardings=yes",
        "-oForwardAgent=no",
        "-oForwardX11=no",
        "-oBatchMode=no",
        "-oLogLevel=ERROR",
        "-oControlMaster=auto",
        "-oControlPath=/tmp/%C",
        "-o",
        "ControlPersist 60",
        "h",
        "true",
    ]);
    assert!(s.identity.is_empty(), "{:?}", s.identity);
    assert!(s.log.quiet && !s.log.verbose);
    assert_eq!(
        s.log.file.as_deref(),
        Some(std::path::Path::new("/tmp/log"))
    );
    assert_eq!(
        (s.verbose, s.cipher.as_deref(), s.ssh_config.as_deref()),
        (0, None, None)
    );
}

#[test]
fn every_other_option_is_part_of_the_master_s_identity_in_order() {
    let s = served(&[
        "-C",
        "-4",
        "-iid",
        "-J",
        "jump",
        "-oCompression=yes",
        "-o",
        "HostName other",
        "-oSendEnv=GIT_PROTOCOL",
        "-c",
        "aes128-ctr",
        "-F",
        "cfg",
        "-vv",
        "h",
        "true",
    ]);
    let key = std::path::absolute("id").unwrap();
    assert_eq!(
        s.identity,
        [
            "-C".to_string(),
            "-4".into(),
            format!("-i{}", key.display()),
            "-Jjump".into(),
            "-oCompression=yes".into(),
            "-oHostName other".into(),
            "-oSendEnv=GIT_PROTOCOL".into(),
        ]
    );
    assert_eq!(s.cipher.as_deref(), Some("aes128-ctr"));
    assert_eq!(s.ssh_config.as_deref(), Some(std::path::Path::new("cfg")));
    assert_eq!(s.verbose, 2);
    assert!(s.log.verbose && !s.log.quiet);
    assert_eq!(served(&["-i~/.ssh/k", "h", "x"]).identity, ["-i~/.ssh/k"]);
}

#[test]
fn what_a_master_session_cannot_serve_is_handed_over_with_its_reason() {
    for (line, needle) in [
        (&["-t", "h", "top"][..], "terminal"),
        (&["-tt", "h", "top"][..], "terminal"),
        (&["-oRequestTTY=force", "h", "top"][..], "terminal"),
        (&["-o", "RequestTTY yes", "h", "top"][..], "terminal"),
        (&["-L", "1:h:2", "h", "x"][..], "-L forwards a port"),
        (&["-R1:h:2", "h", "x"][..], "-R forwards a port"),
        (&["-D", "1080", "h", "x"][..], "-D forwards a port"),
        (&["-W", "h:22", "h"][..], "-W"),
        (&["-N", "h"][..], "-N"),
        (&["-f", "h", "x"][..], "-f"),
        (&["-M", "h", "x"][..], "-M"),
        (&["-O", "check", "h"][..], "-O"),
        (&["-G", "h"][..], "-G"),
        (&["-V", "h"][..], "-V"),
        (&["-A", "h", "x"][..], "agent"),
        (&["-oForwardAgent=/run/agent.sock", "h", "x"][..], "agent"),
        (&["-X", "h", "x"][..], "X11"),
        (&["-Y", "h", "x"][..], "X11"),
        (&["-oLocalForward=1 h:2", "h", "x"][..], "forwards a port"),
        (&["-oRemoteCommand=ls", "h"][..], "RemoteCommand"),
        (&["h"][..], "no command"),
        (&["h", ""][..], "empty command"),
        (&["-s", "h"][..], "-s without a subsystem"),
        (&["h", "-y", "x"][..], "syslog"),
        (&["bad host!", "x"][..], "not one conn takes"),
    ] {
        let reason = handed_over(line);
        assert!(reason.contains(needle), "{line:?}: {reason}");
    }
    // The last flag wins, as in ssh: -T after -t asks for no terminal, -a after -A no agent.
    served(&["-t", "-T", "h", "x"]);
    served(&["-A", "-a", "h", "x"]);
    served(&["-X", "-x", "h", "x"]);
    // While an -o counts only when nothing set it before.
    served(&["-T", "-oRequestTTY=yes", "h", "x"]);
    handed_over(&["-oRequestTTY=yes", "-T", "-t", "h", "x"]);
    // A terminal on stdin with no command is an interactive login.
    let words: Vec<OsString> = ["h"].iter().map(OsString::from).collect();
    match decide(&parse(&words).unwrap(), true) {
        Decision::Handover { reason, .. } => assert!(reason.contains("interactive"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_log_level_follows_q_v_and_loglevel_as_ssh_sets_it() {
    let log = |line: &[&str]| match decided(line) {
        Decision::Serve(s) => s.log,
        Decision::Handover { log, .. } => log,
    };
    assert_eq!(log(&["h", "x"]), Log::default());
    assert!(log(&["-q", "h", "x"]).quiet);
    assert!(log(&["-v", "h", "x"]).verbose);
    assert!(!log(&["-q", "-v", "h", "x"]).quiet);
    assert!(log(&["-v", "-q", "h", "x"]).quiet);
    assert!(log(&["-oLogLevel=QUIET", "h", "x"]).quiet);
    assert!(!log(&["-v", "-oLogLevel=QUIET", "h", "x"]).quiet);
    assert!(
        log(&["-v", "-t", "h", "x"]).verbose,
        "a hand-over knows -v too"
    );
}
