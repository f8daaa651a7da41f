//! What a caller holds: the guard of one session slot, and the shared connection behind it.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::ConnectionPool;
use crate::child::RemoteChild;
use crate::command::Cmd;
use crate::error::Result;
use crate::job::Job;
use crate::status::Output;
use crate::traits::{Connection, Transport};

/// A pooled connection, shared by the pool and the guards checked out on it. The pool's
/// shutdown marks it closing; whoever lets go of it last (the pool, or the last guard still out
/// at shutdown) shuts it down.
pub(super) struct Slot<C: Connection> {
    pub(super) conn: C,
    pub(super) closing: AtomicBool,
}

impl<C: Connection> Drop for Slot<C> {
    fn drop(&mut self) {
        if *self.closing.get_mut() {
            self.conn.shutdown();
        }
    }
}

/// A checked-out session slot on a pooled connection; dereferences to the connection and
/// gives the slot back when dropped.
pub struct PooledConnection<T: Transport> {
    pub(super) conn: Option<Arc<Slot<T::Connection>>>,
    pub(super) id: usize,
    pub(super) pool: ConnectionPool<T>,
}

impl<T: Transport> PooledConnection<T> {
    /// The connection's id within its pool (creation order).
    pub fn id(&self) -> usize {
        self.id
    }

    /// Starts `cmd` on this connection; the child takes this slot with it and gives it back
    /// when it is waited for, killed or dropped (one slot never carries two sessions; a
    /// [`Cmd::kill_remote`] kill runs on it). No retries: [`ConnectionPool::spawn`] has them.
    pub fn spawn(self, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild> {
        Ok(Connection::spawn(&*self, cmd, job)?.hold_connection(self))
    }

    /// Runs `cmd` on this connection and waits for its output. No retries:
    /// [`ConnectionPool::run`] has them.
    pub fn run(&self, cmd: &Cmd, job: &dyn Job) -> Result<Output> {
        Connection::run(&**self, cmd, job)
    }
}

impl<T: Transport> Deref for PooledConnection<T> {
    type Target = T::Connection;
    fn deref(&self) -> &T::Connection {
        &self.conn.as_deref().expect("present until drop").conn
    }
}

impl<T: Transport> Drop for PooledConnection<T> {
    fn drop(&mut self) {
        self.conn = None; // after a shutdown, the last guard out closes the connection here
        self.pool.give_back(self.id);
    }
}

impl<T: Transport> fmt::Debug for PooledConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("pool", &self.pool.name())
            .field("id", &self.id)
            .finish()
    }
}
