//! Fetching from every host ([`FetchPlan`], `conn copy --rcopy`, clush's `--rcopy`, pdsh's
//! `rpdcp`), through the pooled masters, never leaving a partial file under a final name.
//!
//! Each source arrives as `DEST/NAME.HOST`. A file is read with `cat` straight into a
//! temporary file beside its final name (with an ssh mux the master writes it itself), checked
//! against the size the host reported, given its mode (and with `preserve` its modification
//! time) and renamed into place. A tree (`recursive`) comes as a tar stream into a temporary
//! file, is unpacked by the local `tar` into a temporary directory, and that is renamed into
//! place. A missing remote file is that host's error, not the run's.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use conn_core::{Cmd, ConnectionPool, Error, Job, Result, RetryPolicy, Stream, Transport};

use crate::copy::shell;

/// The remote side's description of a source to fetch: `TYPE|SIZE|MODE|MTIME`.
const DESCRIBE: &str = r#"stat -L -c '%F|%s|%a|%Y' -- "$1""#;

/// What to fetch from every host: each source arrives as `dest/NAME.HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPlan {
    /// Paths on the hosts.
    pub sources: Vec<OsString>,
    /// The local directory the copies go into.
    pub dest: PathBuf,
    /// Trees too (a directory is otherwise that host's error).
    pub recursive: bool,
    /// Keep modes and modification times (`-p`); else files get the source's permission bits
    /// and the time of arrival, and trees the local umask.
    pub preserve: bool,
}

impl FetchPlan {
    /// Checks, before anything runs: `dest` is an existing directory, every source has a file
    /// name (not `/`, `..` or empty).
    pub fn new(
        sources: Vec<OsString>,
        dest: PathBuf,
        recursive: bool,
        preserve: bool,
    ) -> Result<FetchPlan, String> {
        if !dest.is_dir() {
            return Err(format!(
                "--dest {}: not a directory (make it first)",
                dest.display()
            ));
        }
        for s in &sources {
            if base_name(s).is_none() {
                return Err(format!(
                    "cannot fetch {:?}: it has no file name",
                    s.to_string_lossy()
                ));
            }
        }
        Ok(FetchPlan {
            sources,
            dest,
            recursive,
            preserve,
        })
    }

    /// Where `source` from `host` arrives: `dest/NAME.HOST`.
    pub fn final_path(&self, source: &OsStr, host: &str) -> PathBuf {
        let mut name = base_name(source).unwrap_or_default().to_os_string();
        name.push(".");
        name.push(host);
        self.dest.join(name)
    }

    /// Fetches every source from the pool's host, in order, within `job`; stops at the first
    /// failure.
    pub(crate) fn fetch_from<T: Transport>(
        &self,
        pool: &ConnectionPool<T>,
        host: &str,
        job: &dyn Job,
        retry: RetryPolicy,
    ) -> Result<()> {
        for source in &self.sources {
            let final_path = self.final_path(source, host);
            let described = pool
                .run(&shell(DESCRIBE, "conn-stat").arg(source).retry(retry), job)
                .map_err(|e| said_by_host(e, host, source, Said::Reason))?;
            let remote = Remote::parse(&described.stdout).ok_or_else(|| {
                local_error(
                    &format!("reading what {host} says of {}", source.to_string_lossy()),
                    io::Error::other(format!(
                        "unexpected answer {:?}",
                        String::from_utf8_lossy(&described.stdout)
                    )),
                )
            })?;
            match remote.kind {
                Kind::File => {
                    self.fetch_file(pool, host, source, &remote, &final_path, job, retry)?
                }
                Kind::Dir if self.recursive => {
                    self.fetch_tree(pool, host, source, &final_path, job, retry)?
                }
                Kind::Dir => {
                    return Err(host_error(
                        host,
                        source,
                        "is a directory: give -r to fetch it with its contents",
                    ));
                }
                Kind::Other(ref what) => {
                    return Err(host_error(
                        host,
                        source,
                        &format!("is a {what}: only regular files and directories are fetched"),
                    ));
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch_file<T: Transport>(
        &self,
        pool: &ConnectionPool<T>,
        host: &str,
        source: &OsStr,
        remote: &Remote,
        final_path: &Path,
        job: &dyn Job,
        retry: RetryPolicy,
    ) -> Result<()> {
        let tmp = temp_beside(final_path)?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| local_error("opening a temporary file", e))?;
        let cat =
            Cmd::new([OsStr::new("cat"), OsStr::new("--"), source]).stdout(Stream::from(file));
        pool.run(&cat.retry(retry), job)
            .map_err(|e| said_by_host(e, host, source, Said::Whole))?;
        let got = fs::metadata(tmp.path())
            .map_err(|e| local_error("reading a temporary file", e))?
            .len();
        if got != remote.size {
            return Err(Error::Transport {
                endpoint: host.to_string(),
                command: format!("cat -- {}", source.to_string_lossy()),
                started: conn_core::Started::Yes,
                reason: format!(
                    "got {got} of {} bytes of {}; nothing renamed",
                    remote.size,
                    source.to_string_lossy()
                )
                .into(),
                stdout: Vec::new(),
                stderr: Vec::new(),
            });
        }
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(remote.mode))
            .map_err(|e| local_error("setting the mode of a fetched file", e))?;
        if self.preserve {
            let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(remote.mtime);
            tmp.as_file()
                .set_modified(mtime)
                .map_err(|e| local_error("setting the time of a fetched file", e))?;
        }
        tmp.persist(final_path).map_err(|e| {
            local_error(&format!("renaming into {}", final_path.display()), e.error)
        })?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch_tree<T: Transport>(
        &self,
        pool: &ConnectionPool<T>,
        host: &str,
        source: &OsStr,
        final_path: &Path,
        job: &dyn Job,
        retry: RetryPolicy,
    ) -> Result<()> {
        let (parent, name) = split_remote(source);
        let archive = temp_beside(final_path)?;
        let file = archive
            .as_file()
            .try_clone()
            .map_err(|e| local_error("opening a temporary file", e))?;
        let tar = Cmd::new([OsStr::new("tar"), OsStr::new("-cf"), OsStr::new("-")])
            .arg("-C")
            .arg(parent)
            .arg("--")
            .arg(name)
            .stdout(Stream::from(file));
        pool.run(&tar.retry(retry), job)
            .map_err(|e| said_by_host(e, host, source, Said::Whole))?;
        let unpack = tempfile::Builder::new()
            .prefix(&format!(".{}.conn-", base_of(final_path)))
            .tempdir_in(self.dest.as_path())
            .map_err(|e| local_error("making a temporary directory", e))?;
        let mut local = std::process::Command::new("tar");
        local
            .arg("-xf")
            .arg(archive.path())
            .arg("-C")
            .arg(unpack.path());
        local.arg("--no-same-owner");
        if self.preserve {
            local.arg("-p");
        } else {
            local.arg("--no-same-permissions").arg("-m");
        }
        let out = local
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| local_error("running the local tar", e))?;
        if !out.status.success() {
            return Err(local_error(
                "unpacking a fetched tree with the local tar",
                io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            ));
        }
        if final_path.exists() {
            return Err(local_error(
                &format!("renaming into {}", final_path.display()),
                io::Error::other("it exists: move it away before fetching the tree again"),
            ));
        }
        fs::rename(unpack.path().join(name), final_path)
            .map_err(|e| local_error(&format!("renaming into {}", final_path.display()), e))?;
        Ok(())
    }
}

/// A temporary file beside `path` (`.NAME.conn-XXXXXX`): removed unless persisted.
fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(&format!(".{}.conn-", base_of(path)))
        .tempfile_in(dir)
        .map_err(|e| local_error(&format!("making a temporary file in {}", dir.display()), e))
}

fn base_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// How much of a remote tool's stderr to keep in [`said_by_host`].
#[derive(Clone, Copy)]
enum Said {
    /// The part after its last `: ` (`stat: cannot statx 'f': No such file or directory`).
    Reason,
    /// All of it, on one line.
    Whole,
}

/// A remote command of the fetch that exited unsuccessfully (`stat` of a missing file, `cat`
/// of an unreadable one, `tar` of a tree), as that host's error about `source` in the tool's
/// own words, without the fetch's internal command line; other errors stay.
fn said_by_host(e: Error, host: &str, source: &OsStr, said: Said) -> Error {
    let Error::Exited { status, stderr, .. } = &e else {
        return e;
    };
    let text = crate::one_line(&String::from_utf8_lossy(stderr));
    let reason = match said {
        Said::Reason => text.rsplit(": ").next().unwrap_or_default().to_string(),
        Said::Whole => text,
    };
    let reason = if reason.is_empty() {
        format!("the host could not read it ({status})")
    } else {
        reason
    };
    host_error(host, source, &reason)
}

/// A source the host has but cannot be fetched as asked: that host's error (exit 1), not a
/// usage error of the run.
fn host_error(host: &str, source: &OsStr, what: &str) -> Error {
    local_error(
        &format!("fetching {host}:{}", source.to_string_lossy()),
        io::Error::other(what.to_string()),
    )
}

fn local_error(what: &str, source: io::Error) -> Error {
    Error::Io {
        context: what.to_string(),
        source,
    }
}

/// The last component of a remote path (`/var/log/` is `log`); `None` for `/`, `..`, `.` or
/// an empty path.
fn base_name(path: &OsStr) -> Option<&OsStr> {
    let bytes = path.as_bytes();
    let trimmed = {
        let mut end = bytes.len();
        while end > 1 && bytes[end - 1] == b'/' {
            end -= 1;
        }
        &bytes[..end]
    };
    let name = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    };
    (!name.is_empty() && name != b"." && name != b"..").then(|| OsStr::from_bytes(name))
}

/// `(parent, name)` of a remote path, for `tar -C parent name`.
fn split_remote(path: &OsStr) -> (&OsStr, &OsStr) {
    let name = base_name(path).unwrap_or(path);
    let bytes = path.as_bytes();
    let cut = bytes
        .windows(name.len())
        .rposition(|w| w == name.as_bytes())
        .unwrap_or(0);
    let parent = &bytes[..cut];
    let parent = match parent {
        b"" => OsStr::new("."),
        b"/" => OsStr::new("/"),
        p => OsStr::from_bytes(p.strip_suffix(b"/").unwrap_or(p)),
    };
    (parent, name)
}

/// What a host said of a source to fetch.
#[derive(Debug, PartialEq, Eq)]
struct Remote {
    kind: Kind,
    size: u64,
    mode: u32,
    mtime: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Other(String),
}

impl Remote {
    /// `regular file|1234|644|1700000000` (GNU stat's `%F|%s|%a|%Y`).
    fn parse(out: &[u8]) -> Option<Remote> {
        let text = std::str::from_utf8(out).ok()?.trim_end();
        let mut parts = text.rsplitn(4, '|');
        let mtime = parts.next()?.parse().ok()?;
        let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
        let size = parts.next()?.parse().ok()?;
        let kind = match parts.next()? {
            "regular file" | "regular empty file" => Kind::File,
            "directory" => Kind::Dir,
            other => Kind::Other(other.to_string()),
        };
        Some(Remote {
            kind,
            size,
            mode,
            mtime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_names_and_descriptions_parse() {
        assert_eq!(base_name(OsStr::new("/var/log/")), Some(OsStr::new("log")));
        assert_eq!(base_name(OsStr::new("f")), Some(OsStr::new("f")));
        assert_eq!(base_name(OsStr::new("/")), None);
        assert_eq!(base_name(OsStr::new("a/..")), None);
        assert_eq!(
            split_remote(OsStr::new("/etc/ssh")),
            (OsStr::new("/etc"), OsStr::new("ssh"))
        );
        assert_eq!(
            split_remote(OsStr::new("/etc")),
            (OsStr::new("/"), OsStr::new("etc"))
        );
        assert_eq!(
            split_remote(OsStr::new("rel")),
            (OsStr::new("."), OsStr::new("rel"))
        );
        assert_eq!(
            Remote::parse(b"regular file|12|644|1700000000\n"),
            Some(Remote {
                kind: Kind::File,
                size: 12,
                mode: 0o644,
                mtime: 1_700_000_000
            })
        );
        assert_eq!(
            Remote::parse(b"directory|4096|755|1").unwrap().kind,
            Kind::Dir
        );
        assert_eq!(
            Remote::parse(b"symbolic link|4|777|1").unwrap().kind,
            Kind::Other("symbolic link".into())
        );
        assert!(Remote::parse(b"nonsense").is_none());
    }

    #[test]
    fn a_tool_that_failed_on_the_host_is_said_in_its_own_words() {
        let exited = |stderr: &[u8]| Error::Exited {
            command: "sh -c 'stat …' conn-stat f".into(),
            status: conn_core::ExitStatus::Code(2),
            stdout: Vec::new(),
            stderr: stderr.to_vec(),
        };
        let f = OsStr::new("/srv/f");
        let said = |e, how| said_by_host(e, "web1", f, how).to_string();
        assert_eq!(
            said(
                exited(b"stat: cannot statx '/srv/f': No such file or directory\n"),
                Said::Reason
            ),
            "fetching web1:/srv/f: No such file or directory"
        );
        assert_eq!(
            said(
                exited(b"tar: f: Cannot open: Permission denied\ntar: Exiting\n"),
                Said::Whole
            ),
            "fetching web1:/srv/f: tar: f: Cannot open: Permission denied | tar: Exiting"
        );
        assert_eq!(
            said(exited(b""), Said::Reason),
            "fetching web1:/srv/f: the host could not read it (exit code 2)"
        );
        let other = said_by_host(
            Error::Timeout {
                command: "cat".into(),
                timeout: Duration::from_secs(1),
            },
            "web1",
            f,
            Said::Whole,
        );
        assert!(matches!(other, Error::Timeout { .. }), "other errors stay");
        assert!(matches!(
            said_by_host(exited(b"x"), "web1", f, Said::Whole),
            Error::Io { .. }
        ));
    }

    #[test]
    fn fetched_copies_are_named_after_their_host() {
        let dir = tempfile::tempdir().unwrap();
        let plan = FetchPlan::new(
            vec!["/etc/hostname".into()],
            dir.path().to_path_buf(),
            false,
            false,
        )
        .unwrap();
        assert_eq!(
            plan.final_path(OsStr::new("/etc/hostname"), "web1"),
            dir.path().join("hostname.web1")
        );
        assert!(FetchPlan::new(vec!["/".into()], dir.path().into(), false, false).is_err());
        assert!(FetchPlan::new(vec!["/x".into()], dir.path().join("none"), false, false).is_err());
    }
}
