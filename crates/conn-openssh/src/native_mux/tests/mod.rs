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

mod faults;
mod sessions;
#[cfg(feature = "native-mux")]
mod terminate;
