//! What the daemon and its clients read: keys, `sshd_config`, `ssh_config`, `known_hosts`, all
//! in the daemon's temporary directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{HOST_ALIASES, TestSshdBuilder};
use crate::run_with_timeout;

/// First line of every file the harness writes, so that whoever finds one knows its origin.
const WRITTEN_BY: &str = "# written by conn-sshd (TestSshd)\n";

pub(super) fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// A fresh ed25519 key pair without passphrase at `path` and `path.pub`.
pub(super) fn keygen(path: &Path, comment: &str) -> io::Result<()> {
    let out = run_with_timeout(
        Command::new("ssh-keygen")
            .args(["-t", "ed25519", "-N", "", "-q", "-C", comment, "-f"])
            .arg(path)
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    )?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ssh-keygen -f {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A port that was free a moment ago (the OS picks it; sshd may still lose a race for it).
pub(super) fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn keyword(line: &str) -> String {
    line.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

pub(super) fn write_sshd_config(
    dir: &Path,
    port: u16,
    user: &str,
    opts: &TestSshdBuilder,
) -> io::Result<()> {
    let d = dir.display();
    let defaults = [
        "ListenAddress 127.0.0.1".to_owned(),
        format!("Port {port}"),
        format!("HostKey {d}/ssh_host_ed25519_key"),
        format!("PidFile {d}/sshd.pid"),
        format!("AuthorizedKeysFile {d}/authorized_keys"),
        "PasswordAuthentication no".to_owned(),
        "KbdInteractiveAuthentication no".to_owned(),
        "PubkeyAuthentication yes".to_owned(),
        "UsePAM no".to_owned(),
        "StrictModes no".to_owned(),
        format!("MaxSessions {}", opts.max_sessions),
        "MaxStartups 100:30:200".to_owned(),
        format!("LogLevel {}", opts.log_level),
        format!("AllowUsers {user}"),
        "ForceCommand none".to_owned(),
        "PermitRootLogin no".to_owned(),
        "PermitUserEnvironment no".to_owned(),
        "PrintMotd no".to_owned(),
        "PrintLastLog no".to_owned(),
        "UseDNS no".to_owned(),
        "X11Forwarding no".to_owned(),
        "Subsystem sftp internal-sftp".to_owned(),
    ];
    let (matches, extras): (Vec<&String>, Vec<&String>) = opts
        .extra_config
        .iter()
        .partition(|l| keyword(l) == "match");
    let overridden: Vec<String> = extras.iter().map(|l| keyword(l)).collect();
    let mut text = String::from(WRITTEN_BY);
    for line in defaults
        .iter()
        .filter(|l| !overridden.contains(&keyword(l)))
        .chain(extras)
        .chain(matches)
    {
        text.push_str(line);
        text.push('\n');
    }
    fs::write(dir.join("sshd_config"), text)
}

pub(super) fn write_client_files(
    dir: &Path,
    port: u16,
    user: &str,
    host_pub: &str,
) -> io::Result<()> {
    let d = dir.display();
    let mut cfg = String::from(WRITTEN_BY);
    for alias in HOST_ALIASES {
        cfg.push_str(&format!(
            "Host {alias}\n\
             \x20 HostName 127.0.0.1\n\
             \x20 Port {port}\n\
             \x20 User {user}\n\
             \x20 IdentityFile {d}/id_ed25519\n\
             \x20 IdentitiesOnly yes\n\
             \x20 IdentityAgent none\n\
             \x20 UserKnownHostsFile {d}/known_hosts\n\
             \x20 GlobalKnownHostsFile /dev/null\n\
             \x20 StrictHostKeyChecking yes\n\
             \x20 UpdateHostKeys no\n\
             \x20 BatchMode yes\n\
             \x20 LogLevel ERROR\n"
        ));
    }
    // The bare address, for `ssh -p <port> -l <user> 127.0.0.1`: the key and the known host,
    // but neither port nor user, which the command line must give.
    cfg.push_str(&format!(
        "Host 127.0.0.1\n\
         \x20 IdentityFile {d}/id_ed25519\n\
         \x20 IdentitiesOnly yes\n\
         \x20 IdentityAgent none\n\
         \x20 UserKnownHostsFile {d}/known_hosts\n\
         \x20 GlobalKnownHostsFile /dev/null\n\
         \x20 StrictHostKeyChecking yes\n\
         \x20 UpdateHostKeys no\n\
         \x20 BatchMode yes\n\
         \x20 LogLevel ERROR\n"
    ));
    let path = dir.join("ssh_config");
    fs::write(&path, cfg)?;
    // ssh rejects a config file that others may write.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    let mut kh = File::create(dir.join("known_hosts"))?;
    writeln!(kh, "[127.0.0.1]:{port} {host_pub}")?;
    Ok(())
}
