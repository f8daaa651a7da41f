//! Runs a command on every host of a host set, printing each line as `host: line` as it
//! arrives, through conn's fan-out engine and pooled masters.
//!
//! `cargo run --example fleet -- SSH_CONFIG HOSTSET COMMAND…`
//! (e.g. `cargo run --example fleet -- ~/.ssh/config 'web[01-16]' uptime`); the control sockets
//! go to conn's default directory, or to `$CONN_SOCKET_DIR` when set.

use std::io::Write;

use conn::fleet::{Fleet, Handler, Host, Task};
use conn::{Cmd, HostSet, Mux, OpenSsh, StreamKind};

/// Prints every line whole, prefixed, on the stream it came from.
struct Print;

impl Handler for Print {
    fn line(&self, host: &Host, stream: StreamKind, line: &[u8]) {
        let mut out = Vec::with_capacity(host.name.len() + 2 + line.len());
        out.extend_from_slice(host.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(line);
        let _ = match stream {
            StreamKind::Stdout => std::io::stdout().lock().write_all(&out),
            StreamKind::Stderr => std::io::stderr().lock().write_all(&out),
        };
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, hosts, command @ ..] = args.as_slice() else {
        eprintln!("usage: fleet SSH_CONFIG HOSTSET COMMAND…");
        std::process::exit(2);
    };
    let mut fleet = Fleet::new();
    for name in HostSet::parse(hosts)?.expand() {
        let mut ssh = OpenSsh::builder(&name).ssh_config(config).mux(Mux::Native);
        if let Some(dir) = std::env::var_os("CONN_SOCKET_DIR") {
            ssh = ssh.socket_dir(dir);
        }
        fleet.push(name, ssh.build()?);
    }
    let report = fleet.run(&Task::Run(Cmd::new(command)), &Print);
    for (hosts, reason) in report.failures_by_reason() {
        eprintln!("{hosts}: {reason}");
    }
    std::process::exit(i32::from(report.failed() > 0));
}
