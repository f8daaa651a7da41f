//! [`Endpoint`]: the local host or an OpenSSH endpoint, chosen at run time (from a config
//! file, say), behind one pool type with static dispatch: a `match`, no `dyn`.

use conn_core::{Cmd, Connection, Job, Remote, RemoteChild, Result, Transport, UserHost};
use conn_local::{Local, LocalConnection};
use conn_openssh::{OpenSsh, OpenSshConnection};

/// An endpoint of either kind, so that one `ConnectionPools<Endpoint>` (or a list of pools)
/// holds the local host and remote hosts alike.
///
/// ```
/// use conn::prelude::*;
/// // "" is this host (no shell, no ssh); anything else a `[user@]host` for ssh.
/// let endpoint = Endpoint::parse("", |host| OpenSsh::builder(host).build())?;
/// assert!(matches!(endpoint, Endpoint::Local(_)));
/// let pool = ConnectionPool::new(endpoint, "shared", DEFAULT_CAPACITY)?;
/// let out = pool.run(&Cmd::new(["echo", "hi"]), &SimpleJob::new())?;
/// assert_eq!(out.stdout, b"hi\n");
/// # Ok::<(), conn::Error>(())
/// ```
#[derive(Debug)]
pub enum Endpoint {
    /// This host: direct exec.
    Local(Local),
    /// A remote host over OpenSSH ControlMasters.
    OpenSsh(OpenSsh),
}

impl Endpoint {
    /// The local host for an empty string, else `build(user_host)` (which validates it).
    pub fn parse(user_host: &str, build: impl FnOnce(&str) -> Result<OpenSsh>) -> Result<Endpoint> {
        if user_host.is_empty() {
            Ok(Endpoint::Local(Local::new()))
        } else {
            build(user_host).map(Endpoint::OpenSsh)
        }
    }
}

impl From<Local> for Endpoint {
    fn from(l: Local) -> Self {
        Endpoint::Local(l)
    }
}

impl From<OpenSsh> for Endpoint {
    fn from(s: OpenSsh) -> Self {
        Endpoint::OpenSsh(s)
    }
}

impl Remote for Endpoint {
    fn user_host(&self) -> Option<&UserHost> {
        match self {
            Endpoint::Local(l) => l.user_host(),
            Endpoint::OpenSsh(s) => s.user_host(),
        }
    }

    fn cache_namespace(&self) -> String {
        match self {
            Endpoint::Local(l) => l.cache_namespace(),
            Endpoint::OpenSsh(s) => s.cache_namespace(),
        }
    }
}

impl Transport for Endpoint {
    type Connection = EndpointConnection;

    fn connect(&self, pool_name: &str) -> Result<EndpointConnection> {
        Ok(match self {
            Endpoint::Local(l) => EndpointConnection::Local(l.connect(pool_name)?),
            Endpoint::OpenSsh(s) => EndpointConnection::OpenSsh(Box::new(s.connect(pool_name)?)),
        })
    }
}

/// A connection of an [`Endpoint`] pool.
#[derive(Debug)]
pub enum EndpointConnection {
    /// To this host.
    Local(LocalConnection),
    /// Over an ssh master (boxed: a local connection is empty, and a pool holds few of either).
    OpenSsh(Box<OpenSshConnection>),
}

impl Connection for EndpointConnection {
    fn spawn(&self, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild> {
        match self {
            EndpointConnection::Local(c) => c.spawn(cmd, job),
            EndpointConnection::OpenSsh(c) => c.spawn(cmd, job),
        }
    }

    fn refresh(&self, job: &dyn Job) -> Result<()> {
        match self {
            EndpointConnection::Local(c) => c.refresh(job),
            EndpointConnection::OpenSsh(c) => c.refresh(job),
        }
    }

    fn shutdown(&self) {
        match self {
            EndpointConnection::Local(c) => c.shutdown(),
            EndpointConnection::OpenSsh(c) => c.shutdown(),
        }
    }
}
