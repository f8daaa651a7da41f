//! The on-disk layout `<root>/<ns>/{c,free,used}`: names, directory checks, and the one
//! operation every caller shares, locking a candidate lock file and pruning it when stale.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::error::LeaseError;
use crate::probe::SocketState;

/// Length in bytes of a socket name: `s` + 11 base64 characters of 8 random bytes.
pub const NAME_LEN: usize = 12;

/// Length in bytes of a namespace directory name.
pub const NAMESPACE_DIR_LEN: usize = 43;

/// Sub-directory of a namespace holding the sockets.
pub(crate) const SOCKETS: &str = "c";
/// Sub-directory of a namespace holding the lock files of names nobody holds.
pub(crate) const FREE: &str = "free";
/// Sub-directory of a namespace holding the lock files of names in use (or left by a crash).
pub(crate) const USED: &str = "used";

/// The hashing of namespaces: the unpadded URL-safe base64 of SHA-256(`bytes`), always
/// [`NAMESPACE_DIR_LEN`] (43) characters from `[A-Za-z0-9_-]`.
///
/// Hashing gives every namespace (or part of one, such as an ssh config path or a list of
/// options), however long or odd, a fixed-length, filename-safe form, which keeps socket
/// paths short and of known length. One function, so that every crate hashes alike.
pub fn namespace_hash(bytes: impl AsRef<[u8]>) -> String {
    let s = URL_SAFE_NO_PAD.encode(Sha256::digest(bytes.as_ref()));
    debug_assert_eq!(s.len(), NAMESPACE_DIR_LEN);
    s
}

/// The name of the directory of `namespace` under the root: [`namespace_hash`]`(namespace)`.
pub fn namespace_dir_name(namespace: &str) -> String {
    namespace_hash(namespace)
}

/// A fresh socket name: `s` + unpadded URL-safe base64 of 64 bits from the OS CSPRNG.
pub(crate) fn random_name() -> Result<String, LeaseError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| {
        LeaseError::io(
            "cannot read random bytes from the OS CSPRNG",
            io::Error::other(e.to_string()),
        )
    })?;
    let mut name = String::with_capacity(NAME_LEN);
    name.push('s');
    URL_SAFE_NO_PAD.encode_string(bytes, &mut name);
    debug_assert_eq!(name.len(), NAME_LEN);
    Ok(name)
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `Some(name)` if `file_name` has the shape of a socket name; other entries are never touched.
pub(crate) fn valid_name(file_name: &OsStr) -> Option<&str> {
    let b = file_name.as_bytes();
    if b.len() == NAME_LEN && b[0] == b's' && b[1..].iter().all(|&c| is_b64url(c)) {
        file_name.to_str()
    } else {
        None
    }
}

/// Whether `file_name` has the shape of a namespace directory name.
pub(crate) fn valid_namespace_dir(file_name: &OsStr) -> bool {
    let b = file_name.as_bytes();
    b.len() == NAMESPACE_DIR_LEN && b.iter().all(|&c| is_b64url(c))
}

pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Checks that `meta` (from `lstat`) describes a directory that is not a symlink, is owned by
/// the effective uid and has mode exactly `0700`.
pub(crate) fn check_private_dir(path: &Path, meta: &Metadata) -> Result<(), LeaseError> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(LeaseError::Symlink { path: path.into() });
    }
    if !ft.is_dir() {
        return Err(LeaseError::NotADirectory { path: path.into() });
    }
    let expected = euid();
    if meta.uid() != expected {
        return Err(LeaseError::WrongOwner {
            path: path.into(),
            uid: meta.uid(),
            expected,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o700 {
        return Err(LeaseError::WrongMode {
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

/// Checks an existing socket directory as [`LeaseManager::new`](crate::LeaseManager::new)
/// would, without creating or changing anything: `Ok(false)` when `root` does not exist,
/// `Ok(true)` when it is a real directory (not a symlink) owned by the effective uid with mode
/// exactly `0700`, else the error `new` would give ([`LeaseError::Symlink`],
/// [`LeaseError::NotADirectory`], [`LeaseError::WrongOwner`], [`LeaseError::WrongMode`]).
///
/// For a caller that chooses a directory itself and wants to refuse a bad one early, saying
/// why it chose it. `new` checks again when it runs: this is no substitute.
pub fn check_root(root: &Path) -> Result<bool, LeaseError> {
    match lstat(root)? {
        None => Ok(false),
        Some(meta) => check_private_dir(root, &meta).map(|()| true),
    }
}

/// `lstat(path)`, `Ok(None)` when it does not exist.
pub(crate) fn lstat(path: &Path) -> Result<Option<Metadata>, LeaseError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LeaseError::io(format!("cannot stat {}", path.display()), e)),
    }
}

/// Creates `path` with mode `0700` when missing (with its missing parents if `parents`), then
/// checks it with [`check_private_dir`].
///
/// A directory this call created whose mode the umask reduced below `0700` is set to `0700`
/// through a descriptor opened with `O_NOFOLLOW`; an existing directory is never changed.
pub(crate) fn ensure_private_dir(path: &Path, parents: bool) -> Result<(), LeaseError> {
    if let Some(meta) = lstat(path)? {
        return check_private_dir(path, &meta);
    }
    let created = match DirBuilder::new()
        .recursive(parents)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => true,
        // Another process created it first: check what it made.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            return Err(LeaseError::io(
                format!("cannot create directory {}", path.display()),
                e,
            ));
        }
    };
    let meta = lstat(path)?.ok_or_else(|| {
        LeaseError::io(
            format!("directory {} vanished right after creation", path.display()),
            io::ErrorKind::NotFound.into(),
        )
    })?;
    let mode = meta.mode() & 0o7777;
    if created
        && meta.is_dir()
        && !meta.file_type().is_symlink()
        && meta.uid() == euid()
        && mode != 0o700
        && mode & !0o700 == 0
    {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = rustix::fs::open(path, flags, Mode::empty())
            .map(File::from)
            .map_err(io::Error::from)
            .and_then(|d| {
                d.set_permissions(fs::Permissions::from_mode(0o700))?;
                d.metadata()
            })
            .map_err(|e| LeaseError::io(format!("cannot chmod 700 {}", path.display()), e))?;
        return check_private_dir(path, &dir);
    }
    check_private_dir(path, &meta)
}

/// Opens an existing lock file without following a symlink, without blocking (a FIFO planted
/// in its place must not hang us) and close-on-exec (an ssh master we start must not inherit
/// the lock and keep it alive after we die).
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    Ok(File::from(rustix::fs::open(path, flags, Mode::empty())?))
}

/// A lock file whose `flock` this process holds; dropping it unlocks, then closes.
///
/// Closing alone would not do: a child process that any thread forks (to run ssh, say) shares
/// every open file description until it execs, close-on-exec ones included, so the lock would
/// outlive our close for that while and a name just given back or pruned would look taken to
/// the next acquirer. An explicit unlock releases the lock of the description, whoever else
/// holds a copy of it.
#[derive(Debug)]
pub(crate) struct LockedFile(File);

impl LockedFile {
    /// Takes the lock on `file` without blocking.
    pub(crate) fn try_lock(file: File) -> Result<LockedFile, fs::TryLockError> {
        file.try_lock()?;
        Ok(LockedFile(file))
    }

    /// The locked file.
    pub(crate) fn file(&self) -> &File {
        &self.0
    }
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        // Failure leaves the close to drop the lock, as before.
        let _ = self.0.unlock();
    }
}

/// Creates a new, empty lock file with mode `0600` (`O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`).
pub(crate) fn create_lock_file(path: &Path) -> io::Result<File> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::open(
        path,
        flags,
        Mode::RUSR | Mode::WUSR,
    )?))
}

/// The companion log file of a socket: `<socket>.log`.
pub(crate) fn log_path_of(socket: &Path) -> PathBuf {
    let mut log = socket.as_os_str().to_owned();
    log.push(".log");
    PathBuf::from(log)
}

/// Removes `path` (never following a symlink); a missing file is fine.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `file` (locked by us) is still the inode linked at `path`. It may not be: between
/// our `open` and our lock, its holder may have renamed it away, or a pruner deleted it.
pub(crate) fn still_linked(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(ours), Ok(there)) => ours.dev() == there.dev() && ours.ino() == there.ino(),
        _ => false,
    }
}

/// Which of the two lock-file folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Folder {
    Free,
    Used,
}

/// What became of a candidate lock file.
#[derive(Debug)]
pub(crate) enum Candidate {
    /// Locked, still in place and its socket is fresh: ours now.
    Locked(LockedFile),
    /// Locked, and pruned because its socket was missing or stale (socket and lock file
    /// deleted, lock dropped).
    Pruned,
    /// Locked by someone else (a holder, or another acquirer in the middle of taking,
    /// releasing or pruning it): left alone.
    Busy,
    /// Gone from `<folder>/<name>` since it was listed (moved or pruned by someone else).
    Moved,
    /// A symlink, not a regular file of ours, or otherwise unusable: left alone.
    Skipped,
}

/// The paths of one namespace directory.
#[derive(Debug, Clone)]
pub(crate) struct Dirs {
    pub ns: PathBuf,
    pub sockets: PathBuf,
    pub free: PathBuf,
    pub used: PathBuf,
}

impl Dirs {
    pub fn new(ns: PathBuf) -> Self {
        Self {
            sockets: ns.join(SOCKETS),
            free: ns.join(FREE),
            used: ns.join(USED),
            ns,
        }
    }

    pub fn folder(&self, folder: Folder) -> &Path {
        match folder {
            Folder::Free => &self.free,
            Folder::Used => &self.used,
        }
    }

    /// Why the socket of `name` makes its lease worthless, if it does: missing, a symlink
    /// (never to be followed by ssh), or not modified for longer than `ttl`.
    pub fn stale_reason(&self, name: &str, ttl: Duration) -> Option<&'static str> {
        let socket = self.sockets.join(name);
        match fs::symlink_metadata(&socket) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some("socket is missing"),
            Err(e) => {
                tracing::warn!("cannot stat {}: {e}; keeping its lease", socket.display());
                None
            }
            Ok(m) if m.file_type().is_symlink() => Some("socket is a symlink"),
            Ok(m) => {
                let age = m
                    .modified()
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                match age {
                    // An old socket that something still listens on belongs to a live master
                    // (one made by a process with a longer ControlPersist, or the clock
                    // jumped): never pull it away.
                    Some(age) if age > ttl => match crate::probe::probe_socket(&socket) {
                        SocketState::Live | SocketState::Busy | SocketState::Unknown(_) => None,
                        _ => Some("socket is older than the TTL and nothing listens on it"),
                    },
                    _ => None,
                }
            }
        }
    }

    /// Tries to lock `<folder>/<name>` without blocking. When locked and still in place,
    /// prunes it if its socket is missing or stale (socket first, then the lock file, both
    /// under the lock), else hands the locked file back.
    pub fn try_candidate(&self, folder: Folder, name: &str, ttl: Duration) -> Candidate {
        let path = self.folder(folder).join(name);
        let file = match open_lock_file(&path) {
            Ok(f) => f,
            Err(e) => {
                match Errno::from_io_error(&e) {
                    // Moved or pruned by someone else since we listed it.
                    Some(Errno::NOENT) => return Candidate::Moved,
                    Some(Errno::LOOP) => {
                        tracing::warn!("skipping lock file {}: it is a symlink", path.display());
                    }
                    _ => tracing::warn!("skipping lock file {}: {e}", path.display()),
                }
                return Candidate::Skipped;
            }
        };
        let file = match LockedFile::try_lock(file) {
            Ok(locked) => locked,
            Err(fs::TryLockError::WouldBlock) => return Candidate::Busy,
            Err(fs::TryLockError::Error(e)) => {
                tracing::warn!("skipping lock file {}: cannot lock it: {e}", path.display());
                return Candidate::Skipped;
            }
        };
        if !still_linked(file.file(), &path) {
            return Candidate::Moved;
        }
        match file.file().metadata() {
            Ok(m) if m.is_file() && m.uid() == euid() => {}
            Ok(m) => {
                tracing::warn!(
                    "skipping lock file {}: not a regular file owned by uid {} (uid {})",
                    path.display(),
                    euid(),
                    m.uid()
                );
                return Candidate::Skipped;
            }
            Err(e) => {
                tracing::warn!("skipping lock file {}: {e}", path.display());
                return Candidate::Skipped;
            }
        }
        if let Some(reason) = self.stale_reason(name, ttl) {
            tracing::debug!("pruning lease {name} in {}: {reason}", self.ns.display());
            let socket = self.sockets.join(name);
            if let Err(e) = remove_if_present(&socket)
                .and_then(|()| remove_if_present(&log_path_of(&socket)))
                .and_then(|()| remove_if_present(&path))
            {
                tracing::warn!("cannot prune lease {name} in {}: {e}", self.ns.display());
                return Candidate::Skipped;
            }
            return Candidate::Pruned;
        }
        Candidate::Locked(file)
    }

    /// The valid names listed in `folder`, skipping entries that are symlinks or otherwise not
    /// regular files (as reported by the directory listing). A missing folder lists nothing.
    pub fn list(&self, folder: Folder) -> Result<Vec<String>, LeaseError> {
        let mut names = Vec::new();
        for entry in list_entries(self.folder(folder))? {
            match entry.file_type() {
                Ok(ft) if ft.is_file() => names.push(entry.name),
                Ok(ft) if ft.is_symlink() => tracing::warn!(
                    "skipping lock file {}: it is a symlink",
                    entry.entry.path().display()
                ),
                _ => tracing::warn!(
                    "skipping {}: not a regular file",
                    entry.entry.path().display()
                ),
            }
        }
        Ok(names)
    }
}

/// A directory entry whose name is a valid lease name.
pub(crate) struct NamedEntry {
    pub name: String,
    entry: fs::DirEntry,
}

impl NamedEntry {
    /// The entry's type as the directory listing reports it (no `stat`, no link followed).
    pub fn file_type(&self) -> io::Result<fs::FileType> {
        self.entry.file_type()
    }
}

/// The entries of `dir` whose names are valid lease names, whatever their type; a missing
/// `dir` lists nothing.
pub(crate) fn list_entries(dir: &Path) -> Result<Vec<NamedEntry>, LeaseError> {
    let listing_error = |e| LeaseError::io(format!("cannot list {}", dir.display()), e);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(listing_error(e)),
    };
    let mut named = Vec::new();
    for entry in entries {
        let entry = entry.map_err(listing_error)?;
        if let Some(name) = valid_name(&entry.file_name()) {
            named.push(NamedEntry {
                name: name.to_owned(),
                entry,
            });
        }
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_dir_is_first_43_chars_of_urlsafe_sha256() {
        // Reference values computed independently with Python's hashlib + base64.
        assert_eq!(
            namespace_dir_name(""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(
            namespace_dir_name("src#alice@host#default"),
            "hHi3p8kjkLZ-6nVtQXv3HT3Lj1PiL2oR-RorRsBi9Hc"
        );
        assert!(valid_namespace_dir(OsStr::new(&namespace_dir_name("x"))));
        assert_eq!(
            namespace_hash(b"src#alice@host#default"),
            namespace_dir_name("src#alice@host#default")
        );
        // Bytes that are no UTF-8 (an ssh config path can hold them) hash too.
        assert_eq!(namespace_hash([0xffu8, 0]).len(), NAMESPACE_DIR_LEN);
    }

    #[test]
    fn random_names_have_the_fixed_shape_and_differ() {
        let a = random_name().unwrap();
        let b = random_name().unwrap();
        assert_eq!(a.len(), NAME_LEN);
        assert!(a.starts_with('s'));
        assert_eq!(valid_name(OsStr::new(&a)), Some(a.as_str()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_name_shaped_entries_are_candidates() {
        assert!(valid_name(OsStr::new("sAbc-_0123456")).is_none()); // 13 bytes
        assert!(valid_name(OsStr::new("tAbc-_012345")).is_none()); // wrong prefix
        assert!(valid_name(OsStr::new("sAbc-_01234.")).is_none()); // bad char
        assert!(valid_name(OsStr::new("sAbc-_012345")).is_some());
    }
}
