//! Crate items quoted in the docs, found by name in the sources.
//!
//! What counts as an item: a path with `::` (`ConnectionPool::run`, `conn_core::RetryPolicy`,
//! `Endpoint::{Local, OpenSsh}`, `ConnectionPool<Local>::run`), a method call (`pool.run(…)`,
//! `.check(false)`), a span that is a call (`build()`, `retry(&policy, …)`, not `flock(2)`),
//! one identifier with an underscore (`wait_with_output`, a JSON key, a test's name), one
//! CamelCase identifier (`RemoteChild`), a macro (`for_each_backend!`), a crate (`conn-lease`).
//! Everything else (plain words, shell lines, ssh options) is left alone.

use super::lex::is_ident;
use super::repo::Repo;

/// Words that cannot be a method's name.
const KEYWORDS: &[&str] = &[
    "crate", "self", "super", "mod", "fn", "impl", "use", "in", "as",
];

/// Every item of `span`, as quoted, with what is wrong with it if it names nothing.
pub fn check(repo: &Repo, span: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let text = strip_generics(span);
    let whole = text.trim();
    let paths = paths(&text);
    for path in &paths {
        out.push((path.join("::"), check_path(repo, path)));
    }
    let no_fn =
        |name: &str| (!repo.any_item(name)).then(|| format!("no fn `{name}` in the sources"));
    for name in method_calls(&text) {
        let problem = no_fn(&name);
        out.push((format!(".{name}"), problem));
    }
    if !paths.is_empty() {
        return out;
    }
    let call = whole.split_once('(').filter(|(name, args)| {
        is_ident(name)
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && !args
                .trim_end_matches(')')
                .chars()
                .all(|c| c.is_ascii_digit()) // flock(2)
    });
    let crate_name = whole.strip_prefix("conn-").filter(|n| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    if let Some((name, _)) = call {
        out.push((name.to_string(), no_fn(name)));
    } else if let Some(name) = whole.strip_suffix('!').filter(|n| is_ident(n)) {
        let problem = (!repo.any_item(name)).then(|| format!("no macro `{name}` in the sources"));
        out.push((whole.to_string(), problem));
    } else if is_ident(whole)
        && (whole.contains('_')
            || whole.starts_with(|c: char| c.is_ascii_uppercase())
                && whole.chars().any(|c| c.is_ascii_lowercase()))
    {
        let problem = (!repo.words.contains(&whole.to_lowercase()))
            .then(|| format!("`{whole}` appears nowhere in the sources"));
        out.push((whole.to_string(), problem));
    } else if let Some(name) = crate_name {
        let known = repo
            .crates
            .contains_key(&format!("conn_{}", name.replace('-', "_")))
            || repo.mentions(whole);
        let problem = (!known)
            .then(|| format!("no crate `{whole}` in the workspace, and no source names it"));
        out.push((whole.to_string(), problem));
    }
    out
}

/// Why `segs` (a path, `A::b::C`) names nothing, if it does not.
fn check_path(repo: &Repo, segs: &[String]) -> Option<String> {
    let segs: Vec<&str> = segs
        .iter()
        .map(String::as_str)
        .skip_while(|s| matches!(*s, "crate" | "self" | "super" | "Self"))
        .collect();
    let (first, rest) = segs.split_first()?;
    let rest_is_empty = rest.is_empty();
    if repo.external.contains(*first) || rest_is_empty {
        return None;
    }
    if repo.crates.contains_key(*first) {
        if !repo.crate_has(first, rest[0]) {
            return Some(format!("crate `{first}` has no item `{}`", rest[0]));
        }
        return if rest.len() > 1 {
            check_path(
                repo,
                &rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        } else {
            None
        };
    }
    // The last type of the path and what follows it: `Type::member`.
    let ty_at = segs[..segs.len() - 1]
        .iter()
        .rposition(|s| s.starts_with(|c: char| c.is_ascii_uppercase()));
    match ty_at {
        Some(t) if t + 1 < segs.len() => {
            let (ty, member) = (segs[t], segs[t + 1]);
            if !repo.is_type(ty) {
                Some(format!("no type `{ty}` in the sources"))
            } else if !repo.has_member(ty, member) {
                Some(format!("`{ty}` has no fn, variant or field `{member}`"))
            } else {
                None
            }
        }
        _ if first.starts_with(|c: char| c.is_ascii_lowercase()) && !repo.is_module(first) => {
            Some(format!("no module or crate `{first}`"))
        }
        _ => {
            let last = segs[segs.len() - 1];
            (!repo.any_item(last) && !repo.is_type(last))
                .then(|| format!("no item `{last}` in the sources"))
        }
    }
}

/// `span` without generic arguments: `ConnectionPool<Local>::run` is `ConnectionPool::run`.
fn strip_generics(span: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut prev = ' ';
    for c in span.chars() {
        if c == '<' && (depth > 0 || prev.is_alphanumeric() || prev == '_') {
            depth += 1;
        } else if c == '>' && depth > 0 {
            depth -= 1;
        } else if depth == 0 {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// The `::` paths of `text`, braces expanded: `Endpoint::{Local, OpenSsh}` is two.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        if !(ident(chars[i]) && (i == 0 || !(ident(chars[i - 1]) || chars[i - 1] == '.'))) {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        let mut branches: Vec<Vec<String>> = Vec::new();
        loop {
            let start = j;
            while j < chars.len() && ident(chars[j]) {
                j += 1;
            }
            segs.push(chars[start..j].iter().collect::<String>());
            if chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&':') {
                j += 2;
                if chars.get(j) == Some(&'{') {
                    let end = chars[j..]
                        .iter()
                        .position(|&c| c == '}')
                        .map_or(chars.len(), |p| j + p);
                    let inner: String = chars[j + 1..end].iter().collect();
                    for item in inner.split(',') {
                        let item = item.trim();
                        if is_ident(item) {
                            let mut b = segs.clone();
                            b.push(item.to_string());
                            branches.push(b);
                        }
                    }
                    j = end + 1;
                    break;
                }
                if chars.get(j).is_some_and(|&c| c.is_alphabetic() || c == '_') {
                    continue;
                }
            }
            break;
        }
        if !branches.is_empty() {
            out.extend(branches);
        } else if segs.len() > 1 && segs.iter().all(|s| is_ident(s)) {
            out.push(segs);
        }
        i = j.max(i + 1);
    }
    out
}

/// The names of `.name(` method calls and `.name` references after an identifier, `)`, `?` or
/// the start of the span (`pool.get(&job)?.command_line(..)`, `.check(false)`).
fn method_calls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c != '.' {
            continue;
        }
        let before = if i == 0 { None } else { Some(chars[i - 1]) };
        let after_receiver =
            before.is_none_or(|b| b.is_alphanumeric() || b == '_' || b == ')' || b == '?');
        let name: String = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        let called = chars.get(i + 1 + name.chars().count()) == Some(&'(');
        if after_receiver
            && is_ident(&name)
            && !KEYWORDS.contains(&name.as_str()) // `.crate` files
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && (called || (i == 0 && name.len() == text.trim().len() - 1))
        {
            out.push(name);
        }
    }
    out
}

#[test]
fn what_is_read_as_an_item() {
    let p = |s: &str| paths(&strip_generics(s));
    assert_eq!(p("ConnectionPool<Local>::run"), [["ConnectionPool", "run"]]);
    assert_eq!(
        p("Endpoint::{Local, OpenSsh}"),
        [["Endpoint", "Local"], ["Endpoint", "OpenSsh"]]
    );
    assert_eq!(
        p("Error::Transport { started: Unknown, .. }"),
        [["Error", "Transport"]]
    );
    assert_eq!(p("conn_lease::prune(root, ttl)"), [["conn_lease", "prune"]]);
    assert!(p("ssh://[user@]host, fe80::1, a.b::c").is_empty());
    assert_eq!(
        method_calls("pool.get(&job)?.command_line(..)"),
        ["get", "command_line"]
    );
    assert_eq!(method_calls(".check(false)"), ["check"]);
    assert_eq!(method_calls(".arg"), ["arg"]);
    assert!(method_calls("failure.kind, sys.prefix, etc.tar").is_empty());
}
