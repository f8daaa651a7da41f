//! Node groups from ClusterShell's own configuration, so that `@web` means for conn what it
//! means for `clush` and `nodeset`: the same `groups.conf`, group sources, upcalls and YAML
//! group files, read the same way. The I/O side of `conn_hostset`'s [`GroupResolver`].
//!
//! ```no_run
//! use conn_groups::Groups;
//! use conn_hostset::{DEFAULT_MAX_NAMES, HostSet};
//!
//! let mut groups = Groups::from_env(); // nothing is read until a group is needed
//! let set = HostSet::parse_with_groups("@web!web3,@slurm:gpu", DEFAULT_MAX_NAMES, &mut groups)?;
//! # Ok::<(), conn_hostset::ParseError>(())
//! ```
//!
//! - **Where**: `groups.conf` in `/etc/clustershell`, `~/.local/etc/clustershell`,
//!   `$XDG_CONFIG_HOME/clustershell` (or `~/.config/clustershell`) and `$CLUSTERSHELL_CFGDIR`,
//!   all that exist merged in that order, later values winning, the last one found being
//!   `$CFGDIR` ([`config::default_paths`]).
//! - **Sources**: each section of `groups.conf` and of the `*.conf` files of `[Main] confdir`
//!   (`groupsdir`), with upcalls `map` (required), `all`, `list`, `reverse`; each top-level
//!   key of the `*.yaml` files of `[Main] autodir`. `[Main] default` names the default source
//!   (else the first one).
//! - **Upcalls** run as ClusterShell runs them: `$GROUP`, `$NODE`, `$CFGDIR` and `$SOURCE`
//!   substituted, `/bin/sh -c` in the directory of the file that defines the source, stdout
//!   the answer; and, unlike ClusterShell, with stdin from `/dev/null`, a time limit
//!   ([`DEFAULT_TIMEOUT`]) and a size limit, after which the upcall's process group is
//!   killed. Answers are kept for the life of the [`Groups`] (one conn command).
//! - **Errors** name the group and the source: a group a source does not know, an upcall
//!   that fails or times out, a broken configuration file.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod error;
mod ini;
mod upcall;
mod yaml;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use conn_core::CancelToken;
use conn_hostset::{DEFAULT_MAX_NAMES, HostSet};
pub use conn_hostset::{GroupError, GroupResolver, Resolved};

pub use crate::config::{Config, Kind, Source, Upcalls};
pub use crate::error::{ConfigError, UpcallError};
use crate::upcall::{Limits, substitute};

/// How long one upcall may take unless the caller says otherwise. ClusterShell waits for ever;
/// conn must not hang on a stuck LDAP or batch-scheduler query, and a healthy upcall (a `sed`
/// over a file, `sinfo`, `nodeattr`) answers in well under a second, so half a minute is far
/// above any working one and still short enough for a person to wait out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes of one upcall's answer (a million node names fit).
pub const MAX_ANSWER: usize = 32 << 20;

/// One query of a source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Query {
    Map(String),
    All,
    List,
}

/// ClusterShell's group sources for one command: the configuration (read on first use), the
/// answers so far, and the limits of upcalls. A [`GroupResolver`].
#[derive(Debug)]
pub struct Groups {
    paths: Vec<PathBuf>,
    config: Option<Result<Config, String>>,
    default: Option<String>,
    limits: Limits,
    answers: HashMap<(usize, Query), String>,
}

impl Groups {
    /// The groups of the `groups.conf` files at `paths` (nothing is read yet).
    pub fn new(paths: Vec<PathBuf>) -> Groups {
        Groups {
            paths,
            config: None,
            default: None,
            limits: Limits {
                timeout: DEFAULT_TIMEOUT,
                max_output: MAX_ANSWER,
                cancel: None,
            },
            answers: HashMap::new(),
        }
    }

    /// The groups of the `groups.conf` files ClusterShell reads ([`config::default_paths`]).
    pub fn from_env() -> Groups {
        Groups::new(config::default_paths())
    }

    /// Sets the time limit of each upcall.
    pub fn with_timeout(mut self, timeout: Duration) -> Groups {
        self.limits.timeout = timeout;
        self
    }

    /// Ends a running upcall (its process group) when `token` is cancelled.
    pub fn with_cancel(mut self, token: CancelToken) -> Groups {
        self.limits.cancel = Some(token);
        self
    }

    /// Makes `source` the default source (`nodeset -s`, `clush -s`); checked when the
    /// configuration is read.
    pub fn with_default_source(mut self, source: impl Into<String>) -> Groups {
        self.default = Some(source.into());
        self
    }

    /// The configuration, read now if it was not yet.
    pub fn config(&mut self) -> Result<&Config, GroupError> {
        let paths = &self.paths;
        let loaded = self
            .config
            .get_or_insert_with(|| Config::load(paths).map_err(|e| e.to_string()));
        loaded.as_ref().map_err(|e| GroupError::new(e.clone()))
    }

    /// The source names, the default one first (`nodeset --list-sources`).
    pub fn sources(&mut self) -> Result<Vec<String>, GroupError> {
        let default = self.source_index(None).ok();
        let config = self.config()?;
        let mut names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
        if let Some(d) = default {
            let name = names.remove(d);
            names.insert(0, name);
        }
        Ok(names)
    }

    /// The index of `name` (`None`: the default source).
    fn source_index(&mut self, name: Option<&str>) -> Result<usize, GroupError> {
        let wanted = name.map(str::to_string).or_else(|| self.default.clone());
        let config = self.config()?;
        let known = || {
            let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
            if names.is_empty() {
                "there are none".to_string()
            } else {
                format!("known: {}", names.join(", "))
            }
        };
        match wanted {
            Some(name) => config
                .sources
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| {
                    GroupError::new(format!("unknown group source {name} ({})", known()))
                }),
            None => config.default.ok_or_else(|| {
                if config.files.is_empty() {
                    let searched: Vec<String> = config
                        .searched
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    GroupError::new(format!(
                        "no group source: no groups.conf was found (looked for {})",
                        searched.join(", ")
                    ))
                } else {
                    GroupError::new(format!(
                        "no group source: {} defines none",
                        config
                            .files
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }),
        }
    }

    /// The answer of `source` to `query`: an upcall's stdout or a YAML file's text; `None`
    /// when the source has no way to answer it (no such upcall, no such group in a file).
    fn answer(&mut self, index: usize, query: &Query) -> Result<Option<String>, GroupError> {
        if let Some(text) = self.answers.get(&(index, query.clone())) {
            return Ok(Some(text.clone()));
        }
        let source = self.config()?.sources[index].clone();
        let text = match &source.kind {
            Kind::File(groups) => {
                let find = |name: &str| {
                    groups
                        .iter()
                        .find(|(g, _)| g == name)
                        .map(|(_, t)| t.clone())
                };
                match query {
                    Query::Map(group) => find(group),
                    // ClusterShell's file sources answer "all" with their group `all`.
                    Query::All => find("all"),
                    Query::List => Some(
                        groups
                            .iter()
                            .map(|(g, _)| g.as_str())
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                }
            }
            Kind::Upcall(upcalls) => {
                let (which, line, group) = match query {
                    Query::Map(group) => ("map", Some(&upcalls.map), Some(group.as_str())),
                    Query::All => ("all", upcalls.all.as_ref(), None),
                    Query::List => ("list", upcalls.list.as_ref(), None),
                };
                let Some(line) = line else {
                    return Ok(None);
                };
                let dir = upcalls.dir.to_string_lossy().into_owned();
                let mut vars = vec![("CFGDIR", dir.as_str()), ("SOURCE", source.name.as_str())];
                if let Some(g) = group {
                    vars.push(("GROUP", g));
                }
                let line = substitute(line, &vars);
                let answer = upcall::run(&line, &upcalls.dir, &self.limits).map_err(|e| {
                    let target = group.map(|g| format!(" for @{g}")).unwrap_or_default();
                    GroupError::new(format!(
                        "the {which} upcall of group source {}{target} {e} (command: {})",
                        source.name,
                        one_line(&line)
                    ))
                })?;
                if !answer.stderr.is_empty() {
                    tracing::warn!(
                        "the {which} upcall of group source {} wrote on stderr: {}",
                        source.name,
                        answer.stderr
                    );
                }
                Some(answer.stdout)
            }
        };
        if let Some(text) = &text {
            self.answers.insert((index, query.clone()), text.clone());
        }
        Ok(text)
    }

    /// The group names of `source` (`None`: the default), as `nodeset -l` lists them: the
    /// `list` answer's words with their brackets expanded, sorted, each once; and the
    /// source's name.
    pub fn group_names(
        &mut self,
        source: Option<&str>,
    ) -> Result<(String, Vec<String>), GroupError> {
        let index = self.source_index(source)?;
        let name = self.config()?.sources[index].name.clone();
        let Some(text) = self.answer(index, &Query::List)? else {
            return Err(GroupError::new(format!(
                "group source {name} has no list upcall: its groups cannot be listed"
            )));
        };
        let mut set = HostSet::new();
        for word in text.split_whitespace() {
            let more = HostSet::parse(word).map_err(|e| {
                GroupError::new(format!("group source {name} lists a bad group name: {e}"))
            })?;
            set.extend(&more);
        }
        Ok((name, set.expand().collect()))
    }

    /// The set of `@group` of `source`, groups inside it resolved.
    pub fn members(&mut self, source: Option<&str>, group: &str) -> Result<HostSet, GroupError> {
        let source = match source {
            Some(s) => s.to_string(),
            None => {
                let index = self.source_index(None)?;
                self.config()?.sources[index].name.clone()
            }
        };
        HostSet::parse_with_groups(&format!("@{source}:{group}"), DEFAULT_MAX_NAMES, self)
            .map_err(|e| GroupError::new(e.reason().to_string()))
    }

    /// `set` written with the groups of `source` that it holds whole (`nodeset -r`): the
    /// largest groups first, each used when all its nodes are still left, then the rest
    /// folded. `prefix` writes `@source:group`. A source without a `list` upcall has no
    /// groups to offer: the set comes back folded. Names with a `user@` are left as they are.
    pub fn regroup(
        &mut self,
        set: &HostSet,
        source: Option<&str>,
        prefix: bool,
    ) -> Result<String, GroupError> {
        let (name, groups) = match self.group_names(source) {
            Ok(found) => found,
            Err(_) if self.source_has_no_list(source)? => return Ok(set.fold()),
            Err(e) => return Err(e),
        };
        let mut plain = HostSet::new();
        let mut with_user = HostSet::new();
        for host in set.expand() {
            let target = if host.contains('@') {
                &mut with_user
            } else {
                &mut plain
            };
            let _ = target.insert(&host);
        }
        let mut whole: Vec<(usize, String, HostSet)> = Vec::new();
        for group in groups {
            let nodes = self.members(Some(&name), &group)?;
            if !nodes.is_empty() && plain.intersection(&nodes).len() == nodes.len() {
                whole.push((nodes.len(), group, nodes));
            }
        }
        whole.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut rest = plain;
        let mut used = Vec::new();
        for (len, group, nodes) in whole {
            if rest.is_empty() {
                break;
            }
            if rest.intersection(&nodes).len() == len {
                rest = rest.difference(&nodes);
                used.push(group);
            }
        }
        rest.extend(&with_user);
        let at = if prefix {
            format!("@{name}:")
        } else {
            "@".to_string()
        };
        let mut parts = Vec::new();
        if !used.is_empty() {
            parts.push(fold_group_names(&used, &at));
        }
        if !rest.is_empty() {
            parts.push(rest.fold());
        }
        Ok(parts.join(","))
    }

    fn source_has_no_list(&mut self, source: Option<&str>) -> Result<bool, GroupError> {
        let index = self.source_index(source)?;
        Ok(matches!(&self.config()?.sources[index].kind, Kind::Upcall(u) if u.list.is_none()))
    }
}

/// Group names folded as host names are (`rack[1-4]`), each item prefixed with `at`.
fn fold_group_names(names: &[String], at: &str) -> String {
    match HostSet::from_names(names) {
        Ok(set) => top_level_items(&set.fold())
            .into_iter()
            .map(|item| format!("{at}{item}"))
            .collect::<Vec<_>>()
            .join(","),
        Err(_) => {
            let mut sorted = names.to_vec();
            sorted.sort();
            sorted
                .iter()
                .map(|n| format!("{at}{n}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    }
}

/// The comma-separated items of a folded expression (commas inside brackets kept).
fn top_level_items(folded: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in folded.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&folded[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&folded[start..]);
    items
}

/// A command on one line for a message (at most about 200 characters).
fn one_line(line: &str) -> String {
    let flat = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 200 {
        format!("{}…", flat.chars().take(200).collect::<String>())
    } else {
        flat
    }
}

impl GroupResolver for Groups {
    fn group(&mut self, source: Option<&str>, group: &str) -> Result<Resolved, GroupError> {
        let index = self.source_index(source)?;
        let name = self.config()?.sources[index].name.clone();
        let unknown = |how: &str| {
            GroupError::new(format!(
                "unknown group @{group} in group source {name}{how}"
            ))
        };
        let text = self.answer(index, &Query::Map(group.to_string()))?;
        let from_file = matches!(self.config()?.sources[index].kind, Kind::File(_));
        match text {
            None => Err(unknown("")),
            Some(text) if from_file || !text.trim().is_empty() => {
                Ok(Resolved { source: name, text })
            }
            // An upcall's empty answer is an empty group only if the source's list names it.
            Some(text) => match self.group_names(Some(&name)) {
                Ok((_, names)) if names.iter().any(|n| n == group) => {
                    Ok(Resolved { source: name, text })
                }
                Ok(_) => Err(unknown(
                    " (its map upcall printed nothing, and its list upcall does not name it)",
                )),
                Err(_) => Err(unknown(" (its map upcall printed nothing)")),
            },
        }
    }

    fn all(&mut self, source: Option<&str>) -> Result<Resolved, GroupError> {
        let index = self.source_index(source)?;
        let name = self.config()?.sources[index].name.clone();
        if let Some(text) = self.answer(index, &Query::All)? {
            return Ok(Resolved { source: name, text });
        }
        // As ClusterShell: without `all`, every group's nodes.
        let (_, groups) = self.group_names(Some(&name)).map_err(|_| {
            GroupError::new(format!(
                "group source {name} has neither an all nor a list upcall: its nodes cannot all be found"
            ))
        })?;
        let mut texts = Vec::new();
        for group in groups {
            if let Some(text) = self.answer(index, &Query::Map(group))? {
                texts.push(text);
            }
        }
        Ok(Resolved {
            source: name,
            text: texts.join(" "),
        })
    }

    fn list(&mut self, source: Option<&str>) -> Result<(String, Vec<String>), GroupError> {
        self.group_names(source)
    }
}
