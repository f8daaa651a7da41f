//! Quoting for the remote POSIX shell, on bytes.
//!
//! ssh joins its argv with spaces into one string that the remote login shell parses again, so
//! every argument of a remote command must be quoted; a local command is executed directly and
//! needs none. Quoting works on bytes (`OsStr`), so a name that is not UTF-8 reaches the remote
//! side unchanged.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::error::{Error, Result};

/// Quotes `arg` for a POSIX shell so that the shell reads it back as exactly one word, `arg`.
/// Plain words (`[A-Za-z0-9_./:=@%+,-]`) come back unchanged. Fails only for a NUL byte, which
/// no shell word can hold.
///
/// ```
/// assert_eq!(*conn_core::quote("ls").unwrap(), *"ls");
/// assert_eq!(*conn_core::quote("my file").unwrap(), *"'my file'");
/// assert_eq!(*conn_core::quote("").unwrap(), *"''");
/// ```
pub fn quote<S: AsRef<OsStr> + ?Sized>(arg: &S) -> Result<Cow<'_, OsStr>> {
    let arg = arg.as_ref();
    match shlex::bytes::try_quote(arg.as_bytes()) {
        Ok(Cow::Borrowed(b)) => Ok(Cow::Borrowed(OsStr::from_bytes(b))),
        Ok(Cow::Owned(v)) => Ok(Cow::Owned(OsString::from_vec(v))),
        Err(e) => Err(Error::Unquotable {
            arg: arg.to_string_lossy().into_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Quotes every element of `argv` and joins them with spaces: one line a POSIX shell splits back
/// into `argv`. Used for remote commands.
///
/// ```
/// assert_eq!(conn_core::join_quoted(&["echo", "a b"]).unwrap(), "echo 'a b'");
/// ```
pub fn join_quoted<S: AsRef<OsStr>>(argv: &[S]) -> Result<OsString> {
    let mut line = Vec::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        line.extend_from_slice(quote(arg.as_ref())?.as_bytes());
    }
    Ok(OsString::from_vec(line))
}

/// A command line for logs and error messages: quoted like [`join_quoted`], shown as lossy
/// UTF-8, with a NUL byte escaped instead of failing.
pub fn display_line<S: AsRef<OsStr>>(argv: &[S]) -> String {
    match join_quoted(argv) {
        Ok(line) => line.to_string_lossy().into_owned(),
        Err(_) => format!(
            "{:?}",
            argv.iter()
                .map(|a| a.as_ref().to_string_lossy())
                .collect::<Vec<_>>()
        ),
    }
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
    fn non_utf8_bytes_are_quoted_unchanged() {
        let arg = OsStr::from_bytes(b"caf\xe9 x");
        assert_eq!(quote(arg).unwrap().as_bytes(), b"'caf\xe9 x'");
    }

    proptest! {
        #[test]
        fn quoted_argv_splits_back(argv in proptest::collection::vec("[^\0]*", 0..6)) {
            let line = join_quoted(&argv).unwrap();
            prop_assert_eq!(shlex::split(line.to_str().unwrap()).unwrap(), argv);
        }

        #[test]
        fn quoted_bytes_split_back(argv in proptest::collection::vec(
            proptest::collection::vec(1u8..=255, 0..12), 0..6)) {
            let argv: Vec<OsString> = argv.into_iter().map(OsString::from_vec).collect();
            let line = join_quoted(&argv).unwrap();
            let back: Vec<Vec<u8>> = shlex::bytes::split(line.as_bytes()).unwrap();
            prop_assert_eq!(back, argv.into_iter().map(|a| a.into_vec()).collect::<Vec<_>>());
        }

        #[test]
        fn dquote_survives_a_double_quoted_shell_string(arg in "[^\0]*") {
            let line = format!("\"{}\"", dquote(&arg));
            prop_assert_eq!(shlex::split(&line).unwrap(), vec![arg]);
        }
    }
}
