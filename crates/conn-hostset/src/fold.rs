//! Folding a group of names back into bracketed items: ranges along one number, products of
//! ranges along several (see the crate documentation for the rules).

use std::collections::HashMap;

use crate::members::{GroupKey, Members};
use crate::name::Num;

/// Above this many numbers per name, only the natural axis order is tried (the search costs
/// about `dims!` passes over the names).
const MAX_SEARCHED_DIMS: usize = 4;

/// Above this many products, the final pairwise merge pass is skipped (it is quadratic).
const MAX_MERGED: usize = 2048;

/// Appends the folded items of one group to `out`.
pub(crate) fn fold_group(key: &GroupKey, members: &Members, out: &mut Vec<String>) {
    match members.dims {
        0 => {
            let mut s = String::new();
            key.write_name(&[], &mut s);
            out.push(s);
        }
        1 => {
            let mut s = String::new();
            key.write_with(&mut s, |_, s| write_axis(&members.flat, s));
            out.push(s);
        }
        dims => {
            let points: Vec<Vec<Num>> = (0..members.len).map(|i| members.get(i).to_vec()).collect();
            let axes: Vec<usize> = (0..dims).collect();
            let mut boxes = cover(points, &axes);
            // The cover comes out of hash maps: sort it, so that merging (which depends on the
            // order) and therefore the text are the same on every run.
            boxes.sort_unstable();
            merge(&mut boxes);
            // Canonical order: by the smallest name of each product.
            boxes.sort_by(|a, b| {
                let first = |bx: &Vec<Vec<Num>>| bx.iter().map(|s| s[0]).collect::<Vec<_>>();
                first(a).cmp(&first(b))
            });
            for bx in boxes {
                let mut s = String::new();
                key.write_with(&mut s, |i, s| write_axis(&bx[i], s));
                out.push(s);
            }
        }
    }
}

/// A product of number sets, one sorted, distinct set per axis.
type Product = Vec<Vec<Num>>;

/// Products whose union is exactly `points` (each a vector over `axes`, in that order).
/// Chooses an axis, gathers for every combination of the other axes the set of values on it,
/// and folds the combinations that share a set together, recursively; tries each axis and keeps
/// the cover with the fewest products, then the one with the largest product (it shows what
/// most names share: `rack[1-2]-n[01-15],rack1-n16`), then the later axis.
fn cover(points: Vec<Vec<Num>>, axes: &[usize]) -> Vec<Product> {
    if axes.len() == 1 {
        let mut values: Vec<Num> = points.into_iter().map(|p| p[0]).collect();
        values.sort_unstable();
        values.dedup();
        return vec![vec![values]];
    }
    let candidates: Vec<usize> = if axes.len() > MAX_SEARCHED_DIMS {
        vec![axes.len() - 1]
    } else {
        (0..axes.len()).rev().collect()
    };
    let mut best: Option<(Vec<Product>, usize)> = None;
    for &j in &candidates {
        let found = cover_along(&points, axes, j);
        let largest = found.iter().map(size).max().unwrap_or(0);
        let better = match &best {
            None => true,
            Some((b, b_largest)) => {
                found.len() < b.len() || (found.len() == b.len() && largest > *b_largest)
            }
        };
        if better {
            best = Some((found, largest));
        }
    }
    best.map(|(b, _)| b).unwrap_or_default()
}

/// How many names a product holds.
fn size(product: &Product) -> usize {
    product.iter().map(Vec::len).fold(1, usize::saturating_mul)
}

/// One step of [`cover`] with position `j` as the gathered axis.
fn cover_along(points: &[Vec<Num>], axes: &[usize], j: usize) -> Vec<Product> {
    // The rest of each point (without position j) -> its values at j.
    let mut by_rest: HashMap<Vec<Num>, Vec<Num>> = HashMap::new();
    for p in points {
        let mut rest = p.clone();
        let v = rest.remove(j);
        by_rest.entry(rest).or_default().push(v);
    }
    // The set of values at j -> the rests that have exactly it.
    let mut by_set: HashMap<Vec<Num>, Vec<Vec<Num>>> = HashMap::new();
    for (rest, mut values) in by_rest {
        values.sort_unstable();
        values.dedup();
        by_set.entry(values).or_default().push(rest);
    }
    let mut rest_axes = axes.to_vec();
    rest_axes.remove(j);
    let mut out = Vec::new();
    for (values, rests) in by_set {
        for mut product in cover(rests, &rest_axes) {
            product.insert(j, values.clone());
            out.push(product);
        }
    }
    out
}

/// Merges products that are equal on every axis but one (their union is a product again),
/// until none is left to merge.
fn merge(products: &mut Vec<Product>) {
    if products.len() > MAX_MERGED {
        return;
    }
    let mut changed = true;
    while changed {
        changed = false;
        'outer: for a in 0..products.len() {
            for b in a + 1..products.len() {
                let differing: Vec<usize> = (0..products[a].len())
                    .filter(|&k| products[a][k] != products[b][k])
                    .collect();
                if let [k] = differing[..] {
                    let other = products.swap_remove(b);
                    let mut union = products[a][k].clone();
                    union.extend_from_slice(&other[k]);
                    union.sort_unstable();
                    union.dedup();
                    products[a][k] = union;
                    changed = true;
                    break 'outer;
                }
            }
        }
    }
}

/// Writes one axis: a single number as is, several as `[ranges]`.
fn write_axis(values: &[Num], out: &mut String) {
    if let [one] = values {
        one.push_to(out);
        return;
    }
    out.push('[');
    for (i, (start, end)) in runs(values).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        start.push_to(out);
        if end != start {
            out.push('-');
            end.push_to(out);
        }
    }
    out.push(']');
}

/// Splits sorted, distinct numbers into ranges `start-end` exactly as `nodeset -f` does: in
/// the set's order (width, then value: `7 8 9 01 02 03 010`), each number extends the current
/// range when it follows it ([`Num::continues`]), else starts a new one. So `n[7-9,01-03,010]`,
/// and `n[1-10],n01` folds to `n[1-9,01,10]` (in that order `01` comes between `9` and `10`).
/// Every range parses back to its numbers.
fn runs(values: &[Num]) -> Vec<(Num, Num)> {
    let mut out: Vec<(Num, Num)> = Vec::new();
    for &v in values {
        match out.last_mut() {
            Some((start, end)) if v.continues(*end, *start) => *end = v,
            _ => out.push((v, v)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostSet;

    fn fold(expr: &str) -> String {
        HostSet::parse(expr).unwrap().fold()
    }

    #[test]
    fn one_number_folds_into_ranges() {
        assert_eq!(fold("h01,h02,h03,h07"), "h[01-03,07]");
        assert_eq!(fold("h1"), "h1");
        assert_eq!(fold("h1,h2"), "h[1-2]");
        assert_eq!(fold("h[8-10]"), "h[8-10]");
        assert_eq!(fold("h[098-100]"), "h[098-100]");
        // `nodeset` refuses `h[01-100]` (a padded range keeps its width) and folds these names
        // so; conn reads both.
        assert_eq!(fold("h[01-100]"), "h[01-99,100]");
        assert_eq!(fold("h[1-2],h[01-02]"), "h[1-2,01-02]");
        assert_eq!(fold("h[1-10/2]"), "h[1,3,5,7,9]");
        assert_eq!(fold("n[000001-100000]"), "n[000001-100000]");
        assert_eq!(fold("db,h[1-3],web"), "db,h[1-3],web");
        assert_eq!(fold("10.0.0.[1-3]"), "10.0.0.[1-3]");
        assert_eq!(HostSet::new().fold(), "");
    }

    #[test]
    fn mixed_paddings_fold_in_nodeset_s_order() {
        // Each case checked with `nodeset -f` (ClusterShell 1.9.1).
        assert_eq!(fold("n7,n8,n9,n01,n02,n03,n010"), "n[7-9,01-03,010]");
        assert_eq!(fold("n[1-10],n01"), "n[1-9,01,10]");
        assert_eq!(fold("n[8-12],n09"), "n[8-9,09-12]");
        assert_eq!(fold("n9,n10,n09,n010"), "n[9,09-10,010]");
        assert_eq!(fold("n[1-3],n[001-003],n[01-03]"), "n[1-3,01-03,001-003]");
        assert_eq!(fold("n[98-101],n099"), "n[98-99,099-101]");
        assert_eq!(fold("n[0-2],n00"), "n[0-2,00]");
        assert_eq!(fold("n1,n01,m"), "m,n[1,01]");
    }

    #[test]
    fn several_numbers_fold_into_products() {
        assert_eq!(fold("rack[1-2]-n[01-16]"), "rack[1-2]-n[01-16]");
        assert_eq!(
            fold("rack1-n[01-16],rack2-n[01-15]"),
            "rack[1-2]-n[01-15],rack1-n16"
        );
        assert_eq!(fold("a[1-3]b[1-3]c[1-3]"), "a[1-3]b[1-3]c[1-3]");
        // Gathering along the first number wins here: one product instead of three.
        assert_eq!(fold("x1y[1-3],x2y[1-3],x3y[1-3]"), "x[1-3]y[1-3]");
        assert_eq!(fold("x[1-3]y1,x[1-3]y5"), "x[1-3]y[1,5]");
        assert_eq!(
            fold("root@r[1-2]n[1-2],r[1-2]n[1-2]"),
            "r[1-2]n[1-2],root@r[1-2]n[1-2]"
        );
    }

    #[test]
    fn runs_keep_padding_classes_apart() {
        let n = |value, width| Num { value, width };
        // In the set's order: 1 2 01 02 03.
        assert_eq!(
            runs(&[n(1, 1), n(2, 1), n(1, 2), n(2, 2), n(3, 2)]),
            [(n(1, 1), n(2, 1)), (n(1, 2), n(3, 2))]
        );
        // 9 then 10: a natural range continues; 09 then 10 continues a width-2 range.
        assert_eq!(runs(&[n(9, 1), n(10, 2)]), [(n(9, 1), n(10, 2))]);
        assert_eq!(runs(&[n(9, 2), n(10, 2)]), [(n(9, 2), n(10, 2))]);
        // 099 then 100 (width 3): continues.
        assert_eq!(runs(&[n(99, 3), n(100, 3)]), [(n(99, 3), n(100, 3))]);
        // 9 then 010: a plain range takes no padded number.
        assert_eq!(runs(&[n(9, 1), n(10, 3)]).len(), 2);
        // 98 99 100: a plain range grows in width; 09 … 99 then 100: a padded one does not.
        assert_eq!(runs(&[n(98, 2), n(99, 2), n(100, 3)]).len(), 1);
        let mut padded: Vec<Num> = (9..=99).map(|v| n(v, 2)).collect();
        padded.push(n(100, 3));
        assert_eq!(runs(&padded), [(n(9, 2), n(99, 2)), (n(100, 3), n(100, 3))]);
    }
}
