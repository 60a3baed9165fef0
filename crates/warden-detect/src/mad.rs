//! `mad`: robust z-score of a sample against the median and the median absolute deviation
//! (MAD) of the key's last `history` samples: `(value − median) / max(1.4826 · MAD, min_mad)`.
//! One outlier cannot move a median, so the baseline resists the very attacks it watches for;
//! firing samples are not learned either.

use serde::{Deserialize, Serialize};
use warden_config::{Direction, MadConfig};

use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// Scale that makes the MAD of a normal distribution its standard deviation.
const MAD_SCALE: f64 = 1.4826;

/// Per-key state: a ring of the last samples (f32) and the cached median and MAD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct History {
    ring: Vec<f32>,
    /// Next write position once the ring is full.
    pos: u32,
    samples: u32,
    median: f64,
    mad: f64,
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
        let scale = (MAD_SCALE * h.mad).max(self.config.min_mad);
        ((value - h.median) / scale, scale)
    }

    fn fire(&self, h: &History, value: f64) -> Option<Firing> {
        let c = &self.config;
        if h.samples < c.warmup_samples.max(1) {
            return None;
        }
        let (z, scale) = self.robust_z(h, value);
        let hit = match c.direction {
            Direction::Up => z > c.threshold && value >= c.min_value,
            Direction::Down => -z > c.threshold,
            Direction::Both => (z > c.threshold && value >= c.min_value) || -z > c.threshold,
        };
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
        if let Some(h) = self.keys.get(s.key)
            && let Some(f) = self.fire(h, value)
        {
            return Some(f);
        }
        if !s.full {
            return None;
        }
        let cap = self.config.history as usize;
        let h = self.keys.get_or_default(s.key);
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
        for x in self.scratch.iter_mut() {
            *x = (f64::from(*x) - med).abs() as f32;
        }
        h.median = med;
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
            Some(h) if s.value().is_finite() => self.robust_z(h, s.value()).0,
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
