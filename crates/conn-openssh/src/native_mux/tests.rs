//! The client against a fake master on a Unix socket: the protocol paths sshd cannot be
//! made to take on demand (malformed replies, refusals, a vanished master).

use super::alive::alive_check;
use super::session::*;
use crate::master::MasterId;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use conn_core::{Cmd, Error, ExitStatus, Job, Result, SimpleJob, Started};

use super::codec::{ClientMessage, MUX_VERSION, NewSession, ServerMessage};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Instant;

use conn_core::{Deadline, Output, Stdin};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use crate::native_mux::codec::{self, MAX_PACKET};

/// A fake master: this process, listening on a socket of its own for as long as the `Fake`
/// lives (so that a session's end finds its "master" alive and listening).
struct Fake {
    _dir: tempfile::TempDir,
    _listener: UnixListener,
    socket: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    /// A listener whose first connection is handed to `script` on a thread.
    fn start(script: impl FnOnce(UnixStream) + Send + 'static) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ctl");
        let listener = UnixListener::bind(&socket).unwrap();
        let accepting = listener.try_clone().unwrap();
        let thread = std::thread::spawn(move || {
            let (stream, _) = accepting.accept().unwrap();
            script(stream);
        });
        Fake {
            _dir: dir,
            _listener: listener,
            socket,
            thread: Some(thread),
        }
    }

    fn join(mut self) {
        self.thread.take().unwrap().join().unwrap();
    }
}

fn read_frame(s: &mut UnixStream) -> Option<ClientMessage> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(ClientMessage::decode(&body).unwrap())
}

fn recv_fd(s: &UnixStream) -> OwnedFd {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        s,
        &mut [io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::empty(),
    )
    .unwrap();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            return fds.next().unwrap();
        }
    }
    panic!("no descriptor received");
}

fn send(s: &mut UnixStream, msg: ServerMessage) {
    s.write_all(&msg.encode().unwrap()).unwrap();
}

fn hello() -> ServerMessage {
    ServerMessage::Hello {
        version: MUX_VERSION,
        extensions: vec![],
    }
}

/// Reads the client's hello and session request and its three descriptors.
fn accept_session(s: &mut UnixStream) -> (NewSession, [OwnedFd; 3]) {
    assert_eq!(
        read_frame(s),
        Some(ClientMessage::Hello {
            version: MUX_VERSION
        })
    );
    let Some(ClientMessage::NewSession(req)) = read_frame(s) else {
        panic!("expected a session request");
    };
    let fds = [recv_fd(s), recv_fd(s), recv_fd(s)];
    (req, fds)
}

fn job() -> SimpleJob {
    SimpleJob::with_timeout(Duration::from_secs(10))
}

/// The fake master's identity: this very process.
fn this_process() -> Result<MasterId> {
    Ok(MasterId::of(std::process::id()).unwrap())
}

/// A master that died: a process that existed, killed and reaped.
fn dead_process() -> Result<MasterId> {
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = MasterId::of(child.id()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    Ok(id)
}

/// A whole command, as the pool runs it: spawn, then wait for the output (unchecked, so
/// that a status comes back as it is).
fn run_session(socket: &Path, endpoint: &str, cmd: &Cmd, job: &dyn Job) -> Result<Output> {
    spawn(
        socket,
        this_process,
        endpoint,
        &cmd.clone().check(false),
        job,
    )?
    .wait_with_output()
}

/// The same with a master that is dead by the time the session ends.
fn run_session_on_a_dying_master(socket: &Path, cmd: &Cmd) -> Result<Output> {
    spawn(
        socket,
        dead_process,
        "u@h",
        &cmd.clone().check(false),
        &job(),
    )?
    .wait_with_output()
}

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
