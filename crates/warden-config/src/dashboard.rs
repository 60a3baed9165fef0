//! The console (`[dashboard]`): where it listens and who may use it.

use std::collections::HashSet;
use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;
pub use crate::oidc::OidcConfig;
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
    /// Signed webhooks that receive new alerts and decisions (SIEM, on-call).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Syslog receivers (RFC 5424) that receive new alerts and decisions (SIEM).
    #[serde(default)]
    pub syslog: Vec<SyslogConfig>,
    /// Sign-in with the organisation's OpenID Connect provider, besides operator tokens.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

/// A syslog receiver: each new alert at or above a severity, and each decision, as one RFC 5424
/// message (facility `facility`, severity from the alert's: high → critical, medium → warning,
/// low → notice; decisions → warning, releases → notice) whose text is JSON or CEF.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Name in logs and metrics.
    pub name: String,
    /// `udp://HOST:PORT` (one datagram per message, RFC 5426) or `tcp://HOST:PORT` (octet
    /// counted frames, RFC 6587; reconnected on failure).
    pub url: String,
    /// The message text: `json` (the webhook body) or `cef` (ArcSight Common Event Format).
    #[serde(default)]
    pub format: SyslogFormat,
    /// Syslog facility, 0 to 23 (default 10, security/authorization).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// HOSTNAME field of the messages (default: the `HOSTNAME` environment variable, else `-`).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Lowest alert severity delivered: `low`, `medium` or `high`.
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    /// Also deliver decisions (quarantine, throttle, release).
    #[serde(default = "yes")]
    pub decisions: bool,
    /// Attempts per message before it is dead-lettered (TCP reconnects between them, backing
    /// off 0.5 s, 1 s, 2 s …, at most 30 s).
    #[serde(default = "default_syslog_attempts")]
    pub max_attempts: u32,
    /// Per-attempt timeout (connect and write), milliseconds.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
    /// Messages queued for this receiver before new ones are dead-lettered.
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
}

/// The text of a syslog message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyslogFormat {
    /// `{"type":"alert","alert":{…}}` or `{"type":"decision","decision":{…}}`.
    #[default]
    Json,
    /// `CEF:0|Warden|Warden|VERSION|ID|NAME|SEVERITY|EXTENSIONS`.
    Cef,
}

fn default_facility() -> u8 {
    10
}
fn default_syslog_attempts() -> u32 {
    3
}

/// A webhook receiving every new alert at or above a severity, and every decision, as JSON
/// `POST`s signed with HMAC-SHA256 (`X-Warden-Signature: sha256=HEX` over
/// `TIMESTAMP.BODY`, the timestamp in `X-Warden-Timestamp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name in logs and metrics.
    pub name: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Environment variable holding the HMAC secret (never the secret itself in the file)…
    #[serde(default)]
    pub secret_env: Option<String>,
    /// …or a file holding it (e.g. a Docker secret); exactly one of the two. Surrounding
    /// whitespace is ignored.
    #[serde(default)]
    pub secret_file: Option<String>,
    /// Lowest alert severity delivered: `low`, `medium` or `high`.
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    /// Also deliver decisions (quarantine, throttle, release).
    #[serde(default = "yes")]
    pub decisions: bool,
    /// Per-attempt timeout, milliseconds.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
    /// Attempts before a notification is given up and counted as dead-lettered (backing off
    /// 0.5 s, 1 s, 2 s … between them, at most 30 s).
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
    /// Notifications queued for this webhook before new ones are dead-lettered.
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
}

fn default_min_severity() -> String {
    "medium".into()
}
fn default_webhook_timeout() -> u64 {
    5_000
}
fn default_webhook_attempts() -> u32 {
    6
}
fn default_webhook_queue() -> usize {
    10_000
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
        let mut hook_names = HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let at = |k: &str| format!("dashboard.webhooks[{i}].{k}");
            if w.name.trim().is_empty() || !hook_names.insert(w.name.as_str()) {
                errs.push(ConfigError::new(at("name"), "must be non-empty and unique"));
            }
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                errs.push(ConfigError::new(
                    at("url"),
                    "must be an http:// or https:// URL",
                ));
            }
            if w.secret_env.is_some() == w.secret_file.is_some() {
                errs.push(ConfigError::new(
                    at("secret_env"),
                    "set exactly one of secret_env and secret_file (where the HMAC secret is)",
                ));
            }
            if !matches!(w.min_severity.as_str(), "low" | "medium" | "high") {
                errs.push(ConfigError::new(
                    at("min_severity"),
                    "must be low, medium or high",
                ));
            }
            if w.max_attempts == 0 || w.timeout_ms == 0 || w.queue == 0 {
                errs.push(ConfigError::new(
                    at("max_attempts"),
                    "max_attempts, timeout_ms and queue must be at least 1",
                ));
            }
        }
        for (i, w) in self.syslog.iter().enumerate() {
            let at = |k: &str| format!("dashboard.syslog[{i}].{k}");
            if w.name.trim().is_empty() || !hook_names.insert(w.name.as_str()) {
                errs.push(ConfigError::new(
                    at("name"),
                    "must be non-empty and unique among webhooks and syslog receivers",
                ));
            }
            let target = w
                .url
                .strip_prefix("udp://")
                .or_else(|| w.url.strip_prefix("tcp://"));
            if !target.is_some_and(|t| {
                t.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
            }) {
                errs.push(ConfigError::new(
                    at("url"),
                    "must be udp://HOST:PORT or tcp://HOST:PORT",
                ));
            }
            if w.facility > 23 {
                errs.push(ConfigError::new(at("facility"), "must be 0 to 23"));
            }
            if !matches!(w.min_severity.as_str(), "low" | "medium" | "high") {
                errs.push(ConfigError::new(
                    at("min_severity"),
                    "must be low, medium or high",
                ));
            }
            if w.max_attempts == 0 || w.timeout_ms == 0 || w.queue == 0 {
                errs.push(ConfigError::new(
                    at("max_attempts"),
                    "max_attempts, timeout_ms and queue must be at least 1",
                ));
            }
        }
        if let Some(oidc) = &self.oidc {
            oidc.check(errs);
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
