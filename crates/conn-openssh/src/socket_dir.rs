//! Where control sockets live: the directory a caller gives, checked for length, or the
//! default, `~/.ssh/conn`, and `/tmp/conn-<uid>` when a long home directory would make
//! ControlPaths under `~/.ssh/conn` too long for a Unix socket (docs/design.md#leases).

use std::ffi::CStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use conn_core::{Error, Result};
use conn_lease::{LeaseError, MAX_CONTROL_PATH_LEN, MAX_ROOT_LEN};

/// Where short-home users' sockets go: `/tmp/conn-<uid>`, at most 20 bytes. Fixed rather than
/// `$TMPDIR` or `$XDG_RUNTIME_DIR`, so that every process of a user (a login shell, cron,
/// `sudo -u`, an ssh session without a systemd login) finds the same masters.
const FALLBACK_PARENT: &str = "/tmp";

/// The socket directory for `explicit`, or the default when `None`: an explicit directory is
/// made absolute and must be short enough ([`MAX_ROOT_LEN`]); the default is
/// [`default_socket_dir`].
pub(crate) fn resolve(explicit: Option<PathBuf>) -> Result<PathBuf> {
    match explicit {
        Some(d) => {
            let dir = std::path::absolute(&d)
                .map_err(|e| Error::Config(format!("socket directory {}: {e}", d.display())))?;
            check_len(&dir)?;
            Ok(dir)
        }
        None => default_socket_dir(),
    }
}

/// The socket directory used when none is given: `~/.ssh/conn`, with the home directory from
/// the password database (not `$HOME`, which a caller's environment may point anywhere).
///
/// When ControlPaths under `~/.ssh/conn` would not fit (a home directory over 21 bytes, as in
/// `/home/firstname.lastname`), `/tmp/conn-<uid>` instead. That one is checked now, before
/// anything runs: `/tmp` must be owned by root and sticky (so that nobody else can rename or
/// remove what we make in it), and `/tmp/conn-<uid>`, if it exists, must be a real directory
/// owned by this user with mode exactly `0700`. One made by somebody else first is refused,
/// never used or changed. Nothing is created here; the lease manager creates it (`0700`) and
/// checks it again.
///
/// # Errors
///
/// [`Error::Config`] when the user has no home directory in the password database, or when the
/// fallback is needed and unusable; each message says what to do.
pub fn default_socket_dir() -> Result<PathBuf> {
    let home = home_dir()?;
    let dir = home.join(".ssh").join("conn");
    if dir.as_os_str().len() <= MAX_ROOT_LEN {
        return Ok(dir);
    }
    let euid = rustix::process::geteuid().as_raw();
    let fallback = Path::new(FALLBACK_PARENT).join(format!("conn-{euid}"));
    let why = format!(
        "conn uses {} because ControlPaths under {} would be {} bytes, over the {}-byte limit",
        fallback.display(),
        dir.display(),
        dir.as_os_str().len() + control_path_suffix_len(),
        MAX_CONTROL_PATH_LEN
    );
    check_fallback_parent(Path::new(FALLBACK_PARENT))
        .map_err(|problem| Error::Config(format!("{why}, but {problem}: {}", give_one())))?;
    check_fallback(&fallback, euid)
        .map_err(|problem| Error::Config(format!("{why}; {problem}")))?;
    Ok(fallback)
}

/// What every refused default ends with.
fn give_one() -> String {
    format!(
        "give a socket directory yourself (`--socket-dir` for conn, `OpenSshBuilder::socket_dir` \
         for the library), at most {MAX_ROOT_LEN} bytes long"
    )
}

/// The bytes a ControlPath adds to its socket directory: `/<namespace>/c/<name>`.
fn control_path_suffix_len() -> usize {
    MAX_CONTROL_PATH_LEN - MAX_ROOT_LEN
}

/// Checks, before ssh ever sees it, that every ControlPath a lease under `socket_dir` can have
/// (`<dir>/<namespace>/c/<name>`) leaves room for the suffix ssh appends while it binds a
/// master: conn-lease's [`MAX_CONTROL_PATH_LEN`].
fn check_len(socket_dir: &Path) -> Result<()> {
    let len = socket_dir.as_os_str().len() + control_path_suffix_len();
    if len > MAX_CONTROL_PATH_LEN {
        return Err(Error::Config(format!(
            "ControlPath under socket directory {} would be {len} bytes, over the \
             {MAX_CONTROL_PATH_LEN}-byte limit (the Unix socket limit less the suffix ssh adds \
             while binding): choose a shorter socket directory (at most {MAX_ROOT_LEN} bytes)",
            socket_dir.display(),
        )));
    }
    Ok(())
}

/// Why `parent` cannot hold the fallback, if it cannot: it must be a directory owned by root
/// that others cannot write, or may write only with the sticky bit (which stops them renaming
/// or removing entries that are not theirs). The path is followed if it is a link: only root
/// can change a link in `/`.
fn check_fallback_parent(parent: &Path) -> std::result::Result<(), String> {
    let meta =
        fs::metadata(parent).map_err(|e| format!("{} cannot be read: {e}", parent.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", parent.display()));
    }
    if meta.uid() != 0 {
        return Err(format!(
            "{} is owned by uid {}, not root",
            parent.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "{} has mode {mode:04o}: others may write it and it is not sticky, so they could \
             replace the socket directory",
            parent.display()
        ));
    }
    Ok(())
}

/// Why `dir` (the fallback of uid `euid`) must not be used, if it exists and is not this
/// user's private directory. A `/tmp/conn-<uid>` that someone else made first, or a link, is
/// what squatting looks like: someone waiting for our sockets, or for us to fail.
fn check_fallback(dir: &Path, euid: u32) -> std::result::Result<(), String> {
    let squatted = |what: String| {
        format!(
            "{what}: someone else made it first (perhaps to catch your ssh sessions), so conn \
             will not use it; have root remove it, or {}",
            give_one()
        )
    };
    match conn_lease::check_root(dir) {
        Ok(_) => Ok(()),
        Err(LeaseError::WrongOwner { uid, .. }) => Err(squatted(format!(
            "{} belongs to uid {uid}, not to you (uid {euid})",
            dir.display()
        ))),
        Err(LeaseError::Symlink { .. }) => Err(squatted(format!(
            "{} is a symlink, not a directory",
            dir.display()
        ))),
        Err(e) => Err(format!("{e}")),
    }
}

/// The effective user's home directory from the password database.
fn home_dir() -> Result<PathBuf> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: passwd is plain data; getpwuid_r writes into it and into buf, whose length we
        // pass; the returned pointers point into buf, which outlives their use below.
        #[allow(unsafe_code)]
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(
                libc::geteuid(),
                &mut pwd,
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
                &mut result,
            );
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 2, 0);
                continue;
            }
            if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
                return Err(Error::Config(format!(
                    "no home directory for uid {} in the password database: give a socket directory",
                    libc::geteuid()
                )));
            }
            let dir = CStr::from_ptr(pwd.pw_dir);
            use std::os::unix::ffi::OsStrExt;
            return Ok(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn home_comes_from_the_password_database() {
        let home = home_dir().unwrap();
        assert!(home.is_absolute());
    }

    #[test]
    fn the_default_is_ssh_conn_under_a_short_home_and_always_fits() {
        let home = home_dir().unwrap();
        let dir = default_socket_dir().unwrap();
        assert!(dir.as_os_str().len() <= MAX_ROOT_LEN, "{}", dir.display());
        if home.as_os_str().len() + "/.ssh/conn".len() <= MAX_ROOT_LEN {
            assert_eq!(dir, home.join(".ssh/conn"));
        } else {
            let uid = rustix::process::geteuid().as_raw();
            assert_eq!(dir, PathBuf::from(format!("/tmp/conn-{uid}")));
        }
    }

    #[test]
    fn an_explicit_directory_that_is_too_long_is_refused_naming_the_limit() {
        let fits = format!("/tmp/{}", "x".repeat(MAX_ROOT_LEN - 5));
        assert_eq!(
            resolve(Some(fits.clone().into())).unwrap(),
            PathBuf::from(&fits)
        );
        let long = format!("{fits}y");
        let err = resolve(Some(long.clone().into())).unwrap_err().to_string();
        assert!(
            err.contains(&long)
                && err.contains("would be 91 bytes, over the 90-byte limit")
                && err.contains("at most 31 bytes"),
            "{err}"
        );
    }

    #[test]
    fn only_a_root_owned_directory_closed_to_others_or_sticky_may_hold_the_fallback() {
        assert_eq!(check_fallback_parent(Path::new("/tmp")), Ok(()));
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        let err = check_fallback_parent(&tmp.path().join("none")).unwrap_err();
        assert!(err.contains("cannot be read"), "{err}");
        if rustix::process::geteuid().is_root() {
            for (mode, ok) in [
                (0o755, true),
                (0o1777, true),
                (0o777, false),
                (0o775, false),
            ] {
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
                let got = check_fallback_parent(&dir);
                assert_eq!(got.is_ok(), ok, "mode {mode:o}: {got:?}");
            }
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        }
        // Not root's (chowned away as root, our own otherwise).
        let err = check_fallback_parent(&dir).unwrap_err();
        assert!(err.contains("not root"), "{err}");
    }

    #[test]
    fn a_squatted_fallback_is_refused_with_the_reason() {
        let tmp = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
        let euid = rustix::process::geteuid().as_raw();
        let dir = tmp.path().join(format!("conn-{euid}"));
        assert_eq!(check_fallback(&dir, euid), Ok(()), "missing: made later");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(check_fallback(&dir, euid), Ok(()), "ours");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = check_fallback(&dir, euid).unwrap_err();
        assert!(err.contains("has mode 0755, not 0700"), "{err}");

        let link = tmp.path().join("link");
        symlink(&dir, &link).unwrap();
        let err = check_fallback(&link, euid).unwrap_err();
        assert!(
            err.contains("is a symlink") && err.contains("someone else made it first"),
            "{err}"
        );
        // Someone else's: as root, a directory chowned away; otherwise root's own `/`.
        let (theirs, owner) = if rustix::process::geteuid().is_root() {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            (dir.clone(), 65534)
        } else {
            (PathBuf::from("/"), 0)
        };
        let err = check_fallback(&theirs, euid).unwrap_err();
        assert!(
            err.contains(&format!("belongs to uid {owner}, not to you (uid {euid})"))
                && err.contains("have root remove it")
                && err.contains("at most 31 bytes"),
            "{err}"
        );
    }
}
