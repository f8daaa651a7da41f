//! The connection pool: an indexed max-heap of connections keyed on (free slots, last use).
//!
//! Each connection serves up to `capacity` sessions at once (sshd's `MaxSessions` is 10 by
//! default; conn's default capacity is 8). [`ConnectionPool::get`] hands out the connection with
//! the most free slots, ties going to the most recently modified one (LIFO: the hottest master,
//! least likely to have timed out), and makes a new connection only when every existing one is
//! full. A checked-out connection stays in the heap with one slot fewer, so the heap never holds
//! a duplicate; giving the slot back re-stamps it and restores heap order in O(log n), because
//! every entry knows its heap position.
//!
//! A connection is made outside the pool's lock, as deadpool creates its objects outside its
//! slot lock: under the lock the maker only reserves a pending entry, which the threads that
//! arrive while every connection is full join (each taking one of its slots) instead of making
//! connections of their own; the maker then connects unlocked and publishes the entry, or rolls
//! it back, under the lock again. Gets and give-backs on the other connections never wait for a
//! `Transport::connect` (for OpenSSH: lease files).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::child::RemoteChild;
use crate::command::Cmd;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::status::Output;
use crate::traits::{Connection, Transport};

mod guard;
mod named;
mod state;

pub use guard::PooledConnection;
use guard::Slot;
pub use named::ConnectionPools;
pub use state::ConnectionState;
use state::{Made, Pending, State};

/// Sessions per connection unless told otherwise: below sshd's default `MaxSessions` of 10, to
/// leave room for sessions sshd has not finished closing yet.
pub const DEFAULT_CAPACITY: usize = 8;

/// A thread-safe pool of connections to one endpoint. Cheap to clone (shared).
///
/// ```
/// # use conn_core::*;
/// # let transport = conn_testkit::transports::Null; // any `Transport`
/// let pool = ConnectionPool::new(transport, "shared", 8).unwrap();
/// let job = SimpleJob::new();
/// {
///     let conn = pool.get(&job).unwrap(); // a refreshed connection; the slot goes back on drop
///     conn.run(&Cmd::new(["true"]), &job).unwrap();
/// }
/// pool.shutdown();
/// ```
pub struct ConnectionPool<T: Transport> {
    shared: Arc<Shared<T>>,
}

impl<T: Transport> Clone for ConnectionPool<T> {
    fn clone(&self) -> Self {
        ConnectionPool {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<T: Transport> {
    transport: Arc<T>,
    name: String,
    capacity: usize,
    state: Mutex<State<T::Connection>>,
    /// Signalled when a pending connection is published or rolled back.
    made: Condvar,
    refusals_retried: AtomicU64,
    restarts_retried: AtomicU64,
    ran_retried: AtomicU64,
}

/// Rolls a pending connection back if its maker never publishes it (its connect failed, or
/// panicked): the threads that joined it are woken and start over.
struct Making<'a, T: Transport> {
    pool: &'a ConnectionPool<T>,
    ticket: u64,
    armed: bool,
}

impl<T: Transport> Drop for Making<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.lock().settle(self.ticket, Made::Failed);
            self.pool.shared.made.notify_all();
        }
    }
}

impl<T: Transport> ConnectionPool<T> {
    /// A pool named `name` whose connections each serve at most `capacity` sessions at once.
    /// Fails for a capacity of 0.
    pub fn new(transport: T, name: impl Into<String>, capacity: usize) -> Result<Self> {
        Self::with_shared_transport(Arc::new(transport), name, capacity)
    }

    /// Like [`ConnectionPool::new`] for a transport shared with other pools.
    pub fn with_shared_transport(
        transport: Arc<T>,
        name: impl Into<String>,
        capacity: usize,
    ) -> Result<Self> {
        let name = name.into();
        if capacity == 0 {
            return Err(Error::Config(format!(
                "capacity of connection pool {name:?} is 0: it must be at least 1"
            )));
        }
        Ok(ConnectionPool {
            shared: Arc::new(Shared {
                transport,
                name,
                capacity,
                state: Mutex::new(State {
                    entries: Vec::new(),
                    heap: Vec::new(),
                    clock: 0,
                    shut_down: false,
                    pending: Vec::new(),
                    next_ticket: 0,
                }),
                made: Condvar::new(),
                refusals_retried: AtomicU64::new(0),
                restarts_retried: AtomicU64::new(0),
                ran_retried: AtomicU64::new(0),
            }),
        })
    }

    /// The pool's name (part of the lease namespace of ssh transports).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Sessions per connection.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// The transport the connections come from.
    pub fn transport(&self) -> &T {
        &self.shared.transport
    }

    fn lock(&self) -> MutexGuard<'_, State<T::Connection>> {
        // Every critical section below leaves the heap consistent before it can panic.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks out one session slot on the best connection (making a connection if all are
    /// full) and refreshes the connection within `job` (for ssh: the master is alive, or
    /// restarted), like deadpool's recycle. The slot is given back when the returned guard
    /// drops, also when the refresh fails.
    pub fn get(&self, job: &dyn Job) -> Result<PooledConnection<T>> {
        let conn = self.checkout()?;
        conn.refresh(job)?;
        Ok(conn)
    }

    /// A slot whose connection is not refreshed: for a dry run, which must not start a master,
    /// and for tools that inspect connections (say, to end the masters left alive) without
    /// starting anything. A command started on it may find its connection dead.
    pub fn get_unrefreshed(&self) -> Result<PooledConnection<T>> {
        self.checkout()
    }

    /// Takes one slot: on the best connection if it has one free, else on a connection being
    /// made (waiting until it is published), else on a new connection, made outside the lock.
    fn checkout(&self) -> Result<PooledConnection<T>> {
        let mut state = self.lock();
        loop {
            if state.shut_down {
                return Err(Error::PoolShutdown {
                    pool: self.shared.name.clone(),
                });
            }
            if let Some(&top) = state.heap.first()
                && state.entries[top].free > 0
            {
                state.entries[top].free -= 1;
                state.sift_down(0);
                return Ok(self.guard(&state, top));
            }
            // Every connection is full. A connection being made with a slot left is joined
            // rather than a second one made, so that a connection is made only when every
            // existing one is full and every pending one is promised whole, even with many
            // threads asking at once.
            let capacity = self.shared.capacity;
            let joinable = state
                .pending
                .iter_mut()
                .find(|p| p.made == Made::Connecting && p.reserved < capacity);
            let Some(pending) = joinable else {
                break;
            };
            pending.reserved += 1;
            pending.waiters += 1;
            let ticket = pending.ticket;
            while state.pending_mut(ticket).made == Made::Connecting {
                state = self
                    .shared
                    .made
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            match state.collect(ticket) {
                Made::Ready(id) if !state.shut_down => return Ok(self.guard(&state, id)),
                // Its connect failed, or the pool shut down meanwhile: start over (and maybe
                // make one ourselves, with an error of our own if it fails again).
                _ => continue,
            }
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push(Pending {
            ticket,
            reserved: 1,
            waiters: 0,
            made: Made::Connecting,
        });
        drop(state);
        let mut making = Making {
            pool: self,
            ticket,
            armed: true,
        };
        // Unlocked: Transport::connect is cheap by contract (no network) but may touch the
        // filesystem, and nobody else's get or give-back should wait for that.
        let conn = self.shared.transport.connect(&self.shared.name)?;
        let slot = Arc::new(Slot {
            conn,
            closing: AtomicBool::new(false),
        });
        let mut state = self.lock();
        making.armed = false;
        if state.shut_down {
            state.settle(ticket, Made::Failed);
            drop(state);
            self.shared.made.notify_all();
            // Shut down before it was ever handed out: it closes as the pool's others did.
            slot.closing.store(true, Ordering::Release);
            drop(slot);
            return Err(Error::PoolShutdown {
                pool: self.shared.name.clone(),
            });
        }
        let reserved = state.pending_mut(ticket).reserved;
        let id = state.publish(slot, self.shared.capacity, reserved);
        state.settle(ticket, Made::Ready(id));
        let guard = self.guard(&state, id);
        drop(state);
        self.shared.made.notify_all();
        Ok(guard)
    }

    /// The guard of one slot already taken on entry `id`.
    fn guard(&self, state: &State<T::Connection>, id: usize) -> PooledConnection<T> {
        PooledConnection {
            conn: Some(Arc::clone(&state.entries[id].conn)),
            id,
            pool: self.clone(),
        }
    }

    /// Gives a slot back explicitly; the same as dropping the guard.
    pub fn return_connection(&self, conn: PooledConnection<T>) {
        drop(conn);
    }

    fn give_back(&self, id: usize) {
        let mut state = self.lock();
        if state.shut_down {
            return; // the connection was closed by shutdown; nothing to give back to
        }
        let capacity = self.shared.capacity;
        let entry = &mut state.entries[id];
        debug_assert!(entry.free < capacity, "slot returned twice");
        entry.free = (entry.free + 1).min(capacity);
        let pos = entry.pos;
        let stamp = state.tick();
        state.entries[id].last_modified = stamp;
        state.sift_up(pos);
    }

    /// Runs `cmd` on a pooled connection within `job` and waits for its output:
    /// [`ConnectionPool::spawn`] then [`RemoteChild::wait_with_output`], with the pool's
    /// retries (see [`ConnectionPool::spawn`]) also covering failures that surface only while
    /// waiting: a session the server refused, or a master that died before the session opened
    /// (the process back end learns of those from the ssh client's exit).
    pub fn run(&self, cmd: &Cmd, job: &dyn Job) -> Result<Output> {
        self.with_retries(cmd, job, || {
            Ok(self.spawn_once(cmd, job)?.wait_with_output()?)
        })
    }

    /// Runs `cmd` like [`ConnectionPool::run`], retries included, handing what it writes to
    /// the pipes it was given ([`Stream::Piped`](crate::Stream::Piped)) to `sink` as it arrives
    /// instead of collecting it ([`RemoteChild::wait_streaming`]): for output of any size, in
    /// bounded memory. An attempt that never started wrote nothing to `sink` (the transport's
    /// own complaints on stderr are held back until that is known). The returned `Output`
    /// has empty `stdout` and `stderr`.
    pub fn run_streaming(
        &self,
        cmd: &Cmd,
        job: &dyn Job,
        sink: &mut dyn crate::wait::OutputSink,
    ) -> Result<Output> {
        let mut first = true;
        self.with_retries(cmd, job, || {
            if !std::mem::take(&mut first) {
                sink.new_attempt();
            }
            Ok(self.spawn_once(cmd, job)?.wait_streaming(&mut *sink)?)
        })
    }

    /// Starts `cmd` on a pooled connection within `job`; the child holds its session slot
    /// until it is waited for, killed or dropped.
    ///
    /// The pool absorbs every failure where the command provably never started
    /// ([`Error::is_retryable`]): a session the server refused (sshd's `MaxSessions`) is
    /// retried on the then-best connection with a short exponential backoff, and a master
    /// that died or refuses its socket is restarted by the next refresh and the command
    /// tried again (at most three times), all within the job's deadline (or about 5 s without
    /// one). A caller without a retry loop thus loses nothing to a master that died between
    /// commands. A command that may have run is never retried; a refresh that cannot start a
    /// master is returned at once. What the back end learns only when the command ends (the
    /// process back end's refused session, from its ssh client's exit) is retried by
    /// [`ConnectionPool::run`], not here: this child has already been handed out.
    pub fn spawn(&self, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild> {
        self.with_retries(cmd, job, || self.spawn_once(cmd, job))
    }

    fn spawn_once(&self, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild, Failure> {
        let conn = if cmd.is_dry_run() {
            self.checkout()?
        } else {
            self.get(job).map_err(Failure::Refresh)?
        };
        Ok(conn.spawn(cmd, job)?)
    }

    /// Calls `attempt` again for what `cmd`'s retry policy allows: the policy of
    /// [`ConnectionPool::spawn`], with one budget for everything but refusals.
    fn with_retries<R>(
        &self,
        cmd: &Cmd,
        job: &dyn Job,
        mut attempt: impl FnMut() -> Result<R, Failure>,
    ) -> Result<R> {
        const MAX_BACKOFF: Duration = Duration::from_millis(50);
        const MAX_REFUSALS_WITHOUT_DEADLINE: u32 = 100;
        let policy = cmd.retry_policy();
        let mut backoff = Duration::from_millis(1);
        let mut reconnect_delay = policy.first_delay();
        let (mut refusals, mut retries) = (0, 0);
        loop {
            let (err, refresh) = match attempt() {
                Ok(r) => return Ok(r),
                Err(Failure::Refresh(e)) => (e, true),
                Err(Failure::Command(e)) => (e, false),
            };
            let within_deadline = |wait: Duration| match job.deadline() {
                Some(d) => d.remaining() > wait,
                None => true,
            };
            if job.is_cancelled() {
                return Err(err);
            }
            if let Error::SessionRefused { .. } = err {
                if !within_deadline(backoff)
                    || job.deadline().is_none() && refusals >= MAX_REFUSALS_WITHOUT_DEADLINE
                {
                    return Err(err);
                }
                self.shared.refusals_retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(pool = %self.shared.name, ?backoff, "session refused; retrying");
                crate::retry::sleep_within(job.deadline(), job.cancel_token(), backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                refusals += 1;
                continue;
            }
            // A refresh that could not make the connection usable (a master that cannot start)
            // is tried again only when the policy says so, after its backoff: starting masters
            // again and again is otherwise the caller's decision.
            let allowed = if refresh {
                policy.reconnects() && err.is_retryable()
            } else {
                policy.allows(&err)
            };
            let wait = if refresh {
                reconnect_delay
            } else {
                Duration::ZERO
            };
            if !allowed || retries >= policy.max_retries() || !within_deadline(wait) {
                return Err(err);
            }
            retries += 1;
            if err.is_retryable() {
                self.shared.restarts_retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(pool = %self.shared.name, "command did not start ({err}); retrying");
            } else {
                self.shared.ran_retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(pool = %self.shared.name, "idempotent command may have run ({err}); running it again");
            }
            if refresh {
                crate::retry::sleep_within(job.deadline(), job.cancel_token(), wait);
                reconnect_delay = (reconnect_delay * 2).min(policy.longest_delay());
                if job.is_cancelled() {
                    return Err(err);
                }
            }
        }
    }

    /// How many refused sessions [`ConnectionPool::run`] and [`ConnectionPool::spawn`] have
    /// retried so far.
    pub fn refusals_retried(&self) -> u64 {
        self.shared.refusals_retried.load(Ordering::Relaxed)
    }

    /// How many commands that never started for another reason (a master that died, a socket
    /// that refused, a connection that could not be made) the pool has tried again so far.
    pub fn restarts_retried(&self) -> u64 {
        self.shared.restarts_retried.load(Ordering::Relaxed)
    }

    /// How many idempotent commands that may have run (or ran and lost their transport) the
    /// pool has run again so far ([`Cmd::idempotent`]).
    pub fn ran_retried(&self) -> u64 {
        self.shared.ran_retried.load(Ordering::Relaxed)
    }

    /// The state of every connection, by id: for diagnostics and tests.
    pub fn snapshot(&self) -> Vec<ConnectionState> {
        let state = self.lock();
        state
            .entries
            .iter()
            .enumerate()
            .map(|(id, e)| ConnectionState {
                id,
                free: e.free,
                last_modified: e.last_modified,
            })
            .collect()
    }

    /// Closes every connection (each one's [`Connection::shutdown`]); afterwards `get` fails and
    /// giving a slot back does nothing. Idempotent.
    ///
    /// A connection that is idle closes before this returns. One still checked out closes when
    /// its last guard drops: a command in flight is never cut off, and a connection's resources
    /// (an ssh master's lease, say) are never given up while a command still uses them.
    pub fn shutdown(&self) {
        let entries = {
            let mut state = self.lock();
            state.shut_down = true;
            state.heap.clear();
            std::mem::take(&mut state.entries)
        };
        // Every connection is marked before any is dropped, so a shutdown that panics cannot
        // leave the others unmarked. Dropped outside the lock: closing may talk to a master.
        for entry in &entries {
            entry.conn.closing.store(true, Ordering::Release);
        }
        drop(entries);
    }
}

impl<T: Transport> fmt::Debug for ConnectionPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPool")
            .field("name", &self.shared.name)
            .field("capacity", &self.shared.capacity)
            .field("connections", &self.snapshot())
            .finish()
    }
}

/// Why one attempt of the retry loop failed: a refresh that could not make the connection
/// usable (returned at once: a master that cannot start is not started again and again), or
/// the command itself.
enum Failure {
    Refresh(Error),
    Command(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Command(e)
    }
}
