//! A background thread for a child's [`Pump`]: while the caller works the pipes itself
//! (reads stdout, writes stdin), conn's own pipe ends (input bytes, relays, a watched stderr)
//! must keep moving; `wait` stops the thread and takes the pump back.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd};

use crate::job::{CancelToken, Deadline};
use crate::poll::poll_until;
use crate::pump::Pump;

/// How often the thread looks at the job when its cancellation has no descriptor.
const TICK: Duration = Duration::from_millis(10);

/// A thread moving a child's pump while the caller works its pipes, and how to stop it.
#[derive(Debug)]
pub(crate) struct Pumping {
    thread: Option<JoinHandle<()>>,
    /// The pump, handed back by the thread when it stops (or never taken, if it never started).
    pump: Arc<Mutex<Option<Pump>>>,
    /// An eventfd the thread polls: readable means "stop and hand the pump back".
    stop: Arc<OwnedFd>,
}

impl Pumping {
    /// Moves `pump` on a thread of its own until it is done, the job's deadline passes or its
    /// token is cancelled, or [`Pumping::stop`] takes it back. On failure the pump comes back
    /// untouched with the reason.
    pub(crate) fn start(
        pump: Pump,
        deadline: Option<Deadline>,
        token: CancelToken,
    ) -> Result<Pumping, Box<(Pump, io::Error)>> {
        let stop = match eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK) {
            Ok(fd) => Arc::new(fd),
            Err(e) => return Err(Box::new((pump, e.into()))),
        };
        let shared = Arc::new(Mutex::new(Some(pump)));
        let (for_thread, stop_for_thread) = (Arc::clone(&shared), Arc::clone(&stop));
        let spawned = std::thread::Builder::new()
            .name("conn-pump".into())
            .spawn(move || {
                let Some(mut pump) = lock(&for_thread).take() else {
                    return;
                };
                let _ = run(&mut pump, deadline, &token, stop_for_thread.as_fd());
                *lock(&for_thread) = Some(pump);
            });
        match spawned {
            Ok(thread) => Ok(Pumping {
                thread: Some(thread),
                pump: shared,
                stop,
            }),
            Err(e) => Err(Box::new((lock(&shared).take().unwrap_or_default(), e))),
        }
    }

    /// Stops the thread and takes the pump back, as far as the thread got with it.
    pub(crate) fn stop(mut self) -> Pump {
        let _ = rustix::io::write(&*self.stop, &1u64.to_ne_bytes());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        lock(&self.pump).take().unwrap_or_default()
    }
}

impl Drop for Pumping {
    fn drop(&mut self) {
        // A child dropped or killed: the thread stops too (never left moving bytes for nobody).
        let _ = rustix::io::write(&*self.stop, &1u64.to_ne_bytes());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Moves a pump's bytes until it is done or the job stops it (a background pump thread).
fn run(
    pump: &mut Pump,
    deadline: Option<Deadline>,
    token: &CancelToken,
    stop: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut buf = Pump::buffer();
    let wake_fd = token.wake_fd();
    while !pump.done() && !token.is_cancelled() && !deadline.is_some_and(|d| d.expired()) {
        let mut fds = Vec::with_capacity(5);
        let mut tags = Vec::with_capacity(5);
        pump.poll_fds(&mut fds, &mut tags);
        if fds.is_empty() {
            break;
        }
        let pumped = fds.len();
        fds.push(PollFd::from_borrowed_fd(stop, PollFlags::IN));
        if let Some(fd) = wake_fd {
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        }
        poll_until(
            &mut fds,
            deadline.map(|d| d.at()),
            wake_fd.is_none().then_some(TICK),
        )?;
        if !fds[pumped].revents().is_empty() {
            return Ok(()); // `wait` takes over
        }
        let ready = Pump::ready(&fds[..pumped], &tags);
        drop(fds);
        for tag in ready {
            pump.on_ready(tag, &mut buf)?;
        }
    }
    Ok(())
}
