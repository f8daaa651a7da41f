//! SIGINT, SIGTERM and SIGHUP: cancel every running job (which kills each child's process
//! group) instead of dying and leaving ssh clients behind.
//!
//! Every child conn starts leads its own process group, so a Ctrl-C at the terminal reaches
//! `conn` alone. [`install`] blocks the three signals in the main thread before any other
//! thread exists (so every thread inherits the mask; `std::process::Command` clears it in the
//! children) and waits for them with `sigwait(2)` on a thread of its own. The first signal
//! cancels every [`register`]ed job; a second one ends the process at once with the signal's
//! default action.
#![allow(unsafe_code)] // sigmask, sigwait, raise: libc only, each with its SAFETY reason

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use conn_core::{Job, SimpleJob};
use libc::{c_int, sigset_t};

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static JOBS: Mutex<Vec<Weak<SimpleJob>>> = Mutex::new(Vec::new());

const SIGNALS: [c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

// The unsafe code of this module is confined to `sigset`, `thread_mask`, `wait_for` and
// `die_by`. Rust's standard library has no signal masks, and rustix (not a dependency of this
// crate) offers them only as unsafe raw kernel calls (`rustix::runtime::kernel_sigprocmask`,
// which bypasses libc's own reserved signals), so libc's calls stay, each with its reason.

/// The signal set holding `signals`.
fn sigset(signals: &[c_int]) -> sigset_t {
    let mut set = MaybeUninit::<sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set; sigaddset, given valid signal numbers,
    // only writes inside it. Both write through a pointer to our local.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &s in signals {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        set.assume_init()
    }
}

/// Blocks (`SIG_BLOCK`) or unblocks (`SIG_UNBLOCK`) `set` in the calling thread; false when
/// the call failed.
fn thread_mask(how: c_int, set: &sigset_t) -> bool {
    // SAFETY: `set` is an initialised sigset_t that outlives the call; a null old-set pointer
    // means "do not report the old mask".
    unsafe { libc::pthread_sigmask(how, set, std::ptr::null_mut()) == 0 }
}

/// Waits for one of the (blocked) signals of `set`; `None` when sigwait failed.
fn wait_for(set: &sigset_t) -> Option<c_int> {
    let mut sig: c_int = 0;
    // SAFETY: `set` is initialised; sigwait writes the signal number into our local.
    (unsafe { libc::sigwait(set, &mut sig) } == 0).then_some(sig)
}

/// Starts handling the signals. Call once, from the main thread, before starting threads.
pub fn install() {
    let set = sigset(&SIGNALS);
    if !thread_mask(libc::SIG_BLOCK, &set) {
        return; // keep the default actions
    }
    let spawned = std::thread::Builder::new()
        .name("conn-signals".into())
        .spawn(move || {
            loop {
                let Some(sig) = wait_for(&set) else {
                    continue;
                };
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
        thread_mask(libc::SIG_UNBLOCK, &set);
    }
}

/// Unblocks the three signals in the calling thread again, before it `exec`s another program
/// (`conn ssh` handing over to ssh): a program inherits its signal mask across `exec`, and
/// std's `exec` leaves it as it is. A signal that comes from here on has its default action.
pub fn unblock_for_exec() {
    thread_mask(libc::SIG_UNBLOCK, &sigset(&SIGNALS));
}

/// Ends the process with `sig`'s default action (the second signal: the user insists).
fn die_by(sig: c_int) -> ! {
    // SAFETY: SIG_DFL is a valid disposition for these signals, and no handler of ours is
    // replaced (none is ever installed: the signals are taken with sigwait). It matters when
    // the signal was ignored at start (`nohup` ignores SIGHUP).
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
    // Re-raised in this thread, where it is now unblocked, it terminates the process.
    thread_mask(libc::SIG_UNBLOCK, &sigset(&[sig]));
    // SAFETY: raise takes a signal number and touches no memory of ours.
    unsafe {
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
