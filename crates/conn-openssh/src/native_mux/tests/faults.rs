//! A master that refuses, breaks the protocol, resets or vanishes at each step of a session:
//! every way ends in the right error and the right `Started`.

use super::*;

#[test]
fn refusal_by_peer_is_retryable_session_refused() {
    let fake = Fake::start(|mut s| {
        send(&mut s, hello());
        let (req, _fds) = accept_session(&mut s);
        send(
            &mut s,
            ServerMessage::Failure {
                request_id: req.request_id,
                reason: "Session open refused by peer".into(),
            },
        );
    });
    let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
    assert!(matches!(err, Error::SessionRefused { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("Session open refused by peer"),
        "{err}"
    );
    fake.join();
}

#[test]
fn other_failures_are_transport_errors() {
    let fake = Fake::start(|mut s| {
        send(&mut s, hello());
        let (req, _fds) = accept_session(&mut s);
        send(
            &mut s,
            ServerMessage::PermissionDenied {
                request_id: req.request_id,
                reason: "Permission denied".into(),
            },
        );
    });
    let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("Permission denied"), "{err}");
    fake.join();
}

#[test]
fn a_master_gone_after_the_whole_request_but_before_confirming_never_started_it() {
    // A master flushes the confirmation to its mux client before the exec request leaves for
    // sshd: hanging up without confirming, it sent no exec request.
    let fake = Fake::start(|mut s| {
        send(&mut s, hello());
        let _session = accept_session(&mut s);
        // Hangs up without confirming, having read everything (an end of file, no reset).
    });
    let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
    fake.join();
    assert!(
        matches!(
            err,
            Error::Transport {
                started: Started::No,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable(), "{err}");
}

#[test]
fn master_gone_before_exit_status_is_a_transport_error_with_stderr() {
    let fake = Fake::start(|mut s| {
        send(&mut s, hello());
        let (req, [_i, _o, stderr]) = accept_session(&mut s);
        send(
            &mut s,
            ServerMessage::SessionOpened {
                request_id: req.request_id,
                session_id: 1,
            },
        );
        std::fs::File::from(stderr).write_all(b"partial\n").unwrap();
        // Dropping the stream and the descriptors: the master died.
    });
    let err = run_session_on_a_dying_master(&fake.socket, &Cmd::new(["true"])).unwrap_err();
    fake.join();
    match &err {
        Error::Transport {
            endpoint,
            command,
            started,
            reason,
            stderr,
            ..
        } => {
            assert_eq!(endpoint, "u@h");
            assert_eq!(command, "true");
            assert_eq!(*started, Started::Unknown);
            assert!(String::from_utf8_lossy(stderr).contains("partial"), "{err}");
            assert!(
                reason.contains("died before the command's exit status"),
                "{reason}"
            );
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert!(
        !err.is_retryable(),
        "the session had opened: the command may have run"
    );
}

#[test]
fn an_exit_status_from_a_master_that_then_died_is_no_success() {
    // The master forwards the exit status as soon as sshd sends it, maybe before the last of
    // the output: if it dies then, the status alone must not pass for a whole result.
    let fake = Fake::start(|mut s| {
        send(&mut s, hello());
        let (req, [_i, stdout, _e]) = accept_session(&mut s);
        send(
            &mut s,
            ServerMessage::SessionOpened {
                request_id: req.request_id,
                session_id: 1,
            },
        );
        std::fs::File::from(stdout)
            .write_all(b"the first half\n")
            .unwrap();
        send(
            &mut s,
            ServerMessage::ExitMessage {
                session_id: 1,
                exit_value: 0,
            },
        );
    });
    let err = run_session_on_a_dying_master(&fake.socket, &Cmd::new(["cat", "big"])).unwrap_err();
    fake.join();
    assert_eq!(err.started(), Started::Yes, "{err}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("died before the output was complete"),
        "{err}"
    );
    match err {
        Error::Transport { stdout, .. } => assert_eq!(stdout, b"the first half\n"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reset_before_the_confirmation_never_started_the_command() {
    // A master that closes with our request unread resets the connection (Linux): it never
    // had the whole request, so the command is safe to run again.
    let fake = Fake::start(|mut s| {
        send(&mut s, hello());
        // Goes without reading the request: the unread bytes make the close a reset.
    });
    let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
    fake.join();
    assert_eq!(err.started(), Started::No, "{err}");
    assert!(err.is_retryable(), "{err}");
}

fn protocol_error_for(reply: impl FnOnce(&mut UnixStream, u32) + Send + 'static) -> Error {
    let fake = Fake::start(move |mut s| {
        send(&mut s, hello());
        let (req, _fds) = accept_session(&mut s);
        reply(&mut s, req.request_id);
        // Keep the connection open until the client gives up on it.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
    fake.join();
    err
}

#[test]
fn protocol_violations_are_io_errors_not_panics() {
    let out_of_sequence = protocol_error_for(|s, rid| {
        send(
            s,
            ServerMessage::SessionOpened {
                request_id: rid.wrapping_add(1),
                session_id: 1,
            },
        )
    });
    assert!(
        out_of_sequence.to_string().contains("out-of-sequence"),
        "{out_of_sequence}"
    );
    let oversized = protocol_error_for(|s, _| {
        s.write_all(&(MAX_PACKET as u32 + 1).to_be_bytes()).unwrap();
    });
    assert!(oversized.to_string().contains("exceeds"), "{oversized}");
    let wrong_session = protocol_error_for(|s, rid| {
        send(
            s,
            ServerMessage::SessionOpened {
                request_id: rid,
                session_id: 1,
            },
        );
        send(
            s,
            ServerMessage::ExitMessage {
                session_id: 2,
                exit_value: 0,
            },
        );
    });
    assert!(
        wrong_session.to_string().contains("unexpected"),
        "{wrong_session}"
    );
    let unknown = protocol_error_for(|s, _| {
        s.write_all(&[0, 0, 0, 8, 0x80, 0, 0, 0x7f, 0, 0, 0, 0])
            .unwrap();
    });
    assert!(
        unknown.to_string().contains("unknown mux message type"),
        "{unknown}"
    );
    for err in [out_of_sequence, oversized, wrong_session, unknown] {
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(!err.is_retryable(), "the command may have run: {err}");
    }
}

#[test]
fn wrong_protocol_version_is_refused() {
    let fake = Fake::start(|mut s| {
        send(
            &mut s,
            ServerMessage::Hello {
                version: 3,
                extensions: vec![],
            },
        );
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
    assert!(err.to_string().contains("version 3"), "{err}");
    fake.join();
}
