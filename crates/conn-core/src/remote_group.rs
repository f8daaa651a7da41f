//! Ending a remote command on a cancel, a deadline or a kill ([`Cmd::kill_remote`]): the
//! remote shell reports its process group in a marker line on stderr, conn strips that line
//! from what the caller sees, and when conn ends the session early it sends the group
//! `SIGTERM` with a command of its own on the same connection.
//!
//! Closing an ssh session does not end a command without a tty (sshd signals nothing, and
//! masters do not relay the `signal` request). But sshd runs each command as `$SHELL -c LINE`
//! in a session of its own, so the shell's `$$` is the process group of everything the line
//! starts, pipelines and background jobs included: `kill -s TERM -- -$$` from another session
//! ends them all.

use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher, Hasher};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[cfg(doc)]
use crate::command::Cmd;
use crate::command::{CommandName, Stream};
use crate::error::Error;
use crate::job::SimpleJob;
use crate::runner::Runner;

/// How long the remote kill may take, refusals retried included: short enough that a CLI
/// still exits within a second of a signal (a kill over a live master takes milliseconds;
/// docs/benchmarks.md), long enough for a few round trips to a distant host.
pub(crate) const KILL_BUDGET: Duration = Duration::from_millis(500);

/// How many bytes at the start of stderr may hold the marker line: the remote shell's
/// start-up files (`.bashrc`, a locale warning) and sshd may write lines before it, and so may
/// the ssh client itself with `-v`. Past this, no marker is looked for.
const SEARCH_WINDOW: usize = 64 * 1024;

/// The longest decimal process-group id taken from a marker (`u32::MAX` has 10 digits).
const MAX_DIGITS: usize = 10;

/// What the remote shell reports of a [`Cmd::kill_remote`] command, for transports: the line
/// prefix that makes it report, and the process group once it has. Cheap to clone (shared by
/// the stderr filter and the child).
#[derive(Clone, Debug)]
pub struct RemoteGroup {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `conn-pgid:<nonce>:`, the start of the marker line.
    marker: Box<[u8]>,
    /// The reported process group; 0 until then.
    pgid: AtomicU32,
}

impl Default for RemoteGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl RemoteGroup {
    /// A group to be reported under a nonce of its own: no output of any command can pass for
    /// its marker by accident.
    pub fn new() -> Self {
        RemoteGroup {
            inner: Arc::new(Inner {
                marker: format!("conn-pgid:{:016x}:", nonce()).into_bytes().into(),
                pgid: AtomicU32::new(0),
            }),
        }
    }

    /// `line` with the prefix that reports the group: `printf` of the marker and `$$` to
    /// stderr, then a newline and the line itself, whole and on its own (a comment, a trailing
    /// `&` or a leading `cd x &&` keep their meaning). The exit status is the line's.
    pub fn wrap(&self, line: &OsStr) -> OsString {
        let marker = String::from_utf8_lossy(&self.inner.marker);
        let mut wrapped = format!("printf '{marker}%s\\n' \"$$\" >&2\n").into_bytes();
        wrapped.extend_from_slice(line.as_bytes());
        OsString::from_vec(wrapped)
    }

    /// The remote command's process group, once its shell has reported it.
    pub fn pgid(&self) -> Option<u32> {
        match self.inner.pgid.load(Ordering::Acquire) {
            0 => None,
            pgid => Some(pgid),
        }
    }

    /// A filter for the command's stderr that takes the marker line out.
    pub(crate) fn filter(&self) -> MarkerFilter {
        MarkerFilter {
            group: self.clone(),
            held: Vec::new(),
            line_start: true,
            scanned: 0,
            done: false,
        }
    }
}

/// 64 bits nobody on the remote side can guess: std's randomly keyed hasher (seeded from the
/// system's randomness) over a process-wide counter, the pid and the time.
fn nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

/// Takes the marker line out of a stderr stream as it passes, and records the group.
///
/// Only the start of a line can be the marker, and only within the first [`SEARCH_WINDOW`]
/// bytes. Bytes are held back only while the line so far could still be the marker (a few
/// dozen bytes at most); everything else passes at once, so a command's first stderr line is
/// never delayed for long. Once the marker has been seen, or the window has passed without it,
/// everything passes untouched.
#[derive(Debug)]
pub(crate) struct MarkerFilter {
    group: RemoteGroup,
    /// The start of the current line, while it matches the marker so far.
    held: Vec<u8>,
    /// Whether the next byte starts a line.
    line_start: bool,
    scanned: usize,
    done: bool,
}

impl MarkerFilter {
    /// Appends to `out` what of `bytes` the caller is to see.
    pub(crate) fn pass(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.done {
                out.extend_from_slice(rest);
                return;
            }
            if !self.line_start && self.held.is_empty() {
                // In the middle of a line that is not the marker: through to its end.
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        out.extend_from_slice(&rest[..=i]);
                        self.scanned += i + 1;
                        rest = &rest[i + 1..];
                        self.line_start = true;
                    }
                    None => {
                        out.extend_from_slice(rest);
                        self.scanned += rest.len();
                        rest = &[];
                    }
                }
                self.give_up_past_window();
                continue;
            }
            let b = rest[0];
            rest = &rest[1..];
            self.scanned += 1;
            self.line_start = false;
            self.held.push(b);
            self.step(out);
        }
    }

    /// Looks at the held line after its newest byte.
    fn step(&mut self, out: &mut Vec<u8>) {
        let marker = &self.group.inner.marker;
        let n = self.held.len();
        let b = self.held[n - 1];
        let fits = if n <= marker.len() {
            b == marker[n - 1]
        } else {
            let digits = n - 1 - marker.len();
            if b == b'\n' && digits > 0 {
                let pgid = std::str::from_utf8(&self.held[marker.len()..n - 1])
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|&p| p > 1 && p <= i32::MAX as u32);
                if let Some(pgid) = pgid {
                    tracing::debug!("the remote shell reported process group {pgid}");
                    self.group.inner.pgid.store(pgid, Ordering::Release);
                    self.held.clear();
                    self.done = true;
                    return;
                }
                false
            } else {
                b.is_ascii_digit() && digits < MAX_DIGITS
            }
        };
        if !fits {
            // Not the marker: the line so far goes out as it came.
            self.line_start = b == b'\n';
            out.append(&mut self.held);
            self.give_up_past_window();
        }
    }

    /// Past the window, between lines, nothing is looked for any more. (A line that still
    /// matches is settled within the marker's length and [`MAX_DIGITS`] more bytes.)
    fn give_up_past_window(&mut self) {
        if self.scanned >= SEARCH_WINDOW && self.held.is_empty() {
            self.done = true;
        }
    }

    /// At end of file: what was held back goes out.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
        self.done = true;
    }
}

/// Sends `SIGTERM` to the remote process group `pgid` with a command of its own on `conn` (the
/// connection `name` ran on), within [`KILL_BUDGET`], a refused session retried. Best effort:
/// how it went is logged, never returned (the caller's error is the cancel or the deadline).
pub(crate) fn kill_remote_group(conn: &dyn Runner, pgid: u32, name: &CommandName) {
    // `-s TERM` and `--`, not `-TERM --`: dash's kill takes `--` only after `-s`.
    let cmd = crate::command::Cmd::shell(format!("kill -s TERM -- -{pgid}"))
        .stdout(Stream::Null)
        .check(false);
    let job = SimpleJob::with_timeout(KILL_BUDGET);
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(2);
    loop {
        match conn.run_to_end(&cmd, &job) {
            Ok(out) if out.status.success() => {
                tracing::debug!(
                    "sent SIGTERM to remote process group {pgid} of {name} in {:?}",
                    started.elapsed()
                );
            }
            Ok(out) => {
                let said = String::from_utf8_lossy(&out.stderr);
                if said.contains("No such process") {
                    tracing::debug!("remote process group {pgid} of {name} had already ended");
                } else {
                    tracing::warn!(
                        "cannot end remote process group {pgid} of {name}: kill exited with {}: {}",
                        out.status,
                        crate::text::tail(said.trim(), 500)
                    );
                }
            }
            Err(Error::SessionRefused { .. }) if KILL_BUDGET > started.elapsed() + backoff => {
                // The killed session may still count against MaxSessions until its command
                // ends: try again shortly.
                std::thread::sleep(backoff);
                backoff *= 2;
                continue;
            }
            Err(e) => {
                tracing::warn!("cannot end remote process group {pgid} of {name}: {e}");
            }
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker_line(group: &RemoteGroup, pgid: &str) -> Vec<u8> {
        let mut line = group.inner.marker.to_vec();
        line.extend_from_slice(pgid.as_bytes());
        line.push(b'\n');
        line
    }

    /// Everything through a new filter, `chunk` bytes at a time.
    fn filtered(group: &RemoteGroup, input: &[u8], chunk: usize) -> Vec<u8> {
        let mut filter = group.filter();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            filter.pass(piece, &mut out);
        }
        filter.finish(&mut out);
        out
    }

    #[test]
    fn the_marker_line_is_taken_out_and_its_group_kept_however_the_bytes_come() {
        for chunk in [1, 2, 7, 64, 4096] {
            let group = RemoteGroup::new();
            let mut input = b"bash: warning: setlocale: LC_ALL: cannot change locale\n".to_vec();
            input.extend(marker_line(&group, "4242"));
            input.extend_from_slice(b"error: real output\nconn-pgid:");
            assert_eq!(
                filtered(&group, &input, chunk),
                b"bash: warning: setlocale: LC_ALL: cannot change locale\nerror: real output\nconn-pgid:",
                "chunks of {chunk}"
            );
            assert_eq!(group.pgid(), Some(4242));
        }
    }

    #[test]
    fn only_the_first_marker_counts_and_lookalikes_pass_untouched() {
        let group = RemoteGroup::new();
        let other = RemoteGroup::new();
        let mut input = marker_line(&other, "77"); // another command's nonce
        input.extend(marker_line(&group, "12"));
        input.extend(marker_line(&group, "13")); // the command's own output, after the first
        let out = filtered(&group, &input, 3);
        let mut want = marker_line(&other, "77");
        want.extend(marker_line(&group, "13"));
        assert_eq!(out, want);
        assert_eq!(group.pgid(), Some(12));
        assert_eq!(other.pgid(), None);
    }

    #[test]
    fn a_marker_that_is_not_a_whole_line_or_names_no_group_is_output() {
        for (input, pgid) in [
            (b"x".to_vec(), None),
            (b"".to_vec(), None),
            (b"no newline at the end".to_vec(), None),
        ] {
            let group = RemoteGroup::new();
            assert_eq!(filtered(&group, &input, 5), input);
            assert_eq!(group.pgid(), pgid);
        }
        let group = RemoteGroup::new();
        for tail in ["\n", "1\n", "0\n", "12a\n", "99999999999\n", "12"] {
            let mut input = group.inner.marker.to_vec();
            input.extend_from_slice(tail.as_bytes());
            assert_eq!(filtered(&group, &input, 1), input, "{tail:?}");
            assert_eq!(group.pgid(), None, "{tail:?}");
        }
        // Mid-line it is nobody's marker.
        let mut input = b"say ".to_vec();
        input.extend(marker_line(&group, "55"));
        assert_eq!(filtered(&group, &input, 2), input);
        assert_eq!(group.pgid(), None);
    }

    #[test]
    fn past_the_window_nothing_is_looked_for() {
        let group = RemoteGroup::new();
        let mut input = vec![b'x'; SEARCH_WINDOW];
        input.push(b'\n');
        input.extend(marker_line(&group, "9"));
        assert_eq!(filtered(&group, &input, 1000), input);
        assert_eq!(group.pgid(), None);
    }

    /// What the filter must give: `input` without its first line (starting in the window) that
    /// is the marker and a group number, and that group.
    fn reference(group: &RemoteGroup, input: &[u8]) -> (Vec<u8>, Option<u32>) {
        let marker = &group.inner.marker;
        let mut start = 0;
        for line in input.split_inclusive(|&b| b == b'\n') {
            let pgid = line
                .strip_prefix(&marker[..])
                .and_then(|rest| rest.strip_suffix(b"\n"))
                .filter(|d| !d.is_empty() && d.len() <= MAX_DIGITS)
                .filter(|d| d.iter().all(u8::is_ascii_digit))
                .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok())
                .filter(|&p| p > 1 && p <= i32::MAX as u32);
            if start < SEARCH_WINDOW
                && let Some(pgid) = pgid
            {
                let out = [&input[..start], &input[start + line.len()..]].concat();
                return (out, Some(pgid));
            }
            start += line.len();
        }
        (input.to_vec(), None)
    }

    proptest::proptest! {
        #[test]
        fn the_filter_removes_exactly_the_first_report_whatever_the_chunks(
            pieces in proptest::collection::vec(0usize..9, 0..40),
            chunk in 1usize..50,
        ) {
            let group = RemoteGroup::new();
            let marker = String::from_utf8(group.inner.marker.to_vec()).unwrap();
            let input: Vec<u8> = pieces
                .iter()
                .flat_map(|&p| {
                    match p {
                        0 => marker.clone(),
                        1 => "conn-pgid:".to_string(),
                        2 => "12".to_string(),
                        3 => "\n".to_string(),
                        4 => "x".to_string(),
                        5 => format!("{marker}4242\n"),
                        6 => "0".to_string(),
                        7 => "99999999999".to_string(),
                        _ => "conn-pgid:0123456789abcdef:7\n".to_string(),
                    }
                    .into_bytes()
                })
                .collect();
            let (want, pgid) = reference(&group, &input);
            proptest::prop_assert_eq!(filtered(&group, &input, chunk), want);
            proptest::prop_assert_eq!(group.pgid(), pgid);
        }
    }

    #[test]
    fn the_prefix_reports_the_group_and_keeps_the_line_whole() {
        let group = RemoteGroup::new();
        let wrapped = group.wrap(OsStr::new("cd /tmp && echo a # comment &"));
        let text = wrapped.to_string_lossy();
        let (prefix, line) = text.split_once('\n').unwrap();
        assert_eq!(line, "cd /tmp && echo a # comment &");
        assert!(prefix.starts_with("printf 'conn-pgid:"), "{prefix}");
        assert!(prefix.ends_with(":%s\\n' \"$$\" >&2"), "{prefix}");
        assert_ne!(
            RemoteGroup::new().inner.marker,
            group.inner.marker,
            "a nonce per command"
        );
    }
}
