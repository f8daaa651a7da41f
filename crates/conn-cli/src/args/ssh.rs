//! The ssh and pool options shared by `run`, `copy` and `bench`, and their mapping onto
//! [`OpenSshBuilder`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use conn_core::DEFAULT_CAPACITY;
use conn_openssh::{DEFAULT_CIPHER, DEFAULT_EXTRA_OPTIONS, Location, OpenSsh, OpenSshBuilder};

/// `src` or `dst` (clap's view of [`Location`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LocationArg {
    /// The source side of a transfer.
    Src,
    /// The destination side of a transfer.
    Dst,
}

impl From<LocationArg> for Location {
    fn from(l: LocationArg) -> Self {
        match l {
            LocationArg::Src => Location::Src,
            LocationArg::Dst => Location::Dst,
        }
    }
}

/// The ssh and pool options shared by `run`, `copy` and `bench` (docs/design.md#options).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "SSH and pool options")]
pub struct SshArgs {
    /// The ssh client: `ssh`, `hpnssh`, or a path to either.
    #[arg(long, value_name = "PROGRAM", default_value = "ssh")]
    pub ssh_program: String,

    /// TCP port (ssh -p) [default: from ssh_config, else 22].
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,

    /// ssh_config file (ssh -F); part of the masters' identity.
    #[arg(short = 'F', long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,

    /// Cipher specification (ssh -c); empty for ssh's own choice.
    #[arg(short = 'c', long, value_name = "CIPHERS", default_value = DEFAULT_CIPHER)]
    pub cipher: String,

    /// TCP connect timeout of a new master, in seconds (-oConnectTimeout).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: Option<u64>,

    /// More ssh diagnostics (ssh -v, up to 3 times); a master writes them to the log file
    /// beside its socket.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// An ssh option, `Key=Value` (ssh -o; repeatable), or as clush takes it, a string of ssh
    /// options (`-o "-oStrictHostKeyChecking=no -p 2222"`). Given options win over conn's
    /// defaults (-oBatchMode=yes -oServerAliveInterval=0 -x -T).
    #[arg(short = 'o', value_name = "OPTION", action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub ssh_option: Vec<String>,

    /// How long an idle master outlives its last session, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub control_persist: u64,

    /// Sessions per master (keep it below sshd's MaxSessions, 10 by default).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAPACITY as u32,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub capacity: u32,

    /// Where control sockets and their leases live, at most 31 bytes long (Unix socket paths
    /// are short) [default: ~/.ssh/conn, or /tmp/conn-UID (checked: yours, mode 0700) when a
    /// long home directory makes that too long].
    #[arg(long, value_name = "DIR")]
    pub socket_dir: Option<PathBuf>,

    /// Source or destination side: part of the lease namespace.
    #[arg(long, value_enum, default_value = "src")]
    pub location: LocationArg,

    /// End the masters when done (`ssh -O exit`; in-process with the native mux) instead of
    /// leaving them for the next `conn`.
    #[arg(long)]
    pub exit_on_shutdown: bool,
}

impl SshArgs {
    /// The extra options passed to every ssh: the user's `-o` options first (ssh takes the
    /// first value it sees for an option, so they win), then conn's defaults. A value that
    /// starts with `-` is clush's form, a string of ssh options, split as a shell would and
    /// each option's argument attached to it (`-p 2222` becomes `-p2222`).
    pub fn extra_options(&self) -> Vec<String> {
        self.ssh_option
            .iter()
            .flat_map(|o| match o.starts_with('-') {
                true => ssh_words(o).unwrap_or_default(),
                false => vec![format!("-o{o}")],
            })
            .chain(DEFAULT_EXTRA_OPTIONS.iter().map(|s| s.to_string()))
            .collect()
    }

    /// A builder for `user_host` with every option applied (validated by `build`).
    pub fn builder(&self, user_host: &str) -> OpenSshBuilder {
        self.builder_with(user_host, None, None)
    }

    /// [`SshArgs::builder`] for a fan-out host: `user` for a host given without `user@`
    /// (pdsh's `-l`), and a connect timeout that overrides `--connect-timeout` (pdsh's `-t`).
    pub fn builder_with(
        &self,
        user_host: &str,
        user: Option<&str>,
        connect_timeout: Option<u64>,
    ) -> OpenSshBuilder {
        let user_host = match user {
            Some(user) if !user_host.contains('@') => format!("{user}@{user_host}"),
            _ => user_host.to_string(),
        };
        let user_host = user_host.as_str();
        let mut b = OpenSsh::builder(user_host)
            .ssh_program(&self.ssh_program)
            .cipher(&self.cipher)
            .verbose(self.verbose)
            .extra_options(self.extra_options())
            .control_persist(Duration::from_secs(self.control_persist))
            .exit_masters_on_shutdown(self.exit_on_shutdown)
            .location(self.location.into());
        if let Some(port) = self.port {
            b = b.port(port);
        }
        if let Some(cfg) = &self.ssh_config {
            b = b.ssh_config(cfg);
        }
        if let Some(t) = connect_timeout.or(self.connect_timeout) {
            b = b.connect_timeout(Duration::from_secs(t));
        }
        if let Some(dir) = &self.socket_dir {
            b = b.socket_dir(dir);
        }
        b
    }

    /// These options as `conn` arguments again (for a `conn run` child of `conn bench`), so
    /// that the child builds the same transport; `--exit-on-shutdown` is left out.
    pub fn to_cli_args(&self) -> Vec<OsString> {
        let opt =
            |name: &str, value: &dyn std::fmt::Display| OsString::from(format!("--{name}={value}"));
        let mut args = vec![opt("ssh-program", &self.ssh_program)];
        if let Some(port) = self.port {
            args.push(opt("port", &port));
        }
        if let Some(cfg) = &self.ssh_config {
            let mut a = OsString::from("--ssh-config=");
            a.push(cfg);
            args.push(a);
        }
        args.push(opt("cipher", &self.cipher));
        if let Some(t) = self.connect_timeout {
            args.push(opt("connect-timeout", &t));
        }
        args.extend((0..self.verbose).map(|_| OsString::from("-v")));
        for o in &self.ssh_option {
            args.push("-o".into());
            args.push(o.into());
        }
        args.push(opt("control-persist", &self.control_persist));
        args.push(opt("capacity", &self.capacity));
        if let Some(dir) = &self.socket_dir {
            let mut a = OsString::from("--socket-dir=");
            a.push(dir);
            args.push(a);
        }
        args.push(opt(
            "location",
            &match self.location {
                LocationArg::Src => "src",
                LocationArg::Dst => "dst",
            },
        ));
        args
    }

    /// Checks what the builder does not: an `-o` value is `Key=Value`, or a string of ssh
    /// options whose every word is an option ssh knows.
    pub fn validate(&self) -> Result<(), String> {
        for o in &self.ssh_option {
            if o.starts_with('-') {
                ssh_words(o)?;
            } else if o.trim().is_empty() || !o.contains('=') && !o.contains(' ') {
                return Err(format!(
                    "ssh option {o:?} is not of the form Key=Value (as in `-o Compression=yes`), \
                     nor a string of ssh options (as in `-o \"-oCompression=yes -p 2222\"`)"
                ));
            }
        }
        Ok(())
    }
}

/// The option letters of ssh(1) (OpenSSH 9.2) that take an argument.
const SSH_LETTERS_WITH_ARGUMENT: &str = "bceilmopBDEFIJLOPQRSwW";
/// The option letters of ssh(1) that take none.
const SSH_FLAG_LETTERS: &str = "1246afgknqstvxyACGKMNTVXY";

/// A string of ssh options (clush's `-o "-oKey=Value -p 2222"`) as separate options, each
/// argument attached to its letter; an error names what is not an ssh option.
pub fn ssh_words(text: &str) -> Result<Vec<String>, String> {
    let words =
        shlex::split(text).ok_or_else(|| format!("ssh options {text:?}: unbalanced quotes"))?;
    let mut out = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let Some(letters) = word.strip_prefix('-').filter(|l| !l.is_empty()) else {
            return Err(format!(
                "ssh options {text:?}: {word:?} is not an option (a string given to -o must \
                 hold ssh options only)"
            ));
        };
        let mut option = String::from("-");
        for (i, c) in letters.char_indices() {
            if SSH_LETTERS_WITH_ARGUMENT.contains(c) {
                let attached = &letters[i + c.len_utf8()..];
                let value = if attached.is_empty() {
                    words
                        .next()
                        .ok_or_else(|| format!("ssh options {text:?}: -{c} needs an argument"))?
                } else {
                    attached.to_string()
                };
                option.push(c);
                option.push_str(&value);
                break;
            } else if SSH_FLAG_LETTERS.contains(c) {
                option.push(c);
            } else {
                return Err(format!("ssh options {text:?}: -{c} is not an ssh option"));
            }
        }
        out.push(option);
    }
    Ok(out)
}
