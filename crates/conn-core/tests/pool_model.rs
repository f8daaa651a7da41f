//! Property test of pool fairness: random operation sequences, checked step by step against a
//! plain reference model.
//!
//! A session slot is taken by a guard (`get`, which refreshes the connection, or
//! `get_unrefreshed`) or by a spawned child (`spawn`, whose child holds its slot until it is
//! waited for or dropped); the three must keep the same books.
//!
//! The model is a `Vec` of `(id, free, last_modified)` searched linearly: the connection chosen
//! is the maximum by `(free, last_modified)`; a new one is made only when there is none or the
//! best is full; creation and return stamp with the next sequence number, a get on an existing
//! connection does not. After every operation the pool must have chosen the model's connection,
//! and its snapshot must equal the model's state exactly, which implies `0 ≤ free ≤ capacity`,
//! no duplicate and a minimal connection count; those are also checked on their own.
//!
//! The model is sequential: each connect ends before the next operation, so the connections the
//! pool makes outside its lock (pending, joined by threads that find every connection full)
//! never show here; `pool_connect.rs` tests them with a transport whose connects wait.
//!
//! `PROPTEST_CASES=20000 cargo test --release -p conn-core --test pool_model` runs it long.

use conn_core::{
    Cmd, ConnectionPool, ConnectionState, Error, ExitStatus, PooledConnection, RemoteChild,
    SimpleJob,
};
// Connections that do nothing: the test is about the pool's bookkeeping.
use conn_testkit::transports::Null;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Take a slot with a guard, from `get` (refreshed) or `get_unrefreshed`.
    Get {
        refreshed: bool,
    },
    /// Take a slot with a child of `ConnectionPool::spawn`.
    Spawn,
    /// Give back the held slot at `index % held.len()` (nothing if none is held): a guard by
    /// dropping it or through `return_connection`, a child by dropping it or waiting for it.
    Return {
        index: usize,
        explicit: bool,
    },
    Shutdown,
}

/// Gets and spawns slightly outnumber returns, so the number held drifts up and several
/// connections are needed; shutdown is rare (about 1 in 400 operations) so that most sequences
/// exercise the live pool at length and some end with slots returned after shutdown.
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        150 => any::<bool>().prop_map(|refreshed| Op::Get { refreshed }),
        60 => Just(Op::Spawn),
        190 => (any::<usize>(), any::<bool>())
            .prop_map(|(index, explicit)| Op::Return { index, explicit }),
        1 => Just(Op::Shutdown),
    ]
}

/// The reference model: the obvious, linear-search version of the pool.
struct Model {
    capacity: usize,
    /// (id, free, last_modified), in creation order.
    conns: Vec<(usize, usize, u64)>,
    clock: u64,
    shut_down: bool,
}

impl Model {
    fn new(capacity: usize) -> Self {
        Model {
            capacity,
            conns: Vec::new(),
            clock: 0,
            shut_down: false,
        }
    }

    /// The id the pool must hand out, or `None` after shutdown.
    fn get(&mut self) -> Option<usize> {
        if self.shut_down {
            return None;
        }
        let best = self
            .conns
            .iter_mut()
            .max_by_key(|(_, free, last)| (*free, *last));
        match best {
            Some((id, free, _)) if *free > 0 => {
                *free -= 1;
                Some(*id)
            }
            _ => {
                self.clock += 1;
                let id = self.conns.len();
                self.conns.push((id, self.capacity - 1, self.clock));
                Some(id)
            }
        }
    }

    fn give_back(&mut self, id: usize) {
        if self.shut_down {
            return;
        }
        self.clock += 1;
        let conn = &mut self.conns[id];
        conn.1 += 1;
        conn.2 = self.clock;
    }

    fn shutdown(&mut self) {
        self.shut_down = true;
        self.conns.clear();
    }

    fn snapshot(&self) -> Vec<ConnectionState> {
        self.conns
            .iter()
            .map(|&(id, free, last_modified)| ConnectionState {
                id,
                free,
                last_modified,
            })
            .collect()
    }
}

/// A slot the test holds, and the connection the model says it is on.
enum Held {
    Guard(PooledConnection<Null>),
    Child(usize, Box<RemoteChild>),
}

impl Held {
    fn id(&self) -> usize {
        match self {
            Held::Guard(guard) => guard.id(),
            Held::Child(id, _) => *id,
        }
    }
}

fn check_invariants(
    pool: &ConnectionPool<Null>,
    model: &Model,
    held: usize,
    peak_held: usize,
) -> std::result::Result<(), TestCaseError> {
    let capacity = pool.capacity();
    let snapshot = pool.snapshot();
    prop_assert_eq!(&snapshot, &model.snapshot());
    for c in &snapshot {
        prop_assert!(
            c.free <= capacity,
            "free {} > capacity {}",
            c.free,
            capacity
        );
    }
    let mut ids: Vec<_> = snapshot.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    prop_assert_eq!(
        ids.len(),
        snapshot.len(),
        "duplicate connection in {:?}",
        snapshot
    );
    if !model.shut_down {
        // Held sessions = used slots; and the pool never made more connections than the peak
        // number of sessions held at once required.
        let used: usize = snapshot.iter().map(|c| capacity - c.free).sum();
        prop_assert_eq!(used, held);
        prop_assert_eq!(snapshot.len(), peak_held.div_ceil(capacity));
    } else {
        prop_assert!(snapshot.is_empty());
    }
    Ok(())
}

proptest! {
    #[test]
    fn pool_matches_the_reference_model(
        capacity in 1usize..=6,
        ops in proptest::collection::vec(op(), 0..=200),
    ) {
        let pool = ConnectionPool::new(Null, "model", capacity).unwrap();
        let job = SimpleJob::new();
        let cmd = Cmd::new(["true"]);
        let mut model = Model::new(capacity);
        let mut held: Vec<Held> = Vec::new();
        let mut peak_held = 0;
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Get { refreshed } => {
                    let got = if *refreshed { pool.get(&job) } else { pool.get_unrefreshed() };
                    match (got, model.get()) {
                        (Ok(guard), Some(expected)) => {
                            prop_assert_eq!(guard.id(), expected, "step {}: {:?}", step, op);
                            held.push(Held::Guard(guard));
                        }
                        (Err(Error::PoolShutdown { pool: name }), None) => {
                            prop_assert_eq!(name, "model");
                        }
                        (got, want) => {
                            prop_assert!(
                                false,
                                "step {}: pool gave {:?}, model {:?}",
                                step,
                                got,
                                want
                            );
                        }
                    }
                }
                // A child does not tell its connection: the snapshot compared below does (a
                // slot taken on another connection than the model's changes its free count).
                Op::Spawn => match (pool.spawn(&cmd, &job), model.get()) {
                    (Ok(child), Some(expected)) => held.push(Held::Child(expected, Box::new(child))),
                    (Err(Error::PoolShutdown { pool: name }), None) => {
                        prop_assert_eq!(name, "model");
                    }
                    (got, want) => {
                        prop_assert!(false, "step {}: pool gave {:?}, model {:?}", step, got, want);
                    }
                },
                Op::Return { index, explicit } => {
                    if !held.is_empty() {
                        let slot = held.swap_remove(index % held.len());
                        model.give_back(slot.id());
                        match (slot, *explicit) {
                            (Held::Guard(guard), true) => pool.return_connection(guard),
                            (Held::Child(_, mut child), true) => {
                                prop_assert_eq!(child.wait().ok(), Some(ExitStatus::Code(0)));
                                // Already given back by the wait: dropping gives nothing more.
                                check_invariants(&pool, &model, held.len(), peak_held)?;
                            }
                            (slot, false) => drop(slot),
                        }
                    }
                }
                Op::Shutdown => {
                    pool.shutdown();
                    model.shutdown();
                }
            }
            if !model.shut_down {
                peak_held = peak_held.max(held.len());
            }
            check_invariants(&pool, &model, held.len(), peak_held)?;
        }
        // Whatever is still held goes back; the pool ends with every slot free (or empty).
        for slot in held.drain(..) {
            model.give_back(slot.id());
            drop(slot);
        }
        check_invariants(&pool, &model, 0, peak_held)?;
        if !model.shut_down {
            prop_assert!(pool.snapshot().iter().all(|c| c.free == capacity));
        }
    }
}
