//! Cutting text for messages on a character boundary: the one copy of that rule.

/// The last `max` bytes of `text` at most, starting on a character boundary (for the end of a
/// log or of a stderr in an error message, where the last lines matter).
///
/// ```
/// assert_eq!(conn_core::text::tail("abcdef", 3), "def");
/// assert_eq!(conn_core::text::tail("aé", 1), ""); // never half a character
/// ```
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The first `max` bytes of `text` at most, ending on a character boundary (for the start of a
/// long command line in a message).
///
/// ```
/// assert_eq!(conn_core::text::head("abcdef", 3), "abc");
/// ```
pub fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
