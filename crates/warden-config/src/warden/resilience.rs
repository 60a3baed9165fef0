//! A route's upstream resilience: retries of idempotent requests, passive health (ejection
//! after consecutive failures) and active health checks (a probe request on a timer).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Retries and passive health of a route's upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteResilience {
    /// Extra attempts for a request that can be sent again: an idempotent method (`GET`,
    /// `HEAD`, `OPTIONS`, `PUT`, `DELETE`) without a body, when the upstream could not be
    /// reached, did not answer in time or answered 502, 503 or 504. Other requests are sent
    /// once.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Consecutive failures (no connection, no answer in time) after which the upstream is
    /// ejected: its requests are refused at once with 502 (0: never).
    #[serde(default = "default_eject_after")]
    pub eject_after_failures: u32,
    /// How long an ejection lasts, milliseconds; then one request probes the upstream, and
    /// a failed probe ejects it again.
    #[serde(default = "default_eject_for")]
    pub eject_for_ms: u64,
    /// Active health checks: the gateway asks the upstream itself, on a timer, whether it is
    /// up (none by default: health is then judged from requests only).
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
}

impl Default for RouteResilience {
    fn default() -> Self {
        Self {
            retries: default_retries(),
            eject_after_failures: default_eject_after(),
            eject_for_ms: default_eject_for(),
            health_check: None,
        }
    }
}

fn default_retries() -> u32 {
    1
}
fn default_eject_after() -> u32 {
    5
}
fn default_eject_for() -> u64 {
    1_000
}

/// An active health check of a route's upstream (`[routes.resilience.health_check]`): every
/// `interval_ms` the gateway sends `GET path` to the upstream (over the route's own TLS
/// settings); an answer with a status below 400 within `timeout_ms` is a success. After
/// `unhealthy_after` failures in a row the upstream is marked down and the route's requests are
/// refused at once with 502 (nothing is sent) until `healthy_after` probes in a row succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path (and optional query) probed, relative to the upstream's base URL, e.g. `/healthz`.
    pub path: String,
    /// Time between probes, milliseconds (at least 100).
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Time allowed for the probe's response headers, milliseconds (at most `interval_ms`).
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u64,
    /// Failed probes in a row that mark the upstream down.
    #[serde(default = "default_threshold")]
    pub unhealthy_after: u32,
    /// Successful probes in a row that mark a down upstream up again.
    #[serde(default = "default_threshold")]
    pub healthy_after: u32,
}

fn default_interval() -> u64 {
    5_000
}
fn default_probe_timeout() -> u64 {
    1_000
}
fn default_threshold() -> u32 {
    2
}

impl RouteResilience {
    pub(crate) fn validate(&self, at: &str, errs: &mut Vec<ConfigError>) {
        let Some(h) = &self.health_check else {
            return;
        };
        let at = |k: &str| format!("{at}.health_check.{k}");
        if !h.path.starts_with('/') {
            errs.push(ConfigError::new(at("path"), "must start with `/`"));
        } else if h
            .path
            .chars()
            .any(|c| c.is_ascii_control() || c == ' ' || c == '#')
            || http::uri::PathAndQuery::try_from(h.path.as_str()).is_err()
        {
            errs.push(ConfigError::new(
                at("path"),
                "is not a valid request path (no spaces, controls or fragment)",
            ));
        }
        if h.interval_ms < 100 {
            errs.push(ConfigError::new(at("interval_ms"), "must be at least 100"));
        }
        if h.timeout_ms == 0 || h.timeout_ms > h.interval_ms {
            errs.push(ConfigError::new(
                at("timeout_ms"),
                "must be at least 1 and at most `interval_ms`",
            ));
        }
        if h.unhealthy_after == 0 {
            errs.push(ConfigError::new(
                at("unhealthy_after"),
                "must be at least 1",
            ));
        }
        if h.healthy_after == 0 {
            errs.push(ConfigError::new(at("healthy_after"), "must be at least 1"));
        }
    }
}
