//! Just enough of Rust's lexical rules to read item names out of a source file: comments,
//! string and character literals are blanked (newlines kept, so offsets and lines stay put),
//! which keeps a `{` in an `#[error("…{0}")]` or a `fn` in a comment from counting.

/// `text` with every comment blanked; with `strings` false, the contents of string and
/// character literals too (their quotes stay).
pub fn blank(text: &str, strings: bool) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let wipe = |out: &mut [u8], from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                wipe(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 1;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 1;
                    }
                    j += 1;
                }
                wipe(&mut out, i, j.min(b.len()));
                i = j;
            }
            b'r' if raw_string_start(b, i).is_some() && !ident_before(b, i) => {
                let (hashes, open) = raw_string_start(b, i).unwrap_or((0, i));
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[open + 1..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| open + 1 + p);
                if !strings {
                    wipe(&mut out, open + 1, end);
                }
                i = (end + close.len()).min(b.len());
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = j.min(b.len());
                if !strings {
                    wipe(&mut out, i + 1, end);
                }
                i = end + 1;
            }
            b'\'' => match char_literal_len(&b[i..]) {
                Some(len) => {
                    if !strings {
                        wipe(&mut out, i + 1, i + len - 1);
                    }
                    i += len;
                }
                None => i += 1, // a lifetime
            },
            _ => i += 1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `b[i]` continues an identifier (so an `r` there is not a raw string's).
fn ident_before(b: &[u8], i: usize) -> bool {
    let word = |k: usize| b[k].is_ascii_alphanumeric() || b[k] == b'_';
    match i {
        0 => false,
        // `br"…"`: a raw byte string.
        1 => word(0) && b[0] != b'b',
        _ => word(i - 1) && (b[i - 1] != b'b' || word(i - 2)),
    }
}

/// `r"`, `r#"`, `br"`: the number of hashes and where the opening quote is.
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut j = i + 1;
    while b.get(j) == Some(&b'#') {
        j += 1;
    }
    (b.get(j) == Some(&b'"')).then_some((j - i - 1, j))
}

/// The length of the character literal at the start of `b` (`'x'`, `'\n'`, `'\u{1F600}'`,
/// `'é'`), or None for a lifetime.
fn char_literal_len(b: &[u8]) -> Option<usize> {
    if b.get(1) == Some(&b'\\') {
        let end = b[2..].iter().take(12).position(|&c| c == b'\'')?;
        return Some(end + 3);
    }
    let s = std::str::from_utf8(&b[1..b.len().min(6)])
        .ok()
        .or_else(|| {
            // A multi-byte character cut at the window's end: decode what is whole.
            let mut n = b.len().min(6);
            while n > 1 && std::str::from_utf8(&b[1..n]).is_err() {
                n -= 1;
            }
            std::str::from_utf8(&b[1..n]).ok()
        })?;
    let c = s.chars().next()?;
    (s[c.len_utf8()..].starts_with('\'')).then_some(c.len_utf8() + 2)
}

/// The identifiers and punctuation of blanked source, with the line each starts on. Bytes,
/// not chars (a debug build reads the whole workspace this way): a non-ASCII byte is neither.
pub fn tokens(code: &str) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::with_capacity(b.len() / 4);
    let (mut line, mut i) = (1, 0);
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if ident(c) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            out.push((line, code[start..i].to_string()));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push((line, "::".to_string()));
            i += 2;
        } else {
            if c.is_ascii_punctuation() {
                out.push((line, (c as char).to_string()));
            }
            i += 1;
        }
    }
    out
}

/// The identifier-like words of `text` (ASCII letters, digits, `_`), lowercased.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.as_bytes()
        .split(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).to_ascii_lowercase())
}

/// Whether `word` is an identifier (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_ident(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[test]
fn comments_and_literals_are_blanked_and_lines_kept() {
    let src = "fn a() {} // fn b\n/* fn c */ const X: &str = \"fn d {\";\n\
               let c = '{'; fn e<'a>(x: &'a str) {}\nr#\"fn f\"#;";
    let code = blank(src, false);
    assert_eq!(code.lines().count(), src.lines().count());
    let fns: Vec<_> = tokens(&code)
        .windows(2)
        .filter(|w| w[0].1 == "fn")
        .map(|w| w[1].1.clone())
        .collect();
    assert_eq!(fns, ["a", "e"]);
    assert!(!code.contains('{') || code.matches('{').count() == 2);
    assert!(blank(src, true).contains("\"fn d {\""));
}
