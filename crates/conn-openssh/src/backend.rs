//! The choice of a session back end: [`Mux`], what a caller names, and `Backend`, what the
//! builder made of it once it checked that this build compiled it in. Each back end lives in
//! its own module (`process_mux`, `native_mux`); the one dispatch to them needs a connection,
//! so it lives with the connection (`connection/dispatch.rs`): a connection uses the back ends,
//! and they know nothing of it.

use conn_core::{Error, Result};

/// How a connection's sessions reach its master. The master itself is always `ssh -M`.
///
/// Every variant exists whatever the features; asking for one that is not compiled in is an
/// error from [`OpenSshBuilder::build`](crate::OpenSshBuilder::build) that names the feature.
/// New back ends may come, so a `match` needs a wildcard arm:
///
/// ```
/// use conn_openssh::Mux;
/// fn describe(mux: Mux) -> &'static str {
///     match mux {
///         Mux::Process => "one ssh client per command",
///         Mux::Native => "in-process sessions",
///         _ => "another back end",
///     }
/// }
/// assert_eq!(describe("native".parse().unwrap()), "in-process sessions");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mux {
    /// Spawn an `ssh -S <socket>` client per command: what OpenSSH users know (the default).
    #[default]
    Process,
    /// Speak OpenSSH's mux protocol (`PROTOCOL.mux`) from this process: no client spawn per
    /// command, and an exact line between "the remote command exited 255" and "the transport
    /// failed". Needs the `native-mux` feature and connection reuse.
    Native,
}

impl std::str::FromStr for Mux {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "process" => Ok(Mux::Process),
            "native" => Ok(Mux::Native),
            _ => Err(Error::Config(format!(
                "mux back end {s:?} is neither \"process\" nor \"native\""
            ))),
        }
    }
}

impl std::fmt::Display for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mux::Process => "process",
            Mux::Native => "native",
        })
    }
}

/// A back end chosen and checked by the builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Process,
    #[cfg(feature = "native-mux")]
    Native,
}

impl Backend {
    /// The back end for `mux`, or the error that says how to get it.
    pub(crate) fn for_mux(mux: Mux) -> Result<Backend> {
        match mux {
            Mux::Process => Ok(Backend::Process),
            #[cfg(feature = "native-mux")]
            Mux::Native => Ok(Backend::Native),
            #[cfg(not(feature = "native-mux"))]
            Mux::Native => Err(Error::Config(
                "Mux::Native is not compiled in: enable the `native-mux` feature of conn (or \
                 conn-openssh), or use Mux::Process"
                    .to_string(),
            )),
        }
    }
}
