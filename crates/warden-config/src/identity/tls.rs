//! TLS listener config: the device listener (`[gateway.tls]`), device certificates (mTLS),
//! key exchange groups, and the admin listener's TLS (`[admin.tls]`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{parse_certs, parse_crls, parse_fingerprint, parse_fingerprint_list, read_file};
use crate::ConfigError;

/// The TLS listener. Absent: the gateway serves plain HTTP only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct TlsConfig {
    /// Address of the TLS listener (HTTP/1.1 and HTTP/2 chosen by ALPN).
    pub listen: SocketAddr,
    /// Server certificate chain, PEM, leaf first. Reloaded when it changes (open connections
    /// keep the certificate they started with).
    pub cert_file: PathBuf,
    /// Private key of the server certificate, PEM (PKCS#8, PKCS#1 or SEC1). Reloaded with the
    /// certificate.
    pub key_file: PathBuf,
    /// Oldest TLS version accepted: `"1.2"` or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Time a client has to complete the TLS handshake, in milliseconds.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Key exchange groups offered: `"hybrid"` prefers the post-quantum hybrid X25519MLKEM768
    /// (then X25519, P-256, P-384 for clients without it); `"classical"` leaves it out.
    #[serde(default)]
    pub key_exchange: KeyExchange,
    /// Device (client) certificates. Absent: no client certificate is asked for.
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

/// Oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// Key exchange groups a TLS listener offers (TLS 1.3; TLS 1.2 clients use the classical ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyExchange {
    /// X25519MLKEM768 (ML-KEM-768 with X25519, protecting recorded traffic against a future
    /// quantum computer) first, then X25519, secp256r1, secp384r1.
    #[default]
    Hybrid,
    /// X25519, secp256r1, secp384r1 only.
    Classical,
}

/// Device certificates (mutual TLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ClientAuthConfig {
    /// PEM files holding the CA certificates that issue device certificates; a device
    /// certificate must chain to one of them. Reloaded when they change.
    pub ca_files: Vec<PathBuf>,
    /// Certificate revocation lists (PEM or DER) of those CAs; a listed certificate is refused
    /// at the handshake and, once a changed CRL is loaded, on connections already open.
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
    /// Refuse certificates whose issuer has no CRL in `crl_files` (default: only the CRLs given
    /// are checked).
    #[serde(default)]
    pub require_crl: bool,
    /// Refuse the TLS handshake without a client certificate. When false a certificate is
    /// optional on the listener and only routes with `require_mtls = true` insist on one.
    #[serde(default)]
    pub required: bool,
    /// Certificate field that names the device: `san_uri`, `san_dns` or `subject_cn`.
    pub identity_field: CertField,
    /// Prefix the field must start with, removed to give the identity (for example
    /// `urn:warden:device:`). A certificate without such a value is refused. Empty: the whole
    /// value is the identity (the first one, when the field has several).
    #[serde(default)]
    pub identity_prefix: String,
    /// SHA-256 fingerprints (hex, `:` separators allowed) of certificates refused although
    /// they are otherwise valid. Checked on every request.
    #[serde(default)]
    pub deny_fingerprints: Vec<String>,
    /// File with more fingerprints to refuse, one per line (`#` starts a comment). Reloaded
    /// when it changes.
    #[serde(default)]
    pub deny_fingerprints_file: Option<PathBuf>,
}

/// TLS on the admin listener, with operator client certificates (mTLS) as an alternative to
/// the admin token (`[admin.tls]`).
///
/// A request is authenticated by a client certificate that chains to `client_ca_files` (and,
/// when `allowed_names` is not empty, names one of them), or by the token. When
/// `admin.token_sha256` is empty, the handshake itself requires a certificate. Certificates
/// from any other CA — device certificates included — are refused at the handshake. The files
/// are re-read by `POST /admin/reload` (a set that does not load is refused whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct AdminTlsConfig {
    /// Server certificate chain of the admin listener, PEM, leaf first.
    pub cert_file: PathBuf,
    /// Its private key, PEM.
    pub key_file: PathBuf,
    /// CA certificates (PEM) that issue operator certificates. Use a CA of its own: sharing
    /// the device CA would make every device an operator, so that is refused unless
    /// `allowed_names` narrows it down.
    pub client_ca_files: Vec<PathBuf>,
    /// Operator names admitted: a certificate passes when its subject CN, a SAN DNS name or a
    /// SAN URI equals one of them. Empty: every certificate of `client_ca_files`.
    #[serde(default)]
    pub allowed_names: Vec<String>,
    /// Oldest TLS version accepted: `"1.2"` or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Time a client has to complete the TLS handshake, in milliseconds.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Key exchange groups offered: `"hybrid"` (X25519MLKEM768 first) or `"classical"`.
    #[serde(default)]
    pub key_exchange: KeyExchange,
}

impl AdminTlsConfig {
    /// Every problem, keys under `at` (`admin.tls`); `device_cas` are the device CA files of
    /// the gateway's TLS listener.
    pub fn validate(&self, at: &str, device_cas: &[&Path], errs: &mut Vec<ConfigError>) {
        let key = |k: &str| format!("{at}.{k}");
        check_cert_and_key(&self.cert_file, &self.key_file, at, errs);
        if self.client_ca_files.is_empty() {
            errs.push(ConfigError::new(
                key("client_ca_files"),
                "must name at least one file",
            ));
        }
        let device: HashSet<Vec<u8>> = device_cas
            .iter()
            .filter_map(|f| read_file(f).ok())
            .filter_map(|b| parse_certs(&b).ok())
            .flatten()
            .map(|c| c.as_ref().to_vec())
            .collect();
        for (i, f) in self.client_ca_files.iter().enumerate() {
            let at = key(&format!("client_ca_files[{i}]"));
            match read_file(f).and_then(|b| parse_certs(&b)) {
                Ok(certs) => {
                    if self.allowed_names.is_empty()
                        && certs.iter().any(|c| device.contains(c.as_ref()))
                    {
                        errs.push(ConfigError::new(
                            at,
                            "is a device CA: every device could call the admin API (use a CA of \
                             its own, or list the operators in `allowed_names`)",
                        ));
                    }
                }
                Err(e) => errs.push(ConfigError::new(at, e)),
            }
        }
        for (i, n) in self.allowed_names.iter().enumerate() {
            if n.trim().is_empty() || n.chars().any(char::is_control) {
                errs.push(ConfigError::new(
                    key(&format!("allowed_names[{i}]")),
                    "must be a non-empty name",
                ));
            }
        }
        if self.handshake_timeout_ms == 0 {
            errs.push(ConfigError::new(
                key("handshake_timeout_ms"),
                "must be at least 1",
            ));
        }
    }
}

/// Where a certificate names its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertField {
    /// A `URI` subject alternative name.
    SanUri,
    /// A `DNS` subject alternative name.
    SanDns,
    /// The subject's common name.
    SubjectCn,
}

// === impl TlsConfig ===

impl TlsConfig {
    /// Every problem, keys under `at` (e.g. `gateway.tls`).
    pub fn validate(&self, at: &str, errs: &mut Vec<ConfigError>) {
        let key = |k: &str| format!("{at}.{k}");
        check_cert_and_key(&self.cert_file, &self.key_file, at, errs);
        if self.handshake_timeout_ms == 0 {
            errs.push(ConfigError::new(
                key("handshake_timeout_ms"),
                "must be at least 1",
            ));
        }
        if let Some(c) = &self.client_auth {
            c.validate(&key("client_auth"), errs);
        }
    }
}

impl ClientAuthConfig {
    fn validate(&self, at: &str, errs: &mut Vec<ConfigError>) {
        let key = |k: &str| format!("{at}.{k}");
        if self.ca_files.is_empty() {
            errs.push(ConfigError::new(
                key("ca_files"),
                "must name at least one file",
            ));
        }
        for (i, f) in self.ca_files.iter().enumerate() {
            let at = key(&format!("ca_files[{i}]"));
            match read_file(f) {
                Ok(bytes) => {
                    if let Err(e) = parse_certs(&bytes) {
                        errs.push(ConfigError::new(at, e));
                    }
                }
                Err(e) => errs.push(ConfigError::new(at, e)),
            }
        }
        for (i, f) in self.crl_files.iter().enumerate() {
            let at = key(&format!("crl_files[{i}]"));
            match read_file(f) {
                Ok(bytes) => {
                    if let Err(e) = parse_crls(&bytes) {
                        errs.push(ConfigError::new(at, e));
                    }
                }
                Err(e) => errs.push(ConfigError::new(at, e)),
            }
        }
        for (i, fp) in self.deny_fingerprints.iter().enumerate() {
            if parse_fingerprint(fp).is_none() {
                errs.push(ConfigError::new(
                    key(&format!("deny_fingerprints[{i}]")),
                    format!("`{fp}` is not a SHA-256 fingerprint (64 hex digits)"),
                ));
            }
        }
        if let Some(f) = &self.deny_fingerprints_file {
            match read_file(f).and_then(|b| {
                String::from_utf8(b).map_err(|_| format!("`{}` is not UTF-8", f.display()))
            }) {
                Ok(text) => {
                    if let Err(e) = parse_fingerprint_list(&text) {
                        errs.push(ConfigError::new(
                            key("deny_fingerprints_file"),
                            format!("`{}`: {e}", f.display()),
                        ));
                    }
                }
                Err(e) => errs.push(ConfigError::new(key("deny_fingerprints_file"), e)),
            }
        }
        if self.identity_prefix.chars().any(char::is_whitespace) {
            errs.push(ConfigError::new(
                key("identity_prefix"),
                "must not contain whitespace",
            ));
        }
    }
}

/// Problems with a listener's certificate chain and private key files (`{at}.cert_file`,
/// `{at}.key_file`): unreadable, no certificate, no PEM private key.
fn check_cert_and_key(cert_file: &Path, key_file: &Path, at: &str, errs: &mut Vec<ConfigError>) {
    match read_file(cert_file) {
        Ok(bytes) => {
            if let Err(e) = parse_certs(&bytes) {
                errs.push(ConfigError::new(format!("{at}.cert_file"), e));
            }
        }
        Err(e) => errs.push(ConfigError::new(format!("{at}.cert_file"), e)),
    }
    match read_file(key_file) {
        Ok(bytes) => {
            if PrivateKeyDer::from_pem_slice(&bytes).is_err() {
                errs.push(ConfigError::new(
                    format!("{at}.key_file"),
                    format!(
                        "`{}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                        key_file.display()
                    ),
                ));
            }
        }
        Err(e) => errs.push(ConfigError::new(format!("{at}.key_file"), e)),
    }
}
