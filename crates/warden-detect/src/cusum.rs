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
//! **Score**: the larger cumulative sum after the sample (of the side(s) `direction` watches),
//! in standard deviations; 0 during warm-up. It fires above `h`.
//!
//! **State per key**: 72 bytes; O(1) per sample.

use serde::{Deserialize, Serialize};
use warden_config::{CusumConfig, Direction};

use crate::scale::{Resolution, Run, floor};
use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// Per-key state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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
}

pub struct Cusum {
    config: CusumConfig,
    keys: Keyed<State>,
}

/// Sums after one more sample.
struct Step {
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

    fn step(&self, s: &State, value: f64) -> Step {
        let c = &self.config;
        let res = c.resolution_floor.then_some(&s.res);
        let std = s
            .var
            .sqrt()
            .max(floor(c.min_std, c.min_rel_std, s.mean, value, res));
        let z = (value - s.mean) / std;
        Step {
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

    fn fire(&self, s: &State, value: f64) -> Option<Firing> {
        if !self.warm(s) {
            return None;
        }
        let c = &self.config;
        let st = self.step(s, value);
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
                    ("mean", s.mean),
                    ("std", st.std),
                    ("samples", f64::from(s.samples)),
                    ("cusum_up", st.hi),
                    ("cusum_down", st.lo),
                    ("z", st.z),
                ]),
                explanation: format!(
                    "{} shifted {}: cumulative deviation {:.1} standard deviations (slack {} each) \
                     from its mean {} (std {}) exceeds {}; latest value {}",
                    c.feature,
                    if up { "up" } else { "down" },
                    score,
                    num(c.k),
                    num(s.mean),
                    num(st.std),
                    num(c.h),
                    num(value)
                ),
            }
        })
    }
}

impl Cusum {
    /// The level seen since the alarm opened is the new mean; the sums restart.
    fn rebaseline(s: &mut State) {
        s.mean += s.run.shift;
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
        let mut s = self.keys.get(sample.key).copied().unwrap_or_default();
        if !sample.full {
            return self.fire(&s, value);
        }
        let after = self.config.rebaseline_after;
        if let Some(f) = self.fire(&s, value) {
            if s.alarm == 0 {
                s.run.clear();
            }
            s.alarm = if f.baseline["cusum_up"] >= f.baseline["cusum_down"] {
                1
            } else {
                -1
            };
            s.run.extend(value - s.mean, true);
            s.hi = 0.0;
            s.lo = 0.0;
            if s.run.due(after) {
                Self::rebaseline(&mut s);
            }
            s.res.learn(value);
            self.keys.insert(sample.key, s);
            return Some(f);
        }
        if s.alarm != 0 && self.warm(&s) {
            let st = self.step(&s, value);
            let sum = if s.alarm > 0 { st.hi } else { st.lo };
            if sum > 0.0 {
                s.run.extend(value - s.mean, false);
            } else {
                s.alarm = 0;
                s.run.clear();
            }
            if s.run.due(after) {
                Self::rebaseline(&mut s);
                s.res.learn(value);
                self.keys.insert(sample.key, s);
                return None;
            }
        }
        s.res.learn(value);
        let next = if !self.warm(&s) {
            // Welford: `var` holds the sum of squared deviations until the warm-up ends.
            let n = s.samples + 1;
            let delta = value - s.mean;
            let mean = s.mean + delta / f64::from(n);
            let m2 = s.var + delta * (value - mean);
            let done = n >= self.config.warmup_samples;
            State {
                mean,
                var: if done { m2 / f64::from(n) } else { m2 },
                samples: n,
                hi: 0.0,
                lo: 0.0,
                ..s
            }
        } else {
            let st = self.step(&s, value);
            let a = self.config.alpha;
            let diff = value - s.mean;
            State {
                mean: s.mean + a * diff,
                var: (1.0 - a) * (s.var + a * diff * diff),
                samples: s.samples.saturating_add(1),
                hi: st.hi,
                lo: st.lo,
                ..s
            }
        };
        self.keys.insert(sample.key, next);
        None
    }

    fn peek(&self, sample: &Sample) -> Option<Firing> {
        let value = sample.value();
        if !value.is_finite() {
            return None;
        }
        self.fire(self.keys.get(sample.key)?, value)
    }

    fn score(&self, sample: &Sample) -> f64 {
        match self.keys.get(sample.key) {
            Some(s) if self.warm(s) && sample.value().is_finite() => {
                self.score_of(&self.step(s, sample.value()))
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
