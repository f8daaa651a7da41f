//! The docs check: every repository path, crate item and `conn` option that README.md,
//! docs/*.md and conn's `--help` texts quote must exist, so the docs cannot drift from the
//! code unnoticed. Textual and cheap (no sshd, no build beyond the `conn` binary, well under a
//! second); `.ci/run` runs it first, on its own: `cargo test -p conn-cli --test docs`. What
//! counts as a path, an item or a flag, and where the exceptions go: `docs_check/mod.rs`.

mod docs_check;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use conn_testkit::run_with_timeout;
use docs_check::{ALLOW_FILE, Finding, cli_defs, repo::Repo};

/// The repository: two levels above this crate.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// `conn help <command>` of the real binary (the text of `conn <command> --help`).
fn help_of(args: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_conn"))
            .args(args)
            .env("NO_COLOR", "1"),
        Duration::from_secs(30),
    )
    .expect("run conn");
    assert!(out.status.success(), "conn {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The `--help` texts: `conn --help` and every command's.
fn help_texts(cli: &cli_defs::Cli) -> Vec<(String, String)> {
    let mut texts = vec![("conn --help".to_string(), help_of(&["--help"]))];
    for sub in cli.subs.keys().filter(|s| *s != "help") {
        texts.push((format!("conn {sub} --help"), help_of(&["help", sub])));
    }
    texts
}

#[test]
fn readme_docs_and_help_quote_only_what_exists() {
    let repo = Repo::load(&root());
    let cli = cli_defs::load(&repo).unwrap_or_else(|e| panic!("{e}"));
    let (findings, counts) =
        docs_check::check(&repo, &help_texts(&cli)).unwrap_or_else(|e| panic!("{e}"));
    for f in &findings {
        eprintln!("{f}");
    }
    // Each of README.md and docs/*.md, and the help texts, read in earnest.
    assert!(counts.docs >= 5, "{counts}");
    for (what, n) in [
        ("paths", counts.paths),
        ("items", counts.items),
        ("conn lines", counts.conn_lines),
    ] {
        assert!(n >= 100, "only {n} {what} read: {counts}");
    }
    println!("docs check: {counts}; {} stale", findings.len());
    assert!(
        findings.is_empty(),
        "{} stale references in the docs (listed above): fix the quote; for something that is \
         not conn's (another program's option, a file another tool makes), add it to \
         {ALLOW_FILE} with the reason",
        findings.len()
    );
}

/// The flags read from the sources are the ones clap shows: every option line of each
/// command's help (`  -w, --host <EXPR>`, `      --json`) is in the table, and every long
/// option of the table is in the help (as an option or an alias).
#[test]
fn the_flag_table_matches_the_binarys_help() {
    let cli = cli_defs::load(&Repo::load(&root())).unwrap_or_else(|e| panic!("{e}"));
    for (sub, opts) in cli.subs.iter().filter(|(s, _)| *s != "help" && *s != "ssh") {
        let help = help_of(&["help", sub]);
        let mut seen = 0;
        for line in help.lines() {
            let (short, long) = if let Some(l) = line.strip_prefix("      --") {
                (None, l)
            } else if let Some(l) = line
                .strip_prefix("  -")
                .filter(|l| l.starts_with(|c: char| c.is_ascii_alphanumeric()))
                .filter(|l| {
                    let rest = &l[1..];
                    // Not an example of the after-help text (`  -b         at the end`).
                    rest.is_empty() || [", --", " <", "..."].iter().any(|p| rest.starts_with(p))
                })
            {
                let mut c = l.chars();
                let short = c.next();
                (short, c.as_str().strip_prefix(", --").unwrap_or(""))
            } else {
                continue;
            };
            let long: String = long
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-')
                .collect();
            if let Some(s) = short {
                assert!(
                    opts.shorts.contains_key(&s),
                    "conn {sub}: -{s} is in its help, not in the table"
                );
            }
            if !long.is_empty() {
                assert!(
                    opts.longs.contains_key(&long),
                    "conn {sub}: --{long} is in its help, not in the table"
                );
            }
            seen += 1;
        }
        assert!(
            seen >= 3,
            "conn {sub}: read only {seen} option lines of its help:\n{help}"
        );
        for long in opts.longs.keys() {
            assert!(
                help.contains(&format!("--{long}")),
                "conn {sub}: --{long} is in the table, not in its help"
            );
        }
    }
    let run = &cli.subs["run"];
    assert_eq!(
        run.shorts.get(&'H'),
        Some(&true),
        "-H, the visible alias of -w, takes a value"
    );
    assert_eq!(run.longs.get("fanout"), Some(&true));
    assert_eq!(run.longs.get("stdin-all"), Some(&false));
    assert_eq!(run.shorts.get(&'v'), Some(&false), "-v counts");
    assert!(run.trailing, "conn run's command ends its options");
    let ssh = &cli.subs["ssh"];
    assert!(ssh.ssh);
    assert_eq!(ssh.shorts.get(&'p'), Some(&true));
    assert_eq!(ssh.shorts.get(&'t'), Some(&false));
    assert_eq!(ssh.longs.get("mux"), Some(&true));
    assert_eq!(ssh.longs.get("exit-on-shutdown"), Some(&false));
}

/// A repository in a temp dir: one crate, a clap definition, and docs.
fn fixture(docs: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let files: &[(&str, &str)] = &[
        (
            "Cargo.toml",
            "[package]\nname = \"conn\"\n[workspace.dependencies]\ntracing = \"0.1\"\n",
        ),
        ("src/lib.rs", "pub mod prelude {}\n"),
        (
            "crates/conn-core/Cargo.toml",
            "[package]\nname = \"conn-core\"\n",
        ),
        (
            "crates/conn-core/src/pool.rs",
            "/// A pool.\npub struct ConnectionPool<T> { name: String }\n\
             impl<T: Transport> ConnectionPool<T> { pub fn run(&self) {} }\n\
             pub enum Started { No, Yes }\npub fn wait_with_output() {}\n",
        ),
        (
            "crates/conn-cli/Cargo.toml",
            "[package]\nname = \"conn-cli\"\n",
        ),
        ("crates/conn-cli/src/run.rs", "//! Runs.\n"),
        (
            "crates/conn-cli/src/args/mod.rs",
            "#[derive(Debug, Parser)]\n#[command(propagate_version = true)]\n\
             pub struct Cli {\n    #[command(subcommand)]\n    pub command: Command,\n}\n\
             #[derive(Debug, Subcommand)]\npub enum Command {\n    /// Runs.\n    Run(RunArgs),\n    Ssh(SshCmdArgs),\n}\n\
             #[derive(Debug, Args)]\npub struct RunArgs {\n    /// Hosts.\n    \
             #[arg(short = 'w', visible_short_alias = 'H', long = \"host\", value_name = \"EXPR\")]\n    \
             pub hosts: Vec<String>,\n    #[arg(long)]\n    pub json: bool,\n    \
             #[command(flatten)]\n    pub output: Out,\n    \
             #[arg(value_name = \"CMD\", trailing_var_arg = true)]\n    pub command: Vec<String>,\n}\n\
             #[derive(Debug, Args)]\npub struct Out {\n    #[arg(short = 'b', long = \"gather\")]\n    pub gather: bool,\n}\n\
             #[derive(Debug, Args)]\npub struct SshCmdArgs {\n    pub args: Vec<String>,\n}\n",
        ),
        (
            "crates/conn-cli/src/ssh/args.rs",
            "pub const SSH_OPTSTRING: &[u8] = b\"p:tv\";\n\
             pub struct ConnOptions {\n    pub mux: Option<String>,\n    pub exit_on_shutdown: bool,\n}\n",
        ),
        (
            "docs/design.md",
            "# Design\n\n<a id=\"refresh\"></a>\n## The pool\n",
        ),
        (
            ALLOW_FILE,
            "flag --locked  # cargo install's\npath target/  # cargo's\n",
        ),
    ];
    for (path, text) in files.iter().chain(docs) {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
    dir
}

fn lines_of(findings: &[Finding], file: &str) -> Vec<usize> {
    findings
        .iter()
        .filter(|f| f.file == file)
        .map(|f| f.line)
        .collect()
}

#[test]
fn quotes_that_exist_pass() {
    let good = "# Good\n\n\
        `crates/conn-core/src/pool.rs:2`, `pool.rs`, `src/`, `docs/design.md#refresh`, \
        [the pool](design.md#the-pool), [top](#good), ![x](../src/lib.rs).\n\n\
        `ConnectionPool::run`, `ConnectionPool<Local>::run`, `Started::{No, Yes}`, \
        `conn_core::ConnectionPool`, `conn::prelude`, `wait_with_output`, `pool.run(&cmd)`, \
        `std::process::Child`, `tracing::warn!`, `flock(2)`, `conn-core`.\n\n\
        `conn run -w 'h[1-3]' -H h4 -b --json -- tar -x -C /srv`, `--gather`, `-v`, \
        `--locked` (cargo's), `conn ssh -p 22 --mux native host ls -l`, `target/release/conn`, `target/debug/x.rs`.\n\n\
        ```sh\nconn run [OPTIONS] (-w EXPR … | --json) [--] CMD [ARGS…]   # a comment -Z\n\
        tar -c . | conn run -w h -- tar -x\nbash crates/conn-cli/src/run.rs\n```\n\n\
        | crate | files |\n|---|---|\n| `conn-cli` | `run.rs` |\n";
    let repo = fixture(&[("docs/good.md", good)]);
    let (findings, _) = docs_check::check(&Repo::load(repo.path()), &[]).expect("check");
    assert_eq!(findings, [], "{findings:#?}");
}

#[test]
fn a_planted_stale_path_item_flag_or_anchor_fails_with_its_line() {
    let stale = "# Stale\n\n\
        `crates/conn-core/src/connection.rs` moved.\n\
        A [link](design.md#gone) and [another](missing.md).\n\
        `docs/design.md#nowhere`\n\
        `ConnectionPool::walk` and `conn_core::run_process`\n\
        `Started::Maybe` and `spawn_process_watching`\n\
        `conn run --stdin-none -- x`\n\
        `--no-such-flag`\n\
        ```sh\nconn ssh --socket -p 22 host\nconn lease --prune\n```\n\n\
        | crate | files |\n|---|---|\n| `conn-cli` | `pool.rs` |\n";
    let repo = fixture(&[("docs/stale.md", stale)]);
    let (findings, _) = docs_check::check(&Repo::load(repo.path()), &[]).expect("check");
    for f in &findings {
        eprintln!("{f}");
    }
    assert_eq!(
        lines_of(&findings, "docs/stale.md"),
        [3, 4, 4, 5, 6, 6, 7, 7, 8, 9, 11, 12, 17],
        "{findings:#?}"
    );
    let first = findings
        .iter()
        .find(|f| f.file == "docs/stale.md")
        .expect("a finding");
    assert!(
        first.message.contains("crates/conn-core/src/connection.rs"),
        "{first}"
    );
    assert!(findings.iter().any(|f| {
        f.message
            .contains("`Started` has no fn, variant or field `Maybe`")
    }));
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains("no anchor `gone` in docs/design.md"))
    );
    assert!(findings.iter().any(|f| {
        f.message
            .contains("`conn run` has no option `--stdin-none`")
    }));
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains("pool.rs` under crates/conn-cli/"))
    );
}

#[test]
fn the_help_texts_are_checked_too() {
    let repo = fixture(&[]);
    let help = [(
        "conn run --help".to_string(),
        "Examples:\n  conn run -w h -- true\n  conn run --jsonl -w h -- true\n\
         conn reads `-b`, `--gatherall`; see docs/nothing.md\n"
            .to_string(),
    )];
    let (findings, _) = docs_check::check(&Repo::load(repo.path()), &help).expect("check");
    assert_eq!(
        lines_of(&findings, "conn run --help"),
        [3, 4, 4],
        "{findings:#?}"
    );
}
