//! `ewma_zscore`: exponentially weighted moving mean and variance per key; fires when a
//! sample is more than `threshold` standard deviations from the mean in `direction` (default
//! up), the key is past its warm-up, the value is at least `min_value` (deviations up) and at
//! least `min_deviation` from the mean.
//!
//! During warm-up the weight of a new sample is `max(alpha, 1/n)`, so the baseline starts as
//! a plain average of the first samples instead of being dragged by the very first one. It
//! learns from partial windows too (a key's first window length): the warm-up absorbs the
//! window filling, and a flood right after a device appears is still caught.
//!
//! **Scale.** The standard deviation is floored at `min_std`, at `min_rel_std` ×
//! max(|mean|, |value|) and (`resolution_floor`) at the key's resolution, the smallest
//! non-zero step between consecutive samples (see `scale.rs`).
//!
//! **Re-baselining.** Firing samples are not learned (an attack must not become the
//! baseline), but a sustained level shift is accepted: after `rebaseline_after` consecutive
//! complete samples at least `threshold / 2` from the baseline on the same side, at least one
//! of them firing, the mean moves by their mean deviation. 0 turns this off.
//!
//! **Seasonality.** With `period_ms` > 0 (default: a day) the key also keeps a mean per phase
//! of the period (`buckets`, linearly interpolated between bucket centres, each learned with
//! weight `season_alpha`) and the variance of the residuals around it. Once the key has been
//! seen for `season_warmup` periods and the seasonal residuals have less than half the
//! variance of the moving mean's, samples are scored against the seasonal mean: a value
//! normal for the day but not for the hour fires.
//!
//! **Score** ([`Detector::score`], what `warden backtest --series` writes): |z|, the number of
//! standard deviations from the baseline whichever the side, 0 during warm-up. Under a stable
//! Gaussian baseline `P(score > s) ≈ 2(1 − Φ(s))`: the same value means the same on any
//! series.
//!
//! **State per key**: 104 bytes plus 8 per bucket of the seasonal baseline (24 buckets: about
//! 300 bytes; the maximum, 96, about 880). Per sample: O(1), no allocation (the bucket vector
//! is allocated once per key).

use serde::{Deserialize, Serialize};
use warden_config::{Direction, EwmaZscoreConfig};

use crate::scale::{Resolution, Run, fires, floor};
use crate::season::{self, Season};
use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// Per-key state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Baseline {
    mean: f64,
    var: f64,
    samples: u32,
    res: Resolution,
    run: Run,
    season: Option<Season>,
}

/// The baseline a sample is scored against.
#[derive(Debug, Clone, Copy)]
struct Score {
    expected: f64,
    std: f64,
    z: f64,
    seasonal: bool,
}

/// Weight, relative to `alpha`, of a sample at least `threshold / 2` above the mean that
/// `min_value` alone held back.
const HELD_BACK_WEIGHT: f64 = 0.1;

pub struct EwmaZscore {
    config: EwmaZscoreConfig,
    keys: Keyed<Baseline>,
}

impl EwmaZscore {
    pub fn new(config: EwmaZscoreConfig) -> Self {
        Self {
            config,
            keys: Keyed::default(),
        }
    }

    fn season(&self) -> season::Params {
        let c = &self.config;
        season::Params {
            period_ms: c.period_ms,
            buckets: c.buckets,
            alpha: c.season_alpha,
            warmup_periods: c.season_warmup,
            min_residuals: c.warmup_samples,
            var_alpha: c.alpha,
        }
    }

    /// The seasonal baseline, if warm and better than the moving mean: (expected, variance).
    fn seasonal(&self, b: &Baseline, at: i64) -> Option<(f64, f64)> {
        b.season.as_ref()?.baseline(&self.season(), at, b.var)
    }

    fn score_of(&self, b: &Baseline, value: f64, at: i64) -> Score {
        let c = &self.config;
        let (expected, var, seasonal) = match self.seasonal(b, at) {
            Some((e, v)) => (e, v, true),
            None => (b.mean, b.var, false),
        };
        let res = c.resolution_floor.then_some(&b.res);
        let std = var
            .sqrt()
            .max(floor(c.min_std, c.min_rel_std, expected, value, res));
        Score {
            expected,
            std,
            z: (value - expected) / std,
            seasonal,
        }
    }

    fn warm(&self, b: &Baseline) -> bool {
        b.samples >= self.config.warmup_samples
    }

    fn fire(&self, b: &Baseline, value: f64, at: i64) -> Option<Firing> {
        if !self.warm(b) {
            return None;
        }
        self.fire_scored(b, value, &self.score_of(b, value, at))
    }

    /// [`Self::fire`] with the sample's score already known (the key is warm).
    fn fire_scored(&self, b: &Baseline, value: f64, s: &Score) -> Option<Firing> {
        let c = &self.config;
        let dev = value - s.expected;
        let (up, down) = (dev > 0.0 && value >= c.min_value, dev < 0.0);
        let side_ok = match c.direction {
            Direction::Up => up,
            Direction::Down => down,
            Direction::Both => up || down,
        };
        if !side_ok || dev.abs() < c.min_deviation || !fires(c.direction, s.z, c.threshold) {
            return None;
        }
        let what = if s.seasonal {
            "its seasonal mean for this time"
        } else {
            "its moving mean"
        };
        Some(Firing {
            score: s.z.abs(),
            value,
            threshold: c.threshold,
            baseline: baseline([
                ("mean", s.expected),
                ("std", s.std),
                ("samples", f64::from(b.samples)),
                ("seasonal", f64::from(u8::from(s.seasonal))),
            ]),
            explanation: format!(
                "{} {} is {:.1} standard deviations {} {what} {} (std {}, threshold {})",
                c.feature,
                num(value),
                s.z.abs(),
                if dev > 0.0 { "above" } else { "below" },
                num(s.expected),
                num(s.std),
                num(c.threshold)
            ),
        })
    }

    /// Learn a sample that did not fire. Once warm, a sample at least `threshold / 2`
    /// standard deviations above the mean but under `min_value` is learned with a tenth of
    /// the weight and its deviation clipped there: the partial windows of a flood's first
    /// seconds, held back only by `min_value`, must not inflate the variance until the flood
    /// itself no longer stands out. A lasting change is still followed, slowly.
    fn learn(&self, b: &mut Baseline, value: f64, at: i64, full: bool, score: Option<&Score>) {
        let c = &self.config;
        let n = b.samples.saturating_add(1);
        let mut alpha = c.alpha.max(1.0 / f64::from(n));
        let mut diff = value - b.mean;
        if let Some(sc) = score
            && value < c.min_value
        {
            let limit = c.threshold / 2.0 * sc.std;
            if limit.is_finite() && limit > 0.0 && diff >= limit {
                diff = limit;
                alpha *= HELD_BACK_WEIGHT;
            }
        }
        let incr = alpha * diff;
        b.mean += incr;
        b.var = (1.0 - alpha) * (b.var + diff * incr);
        b.samples = n;
        if !full {
            return;
        }
        Season::learn(&mut b.season, &self.season(), at, value);
    }
}

impl Detector for EwmaZscore {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() {
            return None;
        }
        let mut b = self.keys.remove(s.key).unwrap_or_default();
        // Scored once: firing, the re-baselining run and learning all use it.
        let score = self.warm(&b).then(|| self.score_of(&b, value, s.at));
        let firing = score
            .as_ref()
            .and_then(|sc| self.fire_scored(&b, value, sc));
        if s.full
            && let Some(sc) = score.as_ref()
        {
            if sc.z.abs() >= self.config.threshold / 2.0 {
                b.run.push(value - sc.expected, firing.is_some());
            } else {
                b.run.clear();
            }
            if b.run.due(self.config.rebaseline_after) {
                // A sustained shift: its level is the new normal, for every phase.
                let shift = b.run.shift;
                b.mean += shift;
                if let Some(season) = b.season.as_mut() {
                    season.shift(shift);
                }
                b.run.clear();
            }
        }
        if firing.is_none() {
            self.learn(&mut b, value, s.at, s.full, score.as_ref());
        }
        if s.full {
            b.res.learn(value);
        }
        self.keys.insert(s.key, b);
        firing
    }

    fn peek(&self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() {
            return None;
        }
        self.fire(self.keys.get(s.key)?, value, s.at)
    }

    fn score(&self, s: &Sample) -> f64 {
        match self.keys.get(s.key) {
            Some(b) if self.warm(b) && s.value().is_finite() => {
                self.score_of(b, s.value(), s.at).z.abs()
            }
            _ => 0.0,
        }
    }

    fn forget(&mut self, key: KeyId) {
        self.keys.remove(key);
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn state_bytes(&self) -> usize {
        self.keys.slot_bytes()
            + self
                .keys
                .iter()
                .filter_map(|b| b.season.as_ref())
                .map(Season::heap_bytes)
                .sum::<usize>()
    }

    fn save_key(&self, key: KeyId) -> Option<serde_json::Value> {
        self.keys.save(key)
    }

    fn load_key(&mut self, key: KeyId, state: serde_json::Value) -> Result<(), DetectError> {
        self.keys.load(&self.config.name, key, state)
    }
}

#[cfg(test)]
mod tests;
