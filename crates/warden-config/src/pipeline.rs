//! Detection pipelines (`pipelines/*.toml`): windows, features, detectors and the decision
//! policy the stream processor runs. Explained key by key in `pipelines/README.md`.

mod decision;
mod detector;
mod feature;
mod window;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use decision::{Combine, DecisionConfig};
pub use detector::{
    AuthFailuresConfig, CardinalityConfig, CohortConfig, CusumConfig, DetectorAction,
    DetectorConfig, Direction, EwmaZscoreConfig, MAX_ML_FEATURES, MadConfig, MlConfig,
    NoveltyConfig, NoveltyField, PeerGroup, PeerPercentileConfig, ThresholdConfig,
};
pub use feature::{
    CountFeature, Cyclic, ErrorRatioFeature, FeatureConfig, Field, FieldFeature, FilterConfig,
    HourOfDayFeature, PercentileFeature, RatioFeature, SqlFeature,
};
pub use window::{Sampling, WindowConfig, WindowKey};

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
    /// Where events come from and how they are batched.
    #[serde(default)]
    pub source: SourceConfig,
    /// Windows over which features are computed.
    pub window: Vec<WindowConfig>,
    /// Features computed per window key.
    pub feature: Vec<FeatureConfig>,
    /// Detectors scoring features.
    pub detector: Vec<DetectorConfig>,
    /// What happens when detectors fire.
    pub decision: DecisionConfig,
}

/// Whether decisions are published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Publish decisions (quarantines, throttles) and alerts.
    #[default]
    Enforce,
    /// Alerts only.
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
    /// Under backlog (full batches), how long (event time or the processor's clock, whichever
    /// passes first) between provisional scorings of the keys that batches touched,
    /// milliseconds; `0` scores after every batch.
    /// A batch that is not full (the processor has caught up) is always scored at once.
    #[serde(default = "default_provisional_every_ms")]
    pub provisional_every_ms: u64,
    /// Under backlog, a touched key is scored provisionally only once it has had this many
    /// events since its last provisional scoring; a key with fewer waits for its complete
    /// sample (at most one slide later). `1` scores every touched key.
    #[serde(default = "default_provisional_min_events")]
    pub provisional_min_events: u32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            group: default_group(),
            batch_max_events: default_batch_max_events(),
            batch_max_wait_ms: default_batch_max_wait_ms(),
            provisional_every_ms: default_provisional_every_ms(),
            provisional_min_events: default_provisional_min_events(),
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
fn default_provisional_every_ms() -> u64 {
    100
}
fn default_provisional_min_events() -> u32 {
    2
}
/// Longest `source.provisional_every_ms`: a decision may wait this long under backlog.
pub const MAX_PROVISIONAL_EVERY_MS: u64 = 1000;

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
        self.feature.iter().find(|f| f.name() == name)
    }

    /// The window a detector runs on: its features' window, or its own `window`.
    pub fn detector_window(&self, d: &DetectorConfig) -> Option<&WindowConfig> {
        match d {
            DetectorConfig::Novelty(c) => self.window(&c.window),
            _ => {
                let f = self.feature(d.features().first()?)?;
                self.window(f.window())
            }
        }
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
        if self.source.provisional_every_ms > MAX_PROVISIONAL_EVERY_MS {
            errs.push(ConfigError::new(
                "source.provisional_every_ms",
                format!(
                    "must be at most {MAX_PROVISIONAL_EVERY_MS} (decisions would wait longer under backlog)"
                ),
            ));
        }
        if self.source.provisional_min_events == 0 {
            errs.push(ConfigError::new(
                "source.provisional_min_events",
                "must be at least 1",
            ));
        }
        if self.source.group.trim().is_empty() {
            errs.push(ConfigError::new("source.group", "must not be empty"));
        }
        if self.window.is_empty() {
            errs.push(ConfigError::new("window", "declare at least one window"));
        }
        let mut windows: HashMap<&str, &WindowConfig> = HashMap::new();
        for (i, w) in self.window.iter().enumerate() {
            if windows.insert(w.name.as_str(), w).is_some() {
                errs.push(ConfigError::new(
                    format!("window[{i}].name"),
                    format!("duplicate window `{}`", w.name),
                ));
            }
            w.check(i, &mut errs);
        }
        let mut features: HashMap<&str, &FeatureConfig> = HashMap::new();
        for (i, f) in self.feature.iter().enumerate() {
            if features.insert(f.name(), f).is_some() {
                errs.push(ConfigError::new(
                    format!("feature[{i}].name"),
                    format!("duplicate feature `{}`", f.name()),
                ));
            }
            if !windows.contains_key(f.window()) {
                errs.push(ConfigError::new(
                    format!("feature[{i}].window"),
                    format!("unknown window `{}`", f.window()),
                ));
            }
            f.check(i, &mut errs);
        }
        let mut detectors = HashSet::new();
        for (i, d) in self.detector.iter().enumerate() {
            let at = format!("detector[{i}]");
            if !detectors.insert(d.name()) {
                errs.push(ConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate detector `{}`", d.name()),
                ));
            }
            d.check(&at, &mut errs);
            self.check_references(&at, d, &windows, &features, &mut errs);
        }
        if self.detector.is_empty() {
            errs.push(ConfigError::new(
                "detector",
                "declare at least one detector",
            ));
        }
        self.decision.check(self.detector.len(), &mut errs);
        for (i, name) in self.decision.fleet_context.iter().enumerate() {
            if !detectors.contains(name.as_str()) {
                errs.push(ConfigError::new(
                    format!("decision.fleet_context[{i}]"),
                    format!("unknown detector `{name}`"),
                ));
            }
        }
        if let Some(name) = &self.decision.throttle_baseline {
            match features.get(name.as_str()) {
                None => errs.push(ConfigError::new(
                    "decision.throttle_baseline",
                    format!("unknown feature `{name}`"),
                )),
                Some(f) if f.type_name() != "rate" => errs.push(ConfigError::new(
                    "decision.throttle_baseline",
                    format!("feature `{name}` is a `{}`, not a `rate`", f.type_name()),
                )),
                Some(f) => {
                    let key = windows.get(f.window()).map(|w| w.key);
                    if key.is_some_and(|k| k == WindowKey::IdentityRoute || k == WindowKey::Route) {
                        errs.push(ConfigError::new(
                            "decision.throttle_baseline",
                            format!(
                                "feature `{name}` is over a window keyed by {}: a throttle's subject is an identity, address or tenant",
                                key.map_or("", |k| k.as_str())
                            ),
                        ));
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }

    fn check_references(
        &self,
        at: &str,
        d: &DetectorConfig,
        windows: &HashMap<&str, &WindowConfig>,
        features: &HashMap<&str, &FeatureConfig>,
        errs: &mut Vec<ConfigError>,
    ) {
        let mut window_of_inputs: Option<&str> = None;
        for (key, name) in d.inputs() {
            match features.get(name) {
                None => errs.push(ConfigError::new(
                    format!("{at}.{key}"),
                    format!("unknown feature `{name}`"),
                )),
                Some(f) => match window_of_inputs {
                    None => window_of_inputs = Some(f.window()),
                    Some(w) if w != f.window() => errs.push(ConfigError::new(
                        format!("{at}.{key}"),
                        format!(
                            "feature `{name}` is over window `{}`, the detector's other inputs over `{w}`",
                            f.window()
                        ),
                    )),
                    Some(_) => {}
                },
            }
        }
        match d {
            DetectorConfig::Novelty(c) if !windows.contains_key(c.window.as_str()) => {
                errs.push(ConfigError::new(
                    format!("{at}.window"),
                    format!("unknown window `{}`", c.window),
                ));
            }
            DetectorConfig::PeerPercentile(PeerPercentileConfig { peers, .. })
            | DetectorConfig::Cohort(CohortConfig { peers, .. }) => {
                let key = window_of_inputs.and_then(|w| windows.get(w)).map(|w| w.key);
                if let Some(key) = key
                    && *peers != PeerGroup::All
                    && !key.is_per_identity()
                {
                    errs.push(ConfigError::new(
                        format!("{at}.peers"),
                        format!(
                            "peers by device type or tenant need a window keyed by identity, not `{}`",
                            key.as_str()
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
}
