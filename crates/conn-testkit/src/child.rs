//! Tests that need a second process (one that crashes, several that compete, one whose stderr
//! nobody reads) run their own test binary again, limited to one `#[ignore]`d helper test.
//!
//! The helper is `#[ignore]`d so that a normal run never counts it as a passing test; the
//! parent runs it explicitly (`--ignored --exact NAME`) and makes the assertions. The helper
//! calls [`helper_start`] first, so that running it by hand without its parent fails with a
//! message saying so instead of doing nothing:
//!
//! ```ignore
//! // (`ignore`: `#[test]` items cannot run inside a doc test.)
//! use conn_testkit::child;
//! use std::time::Duration;
//!
//! #[test]
//! #[ignore = "child process of `parent`, which runs it"]
//! fn helper() {
//!     child::helper_start();
//!     println!("HELLO from {}", std::process::id());
//! }
//!
//! #[test]
//! fn parent() {
//!     let out = child::run("helper", Duration::from_secs(30), |_| {});
//!     assert!(out.contains("HELLO from "), "{out}");
//! }
//! ```

use std::process::{Command, Stdio};
use std::time::Duration;

/// Set in a helper's environment by [`command`]; [`helper_start`] checks it.
const PARENT_ENV: &str = "CONN_TESTKIT_CHILD_OF";

/// The current test binary, set to run exactly the `#[ignore]`d test `name` (its full path, e.g.
/// `process::tests::relay_child` for a unit test in `mod process { mod tests }`), in one thread,
/// with its output passed through (`--nocapture`) and libtest's own lines kept short (`-q`), so
/// the helper's lines start at the start of a line. Stdin is /dev/null unless changed.
pub fn command(name: &str) -> Command {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot find the running test binary to re-run it: {e}"));
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        name,
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(PARENT_ENV, name)
    .stdin(Stdio::null());
    cmd
}

/// Runs the helper test `name` (see [`command`]; `configure` adds environment variables and
/// the like) within `timeout`, asserts that exactly that one test ran and passed, and returns
/// its stdout. Any failure panics with the helper's whole output.
pub fn run(name: &str, timeout: Duration, configure: impl FnOnce(&mut Command)) -> String {
    let mut cmd = command(name);
    configure(&mut cmd);
    let out = crate::run_with_timeout(&mut cmd, timeout)
        .unwrap_or_else(|e| panic!("child test {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child test {name} failed ({}):\n{stdout}{stderr}",
        out.status
    );
    assert!(
        ran_one_test(&stdout),
        "child test {name} did not run (is the name exact and the test #[ignore]d?):\n\
         {stdout}{stderr}"
    );
    stdout
}

/// Whether libtest's summary in `stdout` says that exactly one test ran and passed.
pub fn ran_one_test(stdout: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.starts_with("test result: ok. 1 passed; 0 failed"))
}

/// First call of every helper test: panics unless the helper was started by [`command`], so
/// that `cargo test -- --ignored` reports the helpers as failed (with this explanation)
/// rather than passing them without having checked anything.
pub fn helper_start() {
    if std::env::var_os(PARENT_ENV).is_none() {
        panic!(
            "this #[ignore]d test is the child-process half of another test, which runs it with \
             the environment it needs; run that test instead"
        );
    }
}
