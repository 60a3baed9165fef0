//! The model families, each fitted on scaled rows and scored on one scaled vector (higher is
//! more anomalous).

pub mod gmm;
pub mod iforest;
pub mod kmeans;
pub mod ocsvm;

use serde::{Deserialize, Serialize};

pub use gmm::GmmModel;
pub use iforest::IsolationForestModel;
pub use kmeans::KmeansModel;
pub use ocsvm::OneClassSvmModel;

/// Which family a model is (the pipeline detector `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Kmeans,
    Gmm,
    OneClassSvm,
    IsolationForest,
}

impl ModelKind {
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Kmeans,
        ModelKind::Gmm,
        ModelKind::OneClassSvm,
        ModelKind::IsolationForest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Kmeans => "kmeans",
            ModelKind::Gmm => "gmm",
            ModelKind::OneClassSvm => "one_class_svm",
            ModelKind::IsolationForest => "isolation_forest",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What the score means, for explanations.
    pub fn score_unit(self) -> &'static str {
        match self {
            ModelKind::Kmeans => "distance to the nearest centroid",
            ModelKind::Gmm => "negative log-likelihood",
            ModelKind::OneClassSvm => "SVM margin outside the benign support",
            ModelKind::IsolationForest => "isolation score",
        }
    }
}

/// A fitted model of any family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fitted {
    Kmeans(KmeansModel),
    Gmm(GmmModel),
    OneClassSvm(OneClassSvmModel),
    IsolationForest(IsolationForestModel),
}

impl Fitted {
    pub fn kind(&self) -> ModelKind {
        match self {
            Fitted::Kmeans(_) => ModelKind::Kmeans,
            Fitted::Gmm(_) => ModelKind::Gmm,
            Fitted::OneClassSvm(_) => ModelKind::OneClassSvm,
            Fitted::IsolationForest(_) => ModelKind::IsolationForest,
        }
    }

    /// Anomaly score of a scaled vector (higher is more anomalous).
    #[inline]
    pub fn score(&self, x: &[f64]) -> f64 {
        match self {
            Fitted::Kmeans(m) => m.score(x),
            Fitted::Gmm(m) => m.score(x),
            Fitted::OneClassSvm(m) => m.score(x),
            Fitted::IsolationForest(m) => m.score(x),
        }
    }

    /// Per-feature contribution to the score of scaled vector `x` (non-negative; only the
    /// ranking and shares are meaningful).
    pub fn contributions(&self, x: &[f64], out: &mut [f64]) {
        match self {
            Fitted::Kmeans(m) => m.contributions(x, out),
            Fitted::Gmm(m) => m.contributions(x, out),
            Fitted::OneClassSvm(_) => {
                for (o, v) in out.iter_mut().zip(x) {
                    *o = v * v;
                }
            }
            Fitted::IsolationForest(m) => m.contributions(x, out),
        }
    }

    /// Validate loaded parameters against the feature count (and prepare caches).
    pub(crate) fn prepare(&mut self, dims: usize) -> Result<(), String> {
        match self {
            Fitted::Kmeans(m) => m.check(dims),
            Fitted::Gmm(m) => m.prepare(dims),
            Fitted::OneClassSvm(m) => m.check(dims),
            Fitted::IsolationForest(m) => m.prepare(dims),
        }
    }
}
