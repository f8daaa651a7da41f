//! The docs check: what README.md, docs/*.md and conn's `--help` texts quote must exist.
//!
//! - Repository paths in code spans, fenced blocks and links (`crates/…/x.rs:12`,
//!   `native_mux/session.rs`, `fuzz/regressions/<target>/`), and the anchor of a link or
//!   quoted `design.md#refresh` (an `<a id>` or a heading's slug). A bare file name in a row
//!   of a crates table must be that crate's.
//! - Crate items in code spans (see [`items`]), by name in the sources.
//! - `conn` options: every flag of a quoted `conn <command> …` line (spans and fenced
//!   blocks) against that command's definitions, and a flag quoted alone (`--stdin-all`)
//!   against all of conn's (see [`flags`] and [`cli_defs`]).
//!
//! CHANGELOG.md is not read: it is history, and names what was removed or renamed on purpose.
//! What is quoted but is not conn's (another program's flag, a file cargo makes) goes in
//! `allow.txt` beside this file, with the reason; an entry that nothing matches is a finding
//! too, so the list holds only what is needed.

pub mod cli_defs;
pub mod flags;
pub mod items;
pub mod lex;
pub mod markdown;
pub mod paths;
pub mod repo;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use repo::Repo;

/// Where the exceptions are, relative to the repository.
pub const ALLOW_FILE: &str = "crates/conn-cli/tests/docs_check/allow.txt";

/// One stale reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The quoting file (or `conn run --help`).
    pub file: String,
    /// Its line.
    pub line: usize,
    /// What is quoted and what is wrong.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// One exception of `allow.txt`: `KIND VALUE [FILE]  # why`.
struct Entry {
    /// `path` (a prefix), `flag`, `command` (`conn WORD`) or `item`.
    kind: String,
    value: String,
    /// The one file it applies to, if it names one.
    file: Option<String>,
    /// Its line in allow.txt.
    line: usize,
}

/// The exceptions of `allow.txt`, and which of them something matched.
struct Allow {
    entries: Vec<Entry>,
    used: std::cell::RefCell<Vec<bool>>,
}

impl Allow {
    fn load(root: &Path) -> Result<Allow, String> {
        let text = fs::read_to_string(root.join(ALLOW_FILE)).unwrap_or_default();
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let body = line.split(" #").next().unwrap_or("").trim();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            if !line.contains(" #") {
                return Err(format!("{ALLOW_FILE}:{line_no}: say why, after a ` #`"));
            }
            let (kind, rest) = body.split_once(' ').unwrap_or((body, ""));
            let rest = rest.trim();
            // `command conn pool`: the value is two words.
            let (value, file) = match kind {
                "command" => match rest.splitn(3, ' ').collect::<Vec<_>>()[..] {
                    [a, b] => (format!("{a} {b}"), None),
                    [a, b, f] => (format!("{a} {b}"), Some(f.trim().to_string())),
                    _ => (rest.to_string(), None),
                },
                _ => match rest.split_once(' ') {
                    Some((v, f)) => (v.to_string(), Some(f.trim().to_string())),
                    None => (rest.to_string(), None),
                },
            };
            if !matches!(kind, "path" | "flag" | "command" | "item") || value.is_empty() {
                return Err(format!(
                    "{ALLOW_FILE}:{line_no}: not `path|flag|command|item VALUE [FILE]  # why`"
                ));
            }
            entries.push(Entry {
                kind: kind.to_string(),
                value,
                file,
                line: line_no,
            });
        }
        let used = std::cell::RefCell::new(vec![false; entries.len()]);
        Ok(Allow { entries, used })
    }

    /// Whether `kind` `value` quoted in `file` is allowed (a `path` entry is a prefix).
    fn allows(&self, kind: &str, value: &str, file: &str) -> bool {
        let hit = self.entries.iter().position(|e| {
            e.kind == kind
                && e.file.as_deref().is_none_or(|f| f == file)
                && (e.value == value || (kind == "path" && value.starts_with(e.value.as_str())))
        });
        if let Some(i) = hit {
            self.used.borrow_mut()[i] = true;
        }
        hit.is_some()
    }

    /// The entries nothing matched: each is a finding, so the list only holds what is needed.
    fn unused(&self) -> Vec<Finding> {
        let used = self.used.borrow();
        self.entries
            .iter()
            .zip(used.iter())
            .filter(|(_, u)| !**u)
            .map(|(e, _)| Finding {
                file: ALLOW_FILE.to_string(),
                line: e.line,
                message: format!(
                    "`{} {}` allows what nothing quotes any more: remove it",
                    e.kind, e.value
                ),
            })
            .collect()
    }
}

/// The docs the check reads: README.md and every Markdown file under docs/.
pub fn docs(repo: &Repo) -> Vec<String> {
    repo.files
        .iter()
        .filter(|p| *p == "README.md" || (p.starts_with("docs/") && p.ends_with(".md")))
        .cloned()
        .collect()
}

/// Checks the docs of `repo`, and `help` (each a name such as `conn run --help` and its
/// text); returns every stale reference, sorted, and how much was read.
pub fn check(repo: &Repo, help: &[(String, String)]) -> Result<(Vec<Finding>, Counts), String> {
    let root = repo.root.as_path();
    let cli = cli_defs::load(repo)?;
    let allow = Allow::load(root)?;
    let scripts: String = repo
        .files
        .iter()
        .filter(|p| p.starts_with("scripts/"))
        .filter_map(|p| fs::read_to_string(root.join(p)).ok())
        .collect();
    let mut checker = Checker {
        repo,
        cli: &cli,
        allow: &allow,
        scripts,
        anchors: HashMap::new(),
        findings: Vec::new(),
        counts: Counts::default(),
    };
    for doc in docs(repo) {
        let text = fs::read_to_string(root.join(&doc)).map_err(|e| format!("{doc}: {e}"))?;
        checker.doc(&doc, &text);
        checker.counts.docs += 1;
    }
    for (name, text) in help {
        checker.help(name, text);
    }
    let counts = checker.counts;
    let mut findings = checker.findings;
    findings.extend(allow.unused());
    findings.sort();
    findings.dedup();
    Ok((findings, counts))
}

struct Checker<'a> {
    repo: &'a Repo,
    cli: &'a cli_defs::Cli,
    allow: &'a Allow,
    /// The text of the repository's scripts, whose long options the docs may quote alone.
    scripts: String,
    /// The anchors of each Markdown file read so far (None: not a readable file).
    anchors: HashMap<String, Option<std::collections::HashSet<String>>>,
    findings: Vec<Finding>,
    counts: Counts,
}

/// How much a run read, so that a check that silently reads nothing shows.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Markdown files.
    pub docs: usize,
    /// Repository paths.
    pub paths: usize,
    /// Links.
    pub links: usize,
    /// Crate items.
    pub items: usize,
    /// `conn …` command lines.
    pub conn_lines: usize,
    /// Flags quoted alone (spans).
    pub flags: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} docs: {} paths, {} links, {} crate items, {} conn command lines, {} flags quoted alone",
            self.docs, self.paths, self.links, self.items, self.conn_lines, self.flags
        )
    }
}

impl Checker<'_> {
    fn report(&mut self, file: &str, line: usize, message: String) {
        self.findings.push(Finding {
            file: file.to_string(),
            line,
            message,
        });
    }

    fn doc(&mut self, file: &str, text: &str) {
        let doc = markdown::parse(text);
        let dir = file.rsplit_once('/').map_or("", |(d, _)| d);
        self.anchors
            .insert(file.to_string(), Some(doc.anchors.clone()));
        let scopes = self.table_scopes(text);
        for span in &doc.spans {
            let scope = scopes.get(&span.line).map(String::as_str);
            self.span(file, span.line, &span.text, scope, dir);
        }
        for (info, line) in &doc.fenced {
            if info == "rust" {
                continue; // code: compiled (or not) by its own rules
            }
            let code = strip_comment(&line.text);
            let shell = matches!(info.as_str(), "sh" | "bash" | "shell" | "console");
            self.flags_in_line(file, line.line, code, true, shell);
            for word in code.split_whitespace() {
                self.path(file, line.line, word, None, dir);
            }
        }
        for link in &doc.links {
            self.link(file, link.line, &link.text, dir, &doc.anchors);
        }
    }

    fn help(&mut self, name: &str, text: &str) {
        for (n, line) in text.lines().enumerate() {
            self.flags_in_line(name, n + 1, line, false, false);
            let mut spans = line.split('`');
            spans.next();
            let spans: Vec<&str> = spans.step_by(2).collect();
            for span in spans {
                self.span(name, n + 1, span, None, "");
            }
            for word in line.split_whitespace() {
                // Prose: only paths that cannot be anything else.
                if word.contains('/') {
                    self.path(name, n + 1, word, None, "");
                }
            }
        }
    }

    /// Lines of a table row whose first cell is a workspace crate (`conn-cli`, `conn`
    /// (root)): that crate's directory, where the row's bare file names must be.
    fn table_scopes(&self, text: &str) -> BTreeMap<usize, String> {
        let mut scopes = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let Some(cells) = line.trim().strip_prefix('|') else {
                continue;
            };
            let first = cells.split('|').next().unwrap_or("").trim();
            let Some(name) = first.strip_prefix('`').and_then(|f| f.split('`').next()) else {
                continue;
            };
            if let Some(dir) = self.repo.crates.get(&name.replace('-', "_"))
                && !dir.is_empty()
            {
                scopes.insert(n + 1, format!("{dir}/"));
            }
        }
        scopes
    }

    fn span(&mut self, file: &str, line: usize, span: &str, scope: Option<&str>, dir: &str) {
        if span.starts_with('-') {
            self.counts.flags += 1;
            for flag in flags::check_bare(self.cli, span, &self.scripts) {
                if !self.allow.allows("flag", &flag, file) {
                    let message =
                        format!("`{span}`: no conn command or script has the option `{flag}`");
                    self.report(file, line, message);
                }
            }
        } else {
            self.flags_in_line(file, line, span, true, true);
        }
        for word in span.split_whitespace() {
            self.path(file, line, word, scope, dir);
        }
        for (item, problem) in items::check(self.repo, span) {
            self.counts.items += 1;
            if let Some(problem) = problem.filter(|_| !self.allow.allows("item", &item, file)) {
                self.report(file, line, format!("`{span}`: {problem}"));
            }
        }
    }

    fn flags_in_line(&mut self, file: &str, line: usize, text: &str, anywhere: bool, strict: bool) {
        let (lines, problems) = flags::check_lines(self.cli, text, anywhere, strict);
        self.counts.conn_lines += lines;
        for (flag, problem) in problems {
            let kind = if flag.starts_with('-') {
                "flag"
            } else {
                "command"
            };
            if !self.allow.allows(kind, &flag, file) {
                self.report(file, line, problem);
            }
        }
    }

    fn path(&mut self, file: &str, line: usize, word: &str, scope: Option<&str>, dir: &str) {
        let Some(q) = paths::read(word) else {
            return;
        };
        self.counts.paths += 1;
        let shown = if q.dir {
            format!("{}/", q.path)
        } else {
            q.path.clone()
        };
        if !paths::exists(self.repo, &q, scope, dir) {
            if self.allow.allows("path", &shown, file) {
                return;
            }
            let where_ = scope.map_or(String::new(), |s| format!(" under {s}"));
            let what = if q.dir {
                "directory"
            } else {
                "file or directory"
            };
            self.report(file, line, format!("`{word}`: no {what} `{shown}`{where_}"));
            return;
        }
        if let Some(anchor) = q.anchor.filter(|a| !a.is_empty()) {
            let target = if self.repo.exists(&q.path, false) {
                q.path.clone()
            } else {
                format!("{dir}/{}", q.path)
            };
            self.anchor(file, line, word, &target, &anchor);
        }
    }

    fn link(
        &mut self,
        file: &str,
        line: usize,
        target: &str,
        dir: &str,
        own: &std::collections::HashSet<String>,
    ) {
        if target.contains("://") || target.starts_with("mailto:") {
            return;
        }
        self.counts.links += 1;
        let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
        if path.is_empty() {
            if !own.contains(anchor) {
                self.report(
                    file,
                    line,
                    format!("link `{target}`: no anchor `{anchor}` in {file}"),
                );
            }
            return;
        }
        let Some(resolved) = paths::resolve_link(dir, path) else {
            self.report(file, line, format!("link `{target}` leaves the repository"));
            return;
        };
        if !self.repo.exists(&resolved, false) {
            self.report(
                file,
                line,
                format!("link `{target}`: no file or directory `{resolved}`"),
            );
        } else if !anchor.is_empty() {
            self.anchor(file, line, target, &resolved, anchor);
        }
    }

    fn anchor(&mut self, file: &str, line: usize, quoted: &str, target: &str, anchor: &str) {
        if !target.ends_with(".md") {
            return;
        }
        let repo = self.repo;
        let anchors = self
            .anchors
            .entry(target.to_string())
            .or_insert_with(|| {
                fs::read_to_string(repo.root.join(target))
                    .ok()
                    .map(|t| markdown::parse(&t).anchors)
            })
            .clone();
        if anchors.is_some_and(|a| !a.contains(anchor)) {
            self.report(
                file,
                line,
                format!("`{quoted}`: no anchor `{anchor}` in {target}"),
            );
        }
    }
}

/// A shell line without its comment (a `#` that starts a word, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return &line[..i],
            None => {}
        }
        prev = c;
    }
    line
}
