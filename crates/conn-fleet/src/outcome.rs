//! How each host of a run ended ([`HostEnd`]) and what the whole run says ([`RunReport`]):
//! failures folded by reason, identical results grouped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use conn_core::{Error, ExitStatus, Output, Started};
use conn_hostset::HostSet;

use crate::gather::Gathered;

/// A host of a run: its place in the run's order and its name as given (`host`, `user@host`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Host {
    /// Position in the run (the order the hosts were given in).
    pub index: usize,
    /// The name as given.
    pub name: String,
}

/// Why a host never started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The run was cancelled (a signal, say) before this host's turn.
    Cancelled,
    /// Fail-fast: another host failed first.
    FailFast,
}

/// How a host's work ended. Cheap to clone (the error is shared).
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It ran to its end with this status (success or not); `Output::started` says whether the
    /// status is surely the command's own. Its output went to the handler (and, gathered, to
    /// [`HostEnd::gathered`]), not into the `Output`.
    Exited(Output),
    /// conn could not run it to its end (`Error::started` says whether it may have run).
    Failed(Arc<Error>),
    /// It never started.
    Skipped(Skip),
    /// Fail-fast ended it while it ran, because another host failed first. The error is the
    /// cancellation it saw ([`Error::started`] says whether the command may have run).
    Stopped(Arc<Error>),
}

/// The retries of one host, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retried {
    /// Sessions the server refused (its `MaxSessions`), retried after a short wait.
    pub refused: u64,
    /// Attempts that never started (a master that died or could not start), tried again.
    pub not_started: u64,
    /// Attempts of an idempotent command that may have run, run again.
    pub may_have_run: u64,
}

impl std::ops::AddAssign for Retried {
    fn add_assign(&mut self, other: Retried) {
        self.refused += other.refused;
        self.not_started += other.not_started;
        self.may_have_run += other.may_have_run;
    }
}

/// How one host ended. Cheap to clone (the error and the gathered output are shared).
#[derive(Clone, Debug)]
pub struct HostEnd {
    /// The host.
    pub host: Host,
    /// How its work ended.
    pub outcome: Outcome,
    /// From the moment a worker took the host to its end, retries included.
    pub duration: Duration,
    /// What the pool tried again for it.
    pub retried: Retried,
    /// Its output, when the run gathers.
    pub gathered: Option<Arc<Gathered>>,
}

impl HostEnd {
    /// Whether the work succeeded (exit code 0).
    pub fn is_success(&self) -> bool {
        matches!(&self.outcome, Outcome::Exited(out) if out.status.success())
    }

    /// The command's own status, if it ran to its end.
    pub fn status(&self) -> Option<ExitStatus> {
        match &self.outcome {
            Outcome::Exited(out) => Some(out.status),
            _ => None,
        }
    }

    /// Whether the command started ([`Started`]): for an exit, `Output::started`; for a
    /// failure, `Error::started`; never for a skipped host.
    pub fn started(&self) -> Started {
        match &self.outcome {
            Outcome::Exited(out) => out.started,
            Outcome::Failed(e) | Outcome::Stopped(e) => e.started(),
            Outcome::Skipped(_) => Started::No,
        }
    }

    /// A short, stable name of how it ended when it did not succeed: `exited` (a non-zero
    /// code), `signal`, the error's [`Error::kind`], `interrupted` (skipped by a cancel),
    /// `skipped` (not started, by fail-fast) or `stopped` (ended, by fail-fast); `None` on
    /// success.
    pub fn failure_kind(&self) -> Option<&'static str> {
        match &self.outcome {
            Outcome::Exited(out) if out.status.success() => None,
            Outcome::Exited(out) => Some(match out.status {
                ExitStatus::Code(_) => "exited",
                ExitStatus::Signal(_) => "signal",
            }),
            Outcome::Failed(e) => Some(e.kind()),
            Outcome::Skipped(Skip::Cancelled) => Some("interrupted"),
            Outcome::Skipped(Skip::FailFast) => Some("skipped"),
            Outcome::Stopped(_) => Some("stopped"),
        }
    }

    /// Why it did not succeed, one line (`exit code 1`, `signal 9`, the error); `None` on
    /// success.
    pub fn failure(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Exited(out) if out.status.success() => None,
            Outcome::Exited(out) => Some(out.status.to_string()),
            Outcome::Failed(e) => Some(one_line(&e.to_string())),
            Outcome::Skipped(Skip::Cancelled) => Some("not started: interrupted".into()),
            Outcome::Skipped(Skip::FailFast) => {
                Some("not started: another host failed first (fail-fast)".into())
            }
            Outcome::Stopped(_) => Some("ended: another host failed first (fail-fast)".into()),
        }
    }

    /// [`HostEnd::failure`] with what differs from host to host for the same failure taken
    /// out ([`without_host`]): hosts that failed the same way read the same.
    pub fn reason(&self) -> Option<String> {
        self.failure().map(|f| without_host(&f, &self.host.name))
    }
}

/// What a whole run says.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Every host's end, in the run's order.
    pub hosts: Vec<HostEnd>,
    /// Whether the run was cancelled (a signal, a dropped event iterator, fail-fast).
    pub cancelled: bool,
}

impl RunReport {
    /// How many hosts did not succeed.
    pub fn failed(&self) -> usize {
        self.hosts.iter().filter(|h| !h.is_success()).count()
    }

    /// What the pools tried again, over all hosts.
    pub fn retried(&self) -> Retried {
        let mut sum = Retried::default();
        for h in &self.hosts {
            sum += h.retried;
        }
        sum
    }

    /// One line per reason of failure with the folded set of the hosts that failed for it
    /// (`("h[03,07]", "exit code 1")`), in the order of each reason's first host. A reason
    /// shared by several hosts is written with `<host>` for each host's own name; one host's
    /// keeps its name.
    pub fn failures_by_reason(&self) -> Vec<(String, String)> {
        let mut groups: Vec<(String, Vec<&HostEnd>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for h in &self.hosts {
            let Some(key) = h.reason() else { continue };
            match index.get(&key) {
                Some(&i) => groups[i].1.push(h),
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![h]));
                }
            }
        }
        groups
            .into_iter()
            .map(|(key, members)| {
                let hosts = fold_hosts(members.iter().map(|h| h.host.name.as_str()));
                let reason = match members.as_slice() {
                    [one] => one.failure().unwrap_or_default(),
                    _ => key,
                };
                (hosts, reason)
            })
            .collect()
    }

    /// The hosts whose output (stdout, stderr) and end are identical, grouped, in the order
    /// clush prints them: by exit code (successes first), then larger groups first, then by
    /// their first host. Outputs are compared as lines ([`Kept::lines_digest`]: a last line
    /// without a newline is the same line with one). Hosts without gathered output group by
    /// their end alone.
    ///
    /// [`Kept::lines_digest`]: crate::Kept::lines_digest
    pub fn groups(&self) -> Vec<Group> {
        self.grouped(true)
    }

    /// [`RunReport::groups`] by stdout and end alone, whatever the hosts wrote on stderr
    /// (clush's `-b` and `--diff`, which stream stderr as it comes).
    pub fn groups_by_stdout(&self) -> Vec<Group> {
        self.grouped(false)
    }

    fn grouped(&self, with_stderr: bool) -> Vec<Group> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut index: HashMap<([u8; 32], [u8; 32], String), usize> = HashMap::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let (out, err) = match &h.gathered {
                Some(g) if with_stderr => (g.stdout.lines_digest(), g.stderr.lines_digest()),
                Some(g) => (g.stdout.lines_digest(), [0; 32]),
                None => ([0; 32], [0; 32]),
            };
            let key = (out, err, h.reason().unwrap_or_default());
            match index.get(&key) {
                Some(&g) => groups[g].push(i),
                None => {
                    index.insert(key, groups.len());
                    groups.push(vec![i]);
                }
            }
        }
        let code = |i: usize| exit_rank(&self.hosts[i]);
        // Stable: equal keys keep the order of their first host.
        groups.sort_by_key(|g| (code(g[0]), std::cmp::Reverse(g.len())));
        groups
            .into_iter()
            .map(|members| Group {
                folded: fold_hosts(members.iter().map(|&i| self.hosts[i].host.name.as_str())),
                members,
            })
            .collect()
    }
}

/// Successes first, then by exit code, failures of conn's own last.
fn exit_rank(h: &HostEnd) -> (u8, i32) {
    match &h.outcome {
        Outcome::Exited(out) => match out.status {
            ExitStatus::Code(c) => (0, c),
            ExitStatus::Signal(s) => (0, 128 + s),
        },
        Outcome::Failed(_) => (1, 0),
        Outcome::Stopped(_) | Outcome::Skipped(_) => (2, 0),
    }
}

/// Hosts with identical results ([`RunReport::groups`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Indices into [`RunReport::hosts`], in the run's order.
    pub members: Vec<usize>,
    /// The members' names folded into one host set (`web[01-04,06]`).
    pub folded: String,
}

/// The folded host set of `hosts` (`h[01-03]`); a plain comma list should a name not be a host
/// name.
pub fn fold_hosts<'a>(hosts: impl IntoIterator<Item = &'a str> + Clone) -> String {
    match HostSet::from_names(hosts.clone()) {
        Ok(set) => set.fold(),
        Err(_) => hosts.into_iter().collect::<Vec<_>>().join(","),
    }
}

/// Folds a (possibly multi-line) message into one line: lines joined with " | ", blank lines
/// and surrounding whitespace dropped.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `message` with what differs from host to host for the same failure taken out, so that
/// hosts failing the same way read the same: the host's name (and, for `user@host`, the bare
/// host) becomes `<host>`, only as a whole name; an absolute path (a socket, a log file: their
/// names are per host) becomes `<path>`; a pid (`pid 4242`) becomes `pid <n>`.
pub fn without_host(message: &str, host: &str) -> String {
    let mut out = replace_word(message, host, "<host>");
    if let Some((_, bare)) = host.split_once('@') {
        out = replace_word(&out, bare, "<host>");
    }
    without_pids(&without_paths(&out))
}

/// `pid N` written `pid <n>`: masters of different hosts have different pids.
fn without_pids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("pid ") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push_str("<n>");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn end(name: &str, index: usize, outcome: Outcome) -> HostEnd {
        HostEnd {
            host: Host {
                index,
                name: name.into(),
            },
            outcome,
            duration: Duration::ZERO,
            retried: Retried::default(),
            gathered: None,
        }
    }

    fn exited(code: i32) -> Outcome {
        Outcome::Exited(Output {
            status: ExitStatus::Code(code),
            stdout: Vec::new(),
            stderr: Vec::new(),
            started: Started::Yes,
        })
    }

    fn connect_error(host: &str) -> Outcome {
        Outcome::Failed(Arc::new(Error::Connect {
            endpoint: host.into(),
            message: format!("ssh: Could not resolve hostname {host}: no such name"),
        }))
    }

    #[test]
    fn the_summary_folds_hosts_by_reason() {
        let report = RunReport {
            hosts: vec![
                end("h01", 0, exited(0)),
                end("h03", 1, exited(1)),
                end("h04", 2, exited(2)),
                end("h07", 3, exited(1)),
                end("db1", 4, connect_error("db1")),
                end("db2", 5, connect_error("db2")),
                end("web", 6, connect_error("web")),
            ],
            cancelled: false,
        };
        assert_eq!(
            report.failures_by_reason(),
            [
                ("h[03,07]".to_string(), "exit code 1".to_string()),
                ("h04".to_string(), "exit code 2".to_string()),
                (
                    "db[1-2],web".to_string(),
                    "cannot connect to <host>: ssh: Could not resolve hostname <host>: no such \
                     name"
                        .to_string()
                ),
            ]
        );
        assert_eq!(report.failed(), 6);
    }

    #[test]
    fn only_whole_host_names_paths_and_pids_are_taken_out() {
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
        assert_eq!(
            without_host("the ssh master (pid 4242, x) died", "h"),
            "the ssh master (pid <n>, x) died"
        );
    }

    #[test]
    fn groups_follow_clush_s_order() {
        let report = RunReport {
            hosts: vec![
                end("h1", 0, exited(1)),
                end("h2", 1, exited(0)),
                end("h3", 2, exited(0)),
                end("h4", 3, exited(1)),
                end("h5", 4, exited(1)),
                end("h6", 5, exited(0)),
                end("h7", 6, exited(0)),
            ],
            cancelled: false,
        };
        let groups: Vec<String> = report.groups().into_iter().map(|g| g.folded).collect();
        assert_eq!(groups, ["h[2-3,6-7]", "h[1,4-5]"]);
    }
}
