//! `auth_failures`: a burst of failed authentications for a key — credential stuffing from an
//! IP, a key or token being guessed for an identity. Fires when the failures in the window
//! reach `min_failures` and their share of the key's requests reaches `min_ratio` (so a busy
//! NAT address with a few stale keys among thousands of good requests does not fire).
//! Stateless: the window holds the counts.

use warden_config::AuthFailuresConfig;

use crate::{DetectError, Detector, Firing, KeyId, Sample, baseline, num};

pub struct AuthFailures {
    config: AuthFailuresConfig,
}

impl AuthFailures {
    pub fn new(config: AuthFailuresConfig) -> Self {
        Self { config }
    }

    fn counts(s: &Sample) -> Option<(f64, f64)> {
        let failures = *s.values.first()?;
        let requests = *s.values.get(1)?;
        (failures.is_finite() && requests.is_finite()).then_some((failures, requests))
    }

    fn fire(&self, s: &Sample) -> Option<Firing> {
        let c = &self.config;
        let (failures, requests) = Self::counts(s)?;
        let ratio = if requests > 0.0 {
            (failures / requests).min(1.0)
        } else {
            1.0
        };
        (failures >= c.min_failures && ratio >= c.min_ratio).then(|| Firing {
            score: failures,
            value: failures,
            threshold: c.min_failures,
            baseline: baseline([
                ("requests", requests),
                ("failure_ratio", ratio),
                ("min_ratio", c.min_ratio),
            ]),
            explanation: format!(
                "{} failed authentication(s) in the window ({:.0} % of {} requests); fires at {} \
                 and {:.0} %",
                num(failures),
                ratio * 100.0,
                num(requests),
                num(c.min_failures),
                c.min_ratio * 100.0
            ),
        })
    }
}

impl Detector for AuthFailures {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, s: &Sample) -> Option<Firing> {
        self.fire(s)
    }

    fn peek(&self, s: &Sample) -> Option<Firing> {
        self.fire(s)
    }

    fn score(&self, s: &Sample) -> f64 {
        Self::counts(s).map_or(0.0, |(f, _)| f / self.config.min_failures)
    }

    fn forget(&mut self, _key: KeyId) {}

    fn len(&self) -> usize {
        0
    }

    fn state_bytes(&self) -> usize {
        0
    }

    fn save_key(&self, _key: KeyId) -> Option<serde_json::Value> {
        None
    }

    fn load_key(&mut self, _key: KeyId, _state: serde_json::Value) -> Result<(), DetectError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
