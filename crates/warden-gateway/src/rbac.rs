//! Role-based access control: the compiled policy and its evaluation.
//!
//! A caller holds its own roles (API key or registry), the roles its device type is bound to,
//! and one built-in role: `authenticated`, or `anonymous` when it has no identity. A request is
//! allowed when no deny rule matches it and some grant of a held role does; deny wins, and
//! whatever is not granted is denied. Rules match the normalised path ([`crate::path`]), and
//! `{identity}`/`{tenant}` segments only match the caller's own values (owner scoping).
//!
//! Without a configured policy the gateway allows every authenticated request (as before RBAC);
//! a shadow policy is evaluated on every request and only counted and logged
//! ([`store::ShadowStats`]).

mod pattern;
pub mod store;

use std::collections::HashMap;

use axum::http::Method;
use serde::Serialize;
use warden_config::{PathCase, ROLE_ANONYMOUS, ROLE_AUTHENTICATED, RbacPolicy};

use crate::Reject;
use crate::identity::Principal;
use crate::path::NormalPath;
pub use pattern::{Methods, Owner, Pattern};
pub use store::{Policies, PolicyStore, ReloadReport, ShadowDenial, ShadowStats};

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// `None` for anonymous callers.
    pub identity: Option<&'a str>,
    pub tenant: &'a str,
    pub device_type: &'a str,
    /// The caller's own roles (from its credential or the registry).
    pub roles: &'a [String],
}

impl Caller<'_> {
    fn owner(&self) -> Owner<'_> {
        Owner {
            identity: self.identity,
            tenant: self.tenant,
        }
    }

    fn builtin_role(&self) -> &'static str {
        if self.identity.is_some() {
            ROLE_AUTHENTICATED
        } else {
            ROLE_ANONYMOUS
        }
    }
}

/// What a policy says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'p> {
    /// Granted to `role`.
    Allow { role: &'p str },
    /// A deny rule matched.
    DeniedByRule(&'p str),
    /// No grant of a held role matches (default deny).
    NotGranted,
}

impl Verdict<'_> {
    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }

    /// Short reason for logs and the admin API.
    pub fn reason(&self) -> String {
        match self {
            Verdict::Allow { role } => format!("granted to role `{role}`"),
            Verdict::DeniedByRule(name) => format!("deny rule `{name}`"),
            Verdict::NotGranted => "no grant (default deny)".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledGrant {
    methods: Methods,
    pattern: Pattern,
}

#[derive(Debug, Clone)]
struct CompiledDeny {
    name: String,
    methods: Methods,
    pattern: Pattern,
    roles: Vec<String>,
    device_types: Vec<String>,
    tenants: Vec<String>,
    identities: Vec<String>,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    description: String,
    roles: HashMap<String, Vec<CompiledGrant>>,
    device_types: HashMap<String, Vec<String>>,
    deny: Vec<CompiledDeny>,
}

impl Policy {
    /// Compile a validated policy.
    pub fn compile(p: &RbacPolicy, case: PathCase) -> Self {
        let roles = p
            .roles
            .iter()
            .map(|(name, r)| {
                let grants = r
                    .allow
                    .iter()
                    .map(|g| CompiledGrant {
                        methods: Methods::compile(&g.methods),
                        pattern: Pattern::compile(&g.path, case),
                    })
                    .collect();
                (name.clone(), grants)
            })
            .collect();
        let device_types = p
            .device_types
            .iter()
            .map(|(dt, b)| (dt.clone(), b.roles.clone()))
            .collect();
        let deny = p
            .deny
            .iter()
            .map(|d| CompiledDeny {
                name: d.name.clone(),
                methods: Methods::compile(&d.methods),
                pattern: Pattern::compile(&d.path, case),
                roles: d.roles.clone(),
                device_types: d.device_types.clone(),
                tenants: d.tenants.clone(),
                identities: d.identities.clone(),
            })
            .collect();
        Self {
            description: p.description.clone(),
            roles,
            device_types,
            deny,
        }
    }

    /// Every role `caller` holds: its own, its device type's, and the built-in one.
    fn held<'a>(&'a self, caller: &Caller<'a>) -> impl Iterator<Item = &'a str> + 'a {
        let bound = self
            .device_types
            .get(caller.device_type)
            .map(Vec::as_slice)
            .unwrap_or_default();
        std::iter::once(caller.builtin_role())
            .chain(caller.roles.iter().map(String::as_str))
            .chain(bound.iter().map(String::as_str))
    }

    fn deny_applies(&self, d: &CompiledDeny, caller: &Caller<'_>) -> bool {
        let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        any(&d.device_types, caller.device_type)
            && any(&d.tenants, caller.tenant)
            && any(&d.identities, caller.identity.unwrap_or(ROLE_ANONYMOUS))
            && (d.roles.is_empty() || self.held(caller).any(|r| d.roles.iter().any(|x| x == r)))
    }

    /// Evaluate a request: deny rules first (deny wins), then the grants of held roles.
    pub fn evaluate(&self, caller: &Caller<'_>, method: &Method, path: &NormalPath) -> Verdict<'_> {
        let owner = caller.owner();
        for d in &self.deny {
            if d.methods.contains(method)
                && d.pattern.matches(path, owner)
                && self.deny_applies(d, caller)
            {
                return Verdict::DeniedByRule(&d.name);
            }
        }
        for role in self.held(caller) {
            let Some((name, grants)) = self.roles.get_key_value(role) else {
                continue;
            };
            if grants
                .iter()
                .any(|g| g.methods.contains(method) && g.pattern.matches(path, owner))
            {
                return Verdict::Allow { role: name };
            }
        }
        Verdict::NotGranted
    }

    /// What `caller` may do under this policy, with its own identity and tenant substituted.
    pub fn effective(&self, caller: &Caller<'_>) -> EffectivePolicy {
        let owner = caller.owner();
        let mut roles: Vec<String> = Vec::new();
        for r in self.held(caller) {
            if !roles.iter().any(|x| x == r) {
                roles.push(r.to_string());
            }
        }
        let allow = roles
            .iter()
            .flat_map(|role| {
                self.roles.get(role).into_iter().flatten().map(|g| Rule {
                    role: Some(role.clone()),
                    name: None,
                    methods: g.methods.names(),
                    path: g.pattern.render(owner),
                })
            })
            .collect();
        let deny = self
            .deny
            .iter()
            .filter(|d| self.deny_applies(d, caller))
            .map(|d| Rule {
                role: None,
                name: Some(d.name.clone()),
                methods: d.methods.names(),
                path: d.pattern.render(owner),
            })
            .collect();
        EffectivePolicy {
            description: self.description.clone(),
            roles,
            allow,
            deny,
        }
    }
}

/// The RBAC phase: evaluate the shadow policy (count and log what it would deny), then the
/// enforced one (403 when it denies). Without an enforced policy everything passes.
pub fn authorize(
    policies: &Policies,
    shadow_stats: &ShadowStats,
    principal: Option<&Principal>,
    method: &Method,
    path: &NormalPath,
    request_id: &str,
) -> Result<(), Reject> {
    if policies.enforced.is_none() && policies.shadow.is_none() {
        return Ok(());
    }
    let caller = Caller {
        identity: principal.map(|p| p.identity.as_str()),
        tenant: principal.map_or("", |p| p.tenant.as_str()),
        device_type: principal.map_or("", |p| p.device_type.as_str()),
        roles: principal.map_or(&[], |p| p.roles.as_slice()),
    };
    if let Some(shadow) = &policies.shadow {
        shadow_stats
            .evaluated
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let v = shadow.evaluate(&caller, method, path);
        if !v.allowed() {
            let reason = v.reason();
            tracing::debug!(%reason, "Shadow policy would deny.");
            shadow_stats.record(ShadowDenial {
                request_id: request_id.to_string(),
                identity: caller.identity.unwrap_or(ROLE_ANONYMOUS).to_string(),
                method: method.as_str().to_string(),
                path: path.as_str().to_string(),
                reason,
            });
        }
    }
    if let Some(enforced) = &policies.enforced {
        let v = enforced.evaluate(&caller, method, path);
        if !v.allowed() {
            tracing::debug!(reason = %v.reason(), "RBAC denied.");
            return Err(Reject::Forbidden);
        }
    }
    Ok(())
}

/// A caller's effective policy (admin API).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EffectivePolicy {
    pub description: String,
    /// Roles held (built-in first, then own, then bound by device type).
    pub roles: Vec<String>,
    /// Grants of those roles.
    pub allow: Vec<Rule>,
    /// Deny rules that apply to the caller.
    pub deny: Vec<Rule>,
}

/// One grant or deny rule as it applies to a caller.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub methods: Vec<String>,
    pub path: String,
}

#[cfg(test)]
mod tests;
