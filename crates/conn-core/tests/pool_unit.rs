//! Unit tests of the connection pool against mockall mocks of `Transport` and `Connection`.
//!
//! Each test drives the public API only (`get`, `get_unrefreshed`, guards,
//! `return_connection`, `run`, `spawn`, `shutdown`, `snapshot`, the retry counters) and checks
//! what the pool asked of the transport and its connections: how many connections it made,
//! which one it handed out, how often each was refreshed and shut down, how often a command
//! was started, and which errors came back.
//!
//! The mocks' children are real [`RemoteChild`]s driven by [`FakeSession`], a session that
//! runs nothing: it writes a fixed stdout on its pipe and ends when the test says so, so that
//! the pool's slot handling and retries go through the same child code as every back end.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conn_core::transport::{ChildFd, CommandName, Session, StdioOptions, StdioPlan};
use conn_core::{
    Cmd, Connection, ConnectionPool, ConnectionPools, ConnectionState, Error, ExitStatus, Job,
    Output, OutputSink, RemoteChild, Result, RetryPolicy, SimpleJob, Started, StreamKind,
    Transport,
};
use mockall::{Sequence, mock};

mock! {
    pub Conn {}
    impl Connection for Conn {
        fn spawn(&self, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild>;
        fn refresh(&self, job: &dyn Job) -> Result<()>;
        fn shutdown(&self);
    }
}

mock! {
    pub Tr {}
    impl Transport for Tr {
        type Connection = MockConn;
        fn connect(&self, pool_name: &str) -> Result<MockConn>;
    }
}

/// What the test knows of a [`FakeSession`]: it ends once `finish` is called, and records
/// whether it was killed.
#[derive(Clone, Default)]
struct Control {
    finished: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
}

impl Control {
    fn finished() -> Self {
        let control = Control::default();
        control.finish();
        control
    }
    fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }
    fn killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// A session that runs nothing: once its [`Control`] is finished, it ends with `end` (a
/// status, or the transport failure a back end would report while waiting).
struct FakeSession {
    control: Control,
    end: Option<Result<ExitStatus>>,
}

impl Session for FakeSession {
    fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        None // looked at on the child's short tick
    }
    fn try_finish(&mut self) -> Result<Option<ExitStatus>> {
        if !self.control.finished.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.end
            .take()
            .expect("try_finish called again after the session ended")
            .map(Some)
    }
    fn kill(&mut self) {
        self.control.killed.store(true, Ordering::SeqCst);
    }
}

/// A child of `cmd` that has written `stdout` (when stdout is piped) and ends with `end` once
/// `control` is finished.
fn fake_child(
    cmd: &Cmd,
    job: &dyn Job,
    stdout: &[u8],
    end: Result<ExitStatus>,
    control: &Control,
) -> RemoteChild {
    let mut plan = StdioPlan::new(cmd, StdioOptions::default()).unwrap();
    let [_stdin, out, _stderr] = plan.take_child_fds();
    if let ChildFd::Fd(fd) = out {
        // Small enough for the pipe's buffer; closing our end is the command's end of file.
        File::from(fd).write_all(stdout).unwrap();
    }
    let session = FakeSession {
        control: control.clone(),
        end: Some(end),
    };
    let name = CommandName {
        endpoint: "u@h".into(),
        line: cmd.program().display(),
    };
    RemoteChild::new(Box::new(session), plan, cmd, job, name)
}

/// A child that ran and printed "ok".
fn ran_ok(cmd: &Cmd, job: &(dyn Job + '_)) -> Result<RemoteChild> {
    Ok(fake_child(
        cmd,
        job,
        b"ok\n",
        Ok(ExitStatus::Code(0)),
        &Control::finished(),
    ))
}

/// What [`ran_ok`] gives `run`.
fn ok_output() -> Output {
    Output {
        status: ExitStatus::Code(0),
        stdout: b"ok\n".to_vec(),
        stderr: Vec::new(),
        started: Started::Yes,
    }
}

/// What the mocks saw: connect calls (by pool name), refreshes, and shutdown calls (by
/// connection serial).
#[derive(Default)]
struct Calls {
    connects: Mutex<Vec<String>>,
    refreshes: AtomicUsize,
    shutdowns: Mutex<Vec<usize>>,
}

impl Calls {
    fn connects(&self) -> usize {
        self.connects.lock().unwrap().len()
    }
    fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }
    fn shutdowns(&self) -> Vec<usize> {
        let mut v = self.shutdowns.lock().unwrap().clone();
        v.sort_unstable();
        v
    }
}

/// A connection numbered `serial` whose refresh succeeds, that records its refreshes and
/// shutdowns, and that starts nothing.
fn recording_conn(serial: usize, calls: &Arc<Calls>) -> MockConn {
    let mut conn = MockConn::new();
    let refreshes = Arc::clone(calls);
    conn.expect_refresh().returning(move |_| {
        refreshes.refreshes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
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

fn refused() -> Error {
    Error::SessionRefused {
        endpoint: "u@h".into(),
        message: "open failed: administratively prohibited".into(),
    }
}

/// The transport failure of a command that provably never started (retryable), or that may
/// have run (not).
fn transport_failure(started: Started) -> Error {
    Error::Transport {
        endpoint: "u@h".into(),
        command: "ls".into(),
        started,
        reason: "mux_client_request_session: read from master failed".into(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    }
}

fn connect_failure() -> Error {
    Error::Connect {
        endpoint: "u@h".into(),
        message: "master did not start".into(),
    }
}

#[test]
fn a_new_connection_is_made_only_when_all_are_full() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 3);
    let job = SimpleJob::new();
    assert_eq!(calls.connects(), 0, "a pool connects lazily");

    let mut held = Vec::new();
    for expected_free in [2, 1, 0] {
        let guard = pool.get(&job).unwrap();
        assert_eq!(guard.id(), 0);
        held.push(guard);
        assert_eq!(frees(&pool), vec![expected_free]);
        assert_eq!(calls.connects(), 1);
    }
    // Connection 0 is full: the fourth session needs connection 1.
    held.push(pool.get(&job).unwrap());
    assert_eq!(held[3].id(), 1);
    assert_eq!((calls.connects(), frees(&pool)), (2, vec![0, 2]));

    // One slot back on connection 0: connection 1 still has more free slots and is chosen,
    // and nothing new is made.
    held.remove(0);
    assert_eq!(frees(&pool), vec![1, 2]);
    let g = pool.get(&job).unwrap();
    assert_eq!((g.id(), calls.connects()), (1, 2));
    held.push(g);

    // Fill every slot (3 + 3) and one more: only now a third connection appears.
    while frees(&pool).iter().any(|&f| f > 0) {
        held.push(pool.get(&job).unwrap());
        assert_eq!(
            calls.connects(),
            2,
            "made a connection while one had a free slot"
        );
    }
    assert_eq!(held.len(), 6);
    let g = pool.get(&job).unwrap();
    assert_eq!((g.id(), calls.connects()), (2, 3));
    assert_eq!(calls.connects.lock().unwrap().as_slice(), ["shared"; 3]);
    assert_eq!(
        calls.refreshes(),
        8,
        "every get refreshes its connection once"
    );
}

#[test]
fn most_free_slots_beat_recency() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 2);
    let job = SimpleJob::new();
    let a = pool.get(&job).unwrap(); // conn 0
    let b = pool.get(&job).unwrap(); // conn 0, now full
    let c = pool.get(&job).unwrap(); // conn 1
    let d = pool.get(&job).unwrap(); // conn 1, now full
    assert_eq!([a.id(), b.id(), c.id(), d.id()], [0, 0, 1, 1]);
    drop(a);
    drop(b); // conn 0: 2 free
    drop(c); // conn 1: 1 free, modified last
    assert_eq!(frees(&pool), vec![2, 1]);
    assert_eq!(pool.get(&job).unwrap().id(), 0);
}

#[test]
fn equal_free_slots_go_to_the_most_recently_modified() {
    // Run the same scenario with both return orders, so that neither "lowest id" nor "highest
    // id" can pass for LIFO.
    for return_conn0_last in [false, true] {
        let calls = Arc::new(Calls::default());
        let pool = pool(&calls, 2);
        let job = SimpleJob::new();
        let a = pool.get(&job).unwrap();
        let _b = pool.get(&job).unwrap();
        let c = pool.get(&job).unwrap();
        let _d = pool.get(&job).unwrap();
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
        let g = pool.get(&job).unwrap();
        assert_eq!(g.id(), winner, "return_conn0_last={return_conn0_last}");
        assert_eq!(calls.connects(), 2);
    }
}

#[test]
fn get_does_not_restamp_but_creation_and_return_do() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 4);
    let job = SimpleJob::new();
    let a = pool.get(&job).unwrap();
    let created = pool.snapshot()[0].last_modified;
    let b = pool.get(&job).unwrap();
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
    let job = SimpleJob::new();
    let a = pool.get(&job).unwrap();
    let b = pool.get(&job).unwrap();
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
    conn.expect_spawn()
        .withf(|cmd, _| cmd.program().argv().is_some_and(|a| a == ["echo", "hi"]))
        .times(1)
        .returning(ran_ok);
    conn.expect_shutdown().times(1).return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::new();
    {
        let guard = pool.get(&job).unwrap(); // the one refresh
        assert_eq!(
            guard.run(&Cmd::new(["echo", "hi"]), &job).unwrap(),
            ok_output()
        );
    }
    pool.shutdown();
}

#[test]
fn get_refreshes_and_a_failed_refresh_gives_the_slot_back() {
    let mut conn = MockConn::new();
    let mut seq = Sequence::new();
    // The refresh sees the caller's job (its deadline), fails once, then succeeds.
    conn.expect_refresh()
        .withf(|job| job.deadline().map(|d| d.duration()) == Some(Duration::from_secs(7)))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(connect_failure()));
    conn.expect_refresh()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    conn.expect_spawn().never();
    conn.expect_shutdown().times(1).return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 2).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(7));

    let err = pool.get(&job).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(
        frees(&pool),
        vec![2],
        "the connection is made, its slot is back after the failed refresh"
    );

    let g = pool.get(&job).unwrap();
    assert_eq!(g.id(), 0, "the failed connection is reused, not replaced");
    assert_eq!(frees(&pool), vec![1]);
    // No refresh here: the sequence above would fail on a third one.
    let u = pool.get_unrefreshed().unwrap();
    assert_eq!((u.id(), frees(&pool)), (0, vec![0]));
    drop((g, u));
    assert_eq!(frees(&pool), vec![2]);
    pool.shutdown();
}

#[test]
fn shutdown_then_return_is_a_noop_and_get_fails() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 1);
    let job = SimpleJob::new();
    let a = pool.get(&job).unwrap();
    let b = pool.get(&job).unwrap();
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

    for got in [pool.get(&job), pool.get_unrefreshed()] {
        match got {
            Err(Error::PoolShutdown { pool: name }) => assert_eq!(name, "shared"),
            other => panic!("expected PoolShutdown, got {other:?}"),
        }
    }
    assert_eq!(calls.connects(), 2, "a shut-down pool connected again");
    assert_eq!(calls.refreshes(), 2, "a shut-down pool refreshed");
}

#[test]
fn shutdown_closes_each_connection_exactly_once() {
    let calls = Arc::new(Calls::default());
    let pool = pool(&calls, 2);
    let job = SimpleJob::new();
    // Three connections: two full, one half used; guards still held during shutdown.
    let mut held: Vec<_> = (0..5).map(|_| pool.get(&job).unwrap()).collect();
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
    conn.expect_refresh().times(1).returning(|_| Ok(()));
    conn.expect_shutdown().times(1).return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let g = pool.get(&SimpleJob::new()).unwrap();
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
    // 1st connect fails (empty pool), 2nd succeeds, 3rd fails (pool not empty), 4th succeeds.
    for _ in 0..2 {
        transport
            .expect_connect()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Err(connect_failure()));
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
    let job = SimpleJob::new();

    let err = pool.get(&job).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(pool.snapshot().is_empty());

    let g0 = pool.get(&job).unwrap();
    assert_eq!(g0.id(), 0);
    let before = pool.snapshot();

    let err = pool.get(&job).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(pool.snapshot(), before, "a failed connect changed the pool");

    let g1 = pool.get(&job).unwrap();
    assert_eq!(g1.id(), 1, "ids must stay dense after a failed connect");
    drop(g0);
    // Connection 0 has a free slot again: no connect (which would fail) is attempted.
    let g0 = pool.get(&job).unwrap();
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
    let job = SimpleJob::new();
    let shared = pools.pool("shared").unwrap();
    let dedicated = pools.pool("dedicated").unwrap();
    assert_eq!((shared.name(), shared.capacity()), ("shared", 8));
    assert_eq!((dedicated.name(), dedicated.capacity()), ("dedicated", 1));
    let names: Vec<_> = pools.iter().map(|(n, p)| (n, p.capacity())).collect();
    assert_eq!(names, [("dedicated", 1), ("shared", 8)]);

    let s: Vec<_> = (0..8).map(|_| shared.get(&job).unwrap()).collect();
    let d: Vec<_> = (0..2).map(|_| dedicated.get(&job).unwrap()).collect();
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
    assert!(matches!(shared.get(&job), Err(Error::PoolShutdown { pool }) if pool == "shared"));
    assert!(
        matches!(dedicated.get(&job), Err(Error::PoolShutdown { pool }) if pool == "dedicated")
    );
    drop((s, d));
    assert_eq!(calls.shutdowns(), vec![0, 1, 2]);
}

#[test]
fn run_retries_refused_sessions_within_the_deadline() {
    let mut conn = MockConn::new();
    let mut seq = Sequence::new();
    conn.expect_spawn()
        .times(2)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(refused()));
    conn.expect_spawn()
        .withf(|cmd, job| {
            cmd.program().argv().is_some_and(|a| a == ["zfs", "list"]) && job.deadline().is_some()
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(ran_ok);
    // Every attempt takes its slot through `get`, which refreshes.
    conn.expect_refresh().times(3).returning(|_| Ok(()));
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(10));
    let out = pool.run(&Cmd::new(["zfs", "list"]), &job).unwrap();
    assert_eq!(out, ok_output());
    assert_eq!(pool.refusals_retried(), 2);
    assert_eq!(pool.restarts_retried(), 0);
    assert_eq!(frees(&pool), vec![8], "run leaked a slot");
    pool.shutdown();
}

#[test]
fn run_does_not_retry_what_may_have_run_or_is_not_the_transport() {
    let errors: Vec<fn() -> Error> = vec![
        || transport_failure(Started::Unknown),
        || transport_failure(Started::Yes),
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
        || Error::Cancelled {
            command: "ls".into(),
        },
        || Error::ProgramNotFound {
            program: "ls".into(),
        },
    ];
    for make in errors {
        let mut conn = MockConn::new();
        conn.expect_refresh().times(1).returning(|_| Ok(()));
        conn.expect_spawn()
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
        assert_eq!(err.started(), make().started(), "{err:?}");
        assert_eq!(
            (pool.refusals_retried(), pool.restarts_retried()),
            (0, 0),
            "{err:?}"
        );
        assert_eq!(frees(&pool), vec![8]);
        pool.shutdown();
    }
}

#[test]
fn run_does_not_retry_a_failure_seen_while_waiting_once_the_command_may_have_run() {
    // The command's own unsuccessful exit (checked: Error::Exited, built by the child), and a
    // transport that cannot tell whether the command ran.
    let ends: Vec<fn() -> Result<ExitStatus>> = vec![|| Ok(ExitStatus::Code(2)), || {
        Err(transport_failure(Started::Unknown))
    }];
    for end in ends {
        let mut conn = MockConn::new();
        conn.expect_refresh().times(1).returning(|_| Ok(()));
        conn.expect_spawn().times(1).returning(move |cmd, job| {
            Ok(fake_child(cmd, job, b"part", end(), &Control::finished()))
        });
        conn.expect_shutdown().return_const(());
        let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
        let job = SimpleJob::with_timeout(Duration::from_secs(10));
        let err = pool.run(&Cmd::new(["ls"]), &job).unwrap_err();
        match &err {
            Error::Exited { status, stdout, .. } => {
                assert_eq!(
                    (*status, stdout.as_slice()),
                    (ExitStatus::Code(2), &b"part"[..])
                )
            }
            Error::Transport {
                started: Started::Unknown,
                stdout,
                ..
            } => assert_eq!(stdout, b"part", "what ran so far is kept"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!((pool.refusals_retried(), pool.restarts_retried()), (0, 0));
        assert_eq!(frees(&pool), vec![8]);
        pool.shutdown();
    }
}

#[test]
fn run_restarts_a_command_that_did_not_start() {
    // Spawn fails before the command starts (a master that died, a socket that refused), or
    // the failure surfaces only while waiting: either way the next attempt's refresh gets a
    // usable connection and the command runs once.
    type Attempt = fn(&Cmd, &(dyn Job + '_)) -> Result<RemoteChild>;
    let first_attempts: Vec<Attempt> = vec![
        |_, _| Err(transport_failure(Started::No)),
        |_, _| Err(connect_failure()),
        |cmd, job| {
            Ok(fake_child(
                cmd,
                job,
                b"",
                Err(transport_failure(Started::No)),
                &Control::finished(),
            ))
        },
    ];
    for first in first_attempts {
        let mut conn = MockConn::new();
        let mut seq = Sequence::new();
        conn.expect_spawn()
            .times(1)
            .in_sequence(&mut seq)
            .returning(first);
        conn.expect_spawn()
            .withf(|cmd, _| cmd.program().argv().is_some_and(|a| a == ["zfs", "list"]))
            .times(1)
            .in_sequence(&mut seq)
            .returning(ran_ok);
        conn.expect_refresh().times(2).returning(|_| Ok(()));
        conn.expect_shutdown().return_const(());
        let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
        let job = SimpleJob::with_timeout(Duration::from_secs(10));
        let out = pool.run(&Cmd::new(["zfs", "list"]), &job).unwrap();
        assert_eq!(out, ok_output());
        assert_eq!((pool.restarts_retried(), pool.refusals_retried()), (1, 0));
        assert_eq!(frees(&pool), vec![8], "a failed attempt leaked a slot");
        pool.shutdown();
    }
}

#[test]
fn run_restarts_at_most_three_times() {
    // With and without a deadline: the limit does not depend on one.
    for job in [
        SimpleJob::with_timeout(Duration::from_secs(10)),
        SimpleJob::new(),
    ] {
        let mut conn = MockConn::new();
        conn.expect_spawn()
            .times(4)
            .returning(|_, _| Err(transport_failure(Started::No)));
        conn.expect_refresh().times(4).returning(|_| Ok(()));
        conn.expect_shutdown().return_const(());
        let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
        let err = pool.run(&Cmd::new(["ls"]), &job).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Transport {
                    started: Started::No,
                    ..
                }
            ),
            "the last failure is returned: {err:?}"
        );
        assert!(err.is_retryable(), "the caller may still retry it");
        assert_eq!(pool.restarts_retried(), 3);
        assert_eq!(frees(&pool), vec![8]);
        pool.shutdown();
    }
}

#[test]
fn a_failed_refresh_is_returned_at_once() {
    // `Error::Connect` is retryable, but a master that cannot start is not started again and
    // again: the caller decides (e.g. `conn run --retries`).
    let mut conn = MockConn::new();
    conn.expect_refresh()
        .times(2)
        .returning(|_| Err(connect_failure()));
    conn.expect_spawn().never();
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(10));
    let err = pool.run(&Cmd::new(["ls"]), &job).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(frees(&pool), vec![8]);
    let err = pool.spawn(&Cmd::new(["ls"]), &job).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!((pool.restarts_retried(), pool.refusals_retried()), (0, 0));
    assert_eq!(frees(&pool), vec![8]);
    pool.shutdown();
}

#[test]
fn a_spawned_child_holds_its_slot_until_it_is_waited_for() {
    let control = Control::default();
    let mut conn = MockConn::new();
    let child_control = control.clone();
    conn.expect_spawn().times(2).returning(move |cmd, job| {
        Ok(fake_child(
            cmd,
            job,
            b"",
            Ok(ExitStatus::Code(0)),
            &child_control,
        ))
    });
    conn.expect_refresh().times(2).returning(|_| Ok(()));
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 2).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(10));

    let mut child = pool.spawn(&Cmd::new(["sleep", "1"]), &job).unwrap();
    assert_eq!(frees(&pool), vec![1], "the running child holds a slot");
    assert_eq!(child.try_wait().unwrap(), None);
    assert_eq!(frees(&pool), vec![1], "still running, still held");

    // The same through a guard: the guard's slot moves into the child.
    let guard = pool.get(&job).unwrap();
    assert_eq!(frees(&pool), vec![0]);
    let mut second = guard.spawn(&Cmd::new(["sleep", "1"]), &job).unwrap();
    assert_eq!(frees(&pool), vec![0], "the guard's slot went to the child");

    control.finish();
    assert_eq!(child.wait().unwrap(), ExitStatus::Code(0));
    assert_eq!(frees(&pool), vec![1], "waiting gave the slot back");
    assert_eq!(second.wait().unwrap(), ExitStatus::Code(0));
    assert_eq!(frees(&pool), vec![2]);
    assert!(!control.killed(), "a child that ended is not killed");
    drop((child, second));
    assert_eq!(
        frees(&pool),
        vec![2],
        "a waited child gives nothing back twice"
    );
    pool.shutdown();
}

#[test]
fn dropping_or_killing_a_running_child_gives_its_slot_back() {
    let mut conn = MockConn::new();
    let controls = Arc::new(Mutex::new(Vec::new()));
    let made = Arc::clone(&controls);
    conn.expect_spawn().times(2).returning(move |cmd, job| {
        let control = Control::default();
        made.lock().unwrap().push(control.clone());
        Ok(fake_child(cmd, job, b"", Ok(ExitStatus::Code(0)), &control))
    });
    conn.expect_refresh().times(2).returning(|_| Ok(()));
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 2).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(10));

    let dropped = pool.spawn(&Cmd::new(["sleep", "60"]), &job).unwrap();
    let mut killed = pool.spawn(&Cmd::new(["sleep", "60"]), &job).unwrap();
    assert_eq!(frees(&pool), vec![0]);
    let [c0, c1] = <[Control; 2]>::try_from(controls.lock().unwrap().clone())
        .unwrap_or_else(|_| panic!("two children"));

    drop(dropped);
    assert!(c0.killed(), "dropping a running child kills it");
    assert_eq!(frees(&pool), vec![1]);

    killed.kill().unwrap();
    assert!(c1.killed());
    assert_eq!(frees(&pool), vec![2], "kill gave the slot back");
    assert_eq!(killed.wait().unwrap(), ExitStatus::Signal(9));
    drop(killed);
    assert_eq!(frees(&pool), vec![2]);
    pool.shutdown();
}

#[test]
fn a_dry_run_uses_no_refresh() {
    let mut conn = MockConn::new();
    conn.expect_refresh().never();
    // The connection still names the command (it logs "Would execute"), but starts nothing.
    conn.expect_spawn()
        .withf(|cmd, _| cmd.is_dry_run())
        .times(2)
        .returning(|cmd, _| {
            Ok(RemoteChild::dry_run(
                cmd,
                CommandName {
                    endpoint: "u@h".into(),
                    line: cmd.program().display(),
                },
            ))
        });
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::new();
    let cmd = Cmd::new(["zfs", "destroy", "tank/x"]).dry_run(true);
    let out = pool.run(&cmd, &job).unwrap();
    assert_eq!(out, Output::dry_run());
    assert_eq!(out.started, Started::No);
    assert_eq!(frees(&pool), vec![8]);
    let mut child = pool.spawn(&cmd, &job).unwrap();
    assert_eq!(frees(&pool), vec![7], "a dry-run child holds its slot too");
    assert_eq!(child.wait().unwrap(), ExitStatus::Code(0));
    assert_eq!(child.started(), Some(Started::No));
    assert_eq!(frees(&pool), vec![8]);
    pool.shutdown();
}

#[test]
fn run_with_an_expired_deadline_returns_the_refusal() {
    let mut conn = MockConn::new();
    conn.expect_refresh().times(1).returning(|_| Ok(()));
    conn.expect_spawn()
        .times(1)
        .returning(|_, _| Err(refused()));
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
fn run_with_an_expired_deadline_does_not_restart() {
    let mut conn = MockConn::new();
    conn.expect_refresh().times(1).returning(|_| Ok(()));
    conn.expect_spawn()
        .times(1)
        .returning(|_, _| Err(transport_failure(Started::No)));
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::with_timeout(Duration::ZERO);
    let err = pool.run(&Cmd::new(["ls"]), &job).unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(pool.restarts_retried(), 0);
    pool.shutdown();
}

#[test]
fn run_with_a_cancelled_job_returns_the_refusal() {
    let mut conn = MockConn::new();
    conn.expect_refresh().times(1).returning(|_| Ok(()));
    conn.expect_spawn()
        .times(1)
        .returning(|_, _| Err(refused()));
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
    let job = SimpleJob::new();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    let g = pool.get(&job).unwrap();
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
    assert_eq!(calls.refreshes(), THREADS * ROUNDS);
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
    conn.expect_spawn().never();
    conn.expect_refresh().never();
    conn.expect_shutdown().times(1).return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    drop(pool.get_unrefreshed().unwrap()); // make the one connection
    pool.shutdown();
    let job = SimpleJob::new();
    let err = pool.run(&Cmd::new(["ls"]), &job).unwrap_err();
    assert!(matches!(err, Error::PoolShutdown { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let err = pool.spawn(&Cmd::new(["ls"]), &job).unwrap_err();
    assert!(matches!(err, Error::PoolShutdown { .. }), "{err:?}");
}

#[test]
fn an_idempotent_command_is_run_again_when_it_may_have_run_within_its_budget() {
    // Not idempotent: a command that may have run is returned as it is.
    let mut conn = MockConn::new();
    conn.expect_refresh().returning(|_| Ok(()));
    conn.expect_spawn().times(1).returning(|cmd, job| {
        Ok(fake_child(
            cmd,
            job,
            b"",
            Err(transport_failure(Started::Unknown)),
            &Control::finished(),
        ))
    });
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(10));
    let err = pool.run(&Cmd::new(["ls"]), &job).unwrap_err();
    assert_eq!(err.started(), Started::Unknown);
    assert_eq!(pool.ran_retried(), 0);
    pool.shutdown();

    // Idempotent: run again, once for each failure, and counted apart.
    let mut conn = MockConn::new();
    let mut seq = Sequence::new();
    conn.expect_refresh().returning(|_| Ok(()));
    conn.expect_spawn()
        .times(2)
        .in_sequence(&mut seq)
        .returning(|cmd, job| {
            Ok(fake_child(
                cmd,
                job,
                b"",
                Err(transport_failure(Started::Unknown)),
                &Control::finished(),
            ))
        });
    conn.expect_spawn()
        .times(1)
        .in_sequence(&mut seq)
        .returning(ran_ok);
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let out = pool.run(&Cmd::new(["ls"]).idempotent(true), &job).unwrap();
    assert_eq!(out, ok_output());
    assert_eq!((pool.ran_retried(), pool.restarts_retried()), (2, 0));
    pool.shutdown();

    // Its own unsuccessful exit is never run again, idempotent or not.
    let mut conn = MockConn::new();
    conn.expect_refresh().returning(|_| Ok(()));
    conn.expect_spawn().times(1).returning(|cmd, job| {
        Ok(fake_child(
            cmd,
            job,
            b"",
            Ok(ExitStatus::Code(1)),
            &Control::finished(),
        ))
    });
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let err = pool
        .run(&Cmd::new(["ls"]).idempotent(true), &job)
        .unwrap_err();
    assert!(matches!(err, Error::Exited { .. }), "{err:?}");
    pool.shutdown();
}

#[test]
fn one_budget_covers_restarts_and_reconnects() {
    // A policy of 2 retries that also reconnects: a failed refresh, then a command that never
    // started, then a third failure that is returned: 3 attempts in all, not 3 × 4.
    let mut conn = MockConn::new();
    let mut seq = Sequence::new();
    conn.expect_refresh()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(connect_failure()));
    conn.expect_refresh()
        .times(2)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    conn.expect_spawn()
        .times(2)
        .returning(|_, _| Err(transport_failure(Started::No)));
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(10));
    let policy = RetryPolicy::new(2).min_delay(Duration::from_millis(1));
    let err = pool.run(&Cmd::new(["ls"]).retry(policy), &job).unwrap_err();
    assert_eq!(err.started(), Started::No);
    assert_eq!(pool.restarts_retried(), 2);
    assert_eq!(frees(&pool), vec![8]);
    pool.shutdown();
}

/// Collects what a streaming wait hands it.
#[derive(Default)]
struct Collected(Vec<(StreamKind, Vec<u8>)>);

impl OutputSink for Collected {
    fn output(&mut self, stream: StreamKind, bytes: &[u8]) {
        self.0.push((stream, bytes.to_vec()));
    }
}

#[test]
fn run_streaming_hands_the_output_to_the_sink_and_retries_what_never_started() {
    let mut conn = MockConn::new();
    let mut seq = Sequence::new();
    conn.expect_refresh().returning(|_| Ok(()));
    conn.expect_spawn()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(transport_failure(Started::No)));
    conn.expect_spawn()
        .times(1)
        .in_sequence(&mut seq)
        .returning(ran_ok);
    conn.expect_shutdown().return_const(());
    let pool = ConnectionPool::new(transport_with(conn), "shared", 8).unwrap();
    let job = SimpleJob::with_timeout(Duration::from_secs(10));
    let mut sink = Collected::default();
    let out = pool
        .run_streaming(&Cmd::new(["ls"]), &job, &mut sink)
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "streamed, not collected");
    let stdout: Vec<u8> = sink
        .0
        .iter()
        .filter(|(s, _)| *s == StreamKind::Stdout)
        .flat_map(|(_, b)| b.clone())
        .collect();
    assert_eq!(stdout, b"ok\n");
    assert_eq!(pool.restarts_retried(), 1);
    pool.shutdown();
}
