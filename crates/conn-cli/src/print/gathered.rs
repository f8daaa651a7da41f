//! What is printed once every host is done: the gathered groups of `-b` and `-B` (clush,
//! clubak and dshbak's blocks) and `-L` (every host's lines in host order).

use std::io::{self, Write};

use conn_core::StreamKind;
use conn_fleet::{Kept, Lines, RunReport};

use super::Palette;

/// The separator line of a gathered group's header, as clubak and dshbak draw it.
const SEPARATOR: &str = "---------------";

/// `-b` / `-B`: the hosts whose output and end are identical (stdout alone for `-b`, whose
/// stderr was streamed; with `with_stderr` both), once each group, under a header with the
/// folded set, the count when more than one, and the status when not a success; without
/// `headers` (`-N`) the blocks alone, as clush prints them. Stdout (and with `with_stderr`
/// stderr, right after each group's stdout) go to `out` and `err`, flushed after each group so
/// that a terminal shows them in order. Groups come in clush's order ([`RunReport::groups`]).
pub fn write_gathered(
    out: &mut dyn Write,
    err: &mut dyn Write,
    report: &RunReport,
    palette: Palette,
    with_stderr: bool,
    headers: bool,
) -> io::Result<()> {
    let groups = if with_stderr {
        report.groups()
    } else {
        report.groups_by_stdout()
    };
    for group in groups {
        let first = &report.hosts[group.members[0]];
        let count = if group.members.len() > 1 {
            format!(" ({})", group.members.len())
        } else {
            String::new()
        };
        let status = match (first.failure(), first.reason()) {
            (None, _) => String::new(),
            (Some(_), Some(reason)) if group.members.len() > 1 => format!(": {reason}"),
            (Some(failure), _) => format!(": {failure}"),
        };
        let header = format!("{}{count}{status}", group.folded);
        if headers {
            writeln!(
                out,
                "{}\n{}\n{}",
                palette.header(SEPARATOR),
                palette.header(&header),
                palette.header(SEPARATOR)
            )?;
        }
        if let Some(g) = &first.gathered {
            write_block(out, &g.stdout)?;
            out.flush()?;
            if with_stderr {
                write_block(err, &g.stderr)?;
                err.flush()?;
            }
        }
    }
    Ok(())
}

/// A gathered stream as it is, with a newline added if its last line has none.
fn write_block(out: &mut dyn Write, kept: &Kept) -> io::Result<()> {
    kept.write_to(out)?;
    if kept.last_byte().is_some_and(|b| b != b'\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// `-L`: every host's lines, prefixed `host: ` (unless `prefix` is off), host after host in
/// the run's order: stdout lines to `out`, stderr lines to `err`.
pub fn write_sorted(
    out: &mut dyn Write,
    err: &mut dyn Write,
    report: &RunReport,
    palette: Palette,
    prefix: bool,
) -> io::Result<()> {
    for end in &report.hosts {
        let Some(g) = &end.gathered else { continue };
        let name = prefix.then_some(end.host.name.as_str());
        write_lines(out, &g.stdout, name, StreamKind::Stdout, palette)?;
        write_lines(err, &g.stderr, name, StreamKind::Stderr, palette)?;
    }
    Ok(())
}

/// A gathered stream's lines to `dest`, each prefixed with `name` when given.
fn write_lines(
    dest: &mut dyn Write,
    kept: &Kept,
    name: Option<&str>,
    stream: StreamKind,
    palette: Palette,
) -> io::Result<()> {
    let mut lines = Lines::default();
    let mut failed = Ok(());
    let mut emit = |line: &[u8]| {
        let mut buf = Vec::new();
        palette.line(&mut buf, name, stream, line);
        if failed.is_ok() {
            failed = dest.write_all(&buf);
        }
    };
    kept.write_to(&mut LinesWriter {
        lines: &mut lines,
        emit: &mut emit,
    })?;
    lines.finish(&mut emit);
    failed?;
    dest.flush()
}

/// A `Write` that cuts what it is given into lines.
struct LinesWriter<'a> {
    lines: &'a mut Lines,
    emit: &'a mut dyn FnMut(&[u8]),
}

impl Write for LinesWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lines.feed(buf, self.emit);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
