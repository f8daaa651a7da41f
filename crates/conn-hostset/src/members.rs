//! How a [`HostSet`](crate::HostSet) keeps its names: a [`GroupKey`] (the text parts and
//! user the names share) and its [`Members`] (their number vectors, sorted, as one flat
//! array). The set operations work on these, one group at a time.

use std::cmp::Ordering;

use crate::name::Num;

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
    pub fn from_unsorted(dims: usize, flat: Vec<Num>) -> Members {
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

    pub fn push(&mut self, v: &[Num]) {
        self.flat.extend_from_slice(v);
        self.len += 1;
    }

    pub fn empty(dims: usize) -> Members {
        Members {
            dims,
            flat: Vec::new(),
            len: 0,
        }
    }

    /// The vectors of either (a sorted merge).
    pub fn union(&self, other: &Members) -> Members {
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
    pub fn difference(&self, other: &Members) -> Members {
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

    pub fn contains(&self, v: &[Num]) -> bool {
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
