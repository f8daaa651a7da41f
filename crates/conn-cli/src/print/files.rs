//! `--outdir` and `--errdir` (clush and pssh): each host's stdout and stderr, whole and byte for
//! byte, in `DIR/HOST`, written as they arrive (memory stays bounded). A host that printed
//! nothing still gets its (empty) file, so the files say which hosts ran.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use conn_core::StreamKind;
use conn_fleet::Host;

/// The per-host files of a run.
pub struct Files {
    out: Option<PathBuf>,
    err: Option<PathBuf>,
    /// Per host: its stdout file and stderr file, once opened; `None` after a write failed
    /// (said once).
    open: Vec<Mutex<[Slot; 2]>>,
}

#[derive(Default)]
enum Slot {
    #[default]
    Closed,
    Open(File),
    Broken,
}

impl Files {
    /// Files under `out` and `err` (created, with their parents, when missing) for `hosts`
    /// hosts; `None` when neither is given. An unusable directory is an error naming it,
    /// before anything runs.
    pub fn new(
        out: Option<&Path>,
        err: Option<&Path>,
        hosts: usize,
    ) -> Result<Option<Files>, String> {
        if out.is_none() && err.is_none() {
            return Ok(None);
        }
        for dir in out.iter().chain(err.iter()) {
            fs::create_dir_all(dir)
                .map_err(|e| format!("cannot use {} for the hosts' files: {e}", dir.display()))?;
        }
        Ok(Some(Files {
            out: out.map(Path::to_path_buf),
            err: err.map(Path::to_path_buf),
            open: (0..hosts)
                .map(|_| Mutex::new([Slot::Closed, Slot::Closed]))
                .collect(),
        }))
    }

    fn dir(&self, stream: StreamKind) -> Option<&Path> {
        match stream {
            StreamKind::Stdout => self.out.as_deref(),
            StreamKind::Stderr => self.err.as_deref(),
        }
    }

    /// Appends `bytes` to `host`'s file of `stream`.
    pub fn write(&self, host: &Host, stream: StreamKind, bytes: &[u8]) {
        let Some(dir) = self.dir(stream) else { return };
        let i = stream as usize;
        let mut slots = self.open[host.index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[i];
        if let Slot::Closed = slot {
            *slot = open(dir, host);
        }
        if let Slot::Open(file) = slot
            && let Err(e) = file.write_all(bytes)
        {
            tracing::warn!("cannot write {}: {e}", dir.join(&host.name).display());
            *slot = Slot::Broken;
        }
    }

    /// Starts `host`'s files afresh: its command is being run again (`--idempotent`), and the
    /// files hold the last attempt only. A file is truncated when the new attempt first writes
    /// to it, or at [`Files::close`].
    pub fn restart(&self, host: &Host) {
        let mut slots = self.open[host.index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for slot in slots.iter_mut() {
            if let Slot::Open(_) = slot {
                *slot = Slot::Closed;
            }
        }
    }

    /// Closes `host`'s files (creating empty ones for the streams that printed nothing).
    pub fn close(&self, host: &Host) {
        let mut slots = self.open[host.index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (i, stream) in [StreamKind::Stdout, StreamKind::Stderr]
            .into_iter()
            .enumerate()
        {
            if let (Slot::Closed, Some(dir)) = (&slots[i], self.dir(stream)) {
                slots[i] = open(dir, host);
            }
            slots[i] = Slot::Broken; // closed for good
        }
    }
}

fn open(dir: &Path, host: &Host) -> Slot {
    let path = dir.join(&host.name);
    match File::create(&path) {
        Ok(f) => Slot::Open(f),
        Err(e) => {
            tracing::warn!("cannot create {}: {e}", path.display());
            Slot::Broken
        }
    }
}
