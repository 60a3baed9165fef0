//! A seasonal baseline shared by the detectors that offer one (`ewma_zscore`, `cusum`, `mad`): a mean
//! per phase of a period (`buckets` of it, linearly interpolated between bucket centres, each
//! learned with weight `alpha`) and the variance of the residuals around it. It is used once
//! the key has been seen for `warmup_periods` whole periods and its residuals have less than
//! half the variance the detector's moving mean leaves: a value normal for the day but not for
//! the hour then stands out, and a series without seasonality keeps its plain baseline.

use serde::{Deserialize, Serialize};

/// The seasonal settings of a detector.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// Period, milliseconds of event time; 0 = no seasonal baseline.
    pub period_ms: u64,
    pub buckets: u32,
    /// Weight of a sample in the mean of its phase.
    pub alpha: f64,
    /// Whole periods before the seasonal baseline is used.
    pub warmup_periods: u32,
    /// Residuals learned before it is used (at least 2).
    pub min_residuals: u32,
    /// Weight of a residual in the residual variance (at least 1/n).
    pub var_alpha: f64,
}

/// A mean per phase of the period and the variance of the residuals around them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Season {
    first_at: i64,
    var: f64,
    /// Residuals learned into `var`.
    n: u32,
    /// (mean, weight learned) per bucket.
    buckets: Vec<[f32; 2]>,
}

/// Where a time falls in the period: the two buckets around it and the weight of the second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    b0: usize,
    b1: usize,
    f: f64,
}

impl Params {
    fn period_ns(&self) -> i64 {
        i64::try_from(self.period_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000)
    }

    /// The phase of `at`, or `None` without a seasonal baseline.
    pub fn phase(&self, at: i64) -> Option<Phase> {
        if self.period_ms == 0 {
            return None;
        }
        let period = self.period_ns();
        let n = self.buckets.max(1) as usize;
        let pos = at.rem_euclid(period) as f64 / period as f64 * n as f64 - 0.5;
        let fl = pos.floor();
        let b0 = (fl as i64).rem_euclid(n as i64) as usize;
        Some(Phase {
            b0,
            b1: (b0 + 1) % n,
            f: pos - fl,
        })
    }
}

impl Season {
    fn expected(&self, p: Phase) -> Option<f64> {
        let ([m0, w0], [m1, w1]) = (*self.buckets.get(p.b0)?, *self.buckets.get(p.b1)?);
        match (w0 > 0.0, w1 > 0.0) {
            (true, true) => Some(f64::from(m0) * (1.0 - p.f) + f64::from(m1) * p.f),
            (true, false) => Some(f64::from(m0)),
            (false, true) => Some(f64::from(m1)),
            (false, false) => None,
        }
    }

    /// Whether the key has been seen for the warm-up periods and learned enough residuals.
    pub fn warm(&self, p: &Params, at: i64) -> bool {
        at.saturating_sub(self.first_at)
            >= p.period_ns().saturating_mul(i64::from(p.warmup_periods))
            && self.n >= p.min_residuals.max(2)
    }

    /// The seasonal mean for `at`, warm or not (`None` before its phase has been seen).
    pub fn expected_at(&self, p: &Params, at: i64) -> Option<f64> {
        self.expected(p.phase(at)?)
    }

    /// The seasonal (expected value, variance) at `at`, if warm and better than a baseline
    /// leaving `moving_var`.
    pub fn baseline(&self, p: &Params, at: i64, moving_var: f64) -> Option<(f64, f64)> {
        if !self.warm(p, at) || self.var >= 0.5 * moving_var {
            return None;
        }
        Some((self.expected_at(p, at)?, self.var))
    }

    /// Learn a (complete, non-firing) sample into `season`, created on the first one.
    pub fn learn(season: &mut Option<Season>, p: &Params, at: i64, value: f64) {
        let Some(phase) = p.phase(at) else { return };
        let s = season.get_or_insert_with(|| Season {
            first_at: at,
            buckets: vec![[0.0; 2]; p.buckets.max(1) as usize],
            ..Season::default()
        });
        if let Some(e) = s.expected(phase) {
            s.n = s.n.saturating_add(1);
            let beta = p.var_alpha.max(1.0 / f64::from(s.n));
            let r = value - e;
            s.var = (1.0 - beta) * (s.var + beta * r * r);
        }
        for (b, w) in [(phase.b0, 1.0 - phase.f), (phase.b1, phase.f)] {
            if w <= 0.0 {
                continue;
            }
            let Some([m, seen]) = s.buckets.get_mut(b) else {
                continue;
            };
            *seen += w as f32;
            let rate = (w / f64::from(*seen)).max(p.alpha * w).min(1.0);
            *m += (rate * (value - f64::from(*m))) as f32;
        }
    }

    /// Move every phase's mean by `shift` (a sustained level shift accepted as the new normal).
    pub fn shift(&mut self, shift: f64) {
        for [m, _] in self.buckets.iter_mut() {
            *m += shift as f32;
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * 8
    }
}
