//! ClusterShell node groups in the `conn` binary: a `groups.conf` in a temporary directory with a
//! `local`-style upcall source (ClusterShell's sample `sed` over `local.cfg`) and a YAML autodir,
//! checked against `nodeset -e` of the same configuration; `-g`, `-X`, `-a`, `@src:g`; errors
//! before anything runs; and a group run for real against the private sshd.
//!
//! Both conn and nodeset see the same files: `$CLUSTERSHELL_CFGDIR` points at the temporary
//! directory, `$HOME` at an empty one (no `~/.config`, `~/.local/etc`), and the temporary
//! `groups.conf` sets every `[Main]` key and upcall that ClusterShell's packaged
//! `/etc/clustershell/groups.conf` (which both read first) sets. ClusterShell is installed by `scripts/setup.sh`; without
//! it these tests fail and say so.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use conn_testkit::{TestSshd, run_with_timeout};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A configuration directory and an empty home.
struct Config {
    dir: tempfile::TempDir,
}

impl Config {
    fn new() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("home")).unwrap();
        fs::create_dir_all(p.join("groups.d")).unwrap();
        fs::create_dir_all(p.join("groups.conf.d")).unwrap();
        fs::write(
            p.join("groups.conf"),
            "[Main]\ndefault: local\nconfdir: $CFGDIR/groups.conf.d\nautodir: $CFGDIR/groups.d\n\n\
             [local]\n\
             map: sed -n 's/^$GROUP:\\(.*\\)/\\1/p' $CFGDIR/local.cfg\n\
             all: sed -n 's/^all:\\(.*\\)/\\1/p' $CFGDIR/local.cfg\n\
             list: sed -n 's/^\\([0-9A-Za-z_-]*\\):.*/\\1/p' $CFGDIR/local.cfg\n\n\
             [fail]\nmap: echo \"no such thing as $GROUP\" >&2; exit 3\n",
        )
        .unwrap();
        fs::write(
            p.join("local.cfg"),
            "web: web[01-04]\ndb: db[1-2] db3\nall: web[01-04],db[1-3],lb1\n\
             front: @web,lb1\nmixed: @yaml:g1,@web!web02\nrack1: r1n[1-3]\nrack2: r2n[1-3]\n\
             ssh: conn-test conn-test2\n",
        )
        .unwrap();
        fs::write(
            p.join("groups.d/cluster.yaml"),
            "yaml:\n  g1: 'y[1-3]'\n  g2: [y4, y5]\n  all: '@g1,@g2,y9'\n",
        )
        .unwrap();
        Config { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `program` with this configuration's environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null())
            .env("CLUSTERSHELL_CFGDIR", self.path())
            .env("HOME", self.path().join("home"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CONN_LOG")
            .env_remove("CONN_GROUPS_TIMEOUT")
            .env("NO_COLOR", "1");
        cmd
    }

    fn conn(&self, args: &[&str]) -> Output {
        run_with_timeout(self.command(env!("CARGO_BIN_EXE_conn")).args(args), TIMEOUT)
            .expect("conn finishes in time")
    }

    /// The names `nodeset -e ARGS` prints.
    fn nodeset(&self, args: &[&str]) -> BTreeSet<String> {
        let program = which("nodeset").unwrap_or_else(|| {
            panic!(
                "ClusterShell's `nodeset` is not installed: run `bash scripts/setup.sh` (as root it \
                 installs the clustershell package), which these tests compare conn with"
            )
        });
        let out = run_with_timeout(self.command(program).args(args), TIMEOUT).unwrap();
        assert!(
            out.status.success(),
            "nodeset {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// The names `conn hosts ARGS` prints, one per line.
    fn hosts(&self, args: &[&str]) -> BTreeSet<String> {
        let mut argv = vec!["hosts"];
        argv.extend(args);
        let out = self.conn(&argv);
        assert!(out.status.success(), "conn {argv:?}: {}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_string).collect()
    }

    /// The hosts `conn run --dry-run ARGS -- true` would run on (from its "Would execute"
    /// lines).
    fn dry_run(&self, args: &[&str]) -> BTreeSet<String> {
        let mut argv = vec!["run", "--dry-run"];
        argv.extend(args);
        argv.extend(["--", "true"]);
        let out = self.conn(&argv);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "conn {argv:?}: {stderr}");
        stderr
            .lines()
            .filter_map(|l| l.split("Would execute: ").nth(1))
            .map(|l| l.split(": ").next().unwrap().to_string())
            .collect()
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn groups_expand_as_nodeset_expands_them() {
    let c = Config::new();
    for expr in [
        "@web",
        "@db",
        "@local:front",
        "@mixed",
        "@yaml:g1",
        "@yaml:g2,@web!web03",
        "@rack[1-2]",
        "@*",
        "@yaml:*",
        "@all&@web",
        "@all^@front",
    ] {
        let ours = c.hosts(&[expr]);
        assert!(!ours.is_empty(), "{expr}");
        assert_eq!(
            ours,
            c.nodeset(&["-e", expr]),
            "conn hosts {expr} vs nodeset -e"
        );
    }
    assert_eq!(c.hosts(&["-a"]), c.nodeset(&["-e", "-a"]));
    assert_eq!(
        c.hosts(&["-a", "-s", "yaml"]),
        c.nodeset(&["-e", "-a", "-s", "yaml"])
    );
    assert_eq!(
        c.hosts(&["-s", "yaml", "@g1"]),
        c.nodeset(&["-e", "-s", "yaml", "@g1"])
    );
}

#[test]
fn run_selects_hosts_with_g_x_and_a_before_anything_runs() {
    let c = Config::new();
    assert_eq!(c.dry_run(&["-g", "web"]), c.nodeset(&["-e", "@web"]));
    assert_eq!(
        c.dry_run(&["-w", "@yaml:g1"]),
        c.nodeset(&["-e", "@yaml:g1"])
    );
    assert_eq!(
        c.dry_run(&["-g", "yaml:g1,db"]),
        c.nodeset(&["-e", "@yaml:g1,@db"])
    );
    assert_eq!(
        c.dry_run(&["-g", "rack[1-2]", "-x", "r1n2"]),
        c.nodeset(&["-e", "@rack[1-2]!r1n2"])
    );
    assert_eq!(
        c.dry_run(&["-a", "-X", "web"]),
        c.nodeset(&["-e", "-a", "-x", "@web"])
    );
    assert_eq!(c.dry_run(&["-a", "-X", "web", "-X", "db"]), set(&["lb1"]));
    assert_eq!(
        c.dry_run(&["-a", "--groupsource", "yaml", "-X", "g2"]),
        c.nodeset(&["-e", "-s", "yaml", "-a", "-x", "@g2"])
    );
    // Hosts files hold groups too.
    let file = c.path().join("hosts");
    fs::write(&file, "@db # the databases\nlb1\n").unwrap();
    assert_eq!(
        c.dry_run(&["--hosts-file", file.to_str().unwrap()]),
        set(&["db1", "db2", "db3", "lb1"])
    );
}

/// Exit 2, nothing on stdout, nothing run, and the message names `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(!stderr.contains("Would execute"), "{stderr}");
    assert!(stderr.starts_with("conn: error: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    }
}

#[test]
fn unknown_groups_and_failed_upcalls_are_usage_errors_naming_group_and_source() {
    let c = Config::new();
    let marker = c.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for argv in [
        vec![
            "run",
            "--dry-run",
            "-g",
            "web",
            "-X",
            "nope",
            "--",
            "sh",
            "-c",
            &touch,
        ],
        vec!["run", "-w", "web01,@nope", "--", "sh", "-c", &touch],
        vec!["copy", "-g", "nope", "Cargo.toml", "/tmp/x"],
    ] {
        assert_refused(
            &c.conn(&argv),
            &["unknown group @nope", "group source local"],
        );
    }
    assert_refused(
        &c.conn(&["hosts", "@yaml:nope"]),
        &["unknown group @nope in group source yaml"],
    );
    assert_refused(
        &c.conn(&["run", "-g", "fail:x", "--", "true"]),
        &["map upcall of group source fail for @x exited with status 3: no such thing as x"],
    );
    assert_refused(
        &c.conn(&["hosts", "@nosuch:g"]),
        &["unknown group source nosuch"],
    );
    assert_refused(
        &c.conn(&["hosts", "-s", "nosuch", "-a"]),
        &["unknown group source nosuch"],
    );
    assert!(!marker.exists(), "nothing ran");
    // Every host removed: nothing to run on.
    assert_refused(
        &c.conn(&["run", "-g", "web", "-X", "web", "--", "true"]),
        &["no host left"],
    );
}

#[test]
fn hosts_lists_and_regroups_as_nodeset_does() {
    let c = Config::new();
    let out = |args: &[&str]| {
        let o = c.conn(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let nodeset = |args: &[&str]| {
        let o = run_with_timeout(c.command(which("nodeset").unwrap()).args(args), TIMEOUT).unwrap();
        text(&o.stdout)
    };
    for args in [
        &["-l"][..],
        &["-ll"],
        &["-lll"],
        &["-l", "-s", "yaml"],
        &["-ll", "-s", "yaml"],
        &["-r", "web[01-04],db[1-3],lb1"],
        &["-r", "web[01-04],db1"],
        &["-r", "-s", "yaml", "y[1-5]"],
    ] {
        let mut ours = vec!["hosts"];
        ours.extend(args);
        assert_eq!(out(&ours), nodeset(args), "conn hosts {args:?} vs nodeset");
    }
}

#[test]
fn a_group_runs_on_the_private_sshd() {
    let c = Config::new();
    let server = TestSshd::start_default().expect("start the private sshd");
    let sockets = conn_testkit::socket_dir();
    let config = server.ssh_config_path();
    let out = c.conn(&[
        "run",
        "-F",
        config.to_str().unwrap(),
        "--socket-dir",
        sockets.path().to_str().unwrap(),
        "-g",
        "ssh",
        "--",
        "echo",
        "hi",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: BTreeSet<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines, set(&["conn-test2: hi", "conn-test: hi"]));
}
