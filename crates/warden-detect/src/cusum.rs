//! `cusum`: two-sided cumulative sum of standardised deviations from the key's baseline
//! (Page's CUSUM). Each sample adds `z − k` to the upper sum and `−z − k` to the lower one
//! (floored at 0); a sum above `h` is a level shift up or down. Small persistent shifts that a
//! z-score never flags add up here — a compromised device that slowly changes its behaviour.
//!
//! The baseline is a plain mean and variance over the warm-up, then an exponentially weighted
//! one (`alpha`) learned from non-firing samples. After firing, the sums restart from 0.
//!
//! **Scale**: the standard deviation is floored at `min_std`, at `min_rel_std` ×
//! max(|mean|, |value|) and (`resolution_floor`) at the key's smallest non-zero step between
//! consecutive samples (see `scale.rs`).
//!
//! **Re-baselining**: a firing opens an alarm that lasts while the sum on its side stays
//! above 0 (it restarts at 0 on firing and keeps growing while the shift lasts). After
//! `rebaseline_after` complete samples in alarm, the mean moves to the level seen since the
//! alarm opened and the sums restart: a lasting shift fires a few times, then is the new
//! normal. 0 turns this off (the detector then fires every few samples while the shift lasts).
//!
//! **Seasonality**: with `period_ms` > 0 (default a day) the key also keeps a mean per phase
//! of the period and the variance of the residuals around it (`season.rs`, as `ewma_zscore`);
//! once it has been seen for `season_warmup` periods and the seasonal mean leaves less than
//! half the variance of the plain one, deviations are taken from the seasonal mean: the daily
//! cycle no longer adds up as a shift, a level wrong for the hour does.
//!
//! **Score**: the larger cumulative sum after the sample (of the side(s) `direction` watches),
//! in standard deviations; 0 during warm-up. It fires above `h`.
//!
//! **State per key**: 120 bytes, plus 8 per bucket of the seasonal baseline once a key has
//! one (24: about 300 bytes); O(1) per sample.

use serde::{Deserialize, Serialize};
use warden_config::{CusumConfig, Direction};

use crate::scale::{Resolution, Run, floor};
use crate::season::{self, Season};
use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// Per-key state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct State {
    mean: f64,
    /// Variance (during warm-up: Welford's sum of squared deviations).
    var: f64,
    samples: u32,
    hi: f64,
    lo: f64,
    /// Side of the open alarm: 1 up, -1 down, 0 none.
    alarm: i8,
    run: Run,
    res: Resolution,
    season: Option<Season>,
}

pub struct Cusum {
    config: CusumConfig,
    keys: Keyed<State>,
}

/// Sums after one more sample.
struct Step {
    /// The baseline the deviation is taken from (the seasonal mean when in use).
    expected: f64,
    seasonal: bool,
    z: f64,
    std: f64,
    hi: f64,
    lo: f64,
}

impl Cusum {
    pub fn new(config: CusumConfig) -> Self {
        Self {
            config,
            keys: Keyed::default(),
        }
    }

    fn warm(&self, s: &State) -> bool {
        s.samples >= self.config.warmup_samples
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

    /// The seasonal baseline at `at`, if the key is warm and it is in use: (expected, variance).
    fn seasonal(&self, s: &State, at: i64) -> Option<(f64, f64)> {
        if !self.warm(s) {
            return None;
        }
        s.season.as_ref()?.baseline(&self.season(), at, s.var)
    }

    fn step(&self, s: &State, value: f64, at: i64) -> Step {
        let c = &self.config;
        let seasonal = self.seasonal(s, at);
        let (expected, var) = seasonal.unwrap_or((s.mean, s.var));
        let res = c.resolution_floor.then_some(&s.res);
        let std = var
            .sqrt()
            .max(floor(c.min_std, c.min_rel_std, expected, value, res));
        let z = (value - expected) / std;
        Step {
            expected,
            seasonal: seasonal.is_some(),
            z,
            std,
            hi: (s.hi + z - self.config.k).max(0.0),
            lo: (s.lo - z - self.config.k).max(0.0),
        }
    }

    fn score_of(&self, st: &Step) -> f64 {
        match self.config.direction {
            Direction::Up => st.hi,
            Direction::Down => st.lo,
            Direction::Both => st.hi.max(st.lo),
        }
    }

    fn fire(&self, s: &State, value: f64, at: i64) -> Option<Firing> {
        if !self.warm(s) {
            return None;
        }
        let c = &self.config;
        let st = self.step(s, value, at);
        let score = self.score_of(&st);
        (score > c.h).then(|| {
            let up = match c.direction {
                Direction::Up => true,
                Direction::Down => false,
                Direction::Both => st.hi >= st.lo,
            };
            Firing {
                score,
                value,
                threshold: c.h,
                baseline: baseline([
                    ("mean", st.expected),
                    ("std", st.std),
                    ("samples", f64::from(s.samples)),
                    ("cusum_up", st.hi),
                    ("cusum_down", st.lo),
                    ("z", st.z),
                    ("seasonal", f64::from(u8::from(st.seasonal))),
                ]),
                explanation: format!(
                    "{} shifted {}: cumulative deviation {:.1} standard deviations (slack {} each) \
                     from its {} {} (std {}) exceeds {}; latest value {}",
                    c.feature,
                    if up { "up" } else { "down" },
                    score,
                    num(c.k),
                    if st.seasonal {
                        "seasonal mean for this time"
                    } else {
                        "mean"
                    },
                    num(st.expected),
                    num(st.std),
                    num(c.h),
                    num(value)
                ),
            }
        })
    }
}

impl Cusum {
    /// The level seen since the alarm opened is the new mean; the sums restart. The seasonal
    /// means move with it only when the alarm was measured against them: before they are in
    /// use, the daily cycle itself looks like shifts, which must not bend the cycle learned.
    fn rebaseline(&self, s: &mut State, at: i64) {
        let shift = s.run.shift;
        let seasonal = self.seasonal(s, at).is_some();
        s.mean += shift;
        if seasonal && let Some(season) = s.season.as_mut() {
            season.shift(shift);
        }
        s.hi = 0.0;
        s.lo = 0.0;
        s.alarm = 0;
        s.run.clear();
    }
}

impl Detector for Cusum {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, sample: &Sample) -> Option<Firing> {
        let value = sample.value();
        if !value.is_finite() {
            return None;
        }
        let at = sample.at;
        if !sample.full {
            return self
                .keys
                .get(sample.key)
                .and_then(|s| self.fire(s, value, at));
        }
        let mut s = self.keys.remove(sample.key).unwrap_or_default();
        let after = self.config.rebaseline_after;
        if let Some(f) = self.fire(&s, value, at) {
            if s.alarm == 0 {
                s.run.clear();
            }
            s.alarm = if f.baseline["cusum_up"] >= f.baseline["cusum_down"] {
                1
            } else {
                -1
            };
            s.run.extend(value - f.baseline["mean"], true);
            s.hi = 0.0;
            s.lo = 0.0;
            if s.run.due(after) {
                self.rebaseline(&mut s, at);
            }
            s.res.learn(value);
            self.keys.insert(sample.key, s);
            return Some(f);
        }
        if s.alarm != 0 && self.warm(&s) {
            let st = self.step(&s, value, at);
            let sum = if s.alarm > 0 { st.hi } else { st.lo };
            if sum > 0.0 {
                s.run.extend(value - st.expected, false);
            } else {
                s.alarm = 0;
                s.run.clear();
            }
            if s.run.due(after) {
                self.rebaseline(&mut s, at);
                s.res.learn(value);
                self.keys.insert(sample.key, s);
                return None;
            }
        }
        s.res.learn(value);
        if !self.warm(&s) {
            // Welford: `var` holds the sum of squared deviations until the warm-up ends.
            let n = s.samples + 1;
            let delta = value - s.mean;
            let mean = s.mean + delta / f64::from(n);
            let m2 = s.var + delta * (value - mean);
            let done = n >= self.config.warmup_samples;
            s.mean = mean;
            s.var = if done { m2 / f64::from(n) } else { m2 };
            s.samples = n;
            s.hi = 0.0;
            s.lo = 0.0;
        } else {
            let st = self.step(&s, value, at);
            let a = self.config.alpha;
            let diff = value - s.mean;
            s.mean += a * diff;
            s.var = (1.0 - a) * (s.var + a * diff * diff);
            s.samples = s.samples.saturating_add(1);
            s.hi = st.hi;
            s.lo = st.lo;
        }
        Season::learn(&mut s.season, &self.season(), at, value);
        self.keys.insert(sample.key, s);
        None
    }

    fn peek(&self, sample: &Sample) -> Option<Firing> {
        let value = sample.value();
        if !value.is_finite() {
            return None;
        }
        self.fire(self.keys.get(sample.key)?, value, sample.at)
    }

    fn score(&self, sample: &Sample) -> f64 {
        match self.keys.get(sample.key) {
            Some(s) if self.warm(s) && sample.value().is_finite() => {
                self.score_of(&self.step(s, sample.value(), sample.at))
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
                .filter_map(|s| s.season.as_ref())
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
