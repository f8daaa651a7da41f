//! Host sets on the command line: the `-w`/`-H` expressions, `--hosts-file` lines, `-a`, `-g`,
//! `-x` and `-X` of `conn run` and `conn copy`, with ClusterShell's node groups resolved
//! (conn_groups) before anything runs.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use conn_core::{Job, SimpleJob, UserHost};
use conn_groups::{GroupError, GroupResolver, Groups, Resolved};
use conn_hostset::{DEFAULT_MAX_NAMES, HostSet, ParseError};

use crate::args::Targets;
use crate::output::{EXIT_INTERRUPTED, EXIT_USAGE, Failure, print_error, print_error_with};
use crate::signals;

/// The environment variable that sets the time limit of one group upcall (seconds).
pub const GROUPS_TIMEOUT_ENV: &str = "CONN_GROUPS_TIMEOUT";

/// Why a host set could not be made: a one-line message and, for a malformed expression, the
/// expression and a caret under the offending character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetError {
    /// One line: where the expression came from, what is wrong and at which byte.
    pub message: String,
    /// The expression (or a window of it) and the caret line below it.
    pub caret: Option<(String, String)>,
}

impl SetError {
    fn parse(origin: &str, e: &ParseError) -> Self {
        SetError {
            message: format!("{origin}{e}"),
            caret: Some(e.caret()),
        }
    }

    fn plain(message: String) -> Self {
        SetError {
            message,
            caret: None,
        }
    }

    /// Prints the error (message, then the caret display) and turns it into a usage failure,
    /// or exit 130 when a signal interrupted an upcall.
    pub fn report(self) -> Failure {
        match &self.caret {
            Some((line, caret)) => print_error_with(&self.message, &[line, caret]),
            None => print_error(&self.message),
        }
        let code = if signals::interrupted().is_some() {
            EXIT_INTERRUPTED
        } else {
            EXIT_USAGE
        };
        Failure::reported(code)
    }
}

/// What selects the hosts: the union of `exprs`, the lines of `file`, every host of the group
/// source (`all`) and the hosts of `groups`, minus `exclude` and the hosts of
/// `exclude_groups`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Selection<'a> {
    /// `-w`/`-H` expressions (groups allowed).
    pub exprs: &'a [String],
    /// `--hosts-file`: one expression per line, `#` starts a comment.
    pub file: Option<&'a Path>,
    /// `-x` expressions.
    pub exclude: &'a [String],
    /// `-g` group names (host-set syntax: `rack[1-2]`, `src:g`).
    pub groups: &'a [String],
    /// `-X` group names.
    pub exclude_groups: &'a [String],
    /// `-a`.
    pub all: bool,
}

impl<'a> Selection<'a> {
    /// The selection of `conn run` and `conn copy`.
    pub fn of(targets: &'a Targets) -> Self {
        Selection {
            exprs: &targets.hosts,
            file: targets.hosts_file.as_deref(),
            exclude: &targets.exclude,
            groups: &targets.groups,
            exclude_groups: &targets.exclude_groups,
            all: targets.all,
        }
    }
}

/// ClusterShell's node groups for one command: the configuration is read, and upcalls run,
/// only if an expression names a group; a signal (Ctrl-C) ends a running upcall.
pub struct CommandGroups {
    groups: Groups,
    // Kept alive for the signal handler, which holds it weakly.
    _job: Arc<SimpleJob>,
}

impl CommandGroups {
    /// The groups of the default `groups.conf` files, `source` (if given) as default source,
    /// upcalls limited by `$CONN_GROUPS_TIMEOUT` (or conn_groups' default).
    pub fn new(source: Option<&str>) -> Result<Self, Failure> {
        let job = Arc::new(SimpleJob::new());
        signals::register(&job);
        let mut groups = Groups::from_env()
            .with_timeout(upcall_timeout()?)
            .with_cancel(job.cancel_token().clone());
        if let Some(source) = source {
            groups = groups.with_default_source(source);
        }
        Ok(CommandGroups { groups, _job: job })
    }

    /// The resolver itself, for listing and regrouping.
    pub fn groups(&mut self) -> &mut Groups {
        &mut self.groups
    }
}

impl GroupResolver for CommandGroups {
    fn group(&mut self, source: Option<&str>, group: &str) -> Result<Resolved, GroupError> {
        self.groups.group(source, group)
    }
    fn all(&mut self, source: Option<&str>) -> Result<Resolved, GroupError> {
        self.groups.all(source)
    }
    fn list(&mut self, source: Option<&str>) -> Result<(String, Vec<String>), GroupError> {
        self.groups.list(source)
    }
}

/// `$CONN_GROUPS_TIMEOUT` as a duration, else conn_groups' default.
fn upcall_timeout() -> Result<Duration, Failure> {
    let Some(value) = std::env::var_os(GROUPS_TIMEOUT_ENV) else {
        return Ok(conn_groups::DEFAULT_TIMEOUT);
    };
    let text = value.to_string_lossy();
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 1e6 => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(Failure::usage(format!(
            "{GROUPS_TIMEOUT_ENV}={text:?} is not a positive number of seconds"
        ))),
    }
}

/// The hosts of `conn run` and `conn copy`, in the host set's order, each validated as
/// `[user@]host` (the set's rules already refuse what `UserHost` refuses; this is the check at
/// the door of the transport). A malformed expression, an unknown group or a failed upcall is
/// printed (with a caret), exit 2; so is a set left empty.
pub(crate) fn host_list(targets: &Targets) -> Result<Vec<String>, Failure> {
    let mut groups = CommandGroups::new(targets.groupsource.as_deref())?;
    let set = host_set(&Selection::of(targets), &mut groups).map_err(SetError::report)?;
    if set.is_empty() {
        let why = if targets.exclude.is_empty() && targets.exclude_groups.is_empty() {
            "the selected groups hold no host"
        } else {
            "-x/-X removed every host"
        };
        return Err(Failure::usage(format!("no host left to run on: {why}")));
    }
    set.expand()
        .map(|h| {
            UserHost::parse(&h).map_err(|e| Failure::usage(e.to_string()))?;
            Ok(h)
        })
        .collect()
}

/// The set of a [`Selection`]. More than [`DEFAULT_MAX_NAMES`] hosts in all is an error, as
/// it is for one expression.
pub fn host_set(sel: &Selection<'_>, groups: &mut dyn GroupResolver) -> Result<HostSet, SetError> {
    host_set_with_limit(sel, groups, DEFAULT_MAX_NAMES)
}

fn host_set_with_limit(
    sel: &Selection<'_>,
    groups: &mut dyn GroupResolver,
    limit: usize,
) -> Result<HostSet, SetError> {
    let parse = |expr: &str, origin: &str, groups: &mut dyn GroupResolver| {
        HostSet::parse_with_groups(expr, limit, groups).map_err(|e| SetError::parse(origin, &e))
    };
    let mut set = HostSet::new();
    let mut add = |more: HostSet, origin: &str| -> Result<(), SetError> {
        set.extend(&more);
        if set.len() > limit {
            return Err(SetError::plain(format!(
                "{origin}more than {limit} hosts in all (the limit)"
            )));
        }
        Ok(())
    };
    for expr in sel.exprs {
        add(parse(expr, "", groups)?, "")?;
    }
    if let Some(path) = sel.file {
        let text = fs::read_to_string(path).map_err(|e| {
            SetError::plain(format!("cannot read hosts file {}: {e}", path.display()))
        })?;
        let mut named = 0;
        for (i, line) in text.lines().enumerate() {
            let expr = line.split('#').next().unwrap_or("").trim();
            if !expr.is_empty() {
                let origin = format!("{}:{}: ", path.display(), i + 1);
                add(parse(expr, &origin, groups)?, &origin)?;
                named += 1;
            }
        }
        if named == 0 {
            return Err(SetError::plain(format!(
                "hosts file {} names no host",
                path.display()
            )));
        }
    }
    if sel.all {
        add(parse("@*", "-a: ", groups)?, "-a: ")?;
    }
    for expr in group_refs(sel.groups, "-g: ", limit)? {
        add(parse(&expr, "-g: ", groups)?, "-g: ")?;
    }
    let mut removed = HostSet::new();
    for expr in sel.exclude {
        removed.extend(&parse(expr, "-x: ", groups)?);
    }
    for expr in group_refs(sel.exclude_groups, "-X: ", limit)? {
        removed.extend(&parse(&expr, "-X: ", groups)?);
    }
    Ok(set.difference(&removed))
}

/// `-g`/`-X` values as group references: each value is a host-set expression of group names
/// (`web`, `rack[1-2]`, `slurm:gpu`, `a,b`), and each name becomes `@name`, as clush does.
fn group_refs(values: &[String], origin: &str, limit: usize) -> Result<Vec<String>, SetError> {
    let mut refs = Vec::new();
    for value in values {
        let names =
            HostSet::parse_with_limit(value, limit).map_err(|e| SetError::parse(origin, &e))?;
        refs.extend(names.expand().map(|name| format!("@{name}")));
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use conn_groups::GroupError;

    /// Groups `web` (web[1-3]) and `db` (db[1-2]) of a source `t`; nothing else.
    struct Two;
    impl GroupResolver for Two {
        fn group(&mut self, _: Option<&str>, group: &str) -> Result<Resolved, GroupError> {
            let text = match group {
                "web" => "web[1-3]",
                "db" => "db[1-2]",
                _ => {
                    return Err(GroupError::new(format!(
                        "unknown group @{group} in group source t"
                    )));
                }
            };
            Ok(Resolved {
                source: "t".into(),
                text: text.into(),
            })
        }
        fn all(&mut self, _: Option<&str>) -> Result<Resolved, GroupError> {
            Ok(Resolved {
                source: "t".into(),
                text: "@web,@db".into(),
            })
        }
        fn list(&mut self, _: Option<&str>) -> Result<(String, Vec<String>), GroupError> {
            Ok(("t".into(), vec!["db".into(), "web".into()]))
        }
    }

    fn names(set: &HostSet) -> Vec<String> {
        set.expand().collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expressions_and_file_lines_merge_and_exclusions_apply() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        fs::write(&file, "# fleet\nb[1-2]  # second\n\n  a\nroot@c[1-3]\n").unwrap();
        let (exprs, exclude) = (strings(&["a", "b1"]), strings(&["c2", "b2"]));
        let sel = Selection {
            exprs: &exprs,
            file: Some(&file),
            exclude: &exclude,
            ..Default::default()
        };
        assert_eq!(
            names(&host_set(&sel, &mut Two).unwrap()),
            ["a", "b1", "root@c1", "root@c3"]
        );
        let (exprs, exclude) = (strings(&["h[1-5]"]), strings(&["h[1-5]"]));
        let sel = Selection {
            exprs: &exprs,
            exclude: &exclude,
            ..Default::default()
        };
        assert!(host_set(&sel, &mut Two).unwrap().is_empty());
    }

    #[test]
    fn groups_come_from_w_g_a_and_leave_by_x_and_big_x() {
        let (exprs, groups, xg) = (
            strings(&["@web!web2,x"]),
            strings(&["db"]),
            strings(&["web"]),
        );
        let sel = Selection {
            exprs: &exprs,
            groups: &groups,
            ..Default::default()
        };
        assert_eq!(
            names(&host_set(&sel, &mut Two).unwrap()),
            ["db1", "db2", "web1", "web3", "x"]
        );
        let sel = Selection {
            all: true,
            exclude_groups: &xg,
            ..Default::default()
        };
        assert_eq!(names(&host_set(&sel, &mut Two).unwrap()), ["db1", "db2"]);
        let exclude = strings(&["@db"]);
        let sel = Selection {
            all: true,
            exclude: &exclude,
            ..Default::default()
        };
        assert_eq!(
            names(&host_set(&sel, &mut Two).unwrap()),
            ["web1", "web2", "web3"]
        );
        let groups = strings(&["web,nope"]);
        let e = host_set(
            &Selection {
                groups: &groups,
                ..Default::default()
            },
            &mut Two,
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("-g: ")
                && e.message.contains("unknown group @nope in group source t"),
            "{e:?}"
        );
    }

    #[test]
    fn errors_name_the_origin_and_carry_a_caret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        fs::write(&file, "ok\nnot ok\n").unwrap();
        let sel = |file| Selection {
            file,
            ..Default::default()
        };
        let e = host_set(&sel(Some(&file)), &mut Two).unwrap_err();
        assert!(
            e.message.contains("hosts:2: ") && e.message.contains("\"not ok\""),
            "{e:?}"
        );
        assert_eq!(e.caret, Some(("not ok".into(), "   ^".into())));
        let exprs = strings(&["h[1-3"]);
        let e = host_set(
            &Selection {
                exprs: &exprs,
                ..Default::default()
            },
            &mut Two,
        )
        .unwrap_err();
        assert!(e.message.contains("never closed"), "{e:?}");
        assert_eq!(e.caret.unwrap().1, " ^");
        let (exprs, exclude) = (strings(&["h1"]), strings(&["h]"]));
        let e = host_set(
            &Selection {
                exprs: &exprs,
                exclude: &exclude,
                ..Default::default()
            },
            &mut Two,
        )
        .unwrap_err();
        assert!(e.message.starts_with("-x: "), "{e:?}");
        fs::write(&file, "# nothing\n").unwrap();
        let e = host_set(&sel(Some(&file)), &mut Two).unwrap_err();
        assert!(e.message.contains("names no host") && e.caret.is_none());
        let missing = dir.path().join("missing");
        let e = host_set(&sel(Some(&missing)), &mut Two).unwrap_err();
        assert!(e.message.contains("cannot read hosts file"), "{e:?}");
    }

    /// `host_list` of `-w` expressions, a hosts file and `-x` expressions.
    fn hosts_of(
        hosts: &[&str],
        file: Option<&Path>,
        exclude: &[&str],
    ) -> Result<Vec<String>, Failure> {
        host_list(&Targets {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            hosts_file: file.map(Path::to_path_buf),
            exclude: exclude.iter().map(|h| h.to_string()).collect(),
            groups: Vec::new(),
            exclude_groups: Vec::new(),
            all: false,
            groupsource: None,
        })
    }

    #[test]
    fn host_lists_merge_dedupe_skip_comments_and_follow_the_set_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        fs::write(&file, "# fleet\nb  # second\n\n  a\nc,h[09-10]\n").unwrap();
        let hosts = hosts_of(&["h[10-11]", "a"], Some(&file), &["c"]);
        assert_eq!(hosts.unwrap(), ["a", "b", "h09", "h10", "h11"]);
    }

    #[test]
    fn bad_host_sets_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        fs::write(&file, "ok\nnot ok\n").unwrap();
        let err = hosts_of(&[], Some(&file), &[]).unwrap_err();
        assert_eq!(err.code, 2);
        let err = hosts_of(&["-oProxyCommand=x"], None, &[]).unwrap_err();
        assert_eq!(err.code, 2);
        fs::write(&file, "# nothing\n").unwrap();
        assert_eq!(hosts_of(&[], Some(&file), &[]).unwrap_err().code, 2);
        let err = hosts_of(&["h[1-2]"], None, &["h[1-2]"]).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(err.message.contains("no host left"), "{err}");
    }

    #[test]
    fn the_total_is_limited_across_expressions() {
        let exprs = strings(&["a[1-6]", "b[1-6]"]);
        let sel = Selection {
            exprs: &exprs,
            ..Default::default()
        };
        let e = host_set_with_limit(&sel, &mut Two, 10).unwrap_err();
        assert!(e.message.contains("more than 10 hosts"), "{e:?}");
        assert!(host_set_with_limit(&sel, &mut Two, 12).is_ok());
        let exprs = strings(&["a[1-11]"]);
        let sel = Selection {
            exprs: &exprs,
            ..Default::default()
        };
        let e = host_set_with_limit(&sel, &mut Two, 10).unwrap_err();
        assert!(e.message.contains("more than 10 names"), "{e:?}");
        assert!(e.caret.is_some());
    }
}
