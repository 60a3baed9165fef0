//! What the baseline detectors (`ewma_zscore`, `mad`, `cusum`) share: the floor of their
//! scale, the key's resolution, and the run of alarmed samples that re-baselines them.
//!
//! The scale a deviation is divided by is the largest of
//! - the detector's absolute floor (`min_std`, `min_mad`),
//! - a relative one, `min_rel_std` × max(|level|, |value|): a series flat so far scores at most
//!   about 1 / `min_rel_std` on its first change, not 1e17,
//! - the key's resolution ([`Resolution`]): the smallest non-zero step between consecutive
//!   samples it has shown, so that one step of a count (0 → 1) is never an anomaly by itself.

use serde::{Deserialize, Serialize};
use warden_config::Direction;

/// The smallest non-zero step between consecutive complete samples of a key: 12 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Resolution {
    last: f64,
    /// 0 until the key has shown two different values.
    step: f32,
    seen: bool,
}

impl Resolution {
    pub(crate) fn learn(&mut self, value: f64) {
        if self.seen {
            let d = (value - self.last).abs() as f32;
            if d > 0.0 && d.is_finite() && (self.step == 0.0 || d < self.step) {
                self.step = d;
            }
        }
        self.last = value;
        self.seen = true;
    }

    pub(crate) fn step(&self) -> f64 {
        f64::from(self.step)
    }
}

/// The scale floor: `min`, `rel` × max(|level|, |value|) and the resolution (when used).
pub(crate) fn floor(min: f64, rel: f64, level: f64, value: f64, res: Option<&Resolution>) -> f64 {
    let rel = rel * level.abs().max(value.abs());
    min.max(rel).max(res.map_or(0.0, Resolution::step))
}

/// Whether a signed score `z` fires in `direction` at `threshold`.
pub(crate) fn fires(direction: Direction, z: f64, threshold: f64) -> bool {
    match direction {
        Direction::Up => z > threshold,
        Direction::Down => -z > threshold,
        Direction::Both => z.abs() > threshold,
    }
}

/// Consecutive complete samples far from the baseline on one side (the alarm run), with the
/// mean of their deviations from it: 24 bytes. Once long enough, the baseline moves by that
/// mean (re-baselining): a level shift that lasts becomes the new normal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Run {
    pub(crate) n: u32,
    up: bool,
    fired: bool,
    /// Mean deviation of the run's samples from the baseline they were scored against.
    pub(crate) shift: f64,
}

impl Run {
    /// Add a sample `deviation` away from its baseline (which may have fired); a sample on the
    /// other side restarts the run.
    pub(crate) fn push(&mut self, deviation: f64, fired: bool) {
        let up = deviation > 0.0;
        if self.n > 0 && up != self.up {
            *self = Run::default();
        }
        self.up = up;
        self.n += 1;
        self.fired |= fired;
        self.shift += (deviation - self.shift) / f64::from(self.n);
    }

    /// Add a sample whatever its side (a CUSUM alarm lasts while its sum stays positive,
    /// through single samples on the other side of the mean).
    pub(crate) fn extend(&mut self, deviation: f64, fired: bool) {
        self.n += 1;
        self.fired |= fired;
        self.shift += (deviation - self.shift) / f64::from(self.n);
    }

    pub(crate) fn clear(&mut self) {
        *self = Run::default();
    }

    /// Whether the run is long enough to re-baseline (`after` 0: never).
    pub(crate) fn due(&self, after: u32) -> bool {
        after > 0 && self.fired && self.n >= after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_is_the_smallest_non_zero_step() {
        let mut r = Resolution::default();
        for v in [0.0, 0.0, 3.0, 1.0, 1.0, 2.0] {
            r.learn(v);
        }
        assert_eq!(r.step(), 1.0);
        let mut flat = Resolution::default();
        flat.learn(5.0);
        flat.learn(5.0);
        assert_eq!(flat.step(), 0.0, "no step seen yet");
    }

    #[test]
    fn floor_is_the_largest_of_the_three() {
        let mut r = Resolution::default();
        r.learn(0.0);
        r.learn(1.0);
        assert_eq!(floor(1e-9, 0.001, 0.0, 5.0, None), 0.005);
        assert_eq!(floor(1e-9, 0.001, 0.0, 5.0, Some(&r)), 1.0);
        assert_eq!(floor(2.0, 0.001, 0.0, 5.0, Some(&r)), 2.0);
    }

    #[test]
    fn a_run_restarts_on_the_other_side_and_is_due_once_it_fired() {
        let mut run = Run::default();
        run.push(3.0, false);
        run.push(5.0, true);
        assert_eq!((run.n, run.shift), (2, 4.0));
        assert!(run.due(2) && !run.due(3) && !run.due(0));
        run.push(-3.0, false);
        assert_eq!((run.n, run.shift), (1, -3.0));
        run.push(-3.0, false);
        assert!(!run.due(2), "never fired");
    }
}
