//! Runs a few commands on this host through a pool of the local transport: the same API as a
//! remote, no ssh needed.
//!
//! `cargo run --example local`

use std::time::Duration;

use conn::prelude::*;

fn main() -> Result<()> {
    let pool = ConnectionPool::new(Local::new(), "shared", DEFAULT_CAPACITY)?;
    let job = SimpleJob::with_timeout(Duration::from_secs(10));

    let out = pool.run(&Cmd::new(["uname", "-a"]), &job)?;
    print!("uname: {}", out.stdout_lossy());

    // No shell: the argument "a b; echo injected" reaches echo as one word.
    let out = pool.run(&Cmd::new(["echo", "a b; echo injected"]), &job)?;
    print!("echo: {}", out.stdout_lossy());

    // A non-zero exit is an error carrying status and stderr ...
    let err = pool
        .run(&Cmd::new(["sh", "-c", "echo oops >&2; exit 3"]), &job)
        .unwrap_err();
    println!("error: {err} (retryable: {})", err.is_retryable());

    // ... and a deadline kills the whole process group.
    let short = SimpleJob::with_timeout(Duration::from_millis(200));
    let err = pool.run(&Cmd::new(["sleep", "10"]), &short).unwrap_err();
    println!("error: {err}");

    pool.shutdown();
    Ok(())
}
