//! One-class SVM (linfa-svm, ν formulation, Gaussian kernel): the score is
//! `ρ − Σ αᵢ K(svᵢ, x)`, positive outside the learned support of benign traffic. The kernel
//! matrix is dense (rows²), so training uses at most [`MAX_ROWS`] rows. Each feature
//! contributes the square of its robust z (the kernel has no per-feature decomposition).

use linfa::prelude::*;
use linfa_svm::Svm;
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::MlError;

/// Rows the SVM is fitted on at most (a random subset of the training rows).
pub const MAX_ROWS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneClassSvmModel {
    /// ν: upper bound on the share of training rows outside the support.
    pub nu: f64,
    /// Kernel width: `K(a, b) = exp(−|a − b|² / eps)`.
    pub eps: f64,
    pub rho: f64,
    pub alpha: Vec<f64>,
    pub support: Vec<Vec<f64>>,
}

impl OneClassSvmModel {
    pub fn fit(x: &Array2<f64>, nu: f64, eps: f64) -> Result<Self, MlError> {
        if !(nu > 0.0 && nu <= 1.0 && eps.is_finite() && eps > 0.0) {
            return Err(MlError::Fit(
                "one-class SVM: nu must be in (0, 1], eps positive".into(),
            ));
        }
        let data = DatasetBase::new(x.clone(), Array2::<()>::from_elem((x.nrows(), 1), ()));
        let model: Svm<f64, bool> = Svm::<f64, Pr>::params()
            .nu_weight(nu)
            .gaussian_kernel(eps)
            .fit(&data)
            .map_err(|e| MlError::Fit(format!("one-class SVM: {e}")))?;
        let tiny = 100.0 * f64::EPSILON;
        let keep: Vec<usize> = (0..model.alpha.len())
            .filter(|i| model.alpha[*i].abs() > tiny)
            .collect();
        Ok(Self {
            nu,
            eps,
            rho: model.rho,
            alpha: keep.iter().map(|i| model.alpha[*i]).collect(),
            support: x
                .select(Axis(0), &keep)
                .outer_iter()
                .map(|r| r.to_vec())
                .collect(),
        })
    }

    pub fn score(&self, x: &[f64]) -> f64 {
        let sum: f64 = self
            .support
            .iter()
            .zip(&self.alpha)
            .map(|(sv, a)| {
                let d2: f64 = sv.iter().zip(x).map(|(p, q)| (p - q) * (p - q)).sum();
                a * (-d2 / self.eps).exp()
            })
            .sum();
        self.rho - sum
    }

    pub(crate) fn check(&self, dims: usize) -> Result<(), String> {
        if self.support.is_empty() || self.support.len() != self.alpha.len() {
            return Err("one-class SVM needs one alpha per support vector".into());
        }
        if self.support.iter().any(|s| s.len() != dims) {
            return Err(format!(
                "one-class SVM support vectors must have {dims} features"
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0 && self.rho.is_finite()) {
            return Err("one-class SVM eps and rho must be finite (eps positive)".into());
        }
        Ok(())
    }
}
