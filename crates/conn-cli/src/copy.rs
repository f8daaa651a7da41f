//! `conn copy`: files (and with `-r` directory trees) to every host, through the pooled masters.
//!
//! Each file is one session whose stdin is the local file itself (`Stdin::Fd`: with an ssh mux
//! the master reads it directly). The remote side writes it under a fresh temporary name in
//! the destination directory (`mktemp`), checks that every byte arrived, sets the mode of the
//! source, and only then renames it over the final name: a copy that is killed, times out or
//! loses its connection never leaves a partial file under the final name (at worst a
//! `.NAME.conn.XXXXXX` file next to it). Hosts are copied to in parallel; the files of one
//! host one after another.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conn_core::{Cmd, ConnectionPool, Deadline, Error, Job, Result, SimpleJob, Stdin, Transport};

use crate::args::CopyArgs;
use crate::hosts::host_list;
use crate::output::{EXIT_INTERRUPTED, Failure};
use crate::report::{HostReport, failure_summary};
use crate::{POOL_NAME, signals};

/// Runs `conn copy`; returns the exit code.
pub fn main(args: &CopyArgs) -> Result<u8, Failure> {
    args.ssh.validate().map_err(Failure::usage)?;
    let (dest, sources) = args.paths.split_last().expect("clap requires SRC and DEST");
    // Everything is checked before anything starts: sources, hosts, options (exit 2).
    let items = plan(sources, dest.as_os_str(), args.recursive).map_err(Failure::usage)?;
    let hosts = host_list(&args.targets)?;
    let pools = hosts
        .into_iter()
        .map(|h| {
            let transport = args.ssh.builder(&h).mux(args.mux).build()?;
            Ok((
                h,
                ConnectionPool::new(transport, POOL_NAME, args.ssh.capacity as usize)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(copy_everywhere(
        &pools,
        &items,
        args.parallel as usize,
        args.timeout,
    ))
}

/// `parallel` workers over the hosts, one line per host as it ends, the folded summary of the
/// failures, the largest exit code.
fn copy_everywhere<T: Transport>(
    pools: &[(String, ConnectionPool<T>)],
    items: &[Item],
    parallel: usize,
    timeout: Option<Duration>,
) -> u8 {
    let next = AtomicUsize::new(0);
    let reports: Mutex<Vec<HostReport>> = Mutex::new(Vec::new());
    let files = items
        .iter()
        .filter(|i| matches!(i, Item::File { .. }))
        .count();
    let bytes = total_bytes(items);
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(pools.len()) {
            scope.spawn(|| {
                while let Some((host, pool)) = pools.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let report = if signals::interrupted().is_some() {
                        HostReport::interrupted(host)
                    } else {
                        let job = std::sync::Arc::new(SimpleJob::with_deadline(
                            timeout.map(Deadline::after),
                        ));
                        signals::register(&job);
                        let start = Instant::now();
                        let result = copy_to(pool, items, job.as_ref());
                        if result.is_ok() {
                            let _ = writeln!(
                                std::io::stdout().lock(),
                                "{host}: copied {files} file(s), {bytes} bytes"
                            );
                        }
                        HostReport::new(host, result.map(|()| done()), start.elapsed())
                    };
                    pool.shutdown();
                    reports
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(report);
                }
            });
        }
    });
    let reports = reports.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    for line in failure_summary(&reports) {
        let _ = writeln!(err, "conn: {line}");
    }
    let failed = reports.iter().filter(|r| r.failure().is_some()).count();
    if failed > 0 {
        let _ = writeln!(err, "conn: {failed} of {} hosts failed", pools.len());
    }
    let mut code = reports.iter().map(HostReport::exit_code).max().unwrap_or(0);
    if signals::interrupted().is_some() {
        code = code.max(EXIT_INTERRUPTED);
    }
    code
}

/// A host's successful end, for the report.
fn done() -> conn_core::Output {
    conn_core::Output {
        status: conn_core::ExitStatus::Code(0),
        stdout: Vec::new(),
        stderr: Vec::new(),
        started: conn_core::Started::Yes,
    }
}

/// The remote side of one file: `$1` final path, `$2` octal mode, `$3` expected size.
const RECEIVE: &str = r#"set -e
final=$1; mode=$2; size=$3
dir=$(dirname -- "$final"); base=$(basename -- "$final")
mkdir -p -- "$dir"
tmp=$(mktemp -- "$dir/.$base.conn.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT HUP INT TERM
cat > "$tmp"
got=$(wc -c < "$tmp")
if [ "$got" -ne "$size" ]; then
  echo "conn copy: $final: got $got of $size bytes; nothing renamed" >&2
  exit 1
fi
chmod "$mode" "$tmp"
mv -f -- "$tmp" "$final"
"#;

/// The remote side of one directory: `$1` path, `$2` octal mode.
const MAKE_DIR: &str = r#"set -e
mkdir -p -- "$1"
chmod "$2" "$1"
"#;

/// One thing to create on every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A regular file: local source, remote path, mode, size.
    File {
        source: PathBuf,
        dest: OsString,
        mode: u32,
        size: u64,
    },
    /// A directory: remote path, mode.
    Dir { dest: OsString, mode: u32 },
}

/// What to copy where, planned once for all hosts: `sources` into `dest` (a directory when
/// there are several sources, with `recursive`, or when `dest` ends with `/`; else the final
/// file name). Fails, before anything runs, for a missing source, a directory without `-r`,
/// or anything that is neither file nor directory.
pub fn plan(sources: &[PathBuf], dest: &OsStr, recursive: bool) -> Result<Vec<Item>, String> {
    let into_dir = sources.len() > 1 || recursive || dest.as_bytes().ends_with(b"/");
    let mut items = Vec::new();
    for source in sources {
        let meta =
            fs::metadata(source).map_err(|e| format!("cannot copy {}: {e}", source.display()))?;
        let target = if into_dir {
            let name = source
                .file_name()
                .ok_or_else(|| format!("cannot copy {}: it has no file name", source.display()))?;
            join(dest, name)
        } else {
            dest.to_os_string()
        };
        if meta.is_dir() {
            if !recursive {
                return Err(format!(
                    "{} is a directory: give -r to copy it with its contents",
                    source.display()
                ));
            }
            walk(source, target, &mut items)?;
        } else if meta.is_file() {
            items.push(file_item(source, target, &meta));
        } else {
            return Err(format!(
                "cannot copy {}: not a regular file or directory",
                source.display()
            ));
        }
    }
    Ok(items)
}

fn file_item(source: &Path, dest: OsString, meta: &fs::Metadata) -> Item {
    Item::File {
        source: source.to_path_buf(),
        dest,
        mode: meta.permissions().mode() & 0o7777,
        size: meta.len(),
    }
}

fn join(dir: &OsStr, name: &OsStr) -> OsString {
    let mut path = dir.as_bytes().to_vec();
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name.as_bytes());
    std::os::unix::ffi::OsStringExt::from_vec(path)
}

/// A directory tree, parents before children; symbolic links are not followed (a warning names
/// each one skipped).
fn walk(dir: &Path, dest: OsString, items: &mut Vec<Item>) -> Result<(), String> {
    let meta = fs::metadata(dir).map_err(|e| format!("cannot copy {}: {e}", dir.display()))?;
    items.push(Item::Dir {
        dest: dest.clone(),
        mode: meta.permissions().mode() & 0o7777,
    });
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let target = join(&dest, &entry.file_name());
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
        if meta.is_dir() {
            walk(&path, target, items)?;
        } else if meta.is_file() {
            items.push(file_item(&path, target, &meta));
        } else {
            tracing::warn!(
                "skipping {}: not a regular file or directory",
                path.display()
            );
        }
    }
    Ok(())
}

/// Total bytes of the plan's files.
pub fn total_bytes(items: &[Item]) -> u64 {
    items
        .iter()
        .map(|i| match i {
            Item::File { size, .. } => *size,
            Item::Dir { .. } => 0,
        })
        .sum()
}

/// Creates every item on the pool's host, in order, within `job`. Stops at the first failure
/// (a later file may depend on an earlier directory).
pub fn copy_to<T: Transport>(
    pool: &ConnectionPool<T>,
    items: &[Item],
    job: &dyn Job,
) -> Result<()> {
    for item in items {
        let cmd = match item {
            Item::File {
                source,
                dest,
                mode,
                size,
            } => {
                let file = File::open(source).map_err(|e| Error::Io {
                    context: format!("opening {}", source.display()),
                    source: e,
                })?;
                Cmd::new([OsStr::new("sh"), OsStr::new("-c"), OsStr::new(RECEIVE)])
                    .arg("conn-copy")
                    .arg(dest)
                    .arg(format!("{mode:o}"))
                    .arg(size.to_string())
                    .stdin(Stdin::from(file))
            }
            Item::Dir { dest, mode } => {
                Cmd::new([OsStr::new("sh"), OsStr::new("-c"), OsStr::new(MAKE_DIR)])
                    .arg("conn-mkdir")
                    .arg(dest)
                    .arg(format!("{mode:o}"))
            }
        };
        pool.run(&cmd, job)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_file_goes_to_the_given_name_several_into_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"aa").unwrap();
        fs::write(&b, b"b").unwrap();
        let one = plan(std::slice::from_ref(&a), OsStr::new("/srv/x"), false).unwrap();
        assert!(matches!(&one[..], [Item::File { dest, size: 2, .. }] if dest == "/srv/x"));
        let two = plan(&[a.clone(), b], OsStr::new("/srv"), false).unwrap();
        assert!(matches!(&two[1], Item::File { dest, .. } if dest == "/srv/b"));
        let slash = plan(&[a], OsStr::new("/srv/"), false).unwrap();
        assert!(matches!(&slash[0], Item::File { dest, .. } if dest == "/srv/a"));
    }

    #[test]
    fn directories_need_r_and_come_before_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/f"), b"x").unwrap();
        let err = plan(std::slice::from_ref(&tree), OsStr::new("/d"), false).unwrap_err();
        assert!(err.contains("-r"), "{err}");
        let items = plan(&[tree], OsStr::new("/d"), true).unwrap();
        let dests: Vec<_> = items
            .iter()
            .map(|i| match i {
                Item::File { dest, .. } | Item::Dir { dest, .. } => dest.clone(),
            })
            .collect();
        assert_eq!(dests, ["/d/t", "/d/t/sub", "/d/t/sub/f"]);
        assert!(plan(&[dir.path().join("missing")], OsStr::new("/d"), false).is_err());
    }
}
