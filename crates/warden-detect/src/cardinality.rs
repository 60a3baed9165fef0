//! `cardinality`: too many distinct values for a key — an identity enumerating other devices'
//! resources (BOLA scraping) or walking every route. Fires when a `distinct` feature is above
//! an absolute `limit`, or above `factor` × the key's own moving mean after warm-up (and at
//! least `min_value`). Firing samples are not learned, and once warm a sample is learned as at
//! most √`factor` × the usual value (a ramp into an attack does not drag the baseline along).
//!
//! The usual value is the moving mean, or — for a bursty key — its recent peak over
//! √`factor`, whichever is larger: the peak is the largest value learned (a window not yet
//! full counts too: its count is a lower bound), decaying by `alpha` / 10 per sample (a
//! half-life of ≈ 7 / `alpha` samples); once warm it learns at most √`factor` × the usual value
//! like the mean, so a ramp cannot lift it step by step. An app user whose sessions are bursts
//! of ten requests a minute against a mean near zero is judged against its bursts, not against
//! its idle minutes; a sensor that always sends two is judged against two.

use serde::{Deserialize, Serialize};
use warden_config::CardinalityConfig;

use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// Per-key state: 24 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Mean {
    mean: f64,
    samples: u32,
    /// Largest learned value, decaying (see the module docs); absent in older checkpoints.
    #[serde(default)]
    peak: f64,
}

pub struct Cardinality {
    config: CardinalityConfig,
    keys: Keyed<Mean>,
}

impl Cardinality {
    pub fn new(config: CardinalityConfig) -> Self {
        Self {
            config,
            keys: Keyed::default(),
        }
    }

    /// The usual value of a key: its mean, or its recent peak over √factor when larger;
    /// floored at 1 so a key that saw nothing is not divided by 0.
    fn usual(&self, m: &Mean) -> f64 {
        let peak = self.config.factor.map_or(0.0, |f| m.peak / f.sqrt());
        m.mean.max(peak).max(1.0)
    }

    fn fire(&self, m: &Mean, value: f64) -> Option<Firing> {
        let c = &self.config;
        let base = |score: f64, threshold: f64, explanation: String| Firing {
            score,
            value,
            threshold,
            baseline: baseline([
                ("mean", m.mean),
                ("peak", m.peak),
                ("samples", f64::from(m.samples)),
                ("limit", c.limit.unwrap_or(f64::NAN)),
            ]),
            explanation,
        };
        if let Some(limit) = c.limit
            && value > limit
        {
            return Some(base(
                value,
                limit,
                format!(
                    "{} {} is above the limit {} (usually {})",
                    c.feature,
                    num(value),
                    num(limit),
                    num(m.mean)
                ),
            ));
        }
        let factor = c.factor?;
        if m.samples < c.warmup_samples || value < c.min_value {
            return None;
        }
        let ratio = value / self.usual(m);
        (ratio > factor).then(|| {
            base(
                ratio,
                factor,
                format!(
                    "{} {} is {:.1}× its usual {} (fires above {}×)",
                    c.feature,
                    num(value),
                    ratio,
                    num(self.usual(m)),
                    num(factor)
                ),
            )
        })
    }
}

impl Detector for Cardinality {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() {
            return None;
        }
        let m = self.keys.get(s.key).copied().unwrap_or_default();
        if let Some(f) = self.fire(&m, value) {
            return Some(f);
        }
        // Only the `factor` rule needs a baseline.
        let factor = self.config.factor?;
        let peak_decay = 1.0 - self.config.alpha / 10.0;
        if !s.full {
            // A window not yet full undercounts: not a mean, but a peak at least this high
            // (a key's first session).
            if value > m.peak {
                self.keys.insert(s.key, Mean { peak: value, ..m });
            }
            return None;
        }
        let n = m.samples.saturating_add(1);
        let a = self.config.alpha.max(1.0 / f64::from(n));
        // Once warm, a sample is learned as at most √factor × the usual value: a ramp up to
        // an attack (a window filling with a flood, a pace that keeps doubling) moves the
        // baseline by at most that much per sample's weight instead of dragging it along, so
        // the attack still stands out when it gets there.
        let learned = if m.samples >= self.config.warmup_samples {
            value.min(factor.sqrt() * self.usual(&m))
        } else {
            value
        };
        self.keys.insert(
            s.key,
            Mean {
                mean: m.mean + a * (learned - m.mean),
                samples: n,
                peak: learned.max(m.peak * peak_decay),
            },
        );
        None
    }

    fn peek(&self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() {
            return None;
        }
        let m = self.keys.get(s.key).copied().unwrap_or_default();
        self.fire(&m, value)
    }

    fn score(&self, s: &Sample) -> f64 {
        let m = self.keys.get(s.key).copied().unwrap_or_default();
        match (self.config.limit, self.config.factor) {
            (_, Some(_)) => s.value() / self.usual(&m),
            (Some(limit), None) if limit > 0.0 => s.value() / limit,
            _ => s.value(),
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
