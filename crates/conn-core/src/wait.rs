//! Waiting for a [`RemoteChild`]: the one poll loop behind every way of waiting, and where the
//! output the caller did not take goes (dropped, collected into [`Output`], or handed to an
//! [`OutputSink`] as it arrives).

use std::io;

use rustix::event::{PollFd, PollFlags};

use crate::child::{Ended, RemoteChild, Seen};
use crate::error::{Error, Result};
use crate::poll::poll_until;
use crate::pump::{Dest, Pump, Sink};
use crate::status::{ExitStatus, Output, Started};

/// How often a wait looks at a session that has no descriptor to poll for its end.
const TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// How much of an uncollected stderr a wait keeps for [`Session::classify`] and messages.
///
/// [`Session::classify`]: crate::transport::Session::classify
pub(crate) const STDERR_HEAD: usize = 64 * 1024;

/// How much of stdout a streaming wait keeps for [`Session::classify`] (whether anything came).
///
/// [`Session::classify`]: crate::transport::Session::classify
const STDOUT_HEAD: usize = 64;

/// How much stderr a streaming wait holds back while it may still be the transport's own
/// report of a command that never started.
const HOLD_MAX: usize = 64 * 1024;

/// Which of a command's output streams bytes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Where [`RemoteChild::wait_streaming`] (and
/// [`ConnectionPool::run_streaming`](crate::ConnectionPool::run_streaming)) hands a command's
/// output while it runs: for output of any size in bounded memory, lines printed as they come,
/// files written per host.
///
/// Called from the waiting thread, in the order the bytes were read from each stream; a slow
/// sink slows the command down as a slow reader of a pipe would, nothing more.
///
/// ```
/// use conn_core::{OutputSink, StreamKind};
/// #[derive(Default)]
/// struct Count(usize, usize);
/// impl OutputSink for Count {
///     fn output(&mut self, stream: StreamKind, bytes: &[u8]) {
///         match stream {
///             StreamKind::Stdout => self.0 += bytes.len(),
///             StreamKind::Stderr => self.1 += bytes.len(),
///         }
///     }
/// }
/// ```
pub trait OutputSink {
    /// The next `bytes` of `stream`.
    fn output(&mut self, stream: StreamKind, bytes: &[u8]);

    /// [`ConnectionPool::run_streaming`](crate::ConnectionPool::run_streaming) is about to try
    /// the command again: what the failed attempt handed over (nothing, unless the command
    /// may have run and is idempotent) is to be forgotten. The default does nothing.
    fn new_attempt(&mut self) {}
}

/// What a wait does with the output on the pipes the caller did not take.
pub(crate) enum Collect<'a> {
    /// Reads it and drops it (`wait`): the command is never cut off by a closed pipe.
    Discard,
    /// Collects it into [`Output`] (`wait_with_output`).
    Capture,
    /// Hands it to a sink as it arrives (`wait_streaming`).
    Stream(&'a mut dyn OutputSink),
}

/// The output of a streaming wait on its way to the sink. Stderr is held back while every
/// line of it so far is the transport's own ([`Session::transport_lines`]): an attempt that
/// never started then writes nothing to the sink, and its retry does not repeat ssh's complaint.
///
/// [`Session::transport_lines`]: crate::transport::Session::transport_lines
struct Streamer<'a> {
    sink: &'a mut dyn OutputSink,
    /// Which pump sink carries stderr (1, or 2 for a watched stderr).
    err: usize,
    transport_line: Option<fn(&[u8]) -> bool>,
    held: Vec<u8>,
    holding: bool,
    out_head: Vec<u8>,
    err_head: Vec<u8>,
}

impl Streamer<'_> {
    /// Moves what the pump has read to the sink.
    fn deliver(&mut self, pump: &mut Pump) {
        if let Some(out) = &mut pump.sinks[0]
            && !out.kept.is_empty()
        {
            let bytes = std::mem::take(&mut out.kept);
            let room = STDOUT_HEAD
                .saturating_sub(self.out_head.len())
                .min(bytes.len());
            self.out_head.extend_from_slice(&bytes[..room]);
            // Output came: the session started, whatever stderr says.
            self.release();
            self.sink.output(StreamKind::Stdout, &bytes);
        }
        if let Some(err) = &mut pump.sinks[self.err]
            && !err.kept.is_empty()
        {
            let bytes = std::mem::take(&mut err.kept);
            self.stderr(&bytes);
        }
    }

    fn stderr(&mut self, bytes: &[u8]) {
        let room = STDERR_HEAD
            .saturating_sub(self.err_head.len())
            .min(bytes.len());
        self.err_head.extend_from_slice(&bytes[..room]);
        if !self.holding {
            self.sink.output(StreamKind::Stderr, bytes);
            return;
        }
        self.held.extend_from_slice(bytes);
        let theirs = self.transport_line.is_none_or(|is_transport| {
            self.held
                .split_inclusive(|&b| b == b'\n')
                .filter(|l| l.ends_with(b"\n"))
                .any(|line| !is_transport(line))
        });
        if theirs || self.held.len() > HOLD_MAX {
            self.release();
        }
    }

    /// Stops holding stderr back, handing the sink what was held.
    fn release(&mut self) {
        if self.holding {
            self.holding = false;
            let held = std::mem::take(&mut self.held);
            if !held.is_empty() {
                self.sink.output(StreamKind::Stderr, &held);
            }
        }
    }
}

/// Every way of waiting for a [`RemoteChild`].
impl RemoteChild {
    /// Whether the command has ended; the status once it has (applying `check`).
    /// Once it has ended, the output the caller did not take is read and dropped as for
    /// [`RemoteChild::wait`].
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let known = match self.ended {
            Some(_) => None,
            None => match self.session.try_finish() {
                Ok(None) => return Ok(None),
                Ok(Some(status)) => Some(status),
                Err(e) => return Err(self.fail(e)),
            },
        };
        drop(self.stdin.take());
        self.finish(Collect::Discard, known).map(|o| Some(o.status))
    }

    /// Waits for the command to end (closing stdin first, as std does) and returns its status.
    /// Output on pipes the caller did not take is read and dropped (the command is never cut
    /// off by a closed pipe); use [`RemoteChild::wait_with_output`] to collect it.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        drop(self.stdin.take());
        self.finish(Collect::Discard, None).map(|o| o.status)
    }

    /// Waits for the command to end, collecting what it writes to the pipes the caller did not
    /// take ([`Stream::Piped`](crate::Stream::Piped)), and feeding
    /// [`Stdin::Bytes`](crate::Stdin::Bytes).
    pub fn wait_with_output(mut self) -> Result<Output> {
        drop(self.stdin.take());
        self.finish(Collect::Capture, None)
    }

    /// Waits for the command to end like [`RemoteChild::wait_with_output`], handing what it
    /// writes to the pipes the caller did not take to `sink` as it arrives instead of collecting
    /// it: output of any size in bounded memory. Stderr that may be the transport's own report
    /// of a command that never started (the ssh process back end's) is held back until that is
    /// known, and goes into the error instead of the sink. The returned `Output` has empty
    /// `stdout` and `stderr`.
    pub fn wait_streaming(mut self, sink: &mut dyn OutputSink) -> Result<Output> {
        drop(self.stdin.take());
        self.finish(Collect::Stream(sink), None)
    }

    /// The one wait behind `wait`, `try_wait`, `wait_with_output` and `wait_streaming`.
    pub(crate) fn finish(
        &mut self,
        collect: Collect<'_>,
        known: Option<ExitStatus>,
    ) -> Result<Output> {
        if let Some(replay) = self.replay() {
            return replay;
        }
        let mut pump = match self.pumping.take() {
            Some(pumping) => pumping.stop(),
            None => self.pump.take().unwrap_or_default(),
        };
        let capture = !matches!(collect, Collect::Discard);
        // A watched stderr that nobody took and nothing relayed yet: collect it where it is,
        // instead of relaying it into the caller's pipe only to read it back.
        let mut err_from_watch = false;
        if capture
            && self.stderr.is_some()
            && let Some(watch) = &mut pump.sinks[2]
            && watch.nothing_relayed()
        {
            watch.capture_all();
            self.stderr = None;
            err_from_watch = true;
        }
        let (mut captured_out, mut captured_err) = (false, false);
        if let Some(out) = self.stdout.take() {
            let fd = out.into_owned_fd();
            captured_out = capture;
            pump.sinks[0] = Some(self.io(if capture {
                Sink::capture(fd)
            } else {
                Sink::relay(fd, Dest::Discard, 0)
            })?);
        }
        if let Some(err) = self.stderr.take() {
            let fd = err.into_owned_fd();
            captured_err = capture;
            pump.sinks[1] = Some(self.io(if capture {
                Sink::capture(fd)
            } else {
                Sink::relay(fd, Dest::Discard, STDERR_HEAD)
            })?);
        }
        let mut streamer = match collect {
            Collect::Stream(sink) => Some(Streamer {
                sink,
                err: if err_from_watch { 2 } else { 1 },
                transport_line: self.session.transport_lines(),
                held: Vec::new(),
                holding: self.session.transport_lines().is_some(),
                out_head: Vec::new(),
                err_head: Vec::new(),
            }),
            _ => None,
        };
        let status = match self.wait_loop(&mut pump, known, streamer.as_mut()) {
            Ok(status) => status,
            Err(e) => {
                pump.drain_now();
                if let Some(streamer) = &mut streamer {
                    // What came before the failure is output like any other.
                    streamer.deliver(&mut pump);
                    streamer.release();
                }
                let stdout = pump.sinks[0].take().map(|s| s.kept);
                let stderr = pump.sinks[1]
                    .take()
                    .or(pump.sinks[2].take())
                    .map(|s| s.kept);
                return Err(self.fail(with_output(e, stdout, stderr)));
            }
        };
        self.session.release();
        let mut stdout = pump.sinks[0].take().map(|s| s.kept);
        let mut stderr = pump.sinks[1].take().map(|s| s.kept);
        let mut watched = pump.sinks[2].take().map(|s| s.kept);
        if err_from_watch {
            captured_err = true;
            stderr = watched.clone();
        }
        if let Some(streamer) = &mut streamer {
            // Streamed: what is left of the output is only what classify must see.
            stdout = Some(std::mem::take(&mut streamer.out_head));
            watched = Some(std::mem::take(&mut streamer.err_head));
            stderr = None;
        }
        let seen = Seen {
            stderr: watched.as_deref().or(stderr.as_deref()),
            stdout: if captured_out {
                stdout.as_deref()
            } else {
                None
            },
        };
        let classified = self.session.classify(status, &seen);
        self.release_all();
        let (status, started) = match classified {
            Ok(c) => c,
            Err(e) => {
                self.ended = Some(Ended::Failed(e.to_string()));
                if let Some(streamer) = streamer {
                    // The held lines are the transport's story of the failure, not output.
                    return Err(with_output(e, None, Some(streamer.held)));
                }
                return Err(with_output(
                    e,
                    stdout.filter(|_| captured_out),
                    stderr.filter(|_| captured_err).or(watched),
                ));
            }
        };
        if let Some(streamer) = &mut streamer {
            streamer.release();
            captured_out = false;
            captured_err = false;
        }
        self.ended = Some(Ended::Status(status, started));
        let output = Output {
            status,
            stdout: if captured_out {
                stdout.unwrap_or_default()
            } else {
                Vec::new()
            },
            stderr: if captured_err {
                stderr.unwrap_or_default()
            } else {
                Vec::new()
            },
            started,
        };
        if self.check {
            return crate::command::check_output(output, &self.name.endpoint, &self.name.line);
        }
        Ok(output)
    }

    /// A second wait gives what the first one saw; `None` for a child not waited for yet.
    fn replay(&mut self) -> Option<Result<Output>> {
        let replay = |status, started| Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
            started,
        };
        Some(match &self.ended {
            Some(Ended::Killed) => Ok(replay(ExitStatus::Signal(9), Started::Unknown)),
            Some(Ended::DryRun) => {
                self.release_all();
                Ok(replay(ExitStatus::Code(0), Started::No))
            }
            Some(Ended::Status(status, started)) => {
                let output = replay(*status, *started);
                match self.check {
                    true => {
                        crate::command::check_output(output, &self.name.endpoint, &self.name.line)
                    }
                    false => Ok(output),
                }
            }
            Some(Ended::Failed(why)) => Err(Error::Io {
                context: format!("waiting again for {}", self.name),
                source: io::Error::other(format!("it already ended in an error: {why}")),
            }),
            None => return None,
        })
    }

    fn io<T>(&self, r: io::Result<T>) -> Result<T> {
        r.map_err(|e| Error::Io {
            context: format!("reading the output of {}", self.name),
            source: e,
        })
    }

    /// Polls the session's end, the pump, and the job's cancellation until the session has
    /// ended and the pump is done, or the deadline passes; hands what the pump reads to
    /// `streamer`, when streaming.
    fn wait_loop(
        &mut self,
        pump: &mut Pump,
        mut status: Option<ExitStatus>,
        mut streamer: Option<&mut Streamer<'_>>,
    ) -> Result<ExitStatus> {
        let mut buf = Pump::buffer();
        let wake = self.token.clone();
        let wake_fd = wake.wake_fd();
        // The first look needs no poll: a session may have buffered its end already.
        let mut look = true;
        loop {
            if status.is_none()
                && (look || self.session.exit_fd().is_none())
                && let Some(s) = self.session.try_finish()?
            {
                status = Some(s);
            }
            look = false;
            if status.is_some() && !self.token.is_cancelled() {
                // Seen before any cancel: the session's own end, not the cancel's doing.
                self.ended_by_itself = true;
            }
            if status.is_some() {
                // Nobody is left to read what has not been written yet.
                pump.close_input();
            }
            if let Some(s) = status
                && pump.done()
            {
                return Ok(s);
            }
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(6);
            let mut tags = Vec::with_capacity(6);
            pump.poll_fds(&mut fds, &mut tags);
            let pumped = fds.len();
            let exit_fd = if status.is_none() {
                self.session.exit_fd()
            } else {
                None
            };
            if let Some(fd) = exit_fd {
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            }
            if let Some(fd) = wake_fd {
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            }
            let tick = (status.is_none() && exit_fd.is_none() || wake_fd.is_none()).then_some(TICK);
            poll_until(&mut fds, self.deadline.map(|d| d.at()), tick)
                .map_err(|e| Error::io(format!("waiting for {}", self.name), e))?;
            let exit_ready = exit_fd.is_some() && !fds[pumped].revents().is_empty();
            let ready = Pump::ready(&fds[..pumped], &tags);
            drop(fds);
            if self.token.is_cancelled() {
                return Err(Error::Cancelled {
                    command: self.name.to_string(),
                });
            }
            // Checked whatever poll returned: a command that keeps its pipes busy must not
            // outlive the deadline.
            if let Some(d) = self.deadline
                && d.expired()
            {
                return Err(Error::Timeout {
                    command: self.name.to_string(),
                    timeout: d.duration(),
                });
            }
            for tag in ready {
                pump.on_ready(tag, &mut buf)
                    .map_err(|e| Error::io(format!("moving the streams of {}", self.name), e))?;
            }
            if let Some(streamer) = streamer.as_deref_mut() {
                streamer.deliver(pump);
            }
            if exit_ready && let Some(s) = self.session.try_finish()? {
                status = Some(s);
            }
        }
    }
}

/// `e` with the output seen before it, when it is a transport failure: a caller can then see how
/// far a command that may have run got. The transport's own bytes (if any) come after.
fn with_output(e: Error, seen_out: Option<Vec<u8>>, seen_err: Option<Vec<u8>>) -> Error {
    match e {
        Error::Transport {
            endpoint,
            command,
            started,
            reason,
            stdout,
            stderr,
        } => Error::Transport {
            endpoint,
            command,
            started,
            reason,
            stdout: [seen_out.unwrap_or_default(), stdout].concat(),
            stderr: [seen_err.unwrap_or_default(), stderr].concat(),
        },
        e => e,
    }
}
