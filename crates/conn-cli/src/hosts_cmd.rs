//! `conn hosts`: a host set (node groups too) printed one name per line, folded (`-f`),
//! regrouped (`-r`), or the group source's groups listed (`-l`), as `nodeset` does.

use std::io::{self, Write};

use conn_hostset::HostSet;

use crate::args::HostsArgs;
use crate::hosts::{CommandGroups, Selection, SetError, host_set};
use crate::output::{Failure, ignore_broken_pipe};

/// Runs `conn hosts`; exit 0 (an empty result prints nothing), 2 for a malformed expression,
/// an unknown group or a failed upcall.
pub fn main(args: &HostsArgs) -> Result<u8, Failure> {
    let mut groups = CommandGroups::new(args.groupsource.as_deref())?;
    let selection = Selection {
        exprs: &args.exprs,
        exclude: &args.exclude,
        all: args.all,
        ..Selection::default()
    };
    let set = host_set(&selection, &mut groups).map_err(SetError::report)?;
    let lines = if args.list > 0 {
        let filter = (!args.exprs.is_empty() || args.all).then_some(&set);
        list(&mut groups, args, filter)?
    } else if args.regroup {
        let source = args.groupsource.as_deref();
        let text = groups
            .groups()
            .regroup(&set, source, source.is_some())
            .map_err(|e| Failure::usage(e.to_string()))?;
        (!text.is_empty()).then_some(text).into_iter().collect()
    } else if args.fold {
        (!set.is_empty()).then(|| set.fold()).into_iter().collect()
    } else {
        return print(set.expand());
    };
    print(lines.into_iter())
}

/// The groups of the source, one per line (`nodeset -l`, `-ll`, `-lll`); with `filter`, only
/// those holding some of its hosts, shown with those hosts.
fn list(
    groups: &mut CommandGroups,
    args: &HostsArgs,
    filter: Option<&HostSet>,
) -> Result<Vec<String>, Failure> {
    let source = args.groupsource.as_deref();
    let usage = |e: conn_groups::GroupError| Failure::usage(e.to_string());
    let (name, names) = groups.groups().group_names(source).map_err(usage)?;
    let mut lines = Vec::new();
    for group in names {
        let label = match source {
            Some(_) => format!("@{name}:{group}"),
            None => format!("@{group}"),
        };
        let needs_members = filter.is_some() || args.list > 1;
        let members = if needs_members {
            groups
                .groups()
                .members(Some(&name), &group)
                .map_err(usage)?
        } else {
            HostSet::new()
        };
        let line = match filter {
            Some(set) => {
                let inside = members.intersection(set);
                if inside.is_empty() {
                    continue;
                }
                match args.list {
                    1 => label,
                    2 => format!("{label} {}", inside.fold()),
                    _ => format!(
                        "{label} {} {}/{}",
                        inside.fold(),
                        inside.len(),
                        members.len()
                    ),
                }
            }
            None => match args.list {
                1 => label,
                2 => format!("{label} {}", members.fold()),
                _ => format!("{label} {} {}", members.fold(), members.len()),
            },
        };
        lines.push(line);
    }
    Ok(lines)
}

fn print(lines: impl Iterator<Item = String>) -> Result<u8, Failure> {
    let mut out = io::stdout().lock();
    let mut lines = lines;
    lines
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush())
        .or_else(ignore_broken_pipe)
        .map_err(|e| Failure::other(format!("writing the host list: {e}")))?;
    Ok(0)
}
