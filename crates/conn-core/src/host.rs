//! `[user@]host` endpoints, validated once so that no bad value can reach ssh.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Characters that a shell or ssh would give a meaning to; none may appear in a `[user@]host`
/// once its first `@` is removed.
const FORBIDDEN: &str = "\"'`~!@#$%^&*()+={}[]|;<>?,\\/";

/// A validated remote endpoint, `host` or `user@host`.
///
/// It can only be built through [`UserHost::parse`] (or [`FromStr`]), which applies the rules of
/// docs/design.md#endpoint: after removing the first `@` the text must be non-empty, must not start
/// with `-` (ssh would read it as an option), must not contain `..`, whitespace, or any of
/// `` "'`~!@#$%^&*()+={}[]|;<>?,\/ ``. `:` `.` `_` `-` are allowed, so IPv6 literals and FQDNs
/// pass. conn is stricter than that in three places, all of which ssh would only fail on later:
/// the user (when an `@` is present) and the host must each be non-empty, the host must not
/// start with `-` either, and control characters (NUL among them) are refused.
///
/// The empty string is not a `UserHost`: local mode is expressed as `Option<UserHost>::None`.
///
/// ```
/// use conn_core::UserHost;
/// let uh: UserHost = "alice@db-1.example.com".parse().unwrap();
/// assert_eq!(uh.user(), Some("alice"));
/// assert_eq!(uh.host(), "db-1.example.com");
/// assert!(UserHost::parse("-oProxyCommand=x").is_err());
/// assert!(UserHost::parse("a b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserHost {
    text: String,
    /// Byte index of the `@` separating user and host, if any.
    at: Option<usize>,
}

impl UserHost {
    /// Validates `input` as `[user@]host`; the error quotes the input and says which rule failed.
    pub fn parse(input: &str) -> Result<Self> {
        let reject = |reason: &'static str| Error::InvalidHost {
            input: input.to_string(),
            reason,
        };
        let at = input.find('@');
        let rest: String = match at {
            Some(i) => [&input[..i], &input[i + 1..]].concat(),
            None => input.to_string(),
        };
        if rest.is_empty() {
            return Err(reject("empty"));
        }
        if rest.starts_with('-') {
            return Err(reject(
                "must not start with '-' (ssh would read it as an option)",
            ));
        }
        if rest.contains("..") {
            return Err(reject("must not contain '..'"));
        }
        if rest.chars().any(char::is_whitespace) {
            return Err(reject("must not contain whitespace"));
        }
        if rest.chars().any(char::is_control) {
            return Err(reject("must not contain control characters"));
        }
        if rest.chars().any(|c| FORBIDDEN.contains(c)) {
            return Err(reject(
                "must not contain any of \"'`~!@#$%^&*()+={}[]|;<>?,\\/ (besides one '@' after the user)",
            ));
        }
        if let Some(i) = at {
            if i == 0 {
                return Err(reject("empty user before '@'"));
            }
            if i + 1 == input.len() {
                return Err(reject("empty host after '@'"));
            }
            if input[i + 1..].starts_with('-') {
                return Err(reject("host must not start with '-'"));
            }
        }
        Ok(UserHost {
            text: input.to_string(),
            at,
        })
    }

    /// The user part, if one was given.
    pub fn user(&self) -> Option<&str> {
        self.at.map(|i| &self.text[..i])
    }

    /// The host part (name, FQDN or IP literal).
    pub fn host(&self) -> &str {
        match self.at {
            Some(i) => &self.text[i + 1..],
            None => &self.text,
        }
    }

    /// The whole endpoint as given, `host` or `user@host`: what ssh receives.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for UserHost {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        UserHost::parse(s)
    }
}

impl fmt::Display for UserHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for UserHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl AsRef<str> for UserHost {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hosts_users_fqdns_and_ipv6() {
        for ok in [
            "h",
            "root@h",
            "a.b-c_d.example.com",
            "u@127.0.0.1",
            "::1",
            "u@fe80::1:2",
            "user-1.x@host_2",
        ] {
            let uh = UserHost::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(uh.as_str(), ok);
        }
        let uh = UserHost::parse("u@fe80::1").unwrap();
        assert_eq!((uh.user(), uh.host()), (Some("u"), "fe80::1"));
        let uh = UserHost::parse("h").unwrap();
        assert_eq!((uh.user(), uh.host()), (None, "h"));
    }

    #[test]
    fn rejects_what_the_spec_rejects_and_names_the_input() {
        for bad in [
            "",
            "@",
            "-oProxyCommand=x",
            "-h",
            "a..b",
            "a b",
            "a\tb",
            "a\nb",
            "u@h@x",
            "h;rm",
            "h|x",
            "h$x",
            "h`x`",
            "h'x",
            "h\"x",
            "h~",
            "h!",
            "h#",
            "h%",
            "h^",
            "h&",
            "h*",
            "h(",
            "h)",
            "h+",
            "h=",
            "h{",
            "h}",
            "h[",
            "h]",
            "h<",
            "h>",
            "h?",
            "h,",
            "h\\x",
            "h/x",
            "@h",
            "u@",
            "u@-h",
            "u\u{a0}h",
            "h\0",
            "h\u{7}",
        ] {
            let err = UserHost::parse(bad).expect_err(bad);
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{bad:?}")),
                "{msg} should quote {bad:?}"
            );
        }
    }
}
