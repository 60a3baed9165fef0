//! Detectors: each scores one feature per key and explains itself when it fires.
//!
//! A detector sees two kinds of samples for a key: [`Detector::observe`] for a *complete*
//! window sample (it may learn from it), and [`Detector::peek`] for the window as it stands
//! between samples (it must not learn; this is what lets Warden fire within a second of a flood
//! starting instead of waiting for the next complete sample).

pub mod ewma_zscore;

use std::collections::BTreeMap;

use warden_config::DetectorConfig;

/// Why a detector fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The score (for `ewma_zscore`, the z-score).
    pub score: f64,
    /// The feature value that fired.
    pub value: f64,
    /// The score threshold.
    pub threshold: f64,
    /// Baseline statistics at firing time (e.g. `mean`, `std`, `samples`).
    pub baseline: BTreeMap<String, f64>,
}

/// A streaming detector over one feature, with state per key.
pub trait Detector: Send + Sync {
    /// Detector name (from the pipeline).
    fn name(&self) -> &str;

    /// Feature this detector scores.
    fn feature(&self) -> &str;

    /// Score a complete sample and learn from it (unless it fires: an attack must not become
    /// the baseline).
    fn observe(&mut self, key: &str, value: f64) -> Option<Firing>;

    /// Score a provisional value without learning.
    fn peek(&self, key: &str, value: f64) -> Option<Firing>;

    /// Forget a key (it went idle).
    fn forget(&mut self, key: &str);

    /// Keys with state.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Build the detector a pipeline declares. Configs are validated by `warden-config`.
pub fn build(config: &DetectorConfig) -> Box<dyn Detector> {
    match config {
        DetectorConfig::EwmaZscore(c) => Box::new(ewma_zscore::EwmaZscore::new(c.clone())),
    }
}
