//! Retries only what may succeed when tried again (`Error::is_retryable`: the transport
//! failed, a master could not start, a session was refused), with jittered exponential
//! backoff from the `backon` crate; a failing remote command is returned at once.
//!
//! `cargo run --example retry -- [user@]host [ssh_config]`

use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use conn::prelude::*;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "localhost".to_string());
    let mut builder = OpenSsh::builder(&host).connect_timeout(Duration::from_secs(5));
    if let Some(config) = args.next() {
        builder = builder.ssh_config(config);
    }
    let pool = ConnectionPool::new(builder.build()?, "shared", DEFAULT_CAPACITY)?;
    let job = SimpleJob::with_timeout(Duration::from_secs(60));
    let cmd = Cmd::new(["uptime"]);

    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(4)
        .with_jitter();
    let result = (|| pool.run(&cmd, &job))
        .retry(backoff)
        .sleep(std::thread::sleep)
        .when(Error::is_retryable)
        .notify(|err, delay| eprintln!("retrying in {delay:?} after: {err}"))
        .call();

    match &result {
        Ok(out) => print!("{host}: {}", out.stdout_lossy()),
        Err(err) => eprintln!("{host}: giving up: {err}"),
    }
    pool.shutdown();
    result.map(|_| ())
}
