//! [`Location`]: the side of a transfer an endpoint is on, part of the lease namespace.

use std::fmt;
use std::str::FromStr;

use conn_core::{Error, Result};

/// Which side of a transfer an endpoint is: part of the lease namespace, so that a source and
/// a destination that happen to be the same host never share masters (a replication tool runs
/// both ends at once, each with its own pools and deadlines).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Location {
    /// The source side.
    #[default]
    Src,
    /// The destination side.
    Dst,
}

impl Location {
    /// `"src"` or `"dst"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Src => "src",
            Location::Dst => "dst",
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Location {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "src" => Ok(Location::Src),
            "dst" => Ok(Location::Dst),
            _ => Err(Error::Config(format!(
                "location {s:?} is neither \"src\" nor \"dst\""
            ))),
        }
    }
}
