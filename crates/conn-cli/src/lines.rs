//! Streaming a host's output as whole lines, prefixed `host: `, while it arrives.
//!
//! Each host's stdout and stderr go through a [`Lines`] splitter that holds at most one
//! partial line. A complete line is written to our stream with one `write_all` under the
//! stream's lock, so lines of different hosts never interleave within a line. A line longer
//! than [`MAX_LINE`] is written in pieces of that size, each prefixed and ended with a newline:
//! memory per host stays bounded whatever a host prints. A last line without a newline is
//! written, with one added, when the stream ends.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::Instant;

use conn_core::transport::poll_until;
use rustix::event::{PollFd, PollFlags};

/// The longest line kept whole; longer ones are written in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// Which of our streams a host's stream goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
}

impl Target {
    /// Writes one prefixed line whole, under the stream's lock. Errors (a closed pipe) are
    /// dropped: the command is not ours to stop for them.
    pub fn write_line(self, line: &[u8]) {
        let _ = match self {
            Target::Stdout => io::stdout().lock().write_all(line),
            Target::Stderr => io::stderr().lock().write_all(line),
        };
    }
}

/// Splits one stream of one host into prefixed lines.
#[derive(Debug)]
pub struct Lines {
    prefix: Vec<u8>,
    /// The prefix, then the current partial line.
    buf: Vec<u8>,
}

impl Lines {
    /// A splitter whose lines start with `prefix` (e.g. `"db1: "`).
    pub fn new(prefix: &str) -> Self {
        let prefix = prefix.as_bytes().to_vec();
        Lines {
            buf: prefix.clone(),
            prefix,
        }
    }

    /// Takes `bytes` and hands every complete line (prefix, bytes, newline) to `emit`.
    pub fn feed(&mut self, mut bytes: &[u8], emit: &mut dyn FnMut(&[u8])) {
        while !bytes.is_empty() {
            let room = MAX_LINE - (self.buf.len() - self.prefix.len());
            let window = &bytes[..bytes.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.buf.extend_from_slice(&window[..=i]);
                    emit(&self.buf);
                    self.buf.truncate(self.prefix.len());
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.buf.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.buf.len() - self.prefix.len() == MAX_LINE {
                        self.buf.push(b'\n');
                        emit(&self.buf);
                        self.buf.truncate(self.prefix.len());
                    }
                }
            }
        }
    }

    /// Hands a last line without newline to `emit`, with one added.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if self.buf.len() > self.prefix.len() {
            self.buf.push(b'\n');
            emit(&self.buf);
            self.buf.truncate(self.prefix.len());
        }
    }
}

/// Takes each complete line of a host, with the stream it goes to.
pub type Emit<'a> = dyn Fn(Target, &[u8]) + 'a;

/// Reads a host's `stdout` and `stderr` pipes until both end or `until` passes, handing
/// every complete prefixed line to `emit` (with the stream it belongs to) as it completes,
/// and, when `keep` is given, also collecting the raw bytes (for `--gather` and `--json`).
pub fn pump_lines(
    prefix: &str,
    stdout: Option<impl Read + AsFd>,
    stderr: Option<impl Read + AsFd>,
    until: Option<Instant>,
    mut keep: Option<(&mut Vec<u8>, &mut Vec<u8>)>,
    emit: Option<&Emit<'_>>,
) -> io::Result<()> {
    let mut streams = [
        stdout.map(|s| {
            (
                Box::new(s) as Box<dyn ReadFd>,
                Lines::new(prefix),
                Target::Stdout,
            )
        }),
        stderr.map(|s| {
            (
                Box::new(s) as Box<dyn ReadFd>,
                Lines::new(prefix),
                Target::Stderr,
            )
        }),
    ];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let open: Vec<usize> = (0..2).filter(|&i| streams[i].is_some()).collect();
        if open.is_empty() {
            return Ok(());
        }
        let ready = {
            let mut fds: Vec<PollFd<'_>> = open
                .iter()
                .map(|&i| {
                    let (s, _, _) = streams[i].as_ref().expect("open");
                    PollFd::from_borrowed_fd(s.fd(), PollFlags::IN)
                })
                .collect();
            poll_until(&mut fds, until, None)?;
            let ready: Vec<usize> = fds
                .iter()
                .zip(&open)
                .filter(|(fd, _)| !fd.revents().is_empty())
                .map(|(_, &i)| i)
                .collect();
            ready
        };
        if ready.is_empty() && until.is_some_and(|t| Instant::now() >= t) {
            return Ok(()); // the deadline: `wait` ends the command and says so
        }
        for i in ready {
            let (reader, lines, target) = streams[i].as_mut().expect("open");
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let target = *target;
            let mut emit_line = |line: &[u8]| {
                if let Some(emit) = emit {
                    emit(target, line)
                }
            };
            if n == 0 {
                lines.finish(&mut emit_line);
                streams[i] = None;
                continue;
            }
            lines.feed(&buf[..n], &mut emit_line);
            if let Some((out, err)) = keep.as_mut() {
                match target {
                    Target::Stdout => out.extend_from_slice(&buf[..n]),
                    Target::Stderr => err.extend_from_slice(&buf[..n]),
                }
            }
        }
    }
}

/// A pipe end to poll and read.
trait ReadFd: Read {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl<T: Read + AsFd> ReadFd for T {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lines = Lines::new("h: ");
        let mut got = Vec::new();
        for c in chunks {
            lines.feed(c, &mut |l| got.push(l.to_vec()));
        }
        lines.finish(&mut |l| got.push(l.to_vec()));
        got
    }

    #[test]
    fn lines_are_whole_and_prefixed_however_the_bytes_arrive() {
        assert_eq!(
            split(&[b"a", b"b\nc", b"d\n\ne"]),
            vec![
                b"h: ab\n".to_vec(),
                b"h: cd\n".to_vec(),
                b"h: \n".to_vec(),
                b"h: e\n".to_vec()
            ]
        );
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn a_huge_line_is_cut_into_bounded_pieces() {
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        let got = split(&[&big, b"\n"]);
        assert_eq!(got.len(), 3);
        assert!(
            got.iter()
                .all(|l| l.len() <= MAX_LINE + 4 && l.ends_with(b"\n"))
        );
        let total: usize = got.iter().map(|l| l.len() - 4).sum();
        assert_eq!(total, big.len());
    }
}
