//! Quoted `conn …` command lines and flags, checked against conn's command line as
//! [`cli_defs`](super::cli_defs) reads it from the sources.

use super::cli_defs::Cli;

/// Checks every `conn …` command line in `text` against `cli`; with `anywhere` false (prose
/// such as `--help` texts) only one that starts the text, or follows a quote or a pipe, counts.
/// With `strict` (a shell line, a code span), a word after `conn` that is no subcommand is a
/// problem too. Returns how many lines it read, and each problem: the flag or word at fault
/// and what is wrong.
pub fn check_lines(
    cli: &Cli,
    text: &str,
    anywhere: bool,
    strict: bool,
) -> (usize, Vec<(String, String)>) {
    let mut problems = Vec::new();
    let mut lines = 0;
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(p) = text[from..].find("conn") {
        let at = from + p;
        from = at + 4;
        let before = text[..at].trim_end_matches(' ');
        let prev = text[..at].chars().last();
        let prev_word_char =
            prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.');
        let starts = text[..at].trim().is_empty();
        let allowed = if anywhere {
            !prev_word_char && prev.is_none_or(|c| " \t/'\"`|;(&=".contains(c))
        } else {
            starts || matches!(prev, Some('\'' | '"')) || before.ends_with('|')
        };
        if !allowed || b.get(at + 4).is_none_or(|c| *c != b' ') {
            continue;
        }
        let mut rest = &text[at + 5..];
        if let Some(q @ ('\'' | '"')) = prev {
            rest = rest.split(q).next().unwrap_or(rest);
        }
        if !anywhere {
            // An example of a help text: its description starts after a run of spaces.
            rest = rest.split("  ").next().unwrap_or(rest);
        }
        lines += 1;
        problems.extend(check_line(cli, rest, strict));
    }
    (lines, problems)
}

/// Checks the words after one `conn`; with `strict`, a word that is no subcommand is a
/// problem too (in prose, `conn reads …` is a sentence).
fn check_line(cli: &Cli, rest: &str, strict: bool) -> Vec<(String, String)> {
    let words = shell_words(rest);
    let Some(first) = words.first() else {
        return Vec::new();
    };
    let (sub, opts, skip) = match cli.subs.get(first.as_str()) {
        Some(o) => (format!("conn {first}"), o, 1),
        None if first.starts_with('-') => ("conn".to_string(), &cli.top, 0),
        None if strict
            && first.len() > 1
            && first.chars().all(|c| c.is_ascii_lowercase() || c == '-') =>
        {
            let known: Vec<_> = cli.subs.keys().map(String::as_str).collect();
            return vec![(
                format!("conn {first}"),
                format!(
                    "`conn {first}`: conn has no subcommand `{first}` (it has {})",
                    known.join(", ")
                ),
            )];
        }
        None => return Vec::new(),
    };
    let mut problems = Vec::new();
    let (mut depth, mut pending, mut positionals) = (0i32, false, 0);
    for raw in &words[skip..] {
        let opens = raw.chars().take_while(|c| matches!(c, '[' | '(')).count() as i32;
        let word = raw.trim_matches(|c| matches!(c, '[' | ']' | '(' | ')' | ',' | '…'));
        depth += opens;
        let closes = raw
            .chars()
            .rev()
            .take_while(|c| matches!(c, ']' | ')'))
            .count() as i32;
        let operator = word.starts_with(['|', ';', '&', '>', '#'])
            || (word.starts_with('<') && !word.ends_with('>'));
        if word == "--" || (operator && depth == 0) || word.starts_with("2>") {
            break;
        }
        depth = (depth - closes).max(0);
        if word.is_empty() || operator || word == "..." || placeholder(word) {
            pending = false;
            continue;
        }
        if pending {
            pending = false;
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            match opts.longs.get(name) {
                Some(&takes) => pending = takes && !inline,
                None => problems.push((
                    format!("--{name}"),
                    format!("`{sub}` has no option `--{name}`"),
                )),
            }
            continue;
        }
        if word.len() > 1
            && word.starts_with('-')
            && word[1..].starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            for (k, c) in word[1..].char_indices() {
                match opts.shorts.get(&c) {
                    Some(&takes) => {
                        if takes {
                            pending = k + c.len_utf8() == word.len() - 1;
                            break;
                        }
                    }
                    None => {
                        problems.push((format!("-{c}"), format!("`{sub}` has no option `-{c}`")));
                        break;
                    }
                }
            }
            continue;
        }
        // A positional word: the command (clap's trailing_var_arg), or ssh's destination and
        // then its command.
        positionals += 1;
        if opts.trailing || (opts.ssh && positionals > 1) {
            break;
        }
    }
    problems
}

/// A synopsis placeholder: `OPTIONS`, `EXPR`, `SRC…`, `<command>`.
fn placeholder(word: &str) -> bool {
    (word.starts_with('<') && word.ends_with('>'))
        || (!word.starts_with('-')
            && word.chars().any(|c| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "_-.|".contains(c)))
}

/// Checks a quoted flag without its command (`--stdin-all`, `-b`, `-v -v -v`): each must be
/// some command's option, or a long option of one of the repository's scripts (`scripts`:
/// their text). Returns the flags that are neither.
pub fn check_bare(cli: &Cli, span: &str, scripts: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in span.split_whitespace() {
        let word = word.trim_matches(|c| matches!(c, '[' | ']' | '(' | ')' | ',' | '`'));
        if let Some(long) = word.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            let flag = format!("--{name}");
            let in_script = scripts.match_indices(&flag).any(|(at, _)| {
                !scripts[at + flag.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '-')
            });
            if !name.is_empty() && !cli.any.longs.contains_key(name) && !in_script {
                out.push(format!("--{name}"));
            }
        } else if let Some(c) = word.strip_prefix('-').and_then(|s| s.chars().next())
            && c.is_ascii_alphanumeric()
            && !cli.any.shorts.contains_key(&c)
        {
            out.push(format!("-{c}"));
        }
    }
    out
}

/// Words as a shell splits them (quotes grouped and removed, backslashes honoured); an
/// unclosed quote ends at the end.
fn shell_words(text: &str) -> Vec<String> {
    let (mut words, mut cur, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') if quote != Some('\'') => {
                cur.extend(chars.next());
                in_word = true;
            }
            _ => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[cfg(test)]
fn test_cli() -> Cli {
    use super::cli_defs::Options;
    let opts = |longs: &[(&str, bool)], shorts: &[(char, bool)]| Options {
        longs: longs.iter().map(|&(l, v)| (l.to_string(), v)).collect(),
        shorts: shorts.iter().copied().collect(),
        ..Options::default()
    };
    let mut run = opts(
        &[("host", true), ("json", false)],
        &[('w', true), ('b', false), ('v', false)],
    );
    run.trailing = true;
    let mut ssh = opts(&[("mux", true)], &[('p', true), ('t', false), ('v', false)]);
    ssh.ssh = true;
    let hosts = opts(&[("fold", false)], &[('x', true)]);
    let subs = [("run", run), ("ssh", ssh), ("hosts", hosts)].map(|(n, o)| (n.to_string(), o));
    let top = opts(&[("help", false)], &[]);
    let any = opts(
        &[
            ("host", true),
            ("json", false),
            ("mux", true),
            ("fold", false),
        ],
        &[('w', true), ('x', true)],
    );
    Cli {
        subs: subs.into_iter().collect(),
        top,
        any,
    }
}

#[test]
fn command_lines_are_read_as_a_shell_and_clap_would() {
    let cli = test_cli();
    let bad = |line: &str| -> Vec<String> {
        check_lines(&cli, line, true, true)
            .1
            .into_iter()
            .map(|(flag, _)| flag)
            .collect()
    };
    // Values, clusters, `--`, the command after the first positional, pipes, comments.
    assert_eq!(
        bad("conn run -w h -bv --json -- tar -x -Z"),
        Vec::<String>::new()
    );
    assert_eq!(bad("conn run -w h uname -r"), Vec::<String>::new());
    assert_eq!(bad("tar -c . | conn run -w h -Q -- x | tar -Z"), ["-Q"]);
    assert_eq!(bad("conn run -w '-Q x' --host=h --nope"), ["--nope"]);
    // A synopsis: brackets, alternatives, placeholders.
    assert_eq!(
        bad("conn run [OPTIONS] (-w EXPR … | --json) [-b | --gather] [--] CMD"),
        ["--gather"]
    );
    // ssh's rules: options, the destination, options again, the remote command.
    assert_eq!(
        bad("conn ssh -p22 --mux native host -t ls -l -Z"),
        Vec::<String>::new()
    );
    assert_eq!(bad("conn ssh -Z host"), ["-Z"]);
    // Options after positionals where clap takes them; inside quotes as the shell ends them.
    assert_eq!(bad("conn hosts 'h[1-3]' -x h2 --fold -Z"), ["-Z"]);
    assert_eq!(
        bad("GIT_SSH_COMMAND=\"conn ssh\" git -Z"),
        Vec::<String>::new()
    );
    // Words that are not a subcommand, in a shell line and in prose.
    assert_eq!(bad("conn lease --prune"), ["conn lease"]);
    assert!(
        check_lines(&cli, "conn reads its stdin", true, false)
            .1
            .is_empty()
    );
    assert_eq!(
        check_lines(&cli, "conn: error: …, conn-ssh, xconn run", true, true).0,
        0
    );
    // A help text's example ends where its description starts.
    assert!(
        check_lines(
            &cli,
            "  conn run -w h -- x     when `ssh -S` fails",
            false,
            false
        )
        .1
        .is_empty()
    );
    assert_eq!(
        check_bare(&cli, "-w EXPR, --fold, -Q, --svg PATH", "x --svg y"),
        ["-Q"]
    );
}
