//! Scoring a series with detectors, and the scores against the series' labels.

use serde::Serialize;
use warden_config::DetectorConfig;
use warden_detect::Sample;

use super::nab::{Nab, NabPoints, flag_scores};
use super::read::Series;

/// One detector over one series: a score and a flag per point.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorRun {
    /// Detector type.
    pub detector: String,
    /// Each point's score, computed before the detector learns from it.
    pub scores: Vec<f64>,
    /// Whether the detector fired on each point.
    pub flags: Vec<bool>,
}

/// Run `config` over every point of `series`, in time order, each with its own timestamp.
pub fn score(config: &DetectorConfig, series: &Series) -> DetectorRun {
    let mut detector = warden_detect::build(config, 0);
    let mut scores = Vec::with_capacity(series.points.len());
    let mut flags = Vec::with_capacity(series.points.len());
    for p in &series.points {
        let one = [p.value];
        let sample = Sample::of(0, &one, p.at);
        scores.push(detector.score(&sample));
        flags.push(detector.observe(&sample).is_some());
    }
    DetectorRun {
        detector: config.type_name().to_string(),
        scores,
        flags,
    }
}

/// Flags against labels, point by point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PointScore {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// Null when nothing was flagged (precision) or nothing is labelled (recall, F1).
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

impl PointScore {
    /// Counts with their ratios.
    pub fn of(tp: usize, fp: usize, fn_: usize) -> Self {
        let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fn_);
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            (None, Some(_)) => Some(0.0),
            _ => None,
        };
        Self {
            tp,
            fp,
            fn_,
            precision,
            recall,
            f1,
        }
    }
}

/// Flags against labelled ranges (consecutive labelled points): a range is detected when a
/// flag falls in it; flags outside every range are false alarms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RangeScore {
    pub ranges: usize,
    pub detected: usize,
    /// `detected / ranges`, null without ranges.
    pub recall: Option<f64>,
    /// Flags outside every labelled range.
    pub false_alarms: usize,
}

/// Flags of a run against the labels of its series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LabelScore {
    pub point: PointScore,
    pub range: RangeScore,
    /// Average precision of the scores (see [`Ranking`]): whether the detector ranks its
    /// labelled ranges above the rest, whatever its threshold. Null without ranges or
    /// unlabelled points.
    pub average_precision: Option<f64>,
    /// The score threshold that would have given the best F1 over ranges (see [`Ranking`]).
    pub best: Option<Sweep>,
    /// NAB's scores (see [`super::nab`]); null without a scorable labelled range.
    pub nab: Option<Nab>,
}

/// The scores of a run ranked against its labels: each labelled range is one positive (its
/// highest score), each unlabelled point one negative — a detector that fires once per
/// anomaly is not punished for the rest of the range, and every false alarm counts.
/// Non-finite scores rank lowest. Pooled over files, it says whether scores mean the same on
/// every series (one threshold for all).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ranking {
    positives: Vec<f64>,
    negatives: Vec<f64>,
}

/// One threshold of a sweep: ranges whose highest score reaches it are detected, unlabelled
/// points that reach it are false alarms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sweep {
    pub threshold: f64,
    pub detected: usize,
    pub false_alarms: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn rank_value(v: f64) -> f64 {
    if v.is_nan() { f64::NEG_INFINITY } else { v }
}

impl Ranking {
    pub fn of(series: &Series, run: &DetectorRun) -> Option<Self> {
        if !series.labelled {
            return None;
        }
        let mut r = Self::default();
        let mut open: Option<f64> = None;
        for (p, &score) in series.points.iter().zip(&run.scores) {
            let score = rank_value(score);
            if p.label.unwrap_or(false) {
                open = Some(open.map_or(score, |m| m.max(score)));
            } else {
                r.positives.extend(open.take());
                r.negatives.push(score);
            }
        }
        r.positives.extend(open);
        Some(r)
    }

    /// Both rankings as one (pooling files).
    pub fn extend(&mut self, other: &Ranking) {
        self.positives.extend_from_slice(&other.positives);
        self.negatives.extend_from_slice(&other.negatives);
    }

    /// Average precision: the mean, over positives, of the precision among everything scored
    /// at least as high (ties ranked together).
    pub fn average_precision(&self) -> Option<f64> {
        if self.positives.is_empty() || self.negatives.is_empty() {
            return None;
        }
        let mut all: Vec<(f64, bool)> = self
            .positives
            .iter()
            .map(|s| (*s, true))
            .chain(self.negatives.iter().map(|s| (*s, false)))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut tp, mut seen, mut sum) = (0usize, 0usize, 0.0);
        let mut i = 0;
        while i < all.len() {
            let mut j = i;
            let mut pos = 0;
            while j < all.len() && all[j].0 == all[i].0 {
                pos += usize::from(all[j].1);
                j += 1;
            }
            tp += pos;
            seen += j - i;
            sum += pos as f64 * tp as f64 / seen as f64;
            i = j;
        }
        Some(sum / self.positives.len() as f64)
    }

    /// The threshold (one of the positives' scores) with the best F1 over ranges; the lowest
    /// such threshold on ties.
    pub fn best(&self) -> Option<Sweep> {
        if self.positives.is_empty() {
            return None;
        }
        let mut neg = self.negatives.clone();
        neg.sort_by(f64::total_cmp);
        let mut pos = self.positives.clone();
        pos.sort_by(|a, b| b.total_cmp(a));
        let mut best: Option<Sweep> = None;
        for (k, t) in pos.iter().enumerate() {
            if !t.is_finite() || pos.get(k + 1) == Some(t) {
                continue;
            }
            let detected = k + 1;
            let false_alarms = neg.len() - neg.partition_point(|v| v < t);
            let precision = detected as f64 / (detected + false_alarms) as f64;
            let recall = detected as f64 / pos.len() as f64;
            let f1 = 2.0 * precision * recall / (precision + recall);
            if best.is_none_or(|b| f1 >= b.f1) {
                best = Some(Sweep {
                    threshold: *t,
                    detected,
                    false_alarms,
                    precision,
                    recall,
                    f1,
                });
            }
        }
        best
    }
}

impl LabelScore {
    pub fn of(series: &Series, run: &DetectorRun) -> Option<Self> {
        if !series.labelled {
            return None;
        }
        let (mut tp, mut fp, mut fn_) = (0, 0, 0);
        let mut range = RangeScore::default();
        let mut in_range = false;
        let mut hit = false;
        for (p, &flag) in series.points.iter().zip(&run.flags) {
            let label = p.label.unwrap_or(false);
            match (label, flag) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fn_ += 1,
                (false, false) => {}
            }
            if label && !in_range {
                range.ranges += 1;
                hit = false;
            }
            if !label && in_range && hit {
                range.detected += 1;
            }
            in_range = label;
            hit |= label && flag;
            if flag && !label {
                range.false_alarms += 1;
            }
        }
        if in_range && hit {
            range.detected += 1;
        }
        range.recall = (range.ranges > 0).then(|| range.detected as f64 / range.ranges as f64);
        let ranking = Ranking::of(series, run);
        let nab = NabRun::of(series, run).and_then(|n| n.report());
        Some(Self {
            point: PointScore::of(tp, fp, fn_),
            range,
            average_precision: ranking.as_ref().and_then(Ranking::average_precision),
            best: ranking.as_ref().and_then(Ranking::best),
            nab,
        })
    }
}

/// A run's points as NAB scores them: by score, and by its own firings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NabRun {
    pub scores: NabPoints,
    pub flags: NabPoints,
}

impl NabRun {
    pub fn of(series: &Series, run: &DetectorRun) -> Option<Self> {
        Some(Self {
            scores: NabPoints::of(series, &run.scores)?,
            flags: NabPoints::of(series, &flag_scores(&run.flags))?,
        })
    }

    /// Pool `other` into this run.
    pub fn extend(&mut self, other: &NabRun) {
        self.scores.extend(&other.scores);
        self.flags.extend(&other.flags);
    }

    pub fn report(&self) -> Option<Nab> {
        self.scores.report(&self.flags)
    }
}

/// What a detector did over a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Detector type.
    pub detector: String,
    /// Points scored.
    pub points: usize,
    /// Points the detector fired on.
    pub flags: usize,
    /// Timestamp (as written) of the first flag.
    pub first_flag: Option<String>,
    /// The highest score and its timestamp.
    pub max_score: f64,
    pub max_score_at: Option<String>,
    /// Mean and 99th percentile (nearest rank) of the scores.
    pub mean_score: f64,
    pub p99_score: f64,
    /// Against the labels, when the file has a label column.
    pub labels: Option<LabelScore>,
    /// The ranking behind `labels` (pooled over files by the report).
    #[serde(skip)]
    pub ranking: Option<Ranking>,
    /// The points behind `labels.nab` (pooled over files by the report).
    #[serde(skip)]
    pub nab: Option<NabRun>,
}

impl RunSummary {
    pub fn of(series: &Series, run: &DetectorRun) -> Self {
        let finite: Vec<f64> = run
            .scores
            .iter()
            .copied()
            .filter(|s| s.is_finite())
            .collect();
        let mut sorted = finite.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = if sorted.is_empty() {
            0.0
        } else {
            let rank = ((sorted.len() as f64) * 0.99).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        };
        let (max_at, max) = run
            .scores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_finite())
            .fold((None, 0.0f64), |(at, m), (i, &s)| {
                if at.is_none() || s > m {
                    (Some(i), s)
                } else {
                    (at, m)
                }
            });
        let ts = |i: usize| series.points.get(i).map(|p| p.timestamp.clone());
        Self {
            detector: run.detector.clone(),
            points: run.scores.len(),
            flags: run.flags.iter().filter(|f| **f).count(),
            first_flag: run.flags.iter().position(|f| *f).and_then(ts),
            max_score: max,
            max_score_at: max_at.and_then(ts),
            mean_score: if finite.is_empty() {
                0.0
            } else {
                finite.iter().sum::<f64>() / finite.len() as f64
            },
            p99_score: p99,
            labels: LabelScore::of(series, run),
            ranking: Ranking::of(series, run),
            nab: NabRun::of(series, run),
        }
    }
}
