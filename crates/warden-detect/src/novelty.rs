//! `novelty`: a value of a field (route, client IP, user agent, method, path) that a key has
//! never used, seen after the key's baseline period — a sensor probing a firmware route, a
//! device key used from a new network. Every value seen during the baseline (`baseline_ms` of
//! event time and at least `min_baseline_events` events) is learned as normal; afterwards a new
//! value is reported (once: it is learned too) and the detector fires when `min_new` new values
//! were seen within one window length.
//!
//! Known values are kept as 64-bit hashes, at most `max_values` per key.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use warden_config::NoveltyConfig;

use crate::{DetectError, Detector, EventView, Firing, KeyId, Keyed, Sample, baseline};

/// New values remembered per key for explanations.
const RECENT_MAX: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Known {
    first_ts: i64,
    events: u32,
    /// Sorted hashes of known values.
    values: Vec<u64>,
    /// New values seen after the baseline, with their event time, oldest first.
    recent: VecDeque<(i64, String)>,
}

pub struct Novelty {
    config: NoveltyConfig,
    window_ns: i64,
    keys: Keyed<Known>,
}

impl Novelty {
    /// `window_ms`: length of the detector's window (new values are counted over it).
    pub fn new(config: NoveltyConfig, window_ms: u64) -> Self {
        Self {
            config,
            window_ns: (window_ms as i64).saturating_mul(1_000_000),
            keys: Keyed::default(),
        }
    }
}

impl Detector for Novelty {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, _s: &Sample) -> Option<Firing> {
        None
    }

    fn peek(&self, _s: &Sample) -> Option<Firing> {
        None
    }

    fn score(&self, _s: &Sample) -> f64 {
        0.0
    }

    fn wants_events(&self) -> bool {
        true
    }

    fn on_event(&mut self, e: &EventView) -> Option<Firing> {
        let c = &self.config;
        let k = self.keys.get_or_default(e.key);
        if k.events == 0 {
            k.first_ts = e.ts;
        }
        k.events = k.events.saturating_add(1);
        let pos = match k.values.binary_search(&e.hash) {
            Ok(_) => return None,
            Err(pos) => pos,
        };
        let in_baseline = e.ts - k.first_ts < (c.baseline_ms as i64).saturating_mul(1_000_000)
            || k.events <= c.min_baseline_events;
        let room = k.values.len() < c.max_values as usize;
        if room {
            k.values.insert(pos, e.hash);
        }
        if in_baseline {
            return None;
        }
        while k
            .recent
            .front()
            .is_some_and(|(t, _)| *t <= e.ts - self.window_ns)
        {
            k.recent.pop_front();
        }
        if k.recent.len() == RECENT_MAX {
            k.recent.pop_front();
        }
        k.recent.push_back((e.ts, e.value.to_string()));
        let new = k.recent.len();
        if new < c.min_new as usize {
            return None;
        }
        let names: Vec<&str> = k.recent.iter().map(|(_, v)| v.as_str()).collect();
        let known = k.values.len() - usize::from(room);
        Some(Firing {
            score: new as f64,
            value: new as f64,
            threshold: f64::from(c.min_new),
            baseline: baseline([
                ("known_values", known as f64),
                ("baseline_events", f64::from(k.events)),
                ("new_values", new as f64),
            ]),
            explanation: format!(
                "{new} {} value(s) never seen before for this key after its baseline ({}) within {} s; \
                 {known} known value(s), fires at {}",
                c.field.as_str(),
                names.join(", "),
                self.window_ns / 1_000_000_000,
                c.min_new
            ),
        })
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
                .map(|k| {
                    k.values.capacity() * 8
                        + k.recent
                            .iter()
                            .map(|(_, v)| 32 + v.capacity())
                            .sum::<usize>()
                })
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
