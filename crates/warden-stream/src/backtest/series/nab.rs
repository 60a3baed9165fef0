//! The Numenta Anomaly Benchmark's scoring (Lavin & Ahmad 2015, "Evaluating Real-time Anomaly
//! Detection Algorithms — the Numenta Anomaly Benchmark"), written from its published
//! definition so that a detector's figure here can be set beside the published ones:
//!
//! - Each labelled range (NAB's *window*: consecutive labelled points) counts once. Its first
//!   detection earns `A_TP × σ̂(-(right - i + 1) / width) / σ̂(-1)`, where σ̂(x) = 2/(1+e^(5x)) - 1
//!   is NAB's scaled sigmoid: ≈ 1 at the window's start, falling to ≈ 0 at its end (early
//!   detection pays). Later detections in the same window add nothing; a window without one
//!   costs `A_FN`.
//! - A detection outside every window costs `A_FP × σ̂(|prev_right - i| / (prev_width - 1))`
//!   (a negative number): little just after a window, the full `A_FP` from three window
//!   widths on and before the file's first window.
//! - The first `min(⌊0.15 n⌋, 750)` points of a file are NAB's *probationary* period: nothing
//!   there counts, and a window wholly inside it is not scored.
//! - The raw score is normalised over the corpus: `100 × (S - S_null) / (S_perfect - S_null)`,
//!   where the null detector (never fires) scores `-A_FN` per window and the perfect one
//!   `A_TP` per window. 0 is the null level, 100 perfect; a detector that fires too often goes
//!   below 0.
//! - NAB sweeps one score threshold over the whole corpus per application profile and reports
//!   the best ([`NabPoints::best`]); a detector's own firings are scored as they are too
//!   ([`NabPoints::at_flags`]).
//!
//! Profiles (NAB's `config/profiles.json`): standard `A_TP = 1, A_FP = 0.11, A_FN = 1`;
//! reward low FP rate `A_FP = 0.22`; reward low FN rate `A_FN = 2`.

use serde::Serialize;

use super::read::Series;

/// NAB's application profile: the weights of a detected window, a false positive and a missed
/// window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NabProfile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's three profiles, in its order.
pub const NAB_PROFILES: [NabProfile; 3] = [
    NabProfile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    NabProfile {
        name: "reward_low_fp_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    NabProfile {
        name: "reward_low_fn_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

/// Share of a file in NAB's probationary period, and its cap in points.
const PROBATION_SHARE: f64 = 0.15;
const PROBATION_CAP: usize = 750;
/// No window.
const OUTSIDE: u32 = u32::MAX;

/// NAB's scaled sigmoid of a position relative to a window.
fn scaled_sigmoid(x: f64) -> f64 {
    if x >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// The scorable points of one run (or of many, pooled): each point's score, its window and
/// its unweighted NAB value (σ̂ of its position, before the profile's weight).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NabPoints {
    scores: Vec<f64>,
    window: Vec<u32>,
    value: Vec<f64>,
    windows: u32,
}

/// One profile's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NabScore {
    pub profile: &'static str,
    /// Normalised: 0 is the null detector, 100 the perfect one.
    pub score: f64,
    /// The threshold (score ≥ it is a detection) the sweep chose; null for the detector's own
    /// firings, or when firing nowhere is best.
    pub threshold: Option<f64>,
    /// Windows detected, of `windows`, and detections outside every window.
    pub detected: usize,
    pub windows: usize,
    pub false_positives: usize,
}

/// A run's NAB scores for every profile ([`NAB_PROFILES`]' order): with its own firings and
/// at the best threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Nab {
    pub flags: [NabScore; 3],
    pub best: [NabScore; 3],
}

impl NabPoints {
    /// The scorable points of `series` with `scores` (one per point); `None` unlabelled.
    pub fn of(series: &Series, scores: &[f64]) -> Option<Self> {
        if !series.labelled {
            return None;
        }
        let n = series.points.len().min(scores.len());
        let probation = ((PROBATION_SHARE * n as f64).floor() as usize).min(PROBATION_CAP);
        let labels: Vec<bool> = series.points[..n]
            .iter()
            .map(|p| p.label.unwrap_or(false))
            .collect();
        let mut out = Self::default();
        let mut prev: Option<(usize, usize)> = None; // (right index, width)
        let mut i = 0;
        while i < n {
            if labels[i] {
                let left = i;
                let mut right = i;
                while right + 1 < n && labels[right + 1] {
                    right += 1;
                }
                let width = (right - left + 1) as f64;
                let id = out.windows;
                let mut scorable = false;
                let from = left.max(probation);
                for (j, &score) in scores.iter().enumerate().take(right + 1).skip(from) {
                    let pos = -((right - j + 1) as f64) / width;
                    out.push(score, id, scaled_sigmoid(pos) / scaled_sigmoid(-1.0));
                    scorable = true;
                }
                out.windows += u32::from(scorable);
                prev = Some((right, right - left + 1));
                i = right + 1;
            } else {
                if i >= probation {
                    let pos = match prev {
                        Some((right, width)) if width > 1 => {
                            (i - right) as f64 / (width - 1) as f64
                        }
                        _ => 3.0,
                    };
                    out.push(scores[i], OUTSIDE, scaled_sigmoid(pos));
                }
                i += 1;
            }
        }
        Some(out)
    }

    fn push(&mut self, score: f64, window: u32, value: f64) {
        self.scores.push(score);
        self.window.push(window);
        self.value.push(value);
    }

    /// Pool `other` into these points (its windows become new windows).
    pub fn extend(&mut self, other: &NabPoints) {
        self.scores.extend_from_slice(&other.scores);
        self.value.extend_from_slice(&other.value);
        self.window.extend(other.window.iter().map(|&w| {
            if w == OUTSIDE {
                OUTSIDE
            } else {
                w + self.windows
            }
        }));
        self.windows += other.windows;
    }

    pub fn windows(&self) -> usize {
        self.windows as usize
    }

    /// Normalised score of a raw one; `None` without windows.
    fn normalise(&self, p: &NabProfile, raw: f64) -> Option<f64> {
        let w = f64::from(self.windows);
        let (null, perfect) = (-p.fn_ * w, p.tp * w);
        (self.windows > 0).then(|| 100.0 * (raw - null) / (perfect - null))
    }

    /// The score when the points whose score is `≥ threshold` (NaN never) are detections.
    pub fn at(&self, p: &NabProfile, threshold: f64) -> Option<NabScore> {
        let mut tally = Tally::new(p, self.windows());
        for i in 0..self.scores.len() {
            if self.scores[i] >= threshold {
                tally.detect(p, self.window[i], self.value[i]);
            }
        }
        Some(NabScore {
            profile: p.name,
            score: self.normalise(p, tally.total)?,
            threshold: Some(threshold),
            detected: tally.detected,
            windows: self.windows(),
            false_positives: tally.false_positives,
        })
    }

    /// The score of a detector's own firings: these points' scores must be `1.0` where it
    /// fired (see [`NabPoints::of`] with flags as scores).
    pub fn at_flags(&self, p: &NabProfile) -> Option<NabScore> {
        self.at(p, 1.0).map(|s| NabScore {
            threshold: None,
            ..s
        })
    }

    /// NAB's threshold sweep: the best score over every threshold (each distinct score, or
    /// none at all).
    pub fn best(&self, p: &NabProfile) -> Option<NabScore> {
        let mut order: Vec<usize> = (0..self.scores.len())
            .filter(|&i| !self.scores[i].is_nan())
            .collect();
        order.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]));
        let mut tally = Tally::new(p, self.windows());
        let mut best = (tally.total, None, 0, 0);
        let mut k = 0;
        while k < order.len() {
            let t = self.scores[order[k]];
            while k < order.len() && self.scores[order[k]] == t {
                let i = order[k];
                tally.detect(p, self.window[i], self.value[i]);
                k += 1;
            }
            if tally.total > best.0 {
                best = (tally.total, Some(t), tally.detected, tally.false_positives);
            }
        }
        Some(NabScore {
            profile: p.name,
            score: self.normalise(p, best.0)?,
            threshold: best.1,
            detected: best.2,
            windows: self.windows(),
            false_positives: best.3,
        })
    }

    /// Every profile, with the detector's firings (`flags`, as points built from them) and at
    /// the best threshold of these points' scores.
    pub fn report(&self, flags: &NabPoints) -> Option<Nab> {
        let [a, b, c] = &NAB_PROFILES;
        Some(Nab {
            flags: [flags.at_flags(a)?, flags.at_flags(b)?, flags.at_flags(c)?],
            best: [self.best(a)?, self.best(b)?, self.best(c)?],
        })
    }
}

/// A raw score being summed: every window starts missed.
struct Tally {
    parts: Vec<f64>,
    hit: Vec<bool>,
    total: f64,
    detected: usize,
    false_positives: usize,
}

impl Tally {
    fn new(p: &NabProfile, windows: usize) -> Self {
        Self {
            parts: vec![-p.fn_; windows],
            hit: vec![false; windows],
            total: -p.fn_ * windows as f64,
            detected: 0,
            false_positives: 0,
        }
    }

    fn detect(&mut self, p: &NabProfile, window: u32, value: f64) {
        if window == OUTSIDE {
            self.total += p.fp * value;
            self.false_positives += 1;
            return;
        }
        let w = window as usize;
        let (Some(part), Some(hit)) = (self.parts.get_mut(w), self.hit.get_mut(w)) else {
            return;
        };
        if !*hit {
            *hit = true;
            self.detected += 1;
        }
        let v = p.tp * value;
        if v > *part {
            self.total += v - *part;
            *part = v;
        }
    }
}

/// A run's flags as scores (1 where it fired), for [`NabPoints::at_flags`].
pub fn flag_scores(flags: &[bool]) -> Vec<f64> {
    flags.iter().map(|&f| f64::from(u8::from(f))).collect()
}

#[cfg(test)]
mod tests;
