//! What a run tells its caller while it happens: the [`Handler`] callbacks, called from the
//! hosts' worker threads with borrowed bytes ([`Events`](crate::Events) turns them into an
//! iterator of owned events).

use conn_core::StreamKind;

use crate::outcome::{Host, HostEnd};

/// The callbacks of a run, in the spirit of ClusterShell's `EventHandler`. Each is called from
/// the worker thread of the host it is about, so hosts never wait for each other's callbacks
/// unless the handler makes them (a lock of its own); every method has an empty default.
///
/// The order for one host: `start`, then its `output` and `line` calls as the bytes arrive
/// (`retrying` before an attempt that replaces an earlier one's output), then `end`.
pub trait Handler: Sync {
    /// A worker took `host`; its first attempt starts.
    fn start(&self, host: &Host) {
        let _ = host;
    }

    /// Bytes `host` wrote to `stream`, exactly as they came (for a file per host, or for one
    /// host passed through as it is).
    fn output(&self, host: &Host, stream: StreamKind, bytes: &[u8]) {
        let _ = (host, stream, bytes);
    }

    /// One whole line of `host`'s `stream`, its newline included; a line longer than
    /// [`MAX_LINE`](crate::MAX_LINE) comes in pieces of that size, each ended with a newline; a
    /// last line without one gets one.
    fn line(&self, host: &Host, stream: StreamKind, line: &[u8]) {
        let _ = (host, stream, line);
    }

    /// An idempotent command that may have run is being run again on `host`: what its last
    /// attempt wrote will be written again.
    fn retrying(&self, host: &Host) {
        let _ = host;
    }

    /// `host` is done.
    fn end(&self, end: &HostEnd) {
        let _ = end;
    }
}

/// A handler that does nothing: for a run whose [`RunReport`](crate::RunReport) is all the
/// caller wants.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Handler for Quiet {}
