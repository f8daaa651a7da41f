//! The exit request against a fake master: an answer, a hang-up, a refusal.

use super::*;
use crate::native_mux::terminate::terminate;

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
