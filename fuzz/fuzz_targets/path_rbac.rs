//! Path normalisation + RBAC: whatever the gateway accepts has no dot segment, no empty
//! segment, no look-alike, no trailing dot or space; and a path under the denied
//! `/api/admin/**` is never allowed, whatever its raw encoding.
#![no_main]

use std::sync::OnceLock;

use axum::http::Method;
use libfuzzer_sys::fuzz_target;
use warden_config::{PathCase, PathsConfig, RbacPolicy};
use warden_gateway::path::normalise;
use warden_gateway::rbac::{Caller, Policy, Verdict};

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let text = "description = \"fuzz\"\n[roles.fleet_admin]\n\
                    allow = [{ methods = [\"*\"], path = \"/api/**\" }]\n\
                    [[deny]]\nname = \"admin\"\nmethods = [\"*\"]\npath = \"/api/admin/**\"\n";
        let p = RbacPolicy::from_toml(text).expect("policy");
        Policy::compile(&p, PathCase::Sensitive)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let rules = PathsConfig {
        case: PathCase::Sensitive,
        allow_semicolons: false,
    };
    let Ok(n) = normalise(raw, &rules) else {
        return;
    };
    for seg in n.segments() {
        assert!(
            !seg.is_empty() && seg != "." && seg != "..",
            "{raw:?} → {n:?}"
        );
        assert!(
            !seg.ends_with('.') && !seg.ends_with(' '),
            "{raw:?} → {n:?}"
        );
        assert!(!seg.contains(['/', '\\', '\u{FF0E}', '\u{FF0F}', '\u{2024}', '\u{2025}']));
    }
    let roles = vec!["fleet_admin".to_string()];
    let caller = Caller {
        identity: Some("ops"),
        tenant: "acme",
        device_type: "console",
        roles: &roles,
    };
    let v = policy().evaluate(&caller, &Method::GET, &n);
    if n.as_str() == "/api/admin" || n.as_str().starts_with("/api/admin/") {
        assert!(!matches!(v, Verdict::Allow { .. }), "{raw:?} allowed");
    }
});
