//! The device registry file: who may call, with which attributes and credentials.
//!
//! ```toml
//! [[identity]]
//! id = "thermo-0001"
//! tenant = "acme"
//! device_type = "thermometer"
//! roles = ["telemetry-writer"]
//! auth_methods = ["client_cert", "api_key"]
//! status = "active"
//! ```

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, ConfigErrors};

/// A registry file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RegistryFile {
    /// The registered identities.
    #[serde(default)]
    pub identity: Vec<RegistryEntry>,
}

/// One registered identity (device, service or user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RegistryEntry {
    /// The identity, as the credentials name it (API key `identity`, certificate field, JWT
    /// identity claim).
    pub id: String,
    /// Tenant the identity belongs to (overrides what a credential says).
    #[serde(default)]
    pub tenant: String,
    /// Device type (overrides what a credential says).
    #[serde(default)]
    pub device_type: String,
    /// Roles (override what a credential says).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Credentials this identity may authenticate with: `api_key`, `jwt`, `client_cert`. A
    /// request authenticated any other way is refused (401).
    pub auth_methods: Vec<CredentialKind>,
    /// `active`, or `disabled`: every request of a disabled identity is refused (401).
    #[serde(default)]
    pub status: IdentityStatus,
}

/// A way to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// An API key (`X-Api-Key` or `Authorization: ApiKey …`).
    ApiKey,
    /// A bearer JWT (`Authorization: Bearer …`).
    Jwt,
    /// A verified client certificate (mTLS).
    ClientCert,
}

/// Whether a registered identity may call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityStatus {
    #[default]
    Active,
    Disabled,
}

impl RegistryFile {
    /// Semantic checks; every problem is reported with its key.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        let mut ids = HashSet::new();
        for (i, e) in self.identity.iter().enumerate() {
            let at = |k: &str| format!("identity[{i}].{k}");
            if e.id.trim().is_empty() || e.id != e.id.trim() || e.id == warden_event::ANONYMOUS {
                errs.push(ConfigError::new(
                    at("id"),
                    "must be a non-empty identity without surrounding spaces, other than `anonymous`",
                ));
            } else if !ids.insert(e.id.as_str()) {
                errs.push(ConfigError::new(
                    at("id"),
                    format!("duplicate identity `{}`", e.id),
                ));
            }
            if e.auth_methods.is_empty() {
                errs.push(ConfigError::new(
                    at("auth_methods"),
                    "must list at least one method (api_key, jwt, client_cert)",
                ));
            }
            let mut seen = HashSet::new();
            for (j, m) in e.auth_methods.iter().enumerate() {
                if !seen.insert(m) {
                    errs.push(ConfigError::new(
                        format!("identity[{i}].auth_methods[{j}]"),
                        "listed twice",
                    ));
                }
            }
            for (j, r) in e.roles.iter().enumerate() {
                if r.trim().is_empty() {
                    errs.push(ConfigError::new(
                        format!("identity[{i}].roles[{j}]"),
                        "must not be empty",
                    ));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }
}
