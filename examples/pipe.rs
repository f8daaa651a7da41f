//! A local producer piped into a remote consumer through a pooled master, the way
//! `zfs send | ssh … zfs receive` works: here `tar -c` of a local directory into `tar -x` in a
//! remote one, then the same digest of every file on both sides to show nothing was lost.
//!
//! `cargo run --example pipe -- [user@]host [ssh_config|-] [src_dir] [dest_dir]`
//!
//! `src_dir` defaults to this crate's `src/`; without `dest_dir` the remote side makes a fresh
//! one (`mktemp -d`). `CONN_MUX=process` uses one `ssh -S` client per session instead of the
//! native mux (the default here).
//!
//! The producer's stdout pipe is handed to the remote command as its stdin ([`Stdin::Fd`]):
//! with the native mux the master reads the pipe itself (the descriptor goes to it over the
//! control socket), with the process mux the spawned `ssh -S` client does. Either way the
//! stream never passes through this process.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conn::prelude::*;

/// Prints one digest over the names and contents of every file under the directory `$1`.
const DIGEST: &str = "cd \"$1\" && find . -type f -print0 | LC_ALL=C sort -z \
                      | xargs -0 -r sha256sum | sha256sum";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipe: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let host = args
        .next()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|| "localhost".to_string());
    let config = args.next().filter(|c| c != "-");
    let src = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"));
    let dest = args.next();
    let mux: Mux = match std::env::var("CONN_MUX") {
        Ok(m) => m.parse()?,
        Err(_) => Mux::Native,
    };

    let mut builder = OpenSsh::builder(&host).mux(mux);
    if let Some(config) = config {
        builder = builder.ssh_config(config);
    }
    let pool = ConnectionPool::new(builder.build()?, "shared", DEFAULT_CAPACITY)?;
    // One bound for the whole transfer: a stalled stream fails instead of hanging.
    let job = SimpleJob::with_timeout(Duration::from_secs(600));

    let dest = match dest {
        Some(d) => d,
        None => pool
            .run(&Cmd::new(["mktemp", "-d"]), &job)?
            .stdout_lossy()
            .trim()
            .into(),
    };

    let start = Instant::now();
    // The producer: `tar -c` here, its stdout a pipe (`zfs send` in a replication tool).
    let mut producer = Command::new("tar")
        .arg("-c")
        .arg("-C")
        .arg(&src)
        .arg(".")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the local tar -c: {e}"))?;
    let pipe = OwnedFd::from(producer.stdout.take().expect("stdout is piped"));

    // The consumer: `tar -x` there, reading the producer's pipe; its own output and messages
    // go to this process's stdout and stderr.
    let consumer = Cmd::new(["tar", "-x", "-C"])
        .arg(&dest)
        .stdin(pipe)
        .stdout(Stream::Inherit)
        .stderr(Stream::Inherit);
    let spawned = pool.spawn(&consumer, &job);
    // The command held our copy of the pipe's read end: without dropping it, a producer whose
    // consumer died would block on a full pipe instead of getting EPIPE.
    drop(consumer);
    let received = spawned.and_then(|mut child| child.wait());
    // A producer that failed on its own (a missing directory, say) is the cause of whatever
    // the consumer then said; one still running when the consumer failed is stopped.
    let sent = match (&received, producer.try_wait()?) {
        (_, Some(status)) => status,
        (Err(_), None) => {
            let _ = producer.kill();
            producer.wait()?
        }
        (Ok(_), None) => producer.wait()?,
    };
    // Killed by a signal: ours when the consumer had failed, else someone else's.
    let producer_failed = sent.code().map_or(received.is_ok(), |code| code != 0);
    if producer_failed {
        return Err(format!("the local tar -c of {} failed ({sent})", src.display()).into());
    }
    received?; // an unsuccessful remote tar is an error (check is on)
    println!(
        "{} -> {host}:{} in {:.1?} ({mux} mux)",
        src.display(),
        dest.to_string_lossy(),
        start.elapsed()
    );

    // The same digest on both sides: the local one through conn's local transport, with the
    // same API as the remote one.
    let local = ConnectionPool::new(Local::new(), "local", 1)?;
    let digest = Cmd::new(["sh", "-c", DIGEST, "digest"]);
    let here = local.run(&digest.clone().arg(&src), &job)?.stdout_lossy();
    let there = pool.run(&digest.arg(&dest), &job)?.stdout_lossy();
    local.shutdown();
    pool.shutdown();
    if here != there {
        return Err(format!("the copies differ: here {here:?}, there {there:?}").into());
    }
    println!("same files and contents on both sides: {}", here.trim());
    Ok(())
}
