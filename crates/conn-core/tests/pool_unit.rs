//! Unit tests of the connection pool against mockall mocks of `Transport` and `Connection`.
//!
//! Each test drives the public API only (`get`, guards, `return_connection`, `run`, `shutdown`,
//! `snapshot`, `refusals_retried`) and checks what the pool asked of the transport and its
//! connections: how many connections it made, which one it handed out, how often each was shut
//! down, and which errors came back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conn_core::{
    Cmd, Connection, ConnectionPool, ConnectionPools, ConnectionState, Error, ExitStatus, Job,
    Location, Output, Remote, Result, SimpleJob, Transport, UserHost,
};
use mockall::{Sequence, mock};

mock! {
    pub Conn {}
    impl Connection for Conn {
        fn run(&self, cmd: &Cmd, job: &dyn Job) -> Result<Output>;
        fn refresh(&self, job: &dyn Job) -> Result<()>;
        fn shutdown(&self);
    }
}

mock! {
    pub Tr {}
    impl Remote for Tr {
        fn location(&self) -> Location;
        fn user_host(&self) -> Option<&'static UserHost>;
        fn cache_namespace(&self) -> String;
    }
    impl Transport for Tr {
        type Connection = MockConn;
        fn connect(&self, pool_name: &str) -> Result<MockConn>;
    }
}

/// What the mocks saw: connect calls (by pool name) and shutdown calls (by connection serial).
#[derive(Default)]
struct Calls {
    connects: Mutex<Vec<String>>,
    shutdowns: Mutex<Vec<usize>>,
}

impl Calls {
    fn connects(&self) -> usize {
        self.connects.lock().unwrap().len()
    }
    fn shutdowns(&self) -> Vec<usize> {
        let mut v = self.shutdowns.lock().unwrap().clone();
        v.sort_unstable();
        v
    }
}

/// A connection numbered `serial` that records its shutdowns and runs nothing.
fn recording_conn(serial: usize, calls: &Arc<Calls>) -> MockConn {
    let mut conn = MockConn::new();
    let calls = Arc::clone(calls);
    conn.expect_shutdown()
        .returning(move || calls.shutdowns.lock().unwrap().push(serial));
    conn
}

/// A transport whose every connect succeeds with a [`recording_conn`], numbered from 0.
fn recording_transport(calls: &Arc<Calls>) -> MockTr {
    let mut transport = MockTr::new();
    let calls = Arc::clone(calls);
    transport.expect_connect().returning(move |name| {
        let serial = {
            let mut connects = calls.connects.lock().unwrap();
            connects.push(name.to_string());
            connects.len() - 1
        };
        Ok(recording_conn(serial, &calls))
    });
    transport
}

/// A transport that hands out exactly one connection, `conn`, and fails any further connect.
fn transport_with(conn: MockConn) -> MockTr {
    let mut transport = MockTr::new();
    let mut conn = Some(conn);
    transport.expect_connect().times(1).returning(move |_| {
        Ok(conn
            .take()
            .expect("the pool made a second connection where one suffices"))
    });
    transport
}

fn pool(calls: &Arc<Calls>, capacity: usize) -> ConnectionPool<MockTr> {
    ConnectionPool::new(recording_transport(calls), "shared", capacity).unwrap()
}

fn frees(pool: &ConnectionPool<MockTr>) -> Vec<usize> {
    pool.snapshot().iter().map(|c| c.free).collect()
}

fn ok_output() -> Output {
    Output {
        status: ExitStatus::Code(0),
        stdout: b"ok\n".to_vec(),
        stderr: Vec::new(),
    }
}

fn refused() -> Error {
    Error::SessionRefused {
        endpoint: "u@h".into(),
        message: "open failed: administratively prohibited".into(),
    }
}

#[test]
fn a_new_connection_is_made_only_when_all_are_full() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 3);
    assert_eq!(calls.connects(), 0, "a pool connects lazily");

    let mut held = Vec::new();
    for expected_free in [2, 1, 0] {
        let guard = pool.get().unwrap();
        assert_eq!(guard.id(), 0);
        held.push(guard);
        assert_eq!(frees(&pool), vec![expected_free]);
        assert_eq!(calls.connects(), 1);
    }
    // Connection 0 is full: the fourth session needs connection 1.
    held.push(pool.get().unwrap());
    assert_eq!(held[3].id(), 1);
    assert_eq!((calls.connects(), frees(&pool)), (2, vec![0, 2]));

    // One slot back on connection 0: connection 1 still has more free slots and is chosen,
    // and nothing new is made.
    held.remove(0);
    assert_eq!(frees(&pool), vec![1, 2]);
    let g = pool.get().unwrap();
    assert_eq!((g.id(), calls.connects()), (1, 2));
    held.push(g);

    // Fill every slot (3 + 3) and one more: only now a third connection appears.
    while frees(&pool).iter().any(|&f| f > 0) {
        held.push(pool.get().unwrap());
        assert_eq!(
            calls.connects(),
            2,
            "made a connection while one had a free slot"
        );
    }
    assert_eq!(held.len(), 6);
    let g = pool.get().unwrap();
    assert_eq!((g.id(), calls.connects()), (2, 3));
    assert_eq!(calls.connects.lock().unwrap().as_slice(), ["shared"; 3]);
}

#[test]
fn most_free_slots_beat_recency() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 2);
    let a = pool.get().unwrap(); // conn 0
    let b = pool.get().unwrap(); // conn 0, now full
    let c = pool.get().unwrap(); // conn 1
    let d = pool.get().unwrap(); // conn 1, now full
    assert_eq!([a.id(), b.id(), c.id(), d.id()], [0, 0, 1, 1]);
    drop(a);
    drop(b); // conn 0: 2 free
    drop(c); // conn 1: 1 free, modified last
    assert_eq!(frees(&pool), vec![2, 1]);
    assert_eq!(pool.get().unwrap().id(), 0);
}

#[test]
fn equal_free_slots_go_to_the_most_recently_modified() {
    // Run the same scenario with both return orders, so that neither "lowest id" nor "highest
    // id" can pass for LIFO.
    for return_conn0_last in [false, true] {
        let calls = Arc::new(Calls::default());
        let pool = pool(&calls, 2);
        let a = pool.get().unwrap();
        let _b = pool.get().unwrap();
        let c = pool.get().unwrap();
        let _d = pool.get().unwrap();
        assert_eq!((a.id(), c.id()), (0, 1));
        if return_conn0_last {
            drop(c);
            drop(a);
        } else {
            drop(a);
            drop(c);
        }
        assert_eq!(frees(&pool), vec![1, 1]);
        let winner = if return_conn0_last { 0 } else { 1 };
        let snapshot = pool.snapshot();
        let latest = snapshot.iter().max_by_key(|s| s.last_modified).unwrap();
        assert_eq!(latest.id, winner);
        let g = pool.get().unwrap();
        assert_eq!(g.id(), winner, "return_conn0_last={return_conn0_last}");
        assert_eq!(calls.connects(), 2);
    }
}

#[test]
fn get_does_not_restamp_but_creation_and_return_do() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 4);
    let a = pool.get().unwrap();
    let created = pool.snapshot()[0].last_modified;
    let b = pool.get().unwrap();
    assert_eq!(pool.snapshot()[0].last_modified, created, "get re-stamped");
    drop(a);
    let returned = pool.snapshot()[0].last_modified;
    assert!(
        returned > created,
        "a return must re-stamp: {returned} <= {created}"
    );
    pool.return_connection(b);
    let snap = pool.snapshot();
    assert!(snap[0].last_modified > returned);
    assert_eq!(snap[0].free, 4);
}

#[test]
fn explicit_return_is_the_same_as_dropping_the_guard() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 2);
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    assert_eq!(frees(&pool), vec![0]);
    pool.return_connection(a);
    assert_eq!(frees(&pool), vec![1]);
    pool.return_connection(b);
    assert_eq!(frees(&pool), vec![2]);
    assert_eq!(calls.connects(), 1);
}

#[test]
fn guards_dereference_to_their_connection() {
    let mut conn = MockConn::new();
    conn.expect_refresh().times(1).returning(|_| Ok(()));
    conn.expect_run()
        .withf(|cmd, _| cmd.argv() == ["echo", "hi"])
        .times(1)
        .returning(|_, _| Ok(ok_output()));
    conn.expect_shutdown().times(1).return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::new();
    {
        let guard = pool.get().unwrap();
        guard.refresh(&job).unwrap();
        assert_eq!(
            guard.run(&Cmd::new(["echo", "hi"]), &job).unwrap(),
            ok_output()
        );
    }
    pool.shutdown();
}

#[test]
fn shutdown_then_return_is_a_noop_and_get_fails() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 1);
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    assert_eq!(pool.snapshot().len(), 2);

    pool.shutdown();
    assert_eq!(
        calls.shutdowns(),
        Vec::<usize>::new(),
        "connections in use close when their guards drop, not under them"
    );
    assert_eq!(pool.snapshot(), Vec::<ConnectionState>::new());

    // Giving slots back after shutdown changes nothing in the pool and does not panic; the
    // last guard of each connection closes it.
    drop(a);
    assert_eq!(calls.shutdowns(), vec![0]);
    pool.return_connection(b);
    assert_eq!(calls.shutdowns(), vec![0, 1]);
    assert_eq!(pool.snapshot(), Vec::<ConnectionState>::new());

    match pool.get() {
        Err(Error::PoolShutdown { pool: name }) => assert_eq!(name, "shared"),
        other => panic!("expected PoolShutdown, got {other:?}"),
    }
    assert_eq!(calls.connects(), 2, "a shut-down pool connected again");
}

#[test]
fn shutdown_closes_each_connection_exactly_once() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 2);
    // Three connections: two full, one half used; guards still held during shutdown.
    let mut held: Vec<_> = (0..5).map(|_| pool.get().unwrap()).collect();
    assert_eq!(calls.connects(), 3);
    let last_of_2 = held.pop().unwrap(); // connection 2 has this one guard
    assert_eq!(last_of_2.id(), 2);
    drop(last_of_2);
    pool.shutdown();
    assert_eq!(
        calls.shutdowns(),
        vec![2],
        "the idle connection closes at once"
    );
    pool.shutdown(); // idempotent
    pool.clone().shutdown(); // clones share the pool
    drop(held);
    assert_eq!(
        calls.shutdowns(),
        vec![0, 1, 2],
        "each closed once, by its last guard"
    );
}

#[test]
fn shutdown_also_works_through_a_strict_mock() {
    // `times(1)` makes mockall itself fail on a second call (at once) or on none (at drop).
    let mut conn = MockConn::new();
    conn.expect_shutdown().times(1).return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let g = pool.get().unwrap();
    pool.shutdown();
    pool.shutdown();
    drop(g);
    drop(pool);
}

#[test]
fn connect_errors_propagate_and_leave_the_pool_consistent() {
    let calls = Arc::new(Calls::default());
    let mut transport = MockTr::new();
    let mut seq = Sequence::new();
    let fail = |_: &str| {
        Err(Error::Connect {
            endpoint: "u@h".into(),
            message: "master did not start".into(),
        })
    };
    // 1st connect fails (empty pool), 2nd succeeds, 3rd fails (pool not empty), 4th succeeds.
    for _ in 0..2 {
        transport
            .expect_connect()
            .times(1)
            .in_sequence(&mut seq)
            .returning(fail);
        let ok_calls = Arc::clone(&calls);
        transport
            .expect_connect()
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_| {
                let serial = {
                    let mut c = ok_calls.connects.lock().unwrap();
                    c.push("ok".into());
                    c.len() - 1
                };
                Ok(recording_conn(serial, &ok_calls))
            });
    }
    let pool = ConnectionPool::new(transport, "shared", 1).unwrap();

    let err = pool.get().unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(pool.snapshot().is_empty());

    let g0 = pool.get().unwrap();
    assert_eq!(g0.id(), 0);
    let before = pool.snapshot();

    let err = pool.get().unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(pool.snapshot(), before, "a failed connect changed the pool");

    let g1 = pool.get().unwrap();
    assert_eq!(g1.id(), 1, "ids must stay dense after a failed connect");
    drop(g0);
    // Connection 0 has a free slot again: no connect (which would fail) is attempted.
    let g0 = pool.get().unwrap();
    assert_eq!(g0.id(), 0);
    drop((g0, g1));
    assert_eq!(frees(&pool), vec![1, 1]);
    pool.shutdown();
    assert_eq!(calls.shutdowns(), vec![0, 1]);
}

#[test]
fn capacity_zero_is_a_config_error() {
    let err = ConnectionPool::new(MockTr::new(), "tiny", 0).unwrap_err();
    match &err {
        Error::Config(msg) => assert!(msg.contains("\"tiny\""), "{msg}"),
        other => panic!("expected Config, got {other:?}"),
    }
    assert!(!err.is_retryable());
    let err = ConnectionPools::new(MockTr::new(), [("shared", 8), ("broken", 0)])
        .err()
        .expect("capacity 0 accepted");
    assert!(
        matches!(&err, Error::Config(m) if m.contains("\"broken\"")),
        "{err:?}"
    );
    assert_eq!(
        ConnectionPool::new(MockTr::new(), "one", 1)
            .unwrap()
            .capacity(),
        1
    );
}

#[test]
fn named_pools_have_their_own_capacities_and_shut_down_together() {
    let calls = Arc::new(Calls::default());
    let pools = ConnectionPools::new(
        recording_transport(&calls),
        [("shared", 8), ("dedicated", 1)],
    )
    .unwrap();
    let shared = pools.pool("shared").unwrap();
    let dedicated = pools.pool("dedicated").unwrap();
    assert_eq!((shared.name(), shared.capacity()), ("shared", 8));
    assert_eq!((dedicated.name(), dedicated.capacity()), ("dedicated", 1));
    let names: Vec<_> = pools.iter().map(|(n, p)| (n, p.capacity())).collect();
    assert_eq!(names, [("dedicated", 1), ("shared", 8)]);

    let s: Vec<_> = (0..8).map(|_| shared.get().unwrap()).collect();
    let d: Vec<_> = (0..2).map(|_| dedicated.get().unwrap()).collect();
    assert_eq!(frees(shared), vec![0]);
    assert_eq!(frees(dedicated), vec![0, 0]);
    assert_eq!(d.iter().map(|g| g.id()).collect::<Vec<_>>(), [0, 1]);
    let mut by_pool = BTreeMap::new();
    for name in calls.connects.lock().unwrap().iter() {
        *by_pool.entry(name.clone()).or_insert(0) += 1;
    }
    assert_eq!(
        by_pool,
        BTreeMap::from([("dedicated".to_string(), 2), ("shared".to_string(), 1)])
    );

    match pools.pool("bulk") {
        Err(e @ Error::UnknownPool { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("\"bulk\""), "{msg}");
            assert!(msg.contains("dedicated, shared"), "{msg}");
        }
        other => panic!("expected UnknownPool, got {other:?}"),
    }

    pools.shutdown();
    assert_eq!(
        calls.shutdowns(),
        Vec::<usize>::new(),
        "all three are in use"
    );
    assert!(matches!(shared.get(), Err(Error::PoolShutdown { pool }) if pool == "shared"));
    assert!(matches!(dedicated.get(), Err(Error::PoolShutdown { pool }) if pool == "dedicated"));
    drop((s, d));
    assert_eq!(calls.shutdowns(), vec![0, 1, 2]);
}

#[test]
fn run_retries_refused_sessions_within_the_deadline() {
    let mut conn = MockConn::new();
    let mut seq = Sequence::new();
    conn.expect_run()
        .times(2)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(refused()));
    conn.expect_run()
        .withf(|cmd, job| cmd.argv() == ["zfs", "list"] && job.deadline().is_some())
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(ok_output()));
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(10));
    let out = pool.run(&Cmd::new(["zfs", "list"]), &job).unwrap();
    assert_eq!(out, ok_output());
    assert_eq!(pool.refusals_retried(), 2);
    assert_eq!(frees(&pool), vec![8], "run leaked a slot");
    pool.shutdown();
}

#[test]
fn run_does_not_retry_other_errors() {
    let errors: Vec<fn() -> Error> = vec![
        || Error::Transport {
            endpoint: "u@h".into(),
            command: "ls".into(),
            stderr: b"Connection reset".to_vec(),
        },
        || Error::Connect {
            endpoint: "u@h".into(),
            message: "no route".into(),
        },
        || Error::Exited {
            command: "ls".into(),
            status: ExitStatus::Code(2),
            stdout: Vec::new(),
            stderr: b"no such file".to_vec(),
        },
        || Error::Timeout {
            command: "ls".into(),
            timeout: Duration::from_secs(1),
        },
    ];
    for make in errors {
        let mut conn = MockConn::new();
        conn.expect_run()
            .times(1)
            .returning(move |_, _| Err(make()));
        conn.expect_shutdown().return_const(());
        let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
        let job = SimpleJob::with_timeout(Duration::from_secs(10));
        let err = pool.run(&Cmd::new(["ls"]), &job).unwrap_err();
        assert_eq!(
            std::mem::discriminant(&err),
            std::mem::discriminant(&make()),
            "{err:?}"
        );
        assert_eq!(pool.refusals_retried(), 0);
        assert_eq!(frees(&pool), vec![8]);
        pool.shutdown();
    }
}

#[test]
fn run_with_an_expired_deadline_returns_the_refusal() {
    let mut conn = MockConn::new();
    conn.expect_run().times(1).returning(|_, _| Err(refused()));
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::with_timeout(Duration::ZERO);
    let err = pool.run(&Cmd::new(["ls"]), &job).unwrap_err();
    assert!(matches!(err, Error::SessionRefused { .. }), "{err:?}");
    assert!(err.is_retryable(), "the caller may still retry it");
    assert_eq!(pool.refusals_retried(), 0);
    pool.shutdown();
}

#[test]
fn run_with_a_cancelled_job_returns_the_refusal() {
    let mut conn = MockConn::new();
    conn.expect_run().times(1).returning(|_, _| Err(refused()));
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(10));
    job.cancel();
    let err = pool.run(&Cmd::new(["ls"]), &job).unwrap_err();
    assert!(matches!(err, Error::SessionRefused { .. }), "{err:?}");
    assert_eq!(pool.refusals_retried(), 0);
    pool.shutdown();
}

#[test]
fn concurrent_gets_never_make_more_connections_than_needed() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 2_000;
    const CAPACITY: usize = 2;
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, CAPACITY);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    let g = pool.get().unwrap();
                    assert!(g.id() < THREADS.div_ceil(CAPACITY));
                    drop(g);
                }
            });
        }
    });
    // At most THREADS sessions were ever held at once, so at most ceil(8 / 2) connections.
    let snapshot = pool.snapshot();
    assert!(snapshot.len() <= THREADS.div_ceil(CAPACITY), "{snapshot:?}");
    assert_eq!(snapshot.len(), calls.connects());
    assert!(snapshot.iter().all(|c| c.free == CAPACITY), "{snapshot:?}");
    let mut stamps: Vec<_> = snapshot.iter().map(|c| c.last_modified).collect();
    stamps.sort_unstable();
    stamps.dedup();
    assert_eq!(
        stamps.len(),
        snapshot.len(),
        "two connections share a stamp"
    );
    // Creations plus returns: the clock ticked once for each.
    let max_stamp = *stamps.last().unwrap();
    assert_eq!(max_stamp as usize, snapshot.len() + THREADS * ROUNDS);
}

#[test]
fn run_on_a_shut_down_pool_fails_without_running() {
    let mut conn = MockConn::new();
    conn.expect_run().never();
    conn.expect_shutdown().times(1).return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    drop(pool.get().unwrap()); // make the one connection
    pool.shutdown();
    let err = pool.run(&Cmd::new(["ls"]), &SimpleJob::new()).unwrap_err();
    assert!(matches!(err, Error::PoolShutdown { .. }), "{err:?}");
    assert!(!err.is_retryable());
}
