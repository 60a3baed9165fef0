//! Training data from the archive: the archived events are read with DataFusion and replayed,
//! in event-time order and in the batches a live processor would see, through the pipeline's
//! own engine, with a [`Recorder`] in place of the ML detector. The rows are therefore the
//! very feature vectors the detector is served online — one definition of every feature (the
//! window and feature code of the engine), executed twice.

use std::path::Path;

use warden_config::{DetectorConfig, PipelineConfig};
use warden_ml::{ModelKind, Row, TrainOptions, TrainingInfo};

use super::{Models, RecordedSample, Recorder, kind_of};
use crate::Engine;
use crate::backtest::{BacktestError, replay_through};

/// Errors collecting training rows.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(
        "pipeline `{0}` has no ML detector (kmeans, gmm, one_class_svm, isolation_forest); see pipelines/ml.toml"
    )]
    NoMlDetector(String),
    #[error("pipeline has no ML detector named `{0}` (ML detectors: {1})")]
    UnknownDetector(String, String),
    #[error("{0}")]
    Replay(#[from] BacktestError),
    #[error("the archive has no events")]
    Empty,
}

/// Rows for one ML detector, and what was left out.
#[derive(Debug, Clone, Default)]
pub struct TrainingSet {
    pub detector: String,
    pub kind: Option<ModelKind>,
    pub features: Vec<String>,
    pub window: String,
    pub rows: Vec<Row>,
    /// Usable samples the replay produced; more than `rows` when a device type had more than
    /// [`MAX_ROWS_PER_DEVICE_TYPE`] (a uniform sample of them is kept).
    pub usable: u64,
    /// Samples of windows not yet full (a key seen for less than a window length).
    pub partial: usize,
    /// Samples where a feature had no value (NaN), per feature.
    pub missing: Vec<(String, usize)>,
    pub events: u64,
    pub from_ns: i64,
    pub to_ns: i64,
}

/// Usable samples kept per device type for training (a seeded uniform sample beyond): the
/// fit uses 20 000 rows per group at most, and 175 000 held-back rows calibrate a 0.1 %
/// false-positive rate on 175 rows above the bar. Bounds training memory (≈ 0.2 kB per row)
/// by the number of device types rather than the archive's length.
pub const MAX_ROWS_PER_DEVICE_TYPE: usize = 250_000;

/// The ML detector named `name`, or the pipeline's first.
pub fn ml_detector<'a>(
    pipeline: &'a PipelineConfig,
    name: Option<&str>,
) -> Result<&'a DetectorConfig, CollectError> {
    let mut ml = pipeline.detector.iter().filter(|d| d.ml().is_some());
    match name {
        None => ml
            .next()
            .ok_or_else(|| CollectError::NoMlDetector(pipeline.name.clone())),
        Some(n) => {
            let all: Vec<&str> = ml.clone().map(|d| d.name()).collect();
            ml.find(|d| d.name() == n)
                .ok_or_else(|| CollectError::UnknownDetector(n.into(), all.join(", ")))
        }
    }
}

/// Keep full samples whose features all have a value.
pub fn rows_of(
    samples: Vec<RecordedSample>,
    features: &[String],
) -> (Vec<Row>, usize, Vec<(String, usize)>) {
    let mut partial = 0;
    let mut missing = vec![0usize; features.len()];
    let mut rows = Vec::with_capacity(samples.len());
    for s in samples {
        if !s.full {
            partial += 1;
            continue;
        }
        if let Some(j) = s.values.iter().position(|v| !v.is_finite()) {
            if let Some(m) = missing.get_mut(j) {
                *m += 1;
            }
            continue;
        }
        rows.push(Row {
            device_type: s.device_type,
            values: s.values,
        });
    }
    let missing = features
        .iter()
        .cloned()
        .zip(missing)
        .filter(|(_, n)| *n > 0)
        .collect();
    (rows, partial, missing)
}

/// The part of `pipeline` detector `d`'s samples depend on: its window, that window's
/// features, and `d` alone. A window's samples are a function of its own configuration and
/// the events (no detector, decision or other window changes them), so the rows are those of
/// the whole pipeline — a test proves it — for a fraction of the replay's work (the other
/// windows and the statistical detectors are most of a replay).
pub fn training_pipeline(pipeline: &PipelineConfig, d: &DetectorConfig) -> PipelineConfig {
    let mut p = pipeline.clone();
    let Some(window) = pipeline.detector_window(d).map(|w| w.name.clone()) else {
        return p;
    };
    p.window.retain(|w| w.name == window);
    p.feature.retain(|f| f.window() == window);
    p.detector.retain(|x| x.name() == d.name());
    p.decision.fleet_context.retain(|n| n == d.name());
    p
}

/// Replay the archive in `dir` through `pipeline`, recording detector `name`'s samples.
pub async fn collect(
    pipeline: &PipelineConfig,
    name: Option<&str>,
    dir: &Path,
) -> Result<TrainingSet, CollectError> {
    let d = ml_detector(pipeline, name)?;
    let c = d
        .ml()
        .ok_or_else(|| CollectError::NoMlDetector(pipeline.name.clone()))?;
    let recorder = Recorder::capped(MAX_ROWS_PER_DEVICE_TYPE, 0x5eed);
    let reduced = training_pipeline(pipeline, d);
    let engine = Engine::with_models(&reduced, Models::Record(c.name.clone(), recorder.clone()))
        .map_err(BacktestError::from)?;
    let report = replay_through(engine, &reduced, dir).await?;
    if report.events == 0 {
        return Err(CollectError::Empty);
    }
    let counts = recorder.counts();
    let (rows, _, _) = rows_of(recorder.take(), &c.features);
    let missing = c
        .features
        .iter()
        .cloned()
        .zip(counts.missing.iter().copied().chain(std::iter::repeat(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(TrainingSet {
        usable: counts.seen,
        partial: counts.partial,
        detector: c.name.clone(),
        kind: kind_of(d),
        features: c.features.clone(),
        window: pipeline
            .detector_window(d)
            .map(|w| w.name.clone())
            .unwrap_or_default(),
        rows,
        missing,
        events: report.events,
        from_ns: report.from.unwrap_or_default(),
        to_ns: report.to.unwrap_or_default(),
    })
}

impl TrainingSet {
    /// Options to fit this set with (target FPR, seed and the rest at their defaults).
    pub fn options(&self, pipeline: &str, target_fpr: f64, seed: u64) -> Option<TrainOptions> {
        let mut o = TrainOptions::new(self.kind?, self.features.clone(), self.window.clone());
        o.target_fpr = target_fpr;
        o.seed = seed;
        o.training = TrainingInfo {
            pipeline: pipeline.to_string(),
            detector: self.detector.clone(),
            from_ns: self.from_ns,
            to_ns: self.to_ns,
            events: self.events,
            rows: self.rows.len(),
            rows_skipped: self.partial + self.missing.iter().map(|m| m.1).sum::<usize>(),
            seed,
            trained_at_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        Some(o)
    }
}
