//! Repository paths quoted in the docs: which words are paths, and whether each exists.

use super::repo::Repo;

/// First components that name nothing but repository paths.
const ROOTS: &[&str] = &[
    "crates", "src", "tests", "scripts", "docs", "examples", "fuzz", ".ci", "benches",
];
/// First components that exist only at the top of the repository: such a path is checked
/// from there, not as the tail of a deeper one.
const TOP_ONLY: &[&str] = &["crates", "scripts", "docs", "examples", "fuzz", ".ci"];
/// Extensions that make a word a repository file (`socket_dir.rs`, `fuzz/Cargo.toml`).
const EXTS: &[&str] = &["rs", "sh", "md", "toml", "svg"];

/// A quoted word read as a repository path.
#[derive(Debug, PartialEq, Eq)]
pub struct Quoted {
    /// The path, placeholders cut off (`fuzz/regressions/<target>/` is `fuzz/regressions/`).
    pub path: String,
    /// Whether it names a directory (ends with `/`).
    pub dir: bool,
    /// Its anchor, if it has one (`design.md#refresh`).
    pub anchor: Option<String>,
}

/// The repository path `word` names, if it looks like one: its first component is one of
/// [`ROOTS`] or its name ends with one of [`EXTS`]. Absolute, home, `./` and `host:path`
/// words, URLs and options are not repository paths.
pub fn read(word: &str) -> Option<Quoted> {
    let word = word.trim_start_matches(['(', '[', '\'', '"', '`']);
    let word = word.trim_end_matches([')', ']', '\'', '"', '`', ',', ';', '.', ':']);
    if word.is_empty()
        || word.contains("://")
        || word.starts_with(['/', '~', '$', '-', '@', '<'])
        || word.starts_with("./")
        || word.starts_with("../")
        || word.contains(['@', '='])
    {
        return None;
    }
    // `path:12` or `path:12-30`.
    let word = match word.rsplit_once(':') {
        Some((p, line)) if line.chars().all(|c| c.is_ascii_digit() || c == '-') => p,
        Some(_) => return None, // host:path
        None => word,
    };
    let (word, anchor) = match word.split_once('#') {
        Some((p, a)) => (p, Some(a.to_string())),
        None => (word, None),
    };
    // Placeholders: keep the directory before the first one.
    let word = match word.find(['<', '{', '*', '…', '%', '$', '|']) {
        Some(p) => &word[..word[..p].rfind('/')? + 1],
        None => word,
    };
    let first = word.split('/').next().unwrap_or("");
    let name = word.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let ext = name.rsplit_once('.').map(|(_, e)| e);
    let is_path = (word.contains('/') && ROOTS.contains(&first))
        || (ext.is_some_and(|e| EXTS.contains(&e)) && !name.starts_with('.'));
    is_path.then(|| Quoted {
        path: word.trim_end_matches('/').to_string(),
        dir: word.ends_with('/'),
        anchor,
    })
}

/// Whether `q` exists. `scope` (a crate's directory with its `/`) is where a bare file name
/// of that crate's row is looked for; `doc_dir` is the quoting file's directory, tried for a
/// relative `design.md#…`.
pub fn exists(repo: &Repo, q: &Quoted, scope: Option<&str>, doc_dir: &str) -> bool {
    let first = q.path.split('/').next().unwrap_or("");
    if let Some(scope) = scope.filter(|_| !q.path.contains('/')) {
        return repo.has_tail(&q.path, q.dir, scope);
    }
    if repo.exists(&q.path, q.dir) {
        return true;
    }
    if !doc_dir.is_empty() && repo.exists(&format!("{doc_dir}/{}", q.path), q.dir) {
        return true;
    }
    !TOP_ONLY.contains(&first) && repo.has_tail(&q.path, q.dir, "")
}

/// The repository path of a Markdown link's target, relative to the file's directory, with
/// `..` resolved; None when it leaves the repository.
pub fn resolve_link(doc_dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = doc_dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[test]
fn which_words_are_paths() {
    let p = |w: &str| read(w).map(|q| (q.path, q.dir, q.anchor));
    assert_eq!(
        p("crates/conn-cli/src/run.rs:42"),
        Some(("crates/conn-cli/src/run.rs".into(), false, None))
    );
    assert_eq!(
        p("fuzz/regressions/<target>/"),
        Some(("fuzz/regressions".into(), true, None))
    );
    assert_eq!(
        p("docs/design.md#exit-255"),
        Some(("docs/design.md".into(), false, Some("exit-255".into())))
    );
    assert_eq!(
        p("(`socket_dir.rs`),"),
        Some(("socket_dir.rs".into(), false, None))
    );
    assert_eq!(p(".ci/run"), Some((".ci/run".into(), false, None)));
    assert_eq!(p("src/"), Some(("src".into(), true, None)));
    for not in [
        "/tmp/conn-<uid>",
        "~/.ssh/conn",
        "used/<name>",
        "free/",
        "db1:/srv/repo.git",
        "ssh://u@h",
        "./site",
        "hosts.txt",
        "--outdir",
        "groups.conf",
        ".log",
        "a.b",
        "results.{md,json}",
    ] {
        assert_eq!(read(not), None, "{not}");
    }
    assert_eq!(
        resolve_link("docs", "../README.md"),
        Some("README.md".into())
    );
    assert_eq!(resolve_link("", "../x"), None);
}
