//! The pool's books: every connection's free slots and stamp in an indexed max-heap, and the
//! connections being made outside the lock.

use std::sync::Arc;

use super::guard::Slot;
use crate::traits::Connection;

pub(super) struct State<C: Connection> {
    /// All connections, indexed by id; never shrinks until shutdown empties it for good.
    pub(super) entries: Vec<Entry<C>>,
    /// Entry ids in max-heap order of [`Entry::key`].
    pub(super) heap: Vec<usize>,
    /// The `last_modified` sequence: bumped on every creation and return.
    pub(super) clock: u64,
    pub(super) shut_down: bool,
    /// Connections being made right now, outside the lock (rarely more than one).
    pub(super) pending: Vec<Pending>,
    /// The ticket of the next pending connection.
    pub(super) next_ticket: u64,
}

/// A connection being made outside the lock, with the slots already promised on it.
pub(super) struct Pending {
    pub(super) ticket: u64,
    /// Slots taken on it: its maker's and one per thread that joined it.
    pub(super) reserved: usize,
    /// Threads that joined it and have not yet seen how it ended.
    pub(super) waiters: usize,
    pub(super) made: Made,
}

/// How a pending connection stands.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Made {
    Connecting,
    /// Published as this entry id.
    Ready(usize),
    /// Its connect failed (or the pool shut down first): the threads that joined it start
    /// over.
    Failed,
}

pub(super) struct Entry<C: Connection> {
    pub(super) conn: Arc<Slot<C>>,
    pub(super) free: usize,
    pub(super) last_modified: u64,
    /// Where this entry's id sits in `State::heap`.
    pub(super) pos: usize,
}

impl<C: Connection> Entry<C> {
    /// Most free slots first, then most recently modified.
    pub(super) fn key(&self) -> (usize, u64) {
        (self.free, self.last_modified)
    }
}

impl<C: Connection> State<C> {
    fn key(&self, heap_index: usize) -> (usize, u64) {
        self.entries[self.heap[heap_index]].key()
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        let (ia, ib) = (self.heap[a], self.heap[b]);
        self.entries[ia].pos = a;
        self.entries[ib].pos = b;
    }

    pub(super) fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.key(i) <= self.key(parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    pub(super) fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut best = i;
            if l < self.heap.len() && self.key(l) > self.key(best) {
                best = l;
            }
            if r < self.heap.len() && self.key(r) > self.key(best) {
                best = r;
            }
            if best == i {
                break;
            }
            self.swap(i, best);
            i = best;
        }
    }

    pub(super) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(super) fn pending_mut(&mut self, ticket: u64) -> &mut Pending {
        self.pending
            .iter_mut()
            .find(|p| p.ticket == ticket)
            .expect("a pending connection stays until its last waiter has seen its end")
    }

    /// Records how the pending connection `ticket` ended; it is forgotten once no thread that
    /// joined it has yet to see that.
    pub(super) fn settle(&mut self, ticket: u64, made: Made) {
        let pending = self.pending_mut(ticket);
        pending.made = made;
        if pending.waiters == 0 {
            self.pending.retain(|p| p.ticket != ticket);
        }
    }

    /// A joined thread has seen how `ticket` ended.
    pub(super) fn collect(&mut self, ticket: u64) -> Made {
        let pending = self.pending_mut(ticket);
        pending.waiters -= 1;
        let made = pending.made;
        if pending.waiters == 0 {
            self.pending.retain(|p| p.ticket != ticket);
        }
        made
    }

    /// Adds a connection with `reserved` slots already taken, as the newest entry.
    pub(super) fn publish(
        &mut self,
        conn: Arc<Slot<C>>,
        capacity: usize,
        reserved: usize,
    ) -> usize {
        let id = self.entries.len();
        let pos = self.heap.len();
        let last_modified = self.tick();
        self.entries.push(Entry {
            conn,
            free: capacity - reserved,
            last_modified,
            pos,
        });
        self.heap.push(id);
        self.sift_up(pos);
        id
    }
}

/// One connection's slots, as seen by
/// [`ConnectionPool::snapshot`](crate::ConnectionPool::snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionState {
    /// Position in creation order (0 = first made).
    pub id: usize,
    /// Sessions it can still take.
    pub free: usize,
    /// The pool's sequence number at its creation or last return.
    pub last_modified: u64,
}
