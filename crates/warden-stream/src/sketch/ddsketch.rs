//! DDSketch (Masson et al., VLDB 2019): quantiles with a relative error guarantee. Positive
//! values fall into logarithmic bins `⌈log_γ x⌉` with `γ = (1 + α)/(1 − α)`, α = 1 %; values
//! ≤ 0 are counted apart. Bins are kept sparse (sorted `(index, count)`), so a device sending
//! the same few payload sizes costs a few bytes, and merging sketches is a sorted merge. At
//! most [`MAX_BINS`] bins are kept; beyond, the lowest bins collapse (only low quantiles lose
//! accuracy).

use serde::{Deserialize, Serialize};

/// Relative accuracy.
const ALPHA: f64 = 0.01;
pub const MAX_BINS: usize = 2048;

fn ln_gamma() -> f64 {
    ((1.0 + ALPHA) / (1.0 - ALPHA)).ln()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DdSketch {
    /// Sorted by index.
    bins: Vec<(i32, u32)>,
    zeros: u64,
    count: u64,
}

impl DdSketch {
    pub fn insert(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        self.count += 1;
        if value <= 0.0 {
            self.zeros += 1;
            return;
        }
        let idx = (value.ln() / ln_gamma()).ceil() as i32;
        self.add(idx, 1);
    }

    fn add(&mut self, idx: i32, n: u32) {
        match self.bins.binary_search_by_key(&idx, |b| b.0) {
            Ok(i) => self.bins[i].1 = self.bins[i].1.saturating_add(n),
            Err(i) => {
                self.bins.insert(i, (idx, n));
                if self.bins.len() > MAX_BINS {
                    let (_, low) = self.bins.remove(0);
                    self.bins[0].1 = self.bins[0].1.saturating_add(low);
                }
            }
        }
    }

    pub fn merge(&mut self, other: &DdSketch) {
        self.count += other.count;
        self.zeros += other.zeros;
        if self.bins.is_empty() {
            self.bins.extend_from_slice(&other.bins);
            return;
        }
        for (idx, n) in &other.bins {
            self.add(*idx, *n);
        }
    }

    /// The `q`-quantile (NaN when empty), within 1 % of a true value of the sample.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        if rank < self.zeros {
            return 0.0;
        }
        let mut seen = self.zeros;
        let g = ln_gamma().exp();
        for (idx, n) in &self.bins {
            seen += u64::from(*n);
            if seen > rank {
                return 2.0 * g.powi(*idx) / (g + 1.0);
            }
        }
        self.bins
            .last()
            .map_or(0.0, |(i, _)| 2.0 * g.powi(*i) / (g + 1.0))
    }

    pub fn clear(&mut self) {
        self.bins.clear();
        self.zeros = 0;
        self.count = 0;
    }

    pub fn heap_bytes(&self) -> usize {
        self.bins.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_relative_accuracy() {
        let mut s = DdSketch::default();
        for i in 1..=10_000 {
            s.insert(f64::from(i));
        }
        for (q, want) in [
            (0.5, 5000.0),
            (0.9, 9000.0),
            (0.99, 9900.0),
            (1.0, 10_000.0),
        ] {
            let got = s.quantile(q);
            assert!((got - want).abs() / want <= 0.011, "q{q}: {got} vs {want}");
        }
        assert_eq!(s.count, 10_000);
    }

    #[test]
    fn zeros_empty_and_constant_streams() {
        let mut s = DdSketch::default();
        assert!(s.quantile(0.5).is_nan());
        for _ in 0..10 {
            s.insert(0.0);
        }
        s.insert(512.0);
        assert_eq!(s.quantile(0.5), 0.0);
        assert!((s.quantile(1.0) - 512.0).abs() / 512.0 < 0.01);
        assert_eq!(s.bins.len(), 1, "one bin for one distinct size");
    }

    #[test]
    fn merging_equals_inserting_everything() {
        let (mut a, mut b, mut all) = (
            DdSketch::default(),
            DdSketch::default(),
            DdSketch::default(),
        );
        for i in 0..1000 {
            let v = f64::from(i % 37) * 13.5 + 1.0;
            if i % 3 == 0 {
                a.insert(v)
            } else {
                b.insert(v)
            }
            all.insert(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn bins_are_bounded() {
        let mut s = DdSketch::default();
        let mut v = 1e-300;
        while v < 1e300 {
            s.insert(v);
            v *= 1.01;
        }
        assert!(s.bins.len() <= MAX_BINS);
        assert!((s.quantile(1.0) - v / 1.01).abs() / v < 0.02);
    }
}
