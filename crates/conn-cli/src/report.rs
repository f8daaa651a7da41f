//! What one host of a fan-out produced ([`HostReport`]) and the ways `conn run` shows it: JSON
//! lines, gathered groups (`-b`), and the summary of failures folded by reason.
//!
//! The report does not know how its output was collected (captured today, streamed line by
//! line later): it is the per-host result that every output mode reads.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use conn_core::{Error, ExitStatus, Output, Started};
use conn_hostset::HostSet;
use serde_json::{Value, json};

use crate::output::{EXIT_INTERRUPTED, exit_code_of_error, exit_code_of_status, one_line};

/// How a host ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEnd {
    /// The command ran and ended with this status (success or not).
    Status(ExitStatus),
    /// conn could not run it to its end: no status of the command is known.
    Failed {
        /// [`Error::kind`], or `interrupted` for a host never started because conn was stopped.
        kind: &'static str,
        /// [`Error::started`].
        ran: Started,
        /// The error, one line.
        message: String,
        /// The exit code conn counts for it.
        code: u8,
    },
}

/// What one host produced: its name, how it ended, its output, how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    /// The host as given (`host` or `user@host`).
    pub host: String,
    /// How it ended.
    pub end: HostEnd,
    /// What the command wrote to stdout (for a failure, whatever the error carried).
    pub stdout: Vec<u8>,
    /// What the command (or ssh) wrote to stderr.
    pub stderr: Vec<u8>,
    /// From the moment a worker took the host to its end, retries included.
    pub duration: Duration,
    /// Whether the command started (the library's answer; `unknown` for the process back end's
    /// exit 255).
    pub started: Started,
}

impl HostReport {
    /// The report of a finished run.
    pub fn new(host: &str, result: Result<Output, Error>, duration: Duration) -> Self {
        match result {
            Ok(out) => HostReport {
                host: host.to_string(),
                end: HostEnd::Status(out.status),
                started: out.started,
                stdout: out.stdout,
                stderr: out.stderr,
                duration,
            },
            Err(e) => {
                let started = e.started();
                let end = HostEnd::Failed {
                    kind: e.kind(),
                    ran: e.started(),
                    message: one_line(&e.to_string()),
                    code: exit_code_of_error(&e),
                };
                let (stdout, stderr) = match e {
                    Error::Exited { stdout, stderr, .. } => (stdout, stderr),
                    Error::Transport { stdout, stderr, .. } => (stdout, stderr),
                    _ => (Vec::new(), Vec::new()),
                };
                HostReport {
                    host: host.to_string(),
                    end,
                    stdout,
                    stderr,
                    duration,
                    started,
                }
            }
        }
    }

    /// A host that was never started because conn was interrupted first.
    pub fn interrupted(host: &str) -> Self {
        HostReport {
            host: host.to_string(),
            end: HostEnd::Failed {
                kind: "interrupted",
                ran: Started::No,
                message: "not started: interrupted".into(),
                code: EXIT_INTERRUPTED,
            },
            stdout: Vec::new(),
            stderr: Vec::new(),
            duration: Duration::ZERO,
            started: Started::No,
        }
    }

    /// The exit code conn counts for this host (0 on success).
    pub fn exit_code(&self) -> u8 {
        match &self.end {
            HostEnd::Status(s) => exit_code_of_status(*s),
            HostEnd::Failed { code, .. } => *code,
        }
    }

    /// Why the host failed (`exit code 1`, `signal 9`, the error), `None` on success.
    pub fn failure(&self) -> Option<String> {
        match &self.end {
            HostEnd::Status(s) if s.success() => None,
            HostEnd::Status(s) => Some(s.to_string()),
            HostEnd::Failed { message, .. } => Some(message.clone()),
        }
    }

    /// The host's line of `--json`.
    pub fn to_json(&self) -> Value {
        let (exit_code, signal) = match &self.end {
            HostEnd::Status(ExitStatus::Code(c)) => (json!(c), Value::Null),
            HostEnd::Status(ExitStatus::Signal(s)) => (Value::Null, json!(s)),
            HostEnd::Failed { .. } => (Value::Null, Value::Null),
        };
        let failure = match &self.end {
            HostEnd::Status(s) if s.success() => Value::Null,
            HostEnd::Status(s) => json!({
                "kind": if s.code().is_some() { "exited" } else { "signal" },
                "command_ran": self.started.as_str(),
                "message": s.to_string(),
            }),
            HostEnd::Failed {
                kind, ran, message, ..
            } => json!({
                "kind": kind,
                "command_ran": ran.as_str(),
                "message": message,
            }),
        };
        let mut obj = json!({
            "host": self.host,
            "exit_code": exit_code,
            "signal": signal,
            "duration_s": self.duration.as_secs_f64(),
            "failure": failure,
        });
        if let Value::Object(map) = &mut obj {
            for (key, bytes) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                // Text when it is UTF-8; otherwise null and the exact bytes in base64.
                match std::str::from_utf8(bytes) {
                    Ok(text) => {
                        map.insert(key.into(), json!(text));
                    }
                    Err(_) => {
                        map.insert(key.into(), Value::Null);
                        map.insert(format!("{key}_base64"), json!(BASE64.encode(bytes)));
                    }
                }
            }
        }
        obj
    }

    /// What must be equal for two hosts to be gathered together: stdout, stderr and how they
    /// ended (the host's own name taken out of an error message).
    fn gather_key(&self) -> (&[u8], &[u8], String) {
        let status = match &self.end {
            HostEnd::Status(s) => s.to_string(),
            HostEnd::Failed { message, .. } => without_host(message, &self.host),
        };
        (&self.stdout, &self.stderr, status)
    }
}

/// `message` with what differs from host to host for the same failure taken out, so that
/// hosts failing the same way read the same: the host's name (and, for `user@host`, the bare
/// host) becomes `<host>`, only as a whole name; an absolute path (a socket, a log file: their
/// names are per host) becomes `<path>`.
pub fn without_host(message: &str, host: &str) -> String {
    let mut out = replace_word(message, host, "<host>");
    if let Some((_, bare)) = host.split_once('@') {
        out = replace_word(&out, bare, "<host>");
    }
    without_paths(&out)
}

/// Every whitespace-separated word that starts with `/` and holds another `/` (punctuation
/// around it kept) written `<path>`.
fn without_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut first = true;
    for word in text.split(' ') {
        if !first {
            out.push(' ');
        }
        first = false;
        let lead = word.len() - word.trim_start_matches(['(', '"', '\'']).len();
        let core = word[lead..].trim_end_matches([')', '"', '\'', ',', ';', ':', '.']);
        if core.starts_with('/') && core[1..].contains('/') {
            out.push_str(&word[..lead]);
            out.push_str("<path>");
            out.push_str(&word[lead + core.len()..]);
        } else {
            out.push_str(word);
        }
    }
    out
}

fn replace_word(text: &str, word: &str, with: &str) -> String {
    if word.is_empty() {
        return text.to_string();
    }
    let is_name_char = |c: char| c.is_alphanumeric() || c == '-' || c == '_' || c == '@';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(word) {
        let before = rest[..i].chars().next_back().or(out.chars().next_back());
        let after = rest[i + word.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(is_name_char) || after.is_some_and(is_name_char) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[i + word.len()..];
    }
    out.push_str(rest);
    out
}

/// The folded host set of `hosts` (`h[01-03]`); a plain comma list should a name not be a
/// plain host name (it always is: the names come from a host set or are `localhost`).
pub fn fold_hosts<'a>(hosts: impl IntoIterator<Item = &'a str> + Clone) -> String {
    match HostSet::from_names(hosts.clone()) {
        Ok(set) => set.fold(),
        Err(_) => hosts.into_iter().collect::<Vec<_>>().join(","),
    }
}

/// The end-of-run summary: one line per reason of failure with the folded set of the hosts
/// that failed for it (`h[03,07]: exit code 1`), in the order of each reason's first host.
/// A reason shared by several hosts is written with `<host>` for each host's own name.
pub fn failure_summary(reports: &[HostReport]) -> Vec<String> {
    let mut groups: Vec<(String, Vec<&HostReport>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in reports {
        let Some(reason) = r.failure() else { continue };
        let key = without_host(&reason, &r.host);
        match index.get(&key) {
            Some(&i) => groups[i].1.push(r),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![r]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(key, members)| {
            let hosts = fold_hosts(members.iter().map(|r| r.host.as_str()));
            let reason = match members.as_slice() {
                [one] => one.failure().unwrap_or_default(),
                _ => key,
            };
            format!("{hosts}: {reason}")
        })
        .collect()
}

/// The separator line of a gathered group's header, as clubak and dshbak draw it.
const SEPARATOR: &str = "---------------";

/// `-b`: the reports grouped by identical stdout, stderr and end; each group once, under a
/// header with its folded host set, its count when more than one, and its status when not a
/// success. Output to `out`, error output to `err`, both flushed after each group so that a
/// terminal shows them in order. Groups are ordered by exit code, then larger first, then by
/// their first host.
pub fn write_gathered(
    out: &mut impl Write,
    err: &mut impl Write,
    reports: &[HostReport],
) -> io::Result<()> {
    let mut groups: Vec<Vec<&HostReport>> = Vec::new();
    let mut index: HashMap<(&[u8], &[u8], String), usize> = HashMap::new();
    for r in reports {
        let key = r.gather_key();
        match index.get(&key) {
            Some(&i) => groups[i].push(r),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![r]);
            }
        }
    }
    // Stable: equal keys keep the order of their first host.
    groups.sort_by_key(|g| (g[0].exit_code(), std::cmp::Reverse(g.len())));
    for group in groups {
        let first = group[0];
        let hosts = fold_hosts(group.iter().map(|r| r.host.as_str()));
        let count = if group.len() > 1 {
            format!(" ({})", group.len())
        } else {
            String::new()
        };
        let status = match first.failure() {
            None => String::new(),
            Some(_) if group.len() > 1 => {
                format!(": {}", first.gather_key().2)
            }
            Some(reason) => format!(": {reason}"),
        };
        writeln!(out, "{SEPARATOR}\n{hosts}{count}{status}\n{SEPARATOR}")?;
        write_block(out, &first.stdout)?;
        out.flush()?;
        write_block(err, &first.stderr)?;
        err.flush()?;
    }
    Ok(())
}

/// `data` as is, with a newline added if its last line has none.
fn write_block(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    out.write_all(data)?;
    if !data.is_empty() && !data.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str, stdout: &str, code: i32) -> HostReport {
        HostReport::new(
            host,
            Ok(Output {
                status: ExitStatus::Code(code),
                stdout: stdout.as_bytes().to_vec(),
                stderr: Vec::new(),
                started: Started::Yes,
            }),
            Duration::from_millis(1500),
        )
    }

    fn connect_error(host: &str) -> HostReport {
        HostReport::new(
            host,
            Err(Error::Connect {
                endpoint: host.into(),
                message: format!("ssh: Could not resolve hostname {host}: no such name"),
            }),
            Duration::ZERO,
        )
    }

    #[test]
    fn json_keeps_text_as_text_and_other_bytes_in_base64() {
        let mut r = ok("h1", "hello\n", 0);
        r.stderr = vec![0xff, 0xfe, b'\n'];
        let v = r.to_json();
        assert_eq!(v["host"], "h1");
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["signal"], Value::Null);
        assert_eq!(v["duration_s"], 1.5);
        assert_eq!(v["stdout"], "hello\n");
        assert!(v.get("stdout_base64").is_none());
        assert_eq!(v["stderr"], Value::Null);
        assert_eq!(
            BASE64.decode(v["stderr_base64"].as_str().unwrap()).unwrap(),
            [0xff, 0xfe, b'\n']
        );
        assert_eq!(v["failure"], Value::Null);

        let v = ok("h2", "", 3).to_json();
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["failure"]["kind"], "exited");
        assert_eq!(v["failure"]["command_ran"], "ran");
        assert_eq!(v["failure"]["message"], "exit code 3");

        let v = connect_error("h3").to_json();
        assert_eq!(v["exit_code"], Value::Null);
        assert_eq!(v["failure"]["kind"], "connect");
        assert_eq!(v["failure"]["command_ran"], "not_started");
        let v = HostReport::interrupted("h4").to_json();
        assert_eq!(v["failure"]["kind"], "interrupted");
        assert_eq!(v["failure"]["command_ran"], "not_started");
    }

    #[test]
    fn the_summary_folds_hosts_by_reason() {
        let reports = [
            ok("h01", "", 0),
            ok("h03", "", 1),
            ok("h04", "", 2),
            ok("h07", "", 1),
            connect_error("db1"),
            connect_error("db2"),
            connect_error("web"),
        ];
        assert_eq!(
            failure_summary(&reports),
            [
                "h[03,07]: exit code 1",
                "h04: exit code 2",
                "db[1-2],web: cannot connect to <host>: ssh: Could not resolve hostname \
                 <host>: no such name",
            ]
        );
        // A reason of one host keeps its name.
        assert_eq!(
            failure_summary(&reports[4..5]),
            ["db1: cannot connect to db1: ssh: Could not resolve hostname db1: no such name"]
        );
        assert!(failure_summary(&reports[..1]).is_empty());
    }

    #[test]
    fn only_whole_host_names_are_taken_out() {
        assert_eq!(
            without_host("to h1: h10 h1.", "h1"),
            "to <host>: h10 <host>."
        );
        assert_eq!(
            without_host("root@db1 refused db1", "root@db1"),
            "<host> refused <host>"
        );
        assert_eq!(without_host("xh1 h1x", "h1"), "xh1 h1x");
        assert_eq!(
            without_host("master on /tmp/a/sX1 failed (see /tmp/a/sX1.log).", "h"),
            "master on <path> failed (see <path>)."
        );
        assert_eq!(without_host("a /b and (/c/d)", "h"), "a /b and (<path>)");
    }

    #[test]
    fn gathering_groups_identical_output_and_status() {
        let reports = [
            ok("h1", "same\n", 0),
            ok("h2", "other", 0),
            ok("h3", "same\n", 0),
            ok("h4", "same\n", 1),
            ok("h5", "same\n", 0),
        ];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        write_gathered(&mut out, &mut err, &reports).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "---------------\nh[1,3,5] (3)\n---------------\nsame\n\
             ---------------\nh2\n---------------\nother\n\
             ---------------\nh4: exit code 1\n---------------\nsame\n"
        );
        assert!(err.is_empty());
    }
}
