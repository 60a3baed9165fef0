//! k-means (linfa-clustering): the score is the Euclidean distance of a scaled vector to its
//! nearest centroid; each feature contributes its squared difference from that centroid.

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::MlError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KmeansModel {
    /// Centroids in scaled space.
    pub centroids: Vec<Vec<f64>>,
}

impl KmeansModel {
    pub fn fit(x: &Array2<f64>, k: usize, seed: u64) -> Result<Self, MlError> {
        let k = k.clamp(1, x.nrows().max(1));
        let data = DatasetBase::from(x.clone());
        let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
            .n_runs(3)
            .max_n_iterations(100)
            .tolerance(1e-4)
            .fit(&data)
            .map_err(|e| MlError::Fit(format!("k-means: {e}")))?;
        let centroids = model.centroids().outer_iter().map(|r| r.to_vec()).collect();
        Ok(Self { centroids })
    }

    fn nearest(&self, x: &[f64]) -> Option<(usize, f64)> {
        self.centroids
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    i,
                    c.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f64>(),
                )
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    pub fn score(&self, x: &[f64]) -> f64 {
        self.nearest(x).map_or(f64::NAN, |(_, d2)| d2.sqrt())
    }

    pub fn contributions(&self, x: &[f64], out: &mut [f64]) {
        if let Some((i, _)) = self.nearest(x) {
            for ((o, a), c) in out.iter_mut().zip(x).zip(&self.centroids[i]) {
                *o = (a - c) * (a - c);
            }
        }
    }

    pub(crate) fn check(&self, dims: usize) -> Result<(), String> {
        if self.centroids.is_empty() {
            return Err("k-means model has no centroid".into());
        }
        if self
            .centroids
            .iter()
            .any(|c| c.len() != dims || c.iter().any(|v| !v.is_finite()))
        {
            return Err(format!(
                "k-means centroids must be {dims} finite numbers each"
            ));
        }
        Ok(())
    }
}
