//! Gaussian mixture (linfa-clustering, full covariances): the score is the negative
//! log-likelihood of a scaled vector; each feature contributes its squared standardised
//! difference from the mean of the component most likely to have produced the vector.

use linfa::prelude::*;
use linfa_clustering::GaussianMixtureModel;
use ndarray::Array2;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::MlError;

const LN_2PI: f64 = 1.837_877_066_409_345_3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GmmModel {
    pub weights: Vec<f64>,
    pub means: Vec<Vec<f64>>,
    /// Full covariance matrices, row-major (`dims × dims` each).
    pub covariances: Vec<Vec<f64>>,
    /// Lower Cholesky factors of the covariances and each component's constant term,
    /// `ln w − ½ (d ln 2π + ln |Σ|)`, computed at load.
    #[serde(skip)]
    prepared: Vec<(Vec<f64>, f64)>,
}

impl GmmModel {
    /// Fit `k` components; when EM breaks down on the data (a component collapsing onto a
    /// few identical rows turns its covariance, then the likelihoods, into NaN — it happens
    /// with small device-type groups, e.g. a fleet's newcomers), retry with another seed,
    /// a stronger covariance floor, then fewer components, down to one Gaussian. The
    /// components kept are the model's (`weights.len()`).
    pub fn fit(x: &Array2<f64>, k: usize, seed: u64) -> Result<Self, MlError> {
        let k = k.clamp(1, x.nrows().max(1));
        let data = DatasetBase::from(x.clone());
        let mut first_error = None;
        for kk in (1..=k).rev() {
            for (attempt, reg) in [(0u64, 1e-3), (1, 1e-3), (2, 1e-2)] {
                match Self::fit_once(&data, kk, seed.wrapping_add(attempt), reg) {
                    Ok(m) => return Ok(m),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        // EM cannot even start (k-means++ seeding on rows that are all alike has nothing to
        // weigh): one Gaussian in closed form, the mean and covariance of the rows.
        let mut m = Self::single_gaussian(x, 1e-2);
        match m.prepare(x.ncols()) {
            Ok(()) => Ok(m),
            Err(e) => Err(first_error.unwrap_or(MlError::Fit(e))),
        }
    }

    /// One component: the rows' mean and covariance (+ `reg` on the diagonal).
    fn single_gaussian(x: &Array2<f64>, reg: f64) -> Self {
        let (n, d) = (x.nrows().max(1) as f64, x.ncols());
        let mean: Vec<f64> = (0..d).map(|j| x.column(j).sum() / n).collect();
        let mut cov = vec![0.0; d * d];
        for row in x.outer_iter() {
            for i in 0..d {
                for j in 0..d {
                    cov[i * d + j] += (row[i] - mean[i]) * (row[j] - mean[j]) / n;
                }
            }
        }
        for i in 0..d {
            cov[i * d + i] += reg;
        }
        Self {
            weights: vec![1.0],
            means: vec![mean],
            covariances: vec![cov],
            prepared: Vec::new(),
        }
    }

    fn fit_once(
        data: &DatasetBase<Array2<f64>, ndarray::Array1<()>>,
        k: usize,
        seed: u64,
        reg: f64,
    ) -> Result<Self, MlError> {
        let x = data.records();
        let model = GaussianMixtureModel::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
            .n_runs(2)
            .max_n_iterations(200)
            .tolerance(1e-3)
            // Regularises near-constant features (a feature that never varies in training).
            .reg_covariance(reg)
            .fit(data)
            .map_err(|e| MlError::Fit(format!("Gaussian mixture: {e}")))?;
        let d = x.ncols();
        let mut m = Self {
            weights: model.weights().to_vec(),
            means: model.means().outer_iter().map(|r| r.to_vec()).collect(),
            covariances: model
                .covariances()
                .outer_iter()
                .map(|c| c.iter().copied().collect())
                .collect(),
            prepared: Vec::new(),
        };
        m.prepare(d).map_err(MlError::Fit)?;
        Ok(m)
    }

    /// Check the parameters and factor the covariances.
    pub(crate) fn prepare(&mut self, dims: usize) -> Result<(), String> {
        let k = self.weights.len();
        if k == 0 || self.means.len() != k || self.covariances.len() != k {
            return Err("Gaussian mixture needs as many weights, means and covariances".into());
        }
        if self.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err("Gaussian mixture weights must be finite and non-negative".into());
        }
        self.prepared.clear();
        for ((mean, cov), w) in self.means.iter().zip(&self.covariances).zip(&self.weights) {
            if mean.len() != dims || cov.len() != dims * dims {
                return Err(format!(
                    "Gaussian mixture components must have {dims} features"
                ));
            }
            let l = cholesky(cov, dims)
                .ok_or("a Gaussian mixture covariance is not positive definite")?;
            let logdet = 2.0 * (0..dims).map(|i| l[i * dims + i].ln()).sum::<f64>();
            self.prepared
                .push((l, w.ln() - 0.5 * (dims as f64 * LN_2PI + logdet)));
        }
        Ok(())
    }

    /// Log-density of component `k` plus its log-weight at `x`.
    #[inline]
    fn component_log(&self, k: usize, x: &[f64]) -> f64 {
        let (Some(mean), Some((l, constant))) = (self.means.get(k), self.prepared.get(k)) else {
            return f64::NAN;
        };
        let d = x.len();
        let mut y = [0.0f64; 32];
        // Solve L y = x − μ; the Mahalanobis distance is |y|².
        let mut maha = 0.0;
        for i in 0..d.min(y.len()) {
            let mut s = x[i] - mean[i];
            for (j, yj) in y.iter().enumerate().take(i) {
                s -= l[i * d + j] * yj;
            }
            y[i] = s / l[i * d + i];
            maha += y[i] * y[i];
        }
        constant - 0.5 * maha
    }

    /// Negative log-likelihood, by a streaming log-sum-exp over the components (no
    /// allocation).
    pub fn score(&self, x: &[f64]) -> f64 {
        let mut max = f64::NEG_INFINITY;
        let mut sum = 0.0;
        for k in 0..self.weights.len() {
            let v = self.component_log(k, x);
            if v.is_nan() {
                return f64::NAN;
            }
            if v == f64::NEG_INFINITY {
                // A component of weight 0 adds nothing.
                continue;
            }
            if v > max {
                sum = sum * (max - v).exp() + 1.0;
                max = v;
            } else {
                sum += (v - max).exp();
            }
        }
        if !max.is_finite() {
            return f64::NAN;
        }
        -(max + sum.ln())
    }

    pub fn contributions(&self, x: &[f64], out: &mut [f64]) {
        let d = x.len();
        let logs: Vec<f64> = (0..self.weights.len())
            .map(|k| self.component_log(k, x))
            .collect();
        let Some((k, _)) = logs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) else {
            return;
        };
        for (j, o) in out.iter_mut().enumerate().take(d) {
            let var = self.covariances[k][j * d + j].max(1e-12);
            let diff = x[j] - self.means[k][j];
            *o = diff * diff / var;
        }
    }
}

/// Lower Cholesky factor of a symmetric positive-definite row-major matrix.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    if n > 32 || a.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_all_alike_still_fit_a_gaussian() {
        // A small device-type group whose samples are all the same vector (a fleet's few
        // newcomers of a type): EM has nothing to seed on; one Gaussian is fitted instead.
        let x = Array2::from_shape_vec((40, 2), vec![0.5; 80]).expect("shape");
        let m = GmmModel::fit(&x, 4, 7).expect("fits");
        assert!(m.score(&[0.5, 0.5]).is_finite());
        assert!(m.score(&[3.0, 3.0]) > m.score(&[0.5, 0.5]));
        // Ordinary data keeps its components.
        let y = Array2::from_shape_fn((400, 2), |(i, j)| {
            let c = if i % 2 == 0 { -2.0 } else { 2.0 };
            c + 0.1 * (((i * 7 + j * 13) % 17) as f64 - 8.0) / 8.0
        });
        let m = GmmModel::fit(&y, 2, 7).expect("fits");
        assert_eq!(m.weights.len(), 2);
    }

    /// The streaming score is the negative log of the mixture density, computed directly.
    #[test]
    fn the_score_is_the_mixture_negative_log_likelihood() {
        let mut m = GmmModel {
            weights: vec![0.3, 0.7, 0.0],
            means: vec![vec![0.0, 0.0], vec![2.0, -1.0], vec![9.0, 9.0]],
            covariances: vec![
                vec![1.0, 0.2, 0.2, 0.5],
                vec![0.4, 0.0, 0.0, 2.0],
                vec![1.0, 0.0, 0.0, 1.0],
            ],
            prepared: Vec::new(),
        };
        m.prepare(2).expect("valid");
        let density = |x: [f64; 2]| -> f64 {
            let mut p = 0.0;
            for k in 0..3 {
                let c = &m.covariances[k];
                let det = c[0] * c[3] - c[1] * c[2];
                let (dx, dy) = (x[0] - m.means[k][0], x[1] - m.means[k][1]);
                // The inverse of a 2×2 matrix, by hand.
                let maha = (c[3] * dx * dx - 2.0 * c[1] * dx * dy + c[0] * dy * dy) / det;
                p += m.weights[k] * (-0.5 * maha).exp() / (2.0 * std::f64::consts::PI * det.sqrt());
            }
            -p.ln()
        };
        for x in [
            [0.0, 0.0],
            [1.0, -0.5],
            [2.0, -1.0],
            [-3.0, 4.0],
            [6.0, 6.0],
        ] {
            let (got, want) = (m.score(&x), density(x));
            assert!(
                (got - want).abs() < 1e-9 * want.abs().max(1.0),
                "{x:?}: {got} vs {want}"
            );
        }
    }
}
