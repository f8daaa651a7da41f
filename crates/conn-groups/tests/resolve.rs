//! Group resolution from real configuration files in a temporary directory: upcall sources
//! (run by /bin/sh), `groups.conf.d` parts, YAML files, the default source, and the errors.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use conn_groups::Groups;
use conn_hostset::{DEFAULT_MAX_NAMES, HostSet};

/// A configuration directory: `groups.conf` (a `local` source reading `local.cfg` as
/// ClusterShell's sample does, a `cwd` source that reads a file by a relative path, a failing
/// and a slow one), a `groups.conf.d` part, and a YAML file in `groups.d`.
fn setup(dir: &Path) {
    fs::create_dir_all(dir.join("groups.conf.d")).unwrap();
    fs::create_dir_all(dir.join("groups.d")).unwrap();
    fs::write(
        dir.join("groups.conf"),
        "[Main]\ndefault: local\nconfdir: $CFGDIR/groups.conf.d\nautodir: $CFGDIR/groups.d\n\n\
         [local]\n\
         map: sed -n 's/^$GROUP:\\(.*\\)/\\1/p' $CFGDIR/local.cfg\n\
         all: sed -n 's/^all:\\(.*\\)/\\1/p' $CFGDIR/local.cfg\n\
         list: sed -n 's/^\\([0-9A-Za-z_-]*\\):.*/\\1/p' $CFGDIR/local.cfg\n\n\
         [cwd]\nmap: cat ./$GROUP.txt\nlist: echo $SOURCE-name\n\n\
         [fail]\nmap: echo \"no $GROUP here\" >&2; exit 3\n\n\
         [slow]\nmap: sleep 30\n",
    )
    .unwrap();
    fs::write(
        dir.join("local.cfg"),
        "web: web[1-4]\ndb: db[1-2] db3\nall: web[1-4],db[1-3],lb1\nfront: @web,lb1\n\
         mixed: @yaml:g1,@web!web2\nempty:\n",
    )
    .unwrap();
    fs::write(dir.join("web.txt"), "w[1-2]\n").unwrap();
    fs::write(dir.join("cwd-name.txt"), "named\n").unwrap();
    fs::write(
        dir.join("groups.conf.d/part.conf"),
        "[part]\nmap: basename $CFGDIR\nlist: echo p\n",
    )
    .unwrap();
    fs::write(
        dir.join("groups.d/y.yaml"),
        "yaml:\n  g1: 'y[1-3]'\n  g2: [y4, y5]\n  none:\n",
    )
    .unwrap();
}

fn groups(dir: &Path) -> Groups {
    Groups::new(vec![dir.join("groups.conf")])
}

fn expand(groups: &mut Groups, expr: &str) -> Result<Vec<String>, String> {
    HostSet::parse_with_groups(expr, DEFAULT_MAX_NAMES, groups)
        .map(|s| s.expand().collect())
        .map_err(|e| e.to_string())
}

#[test]
fn sources_answer_as_clustershell_s_do() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let mut g = groups(tmp.path());
    assert_eq!(
        g.sources().unwrap(),
        ["local", "part", "yaml", "cwd", "fail", "slow"]
    );
    assert_eq!(
        expand(&mut g, "@web").unwrap(),
        ["web1", "web2", "web3", "web4"]
    );
    assert_eq!(expand(&mut g, "@local:db").unwrap(), ["db1", "db2", "db3"]);
    assert_eq!(expand(&mut g, "@front").unwrap().len(), 5);
    assert_eq!(
        expand(&mut g, "@mixed").unwrap(),
        ["web1", "web3", "web4", "y1", "y2", "y3"]
    );
    assert_eq!(expand(&mut g, "@*").unwrap().len(), 8);
    assert_eq!(expand(&mut g, "@yaml:g2").unwrap(), ["y4", "y5"]);
    // A file source without `all`: the union of its groups.
    assert_eq!(expand(&mut g, "@yaml:*").unwrap().len(), 5);
    // Upcalls run in the directory of the file that defines them, which is $CFGDIR.
    assert_eq!(expand(&mut g, "@cwd:web").unwrap(), ["w1", "w2"]);
    assert_eq!(expand(&mut g, "@cwd:cwd-name").unwrap(), ["named"]);
    // A groups.conf.d part's $CFGDIR is its own directory.
    assert_eq!(expand(&mut g, "@part:x").unwrap(), ["groups.conf.d"]);
    // Empty groups: known (listed, or a key of the file), so no error.
    assert!(expand(&mut g, "@empty,a").is_ok());
    assert!(expand(&mut g, "@yaml:none,a").is_ok());
    assert_eq!(
        g.group_names(None).unwrap().1,
        ["all", "db", "empty", "front", "mixed", "web"]
    );
}

#[test]
fn unknown_groups_and_failing_upcalls_name_the_group_and_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let mut g = groups(tmp.path());
    let e = expand(&mut g, "a,@nope").unwrap_err();
    assert!(
        e.contains("at byte 2: unknown group @nope in group source local"),
        "{e}"
    );
    let e = expand(&mut g, "@yaml:nope").unwrap_err();
    assert!(
        e.contains("unknown group @nope in group source yaml"),
        "{e}"
    );
    let e = expand(&mut g, "@nosuch:g").unwrap_err();
    assert!(
        e.contains("unknown group source nosuch (known: part, yaml, local, cwd"),
        "{e}"
    );
    let e = expand(&mut g, "@fail:x").unwrap_err();
    assert!(
        e.contains("the map upcall of group source fail for @x exited with status 3: no x here"),
        "{e}"
    );
    let mut g = groups(tmp.path()).with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let e = expand(&mut g, "@slow:x").unwrap_err();
    assert!(
        e.contains("group source slow for @x did not finish within 0.3 s"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn regroup_uses_the_largest_whole_groups() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let mut g = groups(tmp.path());
    let set = |e: &str| HostSet::parse(e).unwrap();
    assert_eq!(
        g.regroup(&set("web[1-4],db1"), None, false).unwrap(),
        "@web,db1"
    );
    assert_eq!(
        g.regroup(&set("web[1-4],db[1-3],lb1"), None, false)
            .unwrap(),
        "@all"
    );
    assert_eq!(
        g.regroup(&set("web[1-4],db[1-3]"), None, true).unwrap(),
        "@local:db,@local:web"
    );
    assert_eq!(g.regroup(&set("x1"), None, false).unwrap(), "x1");
    assert_eq!(
        g.regroup(&set("y[1-5]"), Some("yaml"), false).unwrap(),
        "@g[1-2]"
    );
}

#[test]
fn broken_configurations_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("groups.conf");
    let load = |text: &str| {
        fs::write(&conf, text).unwrap();
        let mut g = groups(tmp.path());
        g.sources().map(|_| ()).unwrap_err().to_string()
    };
    let e = load("[Main]\ndefault: nope\n[a]\nmap: true\n");
    assert!(
        e.contains("groups.conf: default group source not found: \"nope\""),
        "{e}"
    );
    let e = load("[a]\nall: x\n");
    assert!(e.contains("section [a] has no map upcall"), "{e}");
    let e = load("[a]\nmap: x\n[b,a]\nmap: y\n");
    assert!(e.contains("group source \"a\" is defined twice"), "{e}");
    let e = load("oops\n");
    assert!(e.contains("groups.conf:1: "), "{e}");
    // No groups.conf at all: no sources, and a group says where conn looked.
    let mut g = Groups::new(vec![tmp.path().join("missing/groups.conf")]);
    assert!(g.sources().unwrap().is_empty());
    let e = expand(&mut g, "@web").unwrap_err();
    assert!(e.contains("no groups.conf was found (looked for "), "{e}");
}
