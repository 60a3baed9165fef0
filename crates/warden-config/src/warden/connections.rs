//! Connection hygiene of the gateway's listeners and request-head policies that are not about
//! one route: deadlines for clients that never speak, connection caps, HTTP/2 keep-alive, and
//! what to do with method-override headers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Deadlines and caps of the gateway's connections (`[gateway.connections]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Time from accept until a connection's first request head is complete (TLS handshake,
    /// protocol detection, HTTP/2 preface and settings included), milliseconds. A connection
    /// that has not sent a whole request by then is closed.
    pub first_request_timeout_ms: u64,
    /// Time a connection may stay open with no request in flight, milliseconds (HTTP/1.1
    /// keep-alive and HTTP/2 alike).
    pub idle_timeout_ms: u64,
    /// Time a client has to finish an HTTP/1.1 request head once it started it, milliseconds.
    pub header_read_timeout_ms: u64,
    /// Time the gateway waits for the next bytes of a request body it is reading, milliseconds
    /// (exceeded → 408, a client fault).
    pub body_read_timeout_ms: u64,
    /// Interval of HTTP/2 keep-alive pings, milliseconds (0: none).
    pub h2_keepalive_interval_ms: u64,
    /// Time an HTTP/2 ping may stay unanswered before the connection is closed, milliseconds.
    pub h2_keepalive_timeout_ms: u64,
    /// Open connections from one client address, at most. Beyond it the address's oldest idle
    /// connection is closed for the new one, or the new one is refused if none is idle.
    pub max_per_ip: usize,
    /// Open connections in all, at most (0: three quarters of the process's file-descriptor
    /// limit). Beyond it the oldest idle connection is closed for the new one, or the new one
    /// is refused if none is idle.
    pub max_total: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            first_request_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 30_000,
            h2_keepalive_interval_ms: 20_000,
            h2_keepalive_timeout_ms: 10_000,
            max_per_ip: 256,
            max_total: 0,
        }
    }
}

impl ConnectionLimits {
    /// Every problem, each with its key under `gateway.connections`.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        for (key, v) in [
            ("first_request_timeout_ms", self.first_request_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("h2_keepalive_timeout_ms", self.h2_keepalive_timeout_ms),
            ("max_per_ip", self.max_per_ip as u64),
        ] {
            if v == 0 {
                errs.push(ConfigError::new(
                    format!("gateway.connections.{key}"),
                    "must be at least 1",
                ));
            }
        }
        errs
    }
}

/// What the gateway does with `X-HTTP-Method-Override`, `X-Method-Override`, `X-HTTP-Method`
/// and a `_method` query parameter, which some frameworks honour instead of the real method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MethodOverride {
    /// Refuse the request (400): RBAC checked one method, the upstream would run another.
    #[default]
    Refuse,
    /// Let it through only when the route and the RBAC policy allow the overridden method as
    /// well as the real one (a malformed or conflicting override is still refused).
    Authorize,
}
