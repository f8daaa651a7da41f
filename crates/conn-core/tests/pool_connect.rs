//! The pool while a connection is being made: `Transport::connect` runs outside the pool's
//! lock, so gets and give-backs on the other connections go on meanwhile; threads that arrive
//! while every connection is full join the connection being made (one connection per
//! `capacity` of them, as if it had been made at once); a failed or interrupted connect wakes
//! them, and a connection made after the pool shut down is closed, never handed out.
//!
//! The transport here makes connections that do nothing, each `connect` waiting at a gate the
//! test opens (connects numbered from 0; those below `free` pass at once). Every wait is bounded:
//! a pool that blocked where it should not fails the test with a timeout instead of hanging it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use conn_core::{Cmd, Connection, ConnectionPool, Error, Job, RemoteChild, Result, Transport};

/// Longest wait for something that must happen: generous for a busy machine.
const BOUND: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Gate {
    /// Connects numbered below this pass; the others wait.
    open_below: Mutex<usize>,
    opened: Condvar,
}

struct Gated {
    gate: Arc<Gate>,
    /// Connects started so far (their numbers).
    started: AtomicUsize,
    /// Each connect's number as it starts waiting or passing.
    entered: Mutex<Sender<usize>>,
    /// Connects whose number is in here fail once the gate lets them through.
    failing: Vec<usize>,
    shutdowns: Arc<AtomicUsize>,
}

struct GatedConn {
    shutdowns: Arc<AtomicUsize>,
}

impl conn_core::Remote for Gated {
    fn user_host(&self) -> Option<&conn_core::UserHost> {
        None
    }
    fn cache_namespace(&self) -> String {
        "-".into()
    }
}

impl Transport for Gated {
    type Connection = GatedConn;
    fn connect(&self, _pool_name: &str) -> Result<GatedConn> {
        let n = self.started.fetch_add(1, Ordering::SeqCst);
        let _ = self.entered.lock().unwrap().send(n);
        let mut open = self.gate.open_below.lock().unwrap();
        while *open <= n {
            open = self.gate.opened.wait(open).unwrap();
        }
        if self.failing.contains(&n) {
            return Err(Error::Config(format!("connect {n} fails on purpose")));
        }
        Ok(GatedConn {
            shutdowns: Arc::clone(&self.shutdowns),
        })
    }
}

impl Connection for GatedConn {
    fn spawn(&self, _cmd: &Cmd, _job: &dyn Job) -> Result<RemoteChild> {
        Err(Error::Config("not used".into()))
    }
    fn refresh(&self, _job: &dyn Job) -> Result<()> {
        Ok(())
    }
    fn shutdown(&self) {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
    }
}

struct Fixture {
    pool: ConnectionPool<Gated>,
    gate: Arc<Gate>,
    entered: Receiver<usize>,
    shutdowns: Arc<AtomicUsize>,
}

fn fixture(capacity: usize, free: usize, failing: Vec<usize>) -> Fixture {
    let gate = Arc::new(Gate::default());
    *gate.open_below.lock().unwrap() = free;
    let (tx, entered) = mpsc::channel();
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let transport = Gated {
        gate: Arc::clone(&gate),
        started: AtomicUsize::new(0),
        entered: Mutex::new(tx),
        failing,
        shutdowns: Arc::clone(&shutdowns),
    };
    Fixture {
        pool: ConnectionPool::new(transport, "shared", capacity).unwrap(),
        gate,
        entered,
        shutdowns,
    }
}

impl Fixture {
    /// Lets connects numbered below `n` through.
    fn open_below(&self, n: usize) {
        *self.gate.open_below.lock().unwrap() = n;
        self.gate.opened.notify_all();
    }

    /// Waits until connect number `n` has started.
    fn wait_entered(&self, n: usize) {
        loop {
            match self.entered.recv_timeout(BOUND) {
                Ok(m) if m == n => return,
                Ok(_) => continue,
                Err(e) => panic!("connect {n} never started: {e}"),
            }
        }
    }

    fn frees(&self) -> Vec<usize> {
        self.pool.snapshot().iter().map(|c| c.free).collect()
    }
}

/// Runs `f` on a thread of its own and returns what it returned, or fails the test when it
/// takes longer than [`BOUND`] (the pool blocked where it should not).
fn bounded<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

#[test]
fn gets_and_give_backs_go_on_while_a_connection_is_made() {
    let fx = fixture(1, 1, vec![]);
    let first = fx.pool.get_unrefreshed().unwrap();
    assert_eq!(first.id(), 0);
    // Every connection is full: this get makes connection 1, and waits at the gate inside
    // Transport::connect.
    let pool = fx.pool.clone();
    let maker = thread::spawn(move || pool.get_unrefreshed().map(|g| g.id()));
    fx.wait_entered(1);
    // Meanwhile connection 0's slot goes back and is taken again: neither waits for the
    // connect in progress (under the old lock both would, until the gate opened).
    let pool = fx.pool.clone();
    let again = bounded("a give-back and a get during a connect", move || {
        drop(first);
        let g = pool.get_unrefreshed().unwrap();
        let id = g.id();
        drop(g);
        (id, pool.snapshot().len())
    });
    assert_eq!(
        again,
        (0, 1),
        "connection 0 served; connection 1 not published yet"
    );
    fx.open_below(2);
    assert_eq!(maker.join().unwrap().unwrap(), 1);
    assert_eq!(fx.frees(), vec![1, 1]);
}

#[test]
fn threads_that_find_every_connection_full_share_the_one_being_made() {
    let capacity = 4;
    let fx = fixture(capacity, 0, vec![]);
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let hold_rx = Arc::new(Mutex::new(hold_rx));
    let (got_tx, got_rx) = mpsc::channel();
    // Five threads on an empty pool, its first connect held at the gate: four slots fit on the
    // connection being made, so the fifth thread must make the second and no thread a third.
    let spawn_one = |fx: &Fixture| {
        let (pool, got, hold) = (fx.pool.clone(), got_tx.clone(), Arc::clone(&hold_rx));
        thread::spawn(move || {
            let guard = pool.get_unrefreshed().unwrap();
            got.send(guard.id()).unwrap();
            // Hold the slot until the test has counted every connection.
            let _ = hold.lock().unwrap().recv_timeout(BOUND);
            drop(guard);
        })
    };
    let mut threads = vec![spawn_one(&fx)];
    fx.wait_entered(0);
    for _ in 0..capacity {
        threads.push(spawn_one(&fx));
    }
    fx.wait_entered(1);
    fx.open_below(usize::MAX);
    let mut per_connection = [0; 2];
    for _ in 0..=capacity {
        let id = got_rx.recv_timeout(BOUND).expect("every thread got a slot");
        per_connection[id] += 1;
    }
    per_connection.sort_unstable();
    assert_eq!(per_connection, [1, capacity], "slots per connection");
    let mut frees = fx.frees();
    frees.sort_unstable();
    assert_eq!(
        frees,
        vec![0, capacity - 1],
        "two connections: one full, one with one slot taken"
    );
    drop(hold_tx);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(fx.frees(), vec![capacity, capacity]);
}

#[test]
fn a_failed_connect_is_its_makers_error_and_wakes_those_who_joined_it() {
    let fx = fixture(2, 0, vec![0]);
    let pool = fx.pool.clone();
    let maker = thread::spawn(move || pool.get_unrefreshed().map(|g| g.id()));
    fx.wait_entered(0);
    // This one joins connection 0 while it is being made, or (if it comes late) finds it
    // failed; either way it makes connection 1 itself once connect 0 has failed.
    let pool = fx.pool.clone();
    let joiner = thread::spawn(move || pool.get_unrefreshed().map(|g| g.id()));
    fx.open_below(usize::MAX);
    let err = maker.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("connect 0 fails"), "{err}");
    assert_eq!(
        joiner.join().unwrap().unwrap(),
        0,
        "the first connection published"
    );
    assert_eq!(fx.frees(), vec![2]);
}

#[test]
fn a_connection_made_after_shutdown_is_closed_and_never_handed_out() {
    let fx = fixture(2, 0, vec![]);
    let pool = fx.pool.clone();
    let maker = thread::spawn(move || pool.get_unrefreshed().map(|g| g.id()));
    fx.wait_entered(0);
    let pool = fx.pool.clone();
    bounded("a shutdown during a connect", move || pool.shutdown());
    fx.open_below(usize::MAX);
    let err = maker.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::PoolShutdown { .. }), "{err}");
    assert_eq!(fx.shutdowns.load(Ordering::SeqCst), 1, "closed at once");
    assert!(fx.pool.snapshot().is_empty());
    assert!(matches!(
        fx.pool.get_unrefreshed().unwrap_err(),
        Error::PoolShutdown { .. }
    ));
}

#[test]
fn a_panicking_connect_wakes_those_who_joined_it() {
    // A transport that panics stands in for a bug: the threads that joined must not hang.
    struct Panicky(AtomicUsize, Mutex<Sender<()>>, Arc<Gate>);
    impl conn_core::Remote for Panicky {
        fn user_host(&self) -> Option<&conn_core::UserHost> {
            None
        }
        fn cache_namespace(&self) -> String {
            "-".into()
        }
    }
    impl Transport for Panicky {
        type Connection = GatedConn;
        fn connect(&self, _pool_name: &str) -> Result<GatedConn> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                let _ = self.1.lock().unwrap().send(());
                let mut open = self.2.open_below.lock().unwrap();
                while *open == 0 {
                    open = self.2.opened.wait(open).unwrap();
                }
                panic!("connect 0 panics on purpose");
            }
            Ok(GatedConn {
                shutdowns: Arc::new(AtomicUsize::new(0)),
            })
        }
    }
    let gate = Arc::new(Gate::default());
    let (tx, rx) = mpsc::channel();
    let pool = ConnectionPool::new(
        Panicky(AtomicUsize::new(0), Mutex::new(tx), Arc::clone(&gate)),
        "shared",
        2,
    )
    .unwrap();
    let p = pool.clone();
    let maker = thread::spawn(move || p.get_unrefreshed().map(|g| g.id()));
    rx.recv_timeout(BOUND).expect("connect 0 started");
    let p = pool.clone();
    let joiner = thread::spawn(move || p.get_unrefreshed().map(|g| g.id()));
    *gate.open_below.lock().unwrap() = 1;
    gate.opened.notify_all();
    assert!(
        maker.join().is_err(),
        "the maker's panic reaches its thread"
    );
    let id = bounded("a get that joined a connect that panicked", move || {
        joiner.join().unwrap().unwrap()
    });
    assert_eq!(id, 0);
}
