//! Property test of pool fairness: random operation sequences, checked step by step against a
//! plain reference model.
//!
//! The model is a `Vec` of `(id, free, last_modified)` searched linearly: the connection chosen
//! is the maximum by `(free, last_modified)`; a new one is made only when there is none or the
//! best is full; creation and return stamp with the next sequence number, a get on an existing
//! connection does not. After every operation the pool must have chosen the model's connection,
//! and its snapshot must equal the model's state exactly, which implies `0 ≤ free ≤ capacity`,
//! no duplicate and a minimal connection count; those are also checked on their own.
//!
//! `PROPTEST_CASES=20000 cargo test --release -p conn-core --test pool_model` runs it long.

use conn_core::{ConnectionPool, ConnectionState, Error, PooledConnection};
// Connections that do nothing: the test is about the pool's bookkeeping.
use conn_testkit::transports::Null;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Get,
    /// Give back the held guard at `index % held.len()` (nothing if none is held), by dropping
    /// it or through `return_connection`.
    Return {
        index: usize,
        explicit: bool,
    },
    Shutdown,
}

/// Gets slightly outnumber returns, so the number held drifts up and several connections are
/// needed; shutdown is rare (about 1 in 400 operations) so that most sequences exercise the
/// live pool at length and some end with guards returned after shutdown.
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        210 => Just(Op::Get),
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
        let mut model = Model::new(capacity);
        let mut held: Vec<PooledConnection<Null>> = Vec::new();
        let mut peak_held = 0;
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Get => match (pool.get(), model.get()) {
                    (Ok(guard), Some(expected)) => {
                        prop_assert_eq!(guard.id(), expected, "step {}: {:?}", step, op);
                        held.push(guard);
                    }
                    (Err(Error::PoolShutdown { pool: name }), None) => {
                        prop_assert_eq!(name, "model");
                    }
                    (got, want) => {
                        prop_assert!(false, "step {}: pool gave {:?}, model {:?}", step, got, want);
                    }
                },
                Op::Return { index, explicit } => {
                    if !held.is_empty() {
                        let guard = held.swap_remove(index % held.len());
                        model.give_back(guard.id());
                        if *explicit {
                            pool.return_connection(guard);
                        } else {
                            drop(guard);
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
        for guard in held.drain(..) {
            model.give_back(guard.id());
            drop(guard);
        }
        check_invariants(&pool, &model, 0, peak_held)?;
        if !model.shut_down {
            prop_assert!(pool.snapshot().iter().all(|c| c.free == capacity));
        }
    }
}
