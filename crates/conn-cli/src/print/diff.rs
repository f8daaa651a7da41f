//! `--diff` (clush's): the first output in clush's order (of the hosts with the lowest exit
//! status, the largest group) is the reference; every other distinct output is printed as a
//! unified diff against it, headed `--- REFERENCE_HOSTS (N)` and `+++ HOSTS`, as clush prints
//! it. Outputs are compared as lines, without their newlines (so a last line without one is
//! the same line), as clush compares them.

use std::io::{self, Write};

use conn_fleet::RunReport;

use super::Palette;

/// Lines of context around each change, as `diff -u`.
const CONTEXT: usize = 3;

/// Outputs longer than this (in lines, both sides together) are said to differ, not diffed.
const MAX_LINES: usize = 200_000;

/// Writes the diffs of `report`'s gathered stdout (groups of identical stdout and end, see
/// [`RunReport::groups_by_stdout`]) to `out`.
pub fn write_diff(out: &mut dyn Write, report: &RunReport, palette: Palette) -> io::Result<()> {
    let mut groups = report.groups_by_stdout();
    if groups.is_empty() {
        return Ok(());
    }
    // clush's reference: the first group it prints (successes first, then larger groups).
    let reference = groups.remove(0);
    let text = |group: &conn_fleet::Group| -> io::Result<Vec<u8>> {
        match &report.hosts[group.members[0]].gathered {
            Some(g) => g.stdout.to_vec(),
            None => Ok(Vec::new()),
        }
    };
    let base = text(&reference)?;
    let base_lines = split_lines(&base);
    let name = |group: &conn_fleet::Group| match group.members.len() {
        1 => group.folded.clone(),
        n => format!("{} ({n})", group.folded),
    };
    for group in &groups {
        let other = text(group)?;
        let other_lines = split_lines(&other);
        if base_lines == other_lines {
            continue; // the same output, another status: nothing to show
        }
        writeln!(
            out,
            "{}",
            palette.header(&format!("--- {}", name(&reference)))
        )?;
        writeln!(out, "{}", palette.header(&format!("+++ {}", name(group))))?;
        if base_lines.len() + other_lines.len() > MAX_LINES {
            writeln!(out, "(outputs differ; too long to compare line by line)")?;
            continue;
        }
        for line in unified(&base_lines, &other_lines) {
            out.write_all(&line)?;
        }
    }
    out.flush()
}

/// `text`'s lines, without their newlines (`a\nb` and `a\nb\n` alike; `\n` is one empty line).
fn split_lines(text: &[u8]) -> Vec<&[u8]> {
    if text.is_empty() {
        return Vec::new();
    }
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.split(|&b| b == b'\n').collect()
}

/// One step of an edit script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Delete(usize),
    Insert(usize),
}

/// The shortest edit script from `a` to `b` (Myers' greedy algorithm, with its trace kept for
/// the way back).
fn edits(a: &[&[u8]], b: &[&[u8]]) -> Vec<Op> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = (n + m) as usize;
    let offset = max as isize;
    let mut v = vec![0isize; 2 * max + 2];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    'outer: for d in 0..=max as isize {
        trace.push(v.clone());
        let mut k = -d;
        while k <= d {
            let i = (k + offset) as usize;
            let mut x = if k == -d || (k != d && v[i - 1] < v[i + 1]) {
                v[i + 1]
            } else {
                v[i - 1] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[i] = x;
            if x >= n && y >= m {
                break 'outer;
            }
            k += 2;
        }
    }
    // Back from the end along the trace.
    let mut ops = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, v) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let k = x - y;
        let prev_k =
            if k == -d || (k != d && v[(k - 1 + offset) as usize] < v[(k + 1 + offset) as usize]) {
                k + 1
            } else {
                k - 1
            };
        let prev_x = v[(prev_k + offset) as usize];
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            ops.push(Op::Same(x as usize, y as usize));
        }
        if d > 0 {
            if x == prev_x {
                ops.push(Op::Insert(prev_y as usize));
            } else {
                ops.push(Op::Delete(prev_x as usize));
            }
        }
        x = prev_x;
        y = prev_y;
    }
    ops.reverse();
    ops
}

/// The hunks of a unified diff from `a` to `b`: `@@ -l,s +l,s @@` lines and ` `, `-`, `+`
/// lines, each ending with a newline.
fn unified(a: &[&[u8]], b: &[&[u8]]) -> Vec<Vec<u8>> {
    let ops = edits(a, b);
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < changed.len() {
        // A hunk: changes with at most 2 × CONTEXT unchanged lines between them share it (as
        // diff -u and Python's difflib join them).
        let start = changed[i].saturating_sub(CONTEXT);
        let mut last = changed[i];
        while i + 1 < changed.len() && changed[i + 1] - last - 1 <= 2 * CONTEXT {
            i += 1;
            last = changed[i];
        }
        let end = (last + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let (a_start, b_start) = position(&ops[..start], hunk);
        let a_len = hunk.iter().filter(|o| !matches!(o, Op::Insert(_))).count();
        let b_len = hunk.iter().filter(|o| !matches!(o, Op::Delete(_))).count();
        out.push(
            format!(
                "@@ -{} +{} @@\n",
                range(a_start, a_len),
                range(b_start, b_len)
            )
            .into_bytes(),
        );
        for op in hunk {
            let (mark, line) = match *op {
                Op::Same(x, _) => (b' ', a[x]),
                Op::Delete(x) => (b'-', a[x]),
                Op::Insert(y) => (b'+', b[y]),
            };
            let mut l = vec![mark];
            l.extend_from_slice(line);
            l.push(b'\n');
            out.push(l);
        }
        i += 1;
    }
    out
}

/// The 1-based line numbers where a hunk starts in `a` and `b`, given the ops before it.
fn position(before: &[Op], hunk: &[Op]) -> (usize, usize) {
    let a = before
        .iter()
        .filter(|o| !matches!(o, Op::Insert(_)))
        .count();
    let b = before
        .iter()
        .filter(|o| !matches!(o, Op::Delete(_)))
        .count();
    let a_has = hunk.iter().any(|o| !matches!(o, Op::Insert(_)));
    let b_has = hunk.iter().any(|o| !matches!(o, Op::Delete(_)));
    (a + usize::from(a_has), b + usize::from(b_has))
}

/// `start,len` as diff writes it (`start` alone for one line).
fn range(start: usize, len: usize) -> String {
    if len == 1 {
        start.to_string()
    } else {
        format!("{start},{len}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(a: &str, b: &str) -> String {
        let (a, b) = (split_lines(a.as_bytes()), split_lines(b.as_bytes()));
        String::from_utf8(unified(&a, &b).concat()).unwrap()
    }

    #[test]
    fn a_changed_line_is_a_hunk_with_context() {
        assert_eq!(
            diff("one\n1\nthree\n", "one\n0\nthree\n"),
            "@@ -1,3 +1,3 @@\n one\n-1\n+0\n three\n"
        );
        assert_eq!(diff("a\n", "a\n"), "");
        assert_eq!(
            diff("a\nb\n", "a\nb"),
            "",
            "a last newline or not: the same lines"
        );
        assert_eq!(diff("", "x\n"), "@@ -0,0 +1 @@\n+x\n");
        assert_eq!(
            diff("", "\n"),
            "@@ -0,0 +1 @@\n+\n",
            "one empty line is a line"
        );
    }

    #[test]
    fn changes_six_lines_apart_share_a_hunk_seven_do_not() {
        let a: String = (1..=30).map(|i| format!("{i}\n")).collect();
        let changed = |x: usize, y: usize| -> String {
            (1..=30)
                .map(|i| {
                    if i == x || i == y {
                        format!("{i}x\n")
                    } else {
                        format!("{i}\n")
                    }
                })
                .collect()
        };
        let six = diff(&a, &changed(5, 12));
        assert!(six.starts_with("@@ -2,14 +2,14 @@\n"), "{six}");
        assert_eq!(six.matches("@@").count(), 2, "{six}");
        let seven = diff(&a, &changed(5, 13));
        assert_eq!(seven.matches("@@").count(), 4, "{seven}");
    }

    #[test]
    fn far_apart_changes_are_separate_hunks() {
        let a: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let b: String = (1..=20)
            .map(|i| match i {
                2 => "two\n".to_string(),
                19 => "nineteen\n".to_string(),
                i => format!("{i}\n"),
            })
            .collect();
        let d = diff(&a, &b);
        assert_eq!(d.matches("@@").count(), 4, "{d}");
        assert!(d.contains("-2\n+two\n"), "{d}");
        assert!(d.contains("-19\n+nineteen\n"), "{d}");
    }

    #[test]
    fn the_script_rebuilds_the_second_text() {
        let a: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d"];
        let b: Vec<&[u8]> = vec![b"b", b"x", b"d", b"e"];
        let rebuilt: Vec<&[u8]> = edits(&a, &b)
            .into_iter()
            .filter_map(|op| match op {
                Op::Same(_, y) | Op::Insert(y) => Some(b[y]),
                Op::Delete(_) => None,
            })
            .collect();
        assert_eq!(rebuilt, b);
    }
}
