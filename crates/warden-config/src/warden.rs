//! The config of gateways, processors and the dashboard (`warden.toml`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::dashboard::{
    ConsoleRole, DashboardConfig, OidcConfig, OperatorConfig, SyslogConfig, SyslogFormat,
    WebhookConfig,
};
use crate::layer::merge;
use crate::schema::{check_and_parse, parse_toml};
use crate::{ConfigError, ConfigErrors};

const DEFAULTS: &str = include_str!("default.toml");

/// Top-level config of a Warden process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WardenConfig {
    pub gateway: GatewayConfig,
    pub bus: BusConfig,
    pub dashboard: DashboardConfig,
    /// The Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
    /// Upstream routes, matched by longest path prefix.
    pub routes: Vec<RouteConfig>,
    /// API keys accepted by the gateway (stored as SHA-256 hashes, never in clear).
    pub api_keys: Vec<ApiKeyConfig>,
    /// Path normalisation rules.
    pub paths: crate::PathsConfig,
    /// Role-based access control policy files.
    pub rbac: crate::RbacConfig,
    /// Rate limits and load shedding.
    pub limits: crate::LimitsConfig,
    /// Request validation (headers, bodies, content types, JSON Schemas).
    pub validation: crate::ValidationConfig,
    /// The admin API.
    pub admin: crate::AdminConfig,
    /// Identity sources besides API keys (JWT, device registry) and file reloading.
    pub identity: crate::IdentityConfig,
    /// Encryption at rest of the spool and the archive (off by default).
    #[serde(default)]
    pub at_rest: crate::AtRestConfig,
    /// The tamper-evident audit log of decisions, console and admin API actions and console
    /// sign-ins (absent: none is written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditConfig>,
}

/// The audit log: a hash-chained JSON Lines file, one record per decision the processor
/// publishes, per console or admin API action and per console sign-in, written by the
/// processor, console and gateway of this process (`warden audit verify` checks it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct AuditConfig {
    /// File the records are appended to, created (mode 0600) if missing. One process per
    /// file: a second one refuses to start.
    pub path: String,
    /// File holding the key records are signed with (HMAC-SHA256): its content, at least 32
    /// bytes (e.g. `openssl rand -hex 32`). Absent: plain SHA-256, which anyone who can write
    /// the log can recompute. A log is keyed or not from its first record on.
    #[serde(default)]
    pub key_file: Option<String>,
}

/// The gateway's listener and request handling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Instance id written in every event (`gateway`); unique per gateway process.
    pub id: String,
    /// Address of the HTTP listener.
    pub listen: SocketAddr,
    /// Serving threads, each with its own single-threaded runtime accepting on the gateway's
    /// listeners (0: one per CPU). Background work (event publishing, decisions, reloads)
    /// runs on the process's main runtime.
    #[serde(default)]
    pub workers: usize,
    /// Largest request body accepted, in bytes (larger → 413).
    pub max_body_bytes: u64,
    /// Events buffered in memory between the request path and the bus.
    pub event_queue: usize,
    /// How long a starting gateway may take to read every live decision before it refuses to
    /// start, in milliseconds.
    pub decisions_bootstrap_timeout_ms: u64,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted load balancer).
    pub trust_forwarded_for: bool,
    /// Key of the query-string hashes in events (`query_hash`): a secret shared by every
    /// gateway of a deployment, so equal queries hash alike everywhere but nobody without it
    /// can confirm a guessed value by hashing it. Empty: a built-in key (hashes are then
    /// consistent but guessable for low-entropy values; set one in production).
    #[serde(default)]
    pub query_hash_key: String,
    /// The durable local spool for events the bus has not acknowledged yet.
    pub spool: SpoolSettings,
    /// The TLS listener (absent: plain HTTP only).
    #[serde(default)]
    pub tls: Option<crate::TlsConfig>,
    /// Deadlines and caps of client connections.
    #[serde(default)]
    pub connections: ConnectionLimits,
    /// MQTT devices: listeners and translation rules (off unless a listener is given).
    #[serde(default)]
    pub mqtt: crate::MqttConfig,
    /// CoAP devices: the UDP listener and its resources (off unless `listen` is given).
    #[serde(default)]
    pub coap: crate::CoapConfig,
    /// Method-override headers and `?_method=`: `refuse` (default) or `authorize`.
    #[serde(default)]
    pub method_override: MethodOverride,
}

/// Where events wait when the bus is slow or down (see `warden_bus::spool`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpoolSettings {
    /// `auto` (on with Kafka, off with the embedded bus, where a spool adds nothing), `on`, `off`.
    pub enabled: SpoolEnabled,
    /// Directory of the spool; the gateway id is appended (each gateway needs its own).
    pub dir: String,
    /// Size of each segment file, bytes.
    pub segment_bytes: u64,
    /// Largest spool, bytes; beyond it the overflow policy applies (counted and logged).
    pub max_bytes: u64,
    /// `always` (fsync every batch), `interval` (every `fsync_interval_ms`) or `never`.
    pub fsync: FsyncMode,
    /// Longest time between fsyncs with `fsync = "interval"`, milliseconds.
    pub fsync_interval_ms: u64,
    /// When full: `drop_newest` refuses new events, `drop_oldest` deletes the oldest segment.
    pub overflow: SpoolOverflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpoolEnabled {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    Always,
    Interval,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpoolOverflow {
    DropNewest,
    DropOldest,
}

/// Which bus to use and how to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// `embedded` (in-process, one machine) or `kafka`.
    pub kind: BusKind,
    /// Kafka bootstrap servers, comma-separated (`kind = "kafka"` only).
    pub brokers: String,
    /// Create missing topics at start; when false, a missing topic is an error.
    pub create_topics: bool,
    /// Partitions of topics Warden creates.
    pub partitions: i32,
    /// Replication factor of topics Warden creates.
    pub replication_factor: i32,
    /// Hours the events topic keeps records, when Warden creates it (0: the broker's
    /// default). Events are the processors' input and the archive's source: keep enough to
    /// replay a processor's state after an outage.
    pub events_retention_hours: u32,
    /// Hours the alerts topic keeps records, when Warden creates it (0: the broker's default).
    pub alerts_retention_hours: u32,
    pub topics: TopicsConfig,
    /// How gateways encode request events: `compact` (binary, ≈ 3.5× faster for the processor
    /// to read) or `json` (readable by any consumer, see `schemas/`). Processors read both,
    /// so gateways can be switched one at a time.
    #[serde(default)]
    pub event_format: warden_event::EventFormat,
    /// Extra librdkafka settings, passed as they are (e.g. `"security.protocol" = "ssl"`).
    pub kafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    Embedded,
    Kafka,
}

/// Topic names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// One event per request, keyed by identity.
    pub events: String,
    /// Quarantine/throttle/release decisions, keyed by subject, compacted.
    pub decisions: String,
    /// Alerts from the processor.
    pub alerts: String,
}

/// The Prometheus metrics endpoint (`GET /metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve metrics on; absent: no metrics endpoint.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// One upstream route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name, written in events as `route`.
    pub name: String,
    /// Path prefix this route serves, starting with `/` (matched on whole segments).
    pub prefix: String,
    /// Upstream base URL, `http://host[:port][/base]` or `https://host[:port][/base]`.
    pub upstream: String,
    /// TLS to an `https://` upstream: its CA bundle (default: the web PKI roots), the name
    /// its certificate must carry, a client certificate for mTLS.
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTlsConfig>,
    /// The API version this route serves and when it is deprecated and goes away
    /// (`Deprecation`, `Sunset` and `Link` headers; 410 after the sunset).
    #[serde(default)]
    pub deprecation: Option<RouteDeprecation>,
    /// Retries of idempotent requests and passive health of the upstream.
    #[serde(default)]
    pub resilience: RouteResilience,
    /// Time allowed for the upstream's response headers, milliseconds (exceeded → 504).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Authentication required on this route.
    #[serde(default)]
    pub auth: RouteAuth,
    /// Methods allowed (empty: any).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Require a verified client certificate (mTLS) on this route: a request without one (or
    /// over plain HTTP) is refused with 401.
    #[serde(default)]
    pub require_mtls: bool,
    /// Forward the caller's `Authorization: Bearer` token to the upstream (every other
    /// credential the gateway consumed, and a bearer token on other routes, is removed).
    #[serde(default)]
    pub forward_bearer: bool,
    /// Accept request header names containing `_` (refused with 400 by default: CGI/WSGI
    /// backends read `X_Foo` as `X-Foo`). Variants of the gateway's own headers are removed
    /// even then.
    #[serde(default)]
    pub allow_underscore_headers: bool,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// A route's version and deprecation (RFC 9745 `Deprecation`, RFC 8594 `Sunset`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteDeprecation {
    /// The API version the route serves (e.g. `v1`), shown in the list of callers.
    #[serde(default)]
    pub version: Option<String>,
    /// From when the route is deprecated, RFC 3339 (announced in `Deprecation` before then).
    #[serde(default)]
    pub deprecated_at: Option<String>,
    /// When it goes away, RFC 3339 (`Sunset`); calls after it are refused with 410 unless
    /// `refuse_after_sunset = false`.
    #[serde(default)]
    pub sunset_at: Option<String>,
    /// Where clients read how to migrate (`Link: <…>; rel="deprecation"`), `https://` URL.
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default = "yes_route")]
    pub refuse_after_sunset: bool,
}

fn yes_route() -> bool {
    true
}

/// TLS settings of an `https://` upstream. The files are read again when they change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM file of the CAs that may sign the upstream's certificate (default: the web PKI
    /// roots).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Name the upstream's certificate must carry, also sent as SNI (default: the URL's host).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Client certificate chain (PEM) presented to the upstream (mTLS); with `key_file`.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteAuth {
    /// A valid credential of any configured kind is required: client certificate, bearer JWT
    /// or API key.
    #[default]
    Required,
    /// A valid API key is required (other credentials alone are refused).
    ApiKey,
    /// A valid bearer JWT is required (other credentials alone are refused).
    Jwt,
    /// Anyone may call (requests are still evented, as `anonymous`); credentials that are
    /// offered are still checked.
    None,
}

/// An API key and the identity it authenticates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Key id (for audit and rotation; not secret).
    pub id: String,
    /// SHA-256 of the key, lowercase hex (`warden hash-key` prints it).
    pub sha256: String,
    /// Identity the key authenticates (device id).
    pub identity: String,
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub device_type: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The key is refused before this time (RFC 3339, e.g. `2026-03-01T00:00:00Z`).
    #[serde(default)]
    pub not_before: Option<String>,
    /// The key is refused from this time on (RFC 3339). Rotation: configure the new key, let
    /// devices move over while both are valid, then let the old one expire.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// SHA-256 of an API key, lowercase hex, as stored in `api_keys[].sha256`.
///
/// A fast hash is adequate here because Warden's keys are long random strings: there is no
/// dictionary to guess from, so a slow password hash would only cost latency.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Default for WardenConfig {
    fn default() -> Self {
        match Self::from_layers(None, toml::Table::new(), toml::Table::new()) {
            Ok(c) => c,
            // The built-in defaults are tested to load.
            Err(e) => panic!("built-in defaults are invalid: {e}"),
        }
    }
}

impl WardenConfig {
    /// Load defaults ← `file` ← `WARDEN__…` environment variables, and validate.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigErrors::from(ConfigError::new("", format!("cannot read: {e}")))
                        .with_file(Some(path))
                })?;
                parse_toml(&text).map_err(|e| e.with_file(Some(path)))?
            }
            None => toml::Table::new(),
        };
        let env = crate::env_overrides("WARDEN__", std::env::vars());
        Self::from_layers(file, table, env)
    }

    /// Parse TOML text layered over the defaults (no environment), and validate.
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        Self::from_layers(None, parse_toml(text)?, toml::Table::new())
    }

    fn from_layers(
        file: Option<&Path>,
        table: toml::Table,
        env: toml::Table,
    ) -> Result<Self, ConfigErrors> {
        let mut merged = parse_toml(DEFAULTS)?;
        merge(&mut merged, table);
        merge(&mut merged, env);
        let config: Self = check_and_parse(merged).map_err(|e| e.with_file(file))?;
        config.validate().map_err(|e| e.with_file(file))?;
        Ok(config)
    }

    /// Semantic checks; every problem is reported.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        let g = &self.gateway;
        if g.id.trim().is_empty() {
            errs.push(ConfigError::new("gateway.id", "must not be empty"));
        }
        if g.spool.dir.trim().is_empty() {
            errs.push(ConfigError::new("gateway.spool.dir", "must not be empty"));
        }
        errs.extend(g.connections.problems());
        errs.extend(g.mqtt.problems(g.tls.is_some()));
        errs.extend(g.coap.problems(g.tls.is_some()));
        errs.extend(self.at_rest.problems());
        if g.spool.segment_bytes < 4096 {
            errs.push(ConfigError::new(
                "gateway.spool.segment_bytes",
                "must be at least 4096",
            ));
        }
        if g.spool.max_bytes < g.spool.segment_bytes.saturating_mul(2) {
            errs.push(ConfigError::new(
                "gateway.spool.max_bytes",
                "must be at least two segments (2 × segment_bytes)",
            ));
        }
        if g.spool.fsync == FsyncMode::Interval && g.spool.fsync_interval_ms == 0 {
            errs.push(ConfigError::new(
                "gateway.spool.fsync_interval_ms",
                "must be at least 1",
            ));
        }
        if g.event_queue == 0 {
            errs.push(ConfigError::new(
                "gateway.event_queue",
                "must be at least 1",
            ));
        }
        self.dashboard.check(&mut errs);
        if g.listen == self.dashboard.listen && g.listen.port() != 0 {
            errs.push(ConfigError::new(
                "dashboard.listen",
                "must differ from gateway.listen",
            ));
        }
        if self.bus.kind == BusKind::Kafka && self.bus.brokers.trim().is_empty() {
            errs.push(ConfigError::new(
                "bus.brokers",
                "required when bus.kind = \"kafka\"",
            ));
        }
        if self.bus.partitions < 1 {
            errs.push(ConfigError::new("bus.partitions", "must be at least 1"));
        }
        if self.bus.replication_factor < 1 {
            errs.push(ConfigError::new(
                "bus.replication_factor",
                "must be at least 1",
            ));
        }
        let t = &self.bus.topics;
        for (key, name) in [
            ("bus.topics.events", &t.events),
            ("bus.topics.decisions", &t.decisions),
            ("bus.topics.alerts", &t.alerts),
        ] {
            if !valid_topic(name) {
                errs.push(ConfigError::new(
                    key,
                    format!("`{name}` is not a valid topic name (1-249 of [a-zA-Z0-9._-])"),
                ));
            }
        }
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = |k: &str| format!("routes[{i}].{k}");
            if r.name.trim().is_empty() {
                errs.push(ConfigError::new(at("name"), "must not be empty"));
            } else if !names.insert(r.name.as_str()) {
                errs.push(ConfigError::new(
                    at("name"),
                    format!("duplicate route name `{}`", r.name),
                ));
            }
            if !r.prefix.starts_with('/') {
                errs.push(ConfigError::new(at("prefix"), "must start with `/`"));
            } else if r.prefix.contains("//") || r.prefix.split('/').any(|s| s == ".." || s == ".")
            {
                errs.push(ConfigError::new(at("prefix"), "must be a normalised path"));
            } else if !prefixes.insert(r.prefix.trim_end_matches('/')) {
                errs.push(ConfigError::new(
                    at("prefix"),
                    format!("prefix `{}` is served by an earlier route", r.prefix),
                ));
            }
            if let Err(reason) = check_upstream(&r.upstream) {
                errs.push(ConfigError::new(at("upstream"), reason));
            }
            if let Some(d) = &r.deprecation {
                let mut times = [None, None];
                for (i, (k, v)) in [
                    ("deprecated_at", &d.deprecated_at),
                    ("sunset_at", &d.sunset_at),
                ]
                .into_iter()
                .enumerate()
                {
                    if let Some(v) = v {
                        match crate::identity::parse_rfc3339(v) {
                            Ok(t) => times[i] = Some(t),
                            Err(e) => {
                                errs.push(ConfigError::new(at(&format!("deprecation.{k}")), e))
                            }
                        }
                    }
                }
                if d.deprecated_at.is_none() && d.sunset_at.is_none() {
                    errs.push(ConfigError::new(
                        at("deprecation"),
                        "set deprecated_at, sunset_at or both",
                    ));
                }
                if let [Some(dep), Some(sun)] = times
                    && sun < dep
                {
                    errs.push(ConfigError::new(
                        at("deprecation.sunset_at"),
                        "must not be before deprecated_at",
                    ));
                }
                if let Some(link) = &d.link
                    && (!link.starts_with("https://")
                        || link.contains(|c: char| c == '>' || c.is_whitespace() || c.is_control()))
                {
                    errs.push(ConfigError::new(
                        at("deprecation.link"),
                        "must be an https:// URL without spaces or `>`",
                    ));
                }
            }
            if let Some(t) = &r.upstream_tls {
                if !r.upstream.starts_with("https://") {
                    errs.push(ConfigError::new(
                        at("upstream_tls"),
                        "only for an https:// upstream",
                    ));
                }
                if t.cert_file.is_some() != t.key_file.is_some() {
                    errs.push(ConfigError::new(
                        at("upstream_tls.cert_file"),
                        "set both cert_file and key_file, or neither",
                    ));
                }
                for (k, f) in [
                    ("ca_file", &t.ca_file),
                    ("cert_file", &t.cert_file),
                    ("key_file", &t.key_file),
                ] {
                    if let Some(f) = f
                        && let Err(e) = std::fs::metadata(f)
                    {
                        errs.push(ConfigError::new(
                            at(&format!("upstream_tls.{k}")),
                            format!("cannot read `{f}`: {e}"),
                        ));
                    }
                }
                if let Some(n) = &t.server_name
                    && rustls_pki_types::ServerName::try_from(n.as_str()).is_err()
                {
                    errs.push(ConfigError::new(
                        at("upstream_tls.server_name"),
                        "is not a DNS name or an IP address",
                    ));
                }
            }
            if r.timeout_ms == 0 {
                errs.push(ConfigError::new(at("timeout_ms"), "must be at least 1"));
            }
            r.resilience.validate(&at("resilience"), &mut errs);
            for (j, m) in r.methods.iter().enumerate() {
                if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                    errs.push(ConfigError::new(
                        format!("routes[{i}].methods[{j}]"),
                        format!("`{m}` is not an HTTP method in upper case"),
                    ));
                }
            }
        }
        let mut ids = HashSet::new();
        let mut hashes = HashSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            let at = |f: &str| format!("api_keys[{i}].{f}");
            if k.id.trim().is_empty() {
                errs.push(ConfigError::new(at("id"), "must not be empty"));
            } else if !ids.insert(k.id.as_str()) {
                errs.push(ConfigError::new(
                    at("id"),
                    format!("duplicate key id `{}`", k.id),
                ));
            }
            if k.sha256.len() != 64
                || !k
                    .sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            {
                errs.push(ConfigError::new(
                    at("sha256"),
                    "must be 64 lowercase hex characters (the SHA-256 of the key)",
                ));
            } else if !hashes.insert(k.sha256.as_str()) {
                errs.push(ConfigError::new(
                    at("sha256"),
                    "the same key is configured twice",
                ));
            }
            if k.identity.trim().is_empty() || k.identity == "anonymous" {
                errs.push(ConfigError::new(
                    at("identity"),
                    "must be a non-empty identity other than `anonymous`",
                ));
            }
        }
        if let Some(audit) = &self.audit {
            if audit.path.trim().is_empty() {
                errs.push(ConfigError::new("audit.path", "must not be empty"));
            }
            if audit.key_file.as_ref().is_some_and(|k| k.trim().is_empty()) {
                errs.push(ConfigError::new("audit.key_file", "must not be empty"));
            }
        }
        crate::policy::validate(self, &mut errs);
        self.validate_identity(&mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }
}

fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 250
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn check_upstream(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("`{url}`: upstreams are http:// or https://"));
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(format!("`{url}` has no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!(
            "`{url}` must not carry credentials (`user@`): they would travel in the Host header"
        ));
    }
    if uri.query().is_some() {
        return Err(format!("`{url}` must not have a query"));
    }
    Ok(())
}

mod connections;
pub use connections::{ConnectionLimits, MethodOverride};
mod resilience;
pub use resilience::{HealthCheck, RouteResilience};

#[cfg(test)]
mod tests;
