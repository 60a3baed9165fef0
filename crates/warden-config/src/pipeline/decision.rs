//! `[decision]`: from detector firings to quarantines, throttles and alerts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// What happens when detectors fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionConfig {
    /// How firings of different detectors on one subject combine into an enforcement.
    #[serde(default)]
    pub combine: Combine,
    /// `combine = "weighted"`: enforce when the weights of the distinct detectors that fired
    /// on the subject within `evidence_window_s` add up to at least this.
    #[serde(default = "default_min_score")]
    pub min_score: f64,
    /// `combine = "k_of_n"`: enforce when at least this many distinct detectors fired on the
    /// subject within `evidence_window_s`.
    #[serde(default = "default_k")]
    pub k: u32,
    /// How long a firing counts as evidence against its subject, seconds.
    #[serde(default = "default_evidence_window")]
    pub evidence_window_s: u64,
    /// Minimum evidence: firings (at distinct processing times) of the subject within
    /// `evidence_window_s` before anything is enforced.
    #[serde(default = "one")]
    pub min_firings: u32,
    /// How long a first quarantine lasts, seconds.
    pub quarantine_ttl_s: u64,
    /// Repeat offenders: the n-th quarantine within `offense_memory_s` lasts
    /// `quarantine_ttl_s × escalation_factor^(n−1)` (≥ 1; 1 disables escalation).
    #[serde(default = "default_escalation")]
    pub escalation_factor: f64,
    /// Longest quarantine escalation may reach, seconds.
    #[serde(default = "default_max_ttl")]
    pub max_quarantine_ttl_s: u64,
    /// How long a quarantine counts as a previous offense, seconds.
    #[serde(default = "default_offense_memory")]
    pub offense_memory_s: u64,
    /// How long a throttle lasts, seconds.
    #[serde(default = "default_throttle_ttl")]
    pub throttle_ttl_s: u64,
    /// Requests per second a throttled subject is allowed when its normal rate is not known
    /// (no `throttle_baseline`, or a subject too new to have one).
    #[serde(default = "default_throttle_rate")]
    pub throttle_rate_per_s: f64,
    /// The `rate` feature whose long-run level per key is a subject's normal rate: a throttle
    /// then holds its subject to `throttle_rate_factor` × that rate (at least
    /// `throttle_min_rate_per_s`), so it bites at any scale — a fixed rate is far above what
    /// a slow device sends and far below what a busy one does. The level is a slow moving
    /// average (memory ≈ 30 minutes of samples) of the key's complete samples, not learned
    /// while the subject is under a decision. The decision carries the rate (`limit`) and
    /// every gateway enforces it.
    #[serde(default)]
    pub throttle_baseline: Option<String>,
    /// Multiple of the subject's normal rate a throttle allows (e.g. 1: its usual pace, so an
    /// identity scraping at twice its rate loses half its requests).
    #[serde(default = "default_throttle_factor")]
    pub throttle_rate_factor: f64,
    /// Lowest rate a relative throttle sets, requests per second.
    #[serde(default = "default_throttle_min_rate")]
    pub throttle_min_rate_per_s: f64,
    /// Requests a throttled subject may send at once.
    #[serde(default = "default_throttle_burst")]
    pub throttle_burst: u32,
    /// After a manual release, the subject is not enforced on again for this long, seconds.
    #[serde(default = "default_cooldown")]
    pub cooldown_s: u64,
    /// Subjects never enforced on (alerts are still raised): a bare value (any kind, e.g. an
    /// identity) or `kind:value` (`identity:dev-1`, `ip:10.0.0.7`, `tenant:acme`).
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Safety valve: at most this many new quarantines per minute; the rest become alerts.
    #[serde(default = "default_max_per_minute")]
    pub max_quarantines_per_minute: u32,
    /// Repeated alerts for one subject and detector without a new action are suppressed for
    /// this long, seconds.
    #[serde(default = "default_alert_interval")]
    pub alert_interval_s: u64,
    /// Detectors judged in fleet context: when many keys of the window fire the same one
    /// within `evidence_window_s` — at least `fleet_min_subjects` and `fleet_share` of the
    /// window's live keys — it is the fleet doing something together (a firmware rollout's
    /// chunked downloads, a reconnect storm), not one device misbehaving, and their firings
    /// only alert. To let the fleet show itself, a subject is enforced on by these detectors
    /// only after firing for `fleet_grace_s`. Meant for the slow, peer-relative detectors
    /// (breadth, volume), not for floods.
    #[serde(default)]
    pub fleet_context: Vec<String>,
    /// Share of a window's live keys firing one fleet-context detector at once that makes it
    /// fleet-wide.
    #[serde(default = "default_fleet_share")]
    pub fleet_share: f64,
    /// Fewest keys firing one fleet-context detector at once that can be fleet-wide.
    #[serde(default = "default_fleet_min")]
    pub fleet_min_subjects: u32,
    /// How long a fleet-context detector must keep firing on a subject before it is
    /// enforced on, seconds.
    #[serde(default = "default_fleet_grace")]
    pub fleet_grace_s: u64,
}

/// How detector firings on one subject combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Any one enforcing detector is enough.
    #[default]
    Any,
    /// Weights of the detectors that fired add up to `min_score`.
    Weighted,
    /// At least `k` distinct detectors fired.
    KOfN,
}

fn one() -> u32 {
    1
}
fn default_min_score() -> f64 {
    1.0
}
fn default_k() -> u32 {
    2
}
fn default_evidence_window() -> u64 {
    120
}
fn default_escalation() -> f64 {
    2.0
}
fn default_max_ttl() -> u64 {
    86_400
}
fn default_offense_memory() -> u64 {
    86_400
}
fn default_throttle_ttl() -> u64 {
    300
}
fn default_throttle_rate() -> f64 {
    1.0
}
fn default_throttle_factor() -> f64 {
    1.0
}
fn default_throttle_min_rate() -> f64 {
    0.05
}
fn default_throttle_burst() -> u32 {
    5
}
fn default_cooldown() -> u64 {
    300
}
fn default_max_per_minute() -> u32 {
    100
}
fn default_alert_interval() -> u64 {
    60
}
fn default_fleet_share() -> f64 {
    0.02
}
fn default_fleet_min() -> u32 {
    5
}
fn default_fleet_grace() -> u64 {
    30
}

impl DecisionConfig {
    /// A config with the defaults and the given quarantine TTL.
    pub fn with_ttl(quarantine_ttl_s: u64) -> Self {
        Self {
            combine: Combine::Any,
            min_score: default_min_score(),
            k: default_k(),
            evidence_window_s: default_evidence_window(),
            min_firings: 1,
            quarantine_ttl_s,
            escalation_factor: default_escalation(),
            max_quarantine_ttl_s: default_max_ttl(),
            offense_memory_s: default_offense_memory(),
            throttle_ttl_s: default_throttle_ttl(),
            throttle_rate_per_s: default_throttle_rate(),
            throttle_baseline: None,
            throttle_rate_factor: default_throttle_factor(),
            throttle_min_rate_per_s: default_throttle_min_rate(),
            throttle_burst: default_throttle_burst(),
            cooldown_s: default_cooldown(),
            allowlist: Vec::new(),
            max_quarantines_per_minute: default_max_per_minute(),
            alert_interval_s: default_alert_interval(),
            fleet_context: Vec::new(),
            fleet_share: default_fleet_share(),
            fleet_min_subjects: default_fleet_min(),
            fleet_grace_s: default_fleet_grace(),
        }
    }

    pub(crate) fn check(&self, detectors: usize, errs: &mut Vec<ConfigError>) {
        let mut bad = |k: &str, why: String| {
            errs.push(ConfigError::new(format!("decision.{k}"), why));
        };
        if self.quarantine_ttl_s == 0 {
            bad("quarantine_ttl_s", "must be at least 1".into());
        }
        if self.throttle_ttl_s == 0 {
            bad("throttle_ttl_s", "must be at least 1".into());
        }
        if self.max_quarantine_ttl_s < self.quarantine_ttl_s {
            bad(
                "max_quarantine_ttl_s",
                "must be at least quarantine_ttl_s".into(),
            );
        }
        if !(self.escalation_factor.is_finite() && self.escalation_factor >= 1.0) {
            bad("escalation_factor", "must be at least 1".into());
        }
        if !(self.throttle_rate_per_s.is_finite() && self.throttle_rate_per_s > 0.0) {
            bad("throttle_rate_per_s", "must be a positive number".into());
        }
        if !(self.throttle_rate_factor.is_finite() && self.throttle_rate_factor > 0.0) {
            bad("throttle_rate_factor", "must be a positive number".into());
        }
        if !(self.throttle_min_rate_per_s.is_finite() && self.throttle_min_rate_per_s > 0.0) {
            bad(
                "throttle_min_rate_per_s",
                "must be a positive number".into(),
            );
        }
        if self.throttle_burst == 0 {
            bad("throttle_burst", "must be at least 1".into());
        }
        if !(self.fleet_share.is_finite() && self.fleet_share > 0.0 && self.fleet_share <= 1.0) {
            bad("fleet_share", "must be in (0, 1]".into());
        }
        if self.fleet_min_subjects < 2 {
            bad("fleet_min_subjects", "must be at least 2".into());
        }
        if self.min_firings == 0 {
            bad("min_firings", "must be at least 1".into());
        }
        if self.evidence_window_s == 0 {
            bad("evidence_window_s", "must be at least 1".into());
        }
        match self.combine {
            Combine::Any => {}
            Combine::Weighted => {
                if !(self.min_score.is_finite() && self.min_score > 0.0) {
                    bad("min_score", "must be a positive number".into());
                }
            }
            Combine::KOfN => {
                if self.k == 0 || self.k as usize > detectors.max(1) {
                    bad(
                        "k",
                        format!("must be between 1 and the number of detectors ({detectors})"),
                    );
                }
            }
        }
        for (i, a) in self.allowlist.iter().enumerate() {
            if a.trim().is_empty() {
                bad(&format!("allowlist[{i}]"), "must not be empty".into());
            }
        }
    }
}
