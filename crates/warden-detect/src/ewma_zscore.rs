//! `ewma_zscore`: exponentially weighted moving mean and variance per key; fires when a
//! sample is more than `threshold` standard deviations above the mean, the key is past its
//! warm-up, and the value is at least `min_value`.
//!
//! During warm-up the weight of a new sample is `max(alpha, 1/n)`, so the baseline starts as
//! a plain average of the first samples instead of being dragged by the very first one.

use std::collections::{BTreeMap, HashMap};

use warden_config::EwmaZscoreConfig;

use crate::{Detector, Firing};

/// Per-key state: 24 bytes plus the key (documented in docs/ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Baseline {
    mean: f64,
    var: f64,
    samples: u32,
}

pub struct EwmaZscore {
    config: EwmaZscoreConfig,
    keys: HashMap<String, Baseline>,
}

impl EwmaZscore {
    pub fn new(config: EwmaZscoreConfig) -> Self {
        Self {
            config,
            keys: HashMap::new(),
        }
    }

    fn score(&self, b: &Baseline, value: f64) -> Option<Firing> {
        if b.samples < self.config.warmup_samples || value < self.config.min_value {
            return None;
        }
        let std = b.var.sqrt().max(self.config.min_std);
        let z = (value - b.mean) / std;
        (z > self.config.threshold).then(|| Firing {
            score: z,
            value,
            threshold: self.config.threshold,
            baseline: BTreeMap::from([
                ("mean".to_string(), b.mean),
                ("std".to_string(), std),
                ("samples".to_string(), f64::from(b.samples)),
            ]),
        })
    }
}

impl Detector for EwmaZscore {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn feature(&self) -> &str {
        &self.config.feature
    }

    fn observe(&mut self, key: &str, value: f64) -> Option<Firing> {
        if !value.is_finite() {
            return None;
        }
        let b = self.keys.get(key).copied().unwrap_or_default();
        if let Some(f) = self.score(&b, value) {
            return Some(f);
        }
        let n = b.samples.saturating_add(1);
        let alpha = self.config.alpha.max(1.0 / f64::from(n));
        let diff = value - b.mean;
        let incr = alpha * diff;
        let updated = Baseline {
            mean: b.mean + incr,
            var: (1.0 - alpha) * (b.var + diff * incr),
            samples: n,
        };
        self.keys.insert(key.to_string(), updated);
        None
    }

    fn peek(&self, key: &str, value: f64) -> Option<Firing> {
        let b = self.keys.get(key)?;
        if !value.is_finite() {
            return None;
        }
        self.score(b, value)
    }

    fn forget(&mut self, key: &str) {
        self.keys.remove(key);
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests;
