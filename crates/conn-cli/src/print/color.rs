//! Colour: host prefixes and headers coloured, stderr in red, when the user wants it
//! (`--color`, `NO_COLOR`, `CLICOLOR`, `CLICOLOR_FORCE`).

use std::io::IsTerminal;

use conn_core::StreamKind;

/// The colours of a run's output; all empty when colour is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Palette {
    prefix: &'static str,
    error: &'static str,
    header: &'static str,
    reset: &'static str,
}

impl Palette {
    /// No colour.
    pub const PLAIN: Palette = Palette {
        prefix: "",
        error: "",
        header: "",
        reset: "",
    };

    /// ANSI colours: prefixes in cyan, stderr lines in red, headers in bold blue.
    pub const ANSI: Palette = Palette {
        prefix: "\x1b[36m",
        error: "\x1b[31m",
        header: "\x1b[1;34m",
        reset: "\x1b[0m",
    };

    /// The palette for `--color WHEN` on a stream that is a terminal or not, with the
    /// environment's say: `NO_COLOR` (set, not empty) turns `auto` off, `CLICOLOR=0` too,
    /// `CLICOLOR_FORCE` (set, not `0`) turns it on unless `NO_COLOR` (which wins, as in clush);
    /// `always` and `never` decide alone.
    pub fn choose(when: &str, terminal: bool, env: &dyn Fn(&str) -> Option<String>) -> Palette {
        let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
        let on = match when {
            "always" => true,
            "never" => false,
            _ if set("NO_COLOR") => false,
            _ if env("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") => true,
            _ if env("CLICOLOR").is_some_and(|v| v == "0") => false,
            _ => terminal,
        };
        if on { Palette::ANSI } else { Palette::PLAIN }
    }

    /// [`Palette::choose`] for this process's stdout and environment.
    pub fn for_stdout(when: &str) -> Palette {
        Palette::choose(when, std::io::stdout().is_terminal(), &|name| {
            std::env::var(name).ok()
        })
    }

    /// Appends one output line to `out`: `prefix` (when given) and the line, stderr in red.
    pub fn line(&self, out: &mut Vec<u8>, prefix: Option<&str>, stream: StreamKind, line: &[u8]) {
        let error = stream == StreamKind::Stderr;
        if error {
            out.extend_from_slice(self.error.as_bytes());
        }
        if let Some(host) = prefix {
            if !error {
                out.extend_from_slice(self.prefix.as_bytes());
            }
            out.extend_from_slice(host.as_bytes());
            out.extend_from_slice(b": ");
            if !error {
                out.extend_from_slice(self.reset.as_bytes());
            }
        }
        let (body, newline) = match line.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (line, false),
        };
        out.extend_from_slice(body);
        if error {
            out.extend_from_slice(self.reset.as_bytes());
        }
        if newline {
            out.push(b'\n');
        }
    }

    /// `text` as a header.
    pub fn header(&self, text: &str) -> String {
        format!("{}{text}{}", self.header, self.reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_environment_decides_auto_and_never_always() {
        assert_eq!(Palette::choose("auto", true, &env(&[])), Palette::ANSI);
        assert_eq!(Palette::choose("auto", false, &env(&[])), Palette::PLAIN);
        assert_eq!(
            Palette::choose("auto", true, &env(&[("NO_COLOR", "1")])),
            Palette::PLAIN
        );
        assert_eq!(
            Palette::choose("auto", true, &env(&[("NO_COLOR", "")])),
            Palette::ANSI
        );
        assert_eq!(
            Palette::choose("auto", true, &env(&[("CLICOLOR", "0")])),
            Palette::PLAIN
        );
        assert_eq!(
            Palette::choose("auto", false, &env(&[("CLICOLOR_FORCE", "1")])),
            Palette::ANSI
        );
        assert_eq!(
            Palette::choose("never", true, &env(&[("CLICOLOR_FORCE", "1")])),
            Palette::PLAIN
        );
        assert_eq!(
            Palette::choose(
                "auto",
                false,
                &env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])
            ),
            Palette::PLAIN,
            "NO_COLOR wins over CLICOLOR_FORCE"
        );
        assert_eq!(
            Palette::choose("always", false, &env(&[("NO_COLOR", "1")])),
            Palette::ANSI
        );
    }

    #[test]
    fn lines_keep_their_bytes_and_colour_around_them() {
        let mut out = Vec::new();
        Palette::PLAIN.line(&mut out, Some("h1"), StreamKind::Stdout, b"a\xffb\n");
        assert_eq!(out, b"h1: a\xffb\n");
        let mut out = Vec::new();
        Palette::ANSI.line(&mut out, Some("h1"), StreamKind::Stderr, b"oops\n");
        assert_eq!(out, b"\x1b[31mh1: oops\x1b[0m\n");
        let mut out = Vec::new();
        Palette::ANSI.line(&mut out, None, StreamKind::Stdout, b"x\n");
        assert_eq!(out, b"x\n");
    }
}
