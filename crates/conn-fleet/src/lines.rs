//! A host's stream cut into whole lines while it arrives, with bounded memory.

/// The longest line handed out whole; longer ones come in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// Splits one stream of one host into lines: each complete line (its newline included) is
/// handed out as soon as its newline arrives; a line longer than [`MAX_LINE`] in pieces of
/// that size, each ended with a newline added; a last line without a newline, with one added,
/// at [`Lines::finish`]. It holds at most one partial line.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Takes `bytes` and hands every complete line to `emit`.
    pub fn feed(&mut self, mut bytes: &[u8], emit: &mut dyn FnMut(&[u8])) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &bytes[..bytes.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) if self.partial.is_empty() => {
                    // The common case: a whole line inside one read, handed out in place.
                    emit(&window[..=i]);
                    bytes = &bytes[i + 1..];
                }
                Some(i) => {
                    self.partial.extend_from_slice(&window[..=i]);
                    emit(&self.partial);
                    self.partial.clear();
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.partial.len() == MAX_LINE {
                        self.partial.push(b'\n');
                        emit(&self.partial);
                        self.partial.clear();
                    }
                }
            }
        }
    }

    /// Hands a last line without newline to `emit`, with one added.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            emit(&self.partial);
            self.partial.clear();
        }
    }

    /// Forgets a partial line (an attempt that is retried).
    pub fn clear(&mut self) {
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        for c in chunks {
            lines.feed(c, &mut |l| got.push(l.to_vec()));
        }
        lines.finish(&mut |l| got.push(l.to_vec()));
        got
    }

    #[test]
    fn lines_are_whole_however_the_bytes_arrive() {
        assert_eq!(
            split(&[b"a", b"b\nc", b"d\n\ne"]),
            vec![
                b"ab\n".to_vec(),
                b"cd\n".to_vec(),
                b"\n".to_vec(),
                b"e\n".to_vec()
            ]
        );
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn a_huge_line_is_cut_into_bounded_pieces() {
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        let got = split(&[&big, b"\n"]);
        assert_eq!(got.len(), 3);
        assert!(
            got.iter()
                .all(|l| l.len() <= MAX_LINE + 1 && l.ends_with(b"\n"))
        );
        let total: usize = got.iter().map(|l| l.len() - 1).sum();
        assert_eq!(total, big.len());
    }
}
