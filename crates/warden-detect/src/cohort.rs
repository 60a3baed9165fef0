//! `cohort`: many keys of a population above their own normal at once.
//!
//! Each key keeps its own normal (a running mean of log(1 + value), so a key's normal is a
//! typical level, not pulled up by its bursts) and the spread of its log-level. A key
//! *deviates* in a complete sample when its value is at least `factor` × that normal, above its
//! usual bursts (three standard deviations of its log-level up) and at least `min_value`, and
//! has done so for `sustain_samples` complete samples (a leaky count: each sample that does
//! not deviate takes two off, so one burst is not a rise, and a sustained rise with the odd
//! dip is).
//!
//! At the end of every round the detector counts, per peer group (device type, tenant, or
//! every key), the warm keys that deviated. The group **surges** when they are at least
//! `min_keys`, at least `min_share` of the group's warm keys sampled in that round, at least
//! `surge_factor` × the group's usual count, and beyond chance: the usual count plus four of
//! its Poisson standard deviations. The usual count is a running mean over rounds; a surging
//! round counts a tenth, so a lasting state of the group becomes usual.
//!
//! While a group surges, each of its keys that deviates fires, in the next round's samples
//! (complete or provisional): the coordinated rise of a botnet whose devices each stay under
//! every per-key detector's bar (a few times their own pace, far below any absolute floor).
//!
//! **Score**: the value as a multiple of the key's own normal.
//!
//! A key learns only from complete samples of a full window; a deviating value is learned with
//! a tenth of the weight, so a lasting change of a key's level is learned slowly instead of
//! being frozen out. State: 24 bytes per key (its log-level's mean and variance, its sample
//! count) and, per group, the counts of the round being collected and of the last one.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use warden_config::{CohortConfig, PeerGroup};

use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Own {
    /// Running mean and variance of ln(1 + value).
    mean: f64,
    #[serde(default)]
    var: f64,
    /// Complete samples learned.
    n: u32,
    /// Complete samples that deviated, less [`LEAK`] for each that did not since.
    #[serde(default)]
    streak: u32,
}

/// What a sample that does not deviate takes off a key's streak of deviating samples.
const LEAK: u32 = 2;

/// Standard deviations of a key's own log-level a deviation must also exceed: a bursty key
/// (an app user's sessions) deviates only beyond its usual bursts.
const SPREAD: f64 = 3.0;

impl Own {
    fn normal(&self) -> f64 {
        self.mean.exp_m1()
    }

    /// The value above which the key deviates: `factor` × its normal, or its normal
    /// [`SPREAD`] standard deviations up on the log scale, whichever is higher.
    fn bar(&self, factor: f64) -> f64 {
        let up = factor.ln().max(SPREAD * self.var.max(0.0).sqrt());
        ((self.mean + up).exp() - 1.0).max(factor * self.normal())
    }
}

#[derive(Debug, Default)]
struct Group {
    /// Keys sampled (warm ones: those that can deviate) and deviating in the round being
    /// collected.
    keys: u32,
    deviating: u32,
    /// The last round: whether it surged, and its counts.
    surged: bool,
    last_keys: u32,
    last_deviating: u32,
    /// Running mean of the deviating count over rounds that did not surge.
    usual: f64,
    rounds: u32,
}

pub struct Cohort {
    config: CohortConfig,
    keys: Keyed<Own>,
    groups: HashMap<u32, Group>,
}

impl Cohort {
    pub fn new(config: CohortConfig) -> Self {
        Self {
            config,
            keys: Keyed::default(),
            groups: HashMap::new(),
        }
    }

    /// The key's state, once warm.
    fn warm(&self, key: KeyId) -> Option<&Own> {
        self.keys
            .get(key)
            .filter(|o| o.n >= self.config.warmup_samples)
    }

    /// The key's normal, once warm.
    fn normal(&self, key: KeyId) -> Option<f64> {
        self.warm(key).map(Own::normal)
    }

    fn deviates(&self, key: KeyId, value: f64) -> Option<f64> {
        let c = &self.config;
        let own = self.warm(key)?;
        (value.is_finite() && value >= c.min_value && value > 0.0 && value >= own.bar(c.factor))
            .then(|| own.normal())
    }

    fn fire(&self, s: &Sample, normal: f64) -> Option<Firing> {
        let c = &self.config;
        let g = self.groups.get(&s.peer).filter(|g| g.surged)?;
        let value = s.value();
        let ratio = value / normal.max(f64::MIN_POSITIVE);
        let who = match (c.peers, s.peer_name.is_empty()) {
            (PeerGroup::All, _) | (_, true) => "keys".to_string(),
            (_, false) => format!("keys of {}", s.peer_name),
        };
        Some(Firing {
            score: ratio,
            value,
            threshold: c.factor,
            baseline: baseline([
                ("normal", normal),
                ("deviating", f64::from(g.last_deviating)),
                ("sampled", f64::from(g.last_keys)),
                ("usual_deviating", g.usual),
            ]),
            explanation: format!(
                "{} {} is {} this key's normal ({}) while {} of {} {who} were above {}× their own normal at once (usually {})",
                c.feature,
                num(value),
                if normal > 0.0 {
                    format!("{ratio:.1}×")
                } else {
                    "above".to_string()
                },
                num(normal),
                g.last_deviating,
                g.last_keys,
                num(c.factor),
                num(g.usual),
            ),
        })
    }
}

impl Detector for Cohort {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        let deviates = self.deviates(s.key, value);
        let warm = self.normal(s.key).is_some();
        let streak = match self.keys.get_mut(s.key) {
            Some(o) if deviates.is_some() => {
                o.streak = o.streak.saturating_add(1);
                o.streak
            }
            Some(o) => {
                // Leaky: a sustained rise with the odd dip below the bar keeps its streak.
                o.streak = o.streak.saturating_sub(LEAK);
                0
            }
            None => 0,
        };
        // Deviating for long enough to count.
        let normal = deviates.filter(|_| streak >= self.config.sustain_samples);
        let g = self.groups.entry(s.peer).or_default();
        g.keys += u32::from(warm);
        g.deviating += u32::from(normal.is_some());
        let fired = normal.and_then(|n| self.fire(s, n));
        if s.full {
            let alpha = self.config.alpha;
            let o = self.keys.get_or_default(s.key);
            // A plain mean while warming up, then a running one; deviating values count a
            // tenth.
            let mut a = alpha.max(1.0 / f64::from(o.n.saturating_add(1)));
            if deviates.is_some() {
                a *= 0.1;
            }
            let d = value.ln_1p() - o.mean;
            o.mean += a * d;
            o.var = (1.0 - a) * (o.var + a * d * d);
            o.n = o.n.saturating_add(1);
        }
        fired
    }

    fn peek(&self, s: &Sample) -> Option<Firing> {
        let normal = self.deviates(s.key, s.value())?;
        // A key that has deviated long enough (this sample would extend its streak).
        let streak = self.keys.get(s.key).map_or(0, |o| o.streak);
        if streak.saturating_add(1) < self.config.sustain_samples {
            return None;
        }
        self.fire(s, normal)
    }

    fn score(&self, s: &Sample) -> f64 {
        match self.normal(s.key) {
            Some(n) if n > 0.0 && s.value().is_finite() => s.value() / n,
            _ => 0.0,
        }
    }

    fn end_round(&mut self, _at: i64) {
        let c = &self.config;
        let warm = c.warmup_samples;
        self.groups.retain(|_, g| {
            let d = f64::from(g.deviating);
            // Beyond chance too: the count of deviating keys in a round is roughly Poisson
            // around the usual, so the bar is also four of its standard deviations up.
            g.surged = g.rounds >= warm
                && g.deviating >= c.min_keys
                && d >= c.min_share * f64::from(g.keys)
                && d >= c.surge_factor * g.usual
                && d >= g.usual + 4.0 * g.usual.sqrt();
            if g.keys > 0 {
                // Rounds with warm keys only; a surging round counts a tenth, so a lasting
                // state of the group becomes its usual instead of surging for ever.
                let mut a = c.alpha.max(1.0 / f64::from(g.rounds.saturating_add(1)));
                if g.surged {
                    a *= 0.1;
                }
                g.usual += a * (d - g.usual);
                g.rounds = g.rounds.saturating_add(1);
            }
            g.last_keys = g.keys;
            g.last_deviating = g.deviating;
            g.keys = 0;
            g.deviating = 0;
            true
        });
    }

    fn peer_group(&self) -> Option<PeerGroup> {
        Some(self.config.peers)
    }

    fn forget(&mut self, key: KeyId) {
        self.keys.remove(key);
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn state_bytes(&self) -> usize {
        self.keys.slot_bytes() + self.groups.len() * (std::mem::size_of::<Group>() + 8)
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
