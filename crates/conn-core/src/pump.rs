//! conn's own ends of a command's pipes, and moving bytes through them without ever blocking.
//!
//! A [`Pump`] holds: the bytes of [`Stdin::Bytes`](crate::Stdin::Bytes) still to write; the
//! captured streams of `wait_with_output`; and relays, which copy a stream that conn has put
//! behind a pipe to where the caller wanted it (its own stdout or stderr, a file), keeping the
//! first bytes when a transport must look at them (ssh's own diagnostics on stderr). Every
//! descriptor is non-blocking and written only when `poll` says it takes bytes, so a reader
//! that never reads (an unread terminal, a full pipe) cannot hold a command past its deadline.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use crate::remote_group::MarkerFilter;

/// How many written bytes may sit at the front of a backlog before they are dropped from it:
/// compacting rarely keeps a relay from moving its whole backlog on every small write.
const COMPACT_AT: usize = 64 * 1024;

/// Bytes read per `read(2)`.
const CHUNK: usize = 64 * 1024;

/// Bytes of a relayed stream that may wait for a slow destination before the source is no
/// longer read (the command then waits, as it would on a full pipe of its own).
const BACKLOG_MAX: usize = 256 * 1024;

/// Where a relay copies to.
#[derive(Debug)]
pub(crate) enum Dest {
    /// This process's descriptor 1.
    Stdout,
    /// This process's descriptor 2.
    Stderr,
    /// A caller's descriptor.
    Fd(Arc<OwnedFd>),
    /// Nowhere: the bytes are only looked at (a watched stderr the caller discards).
    Discard,
}

impl Dest {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Dest::Stdout => Some(own_stdout()),
            Dest::Stderr => Some(own_stderr()),
            Dest::Fd(fd) => Some(fd.as_fd()),
            Dest::Discard => None,
        }
    }
}

/// Descriptor 1, borrowed from std's handle, which lives as long as the process.
fn own_stdout() -> BorrowedFd<'static> {
    static OUT: std::sync::OnceLock<io::Stdout> = std::sync::OnceLock::new();
    OUT.get_or_init(io::stdout).as_fd()
}

/// Descriptor 2, likewise.
fn own_stderr() -> BorrowedFd<'static> {
    static ERR: std::sync::OnceLock<io::Stderr> = std::sync::OnceLock::new();
    ERR.get_or_init(io::stderr).as_fd()
}

/// One stream coming out of the command through a pipe of ours.
#[derive(Debug)]
pub(crate) struct Sink {
    /// Our read end (non-blocking); `None` once at end of file.
    src: Option<OwnedFd>,
    /// How many leading bytes to keep in `kept` (`usize::MAX`: capture everything).
    keep: usize,
    pub(crate) kept: Vec<u8>,
    /// Where everything read goes as well, if anywhere.
    dest: Option<Dest>,
    /// Bytes read for `dest`; those before `sent` are written already (an offset rather than
    /// draining the front on every small write).
    backlog: Vec<u8>,
    sent: usize,
    /// Bytes written to `dest` so far.
    relayed: u64,
    /// Takes the remote group's report out of the bytes read, before anyone sees them.
    filter: Option<MarkerFilter>,
}

impl Sink {
    /// Collects everything from `src`.
    pub(crate) fn capture(src: OwnedFd) -> io::Result<Self> {
        Self::new(src, usize::MAX, None)
    }

    /// Copies everything from `src` to `dest`, keeping the first `keep` bytes.
    pub(crate) fn relay(src: OwnedFd, dest: Dest, keep: usize) -> io::Result<Self> {
        Self::new(src, keep, Some(dest))
    }

    fn new(src: OwnedFd, keep: usize, dest: Option<Dest>) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&src, true)?;
        Ok(Sink {
            src: Some(src),
            keep,
            kept: Vec::new(),
            dest,
            backlog: Vec::new(),
            sent: 0,
            relayed: 0,
            filter: None,
        })
    }

    /// From now on, passes what is read through `filter` first.
    pub(crate) fn strip(&mut self, filter: MarkerFilter) {
        self.filter = Some(filter);
    }

    /// Whether nothing has been copied to the destination yet (a watched stderr whose bytes
    /// all still sit here).
    pub(crate) fn nothing_relayed(&self) -> bool {
        self.relayed == 0
    }

    /// From now on, keeps every byte and copies nothing: `wait_with_output` collecting a
    /// watched stderr itself instead of reading it back from the caller's pipe.
    pub(crate) fn capture_all(&mut self) {
        debug_assert!(self.nothing_relayed());
        // Nothing was written out, so the backlog holds every byte read so far.
        self.kept = std::mem::take(&mut self.backlog);
        self.sent = 0;
        self.keep = usize::MAX;
        self.dest = None;
    }

    /// Bytes read and not yet written to the destination.
    fn pending(&self) -> usize {
        self.backlog.len() - self.sent
    }

    fn done(&self) -> bool {
        self.src.is_none() && self.pending() == 0
    }

    /// Once everything is through, lets go of the destination: a pipe of the caller's then
    /// reads end of file.
    fn release_when_done(&mut self) {
        if self.done() && matches!(self.dest, Some(Dest::Fd(_))) {
            self.dest = Some(Dest::Discard);
        }
    }

    /// Reads what is there; `Ok(())` also for "nothing right now".
    fn read(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let Some(src) = &self.src else { return Ok(()) };
        match rustix::io::read(src, &mut *buf) {
            Ok(0) => {
                self.src = None;
                if let Some(filter) = &mut self.filter {
                    let mut held = Vec::new();
                    filter.finish(&mut held);
                    self.take(&held);
                }
            }
            Ok(n) => match &mut self.filter {
                Some(filter) => {
                    let mut passed = Vec::with_capacity(n);
                    filter.pass(&buf[..n], &mut passed);
                    self.take(&passed);
                }
                None => self.take(&buf[..n]),
            },
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Keeps what `keep` asks for of `bytes`, and queues them for the destination.
    fn take(&mut self, bytes: &[u8]) {
        let room = self.keep.saturating_sub(self.kept.len()).min(bytes.len());
        self.kept.extend_from_slice(&bytes[..room]);
        match &self.dest {
            Some(Dest::Discard) | None => {}
            Some(_) => self.backlog.extend_from_slice(bytes),
        }
    }

    /// Writes some of the backlog to the destination, which `poll` said takes bytes.
    fn flush(&mut self) {
        let Some(fd) = self.dest.as_ref().and_then(Dest::fd) else {
            self.backlog.clear();
            self.sent = 0;
            return;
        };
        // At most PIPE_BUF bytes, which a writable pipe always takes whole without blocking,
        // even when the caller's descriptor is in blocking mode.
        let chunk = self.pending().min(rustix::pipe::PIPE_BUF);
        match rustix::io::write(fd, &self.backlog[self.sent..self.sent + chunk]) {
            Ok(n) => {
                self.sent += n;
                self.relayed += n as u64;
                if self.sent == self.backlog.len() {
                    self.backlog.clear();
                    self.sent = 0;
                } else if self.sent >= COMPACT_AT {
                    self.backlog.drain(..self.sent);
                    self.sent = 0;
                }
            }
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(_) => {
                // The destination is gone or broken: drop the copy, never the command.
                self.backlog.clear();
                self.sent = 0;
                self.dest = Some(Dest::Discard);
            }
        }
    }
}

/// Input bytes on their way into the command's stdin pipe.
#[derive(Debug)]
pub(crate) struct Input {
    fd: Option<OwnedFd>,
    bytes: Vec<u8>,
    written: usize,
}

impl Input {
    pub(crate) fn new(fd: OwnedFd, bytes: Vec<u8>) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(Input {
            fd: Some(fd),
            bytes,
            written: 0,
        })
    }
}

/// What a [`Pump`] polls, to find the descriptor again after `poll`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tag {
    Input,
    Src(usize),
    Dest(usize),
}

/// conn's own pipe ends of one command.
#[derive(Debug, Default)]
pub(crate) struct Pump {
    pub(crate) input: Option<Input>,
    /// Index 0: stdout, 1: stderr, 2: a watched stderr on its way to the caller's own pipe
    /// (its first bytes kept for the transport, the caller reading the rest).
    pub(crate) sinks: [Option<Sink>; 3],
}

impl Pump {
    /// Whether nothing is left to move: input written (or abandoned), every source at end of
    /// file and every backlog flushed.
    pub(crate) fn done(&self) -> bool {
        self.input.as_ref().is_none_or(|i| i.fd.is_none())
            && self.sinks.iter().flatten().all(Sink::done)
    }

    /// Whether there is anything to pump at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_none() && self.sinks.iter().all(Option::is_none)
    }

    /// Closes the input pipe: end of file for the command (or nobody left to read it).
    pub(crate) fn close_input(&mut self) {
        if let Some(input) = &mut self.input {
            input.fd = None;
        }
    }

    /// Adds what is worth polling now to `fds`, with a tag each in `tags`.
    pub(crate) fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>, tags: &mut Vec<Tag>) {
        if let Some(Input { fd: Some(fd), .. }) = &self.input {
            fds.push(PollFd::new(fd, PollFlags::OUT));
            tags.push(Tag::Input);
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            let Some(sink) = sink else { continue };
            if let Some(src) = &sink.src
                && sink.pending() < BACKLOG_MAX
            {
                fds.push(PollFd::new(src, PollFlags::IN));
                tags.push(Tag::Src(i));
            }
            if sink.pending() > 0
                && let Some(fd) = sink.dest.as_ref().and_then(Dest::fd)
            {
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::OUT));
                tags.push(Tag::Dest(i));
            }
        }
    }

    /// The tags of the descriptors `poll` reported ready, among the first `tags.len()` of `fds`
    /// (those [`Pump::poll_fds`] added).
    pub(crate) fn ready(fds: &[PollFd<'_>], tags: &[Tag]) -> Vec<Tag> {
        fds.iter()
            .zip(tags)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(_, tag)| *tag)
            .collect()
    }

    /// Acts on one descriptor that `poll` reported ready.
    pub(crate) fn on_ready(&mut self, tag: Tag, buf: &mut [u8]) -> io::Result<()> {
        match tag {
            Tag::Input => {
                let Some(input) = &mut self.input else {
                    return Ok(());
                };
                if let Some(fd) = &input.fd {
                    match rustix::io::write(fd, &input.bytes[input.written..]) {
                        Ok(n) => input.written += n,
                        Err(Errno::AGAIN | Errno::INTR) => {}
                        // EPIPE and the like: the command closed its stdin; the rest is not
                        // wanted. (SIGPIPE is ignored in Rust programs by default.)
                        Err(_) => input.written = input.bytes.len(),
                    }
                    if input.written == input.bytes.len() {
                        input.fd = None;
                    }
                }
            }
            Tag::Src(i) => {
                if let Some(sink) = &mut self.sinks[i] {
                    sink.read(buf)?;
                    sink.release_when_done();
                }
            }
            Tag::Dest(i) => {
                if let Some(sink) = &mut self.sinks[i] {
                    sink.flush();
                    sink.release_when_done();
                }
            }
        }
        Ok(())
    }

    /// Reads, without waiting, what the sources already hold (a bounded number of reads): for
    /// an error message after a failure.
    pub(crate) fn drain_now(&mut self) {
        let mut buf = vec![0u8; CHUNK];
        for sink in self.sinks.iter_mut().flatten() {
            for _ in 0..16 {
                let before = sink.kept.len();
                if sink.read(&mut buf).is_err() || sink.kept.len() == before {
                    break;
                }
            }
        }
    }

    /// A buffer for [`Pump::on_ready`].
    pub(crate) fn buffer() -> Vec<u8> {
        vec![0u8; CHUNK]
    }

    /// Whether a relay to this process's stderr would write into one of our own pipes (a
    /// process that closed its stderr gets descriptor 2 reused): then it must not relay.
    pub(crate) fn disable_self_relay(&mut self) {
        let ours: Vec<i32> = self
            .sinks
            .iter()
            .flatten()
            .filter_map(|s| s.src.as_ref().map(|f| f.as_raw_fd()))
            .collect();
        for sink in self.sinks.iter_mut().flatten() {
            let target = match sink.dest {
                Some(Dest::Stdout) => 1,
                Some(Dest::Stderr) => 2,
                _ => continue,
            };
            if ours.contains(&target) {
                sink.dest = Some(Dest::Discard);
            }
        }
    }
}
