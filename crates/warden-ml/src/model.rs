//! The model file: a versioned JSON envelope around a body and the SHA-256 of the body's exact
//! bytes. `{"format":"warden-model","version":1,"sha256":"…","body":{…}}`. The body records
//! the features (names and order), the window they are computed over, the fitted scaler and
//! model per device type, the calibrated threshold with its target and achieved
//! false-positive rates, the training window and row counts, and the library versions.
//! Loading refuses another format or version, a hash that does not match (a truncated or
//! hand-edited file) and parameters that do not fit the feature count.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::algo::{Fitted, ModelKind};
use crate::scaler::RobustScaler;
use crate::{MAX_FEATURES, MlError};

/// `format` of a model file.
pub const FORMAT: &str = "warden-model";
/// The body layout this build reads and writes.
pub const VERSION: u32 = 1;

/// Calibration of one group's threshold on held-back benign rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Score at and above which a vector fires.
    pub threshold: f64,
    /// The false-positive rate the threshold was set for.
    pub target_fpr: f64,
    /// The share of held-back benign rows at or above the threshold.
    pub achieved_fpr: f64,
    /// Rows fitted on, and held back for calibration.
    pub train_rows: usize,
    pub holdout_rows: usize,
    /// Median and 99th percentile of held-back benign scores.
    pub score_p50: f64,
    pub score_p99: f64,
}

/// The model of one device type (or of every identity, `device_type = null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupModel {
    pub device_type: Option<String>,
    pub scaler: RobustScaler,
    pub model: Fitted,
    pub calibration: Calibration,
}

/// Where the training rows came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Pipeline and detector the model was trained for.
    pub pipeline: String,
    pub detector: String,
    /// Event time of the first and last archived event read, ns since the epoch.
    pub from_ns: i64,
    pub to_ns: i64,
    /// Events replayed and complete window samples (rows) they produced.
    pub events: u64,
    pub rows: usize,
    /// Rows skipped: windows not yet full, or a feature without a value.
    pub rows_skipped: usize,
    pub seed: u64,
    /// Seconds since the epoch when training finished.
    pub trained_at_s: u64,
}

/// Everything the hash covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    pub kind: ModelKind,
    /// Input features, in the order vectors are built.
    pub features: Vec<String>,
    /// The pipeline window the features are computed over.
    pub window: String,
    pub target_fpr: f64,
    pub training: TrainingInfo,
    /// Crate versions that fitted the model.
    pub libraries: BTreeMap<String, String>,
    /// The global model first (`device_type = null`), then one per device type.
    pub groups: Vec<GroupModel>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    format: String,
    version: u32,
    sha256: String,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// A loaded, validated model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub body: ModelBody,
    /// SHA-256 of the body (hex).
    pub sha256: String,
}

/// One feature's part in a firing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    pub feature: String,
    /// The raw feature value.
    pub value: f64,
    /// Its robust z: (log1p(value) − benign median) / benign IQR.
    pub z: f64,
    /// Its share of the model's per-feature contributions (0..1).
    pub share: f64,
}

pub fn library_versions() -> BTreeMap<String, String> {
    [
        ("warden-ml", env!("CARGO_PKG_VERSION")),
        ("linfa", "0.8"),
        ("linfa-clustering", "0.8"),
        ("linfa-svm", "0.8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Model {
    pub fn new(body: ModelBody) -> Result<Self, MlError> {
        let text = serde_json::to_string(&body).map_err(|e| MlError::Format(e.to_string()))?;
        Self::from_body_text(&text)
    }

    fn from_body_text(text: &str) -> Result<Self, MlError> {
        let mut body: ModelBody =
            serde_json::from_str(text).map_err(|e| MlError::Format(format!("body: {e}")))?;
        body.prepare()?;
        Ok(Self {
            body,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        })
    }

    /// The file text.
    pub fn to_json(&self) -> Result<String, MlError> {
        let body = serde_json::to_string(&self.body).map_err(|e| MlError::Format(e.to_string()))?;
        let sha256 = hex::encode(Sha256::digest(body.as_bytes()));
        Ok(format!(
            "{{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"sha256\":\"{sha256}\",\"body\":{body}}}\n"
        ))
    }

    /// Parse and validate a model file's text.
    pub fn from_json(text: &str) -> Result<Self, MlError> {
        let env: Envelope = serde_json::from_str(text)
            .map_err(|e| MlError::Format(format!("not a Warden model file: {e}")))?;
        if env.format != FORMAT {
            return Err(MlError::Format(format!(
                "format is `{}`, expected `{FORMAT}`",
                env.format
            )));
        }
        if env.version != VERSION {
            return Err(MlError::Version {
                found: env.version,
                supported: VERSION,
            });
        }
        let actual = hex::encode(Sha256::digest(env.body.get().as_bytes()));
        if !actual.eq_ignore_ascii_case(&env.sha256) {
            return Err(MlError::Hash {
                recorded: env.sha256,
                actual,
            });
        }
        Self::from_body_text(env.body.get())
    }

    pub fn load(path: &Path) -> Result<Self, MlError> {
        let text = std::fs::read_to_string(path).map_err(|e| MlError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_json(&text).map_err(|e| e.in_file(path))
    }

    pub fn save(&self, path: &Path) -> Result<(), MlError> {
        let io = |e: std::io::Error| MlError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Write then rename: a serving processor never reads a half-written model.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json()?).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Refuse a model whose features are not exactly `features` (names and order).
    pub fn check_features(&self, features: &[&str]) -> Result<(), MlError> {
        if self
            .body
            .features
            .iter()
            .map(String::as_str)
            .eq(features.iter().copied())
        {
            Ok(())
        } else {
            Err(MlError::Features {
                model: self.body.features.clone(),
                pipeline: features.iter().map(|s| s.to_string()).collect(),
            })
        }
    }

    pub fn kind(&self) -> ModelKind {
        self.body.kind
    }

    /// The model for a device type: its own if trained, else the global one.
    #[inline]
    pub fn group(&self, device_type: &str) -> &GroupModel {
        let own = (!device_type.is_empty())
            .then(|| {
                self.body
                    .groups
                    .iter()
                    .find(|g| g.device_type.as_deref() == Some(device_type))
            })
            .flatten();
        // `prepare` guarantees a global group first.
        own.unwrap_or(&self.body.groups[0])
    }

    /// Whether the model has groups per device type.
    pub fn per_device_type(&self) -> bool {
        self.body.groups.len() > 1
    }
}

impl GroupModel {
    /// Score raw feature values; `scaled` is scratch of the feature count. NaN when a value
    /// is missing.
    #[inline]
    pub fn score(&self, raw: &[f64], scaled: &mut [f64]) -> f64 {
        if raw.iter().any(|v| !v.is_finite()) {
            return f64::NAN;
        }
        self.scaler.apply(raw, scaled);
        self.model.score(scaled)
    }

    /// The `top` features that contributed most to the score of `raw`, largest first.
    pub fn explain(&self, features: &[String], raw: &[f64], top: usize) -> Vec<Contribution> {
        let d = features.len().min(raw.len());
        let mut z = vec![0.0; d];
        self.scaler.apply(&raw[..d], &mut z);
        let mut c = vec![0.0; d];
        self.model.contributions(&z, &mut c);
        let total: f64 = c.iter().filter(|v| v.is_finite()).sum();
        let mut out: Vec<Contribution> = (0..d)
            .map(|j| Contribution {
                feature: features[j].clone(),
                value: raw[j],
                z: z[j],
                share: if total > 0.0 { c[j] / total } else { 0.0 },
            })
            .collect();
        out.sort_by(|a, b| b.share.total_cmp(&a.share));
        out.truncate(top);
        out
    }
}

impl ModelBody {
    fn prepare(&mut self) -> Result<(), MlError> {
        let d = self.features.len();
        let bad = |why: String| Err(MlError::Format(why));
        if d == 0 || d > MAX_FEATURES {
            return bad(format!("a model has 1 to {MAX_FEATURES} features, not {d}"));
        }
        let Some(first) = self.groups.first() else {
            return bad("the model has no group".into());
        };
        if first.device_type.is_some() {
            return bad("the first group must be the global one (device_type null)".into());
        }
        for g in &mut self.groups {
            let at = g.device_type.as_deref().unwrap_or("(all)").to_string();
            if g.model.kind() != self.kind {
                return bad(format!(
                    "group {at}: a {} model in a {} file",
                    g.model.kind().as_str(),
                    self.kind.as_str()
                ));
            }
            g.scaler
                .check(d)
                .map_err(|e| MlError::Format(format!("group {at}: {e}")))?;
            g.model
                .prepare(d)
                .map_err(|e| MlError::Format(format!("group {at}: {e}")))?;
            if !g.calibration.threshold.is_finite() {
                return bad(format!("group {at}: the threshold is not a number"));
            }
        }
        Ok(())
    }
}
