//! The fitted scaler saved with every model: a signed `log1p` (counts, bytes and rates are
//! heavy-tailed and never negative; the hour of the day's sine and cosine are in [−1, 1] and
//! keep their sign and order) then centre on the median and divide by the interquartile range.
//! Robust: a few outliers in the training data move neither.

use serde::{Deserialize, Serialize};

use crate::MlError;

/// Median/IQR scaling of `sign(x)·log1p(|x|)`, per feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustScaler {
    /// Median of each transformed feature.
    pub median: Vec<f64>,
    /// Scale of each transformed feature: its IQR, or a floor when the IQR is 0 (a feature
    /// that is nearly constant on benign traffic: any change is a large deviation).
    pub scale: Vec<f64>,
}

/// Smallest scale: a feature constant in training gets this (in log1p units).
pub const MIN_SCALE: f64 = 0.05;

/// `sign(x)·log1p(|x|)`: `log1p` of the non-negative features, monotone and symmetric for
/// those that can be negative (the sine and cosine of the hour of the day).
#[inline]
pub fn transform(x: f64) -> f64 {
    x.abs().ln_1p().copysign(x)
}

impl RobustScaler {
    /// Fit on rows (each `dims` long).
    pub fn fit(rows: &[Vec<f64>], dims: usize) -> Result<Self, MlError> {
        if rows.is_empty() {
            return Err(MlError::TooSmall { rows: 0, need: 1 });
        }
        let mut median = Vec::with_capacity(dims);
        let mut scale = Vec::with_capacity(dims);
        let mut col: Vec<f64> = Vec::with_capacity(rows.len());
        for j in 0..dims {
            col.clear();
            col.extend(rows.iter().map(|r| transform(r[j])));
            col.sort_by(f64::total_cmp);
            let q = |p: f64| quantile_sorted(&col, p);
            median.push(q(0.5));
            scale.push((q(0.75) - q(0.25)).max(MIN_SCALE));
        }
        Ok(Self { median, scale })
    }

    /// Scale one raw row into `out` (same length).
    #[inline]
    pub fn apply(&self, raw: &[f64], out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            let x = raw.get(j).copied().unwrap_or(f64::NAN);
            *o = (transform(x) - self.median[j]) / self.scale[j];
        }
    }

    pub fn dims(&self) -> usize {
        self.median.len()
    }

    pub(crate) fn check(&self, dims: usize) -> Result<(), String> {
        if self.median.len() != dims || self.scale.len() != dims {
            return Err(format!(
                "scaler has {} features, model {dims}",
                self.median.len()
            ));
        }
        if self.median.iter().any(|v| !v.is_finite())
            || self.scale.iter().any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err("scaler has a non-finite median or a non-positive scale".into());
        }
        Ok(())
    }
}

/// Linear-interpolated quantile of sorted values (`p` in [0, 1]); NaN when empty.
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_iqr_of_log1p() {
        let rows: Vec<Vec<f64>> = (0..=100).map(|i| vec![f64::from(i), 5.0]).collect();
        let s = RobustScaler::fit(&rows, 2).expect("fit");
        assert!((s.median[0] - 51f64.ln()).abs() < 1e-9);
        assert!((s.scale[0] - (76f64.ln() - 26f64.ln())).abs() < 1e-9);
        // A constant feature gets the floor.
        assert_eq!(s.scale[1], MIN_SCALE);
        let mut out = [0.0; 2];
        s.apply(&[50.0, 5.0], &mut out);
        assert!(out[0].abs() < 0.05 && out[1] == 0.0);
    }

    #[test]
    fn negative_values_keep_their_sign_and_order() {
        assert_eq!(transform(0.0), 0.0);
        assert!((transform(-1.0) + 2f64.ln()).abs() < 1e-12);
        assert_eq!(transform(-0.5), -transform(0.5));
        let xs = [-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0];
        assert!(xs.windows(2).all(|w| transform(w[0]) < transform(w[1])));
        // An hour's sine over a day: the scaler centres it near 0.
        let rows: Vec<Vec<f64>> = (0..240)
            .map(|i| vec![(f64::from(i) / 240.0 * std::f64::consts::TAU).sin()])
            .collect();
        let s = RobustScaler::fit(&rows, 1).expect("fit");
        assert!(s.median[0].abs() < 0.05, "{:?}", s.median);
        assert!(s.scale[0] > 0.8, "{:?}", s.scale);
    }
}
