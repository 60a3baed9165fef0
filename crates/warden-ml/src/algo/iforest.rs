//! Isolation forest (Liu, Ting & Zhou, 2008), our own: no maintained crate fits (the ones
//! published are unmaintained or pull in a BLAS). Random axis-parallel splits isolate an
//! outlier in fewer splits than an inlier; the score is `2^(−E[h(x)] / c(ψ))` in (0, 1], above
//! 0.5 for points easier to isolate than average. Each feature contributes how often it split
//! on the path that isolated the vector, weighted by its robust z (a split far from normal).

use ndarray::Array2;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::MlError;

/// A node: `f < 0` is a leaf holding `v` training rows; otherwise rows with feature `f`
/// below `v` go to node `l`, the others to `r`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub f: i32,
    pub v: f64,
    pub l: u32,
    pub r: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestModel {
    /// Rows sampled per tree (ψ).
    pub sample_size: usize,
    pub trees: Vec<Vec<Node>>,
}

/// Average path length of an unsuccessful search in a binary search tree of `n` nodes.
pub fn c(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n <= 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
    }
}

impl IsolationForestModel {
    pub fn fit(
        x: &Array2<f64>,
        trees: usize,
        sample_size: usize,
        seed: u64,
    ) -> Result<Self, MlError> {
        let n = x.nrows();
        if n < 2 || trees == 0 {
            return Err(MlError::Fit(
                "isolation forest needs at least 2 rows and 1 tree".into(),
            ));
        }
        let psi = sample_size.clamp(2, n);
        let max_depth = (psi as f64).log2().ceil() as usize;
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut forest = Vec::with_capacity(trees);
        for _ in 0..trees {
            // Sample ψ rows without replacement (partial Fisher–Yates).
            let mut idx: Vec<usize> = (0..n).collect();
            for i in 0..psi {
                let j = rng.random_range(i..n);
                idx.swap(i, j);
            }
            idx.truncate(psi);
            let mut nodes = Vec::new();
            grow(x, &mut idx, 0, max_depth, &mut rng, &mut nodes);
            forest.push(nodes);
        }
        Ok(Self {
            sample_size: psi,
            trees: forest,
        })
    }

    /// Path length of `x` in one tree (plus the leaf's `c(size)` adjustment), calling `on_split`
    /// with each split's feature.
    fn path(tree: &[Node], x: &[f64], mut on_split: impl FnMut(usize)) -> f64 {
        let mut i = 0usize;
        let mut depth = 0.0;
        while let Some(node) = tree.get(i) {
            if node.f < 0 {
                return depth + c(node.v);
            }
            let f = node.f as usize;
            on_split(f);
            depth += 1.0;
            let v = x.get(f).copied().unwrap_or(f64::NAN);
            i = if v < node.v { node.l } else { node.r } as usize;
        }
        depth
    }

    pub fn score(&self, x: &[f64]) -> f64 {
        if self.trees.is_empty() {
            return f64::NAN;
        }
        let total: f64 = self.trees.iter().map(|t| Self::path(t, x, |_| {})).sum();
        let mean = total / self.trees.len() as f64;
        2f64.powf(-mean / c(self.sample_size as f64))
    }

    pub fn contributions(&self, x: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        for t in &self.trees {
            Self::path(t, x, |f| {
                if let Some(o) = out.get_mut(f) {
                    *o += 1.0;
                }
            });
        }
        for (o, v) in out.iter_mut().zip(x) {
            *o *= v * v;
        }
    }

    pub(crate) fn check(&self, dims: usize) -> Result<(), String> {
        if self.trees.is_empty() || self.sample_size < 2 {
            return Err("isolation forest needs trees and a sample size of at least 2".into());
        }
        for t in &self.trees {
            for n in t {
                let bad_split = n.f >= 0
                    && (n.f as usize >= dims || n.l as usize >= t.len() || n.r as usize >= t.len());
                if bad_split || n.v.is_nan() {
                    return Err("isolation forest has a malformed node".into());
                }
            }
        }
        Ok(())
    }
}

/// Grow a tree over rows `idx` into `nodes`; returns the new node's index.
fn grow(
    x: &Array2<f64>,
    idx: &mut [usize],
    depth: usize,
    max_depth: usize,
    rng: &mut SmallRng,
    nodes: &mut Vec<Node>,
) -> u32 {
    let me = nodes.len() as u32;
    let leaf = Node {
        f: -1,
        v: idx.len() as f64,
        l: 0,
        r: 0,
    };
    nodes.push(leaf);
    if depth >= max_depth || idx.len() <= 1 {
        return me;
    }
    // Features that still vary among these rows; a random one, a random cut in its range.
    let dims = x.ncols();
    let ranges: Vec<(usize, f64, f64)> = (0..dims)
        .filter_map(|f| {
            let (lo, hi) = idx
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                    let v = x[[*r, f]];
                    (lo.min(v), hi.max(v))
                });
            (hi > lo).then_some((f, lo, hi))
        })
        .collect();
    if ranges.is_empty() {
        return me;
    }
    let (f, lo, hi) = ranges[rng.random_range(0..ranges.len())];
    let cut = rng.random_range(lo..hi);
    let mut split = 0;
    for i in 0..idx.len() {
        if x[[idx[i], f]] < cut {
            idx.swap(i, split);
            split += 1;
        }
    }
    // `cut` is in [lo, hi): the row at `lo` goes left, the one at `hi` right.
    let (left, right) = idx.split_at_mut(split);
    let l = grow(x, left, depth + 1, max_depth, rng, nodes);
    let r = grow(x, right, depth + 1, max_depth, rng, nodes);
    nodes[me as usize] = Node {
        f: f as i32,
        v: cut,
        l,
        r,
    };
    me
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outliers_score_higher_than_inliers() {
        let mut rng = SmallRng::seed_from_u64(7);
        let rows: Vec<f64> = (0..1000 * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x = Array2::from_shape_vec((1000, 3), rows).expect("shape");
        let m = IsolationForestModel::fit(&x, 100, 256, 1).expect("fit");
        let inlier = m.score(&[0.0, 0.1, -0.2]);
        let outlier = m.score(&[6.0, 0.0, 0.0]);
        let far = m.score(&[6.0, -6.0, 6.0]);
        assert!(inlier < 0.5, "inlier {inlier}");
        assert!(
            outlier > 0.5 && outlier > inlier + 0.05,
            "outlier {outlier} vs {inlier}"
        );
        assert!(far > 0.6 && far >= outlier, "far {far} vs {outlier}");
        // The split that isolates the outlier is on the feature it deviates on.
        let mut contrib = [0.0; 3];
        m.contributions(&[6.0, 0.0, 0.0], &mut contrib);
        assert!(contrib[0] > contrib[1] && contrib[0] > contrib[2]);
        // c(256) as in the paper.
        assert!((c(256.0) - 10.244).abs() < 0.01);
    }
}
