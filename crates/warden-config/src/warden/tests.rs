use super::*;

#[test]
fn built_in_defaults_load() {
    let c = WardenConfig::default();
    assert_eq!(c.gateway.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.dashboard.listen.to_string(), "127.0.0.1:9400");
    assert_eq!(c.bus.kind, BusKind::Embedded);
    assert_eq!(c.bus.topics.events, "warden.events");
}

#[test]
fn file_overrides_defaults() {
    let c = WardenConfig::from_toml(
        r#"
        [gateway]
        id = "edge-7"
        [[routes]]
        name = "api"
        prefix = "/api"
        upstream = "http://127.0.0.1:9000"
        "#,
    )
    .expect("valid");
    assert_eq!(c.gateway.id, "edge-7");
    assert_eq!(
        c.gateway.max_body_bytes, 1_048_576,
        "untouched default kept"
    );
    assert_eq!(c.routes[0].timeout_ms, 10_000);
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let errs = WardenConfig::from_toml(
        r#"
        [gateway]
        listen = 8080
        colour = "blue"
        [[routes]]
        name = "api"
        prefix = "/api"
        [[routes]]
        name = "api"
        prefix = "/b"
        upstream = "http://x"
        "#,
    )
    .expect_err("invalid");
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"gateway.listen"), "wrong type: {errs}");
    assert!(keys.contains(&"gateway"), "unknown key: {errs}");
    assert!(
        errs.0
            .iter()
            .any(|e| e.key == "routes[0]" && e.reason.contains("upstream")),
        "missing upstream: {errs}"
    );
    assert!(errs.0.len() >= 3, "{errs}");
}

#[test]
fn semantic_problems_are_all_reported() {
    let errs = WardenConfig::from_toml(
        r#"
        [[routes]]
        name = "a"
        prefix = "api"
        upstream = "ftp://x"
        [[routes]]
        name = "a"
        prefix = "/b"
        upstream = "http://x"
        methods = ["get"]
        [[routes]]
        name = "c"
        prefix = "/c"
        upstream = "http://user:secret@up:9000"
        [[api_keys]]
        id = "k"
        sha256 = "nothex"
        identity = "anonymous"
        "#,
    )
    .expect_err("invalid");
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "routes[0].prefix",
        "routes[0].upstream",
        "routes[1].name",
        "routes[1].methods[0]",
        "routes[2].upstream",
        "api_keys[0].sha256",
        "api_keys[0].identity",
    ] {
        assert!(keys.contains(&k), "{k} missing from {errs}");
    }
}

#[test]
fn env_overrides_apply_and_are_checked() {
    let env = crate::env_overrides(
        "WARDEN__",
        [
            ("WARDEN__BUS__KIND".to_string(), "kafka".to_string()),
            ("WARDEN__BUS__PARTITIONS".to_string(), "8".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ],
    );
    let c = WardenConfig::from_layers(None, toml::Table::new(), env).expect("valid");
    assert_eq!(c.bus.kind, BusKind::Kafka);
    assert_eq!(c.bus.partitions, 8);
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, "[gateway]\nbogus = 1\n").expect("write");
    let errs = WardenConfig::load(Some(&path)).expect_err("invalid");
    assert_eq!(errs.0[0].file.as_deref(), Some(path.as_path()));
    assert!(errs.to_string().contains("warden.toml: gateway:"), "{errs}");
}

#[test]
fn api_key_hash_is_sha256_hex() {
    assert_eq!(
        hash_api_key("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn audit_is_off_by_default_and_strict() {
    assert_eq!(WardenConfig::default().audit, None);
    let c = WardenConfig::from_toml(
        r#"
        [audit]
        path = "/var/lib/warden/audit.jsonl"
        key_file = "/etc/warden/audit.key"
        "#,
    )
    .expect("valid");
    let audit = c.audit.expect("audit");
    assert_eq!(audit.path, "/var/lib/warden/audit.jsonl");
    assert_eq!(audit.key_file.as_deref(), Some("/etc/warden/audit.key"));
    let errs =
        WardenConfig::from_toml("[audit]\npath = \"\"\nkeyfile = \"k\"\n").expect_err("invalid");
    assert!(
        errs.0.iter().any(|e| e.key == "audit"),
        "unknown key: {errs}"
    );
    let errs = WardenConfig::from_toml("[audit]\npath = \" \"\n").expect_err("invalid");
    assert!(errs.0.iter().any(|e| e.key == "audit.path"), "{errs}");
}

#[test]
fn health_checks_are_checked_and_default_sensibly() {
    let ok = WardenConfig::from_toml(
        r#"
        [[routes]]
        name = "a"
        prefix = "/a"
        upstream = "http://up:9000"
        resilience = { health_check = { path = "/healthz?deep=1" } }
        "#,
    )
    .expect("valid");
    let h = ok.routes[0]
        .resilience
        .health_check
        .as_ref()
        .expect("health check");
    assert_eq!(
        (
            h.interval_ms,
            h.timeout_ms,
            h.unhealthy_after,
            h.healthy_after
        ),
        (5_000, 1_000, 2, 2)
    );
    let errs = WardenConfig::from_toml(
        r#"
        [[routes]]
        name = "a"
        prefix = "/a"
        upstream = "http://up:9000"
        resilience = { health_check = { path = "healthz", interval_ms = 50, timeout_ms = 0, unhealthy_after = 0, healthy_after = 0 } }
        [[routes]]
        name = "b"
        prefix = "/b"
        upstream = "http://up:9000"
        resilience = { health_check = { path = "/health check", timeout_ms = 6000 } }
        "#,
    )
    .expect_err("invalid");
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "routes[0].resilience.health_check.path",
        "routes[0].resilience.health_check.interval_ms",
        "routes[0].resilience.health_check.timeout_ms",
        "routes[0].resilience.health_check.unhealthy_after",
        "routes[0].resilience.health_check.healthy_after",
        "routes[1].resilience.health_check.path",
        "routes[1].resilience.health_check.timeout_ms",
    ] {
        assert!(keys.contains(&k), "{k} missing from {errs}");
    }
}
