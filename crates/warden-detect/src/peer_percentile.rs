//! `peer_percentile`: a key against the distribution of its peers (identities of the same
//! device type or tenant, or every key of the window), like AWS IoT Device Defender's
//! statistical thresholds and Elastic's population analysis. Each complete sample of a key is
//! compared with the `quantile` of its peer group's values in the *previous* complete sample;
//! it fires when the value is above `factor` × that quantile (and at least `min_value`), once
//! the group has `min_peers` members with a value. Firing values are left out of the next
//! distribution.
//!
//! **Reference**: the key's own value of the previous round is left out (a key is compared
//! with the *others*, never with itself), and the quantile is interpolated and lowered to at
//! most `1 − tail_peers / n` of the n others: `tail_peers` peers always sit above the
//! reference, so in a group of 50 the p99 is the p90 — not the maximum, which may be another
//! attacker or the heaviest legitimate peer. With 20 peers and the default 5, it is the p75.
//!
//! **Score**: the value as a multiple of that reference (fires above `factor`).
//!
//! State is per group: a sorted vector of the last round's values (8 bytes per member) and the
//! round being collected; per key 24 bytes (its last two values, to leave itself out). After a
//! restart the groups are known again one complete sample later.

use std::collections::HashMap;

use warden_config::{PeerGroup, PeerPercentileConfig};

use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// The values a key contributed to its group's distributions.
#[derive(Debug, Clone, Copy)]
struct Own {
    /// Round of `current`.
    round: u32,
    /// Value of the round before `round` (NaN if none).
    previous: f64,
    current: f64,
}

impl Default for Own {
    fn default() -> Self {
        Self {
            round: u32::MAX,
            previous: f64::NAN,
            current: f64::NAN,
        }
    }
}

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
    own: Keyed<Own>,
    /// Rounds ended so far.
    round: u32,
}

impl PeerPercentile {
    pub fn new(config: PeerPercentileConfig) -> Self {
        Self {
            config,
            groups: HashMap::new(),
            own: Keyed::default(),
            round: 0,
        }
    }

    /// Interpolated quantile `q` of sorted values, leaving out the one at `skip`.
    fn quantile(sorted: &[f64], skip: Option<usize>, q: f64) -> f64 {
        let m = sorted.len() - usize::from(skip.is_some());
        let at = |r: usize| match skip {
            Some(s) if r >= s => sorted[r + 1],
            _ => sorted[r],
        };
        let pos = q.clamp(0.0, 1.0) * (m - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(m - 1);
        at(lo) + (at(hi) - at(lo)) * (pos - lo as f64)
    }

    /// The key's own value in the last complete round, if it is in the distribution.
    fn own_previous(&self, key: KeyId) -> Option<f64> {
        let o = self.own.get(key)?;
        let v = if o.round == self.round {
            o.previous
        } else if o.round.wrapping_add(1) == self.round {
            o.current
        } else {
            return None;
        };
        v.is_finite().then_some(v)
    }

    /// (reference, other peers, quantile used) of a group with enough members, the key left
    /// out.
    fn reference(&self, peer: u32, key: KeyId) -> Option<(f64, usize, f64)> {
        let c = &self.config;
        let g = self.groups.get(&peer)?;
        let skip = self.own_previous(key).and_then(|v| {
            let i = g.previous.partition_point(|x| x.total_cmp(&v).is_lt());
            (g.previous.get(i) == Some(&v)).then_some(i)
        });
        let n = g.previous.len() - usize::from(skip.is_some());
        if n < (c.min_peers as usize).max(1) {
            return None;
        }
        let q = if c.tail_peers > 0 {
            c.quantile.min(1.0 - f64::from(c.tail_peers) / n as f64)
        } else {
            c.quantile
        };
        Some((Self::quantile(&g.previous, skip, q), n, q))
    }

    fn fire(&self, s: &Sample) -> Option<Firing> {
        let c = &self.config;
        let value = s.value();
        if !value.is_finite() || value < c.min_value {
            return None;
        }
        let (q, peers, quantile) = self.reference(s.peer, s.key)?;
        let ratio = value / q.max(f64::MIN_POSITIVE);
        (value > c.factor * q).then(|| Firing {
            score: ratio,
            value,
            threshold: c.factor,
            baseline: baseline([
                ("peer_quantile", q),
                ("quantile", quantile),
                ("peers", peers as f64),
            ]),
            explanation: format!(
                "{} {} is {} the p{} ({}) of its {} other peers{} (fires above {}×)",
                c.feature,
                num(value),
                if q > 0.0 {
                    format!("{ratio:.1}×")
                } else {
                    "above".to_string()
                },
                percent(quantile),
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

/// `99`, `89.8`: a quantile as a percentile name.
fn percent(q: f64) -> String {
    let p = q * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
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
            let round = self.round;
            let o = self.own.get_or_default(s.key);
            if o.round != round {
                o.previous = if o.round.wrapping_add(1) == round {
                    o.current
                } else {
                    f64::NAN
                };
            }
            o.round = round;
            o.current = value;
        }
        f
    }

    fn peek(&self, s: &Sample) -> Option<Firing> {
        self.fire(s)
    }

    fn score(&self, s: &Sample) -> f64 {
        match self.reference(s.peer, s.key) {
            Some((q, _, _)) if q > 0.0 && s.value().is_finite() => s.value() / q,
            _ => 0.0,
        }
    }

    fn end_round(&mut self, _at: i64) {
        self.round = self.round.wrapping_add(1);
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

    fn peer_population(&self, peer: u32) -> usize {
        self.groups.get(&peer).map_or(0, |g| g.previous.len())
    }

    fn forget(&mut self, key: KeyId) {
        self.own.remove(key);
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn state_bytes(&self) -> usize {
        self.groups
            .values()
            .map(|g| 48 + 8 * (g.current.capacity() + g.previous.capacity()))
            .sum::<usize>()
            + self.own.slot_bytes()
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
