//! `groups.conf` files as Python's `configparser.ConfigParser` reads them (the class
//! ClusterShell uses, with its defaults), for exactly what ClusterShell relies on:
//!
//! - `[section]` headers (the name is everything up to the last `]`, case kept; `[DEFAULT]`
//!   holds values every section inherits);
//! - `key = value` or `key: value` (split at the first `=` or `:`; keys lower-cased, both sides
//!   trimmed);
//! - comment lines, whose first non-blank character is `#` or `;` (anywhere, even inside a
//!   multi-line value; a `#` after a value is part of the value, as in Python);
//! - continuation lines: indented deeper than their key's line, they add a line to the value;
//!   blank lines inside a value are kept, trailing ones dropped;
//! - reading several files merges them, later values replacing earlier ones; within one file a
//!   section or a key given twice is an error;
//! - `%(name)s` interpolation (`%%` for `%`) where ClusterShell asks for it: [`Ini::get`] is
//!   raw, [`Ini::interpolated`] expands.

use std::path::{Path, PathBuf};

use crate::error::ConfigError;

/// The name of the section whose values every section inherits.
const DEFAULT_SECTION: &str = "DEFAULT";

/// How deep `%(name)s` references may nest (Python's `MAX_INTERPOLATION_DEPTH`).
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// Options of one section, in the order first seen: key, then the value's lines.
type Options = Vec<(String, Vec<String>)>;

/// One or more INI files, merged.
#[derive(Debug, Default, Clone)]
pub struct Ini {
    sections: Vec<(String, Options)>,
    defaults: Options,
}

impl Ini {
    /// Reads `text` (from `path`, named in errors) into these sections.
    pub fn read(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let err = |line: usize, what: String| ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            what,
        };
        // Sections and (section, key) pairs this file has given: a second time is an error.
        let mut seen_sections: Vec<String> = Vec::new();
        let mut seen_keys: Vec<(String, String)> = Vec::new();
        // Where values go: None before the first header, Some(None) in DEFAULT.
        let mut section: Option<Option<usize>> = None;
        let mut key: Option<String> = None;
        let mut indent = 0usize;
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let number = i + 1;
            let trimmed = line.trim();
            let comment = trimmed.starts_with('#') || trimmed.starts_with(';');
            if trimmed.is_empty() || comment {
                // A blank line (not a comment) may be part of a multi-line value.
                if !comment && let (Some(s), Some(k)) = (section, &key) {
                    self.value_mut(s, k).push(String::new());
                }
                continue;
            }
            let line_indent = line.len() - line.trim_start().len();
            if let (Some(s), Some(k)) = (section, &key)
                && line_indent > indent
            {
                self.value_mut(s, k).push(trimmed.to_string());
                continue;
            }
            indent = line_indent;
            if let Some(name) = header(trimmed) {
                key = None;
                if name == DEFAULT_SECTION {
                    section = Some(None);
                    continue;
                }
                if seen_sections.iter().any(|s| s == name) {
                    return Err(err(number, format!("section [{name}] is given twice")));
                }
                seen_sections.push(name.to_string());
                let index = match self.sections.iter().position(|(n, _)| n == name) {
                    Some(index) => index,
                    None => {
                        self.sections.push((name.to_string(), Vec::new()));
                        self.sections.len() - 1
                    }
                };
                section = Some(Some(index));
                continue;
            }
            let Some(s) = section else {
                return Err(err(
                    number,
                    format!("{trimmed:?} comes before any [section] header"),
                ));
            };
            let Some(at) = trimmed.find(['=', ':']) else {
                return Err(err(
                    number,
                    format!("{trimmed:?} is neither a [section] nor a `key = value` line"),
                ));
            };
            let name = trimmed[..at].trim_end().to_lowercase();
            if name.is_empty() {
                return Err(err(
                    number,
                    format!("{trimmed:?} has no key before its '='/':'"),
                ));
            }
            let section_name = match s {
                Some(index) => self.sections[index].0.clone(),
                None => DEFAULT_SECTION.to_string(),
            };
            if seen_keys.contains(&(section_name.clone(), name.clone())) {
                return Err(err(
                    number,
                    format!("key {name:?} is given twice in section [{section_name}]"),
                ));
            }
            seen_keys.push((section_name, name.clone()));
            let value = trimmed[at + 1..].trim().to_string();
            let options = self.options_mut(s);
            match options.iter_mut().find(|(k, _)| *k == name) {
                Some((_, lines)) => *lines = vec![value],
                None => options.push((name.clone(), vec![value])),
            }
            key = Some(name);
        }
        Ok(())
    }

    fn options_mut(&mut self, section: Option<usize>) -> &mut Options {
        match section {
            Some(index) => &mut self.sections[index].1,
            None => &mut self.defaults,
        }
    }

    fn value_mut(&mut self, section: Option<usize>, key: &str) -> &mut Vec<String> {
        let options = self.options_mut(section);
        let at = options
            .iter()
            .position(|(k, _)| k == key)
            .expect("the key was added when its line was read");
        &mut options[at].1
    }

    /// The section names, in the order first seen (without `DEFAULT`).
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|(name, _)| name.as_str())
    }

    /// The raw value of `key` (lower-case) in `section` or else in `DEFAULT`; `None` when the
    /// section does not exist or neither holds the key.
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        let options = &self.sections.iter().find(|(name, _)| name == section)?.1;
        let lines = options
            .iter()
            .chain(&self.defaults)
            .find(|(k, _)| k == key)
            .map(|(_, lines)| lines)?;
        Some(lines.join("\n").trim_end().to_string())
    }

    /// [`Ini::get`] with `%(name)s` references replaced by the values of those keys (of the
    /// same section or `DEFAULT`) and `%%` by `%`; a bad or missing reference is an error.
    pub fn interpolated(
        &self,
        section: &str,
        key: &str,
        path: &Path,
    ) -> Result<Option<String>, ConfigError> {
        let Some(raw) = self.get(section, key) else {
            return Ok(None);
        };
        let mut out = String::new();
        self.interpolate(section, &raw, 1, &mut out)
            .map_err(|what| ConfigError::Value {
                path: path.to_path_buf(),
                section: section.to_string(),
                key: key.to_string(),
                what,
            })?;
        Ok(Some(out))
    }

    fn interpolate(
        &self,
        section: &str,
        value: &str,
        depth: usize,
        out: &mut String,
    ) -> Result<(), String> {
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(format!(
                "%(…)s references nest deeper than {MAX_INTERPOLATION_DEPTH} (a loop?)"
            ));
        }
        let mut rest = value;
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            if let Some(after) = rest.strip_prefix("%%") {
                out.push('%');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("%(") {
                let Some(close) = after
                    .find(")s")
                    .filter(|&c| c > 0 && !after[..c].contains(')'))
                else {
                    return Err(format!("bad %(name)s reference in {rest:?}"));
                };
                let name = after[..close].to_lowercase();
                rest = &after[close + 2..];
                let Some(v) = self.get(section, &name) else {
                    return Err(format!("%({name})s names no key of section [{section}]"));
                };
                self.interpolate(section, &v, depth + 1, out)?;
            } else {
                return Err(format!("'%' must be followed by '%' or '(' in {rest:?}"));
            }
        }
        out.push_str(rest);
        Ok(())
    }
}

/// The name of a `[section]` line: from after the `[` to the last `]` (at least one
/// character), as Python's greedy pattern takes it.
fn header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?;
    let close = inner.rfind(']')?;
    (close > 0).then(|| &inner[..close])
}

/// Reads the files of `paths` that can be opened, in order, into one [`Ini`]; returns it and
/// the files read. A file that cannot be opened is skipped (as `ConfigParser.read` skips it);
/// one that cannot be parsed is an error.
pub fn read_files(paths: &[PathBuf]) -> Result<(Ini, Vec<PathBuf>), ConfigError> {
    let mut ini = Ini::default();
    let mut read = Vec::new();
    for path in paths {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let text = String::from_utf8(bytes).map_err(|_| ConfigError::Syntax {
            path: path.clone(),
            line: 0,
            what: "the file is not UTF-8 text".into(),
        })?;
        ini.read(&text, path)?;
        read.push(path.clone());
    }
    Ok((ini, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(text: &str) -> Ini {
        let mut ini = Ini::default();
        ini.read(text, Path::new("groups.conf")).unwrap();
        ini
    }

    fn error(text: &str) -> String {
        let mut ini = Ini::default();
        ini.read(text, Path::new("groups.conf"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn keys_values_comments_and_continuations() {
        let i = ini(
            "# top\n[Main]\ndefault: local\nConfDir = /a  /b\n  ; indented comment\n\
                     [local]\nmap: sed -n 's/^$GROUP:\\(.*\\)/\\1/p' f # not a comment\n\
                     all: one\n   two\n\n   three\n\n\nlist=x:y=z\n[a,b]\nmap:\n",
        );
        assert_eq!(i.sections().collect::<Vec<_>>(), ["Main", "local", "a,b"]);
        assert_eq!(i.get("Main", "default").unwrap(), "local");
        assert_eq!(i.get("Main", "confdir").unwrap(), "/a  /b");
        assert_eq!(
            i.get("local", "map").unwrap(),
            "sed -n 's/^$GROUP:\\(.*\\)/\\1/p' f # not a comment"
        );
        assert_eq!(i.get("local", "all").unwrap(), "one\ntwo\n\nthree");
        assert_eq!(i.get("local", "list").unwrap(), "x:y=z");
        assert_eq!(i.get("a,b", "map").unwrap(), "");
        assert_eq!(i.get("local", "nope"), None);
        assert_eq!(i.get("nope", "map"), None);
        // A comment inside a value is skipped, not part of it.
        let i = ini("[s]\nmap: a\n  # c\n  b\n");
        assert_eq!(i.get("s", "map").unwrap(), "a\nb");
        // The header is everything up to the last ']'.
        let i = ini("[a]b] trailing\nk=v\n");
        assert_eq!(i.sections().collect::<Vec<_>>(), ["a]b"]);
    }

    #[test]
    fn defaults_are_inherited_and_files_merge() {
        let mut i = ini("[DEFAULT]\nmap: m\n[x]\nall: a\n");
        assert_eq!(i.get("x", "map").unwrap(), "m");
        assert!(!i.sections().any(|s| s == "DEFAULT"));
        i.read("[x]\nall: b\n[y]\nlist: l\n", Path::new("second"))
            .unwrap();
        assert_eq!(i.get("x", "all").unwrap(), "b");
        assert_eq!(i.get("y", "map").unwrap(), "m");
        assert_eq!(i.sections().collect::<Vec<_>>(), ["x", "y"]);
    }

    #[test]
    fn malformed_files_name_the_line() {
        assert!(error("k=v\n").contains("groups.conf:1: \"k=v\" comes before any [section]"));
        assert!(error("[s]\njust words\n").contains("groups.conf:2: "));
        assert!(error("[s]\n= v\n").contains("no key"));
        assert!(error("[s]\n[s]\n").contains("section [s] is given twice"));
        assert!(error("[s]\nk=1\nK: 2\n").contains("key \"k\" is given twice"));
        assert!(error("[s]\n[]\n").contains("neither"));
        assert!(error("[]\n").contains("before any [section]"));
    }

    #[test]
    fn interpolation_expands_references_on_request() {
        let i = ini(
            "[DEFAULT]\nroot = /srv\n[Main]\nhome: %(root)s/cs\nd: %(home)s/d 100%%\n\
                     bad: 5%\nmissing: %(nope)s\nloop: %(loop)s\n",
        );
        let p = Path::new("groups.conf");
        assert_eq!(
            i.interpolated("Main", "d", p).unwrap().unwrap(),
            "/srv/cs/d 100%"
        );
        assert_eq!(i.get("Main", "d").unwrap(), "%(home)s/d 100%%");
        assert!(
            i.interpolated("Main", "bad", p)
                .unwrap_err()
                .to_string()
                .contains("'%' must")
        );
        assert!(
            i.interpolated("Main", "missing", p)
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
        assert!(
            i.interpolated("Main", "loop", p)
                .unwrap_err()
                .to_string()
                .contains("deeper")
        );
        assert_eq!(i.interpolated("Main", "absent", p).unwrap(), None);
    }
}
