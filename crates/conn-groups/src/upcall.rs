//! Running an upcall as ClusterShell does, with bounds it does not have: `$VAR` substitution
//! (Python's `string.Template.safe_substitute`), then `/bin/sh -c LINE` in the configuration
//! directory, stdout read as the answer; exit status 0 or it failed. conn adds: stdin from
//! `/dev/null` (an upcall never eats conn's input), a time limit and a size limit after which
//! its process group is killed, and cancellation (Ctrl-C) that kills it too.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conn_core::CancelToken;
use conn_core::transport::{ChildHandle, poll_until};
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process_group, pidfd_open};

use crate::error::UpcallError;

/// How much of stderr is kept for a message: its last bytes.
const STDERR_KEPT: usize = 2048;

/// Bounds on one upcall.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall time from start to the end of its output and its exit.
    pub timeout: Duration,
    /// The most bytes of stdout kept; more is an error.
    pub max_output: usize,
    /// Ends the upcall when cancelled.
    pub cancel: Option<CancelToken>,
}

/// What an upcall printed: stdout (the answer) and the end of stderr.
#[derive(Debug)]
pub struct Answer {
    pub stdout: String,
    pub stderr: String,
}

/// Replaces `$NAME` and `${NAME}` by the value of `NAME` in `vars` and `$$` by `$`, leaving
/// anything else as it is (an unknown `$NAME`, a lone `$`): `string.Template.safe_substitute`.
/// Names are `[_A-Za-z][_A-Za-z0-9]*`, matched longest first (`$GROUPS` is not `$GROUP`).
pub fn substitute(template: &str, vars: &[(&str, &str)]) -> String {
    let is_start = |c: u8| c == b'_' || c.is_ascii_alphabetic();
    let is_part = |c: u8| c == b'_' || c.is_ascii_alphanumeric();
    let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        out.push_str(&template[copied..i]);
        let rest = &bytes[i + 1..];
        let (replacement, len) = if rest.first() == Some(&b'$') {
            (Some("$".to_string()), 2)
        } else if rest.first() == Some(&b'{') {
            let n = rest[1..].iter().take_while(|&&c| is_part(c)).count();
            let named = n > 0 && is_start(rest[1]) && rest.get(1 + n) == Some(&b'}');
            match named.then(|| lookup(&template[i + 2..i + 2 + n])).flatten() {
                Some(v) => (Some(v.to_string()), n + 3),
                None => (None, 1),
            }
        } else if rest.first().is_some_and(|&c| is_start(c)) {
            let n = rest.iter().take_while(|&&c| is_part(c)).count();
            match lookup(&template[i + 1..i + 1 + n]) {
                Some(v) => (Some(v.to_string()), n + 1),
                None => (None, 1),
            }
        } else {
            (None, 1)
        };
        match replacement {
            Some(v) => out.push_str(&v),
            None => out.push_str(&template[i..i + len]),
        }
        i += len;
        copied = i;
    }
    out.push_str(&template[copied..]);
    out
}

/// Runs `line` with `/bin/sh -c` in `dir` under `limits`.
pub fn run(line: &str, dir: &Path, limits: &Limits) -> Result<Answer, UpcallError> {
    if limits
        .cancel
        .as_ref()
        .is_some_and(CancelToken::is_cancelled)
    {
        return Err(UpcallError::Interrupted);
    }
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a kill ends whatever it started too.
        .process_group(0)
        .spawn()
        .map_err(UpcallError::Spawn)?;
    let pgid = child.id() as i32;
    let registration = match &limits.cancel {
        Some(token) => match token.register(ChildHandle::ProcessGroup(pgid)) {
            Some(r) => Some(r),
            None => {
                end(&mut child, pgid);
                return Err(UpcallError::Interrupted);
            }
        },
        None => None,
    };
    let result = collect(&mut child, pgid, limits);
    // Reaped before the registration goes: the group id stays ours until then.
    if result.is_err() {
        end(&mut child, pgid);
    }
    let status = child.wait().map_err(UpcallError::Io);
    drop(registration);
    let (stdout, stderr) = result?;
    let status = status?;
    let stderr = tail(&stderr);
    if !status.success() {
        let status = match (status.code(), status.signal()) {
            (Some(code), _) => format!("status {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => status.to_string(),
        };
        return Err(UpcallError::Failed { status, stderr });
    }
    let stdout = String::from_utf8(stdout).map_err(|_| UpcallError::NotText)?;
    Ok(Answer { stdout, stderr })
}

/// Kills the child's group (its leader is not reaped yet, so the id is still ours).
fn end(child: &mut Child, pgid: i32) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
    let _ = child.kill();
}

/// Reads stdout and stderr to their ends and waits for the child's exit (without reaping it),
/// within the limits: (stdout, stderr).
fn collect(
    child: &mut Child,
    pgid: i32,
    limits: &Limits,
) -> Result<(Vec<u8>, Vec<u8>), UpcallError> {
    let deadline = Instant::now() + limits.timeout;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Without a pidfd (an old kernel), the end of both pipes stands for the end of the child.
    let pidfd = Pid::from_raw(pgid).and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
    let mut exited = pidfd.is_none();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    let cancelled = || {
        limits
            .cancel
            .as_ref()
            .is_some_and(CancelToken::is_cancelled)
    };
    while stdout.is_some() || stderr.is_some() || !exited {
        if cancelled() {
            return Err(UpcallError::Interrupted);
        }
        if Instant::now() >= deadline {
            return Err(UpcallError::TimedOut {
                limit: limits.timeout,
                stderr: tail(&err),
            });
        }
        let wake = limits.cancel.as_ref().and_then(CancelToken::wake_fd);
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
        let flags = PollFlags::IN;
        if let Some(s) = &stdout {
            fds.push(PollFd::new(s, flags));
        }
        if let Some(s) = &stderr {
            fds.push(PollFd::new(s, flags));
        }
        if let (Some(fd), false) = (&pidfd, exited) {
            fds.push(PollFd::from_borrowed_fd(fd.as_fd(), flags));
        }
        if let Some(fd) = wake {
            fds.push(PollFd::from_borrowed_fd(fd, flags));
        }
        poll_until(&mut fds, Some(deadline), None).map_err(UpcallError::Io)?;
        let ready: Vec<bool> = fds.iter().map(|fd| !fd.revents().is_empty()).collect();
        drop(fds);
        let mut k = 0;
        let mut next = || {
            k += 1;
            ready[k - 1]
        };
        if stdout.is_some() && next() {
            let n = stdout
                .as_mut()
                .map_or(Ok(0), |s| s.read(&mut buf))
                .map_err(UpcallError::Io)?;
            if n == 0 {
                stdout = None;
            } else if out.len() + n > limits.max_output {
                return Err(UpcallError::TooLong {
                    limit: limits.max_output,
                });
            } else {
                out.extend_from_slice(&buf[..n]);
            }
        }
        if stderr.is_some() && next() {
            let n = stderr
                .as_mut()
                .map_or(Ok(0), |s| s.read(&mut buf))
                .map_err(UpcallError::Io)?;
            if n == 0 {
                stderr = None;
            } else {
                err.extend_from_slice(&buf[..n]);
                // Only the end is kept: bounded, whatever it writes.
                if err.len() > 2 * STDERR_KEPT {
                    err.drain(..err.len() - STDERR_KEPT);
                }
            }
        }
        if pidfd.is_some() && !exited && next() {
            exited = true;
        }
    }
    // A cancel kills the group, which may end the loop above before it looks at the token:
    // the child then "ended by a signal" that was the cancel's.
    if cancelled() {
        return Err(UpcallError::Interrupted);
    }
    Ok((out, err))
}

/// The last lines of stderr that fit [`STDERR_KEPT`], on one line (`; ` between lines).
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(STDERR_KEPT)..]);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(3);
    lines[start..].join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(secs: f64) -> Limits {
        Limits {
            timeout: Duration::from_secs_f64(secs),
            max_output: 1 << 20,
            cancel: None,
        }
    }

    #[test]
    fn substitution_is_python_s_safe_substitute() {
        let vars = [("GROUP", "web"), ("CFGDIR", "/etc/cs"), ("SOURCE", "local")];
        let s = |t| substitute(t, &vars);
        assert_eq!(
            s("sed -n 's/^$GROUP:\\(.*\\)/\\1/p' $CFGDIR/x"),
            "sed -n 's/^web:\\(.*\\)/\\1/p' /etc/cs/x"
        );
        assert_eq!(
            s("${GROUP}x $GROUPS $group $NODE"),
            "webx $GROUPS $group $NODE"
        );
        assert_eq!(s("$$ $ $1 ${ ${GROUP $"), "$ $ $1 ${ ${GROUP $");
        assert_eq!(s("a$SOURCE-b"), "alocal-b");
        assert_eq!(s("é$GROUPé"), "éwebé");
    }

    #[test]
    fn the_answer_is_stdout_run_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "a b\nc\n").unwrap();
        let answer = run("cat f; echo warn >&2", dir.path(), &limits(30.0)).unwrap();
        assert_eq!(answer.stdout, "a b\nc\n");
        assert_eq!(answer.stderr, "warn");
        // stdin is /dev/null.
        assert_eq!(run("cat", dir.path(), &limits(30.0)).unwrap().stdout, "");
    }

    #[test]
    fn failures_say_how() {
        let dir = tempfile::tempdir().unwrap();
        let e = run("echo oops >&2; exit 3", dir.path(), &limits(30.0)).unwrap_err();
        assert_eq!(e.to_string(), "exited with status 3: oops");
        let e = run("kill -9 $$", dir.path(), &limits(30.0)).unwrap_err();
        assert_eq!(e.to_string(), "exited with signal 9");
        let e = run("printf '\\377'", dir.path(), &limits(30.0)).unwrap_err();
        assert!(matches!(e, UpcallError::NotText), "{e}");
        let mut small = limits(30.0);
        small.max_output = 1000;
        let e = run("yes", dir.path(), &small).unwrap_err();
        assert!(matches!(e, UpcallError::TooLong { limit: 1000 }), "{e}");
    }

    #[test]
    fn the_time_limit_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        // A background child that keeps the pipe open must not outlive the limit either.
        let started = Instant::now();
        let e = run("echo partial; sleep 30 & wait", dir.path(), &limits(0.3)).unwrap_err();
        assert!(matches!(e, UpcallError::TimedOut { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(20));
        let e = run("sleep 30 &", dir.path(), &limits(0.3)).unwrap_err();
        assert!(matches!(e, UpcallError::TimedOut { .. }), "{e}");
    }

    #[test]
    fn cancellation_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let token = CancelToken::new();
        let mut l = limits(60.0);
        l.cancel = Some(token.clone());
        let canceller = {
            let token = token.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                token.cancel();
            })
        };
        let e = run("sleep 30", dir.path(), &l).unwrap_err();
        canceller.join().unwrap();
        assert!(matches!(e, UpcallError::Interrupted), "{e}");
        // Already cancelled: nothing starts.
        let e = run("touch ran", dir.path(), &l).unwrap_err();
        assert!(matches!(e, UpcallError::Interrupted), "{e}");
        assert!(!dir.path().join("ran").exists());
    }
}
