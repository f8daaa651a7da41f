//! [`Broadcast`]: one input for every host of a run (pdsh's and clush's stdin to all), read
//! once to its end and kept on disk, so that memory stays bounded and a slow host never holds
//! up a fast one.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use conn_core::Stdin;

/// An input read once into an unnamed temporary file; [`Broadcast::stdin`] gives each host's
/// command a descriptor of its own on it (`Stdin::Path`, opened anew for every host and
/// attempt, with an offset of its own). Keep the value alive for the run: dropping it deletes
/// the file.
///
/// ```
/// use conn_fleet::{Broadcast, Fleet, Quiet, Task};
/// use conn_core::Cmd;
/// use conn_local::Local;
///
/// let input = Broadcast::read_from(&b"one\ntwo\n"[..]).unwrap();
/// let fleet = Fleet::new().host("a", Local::new()).host("b", Local::new());
/// let task = Task::Run(Cmd::new(["grep", "-c", "o"]).stdin(input.stdin()));
/// let report = fleet.run(&task, &Quiet);
/// assert_eq!(report.failed(), 0);
/// ```
#[derive(Debug)]
pub struct Broadcast {
    file: File,
}

impl Broadcast {
    /// Reads `input` to its end into an unnamed temporary file.
    pub fn read_from(mut input: impl Read) -> io::Result<Broadcast> {
        let mut file = tempfile::tempfile()?;
        io::copy(&mut input, &mut file)?;
        Ok(Broadcast { file })
    }

    /// The stdin of one host's command: the whole input, from its start.
    pub fn stdin(&self) -> Stdin {
        Stdin::Path(self.path())
    }

    /// A path that opens the file anew (`/proc/self/fd/N`: the file has no name of its own).
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// How many bytes every host gets.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the input was empty.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}
