use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Action, Subject, Versioned};

/// A detector fired (topic `warden.alerts`, key = subject key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Schema version of this object.
    #[serde(default = "crate::default_version")]
    pub v: u32,
    /// Unique id of the alert.
    pub id: String,
    /// When the detector fired, nanoseconds since the Unix epoch (processing time).
    pub ts: i64,
    /// Pipeline that produced the alert.
    pub pipeline: String,
    /// Detector that fired.
    pub detector: String,
    pub subject: Subject,
    /// Detector score (for `ewma_zscore`, the z-score).
    pub score: f64,
    pub severity: Severity,
    /// One-line explanation.
    pub message: String,
    pub evidence: Evidence,
    /// Action the decision policy took (`null` in shadow mode or when suppressed).
    pub action: Option<Action>,
    /// Id of the decision published with this alert, if any.
    pub decision_id: Option<String>,
}

impl Versioned for Alert {
    fn version(&self) -> u32 {
        self.v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// Why a detector fired: the feature values it saw, its baseline and its threshold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Feature values at firing time, by feature name.
    pub features: BTreeMap<String, f64>,
    /// Baseline statistics (e.g. `mean`, `std`), by name.
    pub baseline: BTreeMap<String, f64>,
    /// Score threshold the detector used.
    pub threshold: f64,
    /// Window the features were computed over.
    pub window: String,
    /// Event time of the window end, nanoseconds since the Unix epoch.
    pub window_end: i64,
}
