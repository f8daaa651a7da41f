//! Host sets on the command line: the `-w`/`-H` expressions, `--hosts-file` lines and `-x`
//! exclusions of `conn run`, and `conn hosts`, which prints a set expanded or folded.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use conn_hostset::{DEFAULT_MAX_NAMES, HostSet, ParseError};

use crate::args::HostsArgs;
use crate::output::{EXIT_USAGE, Failure, ignore_broken_pipe, print_error, print_error_with};

/// Runs `conn hosts`: the union of the expressions minus the exclusions, one name per line or
/// folded; exit 0 (an empty result prints nothing), 2 for a malformed expression.
pub fn main(args: &HostsArgs) -> Result<u8, Failure> {
    let set = host_set(&args.exprs, None, &args.exclude).map_err(SetError::report)?;
    let mut out = io::stdout().lock();
    let written = if args.fold {
        if set.is_empty() {
            Ok(())
        } else {
            writeln!(out, "{}", set.fold())
        }
    } else {
        set.expand().try_for_each(|name| writeln!(out, "{name}"))
    };
    written
        .and_then(|()| out.flush())
        .or_else(ignore_broken_pipe)
        .map_err(|e| Failure::other(format!("writing the host list: {e}")))?;
    Ok(0)
}

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

    /// Prints the error (message, then the caret display) and turns it into a usage failure.
    pub fn report(self) -> Failure {
        match &self.caret {
            Some((line, caret)) => print_error_with(&self.message, &[line, caret]),
            None => print_error(&self.message),
        }
        Failure::reported(EXIT_USAGE)
    }
}

/// The set of `conn run`: every `-w`/`-H` expression and every `--hosts-file` line (an
/// expression each; `#` starts a comment), minus every `-x` expression. More than
/// [`DEFAULT_MAX_NAMES`] hosts in all is an error, as it is for one expression.
pub fn host_set(
    exprs: &[String],
    file: Option<&Path>,
    exclude: &[String],
) -> Result<HostSet, SetError> {
    host_set_with_limit(exprs, file, exclude, DEFAULT_MAX_NAMES)
}

fn host_set_with_limit(
    exprs: &[String],
    file: Option<&Path>,
    exclude: &[String],
    limit: usize,
) -> Result<HostSet, SetError> {
    let mut set = HostSet::new();
    let mut add = |expr: &str, origin: &str| -> Result<(), SetError> {
        let more =
            HostSet::parse_with_limit(expr, limit).map_err(|e| SetError::parse(origin, &e))?;
        set.extend(&more);
        if set.len() > limit {
            return Err(SetError::plain(format!(
                "{origin}more than {limit} hosts in all (the limit)"
            )));
        }
        Ok(())
    };
    for expr in exprs {
        add(expr, "")?;
    }
    if let Some(path) = file {
        let text = fs::read_to_string(path).map_err(|e| {
            SetError::plain(format!("cannot read hosts file {}: {e}", path.display()))
        })?;
        let mut named = 0;
        for (i, line) in text.lines().enumerate() {
            let expr = line.split('#').next().unwrap_or("").trim();
            if !expr.is_empty() {
                add(expr, &format!("{}:{}: ", path.display(), i + 1))?;
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
    let mut removed = HostSet::new();
    for expr in exclude {
        let more =
            HostSet::parse_with_limit(expr, limit).map_err(|e| SetError::parse("-x: ", &e))?;
        removed.extend(&more);
    }
    Ok(set.difference(&removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &HostSet) -> Vec<String> {
        set.expand().collect()
    }

    #[test]
    fn expressions_and_file_lines_merge_and_exclusions_apply() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        fs::write(&file, "# fleet\nb[1-2]  # second\n\n  a\nroot@c[1-3]\n").unwrap();
        let set = host_set(
            &["a".into(), "b1".into()],
            Some(&file),
            &["c2".into(), "b2".into()],
        )
        .unwrap();
        assert_eq!(names(&set), ["a", "b1", "root@c1", "root@c3"]);
        let set = host_set(&["h[1-5]".into()], None, &["h[1-5]".into()]).unwrap();
        assert!(set.is_empty());
    }

    #[test]
    fn errors_name_the_origin_and_carry_a_caret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        fs::write(&file, "ok\nnot ok\n").unwrap();
        let e = host_set(&[], Some(&file), &[]).unwrap_err();
        assert!(
            e.message.contains("hosts:2: ") && e.message.contains("\"not ok\""),
            "{e:?}"
        );
        assert_eq!(e.caret, Some(("not ok".into(), "   ^".into())));
        let e = host_set(&["h[1-3".into()], None, &[]).unwrap_err();
        assert!(e.message.contains("never closed"), "{e:?}");
        assert_eq!(e.caret.unwrap().1, " ^");
        let e = host_set(&["h1".into()], None, &["h]".into()]).unwrap_err();
        assert!(e.message.starts_with("-x: "), "{e:?}");
        fs::write(&file, "# nothing\n").unwrap();
        let e = host_set(&[], Some(&file), &[]).unwrap_err();
        assert!(e.message.contains("names no host") && e.caret.is_none());
        let e = host_set(&[], Some(&dir.path().join("missing")), &[]).unwrap_err();
        assert!(e.message.contains("cannot read hosts file"), "{e:?}");
    }

    #[test]
    fn the_total_is_limited_across_expressions() {
        let exprs = ["a[1-6]".to_string(), "b[1-6]".to_string()];
        let e = host_set_with_limit(&exprs, None, &[], 10).unwrap_err();
        assert!(e.message.contains("more than 10 hosts"), "{e:?}");
        assert!(host_set_with_limit(&exprs, None, &[], 12).is_ok());
        let e = host_set_with_limit(&["a[1-11]".into()], None, &[], 10).unwrap_err();
        assert!(e.message.contains("more than 10 names"), "{e:?}");
        assert!(e.caret.is_some());
    }
}
