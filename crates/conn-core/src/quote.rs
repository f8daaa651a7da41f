//! Quoting for the remote POSIX shell.
//!
//! ssh joins its argv with spaces into one string that the remote login shell parses again, so
//! every argument of a remote command must be quoted; a local command is executed directly and
//! needs none.

use std::borrow::Cow;

use crate::error::{Error, Result};

/// Quotes `arg` for a POSIX shell so that the shell reads it back as exactly one word, `arg`.
/// Plain words (`[A-Za-z0-9_./:=@%+,-]`) come back unchanged. Fails only for a NUL byte, which
/// no shell word can hold.
///
/// ```
/// assert_eq!(conn_core::quote("ls").unwrap(), "ls");
/// assert_eq!(conn_core::quote("my file").unwrap(), "'my file'");
/// assert_eq!(conn_core::quote("").unwrap(), "''");
/// ```
pub fn quote(arg: &str) -> Result<Cow<'_, str>> {
    shlex::try_quote(arg).map_err(|e| Error::Unquotable {
        arg: arg.to_string(),
        reason: e.to_string(),
    })
}

/// Quotes `arg` only when it is bound for a remote shell (`remote == true`).
pub fn quote_if_remote(arg: &str, remote: bool) -> Result<Cow<'_, str>> {
    if remote {
        quote(arg)
    } else {
        Ok(Cow::Borrowed(arg))
    }
}

/// Quotes every element of `argv` and joins them with spaces: one line a POSIX shell splits back
/// into `argv`. Used for remote commands and for logging any command line.
pub fn join_quoted<S: AsRef<str>>(argv: &[S]) -> Result<String> {
    let mut line = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&quote(arg.as_ref())?);
    }
    Ok(line)
}

/// Like [`join_quoted`] for log lines, where a NUL byte is shown escaped instead of failing.
pub fn display_line<S: AsRef<str>>(argv: &[S]) -> String {
    join_quoted(argv)
        .unwrap_or_else(|_| format!("{:?}", argv.iter().map(AsRef::as_ref).collect::<Vec<_>>()))
}

/// Escapes `arg` for embedding inside a `"…"` string of a remote pipeline: `\`, `"`, `$` and
/// backtick get a backslash; everything else stays as it is.
///
/// ```
/// assert_eq!(conn_core::dquote(r#"a "b" $HOME `x` \n"#), r#"a \"b\" \$HOME \`x\` \\n"#);
/// ```
pub fn dquote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    for c in arg.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nul_is_an_error_naming_the_argument() {
        let err = quote("a\0b").unwrap_err();
        assert!(err.to_string().contains("\"a\\0b\""), "{err}");
    }

    #[test]
    fn quote_if_remote_leaves_local_args_alone() {
        assert_eq!(quote_if_remote("a b", false).unwrap(), "a b");
        assert_eq!(quote_if_remote("a b", true).unwrap(), "'a b'");
    }

    proptest! {
        #[test]
        fn quoted_argv_splits_back(argv in proptest::collection::vec("[^\0]*", 0..6)) {
            let line = join_quoted(&argv).unwrap();
            prop_assert_eq!(shlex::split(&line).unwrap(), argv);
        }

        #[test]
        fn dquote_survives_a_double_quoted_shell_string(arg in "[^\0]*") {
            let line = format!("\"{}\"", dquote(&arg));
            prop_assert_eq!(shlex::split(&line).unwrap(), vec![arg]);
        }
    }
}
