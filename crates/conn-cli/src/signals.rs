//! SIGINT, SIGTERM and SIGHUP: cancel the run (every host's job shares its cancel token, which
//! kills each child's process group and closes each native session) instead of dying and
//! leaving ssh clients behind; a second signal ends the process at once with the signal's
//! default action.
//!
//! Every child conn starts leads its own process group, so a Ctrl-C at the terminal reaches
//! `conn` alone. [`install`] sets a handler that only writes the signal's number to a pipe (the
//! one thing a handler may safely do), and a thread of its own reads the pipe and cancels every
//! [`register`]ed token. No signal is ever blocked: a blocked mask would be inherited by every
//! child (std's spawn keeps the mask), and an ssh master started with SIGTERM blocked could
//! only be ended with SIGKILL. A handler, unlike a mask, is reset to the default by `exec`.
#![allow(unsafe_code)] // sigaction and write in a handler: libc only, each with its SAFETY reason

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use conn_core::{CancelToken, Job, SimpleJob};
use libc::c_int;

static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The write end of the pipe the handler writes to; -1 before [`install`].
static PIPE: AtomicI32 = AtomicI32::new(-1);
static TOKENS: Mutex<Vec<CancelToken>> = Mutex::new(Vec::new());

const SIGNALS: [c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The handler: one byte, the signal's number, into the pipe.
extern "C" fn on_signal(sig: c_int) {
    let fd = PIPE.load(Ordering::Relaxed);
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; the buffer is a local byte. A full pipe drops
    // the byte (the fd is non-blocking): a signal already pending suffices.
    unsafe {
        libc::write(fd, (&byte as *const u8).cast(), 1);
    }
}

/// Starts handling the signals. Call once, from the main thread, before starting threads.
pub fn install() {
    let Ok((read, write)) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    ) else {
        return; // keep the default actions
    };
    // The reading end blocks: the thread sleeps in read(2).
    let _ = rustix::io::ioctl_fionbio(&read, false);
    let spawned = std::thread::Builder::new()
        .name("conn-signals".into())
        .spawn(move || watch(read));
    if spawned.is_err() {
        return;
    }
    PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
    // The write end lives as long as the process (the handler may run at any time).
    std::mem::forget(write);
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction with a valid handler, an empty mask and SA_RESTART is a
        // valid disposition; `on_signal` only calls write(2). The old disposition is kept
        // when it was "ignore" (`nohup` ignores SIGHUP), as a shell would.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// The signal thread: the first signal cancels every registered token; a second one ends the
/// process with its default action.
fn watch(read: OwnedFd) {
    let mut byte = [0u8];
    loop {
        match rustix::io::read(&read, &mut byte) {
            Ok(1) => {}
            Ok(_) => return,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        let sig = c_int::from(byte[0]);
        if SIGNAL.swap(sig, Ordering::SeqCst) != 0 {
            die_by(sig);
        }
        for token in lock().iter() {
            token.cancel();
        }
    }
}

/// Ends the process with `sig`'s default action (the second signal: the user insists).
fn die_by(sig: c_int) -> ! {
    // SAFETY: SIG_DFL is a valid disposition for these signals; raise takes a signal number
    // and touches no memory of ours.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig);
}

fn lock() -> std::sync::MutexGuard<'static, Vec<CancelToken>> {
    TOKENS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `token` cancelled by the next signal (or at once, if one already came): a run's
/// token, shared by every host's job.
pub fn cancel_on_signal(token: &CancelToken) {
    let mut tokens = lock();
    // Checked under the lock: the signal thread sets SIGNAL before it takes the lock, so a
    // token is either seen by it or cancelled here.
    if interrupted().is_some() {
        token.cancel();
    }
    tokens.push(token.clone());
}

/// Makes `job` cancelled by the next signal (its token, see [`cancel_on_signal`]).
pub fn register(job: &Arc<SimpleJob>) {
    cancel_on_signal(job.cancel_token());
}

/// The signal received, if any.
pub fn interrupted() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
