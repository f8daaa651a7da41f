//! `conn leases`: what a socket directory holds, per namespace, on top of
//! [`conn_lease::inspect`] and [`conn_lease::prune`], plus a liveness probe of each socket.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use conn_lease::{EntryState, NamespaceReport, inspect, prune, ttl_for_control_persist};
use serde_json::json;

use crate::args::LeasesArgs;
use crate::output::Failure;

/// What is behind a name's socket in `c/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Master {
    /// A master holds the socket.
    Live,
    /// A socket file nobody listens on: the master died.
    Dead,
    /// No socket, or something that is not a socket.
    None,
    /// The probe failed for another reason (e.g. out of file descriptors): nothing is known.
    Unknown,
}

impl Master {
    fn as_str(self) -> &'static str {
        match self {
            Master::Live => "live",
            Master::Dead => "dead",
            Master::None => "none",
            Master::Unknown => "unknown",
        }
    }
}

/// The counts of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Names nobody leases.
    pub free: usize,
    /// Names leased by a live process.
    pub held: usize,
    /// Names leased by a process that died (salvaged by the next acquire).
    pub abandoned: usize,
    /// Names whose socket has a live master.
    pub live: usize,
    /// Names whose socket exists but nobody listens on it.
    pub dead: usize,
    /// Sockets in `c/` without a lock file.
    pub orphans: usize,
}

/// Runs `conn leases`; returns the exit code.
pub fn main(args: &LeasesArgs) -> Result<u8, Failure> {
    let root = match &args.socket_dir {
        Some(dir) => std::path::absolute(dir)
            .map_err(|e| Failure::usage(format!("socket directory {}: {e}", dir.display())))?,
        None => default_socket_dir()?,
    };
    let mut out = io::stdout().lock();
    let pruned = if args.prune {
        let ttl = ttl_for_control_persist(Duration::from_secs(args.control_persist));
        Some(prune(&root, ttl).map_err(|e| Failure::other(e.to_string()))?)
    } else {
        None
    };
    let reports = inspect(&root).map_err(|e| Failure::other(e.to_string()))?;
    let result = if args.json {
        writeln!(out, "{}", to_json(&root, &reports, pruned))
    } else {
        write_text(&mut out, &root, &reports, pruned)
    };
    result
        .or_else(crate::output::ignore_broken_pipe)
        .map_err(|e| Failure::other(format!("writing the report: {e}")))?;
    Ok(0)
}

/// conn-openssh's default socket directory, asked from conn-openssh itself so that the two
/// never disagree.
fn default_socket_dir() -> Result<PathBuf, Failure> {
    conn_openssh::default_socket_dir()
        .map_err(|e| Failure::other(format!("cannot find the default socket directory: {e}")))
}

/// The counts of `report`, probing each name's socket.
pub fn counts(report: &NamespaceReport) -> (Counts, Vec<(String, EntryState, Master)>) {
    let mut c = Counts {
        orphans: report.orphan_sockets.len(),
        ..Counts::default()
    };
    let mut entries = Vec::new();
    for e in &report.entries {
        match e.state {
            EntryState::Free => c.free += 1,
            EntryState::Held => c.held += 1,
            EntryState::Abandoned => c.abandoned += 1,
        }
        let master = probe(&report.dir.join("c").join(&e.name));
        match master {
            Master::Live => c.live += 1,
            Master::Dead => c.dead += 1,
            Master::None | Master::Unknown => {}
        }
        entries.push((e.name.clone(), e.state, master));
    }
    (c, entries)
}

fn state_str(s: EntryState) -> &'static str {
    match s {
        EntryState::Free => "free",
        EntryState::Held => "held",
        EntryState::Abandoned => "abandoned",
    }
}

fn namespace_name(report: &NamespaceReport) -> String {
    report
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn write_text(
    out: &mut impl Write,
    root: &Path,
    reports: &[NamespaceReport],
    pruned: Option<usize>,
) -> io::Result<()> {
    if let Some(n) = pruned {
        writeln!(out, "pruned {n} name{}", if n == 1 { "" } else { "s" })?;
    }
    writeln!(
        out,
        "socket directory {}: {} namespace{}",
        root.display(),
        reports.len(),
        if reports.len() == 1 { "" } else { "s" }
    )?;
    if reports.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{:<43}  {:>5} {:>5} {:>9} {:>5} {:>5} {:>7}",
        "namespace", "free", "held", "abandoned", "live", "dead", "orphans"
    )?;
    let now = SystemTime::now();
    for report in reports {
        let (c, entries) = counts(report);
        writeln!(
            out,
            "{:<43}  {:>5} {:>5} {:>9} {:>5} {:>5} {:>7}",
            namespace_name(report),
            c.free,
            c.held,
            c.abandoned,
            c.live,
            c.dead,
            c.orphans
        )?;
        for ((name, state, master), e) in entries.iter().zip(&report.entries) {
            let age = e
                .socket_modified
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| format!(", socket touched {} ago", human(d)))
                .unwrap_or_default();
            let master = match master {
                Master::Live => "live master",
                Master::Dead => "dead master (nothing listens)",
                Master::None => "no socket",
                Master::Unknown => "master unknown (the probe failed)",
            };
            writeln!(out, "  {name}  {:<9}  {master}{age}", state_str(*state))?;
        }
        for name in &report.orphan_sockets {
            writeln!(out, "  {name}  {:<9}  socket without a lock file", "orphan")?;
        }
    }
    Ok(())
}

fn to_json(root: &Path, reports: &[NamespaceReport], pruned: Option<usize>) -> serde_json::Value {
    let namespaces: Vec<_> = reports
        .iter()
        .map(|report| {
            let (c, entries) = counts(report);
            let entries: Vec<_> = entries
                .iter()
                .zip(&report.entries)
                .map(|((name, state, master), e)| {
                    json!({
                        "name": name,
                        "state": state_str(*state),
                        "master": master.as_str(),
                        "socket_modified_unix": e.socket_modified
                            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                            .map(|d| d.as_secs()),
                    })
                })
                .collect();
            json!({
                "namespace": namespace_name(report),
                "dir": report.dir.to_string_lossy(),
                "free": c.free,
                "held": c.held,
                "abandoned": c.abandoned,
                "live": c.live,
                "dead": c.dead,
                "orphan_sockets": report.orphan_sockets,
                "entries": entries,
            })
        })
        .collect();
    json!({
        "socket_dir": root.to_string_lossy(),
        "pruned": pruned,
        "namespaces": namespaces,
    })
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Whether a master listens on `path`, without ever blocking (conn-lease's probe).
pub fn probe(path: &Path) -> Master {
    use conn_lease::SocketState;
    match conn_lease::probe_socket(path) {
        SocketState::Live | SocketState::Busy => Master::Live,
        SocketState::Stale => Master::Dead,
        SocketState::Unknown(_) => Master::Unknown,
        SocketState::Missing | SocketState::NotASocket => Master::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn probe_tells_live_dead_and_missing_sockets_apart() {
        let dir = tempfile::Builder::new()
            .prefix("cl")
            .tempdir_in("/tmp")
            .unwrap();
        let path = dir.path().join("s");
        assert_eq!(probe(&path), Master::None);
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(probe(&path), Master::Live);
        drop(listener); // the file stays, nobody listens
        assert_eq!(probe(&path), Master::Dead);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        assert_eq!(probe(&path), Master::None);
    }

    #[test]
    fn ages_read_like_a_human_wrote_them() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(65)), "1m05s");
        assert_eq!(human(Duration::from_secs(7260)), "2h01m");
    }
}
