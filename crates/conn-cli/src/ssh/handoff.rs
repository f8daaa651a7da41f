//! Handing a line over to the real ssh: `exec` of the ssh program with ssh's own words, so that
//! whatever a pooled session cannot serve (a terminal, forwardings, an interactive login, a
//! line ssh would refuse) behaves exactly as with ssh itself; and conn's own messages, which
//! go where ssh's would (stderr, or the `-E` file).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::plan::Log;
use crate::output::one_line;

/// Replaces this process by `program` with `argv`; returns only if that failed, with the exit
/// status to end with: 255, as for ssh's own failures. With `-v`, says first that it hands
/// over and why.
pub fn exec_ssh(program: &str, argv: &[OsString], reason: &str, log: &Log) -> u8 {
    if log.verbose {
        say(
            log,
            &format!("conn ssh: handing over to {program}: {reason}"),
        );
    }
    // ssh must start as if the shell had started it: conn blocks no signal (its handlers
    // become the default actions again at exec; std's exec restores SIGPIPE), and the
    // descriptors conn opened are all close-on-exec.
    let err = Command::new(program).args(argv).exec();
    if !log.quiet {
        say(
            log,
            &format!("conn: error: cannot run ssh program {program:?} ({reason}): {err}"),
        );
    }
    crate::output::EXIT_TRANSPORT
}

/// Writes one line of conn's own (ssh's `\r\n` excepted: conn ends its lines with `\n`) to
/// stderr, or appended to the `-E` log file when one was given.
pub fn say(log: &Log, line: &str) {
    write_raw(log, format!("{}\n", one_line(line)).as_bytes());
}

/// Writes `bytes` as they are (ssh's own words, from a master's log) where [`say`] writes.
pub fn write_raw(log: &Log, bytes: &[u8]) {
    if let Some(path) = &log.file
        && let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = file.write_all(bytes);
        return;
    }
    let _ = io::stderr().lock().write_all(bytes);
}
