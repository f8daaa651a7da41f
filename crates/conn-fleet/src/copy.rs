//! Copying to every host ([`CopyPlan`], `conn copy`), through the pooled masters, never
//! leaving a partial file under a final name; fetching back is [`crate::FetchPlan`].
//!
//! Each file is one session whose stdin is the local file itself (opened anew per attempt;
//! with an ssh mux the master reads it directly). The remote side writes it under a fresh
//! temporary name in the destination directory (`mktemp`), checks that every byte arrived,
//! sets the mode of the source, and only then renames it over the final name.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use conn_core::{Cmd, ConnectionPool, Job, Result, RetryPolicy, Stdin, Transport};

/// The remote side of one file sent: `$1` final path, `$2` octal mode, `$3` expected size.
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

/// The remote side of one directory sent: `$1` path, `$2` octal mode.
const MAKE_DIR: &str = r#"set -e
mkdir -p -- "$1"
chmod "$2" "$1"
"#;

/// One thing to create on every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A regular file: local source, remote path, mode, size.
    File {
        /// The local file.
        source: PathBuf,
        /// Where it goes on each host.
        dest: OsString,
        /// Its permission bits.
        mode: u32,
        /// Its size when planned (checked on arrival).
        size: u64,
    },
    /// A directory: remote path, mode.
    Dir {
        /// Where it is made on each host.
        dest: OsString,
        /// Its permission bits.
        mode: u32,
    },
}

/// What to copy to every host, planned once for all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    /// Directories before their contents.
    pub items: Vec<Item>,
}

impl CopyPlan {
    /// `sources` into `dest` (a directory when there are several sources, with `recursive`,
    /// or when `dest` ends with `/`; else the final file name). Fails, before anything runs,
    /// for a missing source, a directory without `recursive`, or anything that is neither file
    /// nor directory; the message names the path.
    pub fn new(sources: &[PathBuf], dest: &OsStr, recursive: bool) -> Result<CopyPlan, String> {
        let into_dir = sources.len() > 1 || recursive || dest.as_bytes().ends_with(b"/");
        let mut items = Vec::new();
        for source in sources {
            let meta = fs::metadata(source)
                .map_err(|e| format!("cannot copy {}: {e}", source.display()))?;
            let target = if into_dir {
                let name = source.file_name().ok_or_else(|| {
                    format!("cannot copy {}: it has no file name", source.display())
                })?;
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
        Ok(CopyPlan { items })
    }

    /// Regular files in the plan.
    pub fn files(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, Item::File { .. }))
            .count()
    }

    /// Total bytes of the plan's files.
    pub fn bytes(&self) -> u64 {
        self.items
            .iter()
            .map(|i| match i {
                Item::File { size, .. } => *size,
                Item::Dir { .. } => 0,
            })
            .sum()
    }

    /// Creates every item on the pool's host, in order, within `job`; stops at the first
    /// failure (a later file may depend on an earlier directory).
    pub(crate) fn to_host<T: Transport>(
        &self,
        pool: &ConnectionPool<T>,
        job: &dyn Job,
        retry: RetryPolicy,
    ) -> Result<()> {
        for item in &self.items {
            let cmd = match item {
                Item::File {
                    source,
                    dest,
                    mode,
                    size,
                } => shell(RECEIVE, "conn-copy")
                    .arg(dest)
                    .arg(format!("{mode:o}"))
                    .arg(size.to_string())
                    .stdin(Stdin::Path(source.clone())),
                Item::Dir { dest, mode } => shell(MAKE_DIR, "conn-mkdir")
                    .arg(dest)
                    .arg(format!("{mode:o}")),
            };
            pool.run(&cmd.retry(retry), job)?;
        }
        Ok(())
    }
}

/// `sh -c SCRIPT NAME`: the script's `$0` names it in the remote process list.
pub(crate) fn shell(script: &str, name: &str) -> Cmd {
    Cmd::new([OsStr::new("sh"), OsStr::new("-c"), OsStr::new(script)]).arg(name)
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

/// A directory tree, parents before children; symbolic links are not followed (a warning
/// names each one skipped).
fn walk(dir: &Path, dest: OsString, items: &mut Vec<Item>) -> Result<(), String> {
    let meta = fs::metadata(dir).map_err(|e| format!("cannot copy {}: {e}", dir.display()))?;
    items.push(Item::Dir {
        dest: dest.clone(),
        mode: meta.permissions().mode() & 0o7777,
    });
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .collect::<io::Result<_>>()
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
        let one = CopyPlan::new(std::slice::from_ref(&a), OsStr::new("/srv/x"), false).unwrap();
        assert!(matches!(&one.items[..], [Item::File { dest, size: 2, .. }] if dest == "/srv/x"));
        let two = CopyPlan::new(&[a.clone(), b], OsStr::new("/srv"), false).unwrap();
        assert!(matches!(&two.items[1], Item::File { dest, .. } if dest == "/srv/b"));
        let slash = CopyPlan::new(&[a], OsStr::new("/srv/"), false).unwrap();
        assert!(matches!(&slash.items[0], Item::File { dest, .. } if dest == "/srv/a"));
    }

    #[test]
    fn directories_need_r_and_come_before_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/f"), b"x").unwrap();
        let err = CopyPlan::new(std::slice::from_ref(&tree), OsStr::new("/d"), false).unwrap_err();
        assert!(err.contains("-r"), "{err}");
        let plan = CopyPlan::new(&[tree], OsStr::new("/d"), true).unwrap();
        let dests: Vec<_> = plan
            .items
            .iter()
            .map(|i| match i {
                Item::File { dest, .. } | Item::Dir { dest, .. } => dest.clone(),
            })
            .collect();
        assert_eq!(dests, ["/d/t", "/d/t/sub", "/d/t/sub/f"]);
        assert!(CopyPlan::new(&[dir.path().join("missing")], OsStr::new("/d"), false).is_err());
    }
}
