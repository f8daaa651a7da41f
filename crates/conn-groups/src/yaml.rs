//! ClusterShell's YAML group files (`autodir/*.yaml`): a mapping of source names to mappings
//! of group names to node sets, each a string or a list of strings.
//!
//! ```yaml
//! roles:
//!   web: 'web[01-16]'
//!   db: [db1, db2]
//!   all: '@web,@db'
//! ```
//!
//! The YAML itself is read by saphyr's parser; this module maps its events onto that shape
//! and checks it as ClusterShell does (with PyYAML's `safe_load`): a source or group name that
//! YAML 1.1 reads as a number, a boolean, a date or null (`2024:`, `yes:`) must be quoted.
//! Anchors and aliases work for group values; merge keys (`<<`) and nested structures do not.

use std::collections::HashMap;
use std::path::Path;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use crate::error::ConfigError;

/// The most node-set strings one file may produce once aliases are expanded (a guard against
/// an alias bomb; far above any real group file).
const MAX_VALUES: usize = 1_000_000;

/// The groups of one source: (name, node-set text), in file order.
pub type Groups = Vec<(String, String)>;

/// Reads a YAML group file: its sources, in file order, each with its groups.
pub fn load(text: &str, path: &Path) -> Result<Vec<(String, Groups)>, ConfigError> {
    let mut reader = Reader {
        events: Parser::new_from_str(text),
        path,
        anchors: HashMap::new(),
        values: 0,
    };
    reader.document()
}

/// An anchored value an alias may repeat.
#[derive(Clone)]
enum Anchored {
    Text(String),
    List(Vec<String>),
    Other,
}

struct Reader<'a, 'p> {
    events: Parser<'a, saphyr_parser::StrInput<'a>>,
    path: &'p Path,
    anchors: HashMap<usize, Anchored>,
    values: usize,
}

impl<'a> Reader<'a, '_> {
    fn error(&self, span: Option<Span>, what: impl Into<String>) -> ConfigError {
        ConfigError::Syntax {
            path: self.path.to_path_buf(),
            line: span.map_or(0, |s| s.start.line()),
            what: what.into(),
        }
    }

    fn invalid(&self, what: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            what: what.into(),
        }
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), ConfigError> {
        match self.events.next() {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => Err(ConfigError::Syntax {
                path: self.path.to_path_buf(),
                line: e.marker().line(),
                what: e.info().to_string(),
            }),
            None => Err(self.error(None, "the YAML ends early")),
        }
    }

    fn document(&mut self) -> Result<Vec<(String, Groups)>, ConfigError> {
        let mut sources = None;
        loop {
            match self.next()? {
                (Event::StreamStart | Event::Nothing, _) => {}
                (Event::DocumentStart(_), span) => {
                    if sources.is_some() {
                        return Err(self.error(Some(span), "more than one YAML document"));
                    }
                    sources = Some(self.sources()?);
                }
                (Event::DocumentEnd, _) => {}
                (Event::StreamEnd, _) => break,
                (_, span) => return Err(self.error(Some(span), "unexpected YAML event")),
            }
        }
        sources.ok_or_else(|| self.invalid("invalid content (base is not a dict)"))
    }

    /// The document's root: source name -> groups.
    fn sources(&mut self) -> Result<Vec<(String, Groups)>, ConfigError> {
        match self.next()? {
            (Event::MappingStart(..), _) => {}
            _ => return Err(self.invalid("invalid content (base is not a dict)")),
        }
        let mut sources: Vec<(String, Groups)> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            let source = match event {
                Event::MappingEnd => return Ok(sources),
                event => self.key(event, span, |k| {
                    format!("group source {k} not a string (add quotes?)")
                })?,
            };
            let groups = match self.next()? {
                (Event::MappingStart(..), _) => self.groups(&source)?,
                (Event::Alias(_), _) => {
                    return Err(self.invalid(format!(
                        "group source '{source}': aliases stand only for group values here"
                    )));
                }
                _ => {
                    return Err(self.invalid(format!(
                        "invalid content (group source '{source}' is not a dict)"
                    )));
                }
            };
            // A name given twice: the later one wins, as in PyYAML.
            match sources.iter_mut().find(|(name, _)| *name == source) {
                Some(entry) => entry.1 = groups,
                None => sources.push((source, groups)),
            }
        }
    }

    /// A mapping key that must be a string; `not_string` words the error.
    fn key(
        &mut self,
        event: Event<'a>,
        span: Span,
        not_string: impl Fn(&str) -> String,
    ) -> Result<String, ConfigError> {
        match event {
            Event::Scalar(value, style, _, tag) => {
                if is_string(&value, style, tag.as_deref()) {
                    Ok(value.into_owned())
                } else {
                    Err(self.invalid(not_string(&value)))
                }
            }
            _ => Err(self.error(Some(span), "a mapping key must be a plain string")),
        }
    }

    fn groups(&mut self, source: &str) -> Result<Groups, ConfigError> {
        let mut groups: Groups = Vec::new();
        loop {
            let (event, span) = self.next()?;
            let name = match event {
                Event::MappingEnd => return Ok(groups),
                Event::Scalar(ref v, ScalarStyle::Plain, _, None) if v == "<<" => {
                    return Err(self.error(Some(span), "merge keys (<<) are not supported"));
                }
                event => self.key(event, span, |k| {
                    format!("{source}: group name {k} not a string (add quotes?)")
                })?,
            };
            let value = self.value(source, &name)?;
            match groups.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = value,
                None => groups.push((name, value)),
            }
        }
    }

    /// A group's value as node-set text: a scalar, or a list of scalars joined by commas (as
    /// ClusterShell joins them); null is an empty group.
    fn value(&mut self, source: &str, group: &str) -> Result<String, ConfigError> {
        let wrong = |this: &Self| {
            this.invalid(format!(
                "{source}: group {group}: the value must be a string or a list of strings"
            ))
        };
        let anchored = match self.next()? {
            (Event::Scalar(value, style, anchor, tag), _) => {
                let text = if style == ScalarStyle::Plain && tag.is_none() && is_null(&value) {
                    String::new()
                } else {
                    value.into_owned()
                };
                self.count(1)?;
                self.remember(anchor, Anchored::Text(text.clone()));
                return Ok(text);
            }
            (Event::SequenceStart(anchor, _), _) => {
                let mut items = Vec::new();
                loop {
                    match self.next()? {
                        (Event::SequenceEnd, _) => break,
                        (Event::Scalar(value, _, item_anchor, _), _) => {
                            self.remember(item_anchor, Anchored::Text(value.to_string()));
                            items.push(value.into_owned());
                        }
                        (Event::Alias(id), _) => match self.anchors.get(&id) {
                            Some(Anchored::Text(t)) => items.push(t.clone()),
                            _ => return Err(wrong(self)),
                        },
                        _ => return Err(wrong(self)),
                    }
                    self.count(1)?;
                }
                let text = items.join(",");
                self.remember(anchor, Anchored::List(items));
                return Ok(text);
            }
            (Event::Alias(id), _) => self.anchors.get(&id).cloned().unwrap_or(Anchored::Other),
            (Event::MappingStart(anchor, _), _) => {
                self.remember(anchor, Anchored::Other);
                return Err(wrong(self));
            }
            _ => return Err(wrong(self)),
        };
        match anchored {
            Anchored::Text(t) => {
                self.count(1)?;
                Ok(t)
            }
            Anchored::List(items) => {
                self.count(items.len())?;
                Ok(items.join(","))
            }
            Anchored::Other => Err(wrong(self)),
        }
    }

    fn remember(&mut self, anchor: usize, value: Anchored) {
        if anchor != 0 {
            self.anchors.insert(anchor, value);
        }
    }

    fn count(&mut self, n: usize) -> Result<(), ConfigError> {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_VALUES {
            return Err(self.invalid(format!(
                "more than {MAX_VALUES} node-set strings once aliases are expanded"
            )));
        }
        Ok(())
    }
}

/// Whether a scalar is a string for PyYAML's `safe_load`: quoted or block scalars are; a plain
/// one is unless YAML 1.1 reads it as null, a boolean, an integer, a float or a date; a tag
/// decides for itself (`!!str 2024` is a string).
fn is_string(value: &str, style: ScalarStyle, tag: Option<&Tag>) -> bool {
    if let Some(tag) = tag {
        return tag.is_yaml_core_schema() && tag.suffix == "str";
    }
    if style != ScalarStyle::Plain {
        return true;
    }
    !(is_null(value) || is_bool(value) || is_int(value) || is_float(value) || is_date(value))
}

fn is_null(v: &str) -> bool {
    matches!(v, "" | "~" | "null" | "Null" | "NULL")
}

fn is_bool(v: &str) -> bool {
    matches!(
        v,
        "yes"
            | "Yes"
            | "YES"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// `s` is non-empty and every character satisfies `f`.
fn all(s: &str, f: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(f)
}

fn unsigned(v: &str) -> &str {
    v.strip_prefix(['-', '+']).unwrap_or(v)
}

/// YAML 1.1 integers: binary, octal, decimal, hexadecimal, sexagesimal (`1:30`), with `_`.
fn is_int(v: &str) -> bool {
    let v = unsigned(v);
    if let Some(b) = v.strip_prefix("0b") {
        return all(b, |c| matches!(c, '0' | '1' | '_'));
    }
    if let Some(x) = v.strip_prefix("0x") {
        return all(x, |c| c.is_ascii_hexdigit() || c == '_');
    }
    if v == "0" {
        return true;
    }
    if let Some(o) = v.strip_prefix('0') {
        return all(o, |c| matches!(c, '0'..='7' | '_'));
    }
    let mut parts = v.split(':');
    let first = parts.next().unwrap_or("");
    let decimal = first.starts_with(|c: char| c.is_ascii_digit())
        && all(first, |c| c.is_ascii_digit() || c == '_');
    decimal && parts.all(sexagesimal_part)
}

fn sexagesimal_part(p: &str) -> bool {
    (1..=2).contains(&p.len())
        && all(p, |c| c.is_ascii_digit())
        && (p.len() == 1 || p.starts_with(|c| ('0'..='5').contains(&c)))
}

/// YAML 1.1 floats: `1.5`, `1.`, `.5`, `1.5e+3`, `1:30.5`, `.inf`, `.nan`.
fn is_float(v: &str) -> bool {
    if matches!(v, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let v = unsigned(v);
    if matches!(v, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    let (mantissa, exponent) = match v.find(['e', 'E']) {
        Some(at) => (&v[..at], Some(&v[at + 1..])),
        None => (v, None),
    };
    if let Some(e) = exponent {
        let digits = e.strip_prefix(['-', '+']);
        if !digits.is_some_and(|d| all(d, |c| c.is_ascii_digit())) {
            return false;
        }
    }
    let Some((whole, fraction)) = mantissa.split_once('.') else {
        return false;
    };
    let fraction_ok = fraction.chars().all(|c| c.is_ascii_digit() || c == '_');
    if whole.is_empty() {
        return fraction_ok && !fraction.is_empty();
    }
    let mut parts = whole.split(':');
    let first = parts.next().unwrap_or("");
    let whole_ok = first.starts_with(|c: char| c.is_ascii_digit())
        && all(first, |c| c.is_ascii_digit() || c == '_')
        && parts.all(sexagesimal_part);
    whole_ok && fraction_ok
}

/// `YYYY-MM-DD`, which YAML 1.1 reads as a date.
fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Vec<(String, Groups)>, String> {
        load(text, Path::new("g.yaml")).map_err(|e| e.to_string())
    }

    fn pairs(groups: &Groups) -> Vec<(&str, &str)> {
        groups
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    #[test]
    fn sources_map_groups_to_strings_or_lists() {
        let s = load_str(
            "roles:\n  web: 'web[01-16]'\n  db: [db1, db2]\n  all: '@web,@db'\n  \
             empty:\n  '2024': x\n  n: 42\nracks:\n  r1: |\n    r1n1 r1n2\n    r1n3\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, "roles");
        assert_eq!(
            pairs(&s[0].1),
            [
                ("web", "web[01-16]"),
                ("db", "db1,db2"),
                ("all", "@web,@db"),
                ("empty", ""),
                ("2024", "x"),
                ("n", "42")
            ]
        );
        assert_eq!(pairs(&s[1].1), [("r1", "r1n1 r1n2\nr1n3\n")]);
    }

    #[test]
    fn aliases_repeat_values() {
        let s =
            load_str("s:\n  a: &x 'n[1-2]'\n  b: *x\n  c: &l [m1, m2]\n  d: *l\n  e: [*x, z]\n")
                .unwrap();
        assert_eq!(
            pairs(&s[0].1),
            [
                ("a", "n[1-2]"),
                ("b", "n[1-2]"),
                ("c", "m1,m2"),
                ("d", "m1,m2"),
                ("e", "n[1-2],z")
            ]
        );
    }

    #[test]
    fn what_clustershell_refuses_is_refused() {
        let e = load_str("").unwrap_err();
        assert!(e.contains("base is not a dict"), "{e}");
        let e = load_str("- a\n- b\n").unwrap_err();
        assert!(e.contains("base is not a dict"), "{e}");
        let e = load_str("s: x\n").unwrap_err();
        assert!(e.contains("group source 's' is not a dict"), "{e}");
        let e = load_str("s:\n").unwrap_err();
        assert!(e.contains("is not a dict"), "{e}");
        let e = load_str("2024:\n  a: b\n").unwrap_err();
        assert!(
            e.contains("group source 2024 not a string (add quotes?)"),
            "{e}"
        );
        for key in [
            "yes",
            "1",
            "0x1f",
            "1.5",
            "1:30",
            "2024-01-31",
            "~",
            "on",
            ".inf",
        ] {
            let e = load_str(&format!("s:\n  {key}: b\n")).unwrap_err();
            assert!(
                e.contains(&format!("s: group name {key} not a string")),
                "{key}: {e}"
            );
        }
        for key in [
            "web1",
            "'1'",
            "\"yes\"",
            "!!str 2024",
            "1a",
            "0x",
            "1.2.3",
            "n-1",
            "-",
        ] {
            assert!(load_str(&format!("s:\n  {key}: b\n")).is_ok(), "{key}");
        }
        let e = load_str("s:\n  g:\n    nested: map\n").unwrap_err();
        assert!(e.contains("g: the value must be a string or a list"), "{e}");
        let e = load_str("s:\n  g: [[a]]\n").unwrap_err();
        assert!(e.contains("must be a string or a list"), "{e}");
        let e = load_str("s:\n  <<: {a: b}\n").unwrap_err();
        assert!(e.contains("merge keys"), "{e}");
        let e = load_str("a: {b: c}\n---\nd: {e: f}\n").unwrap_err();
        assert!(e.contains("more than one YAML document"), "{e}");
        let e = load_str("s:\n  a: [b\n").unwrap_err();
        assert!(e.starts_with("g.yaml:"), "{e}");
    }

    #[test]
    fn a_later_key_replaces_an_earlier_one() {
        let s = load_str("s:\n  a: 1\n  b: 2\n  a: 3\n").unwrap();
        assert_eq!(pairs(&s[0].1), [("a", "3"), ("b", "2")]);
    }
}
