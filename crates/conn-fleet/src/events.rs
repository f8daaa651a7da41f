//! [`Events`]: a run as an iterator of owned [`Event`]s, on top of the [`Handler`] callbacks,
//! for callers that prefer a loop.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use conn_core::{CancelToken, StreamKind, Transport};

use crate::fleet::{Fleet, Task};
use crate::handler::Handler;
use crate::outcome::{Host, HostEnd};

/// One thing that happened in a run, owned.
#[derive(Clone, Debug)]
pub enum Event {
    /// A worker took the host.
    Start(Host),
    /// A whole line of a host's output (see [`Handler::line`]).
    Line {
        /// The host.
        host: Host,
        /// Which stream.
        stream: StreamKind,
        /// The line, its newline included.
        line: Vec<u8>,
    },
    /// An idempotent command is run again on the host.
    Retrying(Host),
    /// The host is done.
    End(HostEnd),
    /// The run is over: the last event.
    Done {
        /// How many hosts did not succeed.
        failed: usize,
        /// Whether the run was cancelled.
        cancelled: bool,
    },
}

/// The events of a run, as an iterator: [`Fleet::events`]. The run happens on threads of its
/// own meanwhile; at most a bounded number of events wait for the caller, so memory stays
/// bounded and a caller that reads slowly slows the hosts down (as a slow reader of a pipe
/// would). Dropping the iterator cancels the run and waits for its threads.
pub struct Events {
    rx: Option<Receiver<Event>>,
    cancel: CancelToken,
    thread: Option<JoinHandle<()>>,
}

/// How many events may wait for the caller.
const EVENT_QUEUE: usize = 1024;

impl<T: Transport> Fleet<T> {
    /// The run as an iterator of owned events ([`Events`]); the fleet is shared with the
    /// threads that run it.
    pub fn events(self: Arc<Self>, task: Task) -> Events {
        Events::start(self, task)
    }
}

impl Events {
    fn start<T: Transport>(fleet: Arc<Fleet<T>>, task: Task) -> Events {
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        let cancel = fleet.cancel_token().clone();
        let thread = std::thread::Builder::new()
            .name("conn-fleet-events".into())
            .spawn(move || {
                let handler = Sender(Mutex::new(tx.clone()));
                let report = fleet.run(&task, &handler);
                let _ = tx.send(Event::Done {
                    failed: report.failed(),
                    cancelled: report.cancelled,
                });
            })
            .expect("a thread for the run");
        Events {
            rx: Some(rx),
            cancel,
            thread: Some(thread),
        }
    }

    /// Cancels the run: every host ends at once; the events of their ends still come.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Iterator for Events {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        // Nobody reads any more: senders fail at once instead of waiting, the hosts end.
        drop(self.rx.take());
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The handler behind [`Events`]: every callback becomes an owned event on the channel (a
/// receiver that went away is no error: the run is being cancelled).
struct Sender(Mutex<SyncSender<Event>>);

impl Sender {
    fn send(&self, event: Event) {
        // The sender is cloned per send so that a full queue blocks only this host's thread.
        let tx = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = tx.send(event);
    }
}

impl Handler for Sender {
    fn start(&self, host: &Host) {
        self.send(Event::Start(host.clone()));
    }

    fn line(&self, host: &Host, stream: StreamKind, line: &[u8]) {
        self.send(Event::Line {
            host: host.clone(),
            stream,
            line: line.to_vec(),
        });
    }

    fn retrying(&self, host: &Host) {
        self.send(Event::Retrying(host.clone()));
    }

    fn end(&self, end: &HostEnd) {
        self.send(Event::End(end.clone()));
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}
