//! Identity config: the TLS listener (`[gateway.tls]`), device certificates (mTLS), bearer JWTs
//! and the device registry (`[identity]`), plus the registry file itself.
//!
//! Files named here are checked when the config is validated (they exist, can be read, and
//! parse as what they should be), each problem reported with the key that names the file.
//! Relative paths are relative to the working directory of the process.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{check_and_parse, parse_toml};
use crate::{ConfigError, ConfigErrors};

mod registry;
mod tls;

pub use registry::{CredentialKind, IdentityStatus, RegistryEntry, RegistryFile};
pub use tls::{AdminTlsConfig, CertField, ClientAuthConfig, KeyExchange, TlsConfig, TlsVersion};

/// Identity sources other than API keys, and how often watched files are re-read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct IdentityConfig {
    /// How often watched files (TLS certificate and key, CA bundles, CRLs, fingerprint deny
    /// list, registry, JWKS file, and the gateway's own config file for its live settings)
    /// are checked for changes, in milliseconds.
    pub reload_interval_ms: u64,
    /// The device registry. Absent: identities and their attributes come from the credentials
    /// alone.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// Bearer JWTs (`Authorization: Bearer …`). Absent: bearer tokens are refused.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
}

/// Where the device registry is and what to do with identities it does not list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RegistryConfig {
    /// The registry file (TOML, `[[identity]]` entries). Reloaded when it changes; a change
    /// that does not validate is refused, every problem logged, and the previous registry kept.
    pub file: PathBuf,
    /// Identities the registry does not list: `deny` (401) or `allow` (attributes then come
    /// from the credential).
    #[serde(default)]
    pub unknown: UnknownIdentity,
}

/// Treatment of identities missing from the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownIdentity {
    /// Refuse them (401).
    #[default]
    Deny,
    /// Accept them with the attributes their credential carries.
    Allow,
}

/// Bearer JWT validation (OAuth2 access tokens / OIDC ID tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct JwtConfig {
    /// Required `iss` (exact match).
    pub issuer: String,
    /// Accepted audiences: the token's `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// Signature algorithms accepted. `HS256` is accepted only when listed here **and**
    /// `hs256_secret_file` is set; asymmetric algorithms are verified only with JWKS keys of
    /// the matching type, so a token can never pick how its signature is checked.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (at most 300).
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// JWKS file (a JSON `{"keys": [...]}`), reloaded when it changes.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (`https://` only), fetched at start, every `jwks_refresh_ms`, and when a token
    /// names a `kid` not in the cached set (at most once per `jwks_min_refetch_ms`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM bundle of the CAs trusted for `jwks_url` instead of the built-in web PKI roots.
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
    /// Interval between scheduled fetches of `jwks_url`, in milliseconds.
    #[serde(default = "default_jwks_refresh_ms")]
    pub jwks_refresh_ms: u64,
    /// Least time between two fetches of `jwks_url` caused by unknown `kid`s, in milliseconds:
    /// a flood of made-up key ids costs at most one fetch per interval.
    #[serde(default = "default_jwks_min_refetch_ms")]
    pub jwks_min_refetch_ms: u64,
    /// Time allowed for one fetch of `jwks_url`, in milliseconds.
    #[serde(default = "default_jwks_fetch_timeout_ms")]
    pub jwks_fetch_timeout_ms: u64,
    /// File holding the HS256 shared secret (at least 32 bytes, used as they are, trailing
    /// newline removed). Required for, and only used by, `HS256`.
    #[serde(default)]
    pub hs256_secret_file: Option<PathBuf>,
    /// Longest token accepted, in bytes (longer → 401 without parsing).
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Which claims give the identity and its attributes.
    #[serde(default)]
    pub claims: ClaimsConfig,
}

fn default_algorithms() -> Vec<JwtAlgorithm> {
    vec![
        JwtAlgorithm::RS256,
        JwtAlgorithm::ES256,
        JwtAlgorithm::EdDSA,
    ]
}
fn default_leeway_s() -> u64 {
    30
}
fn default_jwks_refresh_ms() -> u64 {
    300_000
}
fn default_jwks_min_refetch_ms() -> u64 {
    30_000
}
fn default_jwks_fetch_timeout_ms() -> u64 {
    5_000
}
fn default_max_token_bytes() -> usize {
    8_192
}

/// JWS algorithms Warden can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum JwtAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
}

/// Claim names (a `.` walks into nested objects, e.g. `ext.device_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ClaimsConfig {
    /// Claim holding the identity (a non-empty string).
    #[serde(default = "default_identity_claim")]
    pub identity: String,
    /// Claim holding the tenant (empty: not read).
    #[serde(default = "default_tenant_claim")]
    pub tenant: String,
    /// Claim holding the device type (empty: not read).
    #[serde(default = "default_device_type_claim")]
    pub device_type: String,
    /// Claim holding the roles, an array of strings or a space-separated string (empty: not
    /// read).
    #[serde(default = "default_roles_claim")]
    pub roles: String,
}

fn default_identity_claim() -> String {
    "sub".into()
}
fn default_tenant_claim() -> String {
    "tenant".into()
}
fn default_device_type_claim() -> String {
    "device_type".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        Self {
            identity: default_identity_claim(),
            tenant: default_tenant_claim(),
            device_type: default_device_type_claim(),
            roles: default_roles_claim(),
        }
    }
}

// === impl IdentityConfig ===

impl IdentityConfig {
    /// Every problem, keys under `identity`.
    pub fn validate(&self, errs: &mut Vec<ConfigError>) {
        if self.reload_interval_ms == 0 {
            errs.push(ConfigError::new(
                "identity.reload_interval_ms",
                "must be at least 1",
            ));
        }
        if let Some(r) = &self.registry {
            match read_file(&r.file).and_then(|b| {
                String::from_utf8(b).map_err(|_| format!("`{}` is not UTF-8", r.file.display()))
            }) {
                Ok(text) => {
                    if let Err(e) = RegistryFile::from_toml(&text) {
                        for p in e.0 {
                            let inner = if p.key.is_empty() {
                                String::new()
                            } else {
                                format!(" {}", p.key)
                            };
                            errs.push(ConfigError::new(
                                "identity.registry.file",
                                format!("`{}`{inner}: {}", r.file.display(), p.reason),
                            ));
                        }
                    }
                }
                Err(e) => errs.push(ConfigError::new("identity.registry.file", e)),
            }
        }
        if let Some(j) = &self.jwt {
            j.validate("identity.jwt", errs);
        }
    }
}

impl JwtConfig {
    fn validate(&self, at: &str, errs: &mut Vec<ConfigError>) {
        let key = |k: &str| format!("{at}.{k}");
        if self.issuer.trim().is_empty() {
            errs.push(ConfigError::new(key("issuer"), "must not be empty"));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.trim().is_empty()) {
            errs.push(ConfigError::new(
                key("audiences"),
                "must list at least one non-empty audience",
            ));
        }
        if self.algorithms.is_empty() {
            errs.push(ConfigError::new(
                key("algorithms"),
                "must list at least one algorithm",
            ));
        }
        let mut seen = HashSet::new();
        for (i, a) in self.algorithms.iter().enumerate() {
            if !seen.insert(a) {
                errs.push(ConfigError::new(
                    key(&format!("algorithms[{i}]")),
                    format!("{a:?} is listed twice"),
                ));
            }
        }
        let hs = self.algorithms.contains(&JwtAlgorithm::HS256);
        let asymmetric = self.algorithms.iter().any(|a| *a != JwtAlgorithm::HS256);
        match (&self.hs256_secret_file, hs) {
            (None, true) => errs.push(ConfigError::new(
                key("hs256_secret_file"),
                "required when `algorithms` lists HS256",
            )),
            (Some(_), false) => errs.push(ConfigError::new(
                key("hs256_secret_file"),
                "set, but `algorithms` does not list HS256",
            )),
            (Some(f), true) => match read_file(f) {
                Ok(b) if trim_secret(&b).len() < 32 => errs.push(ConfigError::new(
                    key("hs256_secret_file"),
                    format!("`{}`: the secret must be at least 32 bytes", f.display()),
                )),
                Ok(_) => {}
                Err(e) => errs.push(ConfigError::new(key("hs256_secret_file"), e)),
            },
            (None, false) => {}
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), Some(_)) => errs.push(ConfigError::new(
                key("jwks_url"),
                "set only one of `jwks_file` and `jwks_url`",
            )),
            (None, None) if asymmetric => errs.push(ConfigError::new(
                key("jwks_file"),
                "one of `jwks_file` and `jwks_url` is required for asymmetric algorithms",
            )),
            _ => {}
        }
        if let Some(f) = &self.jwks_file {
            match read_file(f) {
                Ok(b) => {
                    if let Err(e) = check_jwks(&b) {
                        errs.push(ConfigError::new(
                            key("jwks_file"),
                            format!("`{}`: {e}", f.display()),
                        ));
                    }
                }
                Err(e) => errs.push(ConfigError::new(key("jwks_file"), e)),
            }
        }
        if let Some(u) = &self.jwks_url {
            match u.parse::<http::Uri>() {
                Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {}
                _ => errs.push(ConfigError::new(
                    key("jwks_url"),
                    format!("`{u}` is not an https:// URL"),
                )),
            }
        }
        if let Some(f) = &self.jwks_ca_file {
            if self.jwks_url.is_none() {
                errs.push(ConfigError::new(
                    key("jwks_ca_file"),
                    "only used with `jwks_url`",
                ));
            }
            match read_file(f) {
                Ok(b) => {
                    if let Err(e) = parse_certs(&b) {
                        errs.push(ConfigError::new(key("jwks_ca_file"), e));
                    }
                }
                Err(e) => errs.push(ConfigError::new(key("jwks_ca_file"), e)),
            }
        }
        if self.leeway_s > 300 {
            errs.push(ConfigError::new(key("leeway_s"), "must be at most 300"));
        }
        for (k, v) in [
            ("jwks_refresh_ms", self.jwks_refresh_ms),
            ("jwks_fetch_timeout_ms", self.jwks_fetch_timeout_ms),
        ] {
            if v == 0 {
                errs.push(ConfigError::new(key(k), "must be at least 1"));
            }
        }
        if self.max_token_bytes < 64 {
            errs.push(ConfigError::new(
                key("max_token_bytes"),
                "must be at least 64",
            ));
        }
        if self.claims.identity.trim().is_empty() {
            errs.push(ConfigError::new(
                key("claims.identity"),
                "must not be empty",
            ));
        }
        for (k, v) in [
            ("claims.identity", &self.claims.identity),
            ("claims.tenant", &self.claims.tenant),
            ("claims.device_type", &self.claims.device_type),
            ("claims.roles", &self.claims.roles),
        ] {
            if v.split('.').any(str::is_empty) && !v.is_empty() {
                errs.push(ConfigError::new(
                    key(k),
                    format!("`{v}` has an empty path segment"),
                ));
            }
        }
    }
}

// === helpers shared with the gateway ===

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

/// Every certificate in PEM text; an error when there is none or one is malformed.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// Every CRL in a file: PEM blocks, or one DER CRL.
pub fn parse_crls(bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    if bytes.starts_with(&[0x30]) {
        return Ok(vec![CertificateRevocationListDer::from(bytes.to_vec())]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM CRL: {e}"))?;
    if crls.is_empty() {
        return Err("holds no CRL (PEM `X509 CRL` blocks or one DER CRL)".into());
    }
    Ok(crls)
}

/// A SHA-256 fingerprint as 32 bytes; hex with optional `:` separators, any case.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(hex).ok()?;
    bytes.try_into().ok()
}

/// A fingerprint list file: one per line, `#` comments, blank lines ignored.
pub fn parse_fingerprint_list(text: &str) -> Result<Vec<[u8; 32]>, String> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_fingerprint(line) {
            Some(fp) => out.push(fp),
            None => bad.push((n + 1).to_string()),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "line(s) {} are not SHA-256 fingerprints (64 hex digits)",
            bad.join(", ")
        ))
    }
}

/// The HS256 secret as stored in its file (one trailing newline removed).
pub fn trim_secret(bytes: &[u8]) -> &[u8] {
    let b = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// Shallow JWKS check: a JSON object with a `keys` array of objects that have a `kty`.
pub fn check_jwks(bytes: &[u8]) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let keys = v
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("not a JWKS (no `keys` array)")?;
    for (i, k) in keys.iter().enumerate() {
        if k.get("kty").and_then(|t| t.as_str()).is_none() {
            return Err(format!("keys[{i}] has no `kty`"));
        }
    }
    Ok(())
}

/// Unix seconds of an RFC 3339 timestamp (`2026-01-31T12:00:00Z`, offsets allowed).
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
}

// === impl WardenConfig ===

impl crate::WardenConfig {
    /// The identity checks of [`WardenConfig::validate`](crate::WardenConfig::validate).
    pub(crate) fn validate_identity(&self, errs: &mut Vec<ConfigError>) {
        let client_auth = self
            .gateway
            .tls
            .as_ref()
            .and_then(|t| t.client_auth.as_ref());
        if let Some(tls) = &self.gateway.tls {
            tls.validate("gateway.tls", errs);
            if tls.listen == self.gateway.listen && tls.listen.port() != 0 {
                errs.push(ConfigError::new(
                    "gateway.tls.listen",
                    "must differ from gateway.listen",
                ));
            }
        }
        self.identity.validate(errs);
        for (i, r) in self.routes.iter().enumerate() {
            if r.require_mtls && client_auth.is_none() {
                errs.push(ConfigError::new(
                    format!("routes[{i}].require_mtls"),
                    "needs `gateway.tls.client_auth`",
                ));
            }
            if r.auth == crate::RouteAuth::Jwt && self.identity.jwt.is_none() {
                errs.push(ConfigError::new(
                    format!("routes[{i}].auth"),
                    "`jwt` needs `identity.jwt`",
                ));
            }
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            let mut at = |f: &str, v: &Option<String>| {
                v.as_deref().and_then(|t| match parse_rfc3339(t) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        errs.push(ConfigError::new(format!("api_keys[{i}].{f}"), e));
                        None
                    }
                })
            };
            let from = at("not_before", &k.not_before);
            let until = at("expires_at", &k.expires_at);
            if let (Some(from), Some(until)) = (from, until)
                && from >= until
            {
                errs.push(ConfigError::new(
                    format!("api_keys[{i}].expires_at"),
                    "must be later than `not_before`",
                ));
            }
        }
    }
}

impl RegistryFile {
    /// Parse and validate a registry file's text; every problem is reported with its key.
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        let file: Self = check_and_parse(parse_toml(text)?)?;
        file.validate()?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests;
