//! Sessions that go as asked: output, stdin and status, the request's shape, the job's
//! deadline and cancel, and what never connects.

use super::*;

#[test]
fn happy_path_collects_output_feeds_stdin_and_keeps_255_an_exit_status() {
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let expected = input.clone();
    let fake = Fake::start(move |mut s| {
        send(&mut s, hello());
        let (req, [stdin, stdout, stderr]) = accept_session(&mut s);
        assert_eq!(req.command, b"printf '%s' 'a b'");
        assert!(!req.want_tty && req.escape_char == codec::NO_ESCAPE_CHAR);
        send(
            &mut s,
            ServerMessage::SessionOpened {
                request_id: req.request_id,
                session_id: 7,
            },
        );
        let mut got = Vec::new();
        std::fs::File::from(stdin).read_to_end(&mut got).unwrap();
        assert_eq!(got, expected);
        std::fs::File::from(stdout).write_all(b"out").unwrap();
        std::fs::File::from(stderr).write_all(b"err").unwrap();
        send(&mut s, ServerMessage::TtyAllocFail { session_id: 7 });
        send(
            &mut s,
            ServerMessage::ExitMessage {
                session_id: 7,
                exit_value: 255,
            },
        );
    });
    let cmd = Cmd::new(["printf", "%s", "a b"]).stdin(Stdin::Bytes(input));
    let out = run_session(&fake.socket, "u@h", &cmd, &job()).unwrap();
    assert_eq!(out.status, ExitStatus::Code(255));
    assert_eq!(out.stdout, b"out");
    assert_eq!(out.stderr, b"err");
    fake.join();
}

#[test]
fn deadline_closes_the_session_and_every_descriptor() {
    // Counting /proc/self/fd is unreliable while other tests run in parallel; the far ends
    // tell exactly instead: the stdin pipe reads end of file and the output pipes fail
    // with EPIPE only once every copy of our ends is closed.
    let fake = Fake::start(|mut s| {
        send(&mut s, hello());
        let (req, [stdin, stdout, stderr]) = accept_session(&mut s);
        send(
            &mut s,
            ServerMessage::SessionOpened {
                request_id: req.request_id,
                session_id: 1,
            },
        );
        // Never sends an exit: the client must give up at its deadline and hang up.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let mut input = Vec::new();
        std::fs::File::from(stdin).read_to_end(&mut input).unwrap();
        assert_eq!(input, b"some input");
        // The client may close its pipe ends just after the control socket: allow it a
        // moment, then every write must fail.
        for end in [stdout, stderr] {
            let mut end = std::fs::File::from(end);
            let until = Instant::now() + Duration::from_secs(2);
            loop {
                match end.write_all(b"x") {
                    Err(e) => break assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
                    Ok(()) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Ok(()) => panic!("our read end of an output pipe is still open"),
                }
            }
        }
    });
    let job = SimpleJob::with_timeout(Duration::from_millis(300));
    let cmd = Cmd::new(["sleep", "30"]).stdin(Stdin::Bytes(b"some input".to_vec()));
    let start = Instant::now();
    let err = run_session(&fake.socket, "u@h", &cmd, &job).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(&err, Error::Timeout { command, timeout } if command == "u@h: sleep 30"
            && timeout == &Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    fake.join(); // returns only once the client closed the control connection
}

#[test]
fn cancellation_is_noticed_within_a_tick() {
    let fake = Fake::start(|mut s| {
        send(&mut s, hello());
        let _session = accept_session(&mut s);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let job = std::sync::Arc::new(job());
    let canceller = {
        let job = std::sync::Arc::clone(&job);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            job.cancel();
            Instant::now()
        })
    };
    let err = run_session(&fake.socket, "u@h", &Cmd::new(["sleep", "30"]), &*job).unwrap_err();
    let noticed = Instant::now().duration_since(canceller.join().unwrap());
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
    assert!(
        noticed < Duration::from_millis(500),
        "noticed after {noticed:?}"
    );
    fake.join();
}

#[test]
fn nothing_is_connected_for_dry_runs_empty_argv_or_spent_jobs() {
    let nowhere = Path::new("/nonexistent/conn-mux-test.sock");
    let cmd = Cmd::new(["rm", "-rf", "/"]).dry_run(true);
    assert_eq!(
        run_session(nowhere, "h", &cmd, &job()).unwrap(),
        Output::dry_run()
    );
    let empty = Cmd::new(Vec::<String>::new());
    assert!(matches!(
        run_session(nowhere, "h", &empty, &job()),
        Err(Error::EmptyCommand)
    ));
    let nul = Cmd::new(["echo", "a\0b"]);
    assert!(matches!(
        run_session(nowhere, "h", &nul, &job()),
        Err(Error::Unquotable { .. })
    ));
    let spent = SimpleJob::with_deadline(Some(Deadline::after(Duration::ZERO)));
    assert!(matches!(
        run_session(nowhere, "h", &Cmd::new(["true"]), &spent),
        Err(Error::Timeout { .. })
    ));
    let cancelled = job();
    cancelled.cancel();
    assert!(matches!(
        run_session(nowhere, "h", &Cmd::new(["true"]), &cancelled),
        Err(Error::Cancelled { .. })
    ));
    let err = run_session(nowhere, "h", &Cmd::new(["true"]), &job()).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    let huge = Cmd::new(["echo".to_string(), "x".repeat(MAX_PACKET)]);
    let err = run_session(nowhere, "h", &huge, &job()).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[test]
fn alive_check_returns_the_pid() {
    let fake = Fake::start(|mut s| {
        send(&mut s, hello());
        assert_eq!(
            read_frame(&mut s),
            Some(ClientMessage::Hello {
                version: MUX_VERSION
            })
        );
        let Some(ClientMessage::AliveCheck { request_id }) = read_frame(&mut s) else {
            panic!("expected an alive check");
        };
        send(
            &mut s,
            ServerMessage::Alive {
                request_id,
                pid: 4242,
            },
        );
    });
    assert_eq!(alive_check(&fake.socket, &job()).unwrap(), 4242);
    fake.join();
    let err = alive_check(Path::new("/nonexistent/x.sock"), &job()).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[test]
fn a_shell_line_goes_as_it_is_and_a_subsystem_sets_the_flag() {
    for (cmd, command, subsystem) in [
        (
            Cmd::shell("git-upload-pack '/srv/repo.git'"),
            &b"git-upload-pack '/srv/repo.git'"[..],
            false,
        ),
        (Cmd::subsystem("sftp").send_env(true), &b"sftp"[..], true),
    ] {
        let expected = command.to_vec();
        let path = format!("PATH={}", std::env::var("PATH").unwrap());
        let sends_env = cmd.sends_env();
        let fake = Fake::start(move |mut s| {
            send(&mut s, hello());
            let (req, _fds) = accept_session(&mut s);
            assert_eq!(req.command, expected);
            assert_eq!(req.subsystem, subsystem);
            // The environment only when asked for (the master then picks its SendEnv's).
            assert_eq!(req.env.contains(&path), sends_env, "{:?}", req.env);
            assert_eq!(req.env.is_empty(), !sends_env);
            assert!(!req.want_tty && !req.want_agent && !req.want_x11);
            send(
                &mut s,
                ServerMessage::SessionOpened {
                    request_id: req.request_id,
                    session_id: 3,
                },
            );
            send(
                &mut s,
                ServerMessage::ExitMessage {
                    session_id: 3,
                    exit_value: 4,
                },
            );
        });
        let out = run_session(&fake.socket, "u@h", &cmd, &job()).unwrap();
        assert_eq!(out.status, ExitStatus::Code(4));
        fake.join();
    }
}
