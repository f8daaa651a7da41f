//! [`HostSet`]: an ordered, duplicate-free set of host names, stored as groups of names that
//! share their text parts (and user), each group a sorted array of number vectors.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::eval;
use crate::fold;
use crate::group::{GroupResolver, NoGroups};
use crate::name::{Num, split};
use crate::parse::DEFAULT_MAX_NAMES;

/// What the names of a group share: their text parts and their user. The derived order
/// (segments, then user, `None` first) is the set's order of groups.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GroupKey {
    pub segments: Vec<String>,
    pub user: Option<String>,
}

impl GroupKey {
    /// How many numbers each name of the group has.
    pub fn dims(&self) -> usize {
        self.segments.len() - 1
    }

    /// Writes the name made of this group's text parts and `numbers` into `out`.
    pub fn write_name(&self, numbers: &[Num], out: &mut String) {
        self.write_with(out, |i, out| numbers[i].push_to(out));
    }

    /// Writes `user@`, then the segments with `fill(i)` between segment i and i + 1.
    pub fn write_with(&self, out: &mut String, mut fill: impl FnMut(usize, &mut String)) {
        if let Some(user) = &self.user {
            out.push_str(user);
            out.push('@');
        }
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                fill(i - 1, out);
            }
            out.push_str(segment);
        }
    }
}

/// The names of one group: `len` vectors of `dims` numbers, sorted and distinct, flattened.
/// A group without numbers (`dims == 0`) has exactly one name and an empty `flat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Members {
    pub dims: usize,
    pub flat: Vec<Num>,
    pub len: usize,
}

impl Members {
    /// Sorts and deduplicates the vectors of `flat` (each `dims` long).
    fn from_unsorted(dims: usize, flat: Vec<Num>) -> Members {
        if dims == 0 {
            return Members {
                dims,
                flat: Vec::new(),
                len: 1,
            };
        }
        let n = flat.len() / dims;
        let at = |i: usize| &flat[i * dims..(i + 1) * dims];
        // Expansion of a bracketed item usually produces sorted vectors already.
        if (1..n).all(|i| at(i - 1) < at(i)) {
            return Members { dims, len: n, flat };
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by(|&a, &b| at(a).cmp(at(b)));
        order.dedup_by(|a, b| at(*a) == at(*b));
        let mut sorted = Vec::with_capacity(order.len() * dims);
        for &i in &order {
            sorted.extend_from_slice(at(i));
        }
        Members {
            dims,
            len: order.len(),
            flat: sorted,
        }
    }

    /// The `i`-th vector.
    pub fn get(&self, i: usize) -> &[Num] {
        &self.flat[i * self.dims..(i + 1) * self.dims]
    }

    fn push(&mut self, v: &[Num]) {
        self.flat.extend_from_slice(v);
        self.len += 1;
    }

    fn empty(dims: usize) -> Members {
        Members {
            dims,
            flat: Vec::new(),
            len: 0,
        }
    }

    /// The vectors of either (a sorted merge).
    fn union(&self, other: &Members) -> Members {
        if self.dims == 0 {
            return self.clone();
        }
        let mut out = Members::empty(self.dims);
        out.flat.reserve(self.flat.len() + other.flat.len());
        let (mut i, mut j) = (0, 0);
        while i < self.len && j < other.len {
            match self.get(i).cmp(other.get(j)) {
                Ordering::Less => {
                    out.push(self.get(i));
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(other.get(j));
                    j += 1;
                }
                Ordering::Equal => {
                    out.push(self.get(i));
                    i += 1;
                    j += 1;
                }
            }
        }
        (i..self.len).for_each(|i| out.push(self.get(i)));
        (j..other.len).for_each(|j| out.push(other.get(j)));
        out
    }

    /// The vectors of `self` that `other` lacks (a sorted merge).
    fn difference(&self, other: &Members) -> Members {
        if self.dims == 0 {
            return Members::empty(0);
        }
        let mut out = Members::empty(self.dims);
        let mut j = 0;
        for i in 0..self.len {
            let v = self.get(i);
            while j < other.len && other.get(j) < v {
                j += 1;
            }
            if j >= other.len || other.get(j) != v {
                out.push(v);
            }
        }
        out
    }

    fn contains(&self, v: &[Num]) -> bool {
        if self.dims == 0 {
            return true;
        }
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).cmp(v) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return true,
            }
        }
        false
    }
}

/// An ordered, duplicate-free set of host names (`[user@]host`), built from host-set
/// expressions; see the crate documentation for the syntax, the order and the folding rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSet {
    groups: BTreeMap<GroupKey, Members>,
    len: usize,
}

impl HostSet {
    /// The empty set.
    pub fn new() -> Self {
        HostSet::default()
    }

    /// Parses a host-set expression (`a,b,h[001-100,200]`, `root@rack[1-2]-n[01-16]`,
    /// `h[1-9]!h5`) into the set of its names; more than [`DEFAULT_MAX_NAMES`] names is an
    /// error, and so is a node group (`@web`): see [`HostSet::parse_with_groups`].
    pub fn parse(expr: &str) -> Result<HostSet, ParseError> {
        HostSet::parse_with_limit(expr, DEFAULT_MAX_NAMES)
    }

    /// [`HostSet::parse`] with another limit on the number of names the expression makes
    /// (duplicates counted).
    pub fn parse_with_limit(expr: &str, max_names: usize) -> Result<HostSet, ParseError> {
        eval::evaluate(expr, max_names, &mut NoGroups)
    }

    /// [`HostSet::parse_with_limit`] where node groups (`@web`, `@source:group`, `@*`,
    /// `@@source`) are resolved by `groups`; a group that cannot be resolved is an error at
    /// its `@`, with the resolver's message.
    pub fn parse_with_groups(
        expr: &str,
        max_names: usize,
        groups: &mut dyn GroupResolver,
    ) -> Result<HostSet, ParseError> {
        eval::evaluate(expr, max_names, groups)
    }

    /// Adds one plain name (`host` or `user@host`: no brackets, no commas) and says whether it
    /// was new. The name is checked by the same rules as in an expression.
    pub fn insert(&mut self, name: &str) -> Result<bool, ParseError> {
        let mut builder = Builder::default();
        eval::single_into(name, &mut builder)?;
        let one = builder.finish();
        let before = self.len;
        self.extend(&one);
        Ok(self.len > before)
    }

    /// Builds the set of plain names (see [`HostSet::insert`]).
    pub fn from_names<I, S>(names: I) -> Result<HostSet, ParseError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut builder = Builder::default();
        for name in names {
            eval::single_into(name.as_ref(), &mut builder)?;
        }
        Ok(builder.finish())
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no name.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `name` (`host` or `user@host`, as [`HostSet::expand`] writes it) is in the set.
    pub fn contains(&self, name: &str) -> bool {
        let (user, host) = match name.split_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, name),
        };
        let (mut segments, mut numbers) = (Vec::new(), Vec::new());
        split(host, &mut segments, &mut numbers);
        let key = GroupKey {
            segments: segments
                .iter()
                .map(|&(a, b)| host[a..b].to_string())
                .collect(),
            user,
        };
        self.groups.get(&key).is_some_and(|m| m.contains(&numbers))
    }

    /// Adds every name of `other`.
    pub fn extend(&mut self, other: &HostSet) {
        for (key, theirs) in &other.groups {
            match self.groups.get_mut(key) {
                Some(ours) => {
                    self.len -= ours.len;
                    *ours = ours.union(theirs);
                    self.len += ours.len;
                }
                None => {
                    self.groups.insert(key.clone(), theirs.clone());
                    self.len += theirs.len;
                }
            }
        }
    }

    /// The names of `self` that `other` does not remove: a name of `other` without a user
    /// removes that host for every user, a `user@host` only that user's.
    pub fn difference(&self, other: &HostSet) -> HostSet {
        let mut out = HostSet::new();
        for (key, ours) in &self.groups {
            let mut left = ours.clone();
            for (theirs_key, theirs) in other.groups_with_segments(&key.segments) {
                if theirs_key.user.is_none() || theirs_key.user == key.user {
                    left = left.difference(theirs);
                }
            }
            if left.len > 0 {
                out.len += left.len;
                out.groups.insert(key.clone(), left);
            }
        }
        out
    }

    /// The names of `self` that `other` matches, by the rule of [`HostSet::difference`] (a name
    /// of `other` without a user matches that host for every user): what `difference` would
    /// remove, so the two split `self` in two.
    pub fn intersection(&self, other: &HostSet) -> HostSet {
        self.difference(&self.difference(other))
    }

    /// The names of either set that the other does not match ([`HostSet::difference`] both
    /// ways, joined).
    pub fn symmetric_difference(&self, other: &HostSet) -> HostSet {
        let mut out = self.difference(other);
        out.extend(&other.difference(self));
        out
    }

    /// The groups of `self` whose names have these text parts (any user).
    fn groups_with_segments<'a>(
        &'a self,
        segments: &'a [String],
    ) -> impl Iterator<Item = (&'a GroupKey, &'a Members)> + 'a {
        let from = GroupKey {
            segments: segments.to_vec(),
            user: None,
        };
        self.groups
            .range(from..)
            .take_while(move |(k, _)| k.segments == segments)
    }

    /// The names, in the set's order (see the crate documentation), one `String` each.
    pub fn expand(&self) -> Expand<'_> {
        Expand {
            groups: self.groups.iter(),
            current: None,
            index: 0,
        }
    }

    /// The set as a short canonical expression (`h[01-03,07],root@rack[1-2]-n[01-16]`), as
    /// `nodeset -f` writes it; it parses back to exactly this set. Empty for the empty set.
    pub fn fold(&self) -> String {
        let mut items = Vec::new();
        for (key, members) in &self.groups {
            fold::fold_group(key, members, &mut items);
        }
        items.join(",")
    }
}

impl fmt::Display for HostSet {
    /// The folded expression ([`HostSet::fold`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fold())
    }
}

impl FromStr for HostSet {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        HostSet::parse(s)
    }
}

/// The names of a [`HostSet`] in order ([`HostSet::expand`]).
#[derive(Debug)]
pub struct Expand<'a> {
    groups: std::collections::btree_map::Iter<'a, GroupKey, Members>,
    current: Option<(&'a GroupKey, &'a Members)>,
    index: usize,
}

impl Iterator for Expand<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if let Some((key, members)) = self.current
                && self.index < members.len
            {
                let mut name = String::new();
                if members.dims == 0 {
                    key.write_name(&[], &mut name);
                } else {
                    key.write_name(members.get(self.index), &mut name);
                }
                self.index += 1;
                return Some(name);
            }
            self.current = Some(self.groups.next()?);
            self.index = 0;
        }
    }
}

/// Collects names (as whole strings) into groups, then sorts them into a [`HostSet`]. Names
/// arrive in runs of the same group (the names of one bracketed item), so the group of the
/// previous name is kept at hand instead of hashing every name's key.
#[derive(Default)]
pub(crate) struct Builder {
    groups: HashMap<GroupKey, Vec<Num>>,
    last: Option<GroupKey>,
    last_flat: Vec<Num>,
    segments: Vec<(usize, usize)>,
    numbers: Vec<Num>,
}

impl Builder {
    /// Adds the name `host` (already checked) for `user`.
    pub fn add(&mut self, user: Option<&str>, host: &str) {
        split(host, &mut self.segments, &mut self.numbers);
        let same = self.last.as_ref().is_some_and(|k| {
            k.user.as_deref() == user
                && k.segments.len() == self.segments.len()
                && k.segments
                    .iter()
                    .zip(&self.segments)
                    .all(|(s, &(a, b))| s == &host[a..b])
        });
        if !same {
            self.flush();
            self.last = Some(GroupKey {
                segments: self
                    .segments
                    .iter()
                    .map(|&(a, b)| host[a..b].to_string())
                    .collect(),
                user: user.map(str::to_string),
            });
        }
        self.last_flat.extend_from_slice(&self.numbers);
    }

    fn flush(&mut self) {
        if let Some(key) = self.last.take() {
            self.groups
                .entry(key)
                .or_default()
                .append(&mut self.last_flat);
        }
    }

    pub fn finish(mut self) -> HostSet {
        self.flush();
        let mut set = HostSet::new();
        for (key, flat) in self.groups {
            let members = Members::from_unsorted(key.dims(), flat);
            set.len += members.len;
            set.groups.insert(key, members);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(expr: &str) -> HostSet {
        HostSet::parse(expr).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(s: &HostSet) -> Vec<String> {
        s.expand().collect()
    }

    #[test]
    fn the_order_is_text_parts_then_user_then_numbers() {
        let s = set("h10,h9,h01,h1,a,root@h1,b2,b10,h,x1y2,x1y10,x2y1");
        assert_eq!(
            names(&s),
            [
                "a", "b2", "b10", "h", "h1", "h9", "h01", "h10", "root@h1", "x1y2", "x1y10", "x2y1"
            ]
        );
        assert_eq!(s.len(), 12);
    }

    #[test]
    fn duplicates_count_once() {
        let s = set("h[1-3],h2,h[2-4]");
        assert_eq!(names(&s), ["h1", "h2", "h3", "h4"]);
        assert_eq!(s.len(), 4);
        let mut t = HostSet::new();
        assert!(t.insert("h2").unwrap());
        assert!(!t.insert("h2").unwrap());
        assert!(t.insert("db").unwrap());
        assert!(!t.insert("db").unwrap());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn insert_takes_plain_names_only() {
        let mut t = HostSet::new();
        assert!(t.insert("h[1-2]").is_err());
        assert!(t.insert("a,b").is_err());
        assert!(t.insert("root@db1").unwrap());
        assert!(t.contains("root@db1") && !t.contains("db1"));
        assert_eq!(HostSet::from_names(["b", "a", "b"]).unwrap(), set("a,b"));
    }

    #[test]
    fn contains_finds_exactly_the_names() {
        let s = set("h[01-10],db,root@x[1-2]y3");
        for n in ["h01", "h10", "db", "root@x2y3"] {
            assert!(s.contains(n), "{n}");
        }
        for n in ["h1", "h11", "d", "x2y3", "root@x3y3", "h[01-10]"] {
            assert!(!s.contains(n), "{n}");
        }
    }

    #[test]
    fn difference_without_a_user_removes_the_host_for_every_user() {
        let s = set("root@h[1-3],h[1-3],bob@h[1-3],db");
        assert_eq!(
            s.difference(&set("h2,db")).fold(),
            "h[1,3],bob@h[1,3],root@h[1,3]"
        );
        assert_eq!(
            s.difference(&set("root@h[1-2]")).fold(),
            "db,h[1-3],bob@h[1-3],root@h3"
        );
        assert!(s.difference(&s).is_empty());
        assert_eq!(s.difference(&HostSet::new()), s);
        assert_eq!(s.difference(&set("zz")).len(), 10);
    }

    #[test]
    fn extend_is_a_union() {
        let mut s = set("h[1-3]");
        s.extend(&set("h[3-5],db"));
        assert_eq!(s.fold(), "db,h[1-5]");
        assert_eq!(s.len(), 6);
        s.extend(&set("db"));
        assert_eq!(s.len(), 6);
    }
}
