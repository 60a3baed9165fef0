//! How much event time each detector needs before it judges a key: the samples it learns
//! from first (`warmup_samples` × the window's slide), or its baseline period (`novelty`).
//! Detectors with nothing to learn per key (thresholds, peer percentiles, trained models)
//! need none.

use serde::Serialize;
use warden_config::{DetectorConfig, PipelineConfig};

/// One detector's warm-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetectorWarmup {
    pub detector: String,
    pub window: String,
    /// Event time a key needs before this detector can fire on it, milliseconds.
    pub needs_ms: u64,
}

/// The warm-up of every detector of `pipeline` that has one, longest first.
pub fn warmups(pipeline: &PipelineConfig) -> Vec<DetectorWarmup> {
    let mut out: Vec<DetectorWarmup> = pipeline
        .detector
        .iter()
        .filter_map(|d| {
            let w = pipeline.detector_window(d)?;
            let samples = |n: u32| u64::from(n).saturating_mul(w.slide_ms);
            let needs_ms = match d {
                DetectorConfig::EwmaZscore(c) => samples(c.warmup_samples),
                DetectorConfig::Mad(c) => samples(c.warmup_samples),
                DetectorConfig::Cusum(c) => samples(c.warmup_samples),
                DetectorConfig::Cardinality(c) => samples(c.warmup_samples),
                DetectorConfig::Cohort(c) => samples(c.warmup_samples),
                DetectorConfig::Novelty(c) => c.baseline_ms,
                _ => 0,
            };
            (needs_ms > 0).then(|| DetectorWarmup {
                detector: d.name().to_string(),
                window: w.name.clone(),
                needs_ms,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.needs_ms
            .cmp(&a.needs_ms)
            .then(a.detector.cmp(&b.detector))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pipeline_needs_warm_up_and_says_which_detector_longest() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../pipelines/default.toml"
        ))
        .expect("default pipeline");
        let p = PipelineConfig::from_toml(&text).expect("valid");
        let w = warmups(&p);
        assert!(!w.is_empty());
        assert!(w.windows(2).all(|p| p[0].needs_ms >= p[1].needs_ms));
        let burst = w
            .iter()
            .find(|d| d.detector == "burst")
            .expect("burst warms up");
        assert_eq!(burst.window, "identity_1s");
        assert!(burst.needs_ms > 0);
    }
}
