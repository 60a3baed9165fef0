//! MQTT devices (`[gateway.mqtt]`): the listeners, per-connection limits, and the rules that
//! translate a PUBLISH into an HTTP request through the gateway's security chain.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The MQTT listeners (3.1.1 and 5.0) and how their messages reach HTTP backends. Off unless a
/// listener is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Plain TCP listener (e.g. `0.0.0.0:1883`); absent: none.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// TLS listener (e.g. `0.0.0.0:8883`) with `gateway.tls`'s certificate and client
    /// certificate settings; absent: none.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// Largest packet accepted, bytes (larger: the connection is closed, `packet too large`).
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: usize,
    /// Time for a new connection to send CONNECT, milliseconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Longest keep-alive granted, seconds (MQTT 5 clients asking for more are told this one;
    /// 0 from a client means this one too).
    #[serde(default = "default_keep_alive")]
    pub max_keep_alive_s: u16,
    /// Open MQTT connections, in all, and per client IP.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_per_ip")]
    pub max_connections_per_ip: usize,
    /// PUBLISH packets per second one connection may send, sustained…
    #[serde(default = "default_messages_per_s")]
    pub messages_per_s: f64,
    /// …and in a burst.
    #[serde(default = "default_burst")]
    pub burst_messages: u32,
    /// Payload bytes per second one connection may send (bursts of one second's worth).
    #[serde(default = "default_bytes_per_s")]
    pub bytes_per_s: u64,
    /// How a client id relates to the identity: `identity` (default) — it must be the identity
    /// itself or start with the identity and `:` (`dev-1:sensor-2`), an empty one is assigned
    /// the identity; `any` — not checked.
    #[serde(default)]
    pub client_id: ClientIdRule,
    /// Topics devices publish to, each translated to an HTTP request; a topic no rule matches
    /// is refused.
    #[serde(default)]
    pub publish: Vec<MqttPublishRule>,
    /// Topic filters devices may subscribe to (commands sent to them through the admin API);
    /// `{identity}` stands for the device's own identity, `+` and `#` as in MQTT.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// How long a persistent session outlives its connection, seconds: a 3.1.1 client
    /// connecting with `clean_session = false` (or an MQTT 5 client with a session expiry
    /// interval, capped here) gets its subscriptions back when it reconnects, and QoS 1
    /// commands sent to it while it was away. 0 keeps no session.
    #[serde(default = "default_session_expiry")]
    pub session_expiry_s: u32,
    /// QoS 1 commands kept for one disconnected persistent session, at most (the oldest are
    /// dropped first).
    #[serde(default = "default_max_queued")]
    pub max_queued_messages: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            listen: None,
            tls_listen: None,
            max_packet_bytes: default_max_packet(),
            connect_timeout_ms: default_connect_timeout(),
            max_keep_alive_s: default_keep_alive(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_per_ip(),
            messages_per_s: default_messages_per_s(),
            burst_messages: default_burst(),
            bytes_per_s: default_bytes_per_s(),
            client_id: ClientIdRule::default(),
            publish: Vec::new(),
            subscribe: Vec::new(),
            session_expiry_s: default_session_expiry(),
            max_queued_messages: default_max_queued(),
        }
    }
}

/// See [`MqttConfig::client_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientIdRule {
    #[default]
    Identity,
    Any,
}

/// One translation: a topic pattern to an HTTP request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttPublishRule {
    /// Topic pattern, level by level: a literal level, `{identity}` (must be the publishing
    /// device's identity: owner scoping), `{name}` (any one level, captured), or `{name...}`
    /// as the last level (the rest of the topic, one level or more).
    pub topic: String,
    /// HTTP method of the request.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path (and query) of the request, with the pattern's captures, `{identity}` and
    /// `{topic}` (the whole topic) substituted, each percent-encoded as a path segment
    /// (`{name...}` keeps its `/`).
    pub path: String,
    /// `raw` (default): the payload is the body; `json`: the body is
    /// `{"topic": …, "qos": …, "retain": …, "payload": …}`, the payload as a JSON value when it
    /// is valid JSON, as a string when it is other UTF-8 text, else base64 in `payload_base64`.
    #[serde(default)]
    pub payload: PayloadMode,
    /// `Content-Type` of the request (default: `application/json` with `payload = "json"`,
    /// else `application/octet-stream`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// The `route` of the events of these messages (default: the topic pattern).
    #[serde(default)]
    pub name: Option<String>,
}

/// See [`MqttPublishRule::payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    #[default]
    Raw,
    Json,
}

fn default_max_packet() -> usize {
    256 * 1024
}
fn default_connect_timeout() -> u64 {
    5_000
}
fn default_keep_alive() -> u16 {
    300
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_per_ip() -> usize {
    100
}
fn default_session_expiry() -> u32 {
    3600
}
fn default_max_queued() -> usize {
    100
}
fn default_messages_per_s() -> f64 {
    50.0
}
fn default_burst() -> u32 {
    100
}
fn default_bytes_per_s() -> u64 {
    1024 * 1024
}
fn default_method() -> String {
    "POST".into()
}

impl MqttConfig {
    /// Whether a listener is configured.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || self.tls_listen.is_some()
    }

    pub(crate) fn problems(&self, tls_configured: bool) -> Vec<ConfigError> {
        let at = |f: &str| format!("gateway.mqtt.{f}");
        let mut errs = Vec::new();
        if self.tls_listen.is_some() && !tls_configured {
            errs.push(ConfigError::new(
                at("tls_listen"),
                "needs gateway.tls (its certificate and client-certificate settings)",
            ));
        }
        if self.max_packet_bytes < 64 {
            errs.push(ConfigError::new(
                at("max_packet_bytes"),
                "must be at least 64",
            ));
        }
        if self.connect_timeout_ms == 0 {
            errs.push(ConfigError::new(
                at("connect_timeout_ms"),
                "must be at least 1",
            ));
        }
        if self.max_keep_alive_s == 0 {
            errs.push(ConfigError::new(
                at("max_keep_alive_s"),
                "must be at least 1",
            ));
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            errs.push(ConfigError::new(
                at("max_connections"),
                "max_connections and max_connections_per_ip must be at least 1",
            ));
        }
        if !(self.messages_per_s.is_finite() && self.messages_per_s > 0.0) {
            errs.push(ConfigError::new(at("messages_per_s"), "must be above 0"));
        }
        if self.burst_messages == 0 || self.bytes_per_s == 0 {
            errs.push(ConfigError::new(
                at("burst_messages"),
                "burst_messages and bytes_per_s must be at least 1",
            ));
        }
        for (i, r) in self.publish.iter().enumerate() {
            let at = |f: &str| format!("gateway.mqtt.publish[{i}].{f}");
            if let Err(e) = check_pattern(&r.topic) {
                errs.push(ConfigError::new(at("topic"), e));
            }
            if !r.path.starts_with('/') {
                errs.push(ConfigError::new(at("path"), "must start with `/`"));
            }
            if http_method_invalid(&r.method) {
                errs.push(ConfigError::new(
                    at("method"),
                    "must be an HTTP method token",
                ));
            }
        }
        for (i, f) in self.subscribe.iter().enumerate() {
            if let Err(e) = check_filter(f) {
                errs.push(ConfigError::new(format!("gateway.mqtt.subscribe[{i}]"), e));
            }
        }
        errs
    }
}

pub(crate) fn http_method_invalid(m: &str) -> bool {
    m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase())
}

pub(crate) fn check_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("must not be empty".into());
    }
    let levels: Vec<&str> = p.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if l.contains('+') || l.contains('#') {
            return Err("uses `{name}` and `{name...}`, not MQTT wildcards".into());
        }
        if let Some(inner) = l.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
            let (name, rest) = match inner.strip_suffix("...") {
                Some(n) => (n, true),
                None => (inner, false),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "level `{l}`: a capture name is letters, digits and `_`"
                ));
            }
            if rest && i + 1 != levels.len() {
                return Err(format!("level `{l}`: `{{name...}}` must be the last level"));
            }
        } else if l.contains('{') || l.contains('}') {
            return Err(format!("level `{l}`: a capture is a whole level"));
        }
    }
    Ok(())
}

fn check_filter(f: &str) -> Result<(), String> {
    if f.is_empty() {
        return Err("must not be empty".into());
    }
    let levels: Vec<&str> = f.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        let ok = match *l {
            "#" => i + 1 == levels.len(),
            "+" | "{identity}" => true,
            l => !l.contains(['#', '+', '{', '}']),
        };
        if !ok {
            return Err(format!(
                "level `{l}`: `+`, `#` (last) and `{{identity}}` stand alone"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_loads_and_bad_settings_are_reported() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/examples/devices-mqtt-coap.toml");
        let text = std::fs::read_to_string(example).expect("example");
        let config = crate::WardenConfig::from_toml(&text).expect("the example is valid");
        assert!(config.gateway.mqtt.enabled());
        assert_eq!(config.gateway.mqtt.publish.len(), 2);
        assert_eq!(config.gateway.coap.resources.len(), 2);
        let bad = r#"
            [gateway.mqtt]
            tls_listen = "127.0.0.1:8883"
            messages_per_s = 0.0
            subscribe = ["devices/#/x"]
            [[gateway.mqtt.publish]]
            topic = "devices/+/telemetry"
            method = "post"
            path = "api"
        "#;
        let errs = crate::WardenConfig::from_toml(bad)
            .expect_err("invalid")
            .to_string();
        for field in [
            "gateway.mqtt.tls_listen",
            "gateway.mqtt.messages_per_s",
            "gateway.mqtt.subscribe[0]",
            "gateway.mqtt.publish[0].topic",
            "gateway.mqtt.publish[0].method",
            "gateway.mqtt.publish[0].path",
        ] {
            assert!(errs.contains(field), "{field} missing from: {errs}");
        }
    }

    #[test]
    fn patterns_and_filters_are_checked() {
        assert!(check_pattern("devices/{identity}/telemetry").is_ok());
        assert!(check_pattern("devices/{identity}/{kind}/{rest...}").is_ok());
        assert!(check_pattern("devices/+/telemetry").is_err());
        assert!(check_pattern("devices/{rest...}/x").is_err());
        assert!(check_pattern("devices/a{b}").is_err());
        assert!(check_filter("devices/{identity}/commands/#").is_ok());
        assert!(check_filter("devices/#/x").is_err());
        assert!(check_filter("devices/a+").is_err());
    }
}
