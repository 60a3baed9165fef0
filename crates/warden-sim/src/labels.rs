//! The labels file a run writes (JSON): the scenario, when each attack ran and who the
//! attackers were, and what the client saw of each attacker (sent, got through, first
//! refused). `warden eval` joins it with the alerts and decisions the pipeline produced.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use warden_event::Subject;

use crate::scenario::{AttackClass, Expect, ScenarioExpect};

/// Version of the labels format.
pub const LABELS_VERSION: u32 = 1;

/// How a run was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Real HTTP through a gateway, in real time.
    Live,
    /// Events generated without a gateway, in simulated time.
    Accelerated,
}

/// Labels of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// Format version ([`LABELS_VERSION`]).
    pub v: u32,
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub mode: RunMode,
    /// The gateway URL (live) or the Parquet file (accelerated), if any.
    pub target: Option<String>,
    pub fleet: FleetLabel,
    /// Start and end of the run, nanoseconds since the Unix epoch (simulated time in
    /// accelerated runs).
    pub started_at: i64,
    pub ended_at: i64,
    pub expect: ScenarioExpect,
    pub attacks: Vec<AttackLabel>,
    pub summary: RunSummary,
}

/// The fleet of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetLabel {
    pub devices: usize,
    pub by_type: BTreeMap<String, usize>,
    /// See [`crate::Fleet::fingerprint`].
    pub fingerprint: String,
}

/// One attack of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackLabel {
    pub name: String,
    pub class: AttackClass,
    /// Window, nanoseconds since the Unix epoch.
    pub start_ns: i64,
    pub end_ns: i64,
    pub expect: Expect,
    pub attackers: Vec<AttackerLabel>,
    /// Subjects that are victims, not attackers: a quarantine of them is neither a detection
    /// nor a false quarantine.
    pub victims: Vec<Subject>,
}

/// One attacker and what the client saw of its requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackerLabel {
    /// Subjects whose alert or quarantine counts as detecting this attacker.
    pub subjects: Vec<Subject>,
    /// Attack requests sent.
    pub sent: u64,
    /// When the first attack request was sent.
    pub first_sent_ns: Option<i64>,
    /// Attack requests the backend answered (they got through the gateway).
    pub through: u64,
    /// Of those, the ones answered before the first refusal: what the attacker got before
    /// the quarantine was enforced.
    pub through_before_refused: u64,
    /// Attack requests the gateway refused with `403` (quarantine).
    pub refused: u64,
    /// When the first refusal (`403`) of an attack request came back: the quarantine
    /// enforced at the gateway.
    pub first_refused_ns: Option<i64>,
}

/// What the client saw of a run, by class of sender.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSummary {
    /// Requests sent.
    pub sent: u64,
    /// Requests that got no response (connection errors, timeouts).
    pub failed: u64,
    /// Requests sent more than a second after their planned time (the machine or the
    /// gateway could not keep up).
    pub late: u64,
    /// Responses by sender class (a device type for benign traffic, the attack name for
    /// attacks), then by status.
    pub by_class: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Requests without a response, by sender class.
    pub failed_by_class: BTreeMap<String, u64>,
    /// Requests without a response, by cause (`timeout`, `connect`, `body`, `request`).
    pub failures: BTreeMap<String, u64>,
    /// Benign identities (not used by any attack) the gateway refused with `403`, and how
    /// often.
    pub benign_refused: BTreeMap<String, u64>,
}

impl RunSummary {
    /// Responses to the class `class`.
    pub fn total(&self, class: &str) -> u64 {
        self.by_class.get(class).map_or(0, |m| m.values().sum())
    }
}

/// Errors reading or writing a labels file.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a labels file: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: labels format version {found}, this build reads {LABELS_VERSION}")]
    Version { path: String, found: u32 },
}

impl Labels {
    /// Write as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), LabelsError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| LabelsError::Json {
            path: path.display().to_string(),
            source,
        })?;
        std::fs::write(path, text).map_err(|source| LabelsError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Read a labels file.
    pub fn read(path: &Path) -> Result<Self, LabelsError> {
        let p = || path.display().to_string();
        let text = std::fs::read(path).map_err(|source| LabelsError::Io { path: p(), source })?;
        let labels: Labels = serde_json::from_slice(&text)
            .map_err(|source| LabelsError::Json { path: p(), source })?;
        if labels.v != LABELS_VERSION {
            return Err(LabelsError::Version {
                path: p(),
                found: labels.v,
            });
        }
        Ok(labels)
    }

    /// Every subject that is an attacker or a victim of some attack of this run.
    pub fn involved(&self) -> impl Iterator<Item = &Subject> {
        self.attacks.iter().flat_map(|a| {
            a.attackers
                .iter()
                .flat_map(|x| x.subjects.iter())
                .chain(a.victims.iter())
        })
    }
}
