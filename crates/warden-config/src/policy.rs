//! The gateway's security policy settings in `warden.toml`: path rules (`[paths]`), the RBAC
//! policy files (`[rbac]`), rate and concurrency limits (`[limits]`), input validation
//! (`[validation]`) and the admin API (`[admin]`). The RBAC policy file itself is
//! [`RbacPolicy`].

mod rbac_file;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use rbac_file::{DenyRule, DeviceTypeBinding, Grant, RbacPolicy, RoleConfig};

use crate::{ConfigError, WardenConfig};

/// Built-in role held by every caller without an identity (routes with `auth = "none"`).
pub const ROLE_ANONYMOUS: &str = "anonymous";
/// Built-in role held by every authenticated caller.
pub const ROLE_AUTHENTICATED: &str = "authenticated";

// === Paths ===

/// How request paths are normalised and compared before routing and authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct PathsConfig {
    /// `sensitive`: paths compare exactly. `insensitive`: the upstreams treat paths
    /// case-insensitively, so rules match case-insensitively and a path with upper-case
    /// letters is refused (400) rather than matched under another spelling.
    pub case: PathCase,
    /// Accept `;` in paths. Off by default: servlet containers strip `;params` from segments,
    /// which turns `/api/..;/admin` into a different path than the gateway saw.
    pub allow_semicolons: bool,
}

/// Case rule of path matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PathCase {
    Sensitive,
    Insensitive,
}

// === RBAC ===

/// Role-based access control. Without a `policy`, every authenticated request is allowed (the
/// behaviour before RBAC existed); with one, whatever it does not allow is denied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RbacConfig {
    /// Enforced policy file (TOML, see `docs/examples/rbac.toml`; a relative path is taken
    /// from the working directory); absent: no RBAC.
    #[serde(default)]
    pub policy: Option<String>,
    /// Policy evaluated on every request but never enforced: requests it would deny are
    /// counted, logged at debug and listed by the admin API, and still allowed. Use it to try
    /// a new policy before promoting it to `policy`.
    #[serde(default)]
    pub shadow_policy: Option<String>,
    /// How often the policy files are checked for changes, milliseconds (0: reload only
    /// through the admin API).
    pub reload_interval_ms: u64,
}

// === Limits ===

/// A GCRA rate: `rate_per_s` requests per second sustained, `burst` at once from idle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Rate {
    /// Sustained requests per second (> 0; fractions allowed, e.g. 0.5).
    pub rate_per_s: f64,
    /// Requests allowed at once from an idle key (≥ 1).
    pub burst: u32,
}

/// A rate per key, with overrides by device type (and, for `identity_route`, by route).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct KeyedRate {
    /// Sustained requests per second for each key (> 0).
    pub rate_per_s: f64,
    /// Requests allowed at once from an idle key (≥ 1).
    pub burst: u32,
    /// Rates for identities of these device types instead of the one above.
    #[serde(default)]
    pub device_types: BTreeMap<String, Rate>,
    /// `identity_route` only: rates for these route names (take precedence over
    /// `device_types`).
    #[serde(default)]
    pub routes: BTreeMap<String, Rate>,
}

impl KeyedRate {
    /// The base rate.
    pub fn base(&self) -> Rate {
        Rate {
            rate_per_s: self.rate_per_s,
            burst: self.burst,
        }
    }
}

/// Rate limits and load shedding. Each limit is optional: with none configured nothing is
/// throttled. Exceeding a rate → 429 with `Retry-After` and `RateLimit-*` headers; exceeding a
/// concurrency limit → 503.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct LimitsConfig {
    /// Keys each keyed limiter tracks at most; the memory is allocated up front (16 bytes per
    /// key plus 1 byte per key of eviction floors). Keys beyond it evict the fullest keys, and
    /// an evicted key comes back no better off than it left.
    pub max_keys: usize,
    /// Per authenticated identity.
    #[serde(default)]
    pub identity: Option<KeyedRate>,
    /// Per authenticated identity and route.
    #[serde(default)]
    pub identity_route: Option<KeyedRate>,
    /// Per tenant (identities with a tenant).
    #[serde(default)]
    pub tenant: Option<Rate>,
    /// Per client IP, for unauthenticated requests.
    #[serde(default)]
    pub ip: Option<Rate>,
    /// All requests of this gateway together.
    #[serde(default)]
    pub global: Option<Rate>,
    /// Rate of a subject (identity, API key, tenant or IP) while a `throttle` decision for it
    /// is live on the decisions topic.
    pub throttled: Rate,
    /// Requests in flight at once over the whole gateway (0: unlimited); beyond → 503.
    pub max_in_flight: usize,
    /// Requests in flight at once per route, by route name (beyond → 503).
    #[serde(default)]
    pub routes: BTreeMap<String, RouteLimits>,
}

/// Limits of one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RouteLimits {
    /// Requests in flight at once to this route (≥ 1); beyond → 503.
    pub max_in_flight: usize,
}

// === Validation ===

/// Request validation before anything reaches an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ValidationConfig {
    /// Most request header fields accepted (more → 431). Keep it below hyper's own limit of
    /// 100, which answers a bare 431 without an event.
    pub max_headers: usize,
    /// Largest total size of request header names and values, bytes (more → 431).
    pub max_header_bytes: usize,
    /// Per-route rules, by route name.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteValidation>,
}

/// Validation of one route's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RouteValidation {
    /// Largest body on this route, bytes (instead of `gateway.max_body_bytes`; → 413).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Media types a request body may have, e.g. `application/json` (empty: any). A request
    /// with a body and another or no `Content-Type` → 415.
    #[serde(default)]
    pub content_types: Vec<String>,
    /// JSON Schema file every request body must satisfy (→ 400; a relative path is taken from
    /// the working directory). The body is buffered, up to the route's size limit, only on
    /// routes that have a schema; `POST`, `PUT` and `PATCH` need a body there.
    #[serde(default)]
    pub json_schema: Option<String>,
}

// === Admin ===

/// The admin API (quarantines, reload, effective policy) on its own listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct AdminConfig {
    /// Address of the admin listener; absent: no admin API.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// SHA-256 of the admin bearer token, lowercase hex (`warden hash-key TOKEN`); callers
    /// send `Authorization: Bearer TOKEN`. May be empty when `admin.tls` is set: then only
    /// operator client certificates are accepted.
    pub token_sha256: String,
    /// Serve the admin API over TLS and accept operator client certificates (mTLS) as an
    /// alternative to the token. Absent: plain HTTP, token only.
    #[serde(default)]
    pub tls: Option<crate::AdminTlsConfig>,
    /// JSON file of the API keys managed through the admin API (`POST`/`DELETE
    /// /admin/keys`): written by the gateway on every change, loaded at start beside the
    /// config file's `api_keys`. A key lives in exactly one of them: the API refuses to touch
    /// the file's keys, and a config file that names an API-managed key is refused. Absent:
    /// the admin API cannot change keys.
    #[serde(default)]
    pub keys_file: Option<String>,
}

// === Validation of the sections ===

/// Semantic checks of the policy sections, appended to `errs`.
pub(crate) fn validate(c: &WardenConfig, errs: &mut Vec<ConfigError>) {
    let routes: HashSet<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
    let unknown_route = |key: String, name: &str, errs: &mut Vec<ConfigError>| {
        if !routes.contains(name) {
            errs.push(ConfigError::new(key, format!("no route is named `{name}`")));
        }
    };

    let l = &c.limits;
    if l.max_keys == 0 {
        errs.push(ConfigError::new("limits.max_keys", "must be at least 1"));
    }
    for (key, rate) in [
        ("limits.tenant", l.tenant),
        ("limits.ip", l.ip),
        ("limits.global", l.global),
        ("limits.throttled", Some(l.throttled)),
    ] {
        if let Some(r) = rate {
            check_rate(key, r, errs);
        }
    }
    for (key, keyed) in [
        ("limits.identity", &l.identity),
        ("limits.identity_route", &l.identity_route),
    ] {
        let Some(k) = keyed else { continue };
        check_rate(key, k.base(), errs);
        for (dt, r) in &k.device_types {
            check_rate(&format!("{key}.device_types.{dt}"), *r, errs);
        }
        if key == "limits.identity" && !k.routes.is_empty() {
            errs.push(ConfigError::new(
                "limits.identity.routes",
                "per-route rates belong in `limits.identity_route`",
            ));
        }
        for (name, r) in &k.routes {
            let at = format!("{key}.routes.{name}");
            unknown_route(at.clone(), name, errs);
            check_rate(&at, *r, errs);
        }
    }
    for (name, r) in &l.routes {
        let at = format!("limits.routes.{name}");
        unknown_route(at.clone(), name, errs);
        if r.max_in_flight == 0 {
            errs.push(ConfigError::new(
                format!("{at}.max_in_flight"),
                "must be at least 1",
            ));
        }
    }

    let v = &c.validation;
    if v.max_headers == 0 {
        errs.push(ConfigError::new(
            "validation.max_headers",
            "must be at least 1",
        ));
    }
    if v.max_header_bytes < 256 {
        errs.push(ConfigError::new(
            "validation.max_header_bytes",
            "must be at least 256",
        ));
    }
    for (name, r) in &v.routes {
        let at = format!("validation.routes.{name}");
        unknown_route(at.clone(), name, errs);
        if r.max_body_bytes == Some(0) {
            errs.push(ConfigError::new(
                format!("{at}.max_body_bytes"),
                "must be at least 1 (use `methods` to refuse bodies)",
            ));
        }
        for (i, ct) in r.content_types.iter().enumerate() {
            if !valid_media_type(ct) {
                errs.push(ConfigError::new(
                    format!("{at}.content_types[{i}]"),
                    format!("`{ct}` is not a media type in lower case (`type/subtype`)"),
                ));
            }
        }
        if r.json_schema
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            errs.push(ConfigError::new(
                format!("{at}.json_schema"),
                "must be a file path",
            ));
        }
    }

    for (key, path) in [
        ("rbac.policy", &c.rbac.policy),
        ("rbac.shadow_policy", &c.rbac.shadow_policy),
    ] {
        if path.as_deref().is_some_and(|p| p.trim().is_empty()) {
            errs.push(ConfigError::new(key, "must be a file path"));
        }
    }

    let a = &c.admin;
    if let Some(tls) = &a.tls {
        let device_cas: Vec<&std::path::Path> = c
            .gateway
            .tls
            .as_ref()
            .and_then(|t| t.client_auth.as_ref())
            .map(|ca| ca.ca_files.iter().map(|p| p.as_path()).collect())
            .unwrap_or_default();
        tls.validate("admin.tls", &device_cas, errs);
    }
    if let Some(listen) = a.listen {
        if a.tls.is_some() && a.token_sha256.is_empty() {
            // Operator certificates only.
        } else if !is_sha256_hex(&a.token_sha256) {
            errs.push(ConfigError::new(
                "admin.token_sha256",
                "required with admin.listen (unless admin.tls is set): 64 lowercase hex characters (the SHA-256 of the token)",
            ));
        }
        if listen.port() != 0 && (listen == c.gateway.listen || listen == c.dashboard.listen) {
            errs.push(ConfigError::new(
                "admin.listen",
                "must differ from gateway.listen and dashboard.listen",
            ));
        }
    } else {
        if !a.token_sha256.is_empty() && !is_sha256_hex(&a.token_sha256) {
            errs.push(ConfigError::new(
                "admin.token_sha256",
                "must be 64 lowercase hex characters (the SHA-256 of the token)",
            ));
        }
        if a.tls.is_some() {
            errs.push(ConfigError::new("admin.tls", "needs admin.listen"));
        }
    }
}

fn check_rate(key: &str, r: Rate, errs: &mut Vec<ConfigError>) {
    if !(r.rate_per_s.is_finite() && r.rate_per_s > 0.0 && r.rate_per_s <= 1e9) {
        errs.push(ConfigError::new(
            format!("{key}.rate_per_s"),
            "must be a number above 0 and at most 1e9",
        ));
    }
    if r.burst == 0 {
        errs.push(ConfigError::new(
            format!("{key}.burst"),
            "must be at least 1",
        ));
    }
}

/// 64 lowercase hex characters.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `type/subtype`, lower case, no parameters.
fn valid_media_type(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    };
    s.split_once('/')
        .is_some_and(|(t, sub)| token(t) && token(sub))
}

#[cfg(test)]
mod tests;
