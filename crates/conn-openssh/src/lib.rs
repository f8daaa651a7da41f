//! conn's OpenSSH transport: commands run over pooled ControlMaster connections.
//!
//! An [`OpenSsh`] value describes one endpoint and all its ssh options; a
//! [`ConnectionPool`](conn_core::ConnectionPool) of it keeps up to `capacity` sessions per
//! master. Each connection leases its own ControlPath name (crate `conn-lease`), so no two live
//! processes ever share a master while a new process still attaches at once to a master that
//! an earlier one left alive (`ControlPersist`).
//!
//! ```no_run
//! use conn_core::{Cmd, ConnectionPool, SimpleJob};
//! use conn_openssh::OpenSsh;
//! let pool = ConnectionPool::new(OpenSsh::builder("backup@db-1").build()?, "shared", 8)?;
//! let out = pool.run(&Cmd::new(["zfs", "list", "-H"]), &SimpleJob::new())?;
//! println!("{}", out.stdout_lossy());
//! pool.shutdown(); // the master stays alive for the next process
//! # Ok::<(), conn_core::Error>(())
//! ```
#![warn(missing_docs)]
// One unsafe block: getpwuid_r(3) for the home directory (socket_dir.rs), allowed there.
#![deny(unsafe_code)]

mod backend;
mod config;
mod connection;
mod location;
mod master;
#[cfg(feature = "native-mux")]
mod native_mux;
mod process_mux;
mod socket_dir;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conn_core::{Error, Remote, Result, Transport, UserHost};
use conn_lease::{LeaseManager, ttl_for_control_persist};

pub use backend::Mux;
pub use config::{
    DEFAULT_CIPHER, DEFAULT_CONTROL_PERSIST, DEFAULT_EXTRA_OPTIONS, DEFAULT_REFRESH_MARGIN,
    OpenSshBuilder,
};
pub use connection::OpenSshConnection;
pub use location::Location;
pub use socket_dir::default_socket_dir;

/// The check of the fuzz target `mux_decode`, for `cargo fuzz` only (it sets `cfg(fuzzing)`):
/// no part of the API.
#[cfg(all(fuzzing, feature = "native-mux"))]
pub use native_mux::fuzz_check::mux_decode as fuzz_mux_decode;

use config::Config;

/// The OpenSSH endpoint: a [`Transport`] whose connections are ssh ControlMasters.
#[derive(Debug)]
pub struct OpenSsh {
    config: Arc<Config>,
    /// One lease manager per pool name, made on first use.
    leases: Mutex<HashMap<String, Arc<LeaseManager>>>,
}

impl OpenSsh {
    /// Starts building a transport to `user_host` (`host` or `user@host`, validated by
    /// [`OpenSshBuilder::build`]).
    pub fn builder(user_host: &str) -> OpenSshBuilder {
        OpenSshBuilder::new(user_host)
    }

    pub(crate) fn from_config(config: Config) -> Self {
        OpenSsh {
            config: Arc::new(config),
            leases: Mutex::new(HashMap::new()),
        }
    }

    #[cfg(test)]
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// How sessions reach the master.
    pub fn mux(&self) -> Mux {
        self.config.mux
    }

    /// The program and the options every ssh invocation of this endpoint starts with, before
    /// conn adds `-S <socket>` and the host: for tools that must spawn the very same ssh
    /// themselves (a benchmark's hand-spawned baseline, say).
    pub fn ssh_command_prefix(&self) -> &[String] {
        &self.config.base_args
    }

    /// The ssh client program (`ssh`, `hpnssh` or a path).
    pub fn ssh_program(&self) -> &str {
        &self.config.program
    }

    /// The lease namespace of a pool: `<location>#<endpoint namespace>#<pool name>`.
    pub fn lease_namespace(&self, pool_name: &str) -> String {
        format!(
            "{}#{}#{}",
            self.config.location, self.config.cache_namespace, pool_name
        )
    }

    /// The root of the lease directories (the socket directory).
    pub fn socket_dir(&self) -> &std::path::Path {
        &self.config.socket_dir
    }

    fn lease_manager(&self, pool_name: &str) -> Result<Arc<LeaseManager>> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = leases.get(pool_name) {
            return Ok(Arc::clone(m));
        }
        let manager = LeaseManager::new(
            self.config.socket_dir.clone(),
            &self.lease_namespace(pool_name),
            ttl_for_control_persist(self.config.control_persist),
        )
        .map_err(|e| Error::Setup {
            context: format!(
                "lease directory for pool {pool_name:?} of {}",
                self.config.user_host
            ),
            source: Box::new(e),
        })?;
        let manager = Arc::new(manager);
        leases.insert(pool_name.to_string(), Arc::clone(&manager));
        Ok(manager)
    }
}

impl OpenSsh {
    /// The side of a transfer this endpoint is on (part of the lease namespace).
    pub fn location(&self) -> Location {
        self.config.location
    }
}

impl Remote for OpenSsh {
    fn user_host(&self) -> Option<&UserHost> {
        Some(&self.config.user_host)
    }

    fn cache_namespace(&self) -> String {
        self.config.cache_namespace.clone()
    }
}

impl Transport for OpenSsh {
    type Connection = OpenSshConnection;

    /// Leases a ControlPath name for the new connection (file operations only; the master is
    /// started by the first refresh).
    fn connect(&self, pool_name: &str) -> Result<OpenSshConnection> {
        let lease = if self.config.reuse_connections {
            let lease = self
                .lease_manager(pool_name)?
                .acquire()
                .map_err(|e| Error::Setup {
                    context: format!("leasing a control socket for {}", self.config.user_host),
                    source: Box::new(e),
                })?;
            Some(lease)
        } else {
            None
        };
        Ok(OpenSshConnection::new(Arc::clone(&self.config), lease))
    }
}
