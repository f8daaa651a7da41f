//! SIGINT, SIGTERM and SIGHUP: cancel every running job (which kills each child's process
//! group) instead of dying and leaving ssh clients behind.
//!
//! Every child conn starts leads its own process group, so a Ctrl-C at the terminal reaches
//! `conn` alone. [`install`] blocks the three signals in the main thread before any other
//! thread exists (so every thread inherits the mask; `std::process::Command` clears it in the
//! children) and waits for them with `sigwait(2)` on a thread of its own. The first signal
//! cancels every [`register`]ed job; a second one ends the process at once with the signal's
//! default action.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use conn_core::{Job, SimpleJob};

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static JOBS: Mutex<Vec<Weak<SimpleJob>>> = Mutex::new(Vec::new());

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Starts handling the signals. Call once, from the main thread, before starting threads.
pub fn install() {
    // SAFETY: plain libc calls on a local, initialised sigset_t.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return; // keep the default actions
        }
        set
    };
    let spawned = std::thread::Builder::new()
        .name("conn-signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is initialised; sigwait writes the signal number.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                if SIGNAL.swap(sig, Ordering::SeqCst) != 0 {
                    die_by(sig);
                }
                for job in lock().iter().filter_map(Weak::upgrade) {
                    job.cancel();
                }
            }
        });
    if spawned.is_err() {
        // No handler thread: unblock again so that the signals at least end the process.
        // SAFETY: as above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// Ends the process with `sig`'s default action (the second signal: the user insists).
fn die_by(sig: libc::c_int) -> ! {
    // SAFETY: restoring the default disposition and re-raising in this thread, where the
    // signal is then unblocked, terminates the process.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig);
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Weak<SimpleJob>>> {
    JOBS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `job` cancelled by the next signal (or at once, if one already came).
pub fn register(job: &Arc<SimpleJob>) {
    let mut jobs = lock();
    jobs.retain(|j| j.strong_count() > 0);
    jobs.push(Arc::downgrade(job));
    // Checked under the lock: the handler sets SIGNAL before it takes the lock, so a job is
    // either seen by the handler or cancelled here.
    if interrupted().is_some() {
        job.cancel();
    }
}

/// The signal received, if any.
pub fn interrupted() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
