//! conn's folding and order against ClusterShell's own: `nodeset -f` on fixed cases, and its
//! `NodeSet` class (the code behind `nodeset -f` and `nodeset -e`, run by the interpreter the
//! installed `nodeset` runs with) on random sets, many per process.
//!
//! Names with one number must fold to exactly the text `nodeset -f` prints and expand in the
//! order `nodeset -e` prints; names with several numbers must fold to an expression that
//! ClusterShell reads back as the same set (the products may be chosen differently).
//!
//! ClusterShell is installed by `scripts/setup.sh`; without it these tests fail and say so.

use std::io::Write;
use std::process::{Command, Stdio};

use conn_hostset::HostSet;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The program `nodeset` on PATH.
fn nodeset_program() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("nodeset"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "ClusterShell's `nodeset` is not installed: run `bash scripts/setup.sh` (as root \
                 it installs the clustershell package), which these tests compare conn with"
            )
        })
}

/// The interpreter of `nodeset`'s `#!` line: it is the one that can import ClusterShell.
fn nodeset_python() -> String {
    let program = nodeset_program();
    let script = std::fs::read_to_string(&program).expect("read the nodeset script");
    let first = script.lines().next().unwrap_or_default();
    let interpreter = first
        .strip_prefix("#!")
        .unwrap_or_else(|| panic!("{} has no #! line", program.display()))
        .split_whitespace()
        .collect::<Vec<_>>();
    match interpreter.as_slice() {
        [env, python, ..] if env.ends_with("/env") => python.to_string(),
        [python, ..] => python.to_string(),
        [] => panic!("{}: empty #! line", program.display()),
    }
}

/// `nodeset ARGS`, its stdout without the final newline.
fn nodeset(args: &[&str]) -> String {
    let out = Command::new(nodeset_program())
        .args(args)
        .env("CLUSTERSHELL_CFGDIR", "/nonexistent")
        .output()
        .expect("run nodeset");
    assert!(
        out.status.success(),
        "nodeset {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// For each line (a host-set expression): ClusterShell's fold of the set, a tab, and its
/// names in ClusterShell's order, space-separated. One process for all lines.
fn clustershell_folds(lines: &[String]) -> Vec<(String, String)> {
    const SCRIPT: &str = "
import sys
from ClusterShell.NodeSet import NodeSet, RESOLVER_NOGROUP
for line in sys.stdin:
    s = NodeSet(line.strip(), resolver=RESOLVER_NOGROUP)
    print('%s\\t%s' % (s, ' '.join(s)))
";
    let mut child = Command::new(nodeset_python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ClusterShell's interpreter");
    let input = lines.join("\n") + "\n";
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "ClusterShell's NodeSet failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let result: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (fold, names) = l.split_once('\t').expect("fold TAB names");
            (fold.to_string(), names.to_string())
        })
        .collect();
    assert_eq!(result.len(), lines.len());
    result
}

#[test]
fn one_number_folds_as_nodeset_f_prints() {
    let cases = [
        "n7,n8,n9,n01,n02,n03,n010",
        "n[1-10],n01",
        "n[8-12],n09",
        "n9,n10,n09,n010",
        "n[1-3],n[001-003],n[01-03]",
        "n[98-101],n099",
        "n[0-2],n00",
        "h[01-99],h100",
        "db,h[1-3],web,h[01-02]",
        "b1,a2,a1,a,c",
        "x1,a-b,ab1,a1,a.b2,a_1",
    ];
    for case in cases {
        let ours = HostSet::parse(case).unwrap();
        assert_eq!(ours.fold(), nodeset(&["-f", case]), "nodeset -f {case}");
        let names: Vec<String> = ours.expand().collect();
        assert_eq!(names.join(" "), nodeset(&["-e", case]), "nodeset -e {case}");
    }
}

/// A name with one number (0 to 129, written with 0 to 3 digits of padding) and a few text
/// parts; or, now and then, a name without any number.
fn one_number_name() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => (
            prop::sample::select(vec!["n", "h", "db", "x-", "a.b", "rack_"]),
            0u64..130,
            0usize..4,
            prop::sample::select(vec!["", "-ib", "x"]),
        )
            .prop_map(|(head, v, w, tail)| format!("{head}{v:0w$}{tail}")),
        1 => prop::sample::select(vec!["db", "web", "n", "x-ib"]).prop_map(str::to_string),
    ]
}

/// A name with two numbers, mixed paddings.
fn two_number_name() -> impl Strategy<Value = String> {
    (0u64..12, 0usize..3, 0u64..12, 0usize..3, prop::bool::ANY).prop_map(|(a, wa, b, wb, dash)| {
        let sep = if dash { "-n" } else { "n" };
        format!("r{a:0wa$}{sep}{b:0wb$}")
    })
}

fn batch(name: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::collection::vec(name, 1..40).prop_map(|names| names.join(",")),
        300,
    )
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 3,
        max_shrink_iters: 100,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn random_one_number_sets_fold_and_order_as_clustershell() {
    runner()
        .run(&batch(one_number_name()), |lines| {
            let theirs = clustershell_folds(&lines);
            for (line, (fold, names)) in lines.iter().zip(theirs) {
                let ours = HostSet::parse(line).unwrap();
                prop_assert_eq!(ours.fold(), fold, "fold of {}", line);
                let ours_names: Vec<String> = ours.expand().collect();
                prop_assert_eq!(ours_names.join(" "), names, "order of {}", line);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_two_number_sets_fold_to_what_clustershell_reads_as_the_same_set() {
    runner()
        .run(&batch(two_number_name()), |lines| {
            let ours: Vec<HostSet> = lines.iter().map(|l| HostSet::parse(l).unwrap()).collect();
            // ClusterShell reads conn's fold of each set; its names must be the set's.
            let folds: Vec<String> = ours.iter().map(HostSet::fold).collect();
            let expanded = clustershell_folds(&folds);
            for ((line, set), (_, names)) in lines.iter().zip(&ours).zip(expanded) {
                let theirs = HostSet::from_names(names.split(' ')).unwrap();
                prop_assert_eq!(&theirs, set, "{} folded to {}", line, set.fold());
            }
            Ok(())
        })
        .unwrap();
}

/// An expression of one-number names and bracketed ranges joined by all four operators.
fn operator_expression() -> impl Strategy<Value = String> {
    let operand = prop_oneof![
        one_number_name(),
        // Both ends with the same width: `nodeset` refuses `n[05-9]`.
        (0u64..20, 0u64..8, 0usize..3).prop_map(|(a, n, w)| format!("n[{a:0w$}-{:0w$}]", a + n)),
    ];
    (
        operand.clone(),
        prop::collection::vec(
            (prop::sample::select(vec![",", "!", "&", "^"]), operand),
            0..6,
        ),
    )
        .prop_map(|(first, rest)| {
            let mut s = first;
            for (op, operand) in rest {
                s.push_str(op);
                s.push_str(&operand);
            }
            s
        })
}

#[test]
fn operators_compute_what_clustershell_computes() {
    runner()
        .run(
            &prop::collection::vec(operator_expression(), 300),
            |lines| {
                let theirs = clustershell_folds(&lines);
                for (line, (fold, _)) in lines.iter().zip(theirs) {
                    let ours = HostSet::parse(line).unwrap();
                    prop_assert_eq!(ours.fold(), fold, "{}", line);
                }
                Ok(())
            },
        )
        .unwrap();
}
