//! The fan-out engine: one task over many hosts through pooled connections, what `conn run`
//! and `conn copy` are built on (crate `conn-fleet`).
//!
//! A [`Fleet`] holds the hosts, each with its transport, and the run's settings: the fanout
//! (bounded by the descriptors left too), a deadline per host, one [`RetryPolicy`], fail-fast,
//! gathering, and one run-wide cancel. [`Fleet::run`] runs a [`Task`] (a command, a copy to
//! every host, a fetch from every host) and tells a [`Handler`] what happens while it happens:
//! each host's start, its output raw and as whole lines, its end. [`Fleet::events`] gives the
//! same as an iterator of owned [`Event`]s. Memory stays bounded per host whatever it prints.
//! The [`RunReport`] folds failures by reason and groups identical results.
//!
//! ```
//! # #[cfg(feature = "local")] {
//! use conn::fleet::{Fleet, Handler, Host, Task};
//! use conn::{Cmd, HostSet, Local, StreamKind};
//!
//! struct Print;
//! impl Handler for Print {
//!     fn line(&self, host: &Host, _: StreamKind, line: &[u8]) {
//!         print!("{}: {}", host.name, String::from_utf8_lossy(line));
//!     }
//! }
//!
//! // With ssh: `OpenSsh::builder(&name).build()?` for each name; here, this machine.
//! let mut fleet = Fleet::new().fanout(16);
//! for name in HostSet::parse("web[01-04]")?.expand() {
//!     fleet.push(name, Local::new());
//! }
//! let report = fleet.run(&Task::Run(Cmd::new(["echo", "up"])), &Print);
//! assert_eq!(report.failed(), 0);
//! assert_eq!(report.groups()[0].folded, "web[01-04]");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`RetryPolicy`]: crate::RetryPolicy

pub use conn_fleet::*;
