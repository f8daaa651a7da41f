//! The expression lexer: operands (items, group references) and the operators between
//! them, each checked and counted before any name is made; and the expansion of an item's
//! brackets. [`crate::eval`] computes the set.

use crate::error::ParseError;
use crate::name::{MAX_DIGITS, Num, digits};

/// The most names one expression may make (duplicates counted) unless the caller sets another
/// limit: far above any fleet, far below what would exhaust memory.
pub const DEFAULT_MAX_NAMES: usize = 1_000_000;

/// Characters that no name may hold (besides whitespace and control characters): those a shell
/// or ssh would give a meaning to, as `conn_core::UserHost` refuses them. `[`, `]`, `,`, `@`
/// and the operators `!`, `&`, `^` are in the list too, but the parser gives them their syntax
/// meaning first.
const FORBIDDEN: &str = "\"'`~!@#$%^&*()+={}[]|;<>?,\\/";

/// `a`, `a-b` or `a-b/step` in a bracket; `width` is the number of digits `a` is written with.
#[derive(Debug)]
pub(crate) struct Range {
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
pub(crate) enum Piece {
    /// Literal text (never empty).
    Text(String),
    /// A bracket: its byte offset (for errors), its ranges and how many numbers they hold.
    Bracket {
        at: usize,
        ranges: Vec<Range>,
        count: u64,
    },
}

/// The set operators between operands, applied left to right as `nodeset` does (no
/// precedence): `a,b!c&d` is `((a ∪ b) ∖ c) ∩ d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `,`
    Union,
    /// `!`
    Difference,
    /// `&`
    Intersection,
    /// `^`
    Xor,
}

impl Op {
    fn of(c: char) -> Option<Op> {
        match c {
            ',' => Some(Op::Union),
            '!' => Some(Op::Difference),
            '&' => Some(Op::Intersection),
            '^' => Some(Op::Xor),
            _ => None,
        }
    }
}

/// One operand and the operator that applies it to what comes before (the first one's is
/// [`Op::Union`]).
#[derive(Debug)]
pub(crate) struct Term {
    pub op: Op,
    pub operand: Operand,
}

#[derive(Debug)]
pub(crate) enum Operand {
    /// `[user@]pieces`: host names.
    Item(Item),
    /// `[user@]@…`: a node group.
    Group(GroupRef),
}

/// One item: `[user@]pieces`.
#[derive(Debug)]
pub(crate) struct Item {
    pub start: usize,
    pub user: Option<String>,
    pub pieces: Vec<Piece>,
}

/// A reference to node groups: `@group`, `@source:group`, `@group[1-3]` (one group per name),
/// `@*` / `@source:*` (every node), `@@source` (the group names, as hosts); with a user
/// (`root@@web`) that applies to every name of the groups.
#[derive(Debug)]
pub(crate) struct GroupRef {
    /// Byte offset of the `@` that starts the reference.
    pub at: usize,
    pub user: Option<String>,
    pub kind: RefKind,
}

#[derive(Debug)]
pub(crate) enum RefKind {
    /// Group names (each may hold `source:`), as text and brackets.
    Named(Vec<Piece>),
    /// `@*`, `@source:*`.
    All(Option<String>),
    /// `@@source` (`@@`: the default source).
    List(Option<String>),
}

/// Splits `input` into terms. With `single`, the input must be one plain name: brackets,
/// operators and groups are refused.
pub(crate) fn terms(input: &str, single: bool) -> Result<Vec<Term>, ParseError> {
    Parser {
        input,
        pos: 0,
        single,
    }
    .terms()
}

/// How many names `pieces` make (the product of their brackets), or an error at the bracket
/// that passes `max_names`.
pub(crate) fn count(input: &str, pieces: &[Piece], max_names: usize) -> Result<u64, ParseError> {
    let mut product: u64 = 1;
    for piece in pieces {
        if let Piece::Bracket { at, count, .. } = piece {
            product = product.saturating_mul(*count);
            if product > max_names as u64 {
                return Err(ParseError::new(
                    input,
                    *at,
                    format!("this range makes more than {max_names} names (the limit)"),
                ));
            }
        }
    }
    Ok(product)
}

/// Calls `emit` with every name of `pieces` (the cartesian product of their brackets, the last
/// bracket turning fastest).
pub(crate) fn expand(pieces: &[Piece], mut emit: impl FnMut(&str)) {
    let lists: Vec<Vec<Num>> = pieces
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
        for piece in pieces {
            match piece {
                Piece::Text(t) => name.push_str(t),
                Piece::Bracket { .. } => {
                    lists[k][at[k]].push_to(&mut name);
                    k += 1;
                }
            }
        }
        emit(&name);
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

    /// Whether `c` ends an operand: whitespace, or an operator outside single-name mode.
    fn ends_operand(&self, c: char) -> bool {
        c.is_whitespace() || (!self.single && Op::of(c).is_some())
    }

    fn terms(mut self) -> Result<Vec<Term>, ParseError> {
        let mut terms = Vec::new();
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
        let mut op = Op::Union;
        loop {
            let operand = self.operand()?;
            terms.push(Term { op, operand });
            self.skip_whitespace();
            match self.peek() {
                None => return Ok(terms),
                Some(c) if !self.single && Op::of(c).is_some() => {
                    let at = self.pos;
                    self.pos += 1;
                    self.skip_whitespace();
                    if self.pos == self.input.len() {
                        return Err(self.err(at, format!("empty host name after '{c}'")));
                    }
                    op = Op::of(c).unwrap_or(Op::Union);
                }
                Some(c) if c.is_whitespace() => unreachable!("whitespace was skipped"),
                Some(_) => {
                    // After whitespace that ended a name, only an operator or the end may come.
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
            .take_while(|&c| !self.ends_operand(c) && c != ',')
            .any(|c| c == '@')
    }

    /// Offset of the whitespace just before `pos`.
    fn last_whitespace(&self) -> usize {
        let before = &self.input[..self.pos];
        let trimmed = before.trim_end();
        trimmed.len()
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
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
                c if self.ends_operand(c) => break,
                // `@group` at the start of an operand, `user@@group` after a user.
                '@' if !self.single && text.is_empty() && pieces.is_empty() => {
                    return self.group_ref(user.map(|(u, _)| u)).map(Operand::Group);
                }
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
            return Err(match (user, self.peek()) {
                (Some((_, at)), _) => self.err(at, "empty host name after '@'"),
                (None, Some(c)) => self.err(self.pos, format!("empty host name before '{c}'")),
                (None, None) => self.err(self.pos, "empty host name"),
            });
        }
        Ok(Operand::Item(Item {
            start,
            user: user.map(|(u, _)| u),
            pieces,
        }))
    }

    /// A group reference, at its `@`: `@@source`, `@*`, `@source:*`, or group names as text
    /// and brackets (`@web`, `@rack[1-2]`, `@slurm:gpu`).
    fn group_ref(&mut self, user: Option<String>) -> Result<GroupRef, ParseError> {
        let at = self.pos;
        self.pos += 1;
        let rest = &self.input[self.pos..];
        let token_len = rest
            .find(|c: char| self.ends_operand(c))
            .unwrap_or(rest.len());
        let token = &rest[..token_len];
        let kind = if let Some(source) = token.strip_prefix('@') {
            self.check_group_text(source, self.pos + 1, "a source name")?;
            self.pos += token_len;
            RefKind::List(Some(source.to_string()).filter(|s| !s.is_empty()))
        } else if let Some(source) = token
            .strip_suffix('*')
            .filter(|s| s.is_empty() || s.ends_with(':'))
        {
            let source = source.strip_suffix(':').unwrap_or(source);
            self.check_group_text(source, self.pos, "a source name")?;
            self.pos += token_len;
            RefKind::All(Some(source.to_string()).filter(|s| !s.is_empty()))
        } else {
            let mut pieces = Vec::new();
            let mut text = String::new();
            while let Some(c) = self.peek().filter(|&c| !self.ends_operand(c)) {
                match c {
                    '[' => {
                        if !text.is_empty() {
                            pieces.push(Piece::Text(std::mem::take(&mut text)));
                        }
                        pieces.push(self.bracket()?);
                    }
                    ']' => return Err(self.err(self.pos, "']' without a '[' before it")),
                    c if c.is_control() || FORBIDDEN.contains(c) => {
                        return Err(
                            self.err(self.pos, format!("{c:?} is not allowed in a group name"))
                        );
                    }
                    c => {
                        text.push(c);
                        self.pos += c.len_utf8();
                    }
                }
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(text));
            }
            if pieces.is_empty() {
                return Err(self.err(at, "empty group name after '@'"));
            }
            RefKind::Named(pieces)
        };
        Ok(GroupRef { at, user, kind })
    }

    /// Refuses what a group or source name must not hold (shell and syntax characters), as
    /// for host names.
    fn check_group_text(&self, text: &str, at: usize, what: &str) -> Result<(), ParseError> {
        match text
            .char_indices()
            .find(|&(_, c)| c.is_control() || FORBIDDEN.contains(c))
        {
            Some((i, c)) => Err(self.err(at + i, format!("{c:?} is not allowed in {what}"))),
            None => Ok(()),
        }
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
