//! `mad`: robust z-score of a sample against the median and the median absolute deviation
//! (MAD) of the key's last `history` samples: `(value − median) / scale`. One outlier cannot
//! move a median, so the baseline resists the very attacks it watches for; firing samples are
//! not learned either.
//!
//! **Scale**: `1.4826 · MAD` (the standard deviation of a normal distribution); when the MAD
//! is 0 (more than half the history is one value, e.g. a mostly-zero count) `1.2533 ·` the
//! mean absolute deviation from the median instead (IBM's modified z-score); floored at
//! `min_mad`, at `min_rel_mad` × max(|median|, |value|) and (`resolution_floor`) at the key's
//! smallest non-zero step between consecutive samples.
//!
//! **Seasonality.** With `period_ms` > 0 (default: a day) the key also keeps a mean per phase
//! of the period (`season.rs`, shared with `ewma_zscore` and `cusum`) and a second ring of the
//! last `history` residuals from it (value − the phase's mean before it learned the value).
//! Once the key has been seen for `season_warmup` periods and the residuals' scale is under
//! √½ of the plain one (half the variance), a sample is scored by the robust z-score of its
//! residual: the median residual and its MAD take the place of the median and MAD, so a level
//! normal for the day but not for the hour stands out, and a series without seasonality keeps
//! its plain baseline.
//!
//! **Re-baselining**: after `rebaseline_after` consecutive complete samples at least
//! `threshold / 2` from the baseline on one side (one of them firing), the whole history (and
//! the seasonal means, when the deviations were measured against them) is moved by their mean
//! deviation: the new level is accepted with the spread the key had.
//!
//! **Score**: |robust z| once warm, else 0 (comparable across series like a z-score).
//!
//! **State per key**: 4 bytes per sample of history plus 88 (`history = 200`: about 900
//! bytes); with a seasonal baseline another 4 per sample and 8 per phase (about 1.9 kB). Each
//! complete sample costs O(history) per ring (two selections over a reused scratch buffer, no
//! allocation).

use serde::{Deserialize, Serialize};
use warden_config::MadConfig;

use crate::scale::{Resolution, Run, fires, floor};
use crate::season::{self, Season};
use crate::{DetectError, Detector, Firing, KeyId, Keyed, Sample, baseline, num};

/// Scale that makes the MAD of a normal distribution its standard deviation.
const MAD_SCALE: f64 = 1.4826;
/// The same for the mean absolute deviation (√(π/2)).
const MEAN_AD_SCALE: f64 = 1.2533;

/// Per-key state: a ring of the last samples (f32) and the cached median and MAD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct History {
    ring: Vec<f32>,
    /// Next write position once the ring is full.
    pos: u32,
    samples: u32,
    median: f64,
    mad: f64,
    /// Mean absolute deviation from the median.
    mean_ad: f64,
    res: Resolution,
    run: Run,
    season: Option<Season>,
    /// Residuals from the seasonal means (only with a seasonal baseline).
    resid: Ring,
}

/// A ring of residuals and their cached median, MAD and mean absolute deviation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Ring {
    ring: Vec<f32>,
    pos: u32,
    median: f64,
    mad: f64,
    mean_ad: f64,
}

/// The centre and spread a sample is scored against.
#[derive(Debug, Clone, Copy)]
struct Base {
    center: f64,
    spread: f64,
    seasonal: bool,
}

pub struct Mad {
    config: MadConfig,
    keys: Keyed<History>,
    scratch: Vec<f32>,
}

/// The scaled MAD, or the scaled mean absolute deviation when the MAD is 0.
fn spread(mad: f64, mean_ad: f64) -> f64 {
    if mad > 0.0 {
        MAD_SCALE * mad
    } else {
        MEAN_AD_SCALE * mean_ad
    }
}

/// Write `value` into a ring of capacity `cap`.
fn push(ring: &mut Vec<f32>, pos: &mut u32, cap: usize, value: f64) {
    if ring.len() < cap {
        ring.push(value as f32);
    } else if let Some(x) = ring.get_mut(*pos as usize) {
        *x = value as f32;
        *pos = (*pos + 1) % cap as u32;
    }
}

/// (median, MAD, mean absolute deviation from the median) of a non-empty `ring`.
fn robust(scratch: &mut Vec<f32>, ring: &[f32]) -> (f64, f64, f64) {
    scratch.clear();
    scratch.extend_from_slice(ring);
    let med = median(scratch);
    let mut sum = 0.0;
    for x in scratch.iter_mut() {
        let d = (f64::from(*x) - med).abs();
        sum += d;
        *x = d as f32;
    }
    (med, median(scratch), sum / scratch.len() as f64)
}

impl Mad {
    pub fn new(config: MadConfig) -> Self {
        Self {
            config,
            keys: Keyed::default(),
            scratch: Vec::new(),
        }
    }

    fn season(&self) -> season::Params {
        let c = &self.config;
        season::Params {
            period_ms: c.period_ms,
            buckets: c.buckets,
            alpha: c.season_alpha,
            warmup_periods: c.season_warmup,
            min_residuals: c.warmup_samples,
            var_alpha: 2.0 / (f64::from(c.history) + 1.0),
        }
    }

    /// The seasonal baseline at `at` when warm and tighter than the plain one, else the plain.
    fn base(&self, h: &History, at: i64) -> Base {
        let plain = Base {
            center: h.median,
            spread: spread(h.mad, h.mean_ad),
            seasonal: false,
        };
        let p = self.season();
        let Some(season) = h.season.as_ref() else {
            return plain;
        };
        let r = &h.resid;
        let resid_spread = spread(r.mad, r.mean_ad);
        if r.ring.len() < self.config.warmup_samples.max(2) as usize
            || !season.warm(&p, at)
            || resid_spread >= std::f64::consts::FRAC_1_SQRT_2 * plain.spread
        {
            return plain;
        }
        match season.expected_at(&p, at) {
            Some(e) => Base {
                center: e + r.median,
                spread: resid_spread,
                seasonal: true,
            },
            None => plain,
        }
    }

    /// (robust z, scale, baseline) of `value` at `at`.
    fn robust_z(&self, h: &History, value: f64, at: i64) -> (f64, f64, Base) {
        let c = &self.config;
        let b = self.base(h, at);
        let res = c.resolution_floor.then_some(&h.res);
        let scale = b
            .spread
            .max(floor(c.min_mad, c.min_rel_mad, b.center, value, res));
        ((value - b.center) / scale, scale, b)
    }

    fn warm(&self, h: &History) -> bool {
        h.samples >= self.config.warmup_samples.max(1)
    }

    fn fire(&self, h: &History, value: f64, at: i64) -> Option<Firing> {
        let c = &self.config;
        if !self.warm(h) {
            return None;
        }
        let (z, scale, b) = self.robust_z(h, value, at);
        let hit = fires(c.direction, z, c.threshold) && (z < 0.0 || value >= c.min_value);
        let what = if b.seasonal {
            "its seasonal median for this time"
        } else {
            "its median"
        };
        hit.then(|| Firing {
            score: z.abs(),
            value,
            threshold: c.threshold,
            baseline: baseline([
                ("median", b.center),
                ("mad", if b.seasonal { h.resid.mad } else { h.mad }),
                ("scale", scale),
                ("samples", f64::from(h.samples)),
                ("seasonal", f64::from(u8::from(b.seasonal))),
            ]),
            explanation: format!(
                "{} {} is {:.1} robust deviations {} {what} {} (scaled MAD {}, threshold {})",
                c.feature,
                num(value),
                z.abs(),
                if z > 0.0 { "above" } else { "below" },
                num(b.center),
                num(scale),
                num(c.threshold)
            ),
        })
    }

    /// Learn a complete sample that did not fire.
    fn learn(&mut self, key: KeyId, value: f64, at: i64) {
        let cap = self.config.history as usize;
        let p = self.season();
        let Some(h) = self.keys.get_mut(key) else {
            return;
        };
        push(&mut h.ring, &mut h.pos, cap, value);
        h.samples = h.samples.saturating_add(1);
        (h.median, h.mad, h.mean_ad) = robust(&mut self.scratch, &h.ring);
        let expected = h.season.as_ref().and_then(|s| s.expected_at(&p, at));
        if let Some(e) = expected {
            let r = &mut h.resid;
            push(&mut r.ring, &mut r.pos, cap, value - e);
            (r.median, r.mad, r.mean_ad) = robust(&mut self.scratch, &r.ring);
        }
        Season::learn(&mut h.season, &p, at, value);
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
        let firing = self.keys.get(s.key).and_then(|h| self.fire(h, value, s.at));
        if !s.full {
            return firing;
        }
        let (threshold, after) = (self.config.threshold, self.config.rebaseline_after);
        let (z, base) = match self.keys.get(s.key) {
            Some(h) if self.warm(h) => {
                let (z, _, b) = self.robust_z(h, value, s.at);
                (z, Some(b))
            }
            _ => (0.0, None),
        };
        let h = self.keys.get_or_default(s.key);
        h.res.learn(value);
        match base {
            Some(b) if z.abs() >= threshold / 2.0 => {
                h.run.push(value - b.center, firing.is_some());
            }
            _ => h.run.clear(),
        }
        if h.run.due(after) {
            // A sustained shift: move the history to the new level, spread kept (and the
            // seasonal means, when the shift was measured against them).
            let shift = h.run.shift;
            for x in h.ring.iter_mut() {
                *x = (f64::from(*x) + shift) as f32;
            }
            h.median += shift;
            if base.is_some_and(|b| b.seasonal)
                && let Some(season) = h.season.as_mut()
            {
                season.shift(shift);
            }
            h.run.clear();
        }
        if firing.is_some() {
            return firing;
        }
        self.learn(s.key, value, s.at);
        None
    }

    fn peek(&self, s: &Sample) -> Option<Firing> {
        let value = s.value();
        if !value.is_finite() {
            return None;
        }
        self.fire(self.keys.get(s.key)?, value, s.at)
    }

    fn score(&self, s: &Sample) -> f64 {
        match self.keys.get(s.key) {
            Some(h) if self.warm(h) && s.value().is_finite() => {
                self.robust_z(h, s.value(), s.at).0.abs()
            }
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
                .map(|h| {
                    (h.ring.capacity() + h.resid.ring.capacity()) * 4
                        + h.season.as_ref().map_or(0, Season::heap_bytes)
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
