//! Named pools over one endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ConnectionPool;
use crate::error::{Error, Result};
use crate::traits::Transport;

/// Named pools over one endpoint, each with its own capacity: e.g. `"shared"` with capacity 8
/// for short commands and `"dedicated"` with capacity 1 for a long-running stream.
pub struct ConnectionPools<T: Transport> {
    pools: BTreeMap<String, ConnectionPool<T>>,
}

impl<T: Transport> ConnectionPools<T> {
    /// One pool per `(name, capacity)`, all over `transport`. A name given twice or a capacity
    /// of 0 is an [`Error::Config`].
    pub fn new<I, S>(transport: T, capacities: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, usize)>,
        S: Into<String>,
    {
        let transport = Arc::new(transport);
        let mut pools = BTreeMap::new();
        for (name, capacity) in capacities {
            let pool =
                ConnectionPool::with_shared_transport(Arc::clone(&transport), name, capacity)?;
            if pools.contains_key(pool.name()) {
                return Err(Error::Config(format!(
                    "connection pool name {:?} is given twice",
                    pool.name()
                )));
            }
            pools.insert(pool.name().to_string(), pool);
        }
        Ok(ConnectionPools { pools })
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Result<&ConnectionPool<T>> {
        self.pools.get(name).ok_or_else(|| Error::UnknownPool {
            name: name.to_string(),
            known: self.pools.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Every pool, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ConnectionPool<T>)> {
        self.pools.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// Shuts every pool down.
    pub fn shutdown(&self) {
        for pool in self.pools.values() {
            pool.shutdown();
        }
    }
}
