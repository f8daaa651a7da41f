//! The common case against an ssh host: a pool, a guard, commands, shutdown.
//!
//! `cargo run --example quickstart -- [user@]host [ssh_config]`
//!
//! The first command starts a ControlMaster; later ones (and later processes, within
//! ControlPersist) reuse it.

use std::time::{Duration, Instant};

use conn::prelude::*;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "localhost".to_string());
    let mut builder = OpenSsh::builder(&host);
    if let Some(config) = args.next() {
        builder = builder.ssh_config(config);
    }
    let pool = ConnectionPool::new(builder.build()?, "shared", DEFAULT_CAPACITY)?;
    let job = SimpleJob::with_timeout(Duration::from_secs(30));

    for i in 0..3 {
        let t = Instant::now();
        let out = pool.run(&Cmd::new(["echo", "hello from", &host]), &job)?;
        print!("#{i} {:>8.1?}  {}", t.elapsed(), out.stdout_lossy());
    }

    {
        // Hold a slot explicitly: the guard gives it back when it drops.
        let conn = pool.get(&job)?; // refreshed: its master is alive
        let out = conn.run(&Cmd::new(["uname", "-n"]), &job)?;
        print!("on {}: {}", host, out.stdout_lossy());
        println!("master socket: {:?}", conn.control_path());
    }

    pool.shutdown(); // releases the lease; the master stays for the next process
    Ok(())
}
