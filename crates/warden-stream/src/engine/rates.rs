//! Normal rates per key, for throttles relative to them (`decision.throttle_baseline`).

use warden_config::PipelineConfig;
use warden_detect::KeyId;

use super::WindowRt;

/// Per key of one window, the long-run level of a `rate` feature: the subject's normal rate,
/// which a throttle decision is set relative to (`decision.throttle_baseline`).
///
/// A running *median* of the key's complete samples (8 bytes per key): after a plain average of
/// the first [`RateMemory::WARM`] samples, each sample moves the level up or down by the same
/// small relative step, whatever its size (stochastic approximation of the median, step
/// `max(1/n, slide / MEMORY_MS)` of the level). An attack in progress — a minority of the
/// key's samples, however large — moves it by at most that step per sample: the level is what
/// the key usually sends, not its mean with the attack in it. Not checkpointed: after a
/// restart a throttle falls back to `throttle_rate_per_s` until levels are learned again.
pub(crate) struct RateMemory {
    pub(crate) window: usize,
    pub(crate) feature: usize,
    alpha: f64,
    /// (level, samples) by key id.
    pub(crate) levels: Vec<(f32, u32)>,
}

impl RateMemory {
    const MEMORY_MS: f64 = 30.0 * 60.0 * 1000.0;
    /// Samples averaged before the median steps begin, and before a level is used.
    const WARM: u32 = 10;

    pub(super) fn new(pipeline: &PipelineConfig, windows: &[WindowRt]) -> Option<Self> {
        let name = pipeline.decision.throttle_baseline.as_deref()?;
        let (window, feature) = windows.iter().enumerate().find_map(|(wi, w)| {
            w.plan
                .names
                .iter()
                .position(|n| n == name)
                .map(|fi| (wi, fi))
        })?;
        let slide = windows[window].state.config.slide_ms as f64;
        Some(Self {
            window,
            feature,
            alpha: (slide / Self::MEMORY_MS).clamp(1e-6, 1.0),
            levels: Vec::new(),
        })
    }

    pub(super) fn learn(&mut self, id: KeyId, value: f64) {
        if !value.is_finite() {
            return;
        }
        let i = id as usize;
        if self.levels.len() <= i {
            self.levels.resize(i + 1, (0.0, 0));
        }
        let (level, n) = self.levels[i];
        let level = f64::from(level);
        let n = n.saturating_add(1);
        let step = self.alpha.max(1.0 / f64::from(n));
        let next = if n <= Self::WARM || level <= 0.0 {
            level + (value - level) / f64::from(n.min(Self::WARM))
        } else if value > level {
            level * (1.0 + step)
        } else if value < level {
            (level * (1.0 - step)).max(value)
        } else {
            level
        };
        self.levels[i] = (next as f32, n);
    }

    pub(super) fn forget(&mut self, id: KeyId) {
        if let Some(l) = self.levels.get_mut(id as usize) {
            *l = (0.0, 0);
        }
    }

    /// The key's normal rate, once learned.
    pub(super) fn level(&self, id: KeyId) -> Option<f64> {
        self.levels
            .get(id as usize)
            .filter(|(l, n)| *n >= Self::WARM && *l > 0.0)
            .map(|(l, _)| f64::from(*l))
    }
}
