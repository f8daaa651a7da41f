//! conn's command line as its sources define it. The flags of each subcommand come from the
//! clap derive attributes of `crates/conn-cli/src/` (`#[arg(short, long = "…",
//! visible_alias = "…")]`, `flatten`ed structs, the `Subcommand` enum); `conn ssh`, whose words clap never sees, from its own
//! parser in `crates/conn-cli/src/ssh/args.rs`: ssh's option letters (`SSH_OPTSTRING`) and
//! conn's long options (the fields of `ConnOptions`).

use std::collections::{BTreeMap, HashMap};
use std::fs;

use super::lex;
use super::repo::Repo;

/// The options one command accepts: name to whether it takes a value.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Long options, without `--`.
    pub longs: HashMap<String, bool>,
    /// Short options.
    pub shorts: HashMap<char, bool>,
    /// Options end at the first positional word (clap's `trailing_var_arg`).
    pub trailing: bool,
    /// ssh's rules: options, the destination, options again, then the remote command.
    pub ssh: bool,
}

/// The whole command line of `conn`.
#[derive(Debug)]
pub struct Cli {
    /// Each subcommand's options.
    pub subs: BTreeMap<String, Options>,
    /// `conn`'s own (`--help`, `--version`).
    pub top: Options,
    /// Every option of every command, for a flag quoted without its command.
    pub any: Options,
}

/// A struct or enum of the clap definitions: its attributes and its fields or variants, each
/// with its attributes and type (`(Type)` for a variant).
struct Def {
    attrs: String,
    members: Vec<(String, Vec<String>, String)>, // (name, attributes, type)
}

const CLI_SRC: &str = "crates/conn-cli/src";
const SSH_ARGS: &str = "crates/conn-cli/src/ssh/args.rs";

/// Reads conn's command line from the sources; an error says what could not be found, so a
/// change of style in the definitions fails the check instead of emptying it.
pub fn load(repo: &Repo) -> Result<Cli, String> {
    let mut defs: HashMap<String, Def> = HashMap::new();
    let mut ssh_text = None;
    for path in repo
        .files
        .iter()
        .filter(|p| p.starts_with(CLI_SRC) && p.ends_with(".rs"))
    {
        let text = fs::read_to_string(repo.root.join(path)).map_err(|e| format!("{path}: {e}"))?;
        if path == SSH_ARGS {
            ssh_text = Some(text.clone());
        }
        defs.extend(definitions(&text));
    }
    let (parser, sub_enum) = {
        let find = |derive: &str| {
            defs.iter()
                .find(|(_, d)| d.attrs.contains("derive") && d.attrs.contains(derive))
                .map(|(n, _)| n.clone())
        };
        let p = find("Parser").ok_or(format!("no #[derive(Parser)] struct under {CLI_SRC}"))?;
        let s =
            find("Subcommand").ok_or(format!("no #[derive(Subcommand)] enum under {CLI_SRC}"))?;
        (p, s)
    };
    let version = defs[&parser].attrs.contains("propagate_version = true");
    let mut top = Options::default();
    top.longs
        .extend([("help".into(), false), ("version".into(), false)]);
    top.shorts.extend([('h', false), ('V', false)]);
    let mut subs = BTreeMap::new();
    subs.insert("help".to_string(), Options::default());
    for (variant, attrs, ty) in &defs[&sub_enum].members {
        let attrs = attrs.join(" ");
        let name = attr_value(&attrs, "name").unwrap_or_else(|| kebab(variant));
        let ty = ty.trim_matches(|c| c == '(' || c == ')').trim();
        let mut opts = if name == "ssh" {
            ssh_options(
                ssh_text
                    .as_deref()
                    .ok_or(format!("{SSH_ARGS} is missing"))?,
            )?
        } else {
            struct_options(&defs, ty, 0)?
        };
        if !attrs.contains("disable_help_flag = true") {
            opts.longs.insert("help".into(), false);
            opts.shorts.insert('h', false);
        }
        if version {
            opts.longs.insert("version".into(), false);
            opts.shorts.insert('V', false);
        }
        subs.insert(name, opts);
    }
    if subs
        .get("run")
        .is_none_or(|r| !r.longs.contains_key("json"))
    {
        return Err(format!(
            "read no `conn run --json` from {CLI_SRC}: has clap's style changed?"
        ));
    }
    let mut any = top.clone();
    for o in subs.values() {
        any.longs
            .extend(o.longs.iter().map(|(k, v)| (k.clone(), *v)));
        any.shorts.extend(o.shorts.iter().map(|(k, v)| (*k, *v)));
    }
    Ok(Cli { subs, top, any })
}

/// The options of the clap `Args` struct `name`, its flattened structs' included.
fn struct_options(
    defs: &HashMap<String, Def>,
    name: &str,
    depth: usize,
) -> Result<Options, String> {
    let def = defs
        .get(name)
        .ok_or(format!("no definition of `{name}` under {CLI_SRC}"))?;
    if depth > 8 {
        return Err(format!("`{name}`: flattened structs nest too deep"));
    }
    let mut opts = Options::default();
    for (field, attrs, ty) in &def.members {
        for attr in attrs {
            let inner = attr.trim();
            if inner.starts_with("command(") || inner.starts_with("clap(") {
                if inner.contains("flatten") {
                    let inner_ty = ty.rsplit("::").next().unwrap_or(ty).trim();
                    let flat = struct_options(defs, inner_ty, depth + 1)?;
                    opts.longs.extend(flat.longs);
                    opts.shorts.extend(flat.shorts);
                    opts.trailing |= flat.trailing;
                }
                if !inner.starts_with("clap(") {
                    continue;
                }
            }
            if !(inner.starts_with("arg(") || inner.starts_with("clap(")) {
                continue;
            }
            let body = &inner[inner.find('(').unwrap_or(0) + 1..inner.len().saturating_sub(1)];
            let entries = split_top(body, ',');
            let takes = !(ty.trim() == "bool"
                || body.contains("ArgAction::Count")
                || body.contains("ArgAction::SetTrue")
                || body.contains("ArgAction::SetFalse")
                || body.contains("num_args = 0,"));
            let mut named = false;
            for entry in &entries {
                let (key, value) = match entry.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim())),
                    None => (entry.trim(), None),
                };
                let chars = |v: &str| -> Vec<char> {
                    v.split(',')
                        .filter_map(|c| c.trim().trim_matches(['[', ']']).trim().strip_prefix('\''))
                        .filter_map(|c| c.chars().next())
                        .collect()
                };
                let strings = |v: &str| -> Vec<String> {
                    v.split(',')
                        .map(|s| {
                            s.trim()
                                .trim_matches(['[', ']'])
                                .trim()
                                .trim_matches('"')
                                .to_string()
                        })
                        .filter(|s| !s.is_empty())
                        .collect()
                };
                match (key, value) {
                    ("short", None) => {
                        opts.shorts
                            .insert(field.chars().next().unwrap_or('?'), takes);
                        named = true;
                    }
                    ("long", None) => {
                        opts.longs.insert(field.replace('_', "-"), takes);
                        named = true;
                    }
                    (
                        "short"
                        | "short_alias"
                        | "visible_short_alias"
                        | "short_aliases"
                        | "visible_short_aliases",
                        Some(v),
                    ) => {
                        for c in chars(v) {
                            opts.shorts.insert(c, takes);
                        }
                        named = true;
                    }
                    (
                        "long" | "alias" | "visible_alias" | "aliases" | "visible_aliases",
                        Some(v),
                    ) => {
                        for s in strings(v) {
                            opts.longs.insert(s, takes);
                        }
                        named = true;
                    }
                    _ => {}
                }
            }
            if !named && body.contains("trailing_var_arg = true") {
                opts.trailing = true;
            }
        }
    }
    Ok(opts)
}

/// `conn ssh`'s options: ssh's letters (a `:` after one: it takes an argument) and conn's
/// long options, the fields of `ConnOptions` (a `bool` one takes no value), and `--help`.
fn ssh_options(text: &str) -> Result<Options, String> {
    let code = lex::blank(text, true);
    let optstring = code
        .split("SSH_OPTSTRING")
        .nth(1)
        .and_then(|rest| rest.split_once("b\""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(s, _)| s.to_string())
        .ok_or(format!("no SSH_OPTSTRING in {SSH_ARGS}"))?;
    let mut opts = Options {
        ssh: true,
        ..Options::default()
    };
    let letters: Vec<char> = optstring.chars().collect();
    for (i, &c) in letters.iter().enumerate() {
        if c != ':' {
            opts.shorts.insert(c, letters.get(i + 1) == Some(&':'));
        }
    }
    let defs = definitions(text);
    let conn = defs
        .get("ConnOptions")
        .ok_or(format!("no struct ConnOptions in {SSH_ARGS}"))?;
    for (field, _, ty) in &conn.members {
        opts.longs
            .insert(field.replace('_', "-"), ty.trim() != "bool");
    }
    opts.longs.insert("help".into(), false);
    Ok(opts)
}

/// The value of `key = "…"` in attribute text.
fn attr_value(attrs: &str, key: &str) -> Option<String> {
    let mut rest = attrs;
    while let Some(p) = rest.find(key) {
        let before = rest[..p].chars().last();
        let after = rest[p + key.len()..].trim_start();
        let value = after.strip_prefix('=').map(str::trim_start);
        if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            && let Some(v) = value.and_then(|v| v.strip_prefix('"'))
        {
            return v.split('"').next().map(String::from);
        }
        rest = &rest[p + key.len()..];
    }
    None
}

/// clap's name for a variant: `HostsCmd` is `hosts-cmd`.
fn kebab(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// `text` split at `sep` where no bracket, parenthesis, brace, angle or quote is open.
fn split_top(text: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
    let mut prev = ' ';
    for c in text.chars() {
        match quote {
            Some(q) => {
                if c == q && prev != '\\' {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' | '[' | '{' | '<' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                '>' if prev != '-' => depth -= 1,
                c if c == sep && depth == 0 => {
                    out.push(std::mem::take(&mut cur));
                    prev = c;
                    continue;
                }
                _ => {}
            },
        }
        cur.push(c);
        prev = c;
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Every struct and enum of a file, with the attributes before it and its members.
fn definitions(text: &str) -> HashMap<String, Def> {
    let kept = lex::blank(text, true); // comments gone, strings kept
    let code = lex::blank(text, false); // strings blanked too: structure only
    let b = code.as_bytes();
    let mut defs = HashMap::new();
    let (mut depth, mut item_start) = (0i32, 0usize);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    item_start = i + 1;
                }
            }
            b';' if depth == 0 => item_start = i + 1,
            _ if depth == 0 && (word_at(&code, i, "struct") || word_at(&code, i, "enum")) => {
                let kw = if word_at(&code, i, "struct") { 6 } else { 4 };
                let name: String = code[i + kw..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let open = code[i..].find(['{', ';', '(']).map(|p| i + p);
                if let Some(open) = open.filter(|&o| b[o] == b'{') {
                    let close = matching(b, open);
                    let members = split_members(&kept[open + 1..close], &code[open + 1..close]);
                    defs.insert(
                        name,
                        Def {
                            attrs: kept[item_start..i].to_string(),
                            members,
                        },
                    );
                    item_start = close + 1;
                    i = close + 1;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    defs
}

/// Whether the keyword `word` starts at `i` of `code` (whole word).
fn word_at(code: &str, i: usize, word: &str) -> bool {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    code[i..].starts_with(word)
        && (i == 0 || !ident(code.as_bytes()[i - 1]))
        && code
            .as_bytes()
            .get(i + word.len())
            .is_some_and(|&c| !ident(c))
}

/// The index of the `}` that closes the `{` at `open`.
fn matching(b: &[u8], open: usize) -> usize {
    let mut depth = 0;
    for (j, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    b.len() - 1
}

/// The fields (`name: Type`) or variants (`Name(Type)`) of a body, each with its attributes.
fn split_members(kept: &str, code: &str) -> Vec<(String, Vec<String>, String)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pieces = Vec::new();
    let (mut depth, mut prev) = (0i32, b' ');
    for (j, &c) in code.as_bytes().iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' | b'<' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'>' if prev != b'-' => depth -= 1,
            b',' if depth == 0 => {
                pieces.push((start, j));
                start = j + 1;
            }
            _ => {}
        }
        prev = c;
    }
    pieces.push((start, code.len()));
    for (from, to) in pieces {
        let (mut k, mut attrs) = (from, Vec::new());
        // Attributes: `#[ … ]`, bracket-matched on the structure-only text.
        loop {
            while k < to && code.as_bytes()[k].is_ascii_whitespace() {
                k += 1;
            }
            if !code[k..to].starts_with("#[") {
                break;
            }
            let mut d = 0;
            let mut end = k;
            for (j, &c) in code.as_bytes().iter().enumerate().take(to).skip(k + 1) {
                match c {
                    b'[' => d += 1,
                    b']' => {
                        d -= 1;
                        if d == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            attrs.push(kept[k + 2..end].to_string());
            k = end + 1;
        }
        let rest = kept[k..to].trim();
        let rest = rest
            .strip_prefix("pub(crate)")
            .or(rest.strip_prefix("pub"))
            .unwrap_or(rest)
            .trim();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        let ty = rest[name.len()..]
            .trim_start()
            .trim_start_matches(':')
            .trim()
            .to_string();
        out.push((name, attrs, ty));
    }
    out
}
