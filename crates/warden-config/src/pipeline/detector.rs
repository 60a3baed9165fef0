//! `[[detector]]`: detectors and their parameters, selected by `type`.
//!
//! Every detector has `name`, `mode` (override of the pipeline's), `action` (what it asks the
//! decision policy for) and `weight` (for `combine = "weighted"`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::pipeline::Mode;

mod ml;

pub use ml::{MAX_ML_FEATURES, MlConfig};

/// A detector, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DetectorConfig {
    /// Exponentially weighted moving mean and variance of a feature per key; fires when the
    /// z-score of a sample exceeds `threshold`.
    EwmaZscore(EwmaZscoreConfig),
    /// Robust z-score against the median and median absolute deviation of the key's recent
    /// samples.
    Mad(MadConfig),
    /// Two-sided cumulative sum of standardised deviations: level shifts in either direction.
    Cusum(CusumConfig),
    /// A static bound with consecutive samples to alarm and to clear.
    Threshold(ThresholdConfig),
    /// First-seen values of a field (route, client IP, user agent, method) for a key after
    /// its baseline period.
    Novelty(NoveltyConfig),
    /// Too many distinct values (routes, resource paths) for a key: enumeration, scraping.
    Cardinality(CardinalityConfig),
    /// A burst of failed authentications for a key (credential stuffing).
    AuthFailures(AuthFailuresConfig),
    /// A key against the distribution of its peers (same device type or tenant).
    PeerPercentile(PeerPercentileConfig),
    /// Many keys of a peer group above their own normal at once: a coordinated rise no key
    /// shows alone (a botnet of devices each a few times over their own pace).
    Cohort(CohortConfig),
    /// Distance of a key's feature vector to the nearest k-means centroid of benign traffic
    /// (a model from `warden train`).
    Kmeans(MlConfig),
    /// Negative log-likelihood of a key's feature vector under a Gaussian mixture of benign
    /// traffic.
    Gmm(MlConfig),
    /// Margin of a key's feature vector outside a one-class SVM's support of benign traffic.
    OneClassSvm(MlConfig),
    /// How easily an isolation forest of benign traffic isolates a key's feature vector.
    IsolationForest(MlConfig),
}

/// What a detector asks the decision policy for when it fires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DetectorAction {
    /// Quarantine the subject (refused with 403 until the TTL ends).
    #[default]
    Quarantine,
    /// Throttle the subject (a softer action).
    Throttle,
    /// Only raise an alert.
    Alert,
}

/// Direction of deviations a detector fires on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only values above the baseline.
    #[default]
    Up,
    /// Only values below the baseline.
    Down,
    /// Both.
    Both,
}

/// Peer groups of `peer_percentile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeerGroup {
    /// Identities of the same device type.
    DeviceType,
    /// Identities of the same tenant.
    Tenant,
    /// Every key of the window.
    All,
}

/// Field `novelty` watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoveltyField {
    Route,
    ClientIp,
    UserAgent,
    Method,
    Path,
}

impl NoveltyField {
    pub fn as_str(self) -> &'static str {
        match self {
            NoveltyField::Route => "route",
            NoveltyField::ClientIp => "client_ip",
            NoveltyField::UserAgent => "user_agent",
            NoveltyField::Method => "method",
            NoveltyField::Path => "path",
        }
    }
}

pub(crate) fn default_weight() -> f64 {
    1.0
}

/// `type = "ewma_zscore"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EwmaZscoreConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// Feature scored.
    pub feature: String,
    /// Weight of each new sample in the moving average, in (0, 1].
    pub alpha: f64,
    /// z-score above which the detector fires.
    pub threshold: f64,
    /// Samples per key before the detector may fire.
    pub warmup_samples: u32,
    /// The feature must also be at least this large to fire (e.g. a minimum request rate), so
    /// that tiny keys with near-zero variance do not fire on noise.
    pub min_value: f64,
    /// Floor of the standard deviation used in the z-score (absolute; see also `min_rel_std`
    /// and `resolution_floor`, the largest floor wins).
    pub min_std: f64,
    /// The value must also be at least this far from the mean (absolute deviation, in the
    /// direction that fires).
    #[serde(default)]
    pub min_deviation: f64,
    /// Which deviations fire. `min_value` applies to deviations up only. The score
    /// (`warden backtest --series`) is the z-score's magnitude whatever the direction.
    #[serde(default)]
    pub direction: Direction,
    /// Floor of the standard deviation relative to the level: `min_rel_std` ×
    /// max(|mean|, |value|), in [0, 1). Bounds the score of a series that was flat so far.
    #[serde(default = "default_min_rel_std")]
    pub min_rel_std: f64,
    /// Floor the standard deviation at the key's resolution: the smallest non-zero step
    /// between consecutive samples it has shown (1 for counts). A one-step change then never
    /// scores above 1 on its own, so a mostly-zero series does not fire on every 1.
    #[serde(default = "yes")]
    pub resolution_floor: bool,
    /// After this many consecutive complete samples at least `threshold / 2` from the
    /// baseline on the same side (at least one of them firing), the baseline moves to their
    /// level: a sustained level shift stops firing. 0 never re-baselines (an attack that
    /// lasts never becomes the baseline).
    #[serde(default = "default_rebaseline_after")]
    pub rebaseline_after: u32,
    /// Period of the seasonal baseline, milliseconds of event time (default one day; 0 turns
    /// it off). Next to the moving mean, the detector keeps a mean per phase of the period
    /// (`buckets` of it, interpolated) and scores against it once it has seen
    /// `season_warmup` periods and it explains at least half of the variance the moving mean
    /// leaves.
    #[serde(default = "default_period_ms")]
    pub period_ms: u64,
    /// Phases of the period with a mean each (2..=96; 4 bytes each per key).
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Weight of a sample in the mean of its phase, in (0, 1].
    #[serde(default = "default_season_alpha")]
    pub season_alpha: f64,
    /// Whole periods a key must have been seen before its seasonal baseline is used (≥ 1).
    #[serde(default = "default_season_warmup")]
    pub season_warmup: u32,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

/// `type = "mad"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MadConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// Feature scored.
    pub feature: String,
    /// Recent samples per key the median and MAD are computed over (8..=1024).
    pub history: u32,
    /// Robust z-score `(value − median) / (1.4826 · MAD)` that fires.
    pub threshold: f64,
    /// Samples per key before the detector may fire (at most `history`).
    pub warmup_samples: u32,
    /// Floor of `1.4826 · MAD`, so constant keys do not fire on noise (> 0). When the MAD
    /// is 0 (more than half the history equal), `1.2533 ·` the mean absolute deviation from
    /// the median is used instead; `min_rel_mad` and `resolution_floor` are floors too.
    pub min_mad: f64,
    /// The value must also be at least this large to fire (`up`/`both`).
    #[serde(default)]
    pub min_value: f64,
    /// Which deviations fire. The score is the robust z-score's magnitude either way.
    #[serde(default)]
    pub direction: Direction,
    /// Floor of the scale relative to the level: `min_rel_mad` × max(|median|, |value|), in
    /// [0, 1).
    #[serde(default = "default_min_rel_std")]
    pub min_rel_mad: f64,
    /// Floor the scale at the key's resolution (smallest non-zero step between consecutive
    /// samples).
    #[serde(default = "yes")]
    pub resolution_floor: bool,
    /// After this many consecutive complete samples at least `threshold / 2` from the median
    /// on the same side (at least one firing), the history is moved to their level (its
    /// spread kept). 0 never re-baselines.
    #[serde(default = "default_rebaseline_after")]
    pub rebaseline_after: u32,
    /// Period of a seasonal baseline, milliseconds of event time (default one day; 0 turns
    /// it off): a mean per phase of the period (`buckets` of it, interpolated) and the last
    /// `history` residuals around it; once the key has been seen for `season_warmup` periods
    /// and the residuals' scaled MAD is under 0.7× the plain one (half the variance), samples
    /// are scored by the robust z-score of their residual.
    #[serde(default = "default_period_ms")]
    pub period_ms: u64,
    /// Phases of the period with a mean each (2..=96; 8 bytes each per key).
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Weight of a sample in the mean of its phase, in (0, 1].
    #[serde(default = "default_season_alpha")]
    pub season_alpha: f64,
    /// Whole periods a key must have been seen before its seasonal baseline is used (≥ 1).
    #[serde(default = "default_season_warmup")]
    pub season_warmup: u32,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

/// `type = "cusum"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CusumConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// Feature scored.
    pub feature: String,
    /// Weight of each non-firing sample in the baseline mean and variance, in [0, 1]; 0 freezes
    /// the baseline after warm-up.
    pub alpha: f64,
    /// Slack, in standard deviations: deviations smaller than this do not accumulate (≥ 0).
    pub k: f64,
    /// Decision threshold on the cumulative sum, in standard deviations (> 0).
    pub h: f64,
    /// Samples per key (plain mean and variance) before the detector may fire.
    pub warmup_samples: u32,
    /// Floor of the standard deviation (> 0; see also `min_rel_std` and `resolution_floor`).
    pub min_std: f64,
    /// Which shifts fire.
    #[serde(default = "default_both")]
    pub direction: Direction,
    /// Floor of the standard deviation relative to the level: `min_rel_std` ×
    /// max(|mean|, |value|), in [0, 1).
    #[serde(default = "default_min_rel_std")]
    pub min_rel_std: f64,
    /// Floor the standard deviation at the key's resolution (smallest non-zero step between
    /// consecutive samples).
    #[serde(default = "yes")]
    pub resolution_floor: bool,
    /// A shift is accepted as the new level once the detector has been in alarm for this
    /// many complete samples (from a firing until the sum drains back to 0 on that side): the
    /// mean moves to the level seen since the first firing. 0 never re-baselines (the
    /// detector then fires every few samples for as long as the shift lasts).
    #[serde(default = "default_rebaseline_after")]
    pub rebaseline_after: u32,
    /// Period of a seasonal baseline, milliseconds of event time (default one day; 0 turns
    /// it off): deviations are then taken from a mean per phase of the period (`buckets` of
    /// it, interpolated) once the key has been seen for `season_warmup` periods and that
    /// mean leaves less than half the variance the plain one does (see `ewma_zscore`).
    #[serde(default = "default_period_ms")]
    pub period_ms: u64,
    /// Phases of the period with a mean each (2..=96; 8 bytes each per key).
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Weight of a sample in the mean of its phase, in (0, 1].
    #[serde(default = "default_season_alpha")]
    pub season_alpha: f64,
    /// Whole periods a key must have been seen before its seasonal baseline is used (≥ 1).
    #[serde(default = "default_season_warmup")]
    pub season_warmup: u32,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_both() -> Direction {
    Direction::Both
}

fn yes() -> bool {
    true
}
fn default_min_rel_std() -> f64 {
    0.001
}
fn default_rebaseline_after() -> u32 {
    20
}
fn default_period_ms() -> u64 {
    86_400_000
}
fn default_buckets() -> u32 {
    24
}
fn default_season_alpha() -> f64 {
    0.1
}
fn default_season_warmup() -> u32 {
    2
}
/// Checks of a seasonal baseline's (period_ms, buckets, season_alpha, season_warmup).
fn check_season(
    (period_ms, buckets, alpha, warmup): (u64, u32, f64, u32),
    bad: &mut impl FnMut(&str, &str),
) {
    if period_ms == 0 {
        return;
    }
    if !(2..=96).contains(&buckets) {
        bad("buckets", "must be in 2..=96");
    } else if period_ms < u64::from(buckets) {
        bad("period_ms", "must be at least one millisecond per bucket");
    }
    if alpha.is_nan() || alpha <= 0.0 || alpha > 1.0 {
        bad("season_alpha", "must be in (0, 1]");
    }
    if warmup == 0 {
        bad("season_warmup", "must be at least 1");
    }
}

fn default_tail_peers() -> u32 {
    5
}

/// `type = "threshold"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// Feature compared.
    pub feature: String,
    /// Alarm when the value is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// Alarm when the value is below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// Consecutive breaching samples before the alarm (≥ 1).
    #[serde(default = "one")]
    pub alarm_after: u32,
    /// Consecutive normal samples before the alarm clears (≥ 1).
    #[serde(default = "one")]
    pub clear_after: u32,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn one() -> u32 {
    1
}

/// `type = "novelty"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoveltyConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// Window whose keys are watched (and whose `size_ms` counts recent new values).
    pub window: String,
    /// Field watched.
    pub field: NoveltyField,
    /// Event time from a key's first event during which every value is learned as normal,
    /// milliseconds.
    pub baseline_ms: u64,
    /// Events a key must have had before new values count.
    #[serde(default = "default_min_events")]
    pub min_baseline_events: u32,
    /// New values within one window length that fire (≥ 1).
    #[serde(default = "one")]
    pub min_new: u32,
    /// Known values kept per key (bounds memory); a key at the cap learns no more and new
    /// values are still reported.
    #[serde(default = "default_max_values")]
    pub max_values: u32,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_min_events() -> u32 {
    10
}
fn default_max_values() -> u32 {
    64
}

/// `type = "cardinality"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardinalityConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// A `distinct` (or other count) feature.
    pub feature: String,
    /// Fire when the value is above this, whatever the baseline.
    #[serde(default)]
    pub limit: Option<f64>,
    /// Fire when the value is above `factor` × the key's own moving mean (after warm-up) and
    /// at least `min_value`.
    #[serde(default)]
    pub factor: Option<f64>,
    /// Weight of each sample in the moving mean, in (0, 1].
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Samples per key before `factor` applies.
    #[serde(default = "default_warmup")]
    pub warmup_samples: u32,
    /// `factor` only: the value must also be at least this.
    #[serde(default)]
    pub min_value: f64,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_alpha() -> f64 {
    0.05
}
fn default_warmup() -> u32 {
    20
}

/// `type = "auth_failures"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthFailuresConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// Feature counting failed authentications (e.g. `count` with
    /// `filter = { auth_result = ["failed"] }`).
    pub failures: String,
    /// Feature counting every request of the same window.
    pub requests: String,
    /// Failures in the window that fire (≥ 1).
    pub min_failures: f64,
    /// Share of failed requests that must also be reached, in [0, 1].
    #[serde(default)]
    pub min_ratio: f64,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

/// `type = "peer_percentile"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerPercentileConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// Feature compared (over a window keyed by `identity` unless `peers = "all"`).
    pub feature: String,
    /// Who a key is compared with.
    pub peers: PeerGroup,
    /// Quantile of the *other* peers' values of the previous complete sample, in (0, 1]
    /// (interpolated; lowered to keep `tail_peers` peers above it).
    pub quantile: f64,
    /// Fire when the value is above `factor` × that quantile (≥ 1).
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Peers (with a value, the key itself not counted) the group needs before anyone is
    /// compared.
    pub min_peers: u32,
    /// Peers that may sit above the reference without moving it: the quantile used is at
    /// most `1 − tail_peers / n` of the n other peers, so in a small group p99 is not simply
    /// the maximum (a second attacker, or the heaviest legitimate peer). 0 keeps `quantile`
    /// as is.
    #[serde(default = "default_tail_peers")]
    pub tail_peers: u32,
    /// The value must also be at least this to fire.
    #[serde(default)]
    pub min_value: f64,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_factor() -> f64 {
    1.0
}

/// `type = "cohort"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortConfig {
    /// Detector name (in alerts and decisions).
    pub name: String,
    /// Feature watched (over a window keyed by `identity` unless `peers = "all"`).
    pub feature: String,
    /// The population keys deviate together in.
    pub peers: PeerGroup,
    /// A key deviates when its value is at least `factor` × its own normal (> 1) and above
    /// its usual bursts (three standard deviations of its log-level up).
    #[serde(default = "default_cohort_factor")]
    pub factor: f64,
    /// Weight of each complete sample in a key's normal (a running mean of log(1 + value)).
    #[serde(default = "default_cohort_alpha")]
    pub alpha: f64,
    /// Complete samples a key needs before it can deviate.
    #[serde(default = "default_cohort_warmup")]
    pub warmup_samples: u32,
    /// A deviating value must also be at least this.
    #[serde(default)]
    pub min_value: f64,
    /// A key counts as deviating once it has deviated in this many complete samples (a
    /// leaky count: each sample that does not deviate takes two off): set it past the
    /// window's length in slides, so that one burst (a reconnect flushing a backlog, a
    /// session) is not a deviation, a sustained rise is.
    #[serde(default = "default_cohort_sustain")]
    pub sustain_samples: u32,
    /// A group surges when at least this many of its keys deviate in one round…
    #[serde(default = "default_cohort_min_keys")]
    pub min_keys: u32,
    /// …they are at least this share of the group's keys sampled in that round…
    #[serde(default = "default_cohort_min_share")]
    pub min_share: f64,
    /// …and this many times the group's usual number of deviating keys (a running mean over
    /// rounds, surging ones counting a tenth).
    #[serde(default = "default_cohort_surge")]
    pub surge_factor: f64,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ask the decision policy for.
    #[serde(default)]
    pub action: DetectorAction,
    /// Weight in `combine = "weighted"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_cohort_factor() -> f64 {
    3.0
}
fn default_cohort_alpha() -> f64 {
    0.01
}
fn default_cohort_warmup() -> u32 {
    60
}
fn default_cohort_sustain() -> u32 {
    1
}
fn default_cohort_min_keys() -> u32 {
    5
}
fn default_cohort_min_share() -> f64 {
    0.05
}
fn default_cohort_surge() -> f64 {
    3.0
}

macro_rules! each {
    ($self:expr, $c:ident => $e:expr) => {
        match $self {
            DetectorConfig::EwmaZscore($c) => $e,
            DetectorConfig::Mad($c) => $e,
            DetectorConfig::Cusum($c) => $e,
            DetectorConfig::Threshold($c) => $e,
            DetectorConfig::Novelty($c) => $e,
            DetectorConfig::Cardinality($c) => $e,
            DetectorConfig::AuthFailures($c) => $e,
            DetectorConfig::PeerPercentile($c) => $e,
            DetectorConfig::Cohort($c) => $e,
            DetectorConfig::Kmeans($c)
            | DetectorConfig::Gmm($c)
            | DetectorConfig::OneClassSvm($c)
            | DetectorConfig::IsolationForest($c) => $e,
        }
    };
}

impl DetectorConfig {
    pub fn name(&self) -> &str {
        each!(self, c => &c.name)
    }

    pub fn mode(&self) -> Option<Mode> {
        each!(self, c => c.mode)
    }

    pub fn action(&self) -> DetectorAction {
        each!(self, c => c.action)
    }

    pub fn weight(&self) -> f64 {
        each!(self, c => c.weight)
    }

    /// The `type` as written in pipelines.
    pub fn type_name(&self) -> &'static str {
        match self {
            DetectorConfig::EwmaZscore(_) => "ewma_zscore",
            DetectorConfig::Mad(_) => "mad",
            DetectorConfig::Cusum(_) => "cusum",
            DetectorConfig::Threshold(_) => "threshold",
            DetectorConfig::Novelty(_) => "novelty",
            DetectorConfig::Cardinality(_) => "cardinality",
            DetectorConfig::AuthFailures(_) => "auth_failures",
            DetectorConfig::PeerPercentile(_) => "peer_percentile",
            DetectorConfig::Cohort(_) => "cohort",
            DetectorConfig::Kmeans(_) => "kmeans",
            DetectorConfig::Gmm(_) => "gmm",
            DetectorConfig::OneClassSvm(_) => "one_class_svm",
            DetectorConfig::IsolationForest(_) => "isolation_forest",
        }
    }

    /// The ML detector's config, for `kmeans`, `gmm`, `one_class_svm`, `isolation_forest`.
    pub fn ml(&self) -> Option<&MlConfig> {
        match self {
            DetectorConfig::Kmeans(c)
            | DetectorConfig::Gmm(c)
            | DetectorConfig::OneClassSvm(c)
            | DetectorConfig::IsolationForest(c) => Some(c),
            _ => None,
        }
    }

    /// The features the detector reads, in order, with the key each is configured under.
    pub fn inputs(&self) -> Vec<(&'static str, &str)> {
        match self {
            DetectorConfig::EwmaZscore(c) => vec![("feature", c.feature.as_str())],
            DetectorConfig::Mad(c) => vec![("feature", c.feature.as_str())],
            DetectorConfig::Cusum(c) => vec![("feature", c.feature.as_str())],
            DetectorConfig::Threshold(c) => vec![("feature", c.feature.as_str())],
            DetectorConfig::Novelty(_) => vec![],
            DetectorConfig::Cardinality(c) => vec![("feature", c.feature.as_str())],
            DetectorConfig::AuthFailures(c) => vec![
                ("failures", c.failures.as_str()),
                ("requests", c.requests.as_str()),
            ],
            DetectorConfig::PeerPercentile(c) => vec![("feature", c.feature.as_str())],
            DetectorConfig::Cohort(c) => vec![("feature", c.feature.as_str())],
            DetectorConfig::Kmeans(c)
            | DetectorConfig::Gmm(c)
            | DetectorConfig::OneClassSvm(c)
            | DetectorConfig::IsolationForest(c) => c
                .features
                .iter()
                .map(|f| ("features", f.as_str()))
                .collect(),
        }
    }

    /// The features the detector reads (names only).
    pub fn features(&self) -> Vec<&str> {
        self.inputs().into_iter().map(|(_, f)| f).collect()
    }

    /// Parameter checks that need no other part of the pipeline; every problem is reported
    /// under `at` (e.g. `detector[2]`).
    pub fn check(&self, at: &str, errs: &mut Vec<ConfigError>) {
        let mut bad = |k: &str, why: &str| errs.push(ConfigError::new(format!("{at}.{k}"), why));
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if self.name().trim().is_empty() {
            bad("name", "must not be empty");
        }
        if !non_negative(self.weight()) {
            bad("weight", "must be zero or positive");
        }
        match self {
            DetectorConfig::EwmaZscore(c) => {
                if c.alpha.is_nan() || c.alpha <= 0.0 || c.alpha > 1.0 {
                    bad("alpha", "must be in (0, 1]");
                }
                if !positive(c.threshold) {
                    bad("threshold", "must be a positive number");
                }
                if !positive(c.min_std) {
                    bad("min_std", "must be a positive number");
                }
                if !non_negative(c.min_value) {
                    bad("min_value", "must be zero or positive");
                }
                if !non_negative(c.min_deviation) {
                    bad("min_deviation", "must be zero or positive");
                }
                if !(0.0..1.0).contains(&c.min_rel_std) {
                    bad("min_rel_std", "must be in [0, 1)");
                }
                check_season(
                    (c.period_ms, c.buckets, c.season_alpha, c.season_warmup),
                    &mut bad,
                );
            }
            DetectorConfig::Mad(c) => {
                if !(8..=1024).contains(&c.history) {
                    bad("history", "must be in 8..=1024");
                }
                if c.warmup_samples > c.history {
                    bad("warmup_samples", "must be at most history");
                }
                if !positive(c.threshold) {
                    bad("threshold", "must be a positive number");
                }
                if !positive(c.min_mad) {
                    bad("min_mad", "must be a positive number");
                }
                if !non_negative(c.min_value) {
                    bad("min_value", "must be zero or positive");
                }
                if !(0.0..1.0).contains(&c.min_rel_mad) {
                    bad("min_rel_mad", "must be in [0, 1)");
                }
                check_season(
                    (c.period_ms, c.buckets, c.season_alpha, c.season_warmup),
                    &mut bad,
                );
            }
            DetectorConfig::Cusum(c) => {
                if !(0.0..=1.0).contains(&c.alpha) {
                    bad("alpha", "must be in [0, 1]");
                }
                if !non_negative(c.k) {
                    bad("k", "must be zero or positive");
                }
                if !positive(c.h) {
                    bad("h", "must be a positive number");
                }
                if !positive(c.min_std) {
                    bad("min_std", "must be a positive number");
                }
                if c.warmup_samples < 2 {
                    bad("warmup_samples", "must be at least 2");
                }
                if !(0.0..1.0).contains(&c.min_rel_std) {
                    bad("min_rel_std", "must be in [0, 1)");
                }
                check_season(
                    (c.period_ms, c.buckets, c.season_alpha, c.season_warmup),
                    &mut bad,
                );
            }
            DetectorConfig::Threshold(c) => {
                if c.above.is_none() && c.below.is_none() {
                    bad("above", "set `above`, `below` or both");
                }
                if c.above.is_some_and(|v| !v.is_finite()) {
                    bad("above", "must be a number");
                }
                if c.below.is_some_and(|v| !v.is_finite()) {
                    bad("below", "must be a number");
                }
                if c.alarm_after == 0 {
                    bad("alarm_after", "must be at least 1");
                }
                if c.clear_after == 0 {
                    bad("clear_after", "must be at least 1");
                }
            }
            DetectorConfig::Novelty(c) => {
                if c.min_new == 0 {
                    bad("min_new", "must be at least 1");
                }
                if !(1..=4096).contains(&c.max_values) {
                    bad("max_values", "must be in 1..=4096");
                }
            }
            DetectorConfig::Cardinality(c) => {
                if c.limit.is_none() && c.factor.is_none() {
                    bad("limit", "set `limit`, `factor` or both");
                }
                if c.limit.is_some_and(|v| !non_negative(v)) {
                    bad("limit", "must be zero or positive");
                }
                if c.factor.is_some_and(|v| !(v.is_finite() && v > 1.0)) {
                    bad("factor", "must be greater than 1");
                }
                if c.alpha.is_nan() || c.alpha <= 0.0 || c.alpha > 1.0 {
                    bad("alpha", "must be in (0, 1]");
                }
                if !non_negative(c.min_value) {
                    bad("min_value", "must be zero or positive");
                }
            }
            DetectorConfig::AuthFailures(c) => {
                if !(c.min_failures.is_finite() && c.min_failures >= 1.0) {
                    bad("min_failures", "must be at least 1");
                }
                if !(0.0..=1.0).contains(&c.min_ratio) {
                    bad("min_ratio", "must be in [0, 1]");
                }
                if c.failures == c.requests {
                    bad("requests", "must be another feature than `failures`");
                }
            }
            DetectorConfig::PeerPercentile(c) => {
                if c.quantile.is_nan() || c.quantile <= 0.0 || c.quantile > 1.0 {
                    bad("quantile", "must be in (0, 1]");
                }
                if !(c.factor.is_finite() && c.factor >= 1.0) {
                    bad("factor", "must be at least 1");
                }
                if c.min_peers < 2 {
                    bad("min_peers", "must be at least 2");
                }
                if c.tail_peers >= c.min_peers {
                    bad("tail_peers", "must be below min_peers");
                }
                if !non_negative(c.min_value) {
                    bad("min_value", "must be zero or positive");
                }
            }
            DetectorConfig::Cohort(c) => {
                if !(c.factor.is_finite() && c.factor > 1.0) {
                    bad("factor", "must be above 1");
                }
                if !(c.alpha > 0.0 && c.alpha <= 1.0) {
                    bad("alpha", "must be in (0, 1]");
                }
                if !non_negative(c.min_value) {
                    bad("min_value", "must be zero or positive");
                }
                if c.min_keys < 2 {
                    bad("min_keys", "must be at least 2");
                }
                if c.sustain_samples < 1 {
                    bad("sustain_samples", "must be at least 1");
                }
                if !(0.0..=1.0).contains(&c.min_share) {
                    bad("min_share", "must be in [0, 1]");
                }
                if !(c.surge_factor.is_finite() && c.surge_factor >= 1.0) {
                    bad("surge_factor", "must be at least 1");
                }
            }
            DetectorConfig::Kmeans(c)
            | DetectorConfig::Gmm(c)
            | DetectorConfig::OneClassSvm(c)
            | DetectorConfig::IsolationForest(c) => c.check(&mut bad),
        }
    }
}
