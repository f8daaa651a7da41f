//! [`HostSet`]: an ordered, duplicate-free set of host names, stored as groups of names that
//! share their text parts (and user), each group a sorted array of number vectors.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::fold;
use crate::members::{GroupKey, Members};
use crate::name::split;

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

    /// The set of these groups (each non-empty).
    pub(crate) fn from_groups(groups: BTreeMap<GroupKey, Members>) -> HostSet {
        let len = groups.values().map(|m| m.len).sum();
        HostSet { groups, len }
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
