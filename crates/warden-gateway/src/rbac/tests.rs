use super::*;
use crate::path::normalise;
use warden_config::PathsConfig;

const POLICY: &str = r#"
description = "test v1"

[roles.telemetry_writer]
allow = [
  { methods = ["POST"], path = "/api/devices/{identity}/telemetry" },
  { methods = ["GET"], path = "/api/devices/{identity}/**" },
]

[roles.firmware_reader]
allow = [{ methods = ["GET"], path = "/api/firmware/**" }]

[roles.fleet_admin]
allow = [{ methods = ["*"], path = "/api/**" }]

[roles.anonymous]
allow = [{ methods = ["GET"], path = "/public/**" }]

[roles.tenant_reader]
allow = [{ methods = ["GET"], path = "/api/tenants/{tenant}/**" }]

[device_types.temperature_sensor]
roles = ["telemetry_writer"]

[device_types.hub]
roles = ["telemetry_writer", "firmware_reader"]

[[deny]]
name = "sensors-never-touch-firmware"
methods = ["*"]
path = "/api/firmware/**"
device_types = ["temperature_sensor"]

[[deny]]
name = "nobody-deletes-audit"
methods = ["DELETE"]
path = "/api/audit/**"
"#;

fn policy() -> Policy {
    Policy::compile(
        &RbacPolicy::from_toml(POLICY).expect("valid policy"),
        PathCase::Sensitive,
    )
}

fn path(p: &str) -> NormalPath {
    normalise(
        p,
        &PathsConfig {
            case: PathCase::Sensitive,
            allow_semicolons: false,
        },
    )
    .expect("normal")
}

fn caller<'a>(id: &'a str, dt: &'a str, roles: &'a [String]) -> Caller<'a> {
    Caller {
        identity: Some(id),
        tenant: "acme",
        device_type: dt,
        roles,
    }
}

#[test]
fn device_type_roles_and_owner_scoping() {
    let p = policy();
    let c = caller("dev-1", "temperature_sensor", &[]);
    let v = p.evaluate(&c, &Method::POST, &path("/api/devices/dev-1/telemetry"));
    assert_eq!(
        v,
        Verdict::Allow {
            role: "telemetry_writer"
        }
    );
    assert_eq!(
        p.evaluate(&c, &Method::POST, &path("/api/devices/dev-2/telemetry")),
        Verdict::NotGranted,
        "another device's resource (BOLA)"
    );
    assert_eq!(
        p.evaluate(&c, &Method::DELETE, &path("/api/devices/dev-1/telemetry")),
        Verdict::NotGranted,
        "method not granted"
    );
    assert_eq!(
        p.evaluate(&c, &Method::GET, &path("/api/firmware/v2.bin")),
        Verdict::DeniedByRule("sensors-never-touch-firmware")
    );
    let hub = caller("hub-1", "hub", &[]);
    assert!(
        p.evaluate(&hub, &Method::GET, &path("/api/firmware/v2.bin"))
            .allowed()
    );
}

#[test]
fn deny_wins_over_any_grant() {
    let p = policy();
    let admin_roles = vec!["fleet_admin".to_string()];
    let sensor_admin = caller("dev-9", "temperature_sensor", &admin_roles);
    assert_eq!(
        p.evaluate(&sensor_admin, &Method::GET, &path("/api/firmware")),
        Verdict::DeniedByRule("sensors-never-touch-firmware"),
        "a granted role does not lift a deny"
    );
    let admin = caller("ops-1", "console", &admin_roles);
    assert!(
        p.evaluate(&admin, &Method::PUT, &path("/api/firmware/x"))
            .allowed()
    );
    assert_eq!(
        p.evaluate(&admin, &Method::DELETE, &path("/api/audit/1")),
        Verdict::DeniedByRule("nobody-deletes-audit")
    );
}

#[test]
fn builtin_roles_and_unknown_roles() {
    let p = policy();
    let anon = Caller {
        identity: None,
        tenant: "",
        device_type: "",
        roles: &[],
    };
    assert!(
        p.evaluate(&anon, &Method::GET, &path("/public/x"))
            .allowed()
    );
    assert_eq!(
        p.evaluate(&anon, &Method::GET, &path("/api/devices/anonymous/x")),
        Verdict::NotGranted
    );
    let authed = caller("dev-1", "unknown_type", &[]);
    assert_eq!(
        p.evaluate(&authed, &Method::GET, &path("/public/x")),
        Verdict::NotGranted,
        "`anonymous` grants are not held by authenticated callers"
    );
    let bogus = vec!["no_such_role".to_string()];
    let c = caller("dev-1", "", &bogus);
    assert_eq!(
        p.evaluate(&c, &Method::GET, &path("/api/x")),
        Verdict::NotGranted
    );
    let tr = vec!["tenant_reader".to_string()];
    let c = caller("dev-1", "", &tr);
    assert!(
        p.evaluate(&c, &Method::GET, &path("/api/tenants/acme/d"))
            .allowed()
    );
    assert_eq!(
        p.evaluate(&c, &Method::GET, &path("/api/tenants/other/d")),
        Verdict::NotGranted
    );
}

#[test]
fn effective_policy_substitutes_the_owner() {
    let p = policy();
    let c = caller("dev-1", "temperature_sensor", &[]);
    let e = p.effective(&c);
    assert_eq!(e.roles, ["authenticated", "telemetry_writer"]);
    assert!(
        e.allow
            .iter()
            .any(|r| r.path == "/api/devices/dev-1/telemetry" && r.methods == ["POST"])
    );
    let deny: Vec<&str> = e.deny.iter().filter_map(|r| r.name.as_deref()).collect();
    assert_eq!(
        deny,
        ["sensors-never-touch-firmware", "nobody-deletes-audit"]
    );
    assert_eq!(e.description, "test v1");
}
