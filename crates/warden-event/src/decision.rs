use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Versioned;

/// What to enforce on a subject (topic `warden.decisions`, key = [`Subject::key`], compacted).
///
/// Applying a decision twice changes nothing: the latest decision per subject wins, and a
/// quarantine whose `until` has passed is no longer enforced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Schema version of this object.
    #[serde(default = "crate::default_version")]
    pub v: u32,
    /// Unique id of the decision.
    pub id: String,
    pub subject: Subject,
    pub action: Action,
    /// End of enforcement, nanoseconds since the Unix epoch (`null` for releases).
    pub until: Option<i64>,
    /// Human-readable reason.
    pub reason: String,
    /// Detector (or `admin`/`dashboard`) that caused the decision.
    pub detector: String,
    /// Score that made the detector fire (0 for manual decisions).
    pub score: f64,
    /// Evidence: feature values, baseline and threshold.
    pub evidence: serde_json::Value,
    /// When the decision was made, nanoseconds since the Unix epoch.
    pub decided_at: i64,
    /// For a `throttle`: the rate the subject is held to, set relative to its normal rate by
    /// the processor (absent: the gateway's configured `limits.throttled`). Version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<ThrottleLimit>,
}

/// The rate a throttled subject is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThrottleLimit {
    /// Sustained requests per second.
    pub per_s: f64,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Versioned for Decision {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Decision {
    /// The strings listed under `key` in the evidence (e.g. `detectors`), empty when absent.
    pub fn evidence_strings(&self, key: &str) -> Vec<String> {
        self.evidence
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether this decision restricts its subject at time `now_ns`.
    pub fn is_active(&self, now_ns: i64) -> bool {
        match self.action {
            Action::Release => false,
            Action::Quarantine | Action::Throttle => self.until.is_none_or(|u| u > now_ns),
        }
    }
}

/// Who a decision applies to.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub kind: SubjectKind,
    pub value: String,
}

impl Subject {
    pub fn identity(value: impl Into<String>) -> Self {
        Self {
            kind: SubjectKind::Identity,
            value: value.into(),
        }
    }

    /// The bus key: `kind:value`, so the compacted topic keeps one decision per subject.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.value)
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.value)
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Identity,
    Ip,
    ApiKey,
    Tenant,
    /// A route (alerts only: routes are never quarantined).
    Route,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Identity => "identity",
            SubjectKind::Ip => "ip",
            SubjectKind::ApiKey => "api_key",
            SubjectKind::Tenant => "tenant",
            SubjectKind::Route => "route",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Quarantine,
    Throttle,
    Release,
}
