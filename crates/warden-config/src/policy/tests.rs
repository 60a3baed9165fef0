use super::*;

#[test]
fn defaults_limit_nothing() {
    let c = WardenConfig::default();
    assert_eq!(c.paths.case, PathCase::Sensitive);
    assert!(!c.paths.allow_semicolons);
    assert!(c.rbac.policy.is_none() && c.rbac.shadow_policy.is_none());
    let l = &c.limits;
    assert!(l.identity.is_none() && l.identity_route.is_none());
    assert!(l.tenant.is_none() && l.ip.is_none() && l.global.is_none());
    assert_eq!(l.max_in_flight, 0);
    assert!(c.admin.listen.is_none());
    assert!(c.validation.routes.is_empty());
}

#[test]
fn sections_parse() {
    let c = WardenConfig::from_toml(
        r#"
        [[routes]]
        name = "telemetry"
        prefix = "/api"
        upstream = "http://127.0.0.1:9000"

        [paths]
        case = "insensitive"

        [rbac]
        policy = "rbac.toml"

        [limits.identity]
        rate_per_s = 10.0
        burst = 20
        device_types.camera = { rate_per_s = 100.0, burst = 200 }

        [limits.identity_route]
        rate_per_s = 5.0
        burst = 5
        routes.telemetry = { rate_per_s = 1.0, burst = 1 }

        [limits.routes.telemetry]
        max_in_flight = 64

        [validation.routes.telemetry]
        max_body_bytes = 4096
        content_types = ["application/json"]
        json_schema = "telemetry.schema.json"

        [admin]
        listen = "127.0.0.1:9500"
        token_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        "#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.paths.case, PathCase::Insensitive);
    let id = c.limits.identity.as_ref().expect("identity");
    assert_eq!(id.device_types["camera"].burst, 200);
    assert_eq!(c.limits.routes["telemetry"].max_in_flight, 64);
    assert_eq!(c.validation.routes["telemetry"].max_body_bytes, Some(4096));
    assert_eq!(c.admin.listen.map(|a| a.port()), Some(9500));
}

#[test]
fn every_policy_section_problem_is_reported_with_its_key() {
    let errs = WardenConfig::from_toml(
        r#"
        [[routes]]
        name = "api"
        prefix = "/api"
        upstream = "http://127.0.0.1:9000"

        [rbac]
        policy = " "

        [limits]
        max_keys = 0
        global = { rate_per_s = 0.0, burst = 0 }
        [limits.identity]
        rate_per_s = -1.0
        burst = 1
        routes.api = { rate_per_s = 1.0, burst = 1 }
        [limits.identity_route]
        rate_per_s = 1.0
        burst = 1
        routes.nope = { rate_per_s = 1.0, burst = 1 }
        [limits.routes.ghost]
        max_in_flight = 0

        [validation]
        max_headers = 0
        max_header_bytes = 10
        [validation.routes.api]
        max_body_bytes = 0
        content_types = ["JSON"]

        [admin]
        listen = "127.0.0.1:9500"
        token_sha256 = "secret"
        "#,
    )
    .expect_err("invalid");
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "rbac.policy",
        "limits.max_keys",
        "limits.global.rate_per_s",
        "limits.global.burst",
        "limits.identity.rate_per_s",
        "limits.identity.routes",
        "limits.identity_route.routes.nope",
        "limits.routes.ghost",
        "limits.routes.ghost.max_in_flight",
        "validation.max_headers",
        "validation.max_header_bytes",
        "validation.routes.api.max_body_bytes",
        "validation.routes.api.content_types[0]",
        "admin.token_sha256",
    ] {
        assert!(keys.contains(&k), "{k} missing from {errs}");
    }
}

#[test]
fn unknown_keys_in_policy_sections_are_refused() {
    let errs =
        WardenConfig::from_toml("[limits.identity]\nrate = 1\nburst = 1\n").expect_err("invalid");
    assert!(errs.0.iter().any(|e| e.key == "limits.identity"), "{errs}");
}

#[test]
fn rbac_policy_problems_are_all_reported() {
    let errs = RbacPolicy::from_toml(
        r#"
        [roles.writer]
        allow = [
          { methods = ["post"], path = "/api/../x" },
          { methods = [], path = "api" },
          { methods = ["GET"], path = "/a/**/b" },
          { methods = ["GET"], path = "/a/{owner}" },
          { methods = ["GET"], path = "/a/x*" },
          { methods = ["GET"], path = "/a/%2e" },
          { methods = ["GET"], path = "/a/" },
        ]
        [device_types.sensor]
        roles = ["writer", "ghost", "anonymous"]
        [[deny]]
        name = "d"
        methods = ["*"]
        path = "/x"
        roles = ["nobody"]
        [[deny]]
        name = "d"
        methods = ["GET"]
        path = "/y"
        "#,
    )
    .expect_err("invalid");
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "roles.writer.allow[0].methods[0]",
        "roles.writer.allow[0].path",
        "roles.writer.allow[1].methods",
        "roles.writer.allow[1].path",
        "roles.writer.allow[2].path",
        "roles.writer.allow[3].path",
        "roles.writer.allow[4].path",
        "roles.writer.allow[5].path",
        "roles.writer.allow[6].path",
        "device_types.sensor.roles[1]",
        "device_types.sensor.roles[2]",
        "deny[0].roles[0]",
        "deny[1].name",
    ] {
        assert!(keys.contains(&k), "{k} missing from {errs}");
    }
    let unknown = RbacPolicy::from_toml(
        "[roles.x]\nallow = [{ methods = [\"GET\"], path = \"/\", extra = 1 }]\n",
    )
    .expect_err("unknown key");
    assert!(
        unknown
            .0
            .iter()
            .any(|e| e.key.starts_with("roles.x.allow[0]")),
        "{unknown}"
    );
}

#[test]
fn shipped_example_policy_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/rbac.toml");
    RbacPolicy::load(&path).unwrap_or_else(|e| panic!("{e}"));
}
