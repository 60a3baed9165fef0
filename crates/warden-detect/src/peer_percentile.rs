//! `peer_percentile`: a key against the distribution of its peers (identities of the same
//! device type or tenant, or every key of the window), like AWS IoT Device Defender's
//! statistical thresholds and Elastic's population analysis. Each complete sample of a key is
//! compared with the `quantile` of its peer group's values in the *previous* complete sample;
//! it fires when the value is above `factor` × that quantile (and at least `min_value`), once
//! the group has `min_peers` members with a value. Firing values are left out of the next
//! distribution.
//!
//! State is per group, not per key: a sorted vector of the last round's values (8 bytes per
//! member) and the round being collected. After a restart the groups are known again one
//! complete sample later.

use std::collections::HashMap;

use warden_config::{PeerGroup, PeerPercentileConfig};

use crate::{DetectError, Detector, Firing, KeyId, Sample, baseline, num};

#[derive(Debug, Default)]
struct Group {
    /// Values of the round being collected.
    current: Vec<f64>,
    /// Sorted values of the last complete round.
    previous: Vec<f64>,
}

pub struct PeerPercentile {
    config: PeerPercentileConfig,
    groups: HashMap<u32, Group>,
}

impl PeerPercentile {
    pub fn new(config: PeerPercentileConfig) -> Self {
        Self {
            config,
            groups: HashMap::new(),
        }
    }

    /// Nearest-rank quantile of sorted values.
    fn quantile(sorted: &[f64], q: f64) -> f64 {
        let n = sorted.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        sorted[rank - 1]
    }

    /// (peer quantile, peers) of a group with enough members.
    fn reference(&self, peer: u32) -> Option<(f64, usize)> {
        let g = self.groups.get(&peer)?;
        let n = g.previous.len();
        (n >= self.config.min_peers as usize && n > 0)
            .then(|| (Self::quantile(&g.previous, self.config.quantile), n))
    }

    fn fire(&self, s: &Sample) -> Option<Firing> {
        let c = &self.config;
        let value = s.value();
        if !value.is_finite() || value < c.min_value {
            return None;
        }
        let (q, peers) = self.reference(s.peer)?;
        let ratio = value / q.max(f64::MIN_POSITIVE);
        (value > c.factor * q).then(|| Firing {
            score: ratio,
            value,
            threshold: c.factor,
            baseline: baseline([
                ("peer_quantile", q),
                ("quantile", c.quantile),
                ("peers", peers as f64),
            ]),
            explanation: format!(
                "{} {} is {} the p{} ({}) of its {} peers{} (fires above {}×)",
                c.feature,
                num(value),
                if q > 0.0 {
                    format!("{ratio:.1}×")
                } else {
                    "above".to_string()
                },
                num(c.quantile * 100.0),
                num(q),
                peers,
                if s.peer_name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.peer_name)
                },
                num(c.factor)
            ),
        })
    }
}

impl Detector for PeerPercentile {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() {
            return None;
        }
        let f = self.fire(s);
        if f.is_none() {
            self.groups.entry(s.peer).or_default().current.push(value);
        }
        f
    }

    fn peek(&self, s: &Sample) -> Option<Firing> {
        self.fire(s)
    }

    fn score(&self, s: &Sample) -> f64 {
        match self.reference(s.peer) {
            Some((q, _)) if q > 0.0 => s.value() / q,
            _ => 0.0,
        }
    }

    fn end_round(&mut self, _at: i64) {
        self.groups.retain(|_, g| {
            g.previous.clear();
            std::mem::swap(&mut g.previous, &mut g.current);
            g.previous.sort_unstable_by(f64::total_cmp);
            !g.previous.is_empty()
        });
    }

    fn peer_group(&self) -> Option<PeerGroup> {
        Some(self.config.peers)
    }

    fn forget(&mut self, _key: KeyId) {}

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn state_bytes(&self) -> usize {
        self.groups
            .values()
            .map(|g| 48 + 8 * (g.current.capacity() + g.previous.capacity()))
            .sum()
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
