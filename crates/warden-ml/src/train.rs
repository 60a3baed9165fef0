//! Fitting and calibration: rows are shuffled (seeded), a share is held back, the scaler and
//! model are fitted on the rest, and the threshold is set on the held-back benign rows so that
//! at most `target_fpr` of them score above it.

use std::collections::BTreeMap;

use ndarray::Array2;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::algo::{
    Fitted, GmmModel, IsolationForestModel, KmeansModel, ModelKind, OneClassSvmModel,
};
use crate::model::{Calibration, GroupModel, Model, ModelBody, TrainingInfo, library_versions};
use crate::scaler::{RobustScaler, quantile_sorted};
use crate::{MAX_FEATURES, MlError};

/// One training row: a complete window sample of one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The key's device type ("" when unknown).
    pub device_type: String,
    pub values: Vec<f64>,
}

/// How to fit.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub kind: ModelKind,
    pub features: Vec<String>,
    pub window: String,
    /// Share of held-back benign rows allowed above the threshold.
    pub target_fpr: f64,
    pub seed: u64,
    /// Share of rows held back for calibration.
    pub holdout: f64,
    /// Also fit one model per device type with at least `min_rows` rows.
    pub per_device_type: bool,
    /// Rows a model needs at least (fitted plus held back).
    pub min_rows: usize,
    /// Rows fitted on at most (a seeded random subset beyond; the SVM uses fewer still).
    pub max_fit_rows: usize,
    pub training: TrainingInfo,
}

impl TrainOptions {
    pub fn new(kind: ModelKind, features: Vec<String>, window: String) -> Self {
        Self {
            kind,
            features,
            window,
            target_fpr: 0.001,
            seed: 1,
            holdout: 0.3,
            per_device_type: true,
            min_rows: 200,
            max_fit_rows: 20_000,
            training: TrainingInfo::default(),
        }
    }
}

/// Fit and calibrate a model; `progress` is told each group as it starts.
pub fn train(
    rows: &[Row],
    opts: &TrainOptions,
    mut progress: impl FnMut(&str),
) -> Result<Model, MlError> {
    let d = opts.features.len();
    if d == 0 || d > MAX_FEATURES {
        return Err(MlError::Fit(format!(
            "a model has 1 to {MAX_FEATURES} features, not {d}"
        )));
    }
    if !(opts.target_fpr > 0.0 && opts.target_fpr < 0.5) {
        return Err(MlError::Fit("target FPR must be in (0, 0.5)".into()));
    }
    for (i, r) in rows.iter().enumerate() {
        if r.values.len() != d {
            return Err(MlError::Features {
                model: opts.features.clone(),
                pipeline: vec![format!("row {i} has {} values", r.values.len())],
            });
        }
        if let Some(j) = r.values.iter().position(|v| !v.is_finite()) {
            return Err(MlError::NonFinite {
                row: i,
                feature: opts.features[j].clone(),
            });
        }
    }
    let need = opts
        .min_rows
        .max((1.0 / opts.target_fpr).ceil() as usize * 2);
    if rows.len() < need {
        return Err(MlError::TooSmall {
            rows: rows.len(),
            need,
        });
    }
    progress("all device types");
    let mut groups = vec![fit_group(None, rows.iter().collect(), opts)?];
    if opts.per_device_type {
        let mut by_type: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
        for r in rows.iter().filter(|r| !r.device_type.is_empty()) {
            by_type.entry(r.device_type.as_str()).or_default().push(r);
        }
        if by_type.len() > 1 {
            for (t, rs) in by_type {
                if rs.len() >= need {
                    progress(t);
                    groups.push(fit_group(Some(t.to_string()), rs, opts)?);
                }
            }
        }
    }
    Model::new(ModelBody {
        kind: opts.kind,
        features: opts.features.clone(),
        window: opts.window.clone(),
        target_fpr: opts.target_fpr,
        training: opts.training.clone(),
        libraries: library_versions(),
        groups,
    })
}

fn fit_group(
    device_type: Option<String>,
    mut rows: Vec<&Row>,
    opts: &TrainOptions,
) -> Result<GroupModel, MlError> {
    let d = opts.features.len();
    let seed = opts.seed ^ device_type.as_deref().map_or(0, hash_str);
    let mut rng = SmallRng::seed_from_u64(seed);
    // Shuffle (Fisher–Yates), then hold back a share.
    for i in (1..rows.len()).rev() {
        rows.swap(i, rng.random_range(0..=i));
    }
    let n_hold = ((rows.len() as f64) * opts.holdout).round() as usize;
    let (hold, fit) = rows.split_at(n_hold.clamp(1, rows.len() - 1));
    let fit = &fit[..fit.len().min(opts.max_fit_rows)];
    let fit_vals: Vec<Vec<f64>> = fit.iter().map(|r| r.values.clone()).collect();
    let scaler = RobustScaler::fit(&fit_vals, d)?;
    let scale = |rs: &[&Row]| -> Result<Array2<f64>, MlError> {
        let mut flat = vec![0.0; rs.len() * d];
        for (r, out) in rs.iter().zip(flat.chunks_mut(d)) {
            scaler.apply(&r.values, out);
        }
        Array2::from_shape_vec((rs.len(), d), flat).map_err(|e| MlError::Fit(e.to_string()))
    };
    let x = scale(fit)?;
    let model = match opts.kind {
        ModelKind::Kmeans => Fitted::Kmeans(KmeansModel::fit(&x, 8, seed)?),
        ModelKind::Gmm => Fitted::Gmm(GmmModel::fit(&x, 4, seed)?),
        ModelKind::OneClassSvm => {
            let m = x.nrows().min(crate::algo::ocsvm::MAX_ROWS);
            let sub = x.select(ndarray::Axis(0), &(0..m).collect::<Vec<_>>());
            // ν a little above the target: the threshold, not ν, sets the FPR.
            let nu = (opts.target_fpr * 10.0).clamp(0.01, 0.2);
            Fitted::OneClassSvm(OneClassSvmModel::fit(&sub, nu, 2.0 * d as f64)?)
        }
        ModelKind::IsolationForest => {
            Fitted::IsolationForest(IsolationForestModel::fit(&x, 100, 256, seed)?)
        }
    };
    let xh = scale(hold)?;
    let mut scores: Vec<f64> = xh
        .outer_iter()
        .map(|r| r.as_slice().map_or(f64::NAN, |s| model.score(s)))
        .collect();
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(MlError::Fit(format!(
            "{} scored a held-back row as NaN",
            opts.kind.as_str()
        )));
    }
    let calibration = calibrate(&mut scores, opts.target_fpr, fit.len());
    Ok(GroupModel {
        device_type,
        scaler,
        model,
        calibration,
    })
}

/// The threshold that at most `target` of `scores` exceed (a vector fires when its score is
/// above it).
pub fn calibrate(scores: &mut [f64], target: f64, train_rows: usize) -> Calibration {
    scores.sort_by(|a, b| b.total_cmp(a));
    let n = scores.len();
    let allowed = ((n as f64) * target).floor() as usize;
    let threshold = scores
        .get(allowed.min(n.saturating_sub(1)))
        .copied()
        .unwrap_or(f64::INFINITY);
    let above = scores.iter().filter(|s| **s > threshold).count();
    let mut asc = scores.to_vec();
    asc.reverse();
    Calibration {
        threshold,
        target_fpr: target,
        achieved_fpr: if n == 0 { 0.0 } else { above as f64 / n as f64 },
        train_rows,
        holdout_rows: n,
        score_p50: quantile_sorted(&asc, 0.5),
        score_p99: quantile_sorted(&asc, 0.99),
    }
}

fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
