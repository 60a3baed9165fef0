//! `ewma_zscore`: exponentially weighted moving mean and variance per key; fires when a
//! sample is more than `threshold` standard deviations above the mean, the key is past its
//! warm-up, the value is at least `min_value` and at least `min_deviation` above the mean.
//!
//! During warm-up the weight of a new sample is `max(alpha, 1/n)`, so the baseline starts as
//! a plain average of the first samples instead of being dragged by the very first one. It
//! learns from partial windows too (a key's first window length): the warm-up absorbs the
//! window filling, and a flood right after a device appears is still caught.

use serde::{Deserialize, Serialize};
use warden_config::EwmaZscoreConfig;

use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// Per-key state: 24 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Baseline {
    mean: f64,
    var: f64,
    samples: u32,
}

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

    fn z(&self, b: &Baseline, value: f64) -> (f64, f64) {
        let std = b.var.sqrt().max(self.config.min_std);
        ((value - b.mean) / std, std)
    }

    fn fire(&self, b: &Baseline, value: f64) -> Option<Firing> {
        let c = &self.config;
        if b.samples < c.warmup_samples || value < c.min_value || value - b.mean < c.min_deviation {
            return None;
        }
        let (z, std) = self.z(b, value);
        (z > c.threshold).then(|| Firing {
            score: z,
            value,
            threshold: c.threshold,
            baseline: baseline([
                ("mean", b.mean),
                ("std", std),
                ("samples", f64::from(b.samples)),
            ]),
            explanation: format!(
                "{} {} is {:.1} standard deviations above its moving mean {} (std {}, threshold {})",
                c.feature,
                num(value),
                z,
                num(b.mean),
                num(std),
                num(c.threshold)
            ),
        })
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
        let b = self.keys.get(s.key).copied().unwrap_or_default();
        if let Some(f) = self.fire(&b, value) {
            return Some(f);
        }
        let n = b.samples.saturating_add(1);
        let alpha = self.config.alpha.max(1.0 / f64::from(n));
        let diff = value - b.mean;
        let incr = alpha * diff;
        self.keys.insert(
            s.key,
            Baseline {
                mean: b.mean + incr,
                var: (1.0 - alpha) * (b.var + diff * incr),
                samples: n,
            },
        );
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
            Some(b) if s.value().is_finite() => self.z(b, s.value()).0,
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
