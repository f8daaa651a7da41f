//! Retrying what provably never started, with the library's one policy ([`conn::retry`],
//! `backon` underneath): a master that cannot start, a refused session. A remote command that
//! failed, or may have run, is returned at once and never run twice.
//!
//! `cargo run --example retry -- [user@]host [ssh_config]`

use std::time::Duration;

use conn::prelude::*;
use conn::{RetryPolicy, retry};

fn main() -> conn::Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "localhost".to_string());
    let mut builder = OpenSsh::builder(&host).connect_timeout(Duration::from_secs(5));
    if let Some(config) = args.next() {
        builder = builder.ssh_config(config);
    }
    let pool = ConnectionPool::new(builder.build()?, "shared", DEFAULT_CAPACITY)?;
    let job = SimpleJob::with_timeout(Duration::from_secs(60));
    let cmd = Cmd::new(["uptime"]);

    let policy = RetryPolicy::new(4).min_delay(Duration::from_millis(100));
    let result = retry(
        &policy,
        &job,
        |err, delay| eprintln!("retrying in {delay:?} after: {err}"),
        || pool.run(&cmd, &job),
    );

    match &result {
        Ok(out) => print!("{host}: {}", out.stdout_lossy()),
        Err(err) => eprintln!("{host}: giving up ({}): {err}", err.started()),
    }
    pool.shutdown();
    result.map(|_| ())
}
