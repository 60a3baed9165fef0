//! `type = "kmeans" | "gmm" | "one_class_svm" | "isolation_forest"`: a model trained by
//! `warden train` scores a key's feature vector over one window as a whole.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DetectorAction, default_weight};
use crate::ConfigError;
use crate::pipeline::Mode;

/// Features an ML detector may read at most.
pub const MAX_ML_FEATURES: usize = 16;

/// An ML detector (k-means, Gaussian mixture, one-class SVM or isolation forest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// The model file `warden train` wrote (a relative path is from the processor's working
    /// directory). Its kind must be this detector's `type`, its features exactly `features`.
    /// A changed file is validated and swapped in while the processor runs; a bad one is
    /// refused and the loaded model keeps serving.
    pub model: String,
    /// Input features, in the model's order, all over one window (complete samples of each
    /// key of that window are scored).
    pub features: Vec<String>,
    /// Complete samples above the model's threshold before the detector fires (1: at once).
    /// A leaky count: each sample above adds one, each below takes one off.
    #[serde(default = "one")]
    pub sustain_samples: u32,
    /// Multiple of the model's calibrated threshold used (1: as calibrated; higher trades
    /// recall for fewer false positives).
    #[serde(default = "one_f")]
    pub threshold_factor: f64,
    /// Features named in an explanation (the largest contributions first).
    #[serde(default = "three")]
    pub explain_top: u32,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn one() -> u32 {
    1
}
fn one_f() -> f64 {
    1.0
}
fn three() -> u32 {
    3
}

impl MlConfig {
    pub(super) fn check(&self, bad: &mut dyn FnMut(&str, &str)) {
        if self.model.trim().is_empty() {
            bad("model", "must name a model file (see `warden train`)");
        }
        if self.features.is_empty() || self.features.len() > MAX_ML_FEATURES {
            bad("features", "list 1 to 16 features");
        }
        let mut seen = std::collections::HashSet::new();
        if self.features.iter().any(|f| !seen.insert(f)) {
            bad("features", "must not repeat a feature");
        }
        if self.sustain_samples == 0 {
            bad("sustain_samples", "must be at least 1");
        }
        if !(self.threshold_factor.is_finite() && self.threshold_factor > 0.0) {
            bad("threshold_factor", "must be a positive number");
        }
        if !(1..=16).contains(&self.explain_top) {
            bad("explain_top", "must be in 1..=16");
        }
    }

    /// Errors as [`ConfigError`]s under `at`.
    pub fn errors(&self, at: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        self.check(&mut |k, why| errs.push(ConfigError::new(format!("{at}.{k}"), why)));
        errs
    }
}
