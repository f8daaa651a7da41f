//! Whether the machine is prepared for a private sshd: the programs, sshd's run-time directory,
//! and the account logins go to. The harness only checks; `scripts/setup.sh` (as root)
//! prepares, and every message here says to run it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::DEFAULT_TEST_USER;

/// What every "the machine is not prepared" message ends with.
const SETUP_HINT: &str = "run `bash scripts/setup.sh` as root once (from the conn repository)";

pub(super) fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

pub(super) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The `/etc/passwd` entry whose field `index` (0: name, 2: uid) is `value`: the name and the
/// login shell. Read from the file rather than through `getpwnam(3)`, whose static buffer is not
/// safe to share between the test threads (the accounts the tests use are local ones).
fn passwd_entry(index: usize, value: &str) -> io::Result<Option<(String, String)>> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    Ok(passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 7 && fields[index] == value)
            .then(|| (fields[0].to_owned(), fields[6].to_owned()))
    }))
}

/// The sshd program, checked to exist.
pub(super) fn sshd_program() -> io::Result<PathBuf> {
    let program = env_path("CONN_TEST_SSHD").unwrap_or_else(|| super::DEFAULT_SSHD.into());
    if !program.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found: the private sshd needs the OpenSSH server; {SETUP_HINT}, which \
                 installs it (or set CONN_TEST_SSHD to an sshd)",
                program.display()
            ),
        ));
    }
    Ok(program)
}

/// Checks that the client programs the harness runs exist: `ssh_program` and `ssh-keygen`.
pub(super) fn check_client_programs(ssh_program: &Path) -> io::Result<()> {
    for program in [ssh_program, Path::new("ssh-keygen")] {
        if find_program(program).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} not found: the private sshd needs the OpenSSH client; {SETUP_HINT}, \
                     which installs it",
                    program.display()
                ),
            ));
        }
    }
    Ok(())
}

/// `program` itself when it names a path, else the first match in `PATH`.
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The account logins go to; when root, checks that it exists and is usable.
pub(super) fn test_user() -> io::Result<String> {
    if !is_root() {
        let uid = rustix::process::geteuid().as_raw().to_string();
        let Some((name, _)) = passwd_entry(2, &uid)? else {
            return Err(io::Error::other(format!(
                "uid {uid} has no entry in /etc/passwd; sshd cannot log in to it"
            )));
        };
        return Ok(name);
    }
    let name = std::env::var("CONN_TEST_USER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_USER.to_owned());
    let Some((_, shell)) = passwd_entry(0, &name)? else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the test account `{name}` does not exist (as root, the private sshd logs in \
                 as that account, login shell /bin/sh): {SETUP_HINT}, which creates it"
            ),
        ));
    };
    if shell != "/bin/sh" {
        return Err(io::Error::other(format!(
            "the test account `{name}` has login shell `{shell}`, expected /bin/sh: \
             {SETUP_HINT}, which sets it"
        )));
    }
    // sshd without PAM refuses a key login to an account whose password field starts with `!`.
    if let Ok(shadow) = fs::read_to_string("/etc/shadow") {
        let locked = shadow.lines().any(|l| {
            let mut f = l.split(':');
            f.next() == Some(name.as_str()) && f.next().is_some_and(|p| p.starts_with('!'))
        });
        if locked {
            return Err(io::Error::other(format!(
                "the test account `{name}` is locked (password field starts with `!`), so sshd \
                 refuses even key logins: {SETUP_HINT}, which unlocks it for key logins"
            )));
        }
    }
    Ok(name)
}

/// sshd's privilege-separation directory, which a root sshd needs; /run is often a fresh tmpfs
/// after a reboot.
pub(super) fn check_privsep_dir() -> io::Result<()> {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is missing (sshd's privilege-separation directory, emptied by a reboot): \
                 {SETUP_HINT}, which creates it",
                dir.display()
            ),
        ));
    }
    Ok(())
}
