//! Host-set expressions, written the way pdsh (`-w`) and ClusterShell (`nodeset`, `clush -w`)
//! users already write them: parsing, expansion, exclusion and folding. No I/O.
//!
//! ```
//! use conn_hostset::HostSet;
//!
//! let set = HostSet::parse("root@rack[1-2]-n[01-03],db1").unwrap();
//! assert_eq!(set.len(), 7);
//! let names: Vec<String> = set.expand().collect();
//! assert_eq!(names[..2], ["db1", "root@rack1-n01"]);
//! assert_eq!(set.fold(), "db1,root@rack[1-2]-n[01-03]");
//!
//! let left = set.difference(&HostSet::parse("rack1-n02,db1").unwrap());
//! assert_eq!(left.fold(), "root@rack[1-2]-n[01,03],root@rack2-n02");
//! assert_eq!(HostSet::parse("h[1-9]!h[4-8]&h[1-5]").unwrap().fold(), "h[1-3]");
//! ```
//!
//! # Syntax
//!
//! - **Lists.** Top-level commas separate items: `a,b,h[1-3]`. Spaces around an item are
//!   ignored (`a, b`); inside a name or a bracket they are an error.
//! - **Ranges.** `[…]` holds a comma-separated list of numbers `7`, ranges `1-10` and stepped
//!   ranges `1-10/3` (1, 4, 7, 10), as in `nodeset`. The bracket stands for each of its numbers
//!   in turn, written into the name where the bracket is: `h[1-3]x` is `h1x,h2x,h3x`.
//! - **Several brackets** in one item make the cartesian product: `rack[1-2]-n[1-3]` is six
//!   names.
//! - **Zero padding** is kept: every number of `a-b` is written with at least as many digits as
//!   `a` is (`[01-10]` is 01 … 10, `[8-10]` is 8, 9, 10, `[098-100]` is 098, 099, 100). An end
//!   written with leading zeros must have the width of the start (`[1-010]` is an error: write
//!   `[001-010]` or `[1-10]`).
//! - **Users.** `user@` at the start of an item applies to every name of that item:
//!   `root@h[1-3],db1` is `root@h1,root@h2,root@h3,db1` (pdsh's rule).
//! - **Characters.** A name may hold any character except whitespace, control characters and
//!   `` "'`~!@#$%^&*()+={}[]|;<>?,\/ `` (the same set `conn_core::UserHost` refuses, so every
//!   name that comes out is a valid `[user@]host`). A host name must not start with `-` (ssh
//!   would read an option) and no part may contain `..`.
//! - **Operators.** Besides `,` (union), `!` removes, `&` intersects and `^` keeps what is in
//!   exactly one side, as in `nodeset`: applied left to right with no precedence, so
//!   `h[1-9]!h5,x&h[1-3]` is `((h[1-9] ∖ h5) ∪ x) ∩ h[1-3]`, that is `h[1-3]`. Spaces around
//!   operators are ignored.
//! - **Exclusion** ([`HostSet::difference`], `!`): an excluded name without a user removes that
//!   host for every user (`root@h[1-3]` minus `h2` is `root@h[1,3]`); an excluded `user@host`
//!   removes only that user's entry. `&` ([`HostSet::intersection`]) keeps exactly what `!`
//!   would remove, and `^` is `!` both ways.
//! - **Node groups** (with [`HostSet::parse_with_groups`] and a [`GroupResolver`]; plain
//!   [`HostSet::parse`] refuses them): `@web` (the default source), `@source:web`,
//!   `@rack[1-4]` (one group per name), `@*` and `@source:*` (every node), `@@source` (the
//!   names of the source's groups, as hosts), `root@@web` (the user for every name), anywhere
//!   an item may stand: `@web!web3,@db&@rack1`. A group's text is parsed as an expression in
//!   turn; the groups it names come from its own source. A group that includes itself, or
//!   that the resolver cannot resolve, is an error at its `@`. Group and source names hold the
//!   characters host names may hold.
//! - **Limits.** An expression that would produce more than [`DEFAULT_MAX_NAMES`] names (or
//!   the limit given to [`HostSet::parse_with_limit`]) is an error, found before any name is
//!   made, so `h[1-999999999999]` costs nothing. Numbers have at most 18 digits.
//!
//! Errors ([`ParseError`]) say what is wrong and where: a byte offset, and [`ParseError::caret`]
//! gives the expression and a `^` under the offending character for display.
//!
//! # Order and folding
//!
//! Every name is seen as text parts and numbers: each run of 1 to 18 ASCII digits is a number
//! (`rack1-n07` is `rack`, 1, `-n`, 07), as `nodeset` sees names. A [`HostSet`] is ordered and
//! free of duplicates: names are sorted by their text parts (compared as strings, part by
//! part), then by user (none first), then by their numbers left to right, each by the number of
//! digits it is written with, then by value, as `nodeset` orders them: `h1`, `h2`, `h10`
//! without padding (numeric order), and with mixed paddings `h7`, `h9`, `h01`, `h03`, `h010`.
//! Names that differ only by zero padding are different hosts and stay so.
//!
//! [`HostSet::fold`] writes the set back as a short expression, like `nodeset -f`: names with
//! the same text parts and user fold together. One number: ranges exactly as `nodeset -f`
//! writes them: in the set's order, each number extends the current range when its value
//! follows and its padding fits (a range that starts padded keeps its width, a plain one takes
//! plain numbers), so `h[01-03,07]`, `h[1-2,01-02]`, `n[7-9,01-03,010]`, and `n[1-9,01,10]`
//! for `n[1-10]` plus `n01`. Several numbers: the set is covered by products of ranges
//! (`rack[1-2]-n[01-16]`), found by grouping the names that share the same values on one axis
//! and folding what remains along the others, trying each axis (up to four numbers) and keeping
//! the cover with the fewest items. The result is canonical (the same set always folds to the
//! same text), parses back to exactly the same set, and is short, although not proven minimal
//! (finding the smallest cover of products is a hard problem in general; `nodeset` does not
//! promise it either). Folding never writes steps (`/2`), as `nodeset` by default.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod error;
mod eval;
mod fold;
mod group;
mod members;
mod name;
mod parse;
#[cfg(test)]
mod parse_tests;
mod set;

pub use error::ParseError;
pub use group::{GroupError, GroupResolver, Resolved};
pub use parse::DEFAULT_MAX_NAMES;
pub use set::{Expand, HostSet};
