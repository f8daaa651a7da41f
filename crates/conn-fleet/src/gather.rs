//! Gathering: what each host printed, kept with bounded memory, and the hosts whose results are
//! identical grouped under one folded set (`clush -b`, `clubak -b`, `dshbak -c`).
//!
//! Each stream of each host keeps its first [`Gather::memory`] bytes in memory and writes the
//! rest to an unnamed temporary file, so a host that prints gigabytes costs disk, never memory.
//! Identical outputs are found by their SHA-256, computed while they arrive, never by comparing
//! or holding them whole.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use sha2::{Digest, Sha256};

/// How gathered output is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gather {
    /// Bytes of each stream of each host kept in memory; the rest goes to a temporary file.
    pub memory: usize,
}

impl Default for Gather {
    /// 1 MiB per stream and host in memory.
    fn default() -> Self {
        Gather { memory: 1 << 20 }
    }
}

/// One stream of one host, as gathered.
#[derive(Debug)]
pub struct Kept {
    head: Vec<u8>,
    spill: Option<File>,
    len: u64,
    last: Option<u8>,
    limit: usize,
    digest: Sha256,
    utf8: Utf8,
}

/// Whether the bytes so far are valid UTF-8, checked as they come (a code point may straddle
/// two pieces).
#[derive(Debug, Default)]
struct Utf8 {
    valid: bool,
    pending: Vec<u8>,
}

impl Utf8 {
    fn new() -> Self {
        Utf8 {
            valid: true,
            pending: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if !self.valid {
            return;
        }
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(bytes);
        match std::str::from_utf8(&data) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() => {
                // An incomplete code point at the end: wait for the rest.
                self.pending = data[e.valid_up_to()..].to_vec();
            }
            Err(_) => self.valid = false,
        }
    }

    fn is_valid(&self) -> bool {
        self.valid && self.pending.is_empty()
    }
}

impl Kept {
    pub(crate) fn new(gather: Gather) -> Self {
        Kept {
            head: Vec::new(),
            spill: None,
            len: 0,
            last: None,
            limit: gather.memory,
            digest: Sha256::new(),
            utf8: Utf8::new(),
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.len += bytes.len() as u64;
        if let Some(&b) = bytes.last() {
            self.last = Some(b);
        }
        self.digest.update(bytes);
        self.utf8.feed(bytes);
        let room = self.limit.saturating_sub(self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..room]);
        let rest = &bytes[room..];
        if !rest.is_empty() {
            let spill = match &mut self.spill {
                Some(f) => f,
                None => self.spill.insert(tempfile::tempfile()?),
            };
            spill.write_all(rest)?;
        }
        Ok(())
    }

    /// Forgets everything (an attempt that is retried).
    pub(crate) fn clear(&mut self) {
        *self = Kept::new(Gather { memory: self.limit });
    }

    /// How many bytes the stream had.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the stream was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The stream's last byte (to tell whether its last line has a newline).
    pub fn last_byte(&self) -> Option<u8> {
        self.last
    }

    /// Whether the whole stream is valid UTF-8.
    pub fn is_utf8(&self) -> bool {
        self.utf8.is_valid()
    }

    /// Whether part of the stream went to a temporary file.
    pub fn spilled(&self) -> bool {
        self.spill.is_some()
    }

    /// The SHA-256 of the whole stream.
    pub fn digest(&self) -> [u8; 32] {
        self.digest.clone().finalize().into()
    }

    /// The SHA-256 of the stream as lines: with a newline added when its last line has none,
    /// so that `a` and `a\n` (printed alike by `-b`) are the same output, as for clush.
    pub fn lines_digest(&self) -> [u8; 32] {
        let mut digest = self.digest.clone();
        if self.last.is_some_and(|b| b != b'\n') {
            digest.update(b"\n");
        }
        digest.finalize().into()
    }

    /// The first bytes, those kept in memory.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Writes the whole stream to `out`, reading the spilled part back from its file.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.head)?;
        if let Some(spill) = &self.spill {
            let mut file = spill.try_clone()?;
            file.rewind()?;
            io::copy(&mut file.take(self.len - self.head.len() as u64), out)?;
        }
        Ok(())
    }

    /// The whole stream in memory (for a caller that must have it so, e.g. to put it in JSON).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut all = Vec::with_capacity(self.len as usize);
        self.write_to(&mut all)?;
        Ok(all)
    }
}

/// What one host printed, gathered.
#[derive(Debug)]
pub struct Gathered {
    /// Its stdout.
    pub stdout: Kept,
    /// Its stderr.
    pub stderr: Kept,
}

impl Gathered {
    pub(crate) fn new(gather: Gather) -> Self {
        Gathered {
            stdout: Kept::new(gather),
            stderr: Kept::new(gather),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_spills_past_its_bound_and_reads_back_whole() {
        let mut kept = Kept::new(Gather { memory: 10 });
        kept.push(b"0123456789abc").unwrap();
        kept.push(b"def").unwrap();
        assert_eq!(kept.len(), 16);
        assert_eq!(kept.head(), b"0123456789");
        assert!(kept.spilled());
        assert_eq!(kept.to_vec().unwrap(), b"0123456789abcdef");
        let mut same = Kept::new(Gather { memory: 1 << 20 });
        same.push(b"0123456789abcdef").unwrap();
        assert_eq!(
            kept.digest(),
            same.digest(),
            "the digest ignores where bytes are kept"
        );
        let mut line = Kept::new(Gather::default());
        line.push(b"0123456789abcdef\n").unwrap();
        assert_ne!(line.digest(), kept.digest());
        assert_eq!(
            line.lines_digest(),
            kept.lines_digest(),
            "a last newline or not"
        );
        assert_eq!(line.lines_digest(), line.digest());
        let empty = Kept::new(Gather::default());
        assert_eq!(
            empty.lines_digest(),
            empty.digest(),
            "nothing stays nothing"
        );
    }

    #[test]
    fn utf8_is_judged_across_pieces() {
        let mut kept = Kept::new(Gather::default());
        let e = "é".as_bytes();
        kept.push(&e[..1]).unwrap();
        assert!(!kept.is_utf8(), "an incomplete code point is not text yet");
        kept.push(&e[1..]).unwrap();
        assert!(kept.is_utf8());
        kept.push(&[0xff]).unwrap();
        assert!(!kept.is_utf8());
    }
}
