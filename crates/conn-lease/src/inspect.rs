//! Looking at a socket directory without taking leases ([`inspect`]), and pruning all its
//! namespaces at once ([`prune`]): the building blocks of a `conn leases` command.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::LeaseError;
use crate::layout::{
    Candidate, Dirs, Folder, LockedFile, check_private_dir, lstat, open_lock_file,
    valid_namespace_dir,
};

/// The state of one lock file, as [`inspect`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryState {
    /// In `free/`: nobody holds the name (its lock is not probed).
    Free,
    /// In `used/` and locked: a live process holds the name.
    Held,
    /// In `used/` and unlocked: its holder died without releasing it; the next acquire
    /// salvages it (or prunes it if its socket is missing or stale).
    Abandoned,
}

/// One lock file of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryReport {
    /// The socket name.
    pub name: String,
    /// Where the lock file is and whether it is locked.
    pub state: EntryState,
    /// The modification time of `c/<name>`, `None` if there is no socket.
    pub socket_modified: Option<SystemTime>,
}

/// What one namespace directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceReport {
    /// The namespace directory, `<root>/<ns>`.
    pub dir: PathBuf,
    /// Its lock files, sorted by name (a name found in both folders appears twice).
    pub entries: Vec<EntryReport>,
    /// Names in `c/` without a lock file in `free/` or `used/`, sorted. Nothing leases them,
    /// so acquire never meets (or prunes) them.
    pub orphan_sockets: Vec<String>,
}

/// Reports every namespace directory under `root`: which names are free, held by a live
/// process, or abandoned by a dead one, and whether each has a socket.
///
/// Read-only: nothing is created, renamed or deleted. `used/` entries are probed with a
/// non-blocking lock that is dropped at once (an acquire running at that instant may skip the
/// entry once, which is harmless). A missing root reports nothing.
///
/// # Errors
///
/// The security errors of [`LeaseManager::new`](crate::LeaseManager::new) when the root, a
/// namespace directory or one of its sub-directories is a symlink, not a directory, owned by
/// another user, or not of mode `0700`; [`LeaseError::Io`] when a directory cannot be listed.
pub fn inspect(root: &Path) -> Result<Vec<NamespaceReport>, LeaseError> {
    let mut reports = Vec::new();
    for dirs in namespaces(root)? {
        let mut entries = Vec::new();
        for name in dirs.list(Folder::Free)? {
            entries.push((name, EntryState::Free));
        }
        for name in dirs.list(Folder::Used)? {
            let path = dirs.used.join(&name);
            let state = match open_lock_file(&path) {
                // Locked only to probe: unlocked at once (`LockedFile`'s drop).
                Ok(file) => match LockedFile::try_lock(file) {
                    Ok(_probe) => EntryState::Abandoned,
                    Err(fs::TryLockError::WouldBlock) => EntryState::Held,
                    Err(fs::TryLockError::Error(e)) => {
                        return Err(LeaseError::io(
                            format!("cannot probe {}", path.display()),
                            e,
                        ));
                    }
                },
                // Released or pruned since we listed it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(LeaseError::io(format!("cannot open {}", path.display()), e));
                }
            };
            entries.push((name, state));
        }
        let mut entries: Vec<EntryReport> = entries
            .into_iter()
            .map(|(name, state)| EntryReport {
                socket_modified: lstat(&dirs.sockets.join(&name))
                    .ok()
                    .flatten()
                    .and_then(|m| m.modified().ok()),
                name,
                state,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let mut orphan_sockets: Vec<String> = list_names(&dirs.sockets)?
            .into_iter()
            .filter(|n| {
                entries
                    .binary_search_by(|e| e.name.as_str().cmp(n))
                    .is_err()
            })
            .collect();
        orphan_sockets.sort();
        reports.push(NamespaceReport {
            dir: dirs.ns,
            entries,
            orphan_sockets,
        });
    }
    reports.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(reports)
}

/// Prunes, in every namespace under `root`, exactly what
/// [`LeaseManager::acquire`](crate::LeaseManager::acquire) would prune when it met it: lock
/// files in `free/` or `used/` that nobody holds and whose socket is missing, a symlink, or
/// older than `ttl` with nothing listening on it (socket, its `.log` and lock file are deleted
/// under the lock). Held names are never
/// touched. Returns how many names were removed; a missing root removes nothing.
///
/// # Errors
///
/// As for [`inspect`].
pub fn prune(root: &Path, ttl: Duration) -> Result<usize, LeaseError> {
    let mut pruned = 0;
    for dirs in namespaces(root)? {
        pruned += prune_dirs(&dirs, ttl)?;
    }
    Ok(pruned)
}

pub(crate) fn prune_dirs(dirs: &Dirs, ttl: Duration) -> Result<usize, LeaseError> {
    let mut pruned = 0;
    for folder in [Folder::Free, Folder::Used] {
        for name in dirs.list(folder)? {
            if let Candidate::Pruned = dirs.try_candidate(folder, &name, ttl) {
                pruned += 1;
            }
        }
    }
    Ok(pruned)
}

/// The namespace directories under `root`, each checked like [`LeaseManager::new`] does
/// (without creating anything).
fn namespaces(root: &Path) -> Result<Vec<Dirs>, LeaseError> {
    let Some(meta) = lstat(root)? else {
        return Ok(Vec::new());
    };
    check_private_dir(root, &meta)?;
    let entries = fs::read_dir(root)
        .map_err(|e| LeaseError::io(format!("cannot list {}", root.display()), e))?;
    let mut all = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| LeaseError::io(format!("cannot list {}", root.display()), e))?;
        if !valid_namespace_dir(&entry.file_name()) {
            continue;
        }
        let dirs = Dirs::new(entry.path());
        for dir in [&dirs.ns, &dirs.sockets, &dirs.free, &dirs.used] {
            if let Some(meta) = lstat(dir)? {
                check_private_dir(dir, &meta)?;
            }
        }
        all.push(dirs);
    }
    Ok(all)
}

/// The name-shaped entries of `dir`, whatever their type; a missing `dir` lists nothing.
fn list_names(dir: &Path) -> Result<Vec<String>, LeaseError> {
    Ok(crate::layout::list_entries(dir)?
        .into_iter()
        .map(|e| e.name)
        .collect())
}
