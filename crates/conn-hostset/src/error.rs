//! The error of a malformed host-set expression: what is wrong, and where.

use std::fmt;

/// Longest stretch of the input shown by [`ParseError::caret`] and quoted by `Display`, in
/// characters: a 10,000-character expression still makes a readable message.
const WINDOW: usize = 72;

/// A malformed host-set expression (or one that would expand to too many names).
///
/// `Display` is one line: `invalid host set "h[1-3" at byte 1: '[' is never closed`.
/// [`ParseError::caret`] adds the two display lines that point at the offending character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    input: String,
    offset: usize,
    reason: String,
}

impl ParseError {
    pub(crate) fn new(input: &str, offset: usize, reason: impl Into<String>) -> Self {
        ParseError {
            input: input.to_string(),
            offset: offset.min(input.len()),
            reason: reason.into(),
        }
    }

    /// The expression as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Byte offset of the offending character in [`ParseError::input`] (the input's length
    /// when the expression ended too early).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What is wrong, without the input or the position.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Two lines for a terminal: the expression (at most about 72 characters of it around the
    /// offending one, control characters shown as `?`) and a `^` under the offending character.
    ///
    /// ```
    /// let e = conn_hostset::HostSet::parse("h[1-3],x;y").unwrap_err();
    /// assert_eq!(e.caret(), ("h[1-3],x;y".to_string(), "        ^".to_string()));
    /// ```
    pub fn caret(&self) -> (String, String) {
        let chars: Vec<char> = self.input.chars().collect();
        let column = self.input[..self.offset].chars().count();
        let (start, end) = window(chars.len(), column);
        let mut line = String::new();
        if start > 0 {
            line.push_str("...");
        }
        line.extend(chars[start..end].iter().map(|&c| printable(c)));
        if end < chars.len() {
            line.push_str("...");
        }
        let lead = if start > 0 { 3 } else { 0 };
        let caret = format!("{}^", " ".repeat(lead + column - start));
        (line, caret)
    }
}

/// The characters `[start, end)` to show around `column` out of `len`.
fn window(len: usize, column: usize) -> (usize, usize) {
    if len <= WINDOW {
        return (0, len);
    }
    let start = column.saturating_sub(WINDOW / 2).min(len - WINDOW);
    (start, start + WINDOW)
}

/// One display column per character: controls (and tabs, newlines) would break the alignment.
fn printable(c: char) -> char {
    if c.is_control() { '?' } else { c }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = if self.input.chars().count() <= WINDOW {
            format!("{:?}", self.input)
        } else {
            let head: String = self.input.chars().take(WINDOW).collect();
            format!("{head:?}…")
        };
        write!(
            f,
            "invalid host set {quoted} at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caret_sits_under_the_offending_character() {
        let e = ParseError::new("ab\tc", 2, "tab");
        assert_eq!(e.caret(), ("ab?c".into(), "  ^".into()));
        // Multi-byte characters count as one column.
        let e = ParseError::new("é[", 3, "x");
        assert_eq!(e.caret().1, "  ^");
        // At the end of the input.
        let e = ParseError::new("h[1", 3, "x");
        assert_eq!(e.caret().1, "   ^");
    }

    #[test]
    fn long_inputs_are_windowed_around_the_offset() {
        let input = format!("{}X{}", "a".repeat(500), "b".repeat(500));
        let e = ParseError::new(&input, 500, "x");
        let (line, caret) = e.caret();
        assert!(line.starts_with("...") && line.ends_with("..."), "{line}");
        assert_eq!(line.chars().nth(caret.len() - 1), Some('X'));
        assert!(line.len() < 100);
        // Near the start: no leading dots.
        let e = ParseError::new(&input, 3, "x");
        let (line, caret) = e.caret();
        assert!(!line.starts_with("...") && line.ends_with("..."));
        assert_eq!(caret, "   ^");
        // At the very end.
        let e = ParseError::new(&input, input.len(), "x");
        let (line, caret) = e.caret();
        assert!(line.starts_with("...") && !line.ends_with("..."));
        assert_eq!(caret.len(), line.chars().count() + 1);
        assert!(e.to_string().len() < 200, "{e}");
    }
}
