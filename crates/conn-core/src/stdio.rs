//! A command's standard streams: what the command gets ([`ChildFd`]), conn's own pipe ends
//! ([`StdioPlan`], moved by the pump), and the caller's handles ([`ChildStdin`],
//! [`ChildStdout`], [`ChildStderr`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::command::{Cmd, Stdin, Stream};
use crate::error::{Error, Result};
use crate::pump::{Dest, Input, Pump, Sink};
use crate::remote_group::RemoteGroup;

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(pub(crate) File);

        impl $name {
            /// The pipe end as a plain descriptor (e.g. to pass to another command).
            pub fn into_owned_fd(self) -> OwnedFd {
                self.0.into()
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        impl From<$name> for OwnedFd {
            fn from(h: $name) -> OwnedFd {
                h.0.into()
            }
        }
    };
}

handle!(
    /// The write end of a spawned command's stdin ([`Stdin::Piped`]). Dropping it is end of
    /// file for the command.
    ChildStdin
);
handle!(
    /// The read end of a spawned command's stdout ([`Stream::Piped`]).
    ChildStdout
);
handle!(
    /// The read end of a spawned command's stderr ([`Stream::Piped`]).
    ChildStderr
);

impl Write for ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for ChildStdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Read for ChildStderr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// What a command's descriptor 0, 1 or 2 is, as the back end hands it to the child process or
/// the ssh master.
#[derive(Debug)]
pub enum ChildFd {
    /// `/dev/null`.
    Null,
    /// The calling process's own descriptor of the same number.
    Inherit,
    /// This descriptor (a pipe end of conn's or the caller's, or a duplicate of a caller's).
    Fd(OwnedFd),
}

impl From<ChildFd> for std::process::Stdio {
    fn from(fd: ChildFd) -> Self {
        match fd {
            ChildFd::Null => std::process::Stdio::null(),
            ChildFd::Inherit => std::process::Stdio::inherit(),
            ChildFd::Fd(fd) => std::process::Stdio::from(fd),
        }
    }
}

/// How a back end wants the caller's stdio settings wired.
#[derive(Clone, Debug, Default)]
pub struct StdioOptions {
    /// Put [`Stream::Inherit`] behind a pipe that conn copies to its own stdout/stderr, so that
    /// whoever receives the descriptors (an ssh master, which keeps them until the remote side
    /// is done) never holds the caller's own. For ssh back ends.
    pub relay_inherit: bool,
    /// Always read stderr through a pipe of conn's, keeping its first bytes for
    /// [`Session::classify`](crate::transport::Session::classify), and copy it where the caller wanted it. For back ends whose
    /// client reports its own failures on stderr (ssh).
    pub watch_stderr: Option<usize>,
    /// The command reports its remote process group on stderr ([`Cmd::kill_remote`]): stderr
    /// then always goes through a pipe of conn's, whatever the caller set, which takes the
    /// report out on its way; the child learns the group from it.
    pub remote_group: Option<RemoteGroup>,
}

/// How much of stderr is kept for the transport when it is watched only to take the remote
/// group's report out.
const GROUP_WATCH_KEEP: usize = 4096;

/// The three descriptors for the command, and conn's ends of the pipes that go with them:
/// made from a [`Cmd`] by [`StdioPlan::new`], then handed to [`RemoteChild::new`](crate::RemoteChild::new).
#[derive(Debug)]
pub struct StdioPlan {
    /// Descriptors 0, 1 and 2 of the command.
    pub child: [ChildFd; 3],
    pub(crate) caller: (Option<ChildStdin>, Option<ChildStdout>, Option<ChildStderr>),
    pub(crate) pump: Pump,
    pub(crate) group: Option<RemoteGroup>,
}

/// A close-on-exec pipe: `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

fn dup(fd: &Arc<OwnedFd>) -> io::Result<OwnedFd> {
    fd.as_fd().try_clone_to_owned()
}

impl StdioPlan {
    /// Wires `cmd`'s stdin, stdout and stderr settings.
    pub fn new(cmd: &Cmd, options: StdioOptions) -> Result<Self> {
        Self::wire(cmd, options).map_err(|e| Error::Io {
            context: format!(
                "setting up the standard streams of {}",
                cmd.program().display()
            ),
            source: e,
        })
    }

    fn wire(cmd: &Cmd, options: StdioOptions) -> io::Result<Self> {
        let mut pump = Pump::default();
        let mut caller = (None, None, None);
        let stdin = match cmd.stdin_setting() {
            Stdin::Null => ChildFd::Null,
            Stdin::Bytes(b) if b.is_empty() => ChildFd::Null,
            Stdin::Bytes(b) => {
                let (r, w) = pipe()?;
                pump.input = Some(Input::new(w, b.clone())?);
                ChildFd::Fd(r)
            }
            Stdin::Inherit => ChildFd::Inherit,
            Stdin::Piped => {
                let (r, w) = pipe()?;
                caller.0 = Some(ChildStdin(File::from(w)));
                ChildFd::Fd(r)
            }
            Stdin::Fd(fd) => ChildFd::Fd(dup(fd)?),
            Stdin::Path(path) => ChildFd::Fd(
                File::open(path)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
                    })?
                    .into(),
            ),
        };
        let stdout = match cmd.stdout_setting() {
            Stream::Piped => {
                let (r, w) = pipe()?;
                caller.1 = Some(ChildStdout(File::from(r)));
                ChildFd::Fd(w)
            }
            Stream::Inherit if options.relay_inherit => {
                let (r, w) = pipe()?;
                pump.sinks[0] = Some(Sink::relay(r, Dest::Stdout, 0)?);
                ChildFd::Fd(w)
            }
            Stream::Inherit => ChildFd::Inherit,
            Stream::Null => ChildFd::Null,
            Stream::Fd(fd) => ChildFd::Fd(dup(fd)?),
        };
        let watch = options
            .watch_stderr
            .or(options.remote_group.is_some().then_some(GROUP_WATCH_KEEP));
        let stderr = match (cmd.stderr_setting(), watch) {
            (Stream::Piped, Some(keep)) => {
                // Watched on its way to the caller: the transport keeps the first bytes (ssh's
                // own diagnostics) whoever reads the rest.
                let (r, w) = pipe()?;
                let (caller_r, caller_w) = pipe()?;
                pump.sinks[2] = Some(Sink::relay(r, Dest::Fd(Arc::new(caller_w)), keep)?);
                caller.2 = Some(ChildStderr(File::from(caller_r)));
                ChildFd::Fd(w)
            }
            (Stream::Piped, None) => {
                let (r, w) = pipe()?;
                caller.2 = Some(ChildStderr(File::from(r)));
                ChildFd::Fd(w)
            }
            (Stream::Inherit, keep) if keep.is_some() || options.relay_inherit => {
                let (r, w) = pipe()?;
                pump.sinks[1] = Some(Sink::relay(r, Dest::Stderr, keep.unwrap_or(0))?);
                ChildFd::Fd(w)
            }
            (Stream::Inherit, _) => ChildFd::Inherit,
            (Stream::Null, Some(keep)) => {
                let (r, w) = pipe()?;
                pump.sinks[1] = Some(Sink::relay(r, Dest::Discard, keep)?);
                ChildFd::Fd(w)
            }
            (Stream::Null, None) => ChildFd::Null,
            (Stream::Fd(fd), Some(keep)) => {
                let (r, w) = pipe()?;
                pump.sinks[1] = Some(Sink::relay(r, Dest::Fd(Arc::clone(fd)), keep)?);
                ChildFd::Fd(w)
            }
            (Stream::Fd(fd), None) => ChildFd::Fd(dup(fd)?),
        };
        if let Some(group) = &options.remote_group {
            // Whichever sink carries stderr (a watched one, or a relay).
            for sink in pump.sinks[1..].iter_mut().flatten() {
                sink.strip(group.filter());
            }
        }
        pump.disable_self_relay();
        Ok(StdioPlan {
            child: [stdin, stdout, stderr],
            caller,
            pump,
            group: options.remote_group,
        })
    }

    /// Takes the command's three descriptors out, for the spawn (the rest of the plan goes to
    /// [`RemoteChild::new`](crate::RemoteChild::new)). Dropping them after handing them over is what lets conn's ends see
    /// end of file.
    pub fn take_child_fds(&mut self) -> [ChildFd; 3] {
        std::mem::replace(
            &mut self.child,
            [ChildFd::Null, ChildFd::Null, ChildFd::Null],
        )
    }
}
