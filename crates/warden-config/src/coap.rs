//! CoAP devices (`[gateway.coap]`, RFC 7252 over UDP): the listener and the resources it
//! translates into HTTP requests through the gateway's security chain.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The CoAP listener. Off unless `listen` is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoapConfig {
    /// UDP address (e.g. `0.0.0.0:5683`); absent: no CoAP listener.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// UDP address for CoAP over DTLS 1.2 (`coaps://`, e.g. `0.0.0.0:5684`), with the
    /// gateway's certificate (`gateway.tls`); a device's client certificate is its identity
    /// as on the TLS listener (required when `gateway.tls.client_auth.required`), else its
    /// credential option. Absent: no DTLS listener.
    #[serde(default)]
    pub dtls_listen: Option<SocketAddr>,
    /// Number of the CoAP option carrying the device's credential (an API key or a JWT), in
    /// the experimental range; odd, i.e. critical: a server that does not know it must refuse
    /// the request rather than ignore it.
    #[serde(default = "default_option")]
    pub credential_option: u16,
    /// Requests translated at once; more are answered 5.03 (service unavailable).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Resources, matched in order against the request's Uri-Path; no match: 4.04.
    #[serde(default)]
    pub resources: Vec<CoapResource>,
}

impl Default for CoapConfig {
    fn default() -> Self {
        Self {
            listen: None,
            dtls_listen: None,
            credential_option: default_option(),
            max_in_flight: default_in_flight(),
            resources: Vec::new(),
        }
    }
}

/// One CoAP resource and the HTTP request it becomes (the request's own method).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoapResource {
    /// Uri-Path pattern, as MQTT topic rules: literal segments, `{identity}` (must be the
    /// requesting device's identity), `{name}`, and `{name...}` last.
    pub path: String,
    /// Path (and query) of the HTTP request, with the pattern's captures, `{identity}` and
    /// `{topic}` (the whole Uri-Path) substituted, percent-encoded.
    pub to: String,
    /// CoAP methods allowed on it (`GET`, `POST`, `PUT`, `DELETE`); others get 4.05.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// The `route` of its events (default: the path pattern).
    #[serde(default)]
    pub name: Option<String>,
}

fn default_option() -> u16 {
    65001
}
fn default_in_flight() -> usize {
    1024
}
fn default_methods() -> Vec<String> {
    ["GET", "POST", "PUT", "DELETE"]
        .iter()
        .map(|m| (*m).to_string())
        .collect()
}

impl CoapConfig {
    pub(crate) fn problems(&self, tls_configured: bool) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        if self.dtls_listen.is_some() && !tls_configured {
            errs.push(ConfigError::new(
                "gateway.coap.dtls_listen",
                "needs gateway.tls (its certificate and client-certificate settings)",
            ));
        }
        if self.credential_option < 65000 || self.credential_option.is_multiple_of(2) {
            errs.push(ConfigError::new(
                "gateway.coap.credential_option",
                "must be odd (critical) and in the experimental range 65000–65535",
            ));
        }
        if self.max_in_flight == 0 {
            errs.push(ConfigError::new(
                "gateway.coap.max_in_flight",
                "must be at least 1",
            ));
        }
        for (i, r) in self.resources.iter().enumerate() {
            let at = |f: &str| format!("gateway.coap.resources[{i}].{f}");
            if let Err(e) = crate::mqtt::check_pattern(&r.path) {
                errs.push(ConfigError::new(at("path"), e));
            }
            if !r.to.starts_with('/') {
                errs.push(ConfigError::new(at("to"), "must start with `/`"));
            }
            if r.methods.is_empty()
                || r.methods
                    .iter()
                    .any(|m| !matches!(m.as_str(), "GET" | "POST" | "PUT" | "DELETE"))
            {
                errs.push(ConfigError::new(
                    at("methods"),
                    "GET, POST, PUT or DELETE (at least one)",
                ));
            }
        }
        errs
    }
}
