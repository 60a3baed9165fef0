//! Warden's ML detectors: models fitted on benign traffic that score a key's window feature
//! vector as a whole — the multivariate deviations single-feature statistics miss (a rate,
//! a byte count, a route mix each plausible alone, not together).
//!
//! - [`scaler`]: the robust scaler saved with every model (log1p, median / IQR).
//! - [`algo`]: k-means and Gaussian mixture (linfa-clustering), one-class SVM (linfa-svm),
//!   isolation forest (our own).
//! - [`model`]: the versioned, hashed model file, per-device-type groups, explanations.
//! - [`train`]: fitting and calibration of the threshold for a target false-positive rate.

pub mod algo;
pub mod model;
pub mod scaler;
pub mod train;

use std::path::Path;

pub use algo::{Fitted, ModelKind};
pub use model::{Calibration, Contribution, GroupModel, Model, ModelBody, TrainingInfo};
pub use train::{Row, TrainOptions, train};

/// Features a model may have at most.
pub const MAX_FEATURES: usize = 16;

/// Errors training, loading or validating a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MlError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("invalid model file: {0}")]
    Format(String),
    #[error(
        "model file version {found} is not supported (this build reads version {supported}); retrain with `warden train`"
    )]
    Version { found: u32, supported: u32 },
    #[error(
        "model file hash mismatch (recorded {recorded}, content {actual}): the file was truncated or edited"
    )]
    Hash { recorded: String, actual: String },
    #[error(
        "model features {model:?} do not match the pipeline's {pipeline:?} (names and order must be equal; retrain the model)"
    )]
    Features {
        model: Vec<String>,
        pipeline: Vec<String>,
    },
    #[error(
        "{rows} training rows, at least {need} needed (more traffic, a longer archive, or a higher --target-fpr)"
    )]
    TooSmall { rows: usize, need: usize },
    #[error("training row {row}: feature `{feature}` is not a finite number")]
    NonFinite { row: usize, feature: String },
    #[error("fitting: {0}")]
    Fit(String),
}

impl MlError {
    /// Prefix a file's path to a format error.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            MlError::Io { .. } => self,
            other => MlError::Io {
                path: path.display().to_string(),
                reason: other.to_string(),
            },
        }
    }
}
