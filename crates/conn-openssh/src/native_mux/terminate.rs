//! `MUX_C_TERMINATE` in-process: what `ssh -O exit` asks, without spawning it. The native back
//! end's shutdown sends it when masters are to be ended (`exit_masters_on_shutdown`), which
//! saves an ssh process per master: on a fleet, one per host at the end of a run.

use std::io;
use std::path::Path;

use conn_core::{Error, Job, Result};

use super::codec::{ClientMessage, MUX_VERSION, ServerMessage};
use super::control::{Bound, Control, Fail, next_request_id};

/// Asks the master behind `socket` to exit, within `job`'s deadline and cancellation. `Ok` once
/// it said yes (`MUX_S_OK`), or hung up after the request: a master may exit before it answers,
/// which OpenSSH's own client takes as success too.
///
/// Errors: [`Error::Timeout`] / [`Error::Cancelled`] when the job ends first; [`Error::Connect`]
/// when nothing listens or the master refuses (`MUX_S_PERMISSION_DENIED`, `MUX_S_FAILURE`);
/// [`Error::Io`] for a protocol violation or a local failure.
pub(crate) fn terminate(socket: &Path, job: &dyn Job) -> Result<()> {
    let bound = Bound { job };
    let request_id = next_request_id();
    let mut request = ClientMessage::Hello {
        version: MUX_VERSION,
    }
    .encode()
    .expect("a hello always encodes");
    request.extend(
        ClientMessage::Terminate { request_id }
            .encode()
            .expect("a terminate request always encodes"),
    );
    let what = format!("asking the ssh master {} to exit", socket.display());
    let connect_error = |message: String| Error::Connect {
        endpoint: socket.display().to_string(),
        message,
    };
    let answer = Control::connect(socket, &bound).and_then(|mut control| {
        control.send_all(&request, &bound)?;
        match control.reply(request_id, &bound, "after the exit request") {
            Ok(ServerMessage::Ok { .. }) => Ok(()),
            Ok(other) => Err(Fail::Protocol(format!(
                "unexpected reply to an exit request: {other:?}"
            ))),
            Err(Fail::Closed(_) | Fail::Reset(_)) => Ok(()), // it went away: done
            Err(e) => Err(e),
        }
    });
    match answer {
        Ok(()) => Ok(()),
        Err(Fail::Timeout) => Err(Error::Timeout {
            command: what,
            timeout: job.deadline().map(|d| d.duration()).unwrap_or_default(),
        }),
        Err(Fail::Cancelled) => Err(Error::Cancelled { command: what }),
        Err(Fail::Connect(e)) => Err(connect_error(format!("no ssh master listens: {e}"))),
        Err(Fail::Closed(why) | Fail::Reset(why)) => Err(connect_error(why)),
        Err(Fail::Refused(why)) => Err(connect_error(format!("the master refused to exit: {why}"))),
        Err(Fail::Protocol(why)) => Err(Error::Io {
            context: what,
            source: io::Error::new(io::ErrorKind::InvalidData, why),
        }),
        Err(Fail::Local(step, source)) => Err(Error::Io {
            context: format!("{step} for {what}"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::time::Duration;

    use conn_core::SimpleJob;

    use super::*;

    fn read_frame(s: &mut UnixStream) -> Option<ClientMessage> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).ok()?;
        Some(ClientMessage::decode(&body).unwrap())
    }

    /// A fake master that reads the hello and the exit request, then answers with `reply`'s
    /// message, or hangs up without one; returns the error (if any) `terminate` gave.
    fn against(reply: fn(u32) -> Option<ServerMessage>) -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ctl");
        let listener = UnixListener::bind(&socket).unwrap();
        let master = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let hello = ServerMessage::Hello {
                version: MUX_VERSION,
                extensions: vec![],
            };
            s.write_all(&hello.encode().unwrap()).unwrap();
            assert_eq!(
                read_frame(&mut s),
                Some(ClientMessage::Hello {
                    version: MUX_VERSION
                })
            );
            let Some(ClientMessage::Terminate { request_id }) = read_frame(&mut s) else {
                panic!("expected an exit request");
            };
            if let Some(msg) = reply(request_id) {
                s.write_all(&msg.encode().unwrap()).unwrap();
            }
        });
        let result = terminate(&socket, &SimpleJob::with_timeout(Duration::from_secs(10)));
        master.join().unwrap();
        result
    }

    #[test]
    fn an_ok_or_a_hang_up_after_the_request_is_done() {
        against(|request_id| Some(ServerMessage::Ok { request_id })).unwrap();
        against(|_| None).unwrap();
    }

    #[test]
    fn a_refusal_or_nobody_listening_is_a_connect_error() {
        let err = against(|request_id| {
            Some(ServerMessage::PermissionDenied {
                request_id,
                reason: "confirmation declined".into(),
            })
        })
        .unwrap_err();
        assert!(
            matches!(&err, Error::Connect { message, .. } if message.contains("refused to exit")),
            "{err:?}"
        );
        let err = terminate(
            Path::new("/nonexistent/x.sock"),
            &SimpleJob::with_timeout(Duration::from_secs(10)),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    }
}
