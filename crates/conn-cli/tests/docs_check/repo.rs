//! The repository as the docs check sees it: its files and directories (less what the
//! top-level `.gitignore` leaves out), its crates, and a textual index of what each Rust file
//! defines and implements. Textual on purpose: no build, no rustdoc, milliseconds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::lex;

/// What one Rust file defines, by name.
#[derive(Default)]
pub struct Source {
    /// Its path, relative to the repository.
    pub path: String,
    /// The struct, enum, trait, union and type names it defines.
    pub types: HashSet<String>,
    /// The types it has an `impl` block for (inherent or of a trait).
    pub impls: HashSet<String>,
    /// Its fn, const, static, mod and macro_rules names.
    pub values: HashSet<String>,
    /// By type: an enum's variants, a struct's fields, the fns, consts and types of its
    /// `impl` blocks; by trait: the trait's items.
    pub members: HashMap<String, HashSet<String>>,
    /// `(trait, type)` of each `impl Trait for Type`, whose type then has the trait's items.
    pub trait_impls: Vec<(String, String)>,
    /// The names its `pub use` items bring in (re-exports).
    pub reexports: HashSet<String>,
}

/// The repository, indexed.
pub struct Repo {
    /// Where it is.
    pub root: PathBuf,
    /// Every file, relative, `/`-separated.
    pub files: BTreeSet<String>,
    /// Every directory, relative, without a trailing `/`.
    pub dirs: BTreeSet<String>,
    /// Every Rust file, indexed.
    pub sources: Vec<Source>,
    /// Every identifier-like word of the Rust and shell sources and the manifests, comments
    /// and strings included (JSON keys, bench ids, test names), lowercased (ssh's keywords
    /// are matched in lower case).
    pub words: HashSet<String>,
    /// The text of those files.
    pub texts: Vec<String>,
    /// The workspace's crates: identifier (`conn_core`) to directory (`crates/conn-core`;
    /// empty for the root package).
    pub crates: BTreeMap<String, String>,
    /// The crates the workspace depends on, and std's own (`std`, `core`, `alloc`).
    pub external: HashSet<String>,
}

impl Repo {
    /// Reads and indexes the repository at `root`.
    pub fn load(root: &Path) -> Repo {
        let ignored = ignored(root);
        let mut repo = Repo {
            root: root.to_path_buf(),
            files: BTreeSet::new(),
            dirs: BTreeSet::new(),
            sources: Vec::new(),
            words: HashSet::new(),
            texts: Vec::new(),
            crates: BTreeMap::new(),
            external: ["std", "core", "alloc"].map(String::from).into(),
        };
        repo.walk("", &ignored);
        let mut deps = HashSet::new();
        for path in repo.files.clone() {
            let is_rust = path.ends_with(".rs");
            let indexed = is_rust || path.ends_with(".sh") || path.ends_with(".toml");
            if !indexed {
                continue;
            }
            let Ok(text) = fs::read_to_string(root.join(&path)) else {
                continue;
            };
            repo.words.extend(lex::words(&text));
            if is_rust {
                repo.sources.push(index(&path, &text));
            } else if path.ends_with("Cargo.toml") && !path.starts_with("fuzz/") {
                manifest(&path, &text, &mut repo.crates, &mut deps);
            }
            repo.texts.push(text);
        }
        repo.external
            .extend(deps.into_iter().filter(|d| !repo.crates.contains_key(d)));
        repo
    }

    fn walk(&mut self, rel: &str, ignored: &HashSet<String>) {
        let Ok(entries) = fs::read_dir(self.root.join(rel)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if name == ".git" || name == "target" || ignored.contains(&path) {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    self.dirs.insert(path.clone());
                    self.walk(&path, ignored);
                }
                Ok(_) => {
                    self.files.insert(path);
                }
                Err(_) => {}
            }
        }
    }

    /// Whether `rel` (no trailing `/`) is a file, or with `dir` a directory, of the repository.
    pub fn exists(&self, rel: &str, dir: bool) -> bool {
        self.dirs.contains(rel) || (!dir && self.files.contains(rel))
    }

    /// Whether some path under `under` (a directory with its `/`, or empty) ends with `tail` at
    /// a component boundary: `native_mux/session.rs`, `src/ssh/`, `lib.rs`.
    pub fn has_tail(&self, tail: &str, dir: bool, under: &str) -> bool {
        let fits =
            |p: &&String| p.starts_with(under) && (*p == tail || p.ends_with(&format!("/{tail}")));
        self.dirs.iter().any(|p| fits(&p)) || (!dir && self.files.iter().any(|p| fits(&p)))
    }

    /// Whether some source or manifest holds `text` (`conn-test`, an alias in a string).
    pub fn mentions(&self, text: &str) -> bool {
        self.texts.iter().any(|t| t.contains(text))
    }

    /// Whether a struct, enum, trait, union or type of this name is defined anywhere.
    pub fn is_type(&self, name: &str) -> bool {
        self.sources.iter().any(|s| s.types.contains(name))
    }

    /// Whether `ty::member` names something: a fn, const or associated type of an `impl` of
    /// `ty` (inherent or of a trait) or of the trait `ty`, or one of its variants or fields.
    pub fn has_member(&self, ty: &str, member: &str) -> bool {
        let own = |t: &str| {
            self.sources
                .iter()
                .any(|s| s.members.get(t).is_some_and(|m| m.contains(member)))
        };
        own(ty)
            || self.sources.iter().any(|s| {
                s.trait_impls
                    .iter()
                    .any(|(tr, t)| t == ty && tr != ty && own(tr))
            })
    }

    /// Whether the crate `krate` (an identifier of [`Repo::crates`]) defines or re-exports
    /// `name`, or has a module file of that name.
    pub fn crate_has(&self, krate: &str, name: &str) -> bool {
        let Some(dir) = self.crates.get(krate) else {
            return false;
        };
        let src = if dir.is_empty() {
            "src/".to_string()
        } else {
            format!("{dir}/src/")
        };
        self.sources.iter().any(|s| {
            s.path.starts_with(&src)
                && (s.types.contains(name) || s.values.contains(name) || s.reexports.contains(name))
        })
    }

    /// Whether anything in the workspace (a type, fn, const, module, macro, variant, field)
    /// has this name.
    pub fn any_item(&self, name: &str) -> bool {
        self.sources.iter().any(|s| {
            s.types.contains(name)
                || s.values.contains(name)
                || s.members.values().any(|m| m.contains(name))
        })
    }

    /// Whether a module of this name exists: a `mod` item, or a `NAME.rs` or `NAME/` in the
    /// sources (a test file is its own module).
    pub fn is_module(&self, name: &str) -> bool {
        self.sources.iter().any(|s| s.values.contains(name))
            || self.has_tail(&format!("{name}.rs"), false, "")
            || self.has_tail(name, true, "")
    }
}

/// The top-level `.gitignore`'s anchored entries (`/fuzz/corpus`): what a clean clone lacks.
fn ignored(root: &Path) -> HashSet<String> {
    fs::read_to_string(root.join(".gitignore"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix('/'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

/// Reads a manifest: its package (a workspace crate) and the names of its dependencies.
fn manifest(
    path: &str,
    text: &str,
    crates: &mut BTreeMap<String, String>,
    deps: &mut HashSet<String>,
) {
    let dir = path.strip_suffix("Cargo.toml").unwrap_or("");
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if section == "[package]" && key == "name" {
            let name = value.trim().trim_matches('"').replace('-', "_");
            crates.insert(name, dir.trim_end_matches('/').to_string());
        } else if section.ends_with("dependencies]") {
            let name = key.split('.').next().unwrap_or(key);
            deps.insert(name.trim().replace('-', "_"));
        }
    }
}

/// Indexes one Rust file.
fn index(path: &str, text: &str) -> Source {
    let code = lex::blank(text, false);
    let toks: Vec<String> = lex::tokens(&code).into_iter().map(|(_, t)| t).collect();
    let t = |i: usize| toks.get(i).map_or("", String::as_str);
    let mut src = Source {
        path: path.to_string(),
        ..Source::default()
    };
    for i in 0..toks.len() {
        let next = t(i + 1);
        match t(i) {
            "struct" | "enum" | "trait" | "union" | "type" if lex::is_ident(next) => {
                src.types.insert(next.to_string());
                let found = match t(i) {
                    "struct" | "enum" => body_members(&toks, i + 2),
                    "trait" => Some(block_items(&toks, i + 2)),
                    _ => None,
                };
                if let Some(members) = found {
                    src.members
                        .entry(next.to_string())
                        .or_default()
                        .extend(members);
                }
            }
            "fn" | "const" | "static" | "mod" if lex::is_ident(next) => {
                let name = if next == "mut" { t(i + 2) } else { next };
                if !matches!(name, "fn" | "_" | "unsafe" | "extern" | "async") {
                    src.values.insert(name.to_string());
                }
            }
            "macro_rules" if next == "!" => {
                src.values.insert(t(i + 2).to_string());
            }
            "impl" => {
                if let Some((ty, of_trait)) = impl_target(&toks, i + 1) {
                    src.members
                        .entry(ty.clone())
                        .or_default()
                        .extend(block_items(&toks, i + 1));
                    if let Some(tr) = of_trait {
                        src.trait_impls.push((tr, ty.clone()));
                    }
                    src.impls.insert(ty);
                }
            }
            "use" if t(i.wrapping_sub(1)) == "pub" || t(i.wrapping_sub(1)) == ")" => {
                let end = toks[i..]
                    .iter()
                    .position(|x| x == ";")
                    .map_or(toks.len(), |p| i + p);
                src.reexports.extend(
                    toks[i + 1..end]
                        .iter()
                        .filter(|x| lex::is_ident(x))
                        .cloned(),
                );
            }
            _ => {}
        }
    }
    src
}

/// The index just past a `<…>` that starts at `i` (or `i` when none does).
fn skip_angles(toks: &[String], mut i: usize) -> usize {
    if toks.get(i).map(String::as_str) != Some("<") {
        return i;
    }
    let mut depth = 0;
    while let Some(tok) = toks.get(i) {
        match tok.as_str() {
            "<" => depth += 1,
            ">" if toks[i - 1] != "-" => depth -= 1,
            _ => {}
        }
        i += 1;
        if depth == 0 {
            break;
        }
    }
    i
}

/// The type an `impl` header implements (or implements a trait for), from just after `impl`,
/// and the trait, if it is a trait's impl.
fn impl_target(toks: &[String], from: usize) -> Option<(String, Option<String>)> {
    let start = skip_angles(toks, from);
    let mut depth = 0;
    let mut header = Vec::new();
    for (j, tok) in toks.iter().enumerate().skip(start) {
        match tok.as_str() {
            "{" | ";" if depth == 0 => break,
            "where" if depth == 0 => break,
            "<" => depth += 1,
            ">" if toks[j - 1] != "-" => depth -= 1,
            _ => {}
        }
        header.push((depth, tok.as_str()));
    }
    let after_for = header
        .iter()
        .rposition(|&(d, tok)| d == 0 && tok == "for")
        .map_or(0, |p| p + 1);
    let last_ident = |part: &[(i32, &str)]| {
        let mut last = None;
        for &(d, tok) in part {
            if d > 0 || tok == "<" {
                break;
            }
            if lex::is_ident(tok) && !matches!(tok, "dyn" | "mut" | "const" | "for") {
                last = Some(tok.to_string());
            }
        }
        last
    };
    let ty = last_ident(&header[after_for..])?;
    let of_trait = (after_for > 0)
        .then(|| last_ident(&header[..after_for]))
        .flatten();
    Some((ty, of_trait))
}

/// The fns, consts and types declared directly in the `{ … }` block that follows `from` (an
/// impl's or a trait's items; not those nested in a fn's body).
fn block_items(toks: &[String], from: usize) -> HashSet<String> {
    let mut items = HashSet::new();
    let Some(open) = toks[from..].iter().position(|t| t == "{" || t == ";") else {
        return items;
    };
    let mut depth = 0;
    for j in from + open..toks.len() {
        match toks[j].as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ";" if depth == 0 => break,
            "fn" | "const" | "type" if depth == 1 => {
                if let Some(name) = toks.get(j + 1).filter(|n| lex::is_ident(n) && *n != "fn") {
                    items.insert(name.clone());
                }
            }
            _ => {}
        }
    }
    items
}

/// The variants or fields of the `{ … }` body of a struct or enum whose generics start at `i`.
fn body_members(toks: &[String], i: usize) -> Option<HashSet<String>> {
    let mut i = skip_angles(toks, i);
    // A `where` clause may come first; a `(` or `;` means a tuple or unit struct.
    while let Some(tok) = toks.get(i) {
        match tok.as_str() {
            "{" => break,
            "(" | ";" => return None,
            _ => i += 1,
        }
    }
    let mut members = HashSet::new();
    let (mut depth, mut angle, mut at_start) = (0i32, 0i32, true);
    let mut j = i;
    while let Some(tok) = toks.get(j) {
        match tok.as_str() {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => depth -= 1,
            "<" => angle += 1,
            ">" if toks[j - 1] != "-" => angle -= 1,
            _ => {}
        }
        if depth == 0 {
            break;
        }
        let top = depth == 1 && angle == 0;
        if top && tok == "," {
            at_start = true;
        } else if top && at_start && tok == "#" {
            // An attribute: skip to its closing bracket.
            let mut d = 0;
            j += 1;
            while let Some(t) = toks.get(j) {
                match t.as_str() {
                    "[" => d += 1,
                    "]" => d -= 1,
                    _ => {}
                }
                if d == 0 {
                    break;
                }
                j += 1;
            }
        } else if top && at_start && lex::is_ident(tok) && tok != "pub" {
            members.insert(tok.clone());
            at_start = false;
        } else if depth == 2 && at_start && toks[j - 1] == "pub" && tok == "(" {
            // `pub(crate)`: skip the restriction.
            while toks.get(j).is_some_and(|t| t != ")") {
                j += 1;
            }
            depth -= 1;
        }
        j += 1;
    }
    Some(members)
}

#[test]
fn items_impls_and_members_are_indexed() {
    let src = index(
        "a.rs",
        "/// The pool.\npub struct Pool<T: Clone> where T: Send { pub(crate) free: usize, \
         #[doc = \"x\"] slots: Vec<Option<T>>, }\n\
         #[derive(Debug)] pub enum Mode { #[error(\"{0}\")] Fast(u8), Slow { x: u8 }, Off = 3 }\n\
         impl<T: Clone> Pool<T> { pub const fn run(&self) {} }\n\
         impl From<File> for Mode { fn from(_: File) -> Self { Mode::Off } }\n\
         impl<'a> std::fmt::Display for &'a dyn Trait {}\n\
         pub use crate::x::{Y, Z as W};\nmacro_rules! for_each { () => {} }",
    );
    assert_eq!(
        src.types,
        ["Pool", "Mode"].map(String::from).into_iter().collect()
    );
    assert_eq!(
        src.impls,
        ["Pool", "Mode", "Trait"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let mut fields: Vec<_> = src.members["Pool"].iter().cloned().collect();
    fields.sort();
    assert_eq!(fields, ["free", "run", "slots"]);
    assert_eq!(src.trait_impls[0], ("From".to_string(), "Mode".to_string()));
    let mut variants: Vec<_> = src.members["Mode"].iter().cloned().collect();
    variants.sort();
    assert_eq!(variants, ["Fast", "Off", "Slow", "from"]);
    for v in ["run", "from", "for_each"] {
        assert!(src.values.contains(v), "{v}");
    }
    assert!(src.members["Pool"].contains("run"));
    assert!(!src.members["Mode"].contains("run"));
    for r in ["Y", "W"] {
        assert!(src.reexports.contains(r), "{r}");
    }
}
