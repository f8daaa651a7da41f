//! conn's fan-out engine: one task (a command, a copy, a fetch) over many hosts through pooled
//! connections, what `conn run` and `conn copy` are built on.
//!
//! - [`Fleet`]: the hosts (each with its transport; one [`ConnectionPool`] per host, made when
//!   a worker takes it), the fanout (bounded by the descriptors left too: [`limits`]), one
//!   deadline per host, one [`RetryPolicy`], fail-fast, gathering, and one run-wide
//!   [`CancelToken`]: cancelling it, or dropping [`Events`], ends every host at once.
//! - [`Broadcast`]: one input for every host, read once and kept on disk.
//! - [`Task`]: [`Task::Run`] a command, [`Task::Copy`] files and trees to every host
//!   ([`CopyPlan`]), [`Task::Fetch`] them from every host ([`FetchPlan`]), never leaving a
//!   partial file under a final name.
//! - What happens comes as it happens: the [`Handler`] callbacks (a host's start, its output
//!   raw and as whole lines, its end), called from the host's own worker thread with borrowed
//!   bytes, or [`Events`], an iterator of owned [`Event`]s. Memory stays bounded per host
//!   whatever it prints: a line is at most [`MAX_LINE`] bytes, and gathered output
//!   ([`Gather`]) spills to a temporary file past its in-memory bound.
//! - [`RunReport`]: every host's [`HostEnd`] (status, [`Started`], duration, retries), the
//!   failures folded by reason, identical results grouped ([`RunReport::groups`]).
//!
//! ```
//! use conn_core::{Cmd, StreamKind};
//! use conn_fleet::{Event, Fleet, Task};
//! use conn_local::Local;
//! use std::sync::Arc;
//!
//! // Three "hosts" on this machine, through the local transport; any Transport works.
//! let fleet = Fleet::new()
//!     .host("one", Local::new())
//!     .host("two", Local::new())
//!     .host("three", Local::new())
//!     .fanout(2);
//! let task = Task::Run(Cmd::new(["sh", "-c", "echo hi; exit 3"]));
//! let mut lines = 0;
//! for event in Arc::new(fleet).events(task) {
//!     match event {
//!         Event::Line { host, stream: StreamKind::Stdout, line } => {
//!             assert_eq!(line, b"hi\n");
//!             println!("{}: {}", host.name, String::from_utf8_lossy(&line).trim_end());
//!             lines += 1;
//!         }
//!         Event::End(end) => assert_eq!(end.failure().as_deref(), Some("exit code 3")),
//!         Event::Done { failed, .. } => assert_eq!(failed, 3),
//!         _ => {}
//!     }
//! }
//! assert_eq!(lines, 3);
//! ```
//!
//! [`ConnectionPool`]: conn_core::ConnectionPool
//! [`RetryPolicy`]: conn_core::RetryPolicy
//! [`CancelToken`]: conn_core::CancelToken
//! [`Started`]: conn_core::Started
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod broadcast;
mod copy;
mod events;
mod fetch;
mod fleet;
mod gather;
mod handler;
pub mod limits;
mod lines;
mod outcome;
mod sink;

pub use broadcast::Broadcast;
pub use copy::{CopyPlan, Item};
pub use events::{Event, Events};
pub use fetch::FetchPlan;
pub use fleet::{Fleet, Task};
pub use gather::{Gather, Gathered, Kept};
pub use handler::{Handler, Quiet};
pub use lines::{Lines, MAX_LINE};
pub use outcome::{
    Group, Host, HostEnd, Outcome, Retried, RunReport, Skip, fold_hosts, one_line, without_host,
};
