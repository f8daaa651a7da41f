//! Finding and reading ClusterShell's node-group configuration, as its `GroupResolverConfig`
//! does: every `groups.conf` found (merged; the last one found gives `$CFGDIR`), the
//! `groups.conf.d` parts of `[Main] confdir` (or `groupsdir`), the YAML files of
//! `[Main] autodir`, the sources of `groups.conf` itself, and `[Main] default`.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::ConfigError;
use crate::ini::{self, Ini};
use crate::upcall::substitute;
use crate::yaml;

/// The section of `groups.conf` that is not a source.
const MAIN: &str = "Main";

/// The `groups.conf` files ClusterShell reads, lowest priority first (each later one's values
/// replace the earlier ones', and the last one found is `$CFGDIR`): `/etc/clustershell`,
/// `~/.local/etc/clustershell`, `$XDG_CONFIG_HOME/clustershell` (`~/.config/clustershell`
/// when unset or empty), then `$CLUSTERSHELL_CFGDIR`. (ClusterShell also reads
/// `sys.prefix/etc/clustershell`, the prefix of the Python it runs with, which conn cannot
/// know.)
pub fn default_paths() -> Vec<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME");
    let mut dirs = vec![PathBuf::from("/etc/clustershell")];
    if let Some(home) = &home {
        dirs.push(home.join(".local/etc/clustershell"));
    }
    match (var("XDG_CONFIG_HOME"), &home) {
        (Some(xdg), _) => dirs.push(xdg.join("clustershell")),
        (None, Some(home)) => dirs.push(home.join(".config/clustershell")),
        (None, None) => {}
    }
    if let Some(dir) = std::env::var_os("CLUSTERSHELL_CFGDIR") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.into_iter().map(|d| d.join("groups.conf")).collect()
}

/// A group source.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// Where its groups come from.
    pub kind: Kind,
    /// The file that defines it.
    pub origin: PathBuf,
}

/// Where a source's groups come from.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Shell commands (a `groups.conf` or `groups.conf.d` section).
    Upcall(Upcalls),
    /// A YAML file: group name -> node-set text, in file order.
    File(yaml::Groups),
}

/// The upcalls of a source: `map` is required, the others optional.
#[derive(Debug, Clone)]
pub struct Upcalls {
    /// `$GROUP` -> its nodes.
    pub map: String,
    /// Every node.
    pub all: Option<String>,
    /// The group names.
    pub list: Option<String>,
    /// `$NODE` -> its groups.
    pub reverse: Option<String>,
    /// `$CFGDIR`, and the upcalls' working directory: the directory of the file that defines
    /// them.
    pub dir: PathBuf,
}

/// The node-group configuration: its sources, in ClusterShell's order (`groups.conf.d` parts,
/// YAML files, then `groups.conf`'s own sections), and which one is the default.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The sources.
    pub sources: Vec<Source>,
    /// Index of the default source in `sources`.
    pub default: Option<usize>,
    /// The `groups.conf` files read, in order.
    pub files: Vec<PathBuf>,
    /// The `groups.conf` files looked for.
    pub searched: Vec<PathBuf>,
}

impl Config {
    /// Reads the configuration from `paths` (see [`default_paths`]); none of them existing is
    /// no error (there are no sources then).
    pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
        let (main, files) = ini::read_files(paths)?;
        let mut config = Config {
            files: files.clone(),
            searched: paths.to_vec(),
            ..Config::default()
        };
        let Some(last) = files.last() else {
            return Ok(config);
        };
        let cfgdir = last.parent().unwrap_or(Path::new("/")).to_path_buf();
        let cfgdir_text = cfgdir.to_string_lossy().into_owned();
        let dirs = |key: &str| -> Result<Vec<PathBuf>, ConfigError> {
            let Some(value) = main.interpolated(MAIN, key, last)? else {
                return Ok(Vec::new());
            };
            let words = split_words(&value).map_err(|what| ConfigError::Value {
                path: last.clone(),
                section: MAIN.into(),
                key: key.into(),
                what,
            })?;
            let mut dirs: Vec<PathBuf> = Vec::new();
            for word in words {
                let dir = normpath(&substitute(&word, &[("CFGDIR", &cfgdir_text)]));
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            Ok(dirs)
        };
        let confdir_key = if main.get(MAIN, "groupsdir").is_some() {
            "groupsdir"
        } else {
            "confdir"
        };
        for dir in dirs(confdir_key)? {
            for part in directory(&dir, "conf", last, confdir_key)? {
                let (ini, _) = ini::read_files(std::slice::from_ref(&part))?;
                config.add_sections(&ini, &dir, &part)?;
            }
        }
        for dir in dirs("autodir")? {
            for file in directory(&dir, "yaml", last, "autodir")? {
                let text = match fs::read(&file) {
                    Ok(bytes) => String::from_utf8(bytes).map_err(|_| ConfigError::Syntax {
                        path: file.clone(),
                        line: 0,
                        what: "the file is not UTF-8 text".into(),
                    })?,
                    // As ClusterShell: a file we may not read is skipped.
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => continue,
                    Err(source) => return Err(ConfigError::Io { path: file, source }),
                };
                for (name, groups) in yaml::load(&text, &file)? {
                    config.add(Source {
                        name,
                        kind: Kind::File(groups),
                        origin: file.clone(),
                    })?;
                }
            }
        }
        config.add_sections(&main, &cfgdir, last)?;
        match main.interpolated(MAIN, "default", last)? {
            Some(name) if !name.is_empty() => {
                let Some(index) = config.sources.iter().position(|s| s.name == name) else {
                    return Err(ConfigError::Invalid {
                        path: last.clone(),
                        what: format!("default group source not found: {name:?}"),
                    });
                };
                config.default = Some(index);
            }
            // None given (or empty): the first one, as ClusterShell picks.
            _ => config.default = (!config.sources.is_empty()).then_some(0),
        }
        Ok(config)
    }

    /// The upcall sources of `ini`'s sections (`[a,b]` defines `a` and `b`), with `dir` as
    /// `$CFGDIR`.
    fn add_sections(&mut self, ini: &Ini, dir: &Path, file: &Path) -> Result<(), ConfigError> {
        for section in ini.sections() {
            for name in section.split(',').filter(|&n| n != MAIN) {
                let Some(map) = ini.get(section, "map") else {
                    return Err(ConfigError::Invalid {
                        path: file.to_path_buf(),
                        what: format!("section [{section}] has no map upcall (it is required)"),
                    });
                };
                if let Some(t) = ini.get(section, "cache_time")
                    && t.trim().parse::<f64>().is_err()
                {
                    return Err(ConfigError::Value {
                        path: file.to_path_buf(),
                        section: section.into(),
                        key: "cache_time".into(),
                        what: format!("{t:?} is not a number of seconds"),
                    });
                }
                self.add(Source {
                    name: name.to_string(),
                    kind: Kind::Upcall(Upcalls {
                        map,
                        all: ini.get(section, "all"),
                        list: ini.get(section, "list"),
                        reverse: ini.get(section, "reverse"),
                        dir: dir.to_path_buf(),
                    }),
                    origin: file.to_path_buf(),
                })?;
            }
        }
        Ok(())
    }

    fn add(&mut self, source: Source) -> Result<(), ConfigError> {
        if let Some(other) = self.sources.iter().find(|s| s.name == source.name) {
            return Err(ConfigError::Invalid {
                path: source.origin.clone(),
                what: format!(
                    "group source {:?} is defined twice (also in {})",
                    source.name,
                    other.origin.display()
                ),
            });
        }
        self.sources.push(source);
        Ok(())
    }
}

/// The files `*.EXT` of `dir`, sorted; nothing when `dir` does not exist; an error when it is
/// not a directory or cannot be listed.
fn directory(dir: &Path, ext: &str, file: &Path, key: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(_) if dir.exists() && !dir.is_dir() => {
            return Err(ConfigError::Invalid {
                path: file.to_path_buf(),
                what: format!("[Main] {key}: {} is not a directory", dir.display()),
            });
        }
        Err(source) => {
            return Err(ConfigError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&format!(".{ext}")) && !n.starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Splits as Python's `shlex.split` (POSIX rules, no comments): whitespace separates words,
/// `'…'` keeps everything, `"…"` keeps everything but `\"` and `\\`, `\` escapes one character.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("no closing quotation".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("no escaped character".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// `os.path.normpath`: `.` and empty parts dropped, `a/..` folded, without looking at the
/// file system.
fn normpath(path: &str) -> PathBuf {
    let mut parts: Vec<Component<'_>> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(Component::Normal(_)) => {
                    parts.pop();
                }
                Some(Component::RootDir) => {}
                _ => parts.push(c),
            },
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_shlex_does() {
        assert_eq!(split_words("/a $CFGDIR/b").unwrap(), ["/a", "$CFGDIR/b"]);
        assert_eq!(
            split_words(" 'a b' \"c \\\"d\\\" \\x\" e\\ f #g").unwrap(),
            ["a b", "c \"d\" \\x", "e f", "#g"]
        );
        assert_eq!(split_words("").unwrap(), Vec::<String>::new());
        assert!(split_words("'a").is_err());
        assert!(split_words("a\\").is_err());
    }

    #[test]
    fn paths_normalise_as_normpath_does() {
        assert_eq!(
            normpath("/etc/cs/./groups.d/"),
            PathBuf::from("/etc/cs/groups.d")
        );
        assert_eq!(normpath("/etc//cs/../x"), PathBuf::from("/etc/x"));
        assert_eq!(normpath("/../a"), PathBuf::from("/a"));
        assert_eq!(normpath("../a/../../b"), PathBuf::from("../../b"));
        assert_eq!(normpath("a/.."), PathBuf::from("."));
    }
}
