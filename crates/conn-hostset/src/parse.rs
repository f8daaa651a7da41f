//! The expression parser: items, users, brackets and ranges, checked and counted before any
//! name is made, then expanded into a [`Builder`].

use crate::error::ParseError;
use crate::name::{MAX_DIGITS, Num, digits};
use crate::set::Builder;

/// The most names one expression may make (duplicates counted) unless the caller sets another
/// limit: far above any fleet, far below what would exhaust memory.
pub const DEFAULT_MAX_NAMES: usize = 1_000_000;

/// Characters that no name may hold (besides whitespace and control characters): those a shell
/// or ssh would give a meaning to, as `conn_core::UserHost` refuses them. `[`, `]`, `,` and `@`
/// are in the list too, but the parser gives them their syntax meaning first.
const FORBIDDEN: &str = "\"'`~!@#$%^&*()+={}[]|;<>?,\\/";

/// `a`, `a-b` or `a-b/step` in a bracket; `width` is the number of digits `a` is written with.
#[derive(Debug)]
struct Range {
    start: u64,
    end: u64,
    step: u64,
    width: u8,
}

impl Range {
    fn count(&self) -> u64 {
        (self.end - self.start) / self.step + 1
    }
}

#[derive(Debug)]
enum Piece {
    /// Literal text (never empty).
    Text(String),
    /// A bracket: its byte offset (for errors), its ranges and how many numbers they hold.
    Bracket {
        at: usize,
        ranges: Vec<Range>,
        count: u64,
    },
}

/// One comma-separated item: `[user@]pieces`.
#[derive(Debug)]
struct Item {
    start: usize,
    user: Option<String>,
    pieces: Vec<Piece>,
}

/// Parses `input`, checks that it makes at most `max_names` names, and adds them to `out`.
/// With `single`, the input must be one plain name: brackets and commas are refused.
pub(crate) fn parse_into(
    input: &str,
    max_names: usize,
    single: bool,
    out: &mut Builder,
) -> Result<(), ParseError> {
    let items = Parser {
        input,
        pos: 0,
        single,
    }
    .items()?;
    let limit = max_names as u64;
    let mut total: u64 = 0;
    for item in &items {
        let mut product: u64 = 1;
        for piece in &item.pieces {
            if let Piece::Bracket { at, count, .. } = piece {
                product = product.saturating_mul(*count);
                if product > limit {
                    return Err(ParseError::new(
                        input,
                        *at,
                        format!("this range makes more than {max_names} names (the limit)"),
                    ));
                }
            }
        }
        total = total.saturating_add(product);
        if total > limit {
            return Err(ParseError::new(
                input,
                item.start,
                format!("the expression makes more than {max_names} names (the limit)"),
            ));
        }
    }
    for item in &items {
        expand(item, out);
    }
    Ok(())
}

/// Adds every name of `item` (the cartesian product of its brackets) to `out`.
fn expand(item: &Item, out: &mut Builder) {
    let lists: Vec<Vec<Num>> = item
        .pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Bracket { ranges, .. } => Some(numbers(ranges)),
            Piece::Text(_) => None,
        })
        .collect();
    let mut at = vec![0usize; lists.len()];
    let mut name = String::new();
    loop {
        name.clear();
        let mut k = 0;
        for piece in &item.pieces {
            match piece {
                Piece::Text(t) => name.push_str(t),
                Piece::Bracket { .. } => {
                    lists[k][at[k]].push_to(&mut name);
                    k += 1;
                }
            }
        }
        out.add(item.user.as_deref(), &name);
        // Next combination, the last bracket turning fastest.
        let mut k = lists.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            at[k] += 1;
            if at[k] < lists[k].len() {
                break;
            }
            at[k] = 0;
        }
    }
}

/// The numbers of a bracket, each written with at least its range start's width.
fn numbers(ranges: &[Range]) -> Vec<Num> {
    let mut out = Vec::new();
    for r in ranges {
        let mut v = r.start;
        loop {
            out.push(Num {
                value: v,
                width: r.width.max(digits(v)),
            });
            match v.checked_add(r.step) {
                Some(next) if next <= r.end => v = next,
                _ => break,
            }
        }
    }
    out
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    single: bool,
}

impl Parser<'_> {
    fn err(&self, at: usize, reason: impl Into<String>) -> ParseError {
        ParseError::new(self.input, at, reason)
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn skip_whitespace(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn items(mut self) -> Result<Vec<Item>, ParseError> {
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.pos == self.input.len() {
            return Err(self.err(
                self.pos,
                if self.single {
                    "empty host name"
                } else {
                    "empty host set"
                },
            ));
        }
        loop {
            items.push(self.item()?);
            self.skip_whitespace();
            match self.peek() {
                None => return Ok(items),
                Some(',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    self.skip_whitespace();
                    if self.pos == self.input.len() {
                        return Err(self.err(comma, "empty host name after ','"));
                    }
                }
                Some(c) if c.is_whitespace() => unreachable!("whitespace was skipped"),
                Some(_) => {
                    // After whitespace that ended a name, only ',' or the end may come.
                    return Err(self.err(
                        self.last_whitespace(),
                        "whitespace inside a host name (separate hosts with ',')",
                    ));
                }
            }
        }
    }

    /// Whether an '@' follows in the rest of the current item (so the text so far is a user).
    fn user_ahead(&self) -> bool {
        self.input[self.pos..]
            .chars()
            .take_while(|&c| c != ',' && !c.is_whitespace())
            .any(|c| c == '@')
    }

    /// Offset of the whitespace just before `pos`.
    fn last_whitespace(&self) -> usize {
        let before = &self.input[..self.pos];
        let trimmed = before.trim_end();
        trimmed.len()
    }

    fn item(&mut self) -> Result<Item, ParseError> {
        let start = self.pos;
        let mut user: Option<(String, usize)> = None;
        let mut pieces: Vec<Piece> = Vec::new();
        let mut text = String::new();
        let mut text_start = start;
        while let Some(c) = self.peek() {
            match c {
                ',' | ']' | '[' if self.single => {
                    return Err(self.err(
                        self.pos,
                        format!("{c:?} cannot appear in a single host name"),
                    ));
                }
                ',' => break,
                c if c.is_whitespace() => break,
                '@' => {
                    if user.is_some() {
                        return Err(self.err(self.pos, "a second '@' in one item"));
                    }
                    if pieces.iter().any(|p| matches!(p, Piece::Bracket { .. })) {
                        return Err(self.err(
                            self.pos,
                            "'@' after a range: a user name cannot hold ranges",
                        ));
                    }
                    if text.is_empty() {
                        return Err(self.err(self.pos, "empty user name before '@'"));
                    }
                    check_text(self.input, &text, text_start, "user")?;
                    user = Some((std::mem::take(&mut text), self.pos));
                    self.pos += 1;
                    text_start = self.pos;
                }
                '[' => {
                    if !text.is_empty() {
                        check_text(self.input, &text, text_start, "host")?;
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(self.bracket()?);
                    text_start = self.pos;
                }
                ']' => return Err(self.err(self.pos, "']' without a '[' before it")),
                c if c.is_control() || FORBIDDEN.contains(c) => {
                    let what = if user.is_none() && self.user_ahead() {
                        "a user name"
                    } else {
                        "a host name"
                    };
                    return Err(self.err(self.pos, format!("{c:?} is not allowed in {what}")));
                }
                // A leading '-' is the most dangerous mistake (`-oProxyCommand=…`): said first,
                // before any other character of the name is looked at.
                '-' if text.is_empty() && pieces.is_empty() => {
                    return Err(if user.is_none() && self.user_ahead() {
                        self.err(
                            self.pos,
                            "a user name must not start with '-' (ssh would read it as an option)",
                        )
                    } else {
                        self.err(
                            self.pos,
                            "a host name must not start with '-' (ssh would read it as an option)",
                        )
                    });
                }
                c => {
                    if text.is_empty() {
                        text_start = self.pos;
                    }
                    text.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        if !text.is_empty() {
            check_text(self.input, &text, text_start, "host")?;
            pieces.push(Piece::Text(text));
        }
        if pieces.is_empty() {
            return Err(match user {
                Some((_, at)) => self.err(at, "empty host name after '@'"),
                None => self.err(self.pos, "empty host name before ','"),
            });
        }
        Ok(Item {
            start,
            user: user.map(|(u, _)| u),
            pieces,
        })
    }

    /// Parses `[ranges]` starting at the `[`.
    fn bracket(&mut self) -> Result<Piece, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut ranges = Vec::new();
        let mut count: u64 = 0;
        loop {
            match self.peek() {
                None => return Err(self.err(open, "'[' is never closed")),
                Some(']') if ranges.is_empty() => {
                    return Err(self.err(self.pos, "empty brackets: write a number or a range"));
                }
                Some(']' | ',') => {
                    return Err(self.err(self.pos, "empty range: a number is missing"));
                }
                _ => {}
            }
            let range = self.range(open)?;
            count = count.saturating_add(range.count());
            ranges.push(range);
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {
                    self.pos += 1;
                    return Ok(Piece::Bracket {
                        at: open,
                        ranges,
                        count,
                    });
                }
                None => return Err(self.err(open, "'[' is never closed")),
                Some(_) => {
                    return Err(self.err(self.pos, "expected ',', '-' or ']' after a number"));
                }
            }
        }
    }

    /// `a`, `a-b` or `a-b/step`.
    fn range(&mut self, open: usize) -> Result<Range, ParseError> {
        let (start, start_at, start_len) = self.number("a number", open)?;
        if self.peek() != Some('-') {
            if self.peek() == Some('/') {
                return Err(self.err(self.pos, "a step needs a range, as in 1-10/2"));
            }
            return Ok(Range {
                start,
                end: start,
                step: 1,
                width: start_len as u8,
            });
        }
        self.pos += 1;
        let (end, end_at, end_len) = self.number("the end of the range", open)?;
        let step = if self.peek() == Some('/') {
            self.pos += 1;
            let (step, step_at, _) = self.number("a step", open)?;
            if step == 0 {
                return Err(self.err(step_at, "a step must be at least 1"));
            }
            step
        } else {
            1
        };
        if start > end {
            return Err(self.err(
                start_at,
                format!(
                    "range {}-{} goes backwards",
                    &self.input[start_at..start_at + start_len],
                    &self.input[end_at..end_at + end_len]
                ),
            ));
        }
        // The end's width follows from the start's; an end written with leading zeros must
        // agree with it (`[1-010]` is ambiguous: `[001-010]` or `[1-10]`?).
        let end_text = &self.input[end_at..end_at + end_len];
        if end_len > 1 && end_text.starts_with('0') && end_len != start_len {
            return Err(self.err(
                end_at,
                format!(
                    "padding mismatch: the end {end_text} has leading zeros but the start {} \
                     has {} digits (pad both ends to the same width)",
                    &self.input[start_at..start_at + start_len],
                    start_len
                ),
            ));
        }
        Ok(Range {
            start,
            end,
            step,
            width: start_len as u8,
        })
    }

    /// A run of ASCII digits: (value, offset, length).
    fn number(&mut self, what: &str, open: usize) -> Result<(u64, usize, usize), ParseError> {
        let at = self.pos;
        let len = self.input[at..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if len == 0 {
            return Err(match self.peek() {
                None => self.err(open, "'[' is never closed"),
                Some('[') => self.err(at, "'[' inside brackets"),
                Some(c) if c.is_whitespace() => self.err(at, "whitespace inside brackets"),
                Some(c) => self.err(at, format!("expected {what}, found {c:?}")),
            });
        }
        if len > MAX_DIGITS {
            return Err(self.err(at, format!("number too long (at most {MAX_DIGITS} digits)")));
        }
        self.pos += len;
        let value = self.input[at..at + len]
            .parse()
            .map_err(|_| self.err(at, "not a number"))?;
        Ok((value, at, len))
    }
}

/// Rules for the literal text of a user or host name (forbidden characters are refused while
/// scanning): no `..`, and a user must not start with `-` either.
fn check_text(input: &str, text: &str, at: usize, what: &str) -> Result<(), ParseError> {
    if let Some(i) = text.find("..") {
        return Err(ParseError::new(
            input,
            at + i,
            format!("a {what} name must not contain '..'"),
        ));
    }
    if what == "user" && text.starts_with('-') {
        return Err(ParseError::new(
            input,
            at,
            "a user name must not start with '-' (ssh would read it as an option)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::HostSet;

    fn names(expr: &str) -> Vec<String> {
        HostSet::parse(expr)
            .unwrap_or_else(|e| panic!("{e}"))
            .expand()
            .collect()
    }

    fn error(expr: &str) -> (usize, String) {
        let e = HostSet::parse(expr).expect_err(expr);
        assert!(e.to_string().contains(&format!("{expr:?}")), "{e}");
        (e.offset(), e.reason().to_string())
    }

    #[test]
    fn lists_ranges_and_padding() {
        assert_eq!(names("a,b,h[1-3]"), ["a", "b", "h1", "h2", "h3"]);
        assert_eq!(names(" a , b "), ["a", "b"]);
        assert_eq!(names("h[01-03]"), ["h01", "h02", "h03"]);
        assert_eq!(names("h[8-10]"), ["h8", "h9", "h10"]);
        assert_eq!(names("h[098-100]"), ["h098", "h099", "h100"]);
        assert_eq!(names("h[001-10]").len(), 10);
        assert_eq!(names("h[001-10]")[9], "h010");
        assert_eq!(names("h[007]"), ["h007"]);
        assert_eq!(names("h[00-01]"), ["h00", "h01"]);
        assert_eq!(names("h[1-10/3]"), ["h1", "h4", "h7", "h10"]);
        assert_eq!(names("h[1-9/4]x"), ["h1x", "h5x", "h9x"]);
        assert_eq!(names("[1-2]a"), ["1a", "2a"]);
        let all = names("h[001-100,200]");
        assert_eq!(all.len(), 101);
        assert_eq!(
            (&all[0][..], &all[99][..], &all[100][..]),
            ("h001", "h100", "h200")
        );
    }

    #[test]
    fn several_brackets_make_the_product() {
        let n = names("rack[1-2]-n[01-16]");
        assert_eq!(n.len(), 32);
        assert_eq!(n[0], "rack1-n01");
        assert_eq!(n[16], "rack2-n01");
        assert_eq!(names("a[1-2]b[1-2]c[1-2]").len(), 8);
        // Digits next to a bracket are just text: the name decides what its numbers are.
        assert_eq!(names("n[0-1]01"), ["n001", "n101"]);
    }

    #[test]
    fn users_apply_to_every_name_of_their_item() {
        assert_eq!(names("root@h[1-2],db"), ["db", "root@h1", "root@h2"]);
        assert_eq!(names("u@fe80::1"), ["u@fe80::1"]);
        assert_eq!(names("a.b-c_d.example.com"), ["a.b-c_d.example.com"]);
        assert_eq!(names("ünï[1-2]"), ["ünï1", "ünï2"]);
    }

    #[test]
    fn malformed_expressions_point_at_the_offending_character() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty host set"),
            ("   ", 3, "empty host set"),
            ("h[1-3", 1, "never closed"),
            ("h[1-3,", 1, "never closed"),
            ("h[", 1, "never closed"),
            ("h[]", 2, "empty brackets"),
            ("h[1,]", 4, "empty range"),
            ("h[,1]", 2, "empty range"),
            ("h[1-]", 4, "expected the end of the range"),
            ("h[a]", 2, "expected a number"),
            ("h[1-3]]", 6, "']' without"),
            ("h]", 1, "']' without"),
            ("h[[1]]", 2, "'[' inside brackets"),
            ("h[1 ]", 3, "expected ','"),
            ("h[ 1]", 2, "whitespace inside brackets"),
            ("h[5-1]", 2, "goes backwards"),
            ("h[1-010]", 4, "padding mismatch"),
            ("h[001-01]", 6, "padding mismatch"),
            ("h[1-9/0]", 6, "at least 1"),
            ("h[5/2]", 3, "a step needs a range"),
            ("h[1234567890123456789]", 2, "too long"),
            ("a,,b", 2, "empty host name before ','"),
            (",a", 0, "empty host name before ','"),
            ("a,", 1, "empty host name after ','"),
            ("a, ", 1, "empty host name after ','"),
            ("a b", 1, "whitespace inside a host name"),
            ("a\tb", 1, "whitespace inside a host name"),
            ("x;reboot", 1, "';' is not allowed"),
            ("h[1-2];x", 6, "';' is not allowed"),
            ("a\u{0}b", 1, "is not allowed"),
            ("$(reboot)", 0, "'$' is not allowed"),
            ("h/x", 1, "'/' is not allowed"),
            ("..", 0, "'..'"),
            ("a..b", 1, "'..'"),
            ("-oProxyCommand=x", 0, "must not start with '-'"),
            ("root@-x", 5, "must not start with '-'"),
            ("-u@x", 0, "user name must not start with '-'"),
            ("u..v@x", 1, "user name must not contain '..'"),
            ("@h", 0, "empty user name"),
            ("root@", 4, "empty host name after '@'"),
            ("a@b@c", 3, "a second '@'"),
            ("h[1-2]@x", 6, "cannot hold ranges"),
        ];
        for &(expr, offset, needle) in cases {
            let (at, reason) = error(expr);
            assert!(
                reason.contains(needle),
                "{expr:?}: {reason:?} lacks {needle:?}"
            );
            assert_eq!(at, offset, "{expr:?}: {reason}");
        }
    }

    #[test]
    fn too_many_names_is_an_error_before_any_is_made() {
        // Would take terabytes if expanded: refused at once.
        let e = HostSet::parse("h[1-999999999999999999]").unwrap_err();
        assert_eq!(e.offset(), 1);
        assert!(e.reason().contains("1000000"), "{e}");
        let e = HostSet::parse("a[1-1000000]b[1-2]").unwrap_err();
        assert_eq!(e.offset(), 13, "{e}");
        let e = HostSet::parse_with_limit("a[1-6],b[1-5]", 10).unwrap_err();
        assert_eq!(e.offset(), 7, "{e}");
        assert!(e.reason().contains("more than 10 names"), "{e}");
        assert_eq!(
            HostSet::parse_with_limit("a[1-5],b[1-5]", 10)
                .unwrap()
                .len(),
            10
        );
        // Duplicates count: the limit is on what the expression makes.
        assert!(HostSet::parse_with_limit("a[1-6],a[1-5]", 10).is_err());
        assert!(HostSet::parse("a[1-1000],b[1-1000]").is_ok());
    }
}
