//! [`Builder`]: names collected into groups, then sorted into a [`HostSet`].

use std::collections::HashMap;

use crate::members::{GroupKey, Members};
use crate::name::{Num, split};
use crate::set::HostSet;

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
        HostSet::from_groups(
            self.groups
                .into_iter()
                .map(|(key, flat)| {
                    let members = Members::from_unsorted(key.dims(), flat);
                    (key, members)
                })
                .collect(),
        )
    }
}
