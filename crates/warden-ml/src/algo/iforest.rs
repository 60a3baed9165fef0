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
    /// The trees laid out for scoring, built at load (see [`Flat`]).
    #[serde(skip)]
    flat: Vec<Flat>,
    /// Index of each tree's root in `flat`.
    #[serde(skip)]
    roots: Vec<u32>,
    /// `c(sample_size)`, the average path length the scores are normalised by.
    #[serde(skip)]
    norm: f64,
    /// The most splits on any path from a root to a leaf.
    #[serde(skip)]
    height: u32,
}

/// A node of the scoring layout: 16 bytes, both children of a split side by side (`l` and
/// `l + 1`), and a leaf's `v` already the depth it adds, `c(size)`, its `l` itself. The file's layout (one
/// node list per tree, 24-byte nodes, leaf sizes) is kept for its readability; scoring in
/// this one saves a logarithm per leaf and a third of the memory a walk touches (100 trees
/// × up to 511 nodes per device type do not fit in a core's cache).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Flat {
    v: f64,
    f: u32,
    l: u32,
}

const LEAF: u32 = u32::MAX;

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
        let mut m = Self {
            sample_size: psi,
            trees: forest,
            flat: Vec::new(),
            roots: Vec::new(),
            norm: 0.0,
            height: 0,
        };
        m.prepare(x.ncols()).map_err(MlError::Fit)?;
        Ok(m)
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
        if self.roots.is_empty() {
            return f64::NAN;
        }
        // The trees are walked `LANES` at a time, in lockstep, for the forest's height: the
        // walks are independent, so the cache misses of eight trees overlap instead of
        // queueing one after the other (the forest of a device type does not fit in a core's
        // cache, and a walk is a chain of dependent loads). A leaf points at itself, so a walk
        // that reached one stays there. Each tree's depth is its count of splits plus its
        // leaf's `c(size)`, added in tree order: the same sum, bit for bit, as walking one
        // tree at a time.
        const LANES: usize = 8;
        let mut total = 0.0;
        for chunk in self.roots.chunks(LANES) {
            let mut at = [0u32; LANES];
            let mut splits = [0u32; LANES];
            at[..chunk.len()].copy_from_slice(chunk);
            for _ in 0..self.height {
                for (i, n) in at.iter_mut().zip(splits.iter_mut()).take(chunk.len()) {
                    // `prepare` checked every index; a missing node ends the walk.
                    let Some(node) = self.flat.get(*i as usize) else {
                        continue;
                    };
                    let split = node.f != LEAF;
                    let v = x.get(node.f as usize).copied().unwrap_or(f64::NAN);
                    // NaN is not below the cut, so it goes right, as in the trees' own walk.
                    let below = v < node.v;
                    let right = split & !below;
                    *i = node.l + u32::from(right);
                    *n += u32::from(split);
                }
            }
            for (i, n) in at.iter().zip(&splits).take(chunk.len()) {
                let leaf = self.flat.get(*i as usize).map_or(0.0, |l| l.v);
                total += f64::from(*n) + leaf;
            }
        }
        let mean = total / self.roots.len() as f64;
        2f64.powf(-mean / self.norm)
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

    /// Check the trees against the feature count and build the scoring layout.
    pub(crate) fn prepare(&mut self, dims: usize) -> Result<(), String> {
        if self.trees.is_empty() || self.sample_size < 2 {
            return Err("isolation forest needs trees and a sample size of at least 2".into());
        }
        let malformed = || "isolation forest has a malformed node".to_string();
        for t in &self.trees {
            for n in t {
                let bad_split = n.f >= 0
                    && (n.f as usize >= dims || n.l as usize >= t.len() || n.r as usize >= t.len());
                if bad_split || n.v.is_nan() {
                    return Err(malformed());
                }
            }
        }
        let mut flat = Vec::new();
        let mut roots = Vec::with_capacity(self.trees.len());
        let mut queue = std::collections::VecDeque::new();
        let mut height = 0u32;
        for t in &self.trees {
            let base = flat.len();
            roots.push(u32::try_from(base).map_err(|_| malformed())?);
            flat.push(Flat {
                v: 0.0,
                f: LEAF,
                l: 0,
            });
            queue.clear();
            queue.push_back((0usize, base, 0u32));
            while let Some((old, new, level)) = queue.pop_front() {
                // A tree of n nodes lays out in n slots; more means a node is reached twice
                // (a cycle or shared child in a hand-made file).
                if flat.len() - base > t.len() {
                    return Err(malformed());
                }
                let n = t[old];
                if n.f < 0 {
                    flat[new] = Flat {
                        v: c(n.v),
                        f: LEAF,
                        l: u32::try_from(new).map_err(|_| malformed())?,
                    };
                    height = height.max(level);
                    continue;
                }
                let l = flat.len();
                flat[new] = Flat {
                    v: n.v,
                    f: n.f as u32,
                    l: u32::try_from(l).map_err(|_| malformed())?,
                };
                flat.push(Flat {
                    v: 0.0,
                    f: LEAF,
                    l: 0,
                });
                flat.push(Flat {
                    v: 0.0,
                    f: LEAF,
                    l: 0,
                });
                queue.push_back((n.l as usize, l, level + 1));
                queue.push_back((n.r as usize, l + 1, level + 1));
            }
            if flat.len() - base > t.len() {
                return Err(malformed());
            }
        }
        self.flat = flat;
        self.roots = roots;
        self.norm = c(self.sample_size as f64);
        self.height = height;
        Ok(())
    }
}

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

    /// The scoring layout gives exactly the score of a walk of the file's trees.
    #[test]
    fn the_scoring_layout_scores_as_the_trees_do() {
        let mut rng = SmallRng::seed_from_u64(3);
        let rows: Vec<f64> = (0..500 * 4).map(|_| rng.random_range(-2.0..2.0)).collect();
        let x = Array2::from_shape_vec((500, 4), rows).expect("shape");
        let m = IsolationForestModel::fit(&x, 50, 128, 9).expect("fit");
        let reference = |p: &[f64]| {
            let total: f64 = m
                .trees
                .iter()
                .map(|t| IsolationForestModel::path(t, p, |_| {}))
                .sum();
            2f64.powf(-(total / m.trees.len() as f64) / c(m.sample_size as f64))
        };
        for k in 0..1000 {
            let mut p: Vec<f64> = (0..4).map(|_| rng.random_range(-4.0..4.0)).collect();
            if k % 10 == 0 {
                p[k / 10 % 4] = f64::NAN;
            }
            assert_eq!(m.score(&p).to_bits(), reference(&p).to_bits(), "{p:?}");
        }
        assert!(m.score(&[f64::NAN, 0.0, 0.0, 0.0]).is_finite());
    }

    /// A hand-made file whose node points back at its parent is refused, not looped on.
    #[test]
    fn a_tree_with_a_cycle_is_refused() {
        let split = |l, r| Node { f: 0, v: 0.5, l, r };
        let leaf = Node {
            f: -1,
            v: 3.0,
            l: 0,
            r: 0,
        };
        let mut m = IsolationForestModel {
            sample_size: 8,
            trees: vec![vec![split(1, 2), split(0, 2), leaf]],
            flat: Vec::new(),
            roots: Vec::new(),
            norm: 0.0,
            height: 0,
        };
        assert!(m.prepare(1).is_err());
        m.trees = vec![vec![split(1, 2), leaf, leaf]];
        assert!(m.prepare(1).is_ok());
        assert_eq!(m.score(&[0.0]), 2f64.powf(-(1.0 + c(3.0)) / c(8.0)));
    }
}
