//! Latency recording: an HDR histogram at microsecond resolution, three
//! significant digits, from 1 µs to one hour (longer values are clamped to
//! the top), and the percentiles the reports show.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest value recorded exactly: one hour, in microseconds.
const HIGHEST_US: u64 = 3_600_000_000;

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Latency {
    pub fn new() -> anyhow::Result<Latency> {
        let histogram = Histogram::new_with_bounds(1, HIGHEST_US, 3)
            .map_err(|e| anyhow::anyhow!("cannot create a latency histogram: {e:?}"))?;
        Ok(Latency { histogram })
    }

    /// Records one value in microseconds; 0 counts as 1 (the lowest
    /// trackable value) and values above an hour as an hour.
    pub fn record(&mut self, micros: u64) {
        self.histogram.saturating_record(micros.max(1));
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so the addition cannot
        // fail; a failure would only lose `other`'s values.
        let _ = self.histogram.add(&other.histogram);
    }

    /// The summary reports show.
    pub fn summary(&self) -> Summary {
        let h = &self.histogram;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min_us: h.min(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Percentiles of a recording, in microseconds; all zero when nothing was
/// recorded. Each value is exact to three significant digits (HDR
/// histograms report the highest value equivalent to the bucket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Summary {
    /// One line for the table: `p50 1.23 ms  p90 ...`.
    pub fn line(&self) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            human(self.p50_us),
            human(self.p90_us),
            human(self.p99_us),
            human(self.p999_us),
            human(self.max_us)
        )
    }
}

/// Microseconds for people: `850 µs`, `1.23 ms`, `2.50 s`.
pub fn human(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_recording() {
        let mut l = Latency::new().expect("histogram");
        for us in 1..=10_000 {
            l.record(us);
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        // Three significant digits: within 0.1% of the true value.
        let near =
            |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(near(s.p50_us, 5_000), "{s:?}");
        assert!(near(s.p90_us, 9_000), "{s:?}");
        assert!(near(s.p99_us, 9_900), "{s:?}");
        assert!(near(s.p999_us, 9_990), "{s:?}");
        assert!(near(s.max_us, 10_000), "{s:?}");
        assert!((s.mean_us - 5_000.5).abs() < 5.0, "{s:?}");
    }

    #[test]
    fn a_tail_shows_in_the_high_percentiles_only() {
        let mut l = Latency::new().expect("histogram");
        for _ in 0..990 {
            l.record(100);
        }
        for _ in 0..10 {
            l.record(50_000);
        }
        let s = l.summary();
        assert_eq!((s.p50_us, s.p90_us), (100, 100));
        assert!(s.p999_us >= 49_950, "{s:?}");
        assert!(s.max_us >= 49_950, "{s:?}");
    }

    #[test]
    fn empty_and_out_of_range_values() {
        assert_eq!(
            Latency::new().expect("histogram").summary(),
            Summary::default()
        );
        assert_eq!(
            Latency::new().expect("histogram").summary().line(),
            "no samples"
        );
        let mut l = Latency::new().expect("histogram");
        l.record(0);
        l.record(u64::MAX);
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.min_us, 1);
        assert!(s.max_us >= HIGHEST_US, "{s:?}");
    }

    #[test]
    fn merged_recordings_count_both() {
        let (mut a, mut b) = (
            Latency::new().expect("histogram"),
            Latency::new().expect("histogram"),
        );
        a.record(10);
        b.record(1_000);
        b.record(2_000);
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 3);
        assert_eq!(s.min_us, 10);
        assert!(s.max_us >= 2_000, "{s:?}");
    }

    #[test]
    fn human_units() {
        assert_eq!(human(850), "850 µs");
        assert_eq!(human(1_234), "1.23 ms");
        assert_eq!(human(2_500_000), "2.50 s");
    }
}
