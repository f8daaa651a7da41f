//! `conn ssh` against the private sshd on 127.0.0.1, each case compared with plain `ssh -F
//! <config>` doing the same: the same stdout, stderr and exit status, through both mux back
//! ends. git, rsync, scp and sftp run through it as they would through ssh; tar streams into
//! it; what a pooled session cannot serve is handed to ssh itself (a pty for `-tt`).
//!
//! Run as root, logins go to the `conntest` account that `scripts/setup.sh` creates, hence the
//! world-writable directories the remote side writes into. Every process runs under a bound
//! (`run_with_timeout`), so a hang fails the test instead of stalling the run.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use conn_testkit::{TestSshd, run_with_timeout};
use sha2::{Digest, Sha256};

/// Bound for one command (a 100 MB rsync included).
const TIMEOUT: Duration = Duration::from_secs(180);
const CONN: &str = env!("CARGO_BIN_EXE_conn");
const MUXES: [&str; 2] = ["native", "process"];

/// A private sshd, a socket directory, and a directory the remote account may write to.
struct Lab {
    server: TestSshd,
    sockets: tempfile::TempDir,
    shared: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let shared = tempfile::Builder::new()
            .prefix("conn-ssh-")
            .tempdir_in("/tmp")
            .unwrap();
        fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o777)).unwrap();
        Lab {
            server: TestSshd::start_default().expect("start the private sshd"),
            sockets: conn_testkit::socket_dir(),
            shared,
        }
    }

    fn cfg(&self) -> PathBuf {
        self.server.ssh_config_path()
    }

    fn host(&self) -> &'static str {
        self.server.host_alias()
    }

    /// A directory under the shared one, writable by the remote account.
    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.shared.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        dir
    }

    /// The words after `ssh` of `conn` for this lab: socket directory, back end, config.
    fn conn_words(&self, mux: &str) -> Vec<OsString> {
        vec![
            "ssh".into(),
            "--socket-dir".into(),
            self.sockets.path().into(),
            "--mux".into(),
            mux.into(),
            "-F".into(),
            self.cfg().into(),
        ]
    }

    /// `conn ssh …` for a tool's ssh command line (GIT_SSH_COMMAND, rsync -e), quoted.
    fn conn_line(&self, mux: &str) -> String {
        let mut line = sh_quote(CONN);
        for w in self.conn_words(mux) {
            line.push(' ');
            line.push_str(&sh_quote(w.to_str().unwrap()));
        }
        line
    }

    /// `ssh -F <config>`, quoted.
    fn ssh_line(&self) -> String {
        format!("ssh -F {}", sh_quote(self.cfg().to_str().unwrap()))
    }

    /// A one-line wrapper script for `scp -S` and `sftp -S`: `exec conn ssh … "$@"`.
    fn wrapper(&self, mux: &str) -> PathBuf {
        let path = self.shared.path().join(format!("conn-ssh-{mux}"));
        let socket_dir = sh_quote(self.sockets.path().to_str().unwrap());
        let script = format!(
            "#!/bin/sh\nexec {} ssh --socket-dir {socket_dir} --mux {mux} \"$@\"\n",
            sh_quote(CONN)
        );
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Runs plain ssh with `words` (after `-F <config>`).
    fn ssh(&self, words: &[&str], stdin: Option<&Path>) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(self.cfg()).args(words);
        run(&mut cmd, stdin)
    }

    /// Runs `conn ssh` with `words` (after conn's options and `-F <config>`).
    fn conn(&self, mux: &str, words: &[&str], stdin: Option<&Path>) -> Output {
        let mut cmd = Command::new(CONN);
        cmd.args(self.conn_words(mux)).args(words);
        run(&mut cmd, stdin)
    }
}

/// Asserts that a tool's `runs` ssh invocations went through the pool: conn logged in at most
/// once per set of master options among them (none when a master of an earlier step serves
/// them), while plain ssh logs in once per invocation.
fn assert_logins(lab: &Lab, name: &str, runs: usize, option_sets: usize) {
    let logins = lab.server.accepted_logins();
    if name == "ssh" {
        assert_eq!(logins, runs, "plain ssh logs in once per run");
    } else {
        assert!(
            logins <= option_sets,
            "{name}: {logins} logins for {runs} runs: not pooled"
        );
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `cmd` (bounded) with stdin from `stdin` or /dev/null, conn's log level unset.
fn run(cmd: &mut Command, stdin: Option<&Path>) -> Output {
    cmd.env_remove("CONN_LOG").env("NO_COLOR", "1");
    cmd.stdin(match stdin {
        Some(path) => Stdio::from(File::open(path).unwrap()),
        None => Stdio::null(),
    });
    run_with_timeout(cmd, TIMEOUT).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that two runs wrote the same stdout and stderr and ended the same way.
fn assert_same(expected: &Output, got: &Output, what: &str) {
    assert_eq!(
        (text(&got.stdout), text(&got.stderr), got.status.code()),
        (
            text(&expected.stdout),
            text(&expected.stderr),
            expected.status.code()
        ),
        "{what}: conn ssh (left) differs from ssh (right)"
    );
}

/// Every regular file under `root` with its SHA-256, by relative path.
fn tree_digest(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mut hasher = Sha256::new();
                std::io::copy(&mut File::open(&path).unwrap(), &mut hasher).unwrap();
                let digest = format!("{:x}", hasher.finalize());
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), digest));
            }
        }
    }
    out.sort();
    out
}

/// A file of `len` pseudo-random bytes (xorshift: incompressible, the same every run).
fn random_file(path: &Path, len: usize) {
    let mut file = std::io::BufWriter::new(File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = len;
    let mut block = vec![0u8; 1 << 16];
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        left -= n;
    }
    file.flush().unwrap();
}

/// A small tree: nested directories, an empty file, a name with a space, and one large file.
fn source_tree(root: &Path, large: usize) {
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/small.txt"), "hello\n").unwrap();
    fs::write(root.join("a/empty"), "").unwrap();
    fs::write(root.join("with space.txt"), "x y\n").unwrap();
    random_file(&root.join("large.bin"), large);
}

#[test]
fn argv_joining_and_shell_strings_match_ssh() {
    let lab = Lab::new();
    let h = lab.host();
    let scratch = lab.dir("redirect");
    let redirect = format!(
        "cd / && echo \"$HOME\" | tr a-z A-Z; echo out > {0}/f; cat < {0}/f; echo err >&2; \
         ls /nonexistent; true",
        scratch.display()
    );
    let cases: Vec<Vec<&str>> = vec![
        vec![h, "echo", "a  b", "c"],
        vec![h, "echo 'a  b' c"],
        vec![h, "printf", "'%s|'", "one", "'two three'"],
        vec![h, "printf '%s|' one 'two three'"],
        vec![h, "printf", "%s|", "one", "two three"],
        vec![h, &redirect],
        vec![h, "--", "echo", "-n", "dashes"],
        vec!["-q", "-T", h, "-n", "echo", "$0", "${HOME}x"],
    ];
    for case in &cases {
        let expected = lab.ssh(case, None);
        for mux in MUXES {
            assert_same(
                &expected,
                &lab.conn(mux, case, None),
                &format!("{mux} {case:?}"),
            );
        }
    }
    // The checks can fail: the joined words reach the remote shell as they are.
    let out = lab.conn("native", &[h, "echo", "a  b", "c"], None);
    assert_eq!(text(&out.stdout), "a b c\n");
    let out = lab.conn("native", &[h, "printf '%s|' one 'two three'"], None);
    assert_eq!(text(&out.stdout), "one|two three|");
    // stdin is conn's own; -n makes it /dev/null.
    let input = lab.shared.path().join("input");
    fs::write(&input, "line one\nline two\n").unwrap();
    for mux in MUXES {
        for words in [&[h, "wc -l; echo end"][..], &["-n", h, "wc -l"][..]] {
            let expected = lab.ssh(words, Some(&input));
            assert_same(&expected, &lab.conn(mux, words, Some(&input)), mux);
        }
    }
    assert_eq!(
        text(&lab.conn("native", &[h, "wc -l"], Some(&input)).stdout).trim(),
        "2"
    );
}

#[test]
fn exit_statuses_match_ssh_remote_255_and_signals_included() {
    let lab = Lab::new();
    let h = lab.host();
    for (script, code) in [
        ("exit 0", 0),
        ("exit 1", 1),
        ("echo partial; exit 3", 3),
        ("echo gone >&2; exit 255", 255),
        ("kill -9 $$", 255),
        ("kill -TERM $$", 255),
    ] {
        let expected = lab.ssh(&[h, script], None);
        assert_eq!(expected.status.code(), Some(code), "ssh {script}");
        for mux in MUXES {
            assert_same(
                &expected,
                &lab.conn(mux, &[h, script], None),
                &format!("{mux} {script}"),
            );
        }
    }
}

#[test]
fn a_bare_address_with_l_and_p_and_ssh_uris_share_one_master() {
    let lab = Lab::new();
    let port = lab.server.port().to_string();
    let user = lab.server.user().to_string();
    let uri = format!("ssh://{user}@127.0.0.1:{port}");
    let at = format!("{user}@127.0.0.1");
    let user_option = format!("User={user}");
    let forms: Vec<Vec<&str>> = vec![
        vec!["-l", &user, "-p", &port, "127.0.0.1", "whoami; echo $0"],
        vec![&at, "-p", &port, "whoami; echo $0"],
        vec![&uri, "whoami; echo $0"],
        vec![
            "-l",
            &user,
            "ssh://127.0.0.1",
            "-p",
            &port,
            "whoami; echo $0",
        ],
        vec![
            "-p",
            &port,
            "-o",
            &user_option,
            "127.0.0.1",
            "whoami; echo $0",
        ],
        // Options that shape only the session do not split the master either.
        vec![
            "-qTxan",
            "-oBatchMode=no",
            "-oRequestTTY=no",
            "-oLogLevel=ERROR",
            "-oControlPath=/nonexistent/%C",
            &uri,
            "whoami; echo $0",
        ],
    ];
    for form in &forms {
        let expected = lab.ssh(form, None);
        assert_eq!(
            text(&expected.stdout),
            format!("{user}\nsh\n"),
            "ssh {form:?}"
        );
        lab.server.mark_log();
        for mux in MUXES {
            assert_same(
                &expected,
                &lab.conn(mux, form, None),
                &format!("{mux} {form:?}"),
            );
        }
    }
    // One login for every conn form above, both back ends: they are all one endpoint. The
    // plain ssh runs logged in too, so count from the last mark: conn logged in no more.
    assert_eq!(lab.server.accepted_logins(), 0, "{}", lab.server.log());
    // An option of the master's own (compression) is another master: one more login.
    let out = lab.conn("native", &["-C", &uri, "true"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lab.server.accepted_logins(), 1, "{}", lab.server.log());
}

#[test]
fn an_unknown_host_fails_with_ssh_s_message_and_255() {
    let lab = Lab::new();
    for words in [
        &["nosuch.invalid", "true"][..],
        &["-q", "nosuch.invalid", "true"][..],
    ] {
        let expected = lab.ssh(words, None);
        assert_eq!(expected.status.code(), Some(255));
        for mux in MUXES {
            assert_same(
                &expected,
                &lab.conn(mux, words, None),
                &format!("{mux} {words:?}"),
            );
        }
    }
    let out = lab.conn("native", &["nosuch.invalid", "true"], None);
    assert!(
        text(&out.stderr).contains("Could not resolve hostname nosuch.invalid"),
        "{}",
        text(&out.stderr)
    );
    // With -E the same words go to that file, for ssh and conn alike.
    let log = |name: &str| lab.shared.path().join(name);
    let expected = lab.ssh(
        &[
            "-E",
            log("ssh.log").to_str().unwrap(),
            "nosuch.invalid",
            "true",
        ],
        None,
    );
    for mux in MUXES {
        let file = log(&format!("{mux}.log"));
        let got = lab.conn(
            mux,
            &["-E", file.to_str().unwrap(), "nosuch.invalid", "true"],
            None,
        );
        assert_same(&expected, &got, mux);
        assert_eq!(
            fs::read(&file).unwrap(),
            fs::read(log("ssh.log")).unwrap(),
            "{mux}"
        );
    }
    assert!(
        fs::read_to_string(log("ssh.log"))
            .unwrap()
            .contains("Could not resolve")
    );
}

#[test]
fn tt_is_handed_to_ssh_and_gets_a_pty() {
    let lab = Lab::new();
    let h = lab.host();
    let probe = "tty; [ -t 0 ] && echo stdin-is-a-terminal";
    let pts = |out: &Output| {
        let stdout = text(&out.stdout);
        let digits: String = stdout
            .chars()
            .map(|c| if c.is_ascii_digit() { 'N' } else { c })
            .collect();
        (digits, text(&out.stderr), out.status.code())
    };
    let expected = lab.ssh(&["-tt", h, probe], None);
    assert!(
        text(&expected.stdout).starts_with("/dev/pts/"),
        "{expected:?}"
    );
    lab.server.mark_log();
    let got = lab.conn("native", &["-tt", h, probe], None);
    assert_eq!(pts(&got), pts(&expected));
    assert!(text(&got.stdout).contains("stdin-is-a-terminal"));
    // Handed over: ssh logged in by itself, no master was involved.
    assert_eq!(lab.server.accepted_logins(), 1);
    // -v says so, and why.
    let got = lab.conn("native", &["-v", "-tt", h, "true"], None);
    let stderr = text(&got.stderr);
    assert!(
        stderr.starts_with("conn ssh: handing over to ssh: a terminal is asked for"),
        "{stderr}"
    );
    assert!(
        stderr.contains("debug1:"),
        "ssh's own -v output follows: {stderr}"
    );
}

/// The signals a child of this test starts with ignored: this process's, but SIGPIPE, which
/// std ignores in its own process and restores for a child.
fn started_ignoring() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("SigIgn:")).unwrap();
    let mask = u64::from_str_radix(line.rsplit('\t').next().unwrap(), 16).unwrap();
    const SIGPIPE: u32 = 13; // on Linux
    mask & !(1 << (SIGPIPE - 1))
}

#[test]
fn a_hand_over_execs_the_ssh_program_with_the_same_words_and_default_signals() {
    let lab = Lab::new();
    let fake = lab.shared.path().join("fake-ssh");
    fs::write(
        &fake,
        // (The shell's own builtins read its status: a shell that waits for a child blocks
        // every signal meanwhile.)
        "#!/bin/sh\nfor a in \"$@\"; do echo \"arg:$a\"; done\n\
         while read -r k v; do case $k in SigBlk:|SigIgn:) echo \"$k\t$v\";; esac; \
         done < /proc/$$/status\nexit 7\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let handed = |words: &[&str]| {
        let mut cmd = Command::new(CONN);
        cmd.args([
            "ssh",
            "--ssh-program",
            fake.to_str().unwrap(),
            "--mux",
            "process",
        ])
        .arg("--socket-dir")
        .arg(lab.sockets.path())
        .args(words);
        run(&mut cmd, None)
    };
    for words in [
        &["-t", "h", "a  b", "c"][..],
        &["-L", "1:x:2", "-N", "h"][..],
        &["h"][..],
        &["-z", "h", "x"][..],
        &["-O", "check", "h"][..],
        &["-G", "h"][..],
        &["--", "h"][..],
        // An option value conn cannot take: ssh says what is wrong with it.
        &["-F", "/nonexistent/config", "h", "x"][..],
    ] {
        let out = handed(words);
        assert_eq!(
            out.status.code(),
            Some(7),
            "{words:?}: {}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        let args: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("arg:"))
            .collect();
        assert_eq!(
            args, words,
            "the words ssh gets, conn's own options taken out"
        );
        // conn blocks SIGINT, SIGTERM and SIGHUP for its own handling and ignores SIGPIPE:
        // ssh gets the dispositions conn itself was started with.
        let sig = |name: &str| {
            let line = stdout.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.rsplit('\t').next().unwrap(), 16).unwrap()
        };
        assert_eq!(sig("SigBlk:"), 0, "{stdout}");
        assert_eq!(sig("SigIgn:"), started_ignoring(), "{stdout}");
        assert!(
            out.stderr.is_empty(),
            "no -v, no word of conn's: {}",
            text(&out.stderr)
        );
    }
    let out = handed(&["-v", "-A", "h", "x"]);
    assert_eq!(
        text(&out.stderr),
        format!(
            "conn ssh: handing over to {}: agent forwarding is asked for (-A or ForwardAgent)\n",
            fake.display()
        )
    );
}

#[test]
fn conn_s_own_usage_errors_exit_2_and_help_exits_0() {
    let out = run(
        Command::new(CONN).args(["ssh", "--capacity", "0", "h", "true"]),
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("conn: error: --capacity") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let out = run(
        Command::new(CONN).args(["ssh", "--frobnicate", "h", "true"]),
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown conn option --frobnicate"));
    let out = run(Command::new(CONN).args(["ssh", "--help"]), None);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("Served by the pool") && help.contains("Handed to ssh"),
        "{help}"
    );
}

#[test]
fn a_tar_pipeline_streams_into_the_remote_tar() {
    let lab = Lab::new();
    let src = lab.shared.path().join("src");
    source_tree(&src, 8 << 20);
    let archive = lab.shared.path().join("src.tar");
    let tar = run(
        Command::new("tar")
            .arg("-c")
            .arg("-f")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("."),
        None,
    );
    assert!(tar.status.success());
    // The remote account makes each destination itself (tar sets its mode and times).
    let extract = |dir: &Path| format!("mkdir {0} && tar -x -C {0}", dir.display());
    let plain = lab.shared.path().join("plain");
    let expected = lab.ssh(&[lab.host(), &extract(&plain)], Some(&archive));
    assert!(expected.status.success(), "{}", text(&expected.stderr));
    assert_eq!(tree_digest(&plain), tree_digest(&src));
    for mux in MUXES {
        let dst = lab.shared.path().join(mux);
        let words = [lab.host(), &extract(&dst)];
        // The real pipeline: tar's stdout is conn's stdin.
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(format!(
            "tar -c -C {} . | {} {} {}",
            sh_quote(src.to_str().unwrap()),
            lab.conn_line(mux),
            words[0],
            sh_quote(words[1])
        ));
        lab.server.mark_log();
        let got = run(&mut sh, None);
        assert_same(&expected, &got, mux);
        assert_eq!(tree_digest(&dst), tree_digest(&src), "{mux}");
        // Native starts the master; process finds it (both back ends share the masters).
        let logins = lab.server.accepted_logins();
        assert_eq!(logins, usize::from(mux == "native"), "{mux}: not pooled");
    }
}

/// Runs `git <args>` in `dir` with `ssh_command` as GIT_SSH_COMMAND, in a fixed, private
/// configuration (so two runs make the same commits).
fn git(dir: &Path, home: &Path, ssh_command: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_SSH_COMMAND", ssh_command)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "init.defaultBranch")
        .env("GIT_CONFIG_VALUE_0", "main")
        .env("GIT_AUTHOR_NAME", "conn test")
        .env("GIT_AUTHOR_EMAIL", "test@conn")
        .env("GIT_COMMITTER_NAME", "conn test")
        .env("GIT_COMMITTER_EMAIL", "test@conn")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z");
    run(&mut cmd, None)
}

#[test]
fn git_clone_commit_push_and_fetch_through_conn_ssh() {
    let lab = Lab::new();
    let h = lab.host();
    // The same steps through ssh, conn native and conn process, each with its own repository;
    // the outputs must be equal once each repository's path is named alike.
    let mut transcripts = Vec::new();
    for (name, ssh_command) in [
        ("ssh", lab.ssh_line()),
        ("native", lab.conn_line("native")),
        ("process", lab.conn_line("process")),
    ] {
        let remote = lab.dir(&format!("remote-{name}"));
        let repo = format!("{}/repo.git", remote.display());
        let init = lab.ssh(&[h, &format!("git init -q --bare -b main {repo}")], None);
        assert!(init.status.success(), "{}", text(&init.stderr));
        let local = lab.dir(&format!("local-{name}"));
        let home = lab.dir(&format!("home-{name}"));
        let url = format!("{h}:{repo}");
        lab.server.mark_log();
        let mut transcript = String::new();
        let mut step = |dir: &Path, args: &[&str]| {
            let out = git(dir, &home, &ssh_command, args);
            assert!(
                out.status.success(),
                "{name} git {args:?}: {}",
                text(&out.stderr)
            );
            transcript.push_str(&format!(
                "$ git {}\n{}{}",
                args.join(" "),
                text(&out.stdout),
                text(&out.stderr)
            ));
        };
        step(&local, &["clone", "-q", &url, "work"]);
        let work = local.join("work");
        fs::write(work.join("README"), "first\n").unwrap();
        step(&work, &["add", "README"]);
        step(&work, &["commit", "-q", "-m", "first"]);
        step(&work, &["push", "origin", "HEAD:main"]);
        step(&local, &["clone", &url, "other"]);
        fs::write(work.join("README"), "second\n").unwrap();
        step(&work, &["commit", "-q", "-a", "-m", "second"]);
        step(&work, &["push", "origin", "HEAD:main"]);
        step(&local.join("other"), &["fetch", "origin"]);
        step(
            &local.join("other"),
            &["merge", "-q", "--ff-only", "origin/main"],
        );
        assert_eq!(
            fs::read_to_string(local.join("other/README")).unwrap(),
            "second\n"
        );
        // git fetches with `-o SendEnv=GIT_PROTOCOL` and pushes without: two masters.
        assert_logins(&lab, name, 5, 2);
        let remote = remote.display().to_string();
        transcripts.push((name, transcript.replace(&remote, "<remote>")));
    }
    let (_, expected) = &transcripts[0];
    assert!(
        expected.contains("HEAD -> main") && expected.contains("main       -> origin/main"),
        "{expected}"
    );
    for (name, transcript) in &transcripts[1..] {
        assert_eq!(transcript, expected, "{name}");
    }
}

#[test]
fn rsync_of_a_tree_with_a_100_mb_file_arrives_whole() {
    let lab = Lab::new();
    let src = lab.shared.path().join("src");
    source_tree(&src, 100 << 20);
    let want = tree_digest(&src);
    for (name, ssh_command) in [
        ("ssh", lab.ssh_line()),
        ("native", lab.conn_line("native")),
        ("process", lab.conn_line("process")),
    ] {
        // rsync makes the destination itself, as the remote account (it sets its times).
        let dst = lab.shared.path().join(format!("dst-{name}"));
        lab.server.mark_log();
        let target = format!("{}:{}/", lab.host(), dst.display());
        let mut cmd = Command::new("rsync");
        cmd.args(["-a", "-e", &ssh_command])
            .arg(format!("{}/", src.display()))
            .arg(&target);
        let out = run(&mut cmd, None);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{name}: {out:?}"
        );
        assert_eq!(tree_digest(&dst), want, "{name}: pushed");
        // And back, by checksum, into a fresh local directory.
        let back = lab.dir(&format!("back-{name}"));
        let mut cmd = Command::new("rsync");
        cmd.args(["-a", "--checksum", "-e", &ssh_command])
            .arg(&target)
            .arg(format!("{}/", back.display()));
        let out = run(&mut cmd, None);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert_eq!(tree_digest(&back), want, "{name}: pulled");
        assert_logins(&lab, name, 2, 1);
    }
}

#[test]
fn scp_and_sftp_through_a_one_line_wrapper_both_ways() {
    let lab = Lab::new();
    let up = lab.shared.path().join("up.bin");
    random_file(&up, 3 << 20);
    let digest = |path: &Path| {
        let mut hasher = Sha256::new();
        std::io::copy(&mut File::open(path).unwrap(), &mut hasher).unwrap();
        format!("{:x}", hasher.finalize())
    };
    let want = digest(&up);
    let remote = lab.dir("remote");
    let local = lab.dir("local");
    let cfg = lab.cfg();
    // Each tool with plain ssh first, then through each wrapper: the same words, the same
    // output, and the same bytes on both sides.
    let mut expected: Vec<Output> = Vec::new();
    for (i, program) in [
        PathBuf::from("ssh"),
        lab.wrapper("native"),
        lab.wrapper("process"),
    ]
    .iter()
    .enumerate()
    {
        for f in [remote.join("up.bin"), local.join("down.bin")] {
            let _ = fs::remove_file(f);
        }
        lab.server.mark_log();
        let mut outs = Vec::new();
        let scp = |from: &OsStr, to: &OsStr| {
            let mut cmd = Command::new("scp");
            cmd.arg("-S")
                .arg(program)
                .arg("-F")
                .arg(&cfg)
                .arg(from)
                .arg(to);
            run(&mut cmd, None)
        };
        let remote_file = format!("{}:{}/up.bin", lab.host(), remote.display());
        outs.push(scp(up.as_os_str(), OsStr::new(&remote_file)));
        assert_eq!(digest(&remote.join("up.bin")), want, "{program:?} scp up");
        outs.push(scp(
            OsStr::new(&remote_file),
            local.join("down.bin").as_os_str(),
        ));
        assert_eq!(
            digest(&local.join("down.bin")),
            want,
            "{program:?} scp down"
        );
        let batch = lab.shared.path().join(format!("batch{i}"));
        fs::write(
            &batch,
            format!(
                "rm {0}/up.bin\nput {1} {0}/up.bin\nget {0}/up.bin {2}/sftp.bin\nls {0}\n",
                remote.display(),
                up.display(),
                local.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("sftp");
        cmd.arg("-S")
            .arg(program)
            .arg("-F")
            .arg(&cfg)
            .arg("-b")
            .arg(&batch)
            .arg(lab.host());
        outs.push(run(&mut cmd, None));
        assert_eq!(digest(&local.join("sftp.bin")), want, "{program:?} sftp");
        fs::remove_file(local.join("sftp.bin")).unwrap();
        for out in &outs {
            assert!(out.status.success(), "{program:?}: {}", text(&out.stderr));
        }
        assert_logins(&lab, if i == 0 { "ssh" } else { "conn" }, 3, 1);
        if i == 0 {
            expected = outs;
        } else {
            for (e, g) in expected.iter().zip(&outs) {
                assert_same(e, g, &format!("{program:?}"));
            }
        }
    }
}

#[test]
fn a_master_that_cannot_start_prints_ssh_s_words_or_from_a_terminal_hands_over() {
    let lab = Lab::new();
    // An "ssh" whose masters fail as a real one does when it may not ask (the words go to the
    // -E log), and which, run any other way, says how it was run.
    let fake = lab.shared.path().join("fake-ssh");
    fs::write(
        &fake,
        "#!/bin/sh\nlog=; master=; prev=\n\
         for a in \"$@\"; do [ \"$prev\" = -E ] && log=$a; [ \"$a\" = -M ] && master=1; prev=$a; done\n\
         if [ -n \"$master\" ]; then printf 'Permission denied (publickey).\\r\\n' >> \"$log\"; exit 255; fi\n\
         echo \"handed over: $*\"; exit 5\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let words = |extra: &[&str]| -> Vec<String> {
        let mut w: Vec<String> = [
            CONN,
            "ssh",
            "--ssh-program",
            fake.to_str().unwrap(),
            "--socket-dir",
            lab.sockets.path().to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        w.extend(extra.iter().map(|s| s.to_string()));
        w
    };
    // No terminal: ssh's own words, as they are, and 255.
    let mut cmd = Command::new(&words(&[])[0]);
    cmd.args(&words(&["h", "true"])[1..]);
    let out = run(&mut cmd, None);
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        (
            String::new(),
            "Permission denied (publickey).\r\n".into(),
            Some(255)
        )
    );
    // From a terminal (script(1) gives conn one as stdin), ssh gets the line instead: it may
    // ask for what the master could not. Unless BatchMode=yes was asked for.
    let in_a_terminal = |extra: &[&str]| {
        let line = words(extra)
            .iter()
            .map(|w| sh_quote(w))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        run(&mut cmd, None)
    };
    let out = in_a_terminal(&["h", "true"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("handed over: h true"),
        "{}",
        text(&out.stdout)
    );
    let out = in_a_terminal(&["-oBatchMode=yes", "h", "true"]);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("Permission denied (publickey)."));
}
