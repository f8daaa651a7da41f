//! Options of the OpenSSH transport and their validation ([`OpenSshBuilder`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use conn_core::{Error, Result, UserHost};

use crate::OpenSsh;
use crate::backend::{Backend, Mux};
use crate::location::Location;

/// The extra options used unless [`OpenSshBuilder::extra_options`] replaces them: no password
/// prompt (`BatchMode`), no keep-alive probes, no X11 forwarding, no pseudo-terminal.
pub const DEFAULT_EXTRA_OPTIONS: [&str; 4] =
    ["-oBatchMode=yes", "-oServerAliveInterval=0", "-x", "-T"];

/// The default cipher preference: AES-256-GCM first (fast with AES-NI), then ssh's defaults.
pub const DEFAULT_CIPHER: &str = "^aes256-gcm@openssh.com";

/// How long an idle master lives after its last session, unless told otherwise.
pub const DEFAULT_CONTROL_PERSIST: Duration = Duration::from_secs(600);

/// How long before a master's idle timeout the fast liveness path stops trusting it.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(2);

/// How long a master start may take when no connect timeout is set.
const MASTER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for the SSH handshake and authentication after the TCP connect.
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a connection needs, validated and with the ssh argv prefix computed once.
#[derive(Debug)]
pub(crate) struct Config {
    pub user_host: UserHost,
    pub location: Location,
    pub program: String,
    /// `program` plus every option common to all ssh invocations of this endpoint.
    pub base_args: Vec<String>,
    pub reuse_connections: bool,
    pub mux: Mux,
    pub backend: Backend,
    pub control_persist: Duration,
    /// Bound of a master start: the connect timeout plus time to authenticate.
    pub master_start_timeout: Duration,
    pub refresh_margin: Duration,
    pub exit_masters_on_shutdown: bool,
    pub socket_dir: PathBuf,
    pub cache_namespace: String,
}

impl Config {
    /// `ssh <options> [-S <socket>] <extra> <user@host> <tail…>`: every ssh command line of
    /// this endpoint comes from here (a master start, a session client, `-O check`, `-O exit`),
    /// with `socket` the connection's ControlPath when connections are reused.
    pub(crate) fn ssh_argv(
        &self,
        socket: Option<&Path>,
        extra: &[&str],
        tail: impl IntoIterator<Item = OsString>,
    ) -> Vec<OsString> {
        let mut argv: Vec<OsString> = self.base_args.iter().map(OsString::from).collect();
        if let Some(socket) = socket {
            argv.push("-S".into());
            argv.push(socket.as_os_str().to_owned());
        }
        argv.extend(extra.iter().map(OsString::from));
        argv.push(self.user_host.to_string().into());
        argv.extend(tail);
        argv
    }
}

/// Builds an [`OpenSsh`] transport; every option of docs/design.md#options, validated on
/// [`build`](OpenSshBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use conn_openssh::OpenSsh;
/// let ssh = OpenSsh::builder("backup@db-1")
///     .port(2222)
///     .connect_timeout(Duration::from_secs(5))
///     .socket_dir("/tmp/conn-doc-example")
///     .build()
///     .unwrap();
/// assert!(OpenSsh::builder("-oProxyCommand=x").build().is_err());
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct OpenSshBuilder {
    user_host: String,
    location: Location,
    program: String,
    port: Option<u16>,
    ssh_config: Option<PathBuf>,
    cipher: String,
    connect_timeout: Option<Duration>,
    verbose: u8,
    extra_options: Vec<String>,
    reuse_connections: bool,
    mux: Mux,
    control_persist: Duration,
    refresh_margin: Duration,
    exit_masters_on_shutdown: bool,
    socket_dir: Option<PathBuf>,
}

impl OpenSshBuilder {
    pub(crate) fn new(user_host: &str) -> Self {
        OpenSshBuilder {
            user_host: user_host.to_string(),
            location: Location::Src,
            program: "ssh".to_string(),
            port: None,
            ssh_config: None,
            cipher: DEFAULT_CIPHER.to_string(),
            connect_timeout: None,
            verbose: 0,
            extra_options: DEFAULT_EXTRA_OPTIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            reuse_connections: true,
            mux: Mux::Process,
            control_persist: DEFAULT_CONTROL_PERSIST,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            exit_masters_on_shutdown: false,
            socket_dir: None,
        }
    }

    /// The ssh client: `"ssh"` (default), `"hpnssh"` (same command line), or a path to either.
    pub fn ssh_program(mut self, program: impl Into<String>) -> Self {
        self.program = program.into();
        self
    }

    /// The TCP port (`-p`); default: whatever ssh_config says, else 22.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// An ssh_config file (`-F`). Part of the endpoint's identity: masters made with one config
    /// are never reused under another.
    pub fn ssh_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssh_config = Some(path.into());
        self
    }

    /// The cipher specification for `-c`; empty means no `-c` at all. Default
    /// [`DEFAULT_CIPHER`].
    pub fn cipher(mut self, cipher: impl Into<String>) -> Self {
        self.cipher = cipher.into();
        self
    }

    /// `-oConnectTimeout` for the TCP connect of a new master (whole seconds, rounded up).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How many `-v` to pass (0 to 3). A master's debug output goes to its log file beside the
    /// socket.
    pub fn verbose(mut self, level: u8) -> Self {
        self.verbose = level;
        self
    }

    /// Replaces the extra options ([`DEFAULT_EXTRA_OPTIONS`]) passed to every ssh invocation.
    pub fn extra_options<I, S>(mut self, options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_options = options.into_iter().map(Into::into).collect();
        self
    }

    /// Whether to multiplex over ControlMaster connections (default true). When false every
    /// command makes its own ssh connection and nothing is leased.
    pub fn reuse_connections(mut self, reuse: bool) -> Self {
        self.reuse_connections = reuse;
        self
    }

    /// How sessions reach the master: [`Mux::Process`] (default) or, with the `native-mux`
    /// feature, [`Mux::Native`].
    pub fn mux(mut self, mux: Mux) -> Self {
        self.mux = mux;
        self
    }

    /// How long an idle master stays alive after its last session (whole seconds, at least 1;
    /// default 600 s).
    pub fn control_persist(mut self, persist: Duration) -> Self {
        self.control_persist = persist;
        self
    }

    /// How long before the end of ControlPersist the fast liveness check stops trusting a master
    /// and asks it with `ssh -O check` instead (default 2 s).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Whether pool shutdown sends `ssh -O exit` to each master (default false: masters stay
    /// alive for the next process, which leases them).
    pub fn exit_masters_on_shutdown(mut self, exit: bool) -> Self {
        self.exit_masters_on_shutdown = exit;
        self
    }

    /// Where the lease directories and control sockets live, at most
    /// [`MAX_ROOT_LEN`](conn_lease::MAX_ROOT_LEN) (31) bytes long; default
    /// [`default_socket_dir`](crate::default_socket_dir): `~/.ssh/conn`, with the home
    /// directory from the password database rather than `$HOME`, or `/tmp/conn-<uid>` when a
    /// long home would make `~/.ssh/conn` too long.
    pub fn socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_dir = Some(dir.into());
        self
    }

    /// Source or destination side (part of the lease namespace).
    pub fn location(mut self, location: Location) -> Self {
        self.location = location;
        self
    }

    /// Validates every option and makes the transport. Nothing is spawned or connected yet.
    pub fn build(self) -> Result<OpenSsh> {
        let user_host = UserHost::parse(&self.user_host)?;
        let config_err = |msg: String| Err(Error::Config(msg));
        let is_path = self.program.contains('/');
        let base_name = self.program.rsplit('/').next().unwrap_or("");
        if !(matches!(self.program.as_str(), "ssh" | "hpnssh") || is_path && !base_name.is_empty())
        {
            return config_err(format!(
                "ssh program {:?} is neither \"ssh\", \"hpnssh\" nor a path to a program",
                self.program
            ));
        }
        if self.control_persist < Duration::from_secs(1) {
            return config_err(format!(
                "ControlPersist of {:?} is too short: it must be at least 1 second",
                self.control_persist
            ));
        }
        let backend = Backend::for_mux(self.mux)?;
        if self.mux != Mux::Process && !self.reuse_connections {
            return config_err(format!(
                "mux back end {} needs connection reuse: without a master there is nothing to \
                 multiplex over",
                self.mux
            ));
        }
        if self.verbose > 3 {
            return config_err(format!(
                "verbose level {} is over ssh's maximum of 3",
                self.verbose
            ));
        }
        if let Some(opt) = self
            .extra_options
            .iter()
            .find(|o| o.is_empty() || !o.starts_with('-'))
        {
            return config_err(format!(
                "extra ssh option {opt:?} does not start with '-': give options only, e.g. \"-oCompression=yes\""
            ));
        }
        if self.cipher.starts_with('-') || self.cipher.chars().any(char::is_whitespace) {
            return config_err(format!(
                "cipher {:?} is not a cipher specification",
                self.cipher
            ));
        }
        let ssh_config = match self.ssh_config {
            None => None,
            Some(p) => {
                let abs = std::path::absolute(&p)
                    .map_err(|e| Error::Config(format!("ssh_config path {}: {e}", p.display())))?;
                if !abs.is_file() {
                    return config_err(format!(
                        "ssh_config file {} does not exist or is not a file",
                        abs.display()
                    ));
                }
                Some(abs)
            }
        };
        let socket_dir = crate::socket_dir::resolve(self.socket_dir)?;

        let mut base_args = vec![self.program.clone()];
        base_args.extend(self.extra_options.iter().cloned());
        if !self.cipher.is_empty() {
            base_args.push("-c".into());
            base_args.push(self.cipher.clone());
        }
        if let Some(t) = self.connect_timeout {
            let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
            base_args.push(format!("-oConnectTimeout={}s", secs.max(1)));
        }
        for _ in 0..self.verbose {
            base_args.push("-v".into());
        }
        if let Some(port) = self.port {
            base_args.push("-p".into());
            base_args.push(port.to_string());
        }
        if let Some(cfg) = &ssh_config {
            base_args.push("-F".into());
            base_args.push(cfg.to_string_lossy().into_owned());
        }

        let mut cache_namespace = format!(
            "{}#{}#{}",
            user_host,
            self.port.map(|p| p.to_string()).unwrap_or_default(),
            ssh_config
                .as_deref()
                .map(|p| conn_lease::namespace_hash(p.as_os_str().as_encoded_bytes()))
                .unwrap_or_default()
        );
        // Extra options can change where a master goes and as whom (-oHostname, -oUser, -i,
        // -oProxyJump …), and the cipher is the master's: masters made with other options are
        // never reused. The defaults add nothing, so the common namespace stays readable.
        if self.extra_options != DEFAULT_EXTRA_OPTIONS || self.cipher != DEFAULT_CIPHER {
            let mut options = self.extra_options.join("\0");
            options.push_str("\0-c\0");
            options.push_str(&self.cipher);
            cache_namespace.push('#');
            cache_namespace.push_str(&conn_lease::namespace_hash(options.as_bytes()));
        }
        Ok(OpenSsh::from_config(Config {
            user_host,
            location: self.location,
            program: self.program,
            base_args,
            reuse_connections: self.reuse_connections,
            mux: self.mux,
            backend,
            control_persist: Duration::from_secs(self.control_persist.as_secs()),
            master_start_timeout: self
                .connect_timeout
                .map_or(MASTER_START_TIMEOUT, |t| t + AUTH_TIMEOUT),
            refresh_margin: self.refresh_margin,
            exit_masters_on_shutdown: self.exit_masters_on_shutdown,
            socket_dir,
            cache_namespace,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conn_core::Remote;

    fn build(b: OpenSshBuilder) -> Result<OpenSsh> {
        b.socket_dir("/tmp/conn-unit").build()
    }

    #[test]
    fn default_command_line_matches_the_spec() {
        let ssh = build(OpenSsh::builder("u@h")).unwrap();
        assert_eq!(
            ssh.config().base_args,
            [
                "ssh",
                "-oBatchMode=yes",
                "-oServerAliveInterval=0",
                "-x",
                "-T",
                "-c",
                "^aes256-gcm@openssh.com"
            ]
        );
        let ssh = build(
            OpenSsh::builder("h")
                .ssh_program("hpnssh")
                .cipher("")
                .port(2222)
                .verbose(2)
                .connect_timeout(Duration::from_millis(1500))
                .extra_options(["-oCompression=yes"]),
        )
        .unwrap();
        assert_eq!(
            ssh.config().base_args,
            [
                "hpnssh",
                "-oCompression=yes",
                "-oConnectTimeout=2s",
                "-v",
                "-v",
                "-p",
                "2222"
            ]
        );
    }

    #[test]
    fn bad_options_are_refused_with_the_value_named() {
        for (b, needle) in [
            (OpenSsh::builder("a b"), "\"a b\""),
            (OpenSsh::builder("h").ssh_program("rm"), "\"rm\""),
            (
                OpenSsh::builder("h").control_persist(Duration::ZERO),
                "at least 1 second",
            ),
            (OpenSsh::builder("h").verbose(4), "verbose level 4"),
            (OpenSsh::builder("h").extra_options(["x"]), "\"x\""),
            (
                OpenSsh::builder("h").ssh_config("/nonexistent/cfg"),
                "/nonexistent/cfg",
            ),
        ] {
            let err = build(b).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should contain {needle}");
        }
        let long = format!("/tmp/{}", "x".repeat(60));
        let err = OpenSsh::builder("h")
            .socket_dir(&long)
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&long) && err.contains("Unix socket limit"),
            "{err}"
        );
    }

    #[test]
    fn namespace_distinguishes_user_host_port_config_and_options() {
        let a = build(OpenSsh::builder("u@h")).unwrap().cache_namespace();
        let b = build(OpenSsh::builder("u@h").port(22))
            .unwrap()
            .cache_namespace();
        let c = build(OpenSsh::builder("v@h")).unwrap().cache_namespace();
        let cfg = tempfile::NamedTempFile::new().unwrap();
        let d = build(OpenSsh::builder("u@h").ssh_config(cfg.path()))
            .unwrap()
            .cache_namespace();
        assert_eq!(a, "u@h##");
        assert_eq!(b, "u@h#22#");
        assert!(a != c && a != d && d.starts_with("u@h##") && d.len() == "u@h##".len() + 43);
        let other_user = OpenSsh::builder("u@h").extra_options(["-oUser=root", "-T"]);
        let e = build(other_user).unwrap().cache_namespace();
        let f = build(OpenSsh::builder("u@h").cipher(""))
            .unwrap()
            .cache_namespace();
        assert!(
            e.starts_with("u@h###") && e != f && f.starts_with("u@h###"),
            "{e} {f}"
        );
        let verbose = build(OpenSsh::builder("u@h").verbose(2))
            .unwrap()
            .cache_namespace();
        assert_eq!(verbose, a, "-v changes nothing the master is");
    }
}
