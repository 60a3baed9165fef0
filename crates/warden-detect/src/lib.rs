//! Detectors: each scores the features of one window key and explains itself when it fires.
//!
//! A detector sees a key's samples in two ways: [`Detector::observe`] for a *complete* window
//! sample (it may learn from it), and [`Detector::peek`] for the window as it stands between
//! samples (it must not learn; this is what lets Warden fire within a second of a flood
//! starting instead of waiting for the next complete sample). Event-level detectors
//! (`novelty`) see every event through [`Detector::on_event`].
//!
//! State is kept per [`KeyId`] (dense ids the engine assigns per window key), and can be saved
//! and restored per key ([`Detector::save_key`], [`Detector::load_key`]) so a processor can
//! checkpoint it. Time is always passed in (event time of the sample or event), never read.

pub mod auth_failures;
pub mod cardinality;
pub mod cohort;
pub mod cusum;
pub mod ewma_zscore;
mod keyed;
pub mod mad;
pub mod novelty;
pub mod peer_percentile;
mod scale;
mod season;
pub mod threshold;
pub mod unloaded;

use std::collections::BTreeMap;

use warden_config::{DetectorConfig, PeerGroup};

pub use keyed::Keyed;

/// Dense id of a window key, assigned by the engine; reused after [`Detector::forget`].
pub type KeyId = u32;

/// One sample of a key: the detector's input features over a window.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub key: KeyId,
    /// The detector's input feature values, in the order it declared them. A value is NaN
    /// when the feature has no value for the window (e.g. a mean over no events); detectors
    /// skip such samples.
    pub values: &'a [f64],
    /// End of the window, event time, nanoseconds since the Unix epoch.
    pub at: i64,
    /// Peer group of the key (see [`Detector::peer_group`]), 0 when not applicable.
    pub peer: u32,
    /// Name of the peer group, for explanations.
    pub peer_name: &'a str,
    /// Whether the window covers a whole window length of the key's life. A key seen for
    /// the first time 3 s ago has 3 s of events in a 60 s window: its counts are not yet
    /// comparable, so detectors that learn a baseline score such samples but do not learn
    /// from them.
    pub full: bool,
}

impl<'a> Sample<'a> {
    /// A sample of one value (tests, series backtests).
    pub fn of(key: KeyId, values: &'a [f64], at: i64) -> Self {
        Self {
            key,
            values,
            at,
            peer: 0,
            peer_name: "",
            full: true,
        }
    }

    /// The same sample from a window not yet full (see [`Sample::full`]).
    pub fn partial(self) -> Self {
        Self {
            full: false,
            ..self
        }
    }

    /// The first input value.
    pub fn value(&self) -> f64 {
        self.values.first().copied().unwrap_or(f64::NAN)
    }
}

/// One event as an event-level detector sees it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub key: KeyId,
    /// Event time, nanoseconds since the Unix epoch.
    pub ts: i64,
    /// The watched field's value.
    pub value: &'a str,
    /// A 64-bit hash of `value`.
    pub hash: u64,
}

/// Why a detector fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The score, in the detector's own unit (z-score, robust z, cumulative sum, count…).
    pub score: f64,
    /// The (first) feature value that fired.
    pub value: f64,
    /// The score threshold the detector used.
    pub threshold: f64,
    /// Baseline statistics at firing time (e.g. `mean`, `std`, `samples`).
    pub baseline: BTreeMap<String, f64>,
    /// One sentence: what was seen against what was expected.
    pub explanation: String,
}

/// Errors restoring detector state.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("detector `{detector}`: unreadable saved state: {source}")]
    State {
        detector: String,
        source: serde_json::Error,
    },
}

/// A streaming detector with state per key.
pub trait Detector: Send + Sync {
    /// Detector name (from the pipeline).
    fn name(&self) -> &str;

    /// Score a complete sample and learn from it (unless it fires: an attack must not become
    /// the baseline).
    fn observe(&mut self, sample: &Sample) -> Option<Firing>;

    /// Score a provisional sample without learning.
    fn peek(&self, sample: &Sample) -> Option<Firing>;

    /// The anomaly score a sample would get now, firing or not (series backtests). Baseline
    /// detectors score the magnitude of the deviation in standard deviations (two-sided,
    /// whatever `direction` fires on, 0 during warm-up), so scores compare across series;
    /// each module documents its own.
    fn score(&self, sample: &Sample) -> f64;

    /// Every key of the window has been observed for the complete sample ending at `at`.
    fn end_round(&mut self, _at: i64) {}

    /// How keys are grouped into peers, if the detector compares keys with each other.
    fn peer_group(&self) -> Option<PeerGroup> {
        None
    }

    /// Keys of peer group `peer` in the last complete round (0 when the detector has no peer
    /// groups): the population fleet context judges a group's share in.
    fn peer_population(&self, _peer: u32) -> usize {
        0
    }

    /// Whether the detector wants every event ([`Detector::on_event`]).
    fn wants_events(&self) -> bool {
        false
    }

    /// See one event of a key.
    fn on_event(&mut self, _event: &EventView) -> Option<Firing> {
        None
    }

    /// Forget a key (it went idle; its id may be reused).
    fn forget(&mut self, key: KeyId);

    /// Keys with state.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes of state (per-key slots and their heap data).
    fn state_bytes(&self) -> usize;

    /// The state of one key, to checkpoint it.
    fn save_key(&self, key: KeyId) -> Option<serde_json::Value>;

    /// Restore the state of one key saved by [`Detector::save_key`].
    fn load_key(&mut self, key: KeyId, state: serde_json::Value) -> Result<(), DetectError>;
}

/// Build the detector a pipeline declares (configs are validated by `warden-config`);
/// `window_ms` is the length of the window the detector runs on.
pub fn build(config: &DetectorConfig, window_ms: u64) -> Box<dyn Detector> {
    match config {
        DetectorConfig::EwmaZscore(c) => Box::new(ewma_zscore::EwmaZscore::new(c.clone())),
        DetectorConfig::Mad(c) => Box::new(mad::Mad::new(c.clone())),
        DetectorConfig::Cusum(c) => Box::new(cusum::Cusum::new(c.clone())),
        DetectorConfig::Threshold(c) => Box::new(threshold::Threshold::new(c.clone())),
        DetectorConfig::Novelty(c) => Box::new(novelty::Novelty::new(c.clone(), window_ms)),
        DetectorConfig::Cardinality(c) => Box::new(cardinality::Cardinality::new(c.clone())),
        DetectorConfig::AuthFailures(c) => Box::new(auth_failures::AuthFailures::new(c.clone())),
        DetectorConfig::PeerPercentile(c) => {
            Box::new(peer_percentile::PeerPercentile::new(c.clone()))
        }
        DetectorConfig::Cohort(c) => Box::new(cohort::Cohort::new(c.clone())),
        DetectorConfig::Kmeans(c)
        | DetectorConfig::Gmm(c)
        | DetectorConfig::OneClassSvm(c)
        | DetectorConfig::IsolationForest(c) => Box::new(unloaded::Unloaded::new(&c.name)),
    }
}

/// `{:.2}`-style formatting that drops useless decimals (`3`, `0.25`, `1234.5`).
pub(crate) fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn baseline<const N: usize>(pairs: [(&str, f64); N]) -> BTreeMap<String, f64> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
