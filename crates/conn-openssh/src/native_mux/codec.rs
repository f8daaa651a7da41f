//! Encoding and decoding of the OpenSSH mux protocol (`PROTOCOL.mux` in openssh-portable):
//! only the messages a passenger client needs.
//!
//! On the wire every message is a *frame*: `uint32 length`, then `length` bytes of body; the
//! body starts with `uint32 type`. Integers are big-endian; a string is `uint32 length` then
//! that many bytes. Decoding never trusts a length field: a frame longer than
//! [`MAX_PACKET`] is refused before anything is buffered for it, and every string length is
//! checked against the bytes actually present, so a hostile or broken socket yields a
//! [`CodecError`], never a panic or an allocation larger than the input.

use std::fmt;

/// The mux protocol version both sides announce in `MUX_MSG_HELLO` (current OpenSSH: 4).
pub const MUX_VERSION: u32 = 4;

/// Largest frame body accepted, in bytes: the master's own limit (`CHANNEL_MUX_MAX_PACKET` in
/// `channels.c`, 256 KiB). It drops a client that sends more, so we refuse to send more too.
pub const MAX_PACKET: usize = 256 * 1024;

/// `escape char` value that disables the escape character.
pub const NO_ESCAPE_CHAR: u32 = 0xffff_ffff;

/// Message type numbers (`PROTOCOL.mux` §11).
pub mod types {
    /// Both directions: the first message on a control connection.
    pub const MUX_MSG_HELLO: u32 = 0x0000_0001;
    /// Client: open a passenger session.
    pub const MUX_C_NEW_SESSION: u32 = 0x1000_0002;
    /// Client: ask for the master's pid.
    pub const MUX_C_ALIVE_CHECK: u32 = 0x1000_0004;
    /// Client: ask the master to exit.
    #[cfg(any(test, fuzzing, feature = "native-mux"))]
    pub const MUX_C_TERMINATE: u32 = 0x1000_0005;
    /// Master: request done.
    pub const MUX_S_OK: u32 = 0x8000_0001;
    /// Master: request refused.
    pub const MUX_S_PERMISSION_DENIED: u32 = 0x8000_0002;
    /// Master: request failed.
    pub const MUX_S_FAILURE: u32 = 0x8000_0003;
    /// Master: the session's remote command exited.
    pub const MUX_S_EXIT_MESSAGE: u32 = 0x8000_0004;
    /// Master: reply to an alive check.
    pub const MUX_S_ALIVE: u32 = 0x8000_0005;
    /// Master: the session channel is open.
    pub const MUX_S_SESSION_OPENED: u32 = 0x8000_0006;
    /// Master: the remote side could not allocate a tty.
    pub const MUX_S_TTY_ALLOC_FAIL: u32 = 0x8000_0008;
}

use types::*;

/// Why bytes could not be decoded (or a message could not be encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The body ended before the named field.
    Truncated {
        /// The field that was cut off.
        field: &'static str,
    },
    /// A frame's length field exceeds [`MAX_PACKET`] (or a message to encode would).
    TooLarge {
        /// The announced or required length.
        len: usize,
    },
    /// A message type this codec does not know (for the direction being decoded).
    UnknownType(u32),
    /// A string field that must be text held a NUL byte (the master reads it as a C string).
    EmbeddedNul {
        /// The field concerned.
        field: &'static str,
    },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated { field } => write!(f, "mux message truncated at {field}"),
            CodecError::TooLarge { len } => {
                write!(
                    f,
                    "mux packet of {len} bytes exceeds the limit of {MAX_PACKET}"
                )
            }
            CodecError::UnknownType(t) => write!(f, "unknown mux message type {t:#010x}"),
            CodecError::EmbeddedNul { field } => write!(f, "mux field {field} contains a NUL byte"),
        }
    }
}

impl std::error::Error for CodecError {}

/// `MUX_C_NEW_SESSION`: a passenger session running `command`. The three file descriptors
/// (stdin, stdout, stderr) follow the frame separately, one `SCM_RIGHTS` message each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// Echoed in the reply.
    pub request_id: u32,
    /// Ask for a remote pty.
    pub want_tty: bool,
    /// Ask for X11 forwarding (honoured only if the master forwards X11 itself).
    pub want_x11: bool,
    /// Ask for agent forwarding (honoured only if the master forwards the agent itself).
    pub want_agent: bool,
    /// `command` names a subsystem rather than a command line.
    pub subsystem: bool,
    /// Escape character for a tty session, or [`NO_ESCAPE_CHAR`].
    pub escape_char: u32,
    /// `$TERM` for a tty session (ignored without one; empty is fine).
    pub term: String,
    /// The remote command line, parsed by the remote user's shell: bytes, so that a name that
    /// is not UTF-8 reaches the remote side unchanged.
    pub command: Vec<u8>,
    /// `NAME=value` strings; the master forwards only those its own `SendEnv` matches.
    pub env: Vec<String>,
}

impl NewSession {
    /// A plain command session: no tty, no forwarding, no escape character, no environment.
    pub fn command(request_id: u32, command: impl Into<Vec<u8>>) -> Self {
        NewSession {
            request_id,
            want_tty: false,
            want_x11: false,
            want_agent: false,
            subsystem: false,
            escape_char: NO_ESCAPE_CHAR,
            term: String::new(),
            command: command.into(),
            env: Vec::new(),
        }
    }
}

/// A message from client to master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// `MUX_MSG_HELLO`: the protocol version (no extensions are defined).
    Hello {
        /// [`MUX_VERSION`].
        version: u32,
    },
    /// `MUX_C_NEW_SESSION`.
    NewSession(NewSession),
    /// `MUX_C_ALIVE_CHECK`: answered by `MUX_S_ALIVE` with the master's pid.
    AliveCheck {
        /// Echoed in the reply.
        request_id: u32,
    },
    // Sent by the native back end's shutdown (`exit_masters_on_shutdown`); decoded only by the
    // fake master of the tests and the fuzz target.
    #[cfg(any(test, fuzzing, feature = "native-mux"))]
    /// `MUX_C_TERMINATE`: the master exits (answered by `MUX_S_OK`, often not even that).
    Terminate {
        /// Echoed in the reply.
        request_id: u32,
    },
}

/// A message from master to client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    /// `MUX_MSG_HELLO`, with any extension pairs (none are defined today; kept, not acted on).
    Hello {
        /// The master's protocol version.
        version: u32,
        /// `(name, value)` extension pairs.
        extensions: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// `MUX_S_OK`.
    Ok {
        /// The request answered.
        request_id: u32,
    },
    /// `MUX_S_PERMISSION_DENIED`.
    PermissionDenied {
        /// The request answered.
        request_id: u32,
        /// The master's reason (lossy UTF-8).
        reason: String,
    },
    /// `MUX_S_FAILURE`, e.g. "Session open refused by peer" when sshd refused the channel.
    Failure {
        /// The request answered.
        request_id: u32,
        /// The master's reason (lossy UTF-8).
        reason: String,
    },
    /// `MUX_S_EXIT_MESSAGE`: the remote command's exit status.
    ExitMessage {
        /// The session (from `MUX_S_SESSION_OPENED`).
        session_id: u32,
        /// The exit status.
        exit_value: u32,
    },
    /// `MUX_S_ALIVE`.
    Alive {
        /// The request answered.
        request_id: u32,
        /// The master's process id.
        pid: u32,
    },
    /// `MUX_S_SESSION_OPENED`: sshd accepted the session channel.
    SessionOpened {
        /// The request answered.
        request_id: u32,
        /// The session's id in later messages.
        session_id: u32,
    },
    /// `MUX_S_TTY_ALLOC_FAIL`.
    TtyAllocFail {
        /// The session concerned.
        session_id: u32,
    },
}

impl ServerMessage {
    /// The request id this message answers, if it is a reply to a request.
    pub fn request_id(&self) -> Option<u32> {
        match self {
            ServerMessage::Ok { request_id }
            | ServerMessage::PermissionDenied { request_id, .. }
            | ServerMessage::Failure { request_id, .. }
            | ServerMessage::Alive { request_id, .. }
            | ServerMessage::SessionOpened { request_id, .. } => Some(*request_id),
            ServerMessage::Hello { .. }
            | ServerMessage::ExitMessage { .. }
            | ServerMessage::TtyAllocFail { .. } => None,
        }
    }

    /// Whether this is a reply to `request_id` (false for messages that answer no request).
    pub fn answers(&self, request_id: u32) -> bool {
        self.request_id() == Some(request_id)
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a frame: a length placeholder, then the type.
    fn frame(msg_type: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&msg_type.to_be_bytes());
        Writer { buf }
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn bool(&mut self, v: bool) -> &mut Self {
        // mux.c reads and writes these flags as uint32, whatever PROTOCOL.mux calls them.
        self.u32(u32::from(v))
    }

    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        // Lengths beyond u32 are caught by the MAX_PACKET check in finish(); saturate here so
        // that the cast never wraps silently.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
        self
    }

    /// A string the master reads with `sshbuf_get_cstring`, which rejects embedded NULs.
    fn cstring(&mut self, v: &str, field: &'static str) -> Result<&mut Self, CodecError> {
        self.cbytes(v.as_bytes(), field)
    }

    /// A string the master will read as a C string: no NUL inside.
    fn cbytes(&mut self, v: &[u8], field: &'static str) -> Result<&mut Self, CodecError> {
        if v.contains(&0) {
            return Err(CodecError::EmbeddedNul { field });
        }
        Ok(self.bytes(v))
    }

    /// Fills in the length and checks the limit.
    fn finish(mut self) -> Result<Vec<u8>, CodecError> {
        let body = self.buf.len() - 4;
        if body > MAX_PACKET {
            return Err(CodecError::TooLarge { len: body });
        }
        self.buf[..4].copy_from_slice(&(body as u32).to_be_bytes());
        Ok(self.buf)
    }
}

impl ClientMessage {
    /// The message as one frame (length prefix included).
    ///
    /// Errors: [`CodecError::TooLarge`] for a body over [`MAX_PACKET`] (the master would drop
    /// the connection), [`CodecError::EmbeddedNul`] for a NUL in a text field.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        match self {
            ClientMessage::Hello { version } => {
                let mut w = Writer::frame(MUX_MSG_HELLO);
                w.u32(*version);
                w.finish()
            }
            ClientMessage::NewSession(s) => {
                let mut w = Writer::frame(MUX_C_NEW_SESSION);
                w.u32(s.request_id)
                    .bytes(b"") // reserved
                    .bool(s.want_tty)
                    .bool(s.want_x11)
                    .bool(s.want_agent)
                    .bool(s.subsystem)
                    .u32(s.escape_char);
                w.cstring(&s.term, "terminal type")?;
                w.cbytes(&s.command, "command")?;
                for e in &s.env {
                    w.cstring(e, "environment string")?;
                }
                w.finish()
            }
            ClientMessage::AliveCheck { request_id } => {
                let mut w = Writer::frame(MUX_C_ALIVE_CHECK);
                w.u32(*request_id);
                w.finish()
            }
            #[cfg(any(test, fuzzing, feature = "native-mux"))]
            ClientMessage::Terminate { request_id } => {
                let mut w = Writer::frame(MUX_C_TERMINATE);
                w.u32(*request_id);
                w.finish()
            }
        }
    }
}

impl ServerMessage {
    #[cfg(any(test, fuzzing))] // the master's side: the fake master of the tests, the fuzz target
    /// The message as one frame (length prefix included): what a master sends. Used by tests
    /// and by fake masters; a client never sends these.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let w = match self {
            ServerMessage::Hello {
                version,
                extensions,
            } => {
                let mut w = Writer::frame(MUX_MSG_HELLO);
                w.u32(*version);
                for (name, value) in extensions {
                    w.bytes(name).bytes(value);
                }
                w
            }
            ServerMessage::Ok { request_id } => {
                let mut w = Writer::frame(MUX_S_OK);
                w.u32(*request_id);
                w
            }
            ServerMessage::PermissionDenied { request_id, reason } => {
                let mut w = Writer::frame(MUX_S_PERMISSION_DENIED);
                w.u32(*request_id).bytes(reason.as_bytes());
                w
            }
            ServerMessage::Failure { request_id, reason } => {
                let mut w = Writer::frame(MUX_S_FAILURE);
                w.u32(*request_id).bytes(reason.as_bytes());
                w
            }
            ServerMessage::ExitMessage {
                session_id,
                exit_value,
            } => {
                let mut w = Writer::frame(MUX_S_EXIT_MESSAGE);
                w.u32(*session_id).u32(*exit_value);
                w
            }
            ServerMessage::Alive { request_id, pid } => {
                let mut w = Writer::frame(MUX_S_ALIVE);
                w.u32(*request_id).u32(*pid);
                w
            }
            ServerMessage::SessionOpened {
                request_id,
                session_id,
            } => {
                let mut w = Writer::frame(MUX_S_SESSION_OPENED);
                w.u32(*request_id).u32(*session_id);
                w
            }
            ServerMessage::TtyAllocFail { session_id } => {
                let mut w = Writer::frame(MUX_S_TTY_ALLOC_FAIL);
                w.u32(*session_id);
                w
            }
        };
        w.finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Splits the first complete frame off `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((body, consumed)))` for a complete
/// frame (`body` without the length prefix, `consumed` = prefix + body), and an error for a
/// length over [`MAX_PACKET`] or too short to hold a type: such a stream cannot be resynchronised.
/// A caller that buffers until `Some` therefore never holds more than
/// `4 + MAX_PACKET` bytes plus one read.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, CodecError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if len > MAX_PACKET {
        return Err(CodecError::TooLarge { len });
    }
    if len < 4 {
        return Err(CodecError::Truncated {
            field: "message type",
        });
    }
    match buf.get(4..4 + len) {
        Some(body) => Ok(Some((body, 4 + len))),
        None => Ok(None),
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        let Some((head, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(CodecError::Truncated { field });
        };
        self.rest = rest;
        Ok(u32::from_be_bytes(*head))
    }

    #[cfg(any(test, fuzzing))] // the master's side: the fake master of the tests, the fuzz target
    fn bool(&mut self, field: &'static str) -> Result<bool, CodecError> {
        Ok(self.u32(field)? != 0)
    }

    /// A length-prefixed string, borrowed: the length is checked against the bytes present
    /// before anything is sliced, so no allocation follows a lying length.
    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], CodecError> {
        let len = self.u32(field)? as usize;
        if len > self.rest.len() {
            return Err(CodecError::Truncated { field });
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    fn text(&mut self, field: &'static str) -> Result<String, CodecError> {
        Ok(String::from_utf8_lossy(self.bytes(field)?).into_owned())
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

impl ServerMessage {
    /// Decodes one frame body (as returned by [`split_frame`]).
    ///
    /// Bytes after the last field are ignored, as OpenSSH's own client does, so that a later
    /// master may append fields; the hello's trailing bytes are its extension pairs.
    pub fn decode(body: &[u8]) -> Result<ServerMessage, CodecError> {
        let mut r = Reader { rest: body };
        let msg_type = r.u32("message type")?;
        let msg = match msg_type {
            MUX_MSG_HELLO => {
                let version = r.u32("version")?;
                let mut extensions = Vec::new();
                while !r.is_empty() {
                    let name = r.bytes("extension name")?.to_vec();
                    let value = r.bytes("extension value")?.to_vec();
                    extensions.push((name, value));
                }
                ServerMessage::Hello {
                    version,
                    extensions,
                }
            }
            MUX_S_OK => ServerMessage::Ok {
                request_id: r.u32("request id")?,
            },
            MUX_S_PERMISSION_DENIED => ServerMessage::PermissionDenied {
                request_id: r.u32("request id")?,
                reason: r.text("reason")?,
            },
            MUX_S_FAILURE => ServerMessage::Failure {
                request_id: r.u32("request id")?,
                reason: r.text("reason")?,
            },
            MUX_S_EXIT_MESSAGE => ServerMessage::ExitMessage {
                session_id: r.u32("session id")?,
                exit_value: r.u32("exit value")?,
            },
            MUX_S_ALIVE => ServerMessage::Alive {
                request_id: r.u32("request id")?,
                pid: r.u32("pid")?,
            },
            MUX_S_SESSION_OPENED => ServerMessage::SessionOpened {
                request_id: r.u32("request id")?,
                session_id: r.u32("session id")?,
            },
            MUX_S_TTY_ALLOC_FAIL => ServerMessage::TtyAllocFail {
                session_id: r.u32("session id")?,
            },
            other => return Err(CodecError::UnknownType(other)),
        };
        Ok(msg)
    }
}

impl ClientMessage {
    #[cfg(any(test, fuzzing))] // the master's side: the fake master of the tests, the fuzz target
    /// Decodes one frame body sent by a client: what a master (or a fake one in tests) reads.
    pub fn decode(body: &[u8]) -> Result<ClientMessage, CodecError> {
        let mut r = Reader { rest: body };
        let msg_type = r.u32("message type")?;
        let msg = match msg_type {
            MUX_MSG_HELLO => ClientMessage::Hello {
                version: r.u32("version")?,
            },
            MUX_C_NEW_SESSION => {
                let request_id = r.u32("request id")?;
                r.bytes("reserved")?;
                let want_tty = r.bool("want tty flag")?;
                let want_x11 = r.bool("want X11 flag")?;
                let want_agent = r.bool("want agent flag")?;
                let subsystem = r.bool("subsystem flag")?;
                let escape_char = r.u32("escape char")?;
                let term = r.text("terminal type")?;
                let command = r.bytes("command")?.to_vec();
                let mut env = Vec::new();
                while !r.is_empty() {
                    env.push(r.text("environment string")?);
                }
                ClientMessage::NewSession(NewSession {
                    request_id,
                    want_tty,
                    want_x11,
                    want_agent,
                    subsystem,
                    escape_char,
                    term,
                    command,
                    env,
                })
            }
            MUX_C_ALIVE_CHECK => ClientMessage::AliveCheck {
                request_id: r.u32("request id")?,
            },
            #[cfg(any(test, fuzzing))]
            MUX_C_TERMINATE => ClientMessage::Terminate {
                request_id: r.u32("request id")?,
            },
            other => return Err(CodecError::UnknownType(other)),
        };
        Ok(msg)
    }
}

#[cfg(any(test, fuzzing))] // the master's side: the fake master of the tests, the fuzz target
/// Decodes every complete server frame at the start of `bytes`: the messages, and how many
/// bytes they used (the rest is an incomplete frame). Stops at the first error. This is the
/// entry point of the fuzz target: it must never panic, whatever `bytes` holds.
pub fn decode_server_stream(bytes: &[u8]) -> Result<(Vec<ServerMessage>, usize), CodecError> {
    let mut messages = Vec::new();
    let mut used = 0;
    while let Some((body, consumed)) = split_frame(&bytes[used..])? {
        messages.push(ServerMessage::decode(body)?);
        used += consumed;
    }
    Ok((messages, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(msg: &ServerMessage) -> ServerMessage {
        let frame = msg.encode().unwrap();
        let (body, used) = split_frame(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        ServerMessage::decode(body).unwrap()
    }

    #[test]
    fn hello_matches_openssh_bytes() {
        // uint32 len = 8, uint32 MUX_MSG_HELLO, uint32 4: what mux.c sends.
        let frame = ClientMessage::Hello { version: 4 }.encode().unwrap();
        assert_eq!(frame, [0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 4]);
        let (body, _) = split_frame(&frame).unwrap().unwrap();
        assert_eq!(
            ServerMessage::decode(body).unwrap(),
            ServerMessage::Hello {
                version: 4,
                extensions: vec![]
            }
        );
    }

    #[test]
    fn new_session_layout() {
        let frame = ClientMessage::NewSession(NewSession::command(7, "echo hi"))
            .encode()
            .unwrap();
        let mut expected = Vec::new();
        let body: Vec<u8> = [
            &MUX_C_NEW_SESSION.to_be_bytes()[..],
            &7u32.to_be_bytes(),
            &0u32.to_be_bytes(), // reserved: empty string
            &0u32.to_be_bytes(), // tty
            &0u32.to_be_bytes(), // x11
            &0u32.to_be_bytes(), // agent
            &0u32.to_be_bytes(), // subsystem
            &0xffff_ffffu32.to_be_bytes(),
            &0u32.to_be_bytes(), // term: empty
            &7u32.to_be_bytes(),
            b"echo hi",
        ]
        .concat();
        expected.extend_from_slice(&(body.len() as u32).to_be_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(frame, expected);
        let (body, _) = split_frame(&frame).unwrap().unwrap();
        assert_eq!(
            ClientMessage::decode(body).unwrap(),
            ClientMessage::NewSession(NewSession::command(7, "echo hi"))
        );
    }

    #[test]
    fn every_server_message_round_trips() {
        let all = [
            ServerMessage::Hello {
                version: 4,
                extensions: vec![(b"x".to_vec(), b"y".to_vec())],
            },
            ServerMessage::Ok { request_id: 1 },
            ServerMessage::PermissionDenied {
                request_id: 2,
                reason: "Permission denied".into(),
            },
            ServerMessage::Failure {
                request_id: 3,
                reason: "Session open refused by peer".into(),
            },
            ServerMessage::ExitMessage {
                session_id: 4,
                exit_value: 255,
            },
            ServerMessage::Alive {
                request_id: 5,
                pid: 4242,
            },
            ServerMessage::SessionOpened {
                request_id: 6,
                session_id: 9,
            },
            ServerMessage::TtyAllocFail { session_id: 9 },
        ];
        for msg in &all {
            assert_eq!(&round_trip(msg), msg);
        }
        let mut stream = Vec::new();
        for msg in &all {
            stream.extend(msg.encode().unwrap());
        }
        stream.extend_from_slice(&[0, 0]); // half a length prefix
        let (decoded, used) = decode_server_stream(&stream).unwrap();
        assert_eq!(decoded, all);
        assert_eq!(used, stream.len() - 2);
    }

    #[test]
    fn request_id_matching() {
        let opened = ServerMessage::SessionOpened {
            request_id: 6,
            session_id: 1,
        };
        assert!(opened.answers(6));
        assert!(!opened.answers(7));
        let exit = ServerMessage::ExitMessage {
            session_id: 6,
            exit_value: 0,
        };
        assert_eq!(exit.request_id(), None);
        assert!(!exit.answers(6));
    }

    #[test]
    fn truncated_input_is_incomplete_or_an_error() {
        let frame = ServerMessage::Alive {
            request_id: 1,
            pid: 2,
        }
        .encode()
        .unwrap();
        for cut in 0..frame.len() {
            assert_eq!(split_frame(&frame[..cut]), Ok(None), "cut at {cut}");
        }
        // A complete frame whose body lacks the pid.
        let mut short = frame[..frame.len() - 4].to_vec();
        short[..4].copy_from_slice(&8u32.to_be_bytes());
        let (body, _) = split_frame(&short).unwrap().unwrap();
        assert_eq!(
            ServerMessage::decode(body),
            Err(CodecError::Truncated { field: "pid" })
        );
        // A string whose length runs past the body.
        let lying = [
            &MUX_S_FAILURE.to_be_bytes()[..],
            &1u32.to_be_bytes(),
            &u32::MAX.to_be_bytes(),
            b"abc",
        ]
        .concat();
        assert_eq!(
            ServerMessage::decode(&lying),
            Err(CodecError::Truncated { field: "reason" })
        );
    }

    #[test]
    fn oversized_and_undersized_lengths_are_refused() {
        let mut frame = (MAX_PACKET as u32 + 1).to_be_bytes().to_vec();
        frame.extend_from_slice(&[0; 16]);
        assert_eq!(
            split_frame(&frame),
            Err(CodecError::TooLarge {
                len: MAX_PACKET + 1
            })
        );
        assert_eq!(
            split_frame(&u32::MAX.to_be_bytes()),
            Err(CodecError::TooLarge {
                len: u32::MAX as usize
            })
        );
        assert!(matches!(
            split_frame(&[0, 0, 0, 2, 0, 0]),
            Err(CodecError::Truncated { .. })
        ));
        // Exactly at the limit is accepted (once complete).
        let mut at_limit = (MAX_PACKET as u32).to_be_bytes().to_vec();
        assert_eq!(split_frame(&at_limit), Ok(None));
        at_limit.resize(4 + MAX_PACKET, 0);
        assert!(split_frame(&at_limit).unwrap().is_some());
    }

    #[test]
    fn oversized_command_is_not_encoded() {
        let msg = ClientMessage::NewSession(NewSession::command(1, "x".repeat(MAX_PACKET)));
        assert!(matches!(msg.encode(), Err(CodecError::TooLarge { .. })));
        let msg = ClientMessage::NewSession(NewSession::command(1, "a\0b"));
        assert_eq!(
            msg.encode(),
            Err(CodecError::EmbeddedNul { field: "command" })
        );
    }

    #[test]
    fn unknown_type_is_an_error() {
        let body = [0x8000_0007u32.to_be_bytes(), 1u32.to_be_bytes()].concat();
        assert_eq!(
            ServerMessage::decode(&body),
            Err(CodecError::UnknownType(0x8000_0007))
        );
        assert_eq!(
            ClientMessage::decode(&MUX_S_OK.to_be_bytes()),
            Err(CodecError::UnknownType(MUX_S_OK))
        );
        assert!(
            CodecError::UnknownType(0x8000_0007)
                .to_string()
                .contains("0x80000007")
        );
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let body = [
            MUX_S_EXIT_MESSAGE.to_be_bytes(),
            3u32.to_be_bytes(),
            0u32.to_be_bytes(),
            [9; 4],
        ]
        .concat();
        assert_eq!(
            ServerMessage::decode(&body),
            Ok(ServerMessage::ExitMessage {
                session_id: 3,
                exit_value: 0
            })
        );
    }

    fn server_message() -> impl Strategy<Value = ServerMessage> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..16);
        prop_oneof![
            (
                any::<u32>(),
                proptest::collection::vec((bytes(), bytes()), 0..3)
            )
                .prop_map(|(version, extensions)| ServerMessage::Hello {
                    version,
                    extensions
                }),
            any::<u32>().prop_map(|request_id| ServerMessage::Ok { request_id }),
            (any::<u32>(), ".*").prop_map(|(request_id, reason)| {
                ServerMessage::PermissionDenied { request_id, reason }
            }),
            (any::<u32>(), ".*")
                .prop_map(|(request_id, reason)| ServerMessage::Failure { request_id, reason }),
            (any::<u32>(), any::<u32>()).prop_map(|(session_id, exit_value)| {
                ServerMessage::ExitMessage {
                    session_id,
                    exit_value,
                }
            }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(request_id, pid)| ServerMessage::Alive { request_id, pid }),
            (any::<u32>(), any::<u32>()).prop_map(|(request_id, session_id)| {
                ServerMessage::SessionOpened {
                    request_id,
                    session_id,
                }
            }),
            any::<u32>().prop_map(|session_id| ServerMessage::TtyAllocFail { session_id }),
        ]
    }

    fn client_message() -> impl Strategy<Value = ClientMessage> {
        let text = || "[^\0]{0,40}";
        prop_oneof![
            any::<u32>().prop_map(|version| ClientMessage::Hello { version }),
            (
                any::<u32>(),
                any::<[bool; 4]>(),
                any::<u32>(),
                text(),
                text(),
                proptest::collection::vec(text(), 0..3)
            )
                .prop_map(|(request_id, flags, escape_char, term, command, env)| {
                    ClientMessage::NewSession(NewSession {
                        request_id,
                        want_tty: flags[0],
                        want_x11: flags[1],
                        want_agent: flags[2],
                        subsystem: flags[3],
                        escape_char,
                        term,
                        command: command.into_bytes(),
                        env,
                    })
                }),
            any::<u32>().prop_map(|request_id| ClientMessage::AliveCheck { request_id }),
            any::<u32>().prop_map(|request_id| ClientMessage::Terminate { request_id }),
        ]
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_server_stream(&bytes);
            let _ = ServerMessage::decode(&bytes);
            let _ = ClientMessage::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_plausible_frames(
            msg_type in prop_oneof![Just(MUX_MSG_HELLO), 0x8000_0000u32..0x8000_0010, any::<u32>()],
            rest in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let body = [&msg_type.to_be_bytes()[..], &rest].concat();
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            let _ = decode_server_stream(&frame);
        }

        #[test]
        fn server_round_trip(msg in server_message()) {
            prop_assert_eq!(round_trip(&msg), msg);
        }

        #[test]
        fn client_round_trip(msg in client_message()) {
            let frame = msg.encode().unwrap();
            let (body, used) = split_frame(&frame).unwrap().unwrap();
            prop_assert_eq!(used, frame.len());
            prop_assert_eq!(ClientMessage::decode(body).unwrap(), msg);
        }
    }
}
