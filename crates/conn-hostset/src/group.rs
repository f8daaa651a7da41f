//! Node groups: the names an expression refers to with `@group`, `@source:group`, `@*` or
//! `@@source`, resolved by the caller (this crate does no I/O).

use std::fmt;

/// What a [`GroupResolver`] answered: the source that answered (the default one's name when the
/// expression named none) and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The name of the source that answered: nested `@group`s without a source of their own
    /// are looked up there, as ClusterShell does.
    pub source: String,
    /// Host-set expressions, as the source gives them: separated by commas, spaces or lines,
    /// and possibly holding groups themselves (`@web,@db`, `node[1-8]!node4`).
    pub text: String,
}

/// Why a group could not be resolved, in words that name the group and its source
/// (`unknown group @nope in source local`, `the map upcall of source slurm failed: …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupError {
    message: String,
}

impl GroupError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        GroupError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GroupError {}

/// Where node groups come from: ClusterShell's group sources, or anything else the caller
/// has. `source` is `None` when the expression named no source (`@web`): the resolver's
/// default source answers then.
///
/// The parser calls it once for each group reference it meets (a resolver may cache); a
/// resolver that cannot answer returns a [`GroupError`] naming the group and the source, and
/// the parse fails with it.
pub trait GroupResolver {
    /// The nodes of `group` (`@group`, `@source:group`). A group the source does not know is
    /// an error.
    fn group(&mut self, source: Option<&str>, group: &str) -> Result<Resolved, GroupError>;

    /// Every node of the source (`@*`, `@source:*`, and a caller's `-a`).
    fn all(&mut self, source: Option<&str>) -> Result<Resolved, GroupError>;

    /// The names of the source's groups (`@@source`, where they stand for hosts): the
    /// answering source and the names, without `@`.
    fn list(&mut self, source: Option<&str>) -> Result<(String, Vec<String>), GroupError>;
}

/// The resolver of [`HostSet::parse`](crate::HostSet::parse): there are no groups, and an
/// expression that names one is an error that says so.
pub(crate) struct NoGroups;

impl NoGroups {
    fn error() -> GroupError {
        GroupError::new(
            "node groups are not available here (a program resolves them with \
             HostSet::parse_with_groups)",
        )
    }
}

impl GroupResolver for NoGroups {
    fn group(&mut self, _: Option<&str>, _: &str) -> Result<Resolved, GroupError> {
        Err(Self::error())
    }
    fn all(&mut self, _: Option<&str>) -> Result<Resolved, GroupError> {
        Err(Self::error())
    }
    fn list(&mut self, _: Option<&str>) -> Result<(String, Vec<String>), GroupError> {
        Err(Self::error())
    }
}
