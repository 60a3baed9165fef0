use std::io::Write;

use super::*;
use crate::WardenConfig;

/// A PEM block of `label` around arbitrary bytes (structure only: enough for the config checks,
/// which do not parse the DER inside).
fn pem(label: &str) -> String {
    format!("-----BEGIN {label}-----\nMIIBAQ==\n-----END {label}-----\n")
}

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(text.as_bytes()).expect("write");
    path.display().to_string()
}

fn keys(errs: &ConfigErrors) -> Vec<&str> {
    errs.0.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn defaults_have_no_tls_jwt_or_registry() {
    let c = WardenConfig::default();
    assert!(c.gateway.tls.is_none());
    assert!(c.identity.jwt.is_none());
    assert!(c.identity.registry.is_none());
    assert_eq!(c.identity.reload_interval_ms, 1000);
}

#[test]
fn a_complete_identity_config_loads() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = file(&dir, "server.pem", &pem("CERTIFICATE"));
    let key = file(&dir, "server.key", &pem("PRIVATE KEY"));
    let ca = file(&dir, "ca.pem", &pem("CERTIFICATE"));
    let crl = file(&dir, "ca.crl", &pem("X509 CRL"));
    let deny = file(
        &dir,
        "deny.txt",
        &format!("# revoked by hand\n{}\n", "ab".repeat(32)),
    );
    let registry = file(
        &dir,
        "registry.toml",
        r#"
        [[identity]]
        id = "thermo-1"
        tenant = "acme"
        auth_methods = ["client_cert", "jwt"]
        "#,
    );
    let jwks = file(
        &dir,
        "jwks.json",
        r#"{"keys":[{"kty":"EC","crv":"P-256"}]}"#,
    );
    let c = WardenConfig::from_toml(&format!(
        r#"
        [gateway.tls]
        listen = "127.0.0.1:8443"
        cert_file = "{cert}"
        key_file = "{key}"
        min_version = "1.3"
        [gateway.tls.client_auth]
        ca_files = ["{ca}"]
        crl_files = ["{crl}"]
        identity_field = "san_uri"
        identity_prefix = "urn:dev:"
        deny_fingerprints = ["{fp}"]
        deny_fingerprints_file = "{deny}"
        [identity.registry]
        file = "{registry}"
        [identity.jwt]
        issuer = "https://issuer.example"
        audiences = ["warden"]
        jwks_file = "{jwks}"
        [[routes]]
        name = "firmware"
        prefix = "/fw"
        upstream = "http://127.0.0.1:9"
        require_mtls = true
        [[api_keys]]
        id = "k"
        sha256 = "{hash}"
        identity = "thermo-1"
        not_before = "2026-01-01T00:00:00Z"
        expires_at = "2026-02-01T00:00:00+01:00"
        "#,
        fp = "AB:".repeat(31) + "AB",
        hash = crate::hash_api_key("k"),
    ))
    .expect("valid");
    let tls = c.gateway.tls.expect("tls");
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    assert_eq!(tls.handshake_timeout_ms, 10_000, "default kept");
    let ca = tls.client_auth.expect("client auth");
    assert_eq!(ca.identity_field, CertField::SanUri);
    assert!(!ca.required);
    let jwt = c.identity.jwt.expect("jwt");
    assert_eq!(jwt.leeway_s, 30);
    assert_eq!(jwt.claims.identity, "sub");
    assert_eq!(
        c.identity.registry.expect("registry").unknown,
        UnknownIdentity::Deny
    );
    assert!(c.routes[0].require_mtls);
}

#[test]
fn every_identity_problem_is_reported_with_its_key() {
    let dir = tempfile::tempdir().expect("dir");
    let not_pem = file(&dir, "junk.pem", "hello");
    let bad_registry = file(
        &dir,
        "registry.toml",
        r#"
        [[identity]]
        id = "a"
        auth_methods = []
        [[identity]]
        id = "a"
        auth_methods = ["api_key", "password"]
        "#,
    );
    let errs = WardenConfig::from_toml(&format!(
        r#"
        [gateway.tls]
        listen = "127.0.0.1:8443"
        cert_file = "{dir}/missing.pem"
        key_file = "{not_pem}"
        handshake_timeout_ms = 0
        [gateway.tls.client_auth]
        ca_files = ["{not_pem}"]
        crl_files = ["{dir}/missing.crl"]
        identity_field = "subject_cn"
        deny_fingerprints = ["nope"]
        [identity.registry]
        file = "{bad_registry}"
        [identity.jwt]
        issuer = ""
        audiences = []
        algorithms = ["HS256", "RS256"]
        leeway_s = 3600
        [[routes]]
        name = "r"
        prefix = "/r"
        upstream = "http://127.0.0.1:9"
        auth = "jwt"
        [[api_keys]]
        id = "k"
        sha256 = "{hash}"
        identity = "d"
        not_before = "yesterday"
        expires_at = "2020-01-01T00:00:00Z"
        [[api_keys]]
        id = "k2"
        sha256 = "{hash2}"
        identity = "d"
        not_before = "2021-01-01T00:00:00Z"
        expires_at = "2020-01-01T00:00:00Z"
        "#,
        dir = dir.path().display(),
        hash = crate::hash_api_key("k"),
        hash2 = crate::hash_api_key("k2"),
    ))
    .expect_err("invalid");
    let k = keys(&errs);
    for expected in [
        "gateway.tls.cert_file",
        "gateway.tls.key_file",
        "gateway.tls.handshake_timeout_ms",
        "gateway.tls.client_auth.ca_files[0]",
        "gateway.tls.client_auth.crl_files[0]",
        "gateway.tls.client_auth.deny_fingerprints[0]",
        "identity.registry.file",
        "identity.jwt.issuer",
        "identity.jwt.audiences",
        "identity.jwt.hs256_secret_file",
        "identity.jwt.jwks_file",
        "identity.jwt.leeway_s",
        "api_keys[0].not_before",
        "api_keys[1].expires_at",
    ] {
        assert!(k.contains(&expected), "{expected} missing from {errs}");
    }
    // The registry's own problems are all listed, each naming its key inside the file.
    let reg: Vec<&str> = errs
        .0
        .iter()
        .filter(|e| e.key == "identity.registry.file")
        .map(|e| e.reason.as_str())
        .collect();
    assert!(
        reg.iter()
            .any(|r| r.contains("identity[1].auth_methods[1]")),
        "unknown method: {errs}"
    );
    // The route asking for JWT is fine here because `identity.jwt` exists (even if invalid).
    assert!(!k.contains(&"routes[0].auth"), "{errs}");
}

#[test]
fn mtls_routes_and_jwt_routes_need_their_config() {
    let errs = WardenConfig::from_toml(
        r#"
        [[routes]]
        name = "a"
        prefix = "/a"
        upstream = "http://127.0.0.1:9"
        require_mtls = true
        [[routes]]
        name = "b"
        prefix = "/b"
        upstream = "http://127.0.0.1:9"
        auth = "jwt"
        "#,
    )
    .expect_err("invalid");
    let k = keys(&errs);
    assert!(k.contains(&"routes[0].require_mtls"), "{errs}");
    assert!(k.contains(&"routes[1].auth"), "{errs}");
}

#[test]
fn jwks_url_must_be_https_and_hs256_needs_a_long_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let short = file(&dir, "secret", "too-short\n");
    let errs = WardenConfig::from_toml(&format!(
        r#"
        [identity.jwt]
        issuer = "i"
        audiences = ["a"]
        algorithms = ["ES256", "HS256"]
        jwks_url = "http://issuer.example/jwks"
        hs256_secret_file = "{short}"
        "#
    ))
    .expect_err("invalid");
    let k = keys(&errs);
    assert!(k.contains(&"identity.jwt.jwks_url"), "{errs}");
    assert!(k.contains(&"identity.jwt.hs256_secret_file"), "{errs}");
}

#[test]
fn registry_files_are_strict() {
    let errs = RegistryFile::from_toml(
        r#"
        [[identity]]
        id = "anonymous"
        auth_methods = ["jwt", "jwt"]
        colour = "red"
        "#,
    )
    .expect_err("invalid");
    assert!(keys(&errs).contains(&"identity[0]"), "unknown key: {errs}");
    let errs = RegistryFile::from_toml(
        r#"
        [[identity]]
        id = "anonymous"
        auth_methods = ["jwt", "jwt"]
        status = "disabled"
        "#,
    )
    .expect_err("invalid");
    let k = keys(&errs);
    assert!(k.contains(&"identity[0].id"), "{errs}");
    assert!(k.contains(&"identity[0].auth_methods[1]"), "{errs}");
    let ok = RegistryFile::from_toml(
        r#"
        [[identity]]
        id = "d1"
        roles = ["r"]
        auth_methods = ["api_key"]
        status = "disabled"
        "#,
    )
    .expect("valid");
    assert_eq!(ok.identity[0].status, IdentityStatus::Disabled);
}

#[test]
fn fingerprints_times_and_crls_parse() {
    let fp = "0123456789abcdef".repeat(4);
    assert_eq!(parse_fingerprint(&fp).map(|b| b[0]), Some(0x01));
    assert!(parse_fingerprint(&fp.to_uppercase()).is_some());
    assert!(parse_fingerprint(&fp[..62]).is_none());
    assert!(parse_fingerprint("zz").is_none());
    let list = parse_fingerprint_list(&format!("# c\n\n{fp}  # inline\n")).expect("list");
    assert_eq!(list.len(), 1);
    let err = parse_fingerprint_list(&format!("{fp}\nbad\n")).expect_err("bad line");
    assert!(err.contains('2'), "{err}");

    assert_eq!(parse_rfc3339("1970-01-01T00:01:00Z"), Ok(60));
    assert_eq!(parse_rfc3339("1970-01-01T01:01:00+01:00"), Ok(60));
    assert!(parse_rfc3339("1970-01-01").is_err());

    assert_eq!(
        parse_crls(&[0x30, 0x03, 0x02, 0x01, 0x00]).map(|c| c.len()),
        Ok(1)
    );
    assert_eq!(
        parse_crls(pem("X509 CRL").as_bytes()).map(|c| c.len()),
        Ok(1)
    );
    assert!(parse_crls(b"nothing").is_err());
    assert!(parse_certs(pem("PRIVATE KEY").as_bytes()).is_err());
    assert_eq!(trim_secret(b"abc\r\n"), b"abc");
    assert!(check_jwks(br#"{"keys":[{"kty":"RSA"}]}"#).is_ok());
    assert!(check_jwks(br#"{"keys":[{}]}"#).is_err());
    assert!(check_jwks(b"[]").is_err());
}

#[test]
fn admin_tls_replaces_the_token_and_refuses_the_device_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = file(&dir, "admin.pem", &pem("CERTIFICATE"));
    let key = file(&dir, "admin.key", &pem("PRIVATE KEY"));
    let ops_ca = file(
        &dir,
        "ops-ca.pem",
        "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n",
    );
    let device_ca = file(&dir, "devices-ca.pem", &pem("CERTIFICATE"));
    let base = |admin_tls: &str, token: &str| {
        format!(
            r#"
            [gateway.tls]
            listen = "127.0.0.1:8443"
            cert_file = "{cert}"
            key_file = "{key}"
            [gateway.tls.client_auth]
            ca_files = ["{device_ca}"]
            identity_field = "subject_cn"
            [admin]
            listen = "127.0.0.1:9500"
            token_sha256 = "{token}"
            {admin_tls}
            "#
        )
    };
    // Certificates only: no token needed.
    let ok = format!(
        "[admin.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\nclient_ca_files = [\"{ops_ca}\"]\n"
    );
    let c = WardenConfig::from_toml(&base(&ok, "")).expect("admin over mTLS only");
    let tls = c.admin.tls.expect("admin tls");
    assert_eq!(tls.client_ca_files.len(), 1);
    assert!(tls.allowed_names.is_empty());

    // Without admin.tls the token stays required.
    let errs = WardenConfig::from_toml(&base("", "")).expect_err("no token, no tls");
    assert!(keys(&errs).contains(&"admin.token_sha256"), "{errs}");

    // The device CA as the operator CA would make every device an operator.
    let shared = format!(
        "[admin.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\nclient_ca_files = [\"{device_ca}\"]\n"
    );
    let errs = WardenConfig::from_toml(&base(&shared, "")).expect_err("device CA");
    assert!(
        keys(&errs).contains(&"admin.tls.client_ca_files[0]"),
        "{errs}"
    );
    // …unless the operators are listed by name.
    let named = format!("{shared}allowed_names = [\"ops-alice\"]\n");
    WardenConfig::from_toml(&base(&named, "")).expect("named operators");

    // Every problem of the section at once.
    let bad = "[admin.tls]\ncert_file = \"/nonexistent/a.pem\"\nkey_file = \"/nonexistent/a.key\"\n\
               client_ca_files = []\nallowed_names = [\"\"]\nhandshake_timeout_ms = 0\n";
    let errs = WardenConfig::from_toml(&base(bad, "")).expect_err("bad admin tls");
    for k in [
        "admin.tls.cert_file",
        "admin.tls.key_file",
        "admin.tls.client_ca_files",
        "admin.tls.allowed_names[0]",
        "admin.tls.handshake_timeout_ms",
    ] {
        assert!(keys(&errs).contains(&k), "{k} missing from {errs}");
    }
    // admin.tls without an admin listener is a mistake.
    let errs = WardenConfig::from_toml(&format!(
        "[admin]\ntoken_sha256 = \"\"\n[admin.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\nclient_ca_files = [\"{ops_ca}\"]\n"
    ))
    .expect_err("tls without listen");
    assert!(keys(&errs).contains(&"admin.tls"), "{errs}");
}
