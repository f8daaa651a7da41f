//! [`LeaseManager`] and [`Lease`].

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::MAX_CONTROL_PATH_LEN;
use crate::error::LeaseError;
use crate::layout::{
    Candidate, Dirs, Folder, LockedFile, NAME_LEN, create_lock_file, ensure_private_dir, lstat,
    namespace_dir_name, random_name, still_linked,
};

/// How many fresh names [`LeaseManager::acquire`] tries before giving up. A try fails only
/// when the random name collides with an existing entry (odds 2⁻⁶⁴ per entry) or when another
/// acquirer locks the brand-new lock file first, so running out means something is broken.
const CREATE_ATTEMPTS: usize = 64;

/// How many times [`LeaseManager::acquire`] scans `free/` again, after `free/` and `used/`,
/// while names are seen moving.
const RESCANS: usize = 3;

/// Hands out exclusive leases on socket names of one namespace under a root directory.
///
/// The layout is `<root>/<ns>/{c,free,used}`: sockets live in `c/`, and an empty lock file of
/// the same name sits in `free/` (nobody holds the name) or `used/` (somebody does, or did and
/// crashed). Whoever holds the `flock(2)` on the lock file owns the name; the folders are only
/// an index that makes finding a free name cheap. See `docs/leases.md` for the state machine.
///
/// A manager is cheap to clone and may be shared between threads. Every
/// [`acquire`](Self::acquire) opens its own file descriptor, and `flock` locks belong to the
/// open file description, so two leases never share a name even within one process.
#[derive(Debug, Clone)]
pub struct LeaseManager {
    root: PathBuf,
    dirs: Dirs,
    ttl: Duration,
}

impl LeaseManager {
    /// Creates (mode `0700`) or validates `<root>/<ns>/{c,free,used}`, where `ns` is
    /// [`namespace_dir_name`]`(namespace)`: the first 43 characters of the unpadded URL-safe
    /// base64 of SHA-256(`namespace`). Missing parents of `root` are created `0700` too.
    ///
    /// `ttl` is how long a socket may go unmodified before [`acquire`](Self::acquire) treats
    /// its name as dead and prunes it; use [`ttl_for_control_persist`](crate::ttl_for_control_persist).
    ///
    /// # Errors
    ///
    /// - [`LeaseError::SocketPathTooLong`] when `<root>/<ns>/c/<name>` would exceed
    ///   [`MAX_CONTROL_PATH_LEN`] bytes; checked first, before anything is created.
    /// - [`LeaseError::Symlink`], [`LeaseError::NotADirectory`], [`LeaseError::WrongOwner`],
    ///   [`LeaseError::WrongMode`] when the root, the namespace directory or one of its three
    ///   sub-directories is a symlink, not a directory, not owned by the effective uid, or not
    ///   of mode exactly `0700`. Existing directories are never changed.
    /// - [`LeaseError::Io`] when a directory cannot be created or inspected.
    pub fn new(
        root: impl Into<PathBuf>,
        namespace: &str,
        ttl: Duration,
    ) -> Result<Self, LeaseError> {
        let root = root.into();
        let dirs = Dirs::new(root.join(namespace_dir_name(namespace)));
        check_socket_path_len(&root, &dirs.sockets)?;
        let manager = Self { root, dirs, ttl };
        manager.ensure_dirs()?;
        Ok(manager)
    }

    fn ensure_dirs(&self) -> Result<(), LeaseError> {
        ensure_private_dir(&self.root, true)?;
        for dir in [
            &self.dirs.ns,
            &self.dirs.sockets,
            &self.dirs.free,
            &self.dirs.used,
        ] {
            ensure_private_dir(dir, false)?;
        }
        Ok(())
    }

    /// The root (socket) directory this manager was made with.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<ns>`: this namespace's directory.
    pub fn namespace_dir(&self) -> &Path {
        &self.dirs.ns
    }

    /// `<root>/<ns>/c`: where the sockets of this namespace live.
    pub fn socket_dir(&self) -> &Path {
        &self.dirs.sockets
    }

    /// The pruning TTL this manager was made with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes an exclusive lease on a socket name of this namespace. Never blocks: every lock
    /// is tried with `LOCK_EX|LOCK_NB`.
    ///
    /// 1. Scan `free/` for a lock file it can open and lock; move it to `used/` under the lock.
    /// 2. Else scan `used/` for an unlocked lock file (left by a process that died while it
    ///    held the name) and salvage it in place.
    /// 3. Else, if names were seen moving (a `free/` entry locked by someone, or an entry that
    ///    vanished between listing and opening), scan `free/` again, up to 3 times: a name
    ///    released meanwhile is better than a new one (a new name means a new ssh master).
    ///    `used/` is listed before `free/` for the same reason.
    /// 4. Else make a fresh random name: give it up if `used/` or `c/` already has it, else
    ///    create its lock file in `free/` (`O_CREAT|O_EXCL`, mode `0600`), lock it, move it to
    ///    `used/`.
    ///
    /// During 1 to 3, a locked candidate whose socket in `c/` is missing, a symlink, or older
    /// than the TTL is pruned (socket and lock file deleted while the lock is held) and the
    /// scan goes on. Lock files that are symlinks or not regular files are skipped, never
    /// followed. A namespace directory deleted since [`new`](Self::new) is created again.
    ///
    /// # Errors
    ///
    /// [`LeaseError::Io`] when a folder cannot be listed, a lock file cannot be created or
    /// renamed, or no fresh name could be made; the security errors of [`new`](Self::new) when
    /// the folders had to be created again and something is now wrong with them.
    pub fn acquire(&self) -> Result<Lease, LeaseError> {
        // used/ is listed before free/: a name released between the two listings then shows
        // up in free/'s (a listing is a snapshot, and a release moves used/ -> free/).
        let used = self.dirs.list(Folder::Used)?;
        let free = self.dirs.list(Folder::Free)?;
        let (lease, mut moving) = self.try_all(Folder::Free, free)?;
        if let Some(lease) = lease {
            return Ok(lease);
        }
        let (lease, moved) = self.try_all(Folder::Used, used)?;
        if let Some(lease) = lease {
            return Ok(lease);
        }
        moving |= moved;
        // Names moved while we tried them: one may have been released into free/ behind us.
        // Look again rather than make a new name (which costs a new ssh master).
        for _ in 0..RESCANS {
            if !moving {
                break;
            }
            let (lease, moved) = self.try_all(Folder::Free, self.dirs.list(Folder::Free)?)?;
            if let Some(lease) = lease {
                return Ok(lease);
            }
            moving = moved;
        }
        self.create(&mut random_name)
    }

    /// Tries the candidates `names` of `folder` in turn. Returns the lease taken, if any, and
    /// whether names were seen moving: a candidate that vanished between listing and opening,
    /// or one in `free/` locked by someone (who is taking, releasing or pruning it). A locked
    /// candidate in `used/` is simply held, and does not count.
    fn try_all(
        &self,
        folder: Folder,
        names: Vec<String>,
    ) -> Result<(Option<Lease>, bool), LeaseError> {
        let mut moving = false;
        for name in names {
            match self.dirs.try_candidate(folder, &name, self.ttl) {
                Candidate::Locked(file) => {
                    if let Some(lease) = self.take(file, folder, name)? {
                        return Ok((Some(lease), moving));
                    }
                    moving = true;
                }
                Candidate::Moved => moving = true,
                Candidate::Busy => moving |= folder == Folder::Free,
                Candidate::Pruned | Candidate::Skipped => {}
            }
        }
        Ok((None, moving))
    }

    /// Prunes every lock file in `free/` and `used/` that nobody holds and whose socket is
    /// missing, a symlink or older than the TTL: exactly what [`acquire`](Self::acquire) would
    /// prune when it met them. Returns how many names were removed.
    ///
    /// # Errors
    ///
    /// [`LeaseError::Io`] when a folder cannot be listed.
    pub fn prune(&self) -> Result<usize, LeaseError> {
        crate::inspect::prune_dirs(&self.dirs, self.ttl)
    }

    /// Turns a locked, still-in-place lock file of `folder` into a lease, moving it to `used/`
    /// if it was free. `Ok(None)` when it vanished meanwhile (someone without the lock removed
    /// it).
    fn take(
        &self,
        file: LockedFile,
        folder: Folder,
        name: String,
    ) -> Result<Option<Lease>, LeaseError> {
        let used = self.dirs.used.join(&name);
        let free = self.dirs.free.join(&name);
        if folder == Folder::Free {
            match fs::rename(&free, &used) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    return Err(LeaseError::io(
                        format!("cannot move {} to {}", free.display(), used.display()),
                        e,
                    ));
                }
            }
        } else {
            tracing::debug!(
                "salvaging lease {name} in {}: left unlocked in used/ by a process that died",
                self.dirs.ns.display()
            );
        }
        Ok(Some(Lease {
            socket_path: self.dirs.sockets.join(&name),
            used_path: used,
            free_path: free,
            name,
            file: Some(file),
        }))
    }

    /// Step 4 of `acquire`, with the name source injectable for tests.
    fn create(
        &self,
        next_name: &mut dyn FnMut() -> Result<String, LeaseError>,
    ) -> Result<Lease, LeaseError> {
        let mut recreated = false;
        for _ in 0..CREATE_ATTEMPTS {
            let name = next_name()?;
            let used = self.dirs.used.join(&name);
            let socket = self.dirs.sockets.join(&name);
            if lstat(&used)?.is_some() || lstat(&socket)?.is_some() {
                tracing::debug!(
                    "name {name} is taken in {}: trying another",
                    self.dirs.ns.display()
                );
                continue;
            }
            let free = self.dirs.free.join(&name);
            let file = match create_lock_file(&free) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !recreated => {
                    // The namespace directory was removed under us: make it again, once.
                    self.ensure_dirs()?;
                    recreated = true;
                    continue;
                }
                Err(e) => {
                    return Err(LeaseError::io(
                        format!("cannot create lock file {}", free.display()),
                        e,
                    ));
                }
            };
            // Another acquirer scanning free/ may lock (and, seeing no socket, prune) the new
            // file before we lock it; then give the name up.
            let file = match LockedFile::try_lock(file) {
                Ok(locked) if still_linked(locked.file(), &free) => locked,
                Ok(_) | Err(fs::TryLockError::WouldBlock) => continue,
                Err(fs::TryLockError::Error(e)) => {
                    return Err(LeaseError::io(format!("cannot lock {}", free.display()), e));
                }
            };
            if let Some(lease) = self.take(file, Folder::Free, name)? {
                return Ok(lease);
            }
        }
        Err(LeaseError::io(
            format!(
                "cannot make a new lease in {}: {CREATE_ATTEMPTS} fresh names were all taken",
                self.dirs.ns.display()
            ),
            io::ErrorKind::AlreadyExists.into(),
        ))
    }
}

/// Checks that `<sockets>/<name>` fits [`MAX_CONTROL_PATH_LEN`].
fn check_socket_path_len(root: &Path, sockets: &Path) -> Result<(), LeaseError> {
    let path = sockets.join("s".repeat(NAME_LEN));
    let len = path.as_os_str().as_bytes().len();
    if len > MAX_CONTROL_PATH_LEN {
        let fixed = len - root.as_os_str().as_bytes().len();
        return Err(LeaseError::SocketPathTooLong {
            path,
            len,
            limit: MAX_CONTROL_PATH_LEN,
            max_root_len: MAX_CONTROL_PATH_LEN.saturating_sub(fixed),
        });
    }
    Ok(())
}

/// An exclusive lease on one socket name: the open, `flock`ed lock file plus its paths.
///
/// While the lease is held no other process or thread can hold the same name, so the ssh
/// master behind [`socket_path`](Self::socket_path) serves this holder alone.
///
/// [`release`](Self::release) gives the name back; dropping the lease does the same (best
/// effort, errors are logged). If the process dies instead, the kernel drops the lock with the
/// file descriptor and the lock file stays in `used/` unlocked, where the next
/// [`LeaseManager::acquire`] salvages it.
#[derive(Debug)]
pub struct Lease {
    name: String,
    socket_path: PathBuf,
    used_path: PathBuf,
    free_path: PathBuf,
    /// The locked lock file; `None` once released.
    file: Option<LockedFile>,
}

impl Lease {
    /// The socket name: `s` followed by 11 URL-safe base64 characters.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<root>/<ns>/c/<name>`: the ControlPath to give ssh.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// `<root>/<ns>/c/<name>.log`: a companion file for the diagnostics of whatever serves the
    /// socket (an ssh master's `-E` log). Pruning a name removes it with the socket.
    pub fn log_path(&self) -> PathBuf {
        crate::layout::log_path_of(&self.socket_path)
    }

    /// `<root>/<ns>/used/<name>`: where the lock file is while the lease is held.
    pub fn used_path(&self) -> &Path {
        &self.used_path
    }

    /// `<root>/<ns>/free/<name>`: where the lock file goes on release.
    pub fn free_path(&self) -> &Path {
        &self.free_path
    }

    /// Whether the lease is still held (not yet released).
    pub fn is_held(&self) -> bool {
        self.file.is_some()
    }

    /// Sets the socket's modification time to now, so that pruning (which removes names whose
    /// socket is older than the TTL) never removes a live master. A missing socket is fine;
    /// a symlink is touched itself, never followed.
    ///
    /// # Errors
    ///
    /// The OS error of `utimensat(2)` other than "not found".
    pub fn touch_socket(&self) -> io::Result<()> {
        use rustix::fs::{AtFlags, CWD, Timestamps, UTIME_NOW};
        let now = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        };
        let times = Timestamps {
            last_access: now,
            last_modification: now,
        };
        match rustix::fs::utimensat(CWD, &self.socket_path, &times, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the name back: renames the lock file from `used/` to `free/` (a missing file is
    /// harmless) and then unlocks and closes it. Idempotent: later calls do nothing.
    ///
    /// # Errors
    ///
    /// [`LeaseError::Io`] when the rename fails for another reason than a missing file; the
    /// lock is dropped all the same, leaving the lock file unlocked in `used/`, where the next
    /// [`LeaseManager::acquire`] salvages it.
    pub fn release(&mut self) -> Result<(), LeaseError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let result = match fs::rename(&self.used_path, &self.free_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!("lock file {} was already gone", self.used_path.display());
                Ok(())
            }
            Err(e) => Err(LeaseError::io(
                format!(
                    "cannot move {} back to {}",
                    self.used_path.display(),
                    self.free_path.display()
                ),
                e,
            )),
        };
        drop(file);
        result
    }
}

impl Drop for Lease {
    /// Releases the lease if it is still held (best effort: an error is logged). A process
    /// that dies without running this leaves the lock file unlocked in `used/`, which the next
    /// acquire salvages.
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!("releasing lease {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager() -> (tempfile::TempDir, LeaseManager) {
        let tmp = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
        let m = LeaseManager::new(tmp.path().join("r"), "ns", Duration::from_secs(3600)).unwrap();
        (tmp, m)
    }

    /// A child process forked by another thread holds a copy of every descriptor until it
    /// execs (a copy stands in for it here): a released name must still be free at once.
    #[test]
    fn a_released_name_is_free_at_once_while_a_copy_of_its_descriptor_lives() {
        let (_tmp, m) = manager();
        let mut lease = m.acquire().unwrap();
        let name = lease.name().to_owned();
        // A fresh file stands in for the master's socket, so that the name is not pruned.
        fs::write(lease.socket_path(), b"").unwrap();
        let copy = lease.file.as_ref().unwrap().file().try_clone().unwrap();
        lease.release().unwrap();
        let again = m.acquire().unwrap();
        assert_eq!(again.name(), name, "the copy kept the released name locked");
        drop(copy);
    }

    #[test]
    fn create_gives_up_names_taken_in_used_or_c() {
        let (_tmp, m) = manager();
        fs::write(m.dirs.used.join("sUUUUUUUUUUU"), b"").unwrap();
        fs::write(m.dirs.sockets.join("sCCCCCCCCCCC"), b"").unwrap();
        let mut names = ["sUUUUUUUUUUU", "sCCCCCCCCCCC", "sNNNNNNNNNNN"].into_iter();
        let mut tried = 0;
        let lease = m
            .create(&mut || {
                tried += 1;
                Ok(names.next().unwrap().to_owned())
            })
            .unwrap();
        assert_eq!(lease.name(), "sNNNNNNNNNNN");
        assert_eq!(tried, 3);
        // The colliding used/ entry was left alone, and never got a free/ twin.
        assert!(m.dirs.used.join("sUUUUUUUUUUU").exists());
        assert!(!m.dirs.free.join("sUUUUUUUUUUU").exists());
        assert!(!m.dirs.free.join("sCCCCCCCCCCC").exists());
    }

    #[test]
    fn create_fails_cleanly_when_every_name_collides() {
        let (_tmp, m) = manager();
        fs::write(m.dirs.used.join("sUUUUUUUUUUU"), b"").unwrap();
        let err = m.create(&mut || Ok("sUUUUUUUUUUU".to_owned())).unwrap_err();
        assert!(
            err.to_string().contains("fresh names were all taken"),
            "{err}"
        );
    }
}
