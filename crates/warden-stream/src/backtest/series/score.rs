//! Scoring a series with detectors, and the scores against the series' labels.

use serde::Serialize;
use warden_config::DetectorConfig;
use warden_detect::Sample;

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
        Some(Self {
            point: PointScore::of(tp, fp, fn_),
            range,
        })
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
        }
    }
}
