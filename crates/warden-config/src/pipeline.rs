//! Detection pipelines (`pipelines/*.toml`): windows, features, detectors and the decision
//! policy the stream processor runs.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{check_and_parse, parse_toml};
use crate::{ConfigError, ConfigErrors};

/// A detection pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Pipeline name, written in alerts.
    pub name: String,
    /// `enforce` publishes decisions; `shadow` only alerts.
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub source: SourceConfig,
    /// Windows over which features are computed.
    pub window: Vec<WindowConfig>,
    /// Features computed per window key.
    pub feature: Vec<FeatureConfig>,
    /// Detectors scoring features.
    pub detector: Vec<DetectorConfig>,
    pub decision: DecisionConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// Where events come from and how they are batched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Consumer group of the processors running this pipeline.
    #[serde(default = "default_group")]
    pub group: String,
    /// Most events per processed batch.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// Longest wait for a batch to fill, milliseconds.
    #[serde(default = "default_batch_max_wait_ms")]
    pub batch_max_wait_ms: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            group: default_group(),
            batch_max_events: default_batch_max_events(),
            batch_max_wait_ms: default_batch_max_wait_ms(),
        }
    }
}

fn default_group() -> String {
    "warden-processor".into()
}
fn default_batch_max_events() -> usize {
    2048
}
fn default_batch_max_wait_ms() -> u64 {
    50
}

/// A sliding window: features cover the last `size_ms` of event time and are sampled every
/// `slide_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub name: String,
    /// What the window is keyed by.
    pub key: WindowKey,
    /// Window length, milliseconds.
    pub size_ms: u64,
    /// Sampling step, milliseconds; must divide `size_ms`.
    pub slide_ms: u64,
    /// Events older than the watermark by more than this are counted as late and not used.
    #[serde(default = "default_lateness")]
    pub allowed_lateness_ms: u64,
    /// Keys with no event for this long are forgotten, milliseconds (bounds memory).
    #[serde(default = "default_idle")]
    pub idle_expiry_ms: u64,
}

fn default_lateness() -> u64 {
    2_000
}
fn default_idle() -> u64 {
    600_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowKey {
    Identity,
    Tenant,
    Route,
    ClientIp,
}

/// A feature: one number per window key and sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    pub name: String,
    /// Window the feature is computed over.
    pub window: String,
    /// What the feature computes.
    #[serde(rename = "type")]
    pub kind: FeatureKind,
    /// `error_ratio` only: lowest status counted as an error (default 500).
    #[serde(default)]
    pub min_status: Option<u16>,
}

/// What a feature computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Events per second over the window.
    Rate,
    /// Events in the window.
    Count,
    /// Share of events whose status is at least `min_status` (0 when the window is empty).
    ErrorRatio,
    /// Share of events the gateway refused (auth, RBAC, throttling, quarantine, invalid).
    DeniedRatio,
}

impl FeatureConfig {
    /// Lowest status an `error_ratio` feature counts as an error.
    pub fn error_status(&self) -> u16 {
        self.min_status.unwrap_or(500)
    }
}

/// A detector and its parameters, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DetectorConfig {
    /// Exponentially weighted moving average and variance of a feature per key; fires when
    /// the z-score of a sample exceeds `threshold`.
    EwmaZscore(EwmaZscoreConfig),
}

impl DetectorConfig {
    pub fn name(&self) -> &str {
        match self {
            DetectorConfig::EwmaZscore(c) => &c.name,
        }
    }

    pub fn features(&self) -> Vec<&str> {
        match self {
            DetectorConfig::EwmaZscore(c) => vec![c.feature.as_str()],
        }
    }

    pub fn mode(&self) -> Option<Mode> {
        match self {
            DetectorConfig::EwmaZscore(c) => c.mode,
        }
    }
}

/// `type = "ewma_zscore"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EwmaZscoreConfig {
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
    /// Floor of the standard deviation used in the z-score.
    pub min_std: f64,
    /// Per-detector override of the pipeline mode.
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// What happens when detectors fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionConfig {
    /// How long a quarantine lasts, seconds.
    pub quarantine_ttl_s: u64,
    /// After a manual release, the subject is not quarantined again for this long, seconds.
    #[serde(default = "default_cooldown")]
    pub cooldown_s: u64,
    /// Identities never quarantined (alerts are still raised).
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Safety valve: at most this many new quarantines per minute; the rest become alerts.
    #[serde(default = "default_max_per_minute")]
    pub max_quarantines_per_minute: u32,
}

fn default_cooldown() -> u64 {
    300
}
fn default_max_per_minute() -> u32 {
    100
}

impl PipelineConfig {
    /// Load and validate a pipeline file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::from(ConfigError::new("", format!("cannot read: {e}")))
                .with_file(Some(path))
        })?;
        Self::from_toml(&text).map_err(|e| e.with_file(Some(path)))
    }

    /// Parse and validate pipeline TOML.
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        let config: Self = check_and_parse(parse_toml(text)?)?;
        config.validate()?;
        Ok(config)
    }

    pub fn window(&self, name: &str) -> Option<&WindowConfig> {
        self.window.iter().find(|w| w.name == name)
    }

    pub fn feature(&self, name: &str) -> Option<&FeatureConfig> {
        self.feature.iter().find(|f| f.name == name)
    }

    /// Semantic checks; every problem is reported.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        if self.name.trim().is_empty() {
            errs.push(ConfigError::new("name", "must not be empty"));
        }
        if self.source.batch_max_events == 0 {
            errs.push(ConfigError::new(
                "source.batch_max_events",
                "must be at least 1",
            ));
        }
        if self.source.group.trim().is_empty() {
            errs.push(ConfigError::new("source.group", "must not be empty"));
        }
        if self.window.is_empty() {
            errs.push(ConfigError::new("window", "declare at least one window"));
        }
        let mut windows = HashSet::new();
        for (i, w) in self.window.iter().enumerate() {
            let at = |k: &str| format!("window[{i}].{k}");
            if !windows.insert(w.name.as_str()) {
                errs.push(ConfigError::new(
                    at("name"),
                    format!("duplicate window `{}`", w.name),
                ));
            }
            if w.slide_ms == 0 {
                errs.push(ConfigError::new(at("slide_ms"), "must be at least 1"));
            } else if w.size_ms < w.slide_ms || w.size_ms % w.slide_ms != 0 {
                errs.push(ConfigError::new(
                    at("size_ms"),
                    format!("must be a multiple of slide_ms ({})", w.slide_ms),
                ));
            } else if w.size_ms / w.slide_ms > 3600 {
                errs.push(ConfigError::new(
                    at("size_ms"),
                    "at most 3600 slides per window",
                ));
            }
            if w.idle_expiry_ms < w.size_ms {
                errs.push(ConfigError::new(
                    at("idle_expiry_ms"),
                    "must be at least size_ms",
                ));
            }
        }
        let mut features: HashMap<&str, ()> = HashMap::new();
        for (i, f) in self.feature.iter().enumerate() {
            if features.insert(f.name.as_str(), ()).is_some() {
                errs.push(ConfigError::new(
                    format!("feature[{i}].name"),
                    format!("duplicate feature `{}`", f.name),
                ));
            }
            if f.min_status.is_some() && f.kind != FeatureKind::ErrorRatio {
                errs.push(ConfigError::new(
                    format!("feature[{i}].min_status"),
                    "only applies to `type = \"error_ratio\"`",
                ));
            }
            if !windows.contains(f.window.as_str()) {
                errs.push(ConfigError::new(
                    format!("feature[{i}].window"),
                    format!("unknown window `{}`", f.window),
                ));
            }
        }
        let mut detectors = HashSet::new();
        for (i, d) in self.detector.iter().enumerate() {
            if !detectors.insert(d.name()) {
                errs.push(ConfigError::new(
                    format!("detector[{i}].name"),
                    format!("duplicate detector `{}`", d.name()),
                ));
            }
            for f in d.features() {
                if !features.contains_key(f) {
                    errs.push(ConfigError::new(
                        format!("detector[{i}].feature"),
                        format!("unknown feature `{f}`"),
                    ));
                }
            }
            match d {
                DetectorConfig::EwmaZscore(c) => {
                    if c.alpha.is_nan() || c.alpha <= 0.0 || c.alpha > 1.0 {
                        errs.push(ConfigError::new(
                            format!("detector[{i}].alpha"),
                            "must be in (0, 1]",
                        ));
                    }
                    if !c.threshold.is_finite() || c.threshold <= 0.0 {
                        errs.push(ConfigError::new(
                            format!("detector[{i}].threshold"),
                            "must be a positive number",
                        ));
                    }
                    if !c.min_std.is_finite() || c.min_std <= 0.0 {
                        errs.push(ConfigError::new(
                            format!("detector[{i}].min_std"),
                            "must be a positive number",
                        ));
                    }
                    if !c.min_value.is_finite() || c.min_value < 0.0 {
                        errs.push(ConfigError::new(
                            format!("detector[{i}].min_value"),
                            "must be zero or positive",
                        ));
                    }
                }
            }
        }
        if self.detector.is_empty() {
            errs.push(ConfigError::new(
                "detector",
                "declare at least one detector",
            ));
        }
        if self.decision.quarantine_ttl_s == 0 {
            errs.push(ConfigError::new(
                "decision.quarantine_ttl_s",
                "must be at least 1",
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }
}
