//! The RBAC policy file (`[rbac] policy`): roles and what they may call, device types bound to
//! roles, and deny rules. Whatever no grant allows is denied; a matching deny rule wins over
//! every grant.
//!
//! ```toml
//! [roles.telemetry_writer]
//! allow = [{ methods = ["POST"], path = "/api/devices/{identity}/telemetry" }]
//!
//! [device_types.temperature_sensor]
//! roles = ["telemetry_writer"]
//!
//! [[deny]]
//! name = "sensors-never-touch-firmware"
//! methods = ["*"]
//! path = "/api/firmware/**"
//! device_types = ["temperature_sensor"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ROLE_ANONYMOUS, ROLE_AUTHENTICATED};
use crate::schema::{check_and_parse, parse_toml};
use crate::{ConfigError, ConfigErrors};

/// An RBAC policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RbacPolicy {
    /// Free text shown by the admin API (a version, a ticket…).
    #[serde(default)]
    pub description: String,
    /// Roles by name. `anonymous` (callers without identity) and `authenticated` (every
    /// caller with one) are held implicitly and may be given grants here too.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    /// Roles every identity of a device type holds, in addition to its own.
    #[serde(default)]
    pub device_types: BTreeMap<String, DeviceTypeBinding>,
    /// Deny rules; a match denies whatever the grants say.
    #[serde(default)]
    pub deny: Vec<DenyRule>,
}

/// What a role may call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RoleConfig {
    /// Grants: (methods, path pattern) pairs.
    #[serde(default)]
    pub allow: Vec<Grant>,
}

/// Methods allowed on a path pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Grant {
    /// Upper-case HTTP methods, or `["*"]` for any.
    pub methods: Vec<String>,
    /// Path pattern on the normalised, percent-decoded path: literal segments, `*` (any one
    /// segment), `**` (any rest, last only), `{identity}` and `{tenant}` (only the caller's
    /// own identity or tenant: owner scoping).
    pub path: String,
}

/// Roles bound to a device type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct DeviceTypeBinding {
    /// Roles (defined under `roles`) every identity of this device type holds.
    pub roles: Vec<String>,
}

/// A deny rule. It applies to a caller matching every non-empty selector (`roles`,
/// `device_types`, `tenants`, `identities`; a selector lists alternatives), and to everyone
/// when all are empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct DenyRule {
    /// Name, logged with each denial it causes.
    pub name: String,
    /// Upper-case HTTP methods, or `["*"]` for any.
    pub methods: Vec<String>,
    /// Path pattern, as in grants.
    pub path: String,
    /// Callers holding any of these roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Callers of any of these device types.
    #[serde(default)]
    pub device_types: Vec<String>,
    /// Callers of any of these tenants.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// These identities.
    #[serde(default)]
    pub identities: Vec<String>,
}

impl RbacPolicy {
    /// Read, parse and validate a policy file; every problem is reported with the file name.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::from(ConfigError::new("", format!("cannot read: {e}")))
                .with_file(Some(path))
        })?;
        Self::from_toml(&text).map_err(|e| e.with_file(Some(path)))
    }

    /// Parse and validate policy TOML.
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        let policy: Self = check_and_parse(parse_toml(text)?)?;
        policy.validate()?;
        Ok(policy)
    }

    /// Semantic checks; every problem is reported.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        for (role, r) in &self.roles {
            if role.trim().is_empty() {
                errs.push(ConfigError::new("roles", "a role name must not be empty"));
            }
            for (i, g) in r.allow.iter().enumerate() {
                let at = format!("roles.{role}.allow[{i}]");
                check_methods(&at, &g.methods, &mut errs);
                check_pattern(&format!("{at}.path"), &g.path, &mut errs);
            }
        }
        for (dt, b) in &self.device_types {
            for (i, role) in b.roles.iter().enumerate() {
                if !self.roles.contains_key(role) {
                    errs.push(ConfigError::new(
                        format!("device_types.{dt}.roles[{i}]"),
                        format!("role `{role}` is not defined under `roles`"),
                    ));
                } else if role == ROLE_ANONYMOUS || role == ROLE_AUTHENTICATED {
                    errs.push(ConfigError::new(
                        format!("device_types.{dt}.roles[{i}]"),
                        format!("`{role}` is a built-in role and cannot be bound"),
                    ));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, d) in self.deny.iter().enumerate() {
            let at = format!("deny[{i}]");
            if d.name.trim().is_empty() {
                errs.push(ConfigError::new(format!("{at}.name"), "must not be empty"));
            } else if !names.insert(d.name.as_str()) {
                errs.push(ConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate deny rule name `{}`", d.name),
                ));
            }
            check_methods(&at, &d.methods, &mut errs);
            check_pattern(&format!("{at}.path"), &d.path, &mut errs);
            for (j, role) in d.roles.iter().enumerate() {
                if !self.roles.contains_key(role)
                    && role != ROLE_ANONYMOUS
                    && role != ROLE_AUTHENTICATED
                {
                    errs.push(ConfigError::new(
                        format!("{at}.roles[{j}]"),
                        format!("role `{role}` is not defined under `roles`"),
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

fn check_methods(at: &str, methods: &[String], errs: &mut Vec<ConfigError>) {
    if methods.is_empty() {
        errs.push(ConfigError::new(
            format!("{at}.methods"),
            "must list at least one method (or `*`)",
        ));
    }
    for (j, m) in methods.iter().enumerate() {
        let ok = m == "*"
            || (http::Method::from_bytes(m.as_bytes()).is_ok() && m.to_ascii_uppercase() == *m);
        if !ok {
            errs.push(ConfigError::new(
                format!("{at}.methods[{j}]"),
                format!("`{m}` is not an HTTP method in upper case or `*`"),
            ));
        }
    }
}

/// A pattern is `/` or `/seg(/seg)*`: no empty, `.` or `..` segments, no trailing `/`, no
/// percent-escapes (patterns are written decoded), `**` last only, and placeholders only as
/// whole segments.
pub(crate) fn check_pattern(at: &str, pattern: &str, errs: &mut Vec<ConfigError>) {
    let mut fail = |reason: &str| errs.push(ConfigError::new(at, reason.to_string()));
    if pattern == "/" {
        return;
    }
    let Some(rest) = pattern.strip_prefix('/') else {
        return fail("must start with `/`");
    };
    let segs: Vec<&str> = rest.split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        if seg.is_empty() {
            return fail("must not contain `//` or end with `/`");
        }
        if *seg == "." || *seg == ".." {
            return fail("must not contain `.` or `..` segments");
        }
        if seg.contains('%') || seg.contains('\\') || seg.chars().any(char::is_control) {
            return fail("must be written decoded, without `%`, `\\` or control characters");
        }
        if *seg == "**" && i + 1 != segs.len() {
            return fail("`**` may only be the last segment");
        }
        if seg.contains('{') || seg.contains('}') {
            if !matches!(*seg, "{identity}" | "{tenant}") {
                return fail("placeholders are `{identity}` and `{tenant}`, as whole segments");
            }
        } else if seg.contains('*') && *seg != "*" && *seg != "**" {
            return fail("`*` and `**` must be whole segments");
        }
    }
}
