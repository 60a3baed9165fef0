//! `threshold`: a static bound (`above` and/or `below`) with hysteresis, like AWS IoT Device
//! Defender's rules: the alarm is raised after `alarm_after` consecutive breaching samples and
//! cleared after `clear_after` consecutive normal ones. While alarmed, every breaching sample
//! fires (the decision policy suppresses repeats).
//!
//! **Score**: how far the value is toward its bound, 1 at the bound: `value / above` for an
//! upper bound, `below / value` for a lower one, the larger of the two with both (so a drop
//! below `below` scores like a rise above `above`). No baseline, no floors: the bounds are the
//! user's. **State per key**: 12 bytes, only while a key breaches or is alarmed.

use serde::{Deserialize, Serialize};
use warden_config::ThresholdConfig;

use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// Per-key state: 12 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct State {
    /// Consecutive breaching samples.
    breaching: u32,
    /// Consecutive normal samples.
    normal: u32,
    alarmed: bool,
}

pub struct Threshold {
    config: ThresholdConfig,
    keys: Keyed<State>,
}

impl Threshold {
    pub fn new(config: ThresholdConfig) -> Self {
        Self {
            config,
            keys: Keyed::default(),
        }
    }

    /// The bound breached, if any: (bound, is_above).
    fn breach(&self, value: f64) -> Option<(f64, bool)> {
        if let Some(a) = self.config.above
            && value > a
        {
            return Some((a, true));
        }
        if let Some(b) = self.config.below
            && value < b
        {
            return Some((b, false));
        }
        None
    }

    fn firing(&self, value: f64, bound: f64, above: bool, consecutive: u32) -> Firing {
        let c = &self.config;
        Firing {
            score: value,
            value,
            threshold: bound,
            baseline: baseline([
                ("bound", bound),
                ("consecutive", f64::from(consecutive)),
                ("alarm_after", f64::from(c.alarm_after)),
                ("clear_after", f64::from(c.clear_after)),
            ]),
            explanation: format!(
                "{} {} is {} {} for {} consecutive sample(s) (alarm after {}, clear after {})",
                c.feature,
                num(value),
                if above { "above" } else { "below" },
                num(bound),
                consecutive,
                c.alarm_after,
                c.clear_after
            ),
        }
    }
}

impl Detector for Threshold {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() {
            return None;
        }
        let breach = self.breach(value);
        let (alarm_after, clear_after) = (self.config.alarm_after, self.config.clear_after);
        let st = self.keys.get_or_default(s.key);
        match breach {
            Some(_) => {
                st.breaching = st.breaching.saturating_add(1);
                st.normal = 0;
                if st.breaching >= alarm_after {
                    st.alarmed = true;
                }
            }
            None => {
                st.normal = st.normal.saturating_add(1);
                st.breaching = 0;
                if st.normal >= clear_after {
                    st.alarmed = false;
                }
            }
        }
        let st = *st;
        if !st.alarmed && st.breaching == 0 {
            // Nothing worth keeping: a quiet key costs no state.
            self.keys.remove(s.key);
        }
        match breach {
            Some((bound, above)) if st.alarmed => {
                Some(self.firing(value, bound, above, st.breaching))
            }
            _ => None,
        }
    }

    fn peek(&self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        let (bound, above) = self.breach(value)?;
        let st = self.keys.get(s.key).copied().unwrap_or_default();
        let consecutive = st.breaching + 1;
        (st.alarmed || consecutive >= self.config.alarm_after)
            .then(|| self.firing(value, bound, above, consecutive))
    }

    fn score(&self, s: &Sample) -> f64 {
        let v = s.value();
        if !v.is_finite() {
            return 0.0;
        }
        let up = match self.config.above {
            Some(a) if a != 0.0 => Some(v / a),
            Some(_) => Some(v),
            None => None,
        };
        let down = match self.config.below {
            Some(b) if v != 0.0 => Some(b / v),
            // 0 under a lower bound: far below it, but a bounded score.
            Some(_) => Some(1e3),
            None => None,
        };
        match (up, down) {
            (Some(u), Some(d)) => u.max(d),
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => v,
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
