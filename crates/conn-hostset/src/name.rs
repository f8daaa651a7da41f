//! A host name seen as text parts and numbers, the unit that sets store and folding works on.

use std::fmt::Write;

/// The most digits a number may have: every such number fits a `u64`. Longer digit runs in a
/// name are plain text; in a bracket they are an error.
pub(crate) const MAX_DIGITS: usize = 18;

/// A number field of a name: its value and the number of digits it is written with
/// (`007` is value 7, width 3). Ordered by width, then value, as `nodeset` orders the indexes
/// of one range set (by the length of the digit string, then the string): `9`, `10`, `01`,
/// `010`. Numbers without padding keep their numeric order; each padded width comes after the
/// plain numbers of that width's shorter ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Num {
    pub value: u64,
    pub width: u8,
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.width, self.value).cmp(&(other.width, other.value))
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Num {
    /// Appends the number as written (zero-padded to its width).
    pub fn push_to(self, out: &mut String) {
        let _ = write!(out, "{:0w$}", self.value, w = usize::from(self.width));
    }

    /// Whether the number is written with leading zeros (`07`, `00`; not `0` or `7`).
    pub fn padded(self) -> bool {
        self.width > digits(self.value)
    }

    /// Whether `self` extends the range `start-prev` by one, as `nodeset` folds: the value
    /// follows, and a range that starts padded keeps its width while a plain one takes only
    /// plain numbers: `9` then `10` continues, and so do `09` then `10` and `099` then `100`;
    /// `09`…`99` then `100` does not (`[09-100]` is not how `nodeset` writes it), nor does `9`
    /// then `010`.
    pub fn continues(self, prev: Num, start: Num) -> bool {
        prev.value.checked_add(1) == Some(self.value)
            && if start.padded() {
                self.width == start.width
            } else {
                !self.padded()
            }
    }
}

/// Digits of `v` written without padding.
pub(crate) fn digits(mut v: u64) -> u8 {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// Splits `name` into text segments (byte ranges) and numbers: every maximal run of 1 to
/// [`MAX_DIGITS`] ASCII digits is a number; there is always one segment more than numbers
/// (possibly empty ones at either end).
pub(crate) fn split(name: &str, segments: &mut Vec<(usize, usize)>, numbers: &mut Vec<Num>) {
    segments.clear();
    numbers.clear();
    let bytes = name.as_bytes();
    let mut segment_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut value: u64 = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            // Cannot overflow while the run is short enough to count; longer runs are text.
            value = value
                .wrapping_mul(10)
                .wrapping_add(u64::from(bytes[i] - b'0'));
            i += 1;
        }
        let len = i - start;
        if len <= MAX_DIGITS {
            segments.push((segment_start, start));
            numbers.push(Num {
                value,
                width: len as u8,
            });
            segment_start = i;
        }
    }
    segments.push((segment_start, bytes.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(name: &str) -> (Vec<&str>, Vec<(u64, u8)>) {
        let (mut s, mut n) = (Vec::new(), Vec::new());
        split(name, &mut s, &mut n);
        (
            s.iter().map(|&(a, b)| &name[a..b]).collect(),
            n.iter().map(|n| (n.value, n.width)).collect(),
        )
    }

    #[test]
    fn names_split_into_text_and_numbers() {
        assert_eq!(
            parts("rack1-n07"),
            (vec!["rack", "-n", ""], vec![(1, 1), (7, 2)])
        );
        assert_eq!(parts("db"), (vec!["db"], vec![]));
        assert_eq!(parts("10.0.0.1").1.len(), 4);
        assert_eq!(parts("0").0, ["", ""]);
        // 19 digits are text.
        let long = "h1234567890123456789x2";
        assert_eq!(
            parts(long),
            (vec!["h1234567890123456789x", ""], vec![(2, 1)])
        );
        assert_eq!(
            parts("h999999999999999999").1,
            [(999_999_999_999_999_999, 18)]
        );
        assert_eq!(parts("é1").0, ["é", ""]);
    }

    #[test]
    fn numbers_print_as_written() {
        let mut s = String::new();
        Num { value: 7, width: 3 }.push_to(&mut s);
        Num {
            value: 100,
            width: 2,
        }
        .push_to(&mut s);
        assert_eq!(s, "007100");
        assert_eq!(digits(0), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(u64::MAX), 20);
    }
}
