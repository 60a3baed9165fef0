//! `mad`: robust z-score of a sample against the median and the median absolute deviation
//! (MAD) of the key's last `history` samples: `(value − median) / scale`. One outlier cannot
//! move a median, so the baseline resists the very attacks it watches for; firing samples are
//! not learned either.
//!
//! **Scale**: `1.4826 · MAD` (the standard deviation of a normal distribution); when the MAD
//! is 0 (more than half the history is one value, e.g. a mostly-zero count) `1.2533 ·` the
//! mean absolute deviation from the median instead (IBM's modified z-score); floored at
//! `min_mad`, at `min_rel_mad` × max(|median|, |value|) and (`resolution_floor`) at the key's
//! smallest non-zero step between consecutive samples.
//!
//! **Re-baselining**: after `rebaseline_after` consecutive complete samples at least
//! `threshold / 2` from the median on one side (one of them firing), the whole history is
//! moved by their mean deviation: the new level is accepted with the spread the key had.
//!
//! **Score**: |robust z| once warm, else 0 (comparable across series like a z-score).
//!
//! **State per key**: 4 bytes per sample of history plus 88 (`history = 200`: about 900
//! bytes). Each complete sample costs O(history) (two selections over a reused scratch
//! buffer, no allocation).

use serde::{Deserialize, Serialize};
use warden_config::MadConfig;

use crate::scale::{Resolution, Run, fires, floor};
use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// Scale that makes the MAD of a normal distribution its standard deviation.
const MAD_SCALE: f64 = 1.4826;
/// The same for the mean absolute deviation (√(π/2)).
const MEAN_AD_SCALE: f64 = 1.2533;

/// Per-key state: a ring of the last samples (f32) and the cached median and MAD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct History {
    ring: Vec<f32>,
    /// Next write position once the ring is full.
    pos: u32,
    samples: u32,
    median: f64,
    mad: f64,
    /// Mean absolute deviation from the median.
    mean_ad: f64,
    res: Resolution,
    run: Run,
}

pub struct Mad {
    config: MadConfig,
    keys: Keyed<History>,
    scratch: Vec<f32>,
}

impl Mad {
    pub fn new(config: MadConfig) -> Self {
        Self {
            config,
            keys: Keyed::default(),
            scratch: Vec::new(),
        }
    }

    fn robust_z(&self, h: &History, value: f64) -> (f64, f64) {
        let c = &self.config;
        let spread = if h.mad > 0.0 {
            MAD_SCALE * h.mad
        } else {
            MEAN_AD_SCALE * h.mean_ad
        };
        let res = c.resolution_floor.then_some(&h.res);
        let scale = spread.max(floor(c.min_mad, c.min_rel_mad, h.median, value, res));
        ((value - h.median) / scale, scale)
    }

    fn warm(&self, h: &History) -> bool {
        h.samples >= self.config.warmup_samples.max(1)
    }

    fn fire(&self, h: &History, value: f64) -> Option<Firing> {
        let c = &self.config;
        if !self.warm(h) {
            return None;
        }
        let (z, scale) = self.robust_z(h, value);
        let hit = fires(c.direction, z, c.threshold) && (z < 0.0 || value >= c.min_value);
        hit.then(|| Firing {
            score: z.abs(),
            value,
            threshold: c.threshold,
            baseline: baseline([
                ("median", h.median),
                ("mad", h.mad),
                ("scale", scale),
                ("samples", f64::from(h.samples)),
            ]),
            explanation: format!(
                "{} {} is {:.1} robust deviations {} its median {} (scaled MAD {}, threshold {})",
                c.feature,
                num(value),
                z.abs(),
                if z > 0.0 { "above" } else { "below" },
                num(h.median),
                num(scale),
                num(c.threshold)
            ),
        })
    }
}

/// Median of `v` (reordered in place); `v` must not be empty.
fn median(v: &mut [f32]) -> f64 {
    let n = v.len();
    let (_, m, _) = v.select_nth_unstable_by(n / 2, f32::total_cmp);
    let hi = f64::from(*m);
    if n % 2 == 1 {
        return hi;
    }
    let lo = v[..n / 2].iter().copied().fold(f32::MIN, f32::max);
    (f64::from(lo) + hi) / 2.0
}

impl Detector for Mad {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() {
            return None;
        }
        let firing = self.keys.get(s.key).and_then(|h| self.fire(h, value));
        if !s.full {
            return firing;
        }
        let (threshold, after) = (self.config.threshold, self.config.rebaseline_after);
        let z = match self.keys.get(s.key) {
            Some(h) if self.warm(h) => self.robust_z(h, value).0,
            _ => 0.0,
        };
        let h = self.keys.get_or_default(s.key);
        h.res.learn(value);
        if z.abs() >= threshold / 2.0 {
            h.run.push(value - h.median, firing.is_some());
        } else {
            h.run.clear();
        }
        if h.run.due(after) {
            // A sustained shift: move the history to the new level, spread kept.
            let shift = h.run.shift;
            for x in h.ring.iter_mut() {
                *x = (f64::from(*x) + shift) as f32;
            }
            h.median += shift;
            h.run.clear();
        }
        if firing.is_some() {
            return firing;
        }
        let cap = self.config.history as usize;
        if h.ring.len() < cap {
            h.ring.push(value as f32);
        } else {
            h.ring[h.pos as usize] = value as f32;
            h.pos = (h.pos + 1) % cap as u32;
        }
        h.samples = h.samples.saturating_add(1);
        self.scratch.clear();
        self.scratch.extend_from_slice(&h.ring);
        let med = median(&mut self.scratch);
        let mut sum = 0.0;
        for x in self.scratch.iter_mut() {
            let d = (f64::from(*x) - med).abs();
            sum += d;
            *x = d as f32;
        }
        h.median = med;
        h.mean_ad = sum / self.scratch.len() as f64;
        h.mad = median(&mut self.scratch);
        None
    }

    fn peek(&self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() {
            return None;
        }
        self.fire(self.keys.get(s.key)?, value)
    }

    fn score(&self, s: &Sample) -> f64 {
        match self.keys.get(s.key) {
            Some(h) if self.warm(h) && s.value().is_finite() => self.robust_z(h, s.value()).0.abs(),
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
                .map(|h| h.ring.capacity() * 4)
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
