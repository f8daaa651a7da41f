//! Fleet behaviour of the `conn` binary against the private sshd on 127.0.0.1: each host's
//! lines streamed as they arrive (whole, prefixed, in the host's order), the last line flushed,
//! long lines cut, bounded memory while a host prints 1 GiB, `--stdin-all` checked by a digest
//! per host, `conn copy` (content, modes, a killed copy, usage errors), and scale (1,000 hosts
//! in a dry run, 200 real masters).
//!
//! Nothing here waits on luck. Remote commands that must wait for the test poll for a gate file
//! the test creates, with a limit; every `conn` is killed by a watchdog when its time is up, so
//! a hang fails the test instead of hanging it. Run as root, logins go to the `conntest`
//! account that `scripts/setup.sh` creates, hence the world-writable shared directories.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use conn_testkit::{procfs, run_with_timeout, wait_until};
use rustix::process::Signal;
use sha2::{Digest, Sha256};
use support::*;

/// Runs `conn <args>` within `timeout` and returns its output.
fn run_conn_for<I, S>(args: I, timeout: Duration) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_timeout(conn().args(args), timeout).expect("conn finishes in time")
}

// ---------------------------------------------------------------------------------------------
// 1. Streaming, in each host's order
// ---------------------------------------------------------------------------------------------

/// Three hosts each print a line to stdout and one to stderr per step, but only once the test
/// has opened that host's gate for that step, and the test opens the next gate only after it
/// has read the previous host's lines from conn's pipes. So every line must reach conn's
/// output while its host (and the others) still run, and the output interleaves the hosts in
/// exactly the order of the gates.
#[test]
fn lines_reach_conn_s_output_while_the_hosts_still_run() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let gates = shared_dir("gates");
    let hosts = names("fleet", 3, 2);
    let config = fleet_config(&server, dir.path(), &hosts);
    let g = gates.path().display();
    let script = format!(
        "{}for i in 1 2 3; do gate {g}/go-$i-$CONN_ALIAS; echo \"step $i\"; echo \"note $i\" >&2; done",
        gate_fn()
    );
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &[
            "-w",
            "fleet[01-03]",
            "--parallel",
            "3",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let mut conn = Running::spawn(&argv, Duration::from_secs(300), |_| {});
    let rx = conn.lines();
    for step in 1..=3 {
        for host in &hosts {
            File::create(gates.path().join(format!("go-{step}-{host}"))).unwrap();
            let want = BTreeMap::from([
                (Stream::Out, format!("{host}: step {step}\n")),
                (Stream::Err, format!("{host}: note {step}\n")),
            ]);
            let mut got = BTreeMap::new();
            while got.len() < 2 {
                let (stream, line) = next_line(&rx, &format!("{host}'s step {step}"));
                assert!(
                    got.insert(stream, line.clone()).is_none(),
                    "a second {stream:?} line before the next gate opened: {line:?} (had {got:?})"
                );
            }
            assert_eq!(
                got, want,
                "the lines of the gate just opened, whole and prefixed"
            );
            if (step, host.as_str()) != (3, "fleet03") {
                assert!(
                    conn.is_running(),
                    "conn ended while hosts still waited at their gates"
                );
            }
        }
    }
    let end = conn.wait(WAIT);
    assert_eq!(end.code, Some(0), "{end:?}");
    // Nothing more: no summary (every host succeeded), no unprefixed output.
    let rest: Vec<_> = rx.iter().map(|(s, l)| (s, text(&l))).collect();
    assert!(
        rest.is_empty(),
        "unexpected output after the last line: {rest:?}"
    );
}

/// The same with one host: its output is passed through unprefixed, and still as it comes.
#[test]
fn one_host_is_passed_through_as_it_comes() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let gates = shared_dir("gates");
    let config = fleet_config(&server, dir.path(), &names("fleet", 1, 2));
    let script = format!(
        "{}echo first; gate {}/go; printf second",
        gate_fn(),
        gates.path().display()
    );
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &["-w", "fleet01", "--", "sh", "-c", &script],
    );
    let mut conn = Running::spawn(&argv, Duration::from_secs(120), |_| {});
    let rx = conn.lines();
    assert_eq!(
        next_line(&rx, "the first line"),
        (Stream::Out, "first\n".into())
    );
    assert!(conn.is_running(), "the host still waits at its gate");
    File::create(gates.path().join("go")).unwrap();
    // Byte for byte: no prefix, and no newline added to the last line.
    assert_eq!(
        next_line(&rx, "the second line"),
        (Stream::Out, "second".into())
    );
    assert_eq!(conn.wait(WAIT).code, Some(0));
    assert!(rx.iter().next().is_none(), "nothing else");
}

/// Three hosts running at once, each writing 3,000 numbered lines of 0 to 2,499 bytes to
/// stdout (and shorter ones to stderr), with pauses, through awk's block buffering (so lines
/// reach conn split across reads): every line comes out whole, prefixed with its own host,
/// and each host's lines in their order.
#[test]
fn concurrent_hosts_lines_stay_whole_and_in_each_host_s_order() {
    const LINES: usize = 3000;
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let hosts = names("fleet", 3, 2);
    let config = fleet_config(&server, dir.path(), &hosts);
    let script = format!(
        "awk -v h=\"$CONN_ALIAS\" 'BEGIN {{ pad = \"x\"; while (length(pad) < 2500) pad = pad pad; \
         for (i = 1; i <= {LINES}; i++) {{ n = (i * 7919) % 2500; \
         printf \"%s %05d %s\\n\", h, i, substr(pad, 1, n); \
         printf \"%s %05d %s\\n\", h, i, substr(pad, 1, n % 100) > \"/dev/stderr\"; \
         if (i % 500 == 0) system(\"sleep 0.05\") }} }}'"
    );
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &["-w", "fleet[01-03]", "--", "sh", "-c", &script],
    );
    let out = run_conn(&argv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for (stream, bytes, width) in [("stdout", &out.stdout, 2500), ("stderr", &out.stderr, 100)] {
        let all = text(bytes);
        assert!(all.ends_with('\n'), "{stream} ends with a whole line");
        let mut next: BTreeMap<&str, usize> = BTreeMap::new();
        for line in all.lines() {
            let (host, rest) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("{stream}: unprefixed line {line:.80?}"));
            let mut parts = rest.splitn(3, ' ');
            let (inner, number, pad) = (
                parts.next().unwrap(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            assert_eq!(
                host, inner,
                "{stream}: a line under another host's prefix: {line:.80?}"
            );
            let i = next.entry(host).or_insert(0);
            *i += 1;
            assert_eq!(
                number,
                format!("{i:05}"),
                "{stream}: {host}'s lines out of order"
            );
            let n = (*i * 7919) % 2500 % width;
            assert!(
                pad.len() == n && pad.bytes().all(|b| b == b'x'),
                "{stream}: {host}'s line {i} is not whole: {line:.80?}…"
            );
        }
        let counts: Vec<_> = next.into_iter().collect();
        let want: Vec<_> = hosts.iter().map(|h| (h.as_str(), LINES)).collect();
        assert_eq!(counts, want, "{stream}: every line of every host");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Last lines, stderr, long lines
// ---------------------------------------------------------------------------------------------

/// A last line without newline gets one; stderr lines go to stderr, prefixed; a line of
/// 150,000 bytes comes out as pieces of 64 KiB, each a prefixed line; bytes that are not UTF-8
/// pass unchanged. One host gets the same output byte for byte, unprefixed.
#[test]
fn last_lines_are_flushed_stderr_is_prefixed_and_long_lines_are_cut() {
    const LONG: usize = 150_000;
    const PIECE: usize = 64 * 1024;
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let hosts = names("fleet", 2, 2);
    let config = fleet_config(&server, dir.path(), &hosts);
    let script = format!(
        "printf 'out one\\n'; head -c {LONG} /dev/zero | tr '\\0' y; \
         printf '\\nbytes \\377\\376\\nout last without newline'; \
         printf 'err one\\nerr last without newline' >&2"
    );
    let run = |w: &str| {
        run_conn(fleet_args(
            "run",
            &config,
            dir.path(),
            &["-w", w, "--", "sh", "-c", &script],
        ))
    };

    let out = run("fleet[01-02]");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let split = |bytes: &[u8]| -> BTreeMap<String, Vec<Vec<u8>>> {
        assert!(bytes.ends_with(b"\n"), "ends with a whole line");
        let mut by_host: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for line in bytes[..bytes.len() - 1].split(|&b| b == b'\n') {
            let colon = line.windows(2).position(|w| w == b": ").expect("prefixed");
            by_host
                .entry(text(&line[..colon]))
                .or_default()
                .push(line[colon + 2..].to_vec());
        }
        by_host
    };
    let want_out: Vec<Vec<u8>> = vec![
        b"out one".to_vec(),
        vec![b'y'; PIECE],
        vec![b'y'; PIECE],
        vec![b'y'; LONG - 2 * PIECE],
        b"bytes \xff\xfe".to_vec(),
        b"out last without newline".to_vec(),
    ];
    let want_err: Vec<Vec<u8>> = vec![b"err one".to_vec(), b"err last without newline".to_vec()];
    let (stdout, stderr) = (split(&out.stdout), split(&out.stderr));
    for host in &hosts {
        assert!(stdout[host] == want_out, "{host}'s stdout lines");
        assert_eq!(stderr[host], want_err, "{host}'s stderr lines");
    }
    assert_eq!(stdout.len(), 2);
    assert_eq!(stderr.len(), 2, "{}", text(&out.stderr));

    let out = run("fleet01");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut raw = b"out one\n".to_vec();
    raw.extend(vec![b'y'; LONG]);
    raw.extend(b"\nbytes \xff\xfe\nout last without newline");
    assert!(out.stdout == raw, "one host's stdout byte for byte");
    assert_eq!(text(&out.stderr), "err one\nerr last without newline");
}

// ---------------------------------------------------------------------------------------------
// 3. Bounded memory
// ---------------------------------------------------------------------------------------------

/// One of two hosts prints 1,073,741,800 bytes (just under 1 GiB) as 10,737,418 lines of 100
/// `x`, the last without newline; the test drains conn's stdout through a pipe, checks every
/// byte (the output is periodic: every line is `fleet01: ` and 100 `x`), and conn's peak
/// resident set, sampled from `VmHWM` while it runs and read from `wait4` at its end, stays
/// under 64 MiB.
#[test]
fn a_host_printing_1_gib_does_not_grow_conn_s_memory() {
    const LINES: u64 = 10_737_418;
    const LIMIT_KIB: u64 = 64 * 1024;
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let script = format!(
        "case $CONN_ALIAS in \
         fleet01) head -c {} /dev/zero | tr '\\0' x | fold -w 100 ;; \
         *) echo small >&2 ;; esac",
        LINES * 100
    );
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &["-w", "fleet[01-02]", "--", "sh", "-c", &script],
    );
    let start = Instant::now();
    let mut conn = Running::spawn(&argv, Duration::from_secs(900), |_| {});
    let sampler = conn.sample_peak_rss();
    let stderr = conn.collect_stderr();
    let mut stdout = conn.stdout.take().unwrap();
    let line = format!("fleet01: {}\n", "x".repeat(100)).into_bytes();
    let mut buf = vec![0u8; 256 * 1024];
    let pattern = line.repeat(buf.len() / line.len() + 2);
    let mut total: u64 = 0;
    loop {
        let n = stdout.read(&mut buf).expect("read conn's stdout");
        if n == 0 {
            break;
        }
        let at = (total % line.len() as u64) as usize;
        if buf[..n] != pattern[at..at + n] {
            let bad = (0..n).find(|&i| buf[i] != pattern[at + i]).unwrap();
            let from = bad.saturating_sub(40);
            panic!(
                "stdout byte {} is wrong: …{:?}…",
                total + bad as u64,
                text(&buf[from..(bad + 40).min(n)])
            );
        }
        total += n as u64;
    }
    let end = conn.wait(WAIT);
    let sampled = sampler.join().unwrap();
    let stderr = text(&stderr.join().unwrap());
    eprintln!(
        "1 GiB through conn in {:.1?}: peak RSS {} KiB sampled (VmHWM), {} KiB from wait4",
        start.elapsed(),
        sampled,
        end.max_rss_kib
    );
    assert_eq!(end.code, Some(0), "{end:?}: {stderr}");
    assert_eq!(
        total,
        LINES * line.len() as u64,
        "every line, the last one with its newline"
    );
    assert_eq!(stderr, "fleet02: small\n");
    assert!(sampled > 0, "VmHWM was sampled at least once");
    let peak = sampled.max(end.max_rss_kib);
    assert!(
        peak < LIMIT_KIB,
        "conn's peak RSS {peak} KiB ≥ {LIMIT_KIB} KiB"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. --stdin-all
// ---------------------------------------------------------------------------------------------

/// Runs conn with `input` on its stdin (written by a thread, so that a conn that does not read
/// it cannot block the test), and collects its output.
fn run_with_input(argv: &[OsString], input: Arc<Vec<u8>>) -> (Ended, Vec<u8>, String) {
    let mut conn = Running::spawn(argv, Duration::from_secs(300), |cmd| {
        cmd.stdin(Stdio::piped());
    });
    let mut stdin = conn.stdin.take().unwrap();
    let writer = thread::spawn(move || stdin.write_all(&input));
    let stderr = conn.collect_stderr();
    let mut stdout = Vec::new();
    conn.stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let end = conn.wait(WAIT);
    writer.join().unwrap().expect("conn read all of its stdin");
    (end, stdout, text(&stderr.join().unwrap()))
}

/// 20 MiB of pseudo-random bytes on conn's stdin reach each of three hosts whole: each host's
/// `sha256sum` is the digest computed here, and a fourth kind of reader (`head -c 10`, which
/// stops early) sees the first bytes, so every host reads from the start at its own pace.
#[test]
fn stdin_all_gives_every_host_the_whole_input() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let hosts = names("fleet", 4, 2);
    let config = fleet_config(&server, dir.path(), &hosts);
    let input = Arc::new(pseudo_random(20 << 20, 0x9e37_79b9_7f4a_7c15));
    let digest = hex(&Sha256::digest(input.as_slice()));
    let script = "case $CONN_ALIAS in fleet04) head -c 10 | od -An -tx1 | tr -d ' \\n'; echo ;; \
                  *) sha256sum ;; esac";

    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &[
            "--stdin-all",
            "-w",
            "fleet[01-04]",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    let (end, stdout, stderr) = run_with_input(&argv, Arc::clone(&input));
    assert_eq!(end.code, Some(0), "{end:?}: {stderr}");
    let mut lines: Vec<String> = text(&stdout).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("fleet01: {digest}  -"),
            format!("fleet02: {digest}  -"),
            format!("fleet03: {digest}  -"),
            format!("fleet04: {}", hex(&input[..10])),
        ]
    );
    assert!(stderr.is_empty(), "{stderr}");

    // Gathered: the three identical hosts are one group.
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &["--stdin-all", "-b", "-w", "fleet[01-03]", "--", "sha256sum"],
    );
    let (end, stdout, stderr) = run_with_input(&argv, Arc::clone(&input));
    assert_eq!(end.code, Some(0), "{end:?}: {stderr}");
    assert_eq!(
        text(&stdout),
        format!("---------------\nfleet[01-03] (3)\n---------------\n{digest}  -\n")
    );

    // One host: passed through.
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &["--stdin-all", "-w", "fleet02", "--", "sha256sum"],
    );
    let (end, stdout, stderr) = run_with_input(&argv, input);
    assert_eq!(end.code, Some(0), "{end:?}: {stderr}");
    assert_eq!(text(&stdout), format!("{digest}  -\n"));
}

/// `--stdin-all` from a terminal is a usage error (exit 2) before anything runs.
#[test]
fn stdin_all_from_a_terminal_is_a_usage_error() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let (_controller, terminal) = pty();
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &["--stdin-all", "-w", "fleet[01-02]", "--", "cat"],
    );
    let out = run_with_timeout(conn().args(&argv).stdin(terminal), CONN_TIMEOUT).unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("conn: error: ") && stderr.contains("terminal"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(server.accepted_logins(), 0, "no host was contacted");
}

// ---------------------------------------------------------------------------------------------
// 5. conn copy
// ---------------------------------------------------------------------------------------------

fn write_mode(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// What the remote side says of each path: `MODE dir`, or `MODE SIZE SHA256` for a file.
fn remote_stat(config: &Path, sockets: &Path, host: &str, paths: &[PathBuf]) -> Vec<String> {
    let script = "for f; do if [ -d \"$f\" ]; then echo \"$(stat -c %a \"$f\") dir\"; \
                  else echo \"$(stat -c '%a %s' \"$f\") $(sha256sum < \"$f\" | cut -d' ' -f1)\"; fi; done";
    let mut argv = fleet_args(
        "run",
        config,
        sockets,
        &["-w", host, "--", "sh", "-c", script, "sh"],
    );
    argv.extend(paths.iter().map(OsString::from));
    let out = run_conn(&argv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// What the remote side should say of a local path (see [`remote_stat`]).
fn local_stat(path: &Path) -> String {
    let meta = fs::metadata(path).unwrap();
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() {
        format!("{mode:o} dir")
    } else {
        let digest = hex(&Sha256::digest(fs::read(path).unwrap()));
        format!("{mode:o} {} {digest}", meta.len())
    }
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A file (mode 0640) and, with `-r`, a tree (0750 / 0755 / 0700 / 0600 / 0644, an empty file)
/// reach two hosts (two aliases of the one daemon, so both write the same paths at once, each
/// through its own temporary name): contents and modes as seen remotely match the sources,
/// and no temporary file is left.
#[test]
fn copy_sends_files_and_trees_with_their_modes() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let src = tempfile::tempdir().unwrap();
    let dest = shared_dir("copydest");

    let data = src.path().join("data.bin");
    write_mode(&data, &pseudo_random((1 << 20) + 13, 7), 0o640);
    let one = dest.path().join("one/data.copy");
    let mut argv = fleet_args("copy", &config, dir.path(), &["-w", "fleet[01-02]"]);
    argv.extend([data.clone().into(), one.clone().into()]);
    let out = run_conn(&argv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    let size = (1 << 20) + 13;
    assert_eq!(
        lines,
        [
            format!("fleet01: copied 1 file(s), {size} bytes"),
            format!("fleet02: copied 1 file(s), {size} bytes"),
        ]
    );
    for host in ["fleet01", "fleet02"] {
        assert_eq!(
            remote_stat(&config, dir.path(), host, std::slice::from_ref(&one)),
            [local_stat(&data)]
        );
    }

    let t = src.path().join("tree");
    fs::create_dir_all(t.join("sub")).unwrap();
    write_mode(&t.join("run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write_mode(&t.join("sub/notes.txt"), &pseudo_random(70_000, 3), 0o644);
    write_mode(&t.join("sub/empty"), b"", 0o600);
    fs::set_permissions(t.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&t, fs::Permissions::from_mode(0o750)).unwrap();
    let two = dest.path().join("two");
    let mut argv = fleet_args("copy", &config, dir.path(), &["-r", "-w", "fleet[01-02]"]);
    argv.extend([t.clone().into(), two.clone().into()]);
    let out = run_conn(&argv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| l.ends_with(": copied 3 file(s), 70018 bytes"))
            .count(),
        2,
        "{}",
        text(&out.stdout)
    );
    let rel = ["", "run.sh", "sub", "sub/empty", "sub/notes.txt"];
    let remote: Vec<PathBuf> = rel.iter().map(|r| two.join("tree").join(r)).collect();
    let want: Vec<String> = rel.iter().map(|r| local_stat(&t.join(r))).collect();
    assert_eq!(want[0], "750 dir");
    assert!(
        want[1].starts_with("755 ") && want[3].starts_with("600 0 "),
        "{want:?}"
    );
    for host in ["fleet01", "fleet02"] {
        assert_eq!(
            remote_stat(&config, dir.path(), host, &remote),
            want,
            "{host}"
        );
    }
    // Only the final names: no temporary file left over.
    assert_eq!(
        tree(dest.path()),
        [
            "one",
            "one/data.copy",
            "two",
            "two/tree",
            "two/tree/run.sh",
            "two/tree/sub",
            "two/tree/sub/empty",
            "two/tree/sub/notes.txt",
        ]
    );
}

/// How a copy killed midway ended on the remote side.
struct KilledCopy {
    /// Bytes the remote temporary file held when the master was stopped.
    sent: u64,
    /// The final name's size, if it exists.
    final_size: Option<u64>,
    /// What is left in the destination directory.
    left: Vec<String>,
}

/// Kills conn (SIGKILL) while it copies a file of `size` bytes to one host with `--mux mux`.
/// To be sure the kill lands mid-copy, every ssh process of the socket directory (the master,
/// and with `--mux process` the `ssh -S` client) is stopped (SIGSTOP) as soon as the remote
/// temporary file exists, conn is killed, and they are continued; the test then waits until
/// the remote receiving shell has ended, after which nothing can rename anything.
fn kill_a_copy(mux: &str, size: u64) -> KilledCopy {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let sockets = dir.path().display().to_string();
    let config = fleet_config(&server, dir.path(), &names("fleet", 1, 2));
    // Warm the master first, so that its pid is known before the copy starts.
    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &["--mux", mux, "-w", "fleet01", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let masters = procfs::find("ssh", &sockets);
    assert_eq!(masters.len(), 1, "one master for the socket directory");

    let src = tempfile::tempdir().unwrap();
    let big = src.path().join("big.bin");
    File::create(&big).unwrap().set_len(size).unwrap();
    let dest = shared_dir("killed");
    let last = dest.path().join("big.bin");
    let mut argv = fleet_args(
        "copy",
        &config,
        dir.path(),
        &["--mux", mux, "-w", "fleet01"],
    );
    argv.extend([big.into(), last.clone().into()]);
    let conn = Running::spawn(&argv, Duration::from_secs(300), |_| {});
    let temp_of = || -> Option<PathBuf> {
        fs::read_dir(dest.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".big.bin.conn.")
            })
    };
    let mut temp = None;
    assert!(
        wait_until(WAIT, || {
            temp = temp_of();
            temp.is_some()
        }),
        "the remote temporary file never appeared"
    );
    let mut stopped = masters.clone();
    stopped.extend(
        procfs::find("ssh", &sockets)
            .into_iter()
            .filter(|p| !masters.contains(p)),
    );
    for &pid in &stopped {
        // The test's own ssh processes (found by their socket directory).
        send(pid as libc::pid_t, Signal::STOP).expect("stop an ssh process");
    }
    let temp = temp.unwrap();
    let sent = fs::metadata(&temp).map(|m| m.len()).unwrap_or(0);
    assert!(
        sent < size / 2 && !last.exists(),
        "the copy got too far ({sent} bytes) before its ssh processes stopped: cannot test the kill"
    );
    conn.signal(Signal::KILL);
    let end = conn.wait(WAIT);
    assert_eq!(end.signal, Some(libc::SIGKILL), "{end:?}");
    for &pid in &stopped {
        send(pid as libc::pid_t, Signal::CONT).expect("continue an ssh process");
    }
    let marker = last.display().to_string();
    assert!(
        wait_until(Duration::from_secs(120), || procfs::find("sh", &marker)
            .is_empty()),
        "the remote receiving shell did not end after conn was killed"
    );
    KilledCopy {
        sent,
        final_size: fs::metadata(&last).ok().map(|m| m.len()),
        left: tree(dest.path()),
    }
}

/// With the native mux (the default) a copy killed midway leaves nothing under the final name:
/// the master sees conn's mux connection close and ends the session's input, the remote side
/// gets fewer bytes than announced and renames nothing. A temporary name may remain (allowed).
#[test]
fn a_killed_copy_leaves_nothing_under_the_final_name() {
    const SIZE: u64 = 200 << 20;
    let killed = kill_a_copy("native", SIZE);
    eprintln!(
        "native: killed after {} bytes had arrived; left: {:?}",
        killed.sent, killed.left
    );
    assert_eq!(killed.final_size, None, "a killed copy left the final name");
    for name in &killed.left {
        assert!(name.starts_with(".big.bin.conn."), "unexpected {name}");
    }
}

/// With `--mux process` the `ssh -S` client is a process of its own, which outlives a SIGKILL
/// of conn and finishes the transfer. The guarantee that holds is the weaker one: never a
/// partial file under the final name (it is absent, or whole).
#[test]
fn a_killed_copy_over_the_process_mux_never_leaves_a_partial_file() {
    const SIZE: u64 = 200 << 20;
    let killed = kill_a_copy("process", SIZE);
    eprintln!(
        "process: killed after {} bytes had arrived; final name: {:?}; left: {:?}",
        killed.sent, killed.final_size, killed.left
    );
    assert!(
        matches!(killed.final_size, None | Some(SIZE)),
        "a partial file under the final name: {:?} of {SIZE} bytes",
        killed.final_size
    );
    for name in &killed.left {
        assert!(
            name == "big.bin" || name.starts_with(".big.bin.conn."),
            "unexpected {name}"
        );
    }
}

/// A missing source, or a directory without `-r`: exit 2 with one line, before any host is
/// contacted.
#[test]
fn copy_usage_errors_exit_2_before_anything_runs() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let src = tempfile::tempdir().unwrap();
    let present = src.path().join("present");
    fs::write(&present, b"x").unwrap();
    let dest = shared_dir("copyerr");
    let target = dest.path().join("target");
    let cases: [(Vec<PathBuf>, &str); 2] = [
        (
            vec![present.clone(), src.path().join("missing")],
            "missing: No such file or directory",
        ),
        (vec![src.path().to_path_buf()], "is a directory: give -r"),
    ];
    for (sources, needle) in cases {
        let mut argv = fleet_args("copy", &config, dir.path(), &["-w", "fleet[01-02]"]);
        argv.extend(sources.into_iter().map(OsString::from));
        argv.push(target.clone().into());
        let out = run_conn(&argv);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("conn: error: ") && stderr.contains(needle),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
    assert_eq!(server.accepted_logins(), 0, "no host was contacted");
    assert!(tree(dest.path()).is_empty(), "nothing was created");
}

// ---------------------------------------------------------------------------------------------
// 6. Scale
// ---------------------------------------------------------------------------------------------

/// `conn hosts 'h[0001-1000]'` prints 1,000 names; `conn run --dry-run` over them reports each
/// one (a "Would execute" line on stderr) and runs nothing.
#[test]
fn a_thousand_hosts_expand_and_each_is_dry_run() {
    let all = names("h", 1000, 4);
    let out = run_conn(["hosts", "h[0001-1000]"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), all);

    let dir = conn_testkit::socket_dir();
    // Every h* is a loopback port where nothing listens: a real run could not reach any.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config");
    write_mode(
        &config,
        format!("Host h*\n  HostName 127.0.0.1\n  Port {port}\n  BatchMode yes\n").as_bytes(),
        0o644,
    );
    let sockets = dir.path().join("s");
    fs::create_dir(&sockets).unwrap();
    fs::set_permissions(&sockets, fs::Permissions::from_mode(0o700)).unwrap();
    let out = run_conn(fleet_args(
        "run",
        &config,
        &sockets,
        &["--dry-run", "-w", "h[0001-1000]", "--", "true"],
    ));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr:.2000}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let reported: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split_once("Would execute: "))
        .map(|(_, rest)| rest.split(':').next().unwrap())
        .collect();
    assert_eq!(reported.len(), 1000, "{stderr:.2000}");
    let reported: BTreeSet<&str> = reported.into_iter().collect();
    assert_eq!(
        reported,
        all.iter().map(String::as_str).collect(),
        "each host once"
    );
}

/// 200 aliases of the private sshd, one real master each: every host answers once, exit 0.
#[test]
fn two_hundred_real_masters_each_answer_once() {
    let server = start_fleet_sshd(&["MaxStartups 256:30:512"]);
    let dir = conn_testkit::socket_dir();
    let hosts = names("alias", 200, 3);
    let config = fleet_config(&server, dir.path(), &hosts);
    let start = Instant::now();
    let out = run_conn_for(
        fleet_args(
            "run",
            &config,
            dir.path(),
            &[
                "-w",
                "alias[001-200]",
                "--parallel",
                "64",
                "--",
                "sh",
                "-c",
                "echo ok $CONN_ALIAS",
            ],
        ),
        Duration::from_secs(300),
    );
    eprintln!(
        "200 hosts, cold masters, --parallel 64: {:.1?}",
        start.elapsed()
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr:.4000}");
    assert!(stderr.is_empty(), "{stderr:.4000}");
    let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    let want: Vec<String> = hosts.iter().map(|h| format!("{h}: ok {h}")).collect();
    assert_eq!(lines, want);
    assert_eq!(server.accepted_logins(), 200, "one master per alias");
}
