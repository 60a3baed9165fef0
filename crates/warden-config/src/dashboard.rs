//! The console (`[dashboard]`): where it listens and who may use it.

use std::collections::HashSet;
use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::policy::is_sha256_hex;

/// The dashboard endpoint (the operator console).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// Address of the dashboard listener.
    pub listen: SocketAddr,
    /// Recent alerts kept for display.
    pub max_alerts: usize,
    /// Who may sign in. Without operators nobody can: every page but the sign-in page and
    /// the health probes is refused (`warden up --demo` makes a one-time operator).
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    /// A session ends after this long without a request, seconds.
    #[serde(default = "default_session_idle")]
    pub session_idle_s: u64,
    /// And this long after sign-in in any case, seconds.
    #[serde(default = "default_session_max")]
    pub session_max_s: u64,
    /// Mark the session cookie `Secure`: browsers send it over HTTPS, and to `localhost`.
    /// Turn off only behind a TLS-terminating proxy on a trusted network.
    #[serde(default = "yes")]
    pub secure_cookie: bool,
}

fn default_session_idle() -> u64 {
    3_600
}
fn default_session_max() -> u64 {
    12 * 3_600
}
fn yes() -> bool {
    true
}

/// One operator of the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Who it is (in audit records and the releases it makes).
    pub name: String,
    /// What it may do.
    pub role: ConsoleRole,
    /// SHA-256 of its sign-in token, lowercase hex (`printf %s TOKEN | sha256sum`). The token
    /// also works as `Authorization: Bearer TOKEN` on the JSON API (scripts, `warden eval`).
    pub token_sha256: String,
}

/// What an operator may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleRole {
    /// Read everything.
    Viewer,
    /// Read, release and quarantine subjects.
    Operator,
}

impl DashboardConfig {
    pub(crate) fn check(&self, errs: &mut Vec<ConfigError>) {
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        for (i, o) in self.operators.iter().enumerate() {
            let at = |k: &str| format!("dashboard.operators[{i}].{k}");
            if o.name.trim().is_empty() {
                errs.push(ConfigError::new(at("name"), "must not be empty"));
            } else if !names.insert(o.name.as_str()) {
                errs.push(ConfigError::new(at("name"), "is already used"));
            }
            if !is_sha256_hex(&o.token_sha256) {
                errs.push(ConfigError::new(
                    at("token_sha256"),
                    "must be 64 lowercase hex digits (the SHA-256 of the token)",
                ));
            } else if !hashes.insert(o.token_sha256.as_str()) {
                errs.push(ConfigError::new(
                    at("token_sha256"),
                    "is another operator's token",
                ));
            }
        }
        if self.session_idle_s == 0 {
            errs.push(ConfigError::new(
                "dashboard.session_idle_s",
                "must be at least 1",
            ));
        }
        if self.session_max_s < self.session_idle_s {
            errs.push(ConfigError::new(
                "dashboard.session_max_s",
                "must be at least session_idle_s",
            ));
        }
    }
}
