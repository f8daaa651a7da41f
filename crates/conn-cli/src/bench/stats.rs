//! The arithmetic of the report: nearest-rank percentiles, ratios of two durations, and the
//! machine's load average (part of every figure, so the report shows it).

use std::time::Duration;

/// The nearest-rank percentile `q` (0 < q ≤ 1) of `sorted` (zero when empty).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `sorted`.
pub fn median(sorted: &[Duration]) -> Duration {
    percentile(sorted, 0.5)
}

/// `a / b` when both are positive.
pub fn ratio(a: Duration, b: Duration) -> Option<f64> {
    let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
    (a > 0.0 && b > 0.0).then(|| a / b)
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`), if readable.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut f = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([f.next()??, f.next()??, f.next()??])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 0.5), ms(50));
        assert_eq!(percentile(&v, 0.9), ms(90));
        assert_eq!(percentile(&v, 0.99), ms(99));
        assert_eq!(percentile(&[ms(7)], 0.99), ms(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        let v = [ms(1), ms(2), ms(3)];
        assert_eq!(median(&v), ms(2));
    }

    #[test]
    fn a_ratio_needs_two_positive_durations() {
        assert_eq!(ratio(ms(30), ms(10)), Some(3.0));
        assert_eq!(ratio(Duration::ZERO, ms(10)), None);
        assert_eq!(ratio(ms(10), Duration::ZERO), None);
    }
}
