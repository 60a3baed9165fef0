//! Property tests (proptest, stable toolchain, a few seconds in the normal suite) over the
//! parsers that take hostile input: path normalisation with RBAC, JWT verification, event
//! decoding, JSON duplicate-key checks. Longer runs: `PROPTEST_CASES=100000 cargo test -p
//! warden-gateway props`.
//!
//! The path property is the one that matters: **whatever the gateway accepts, it sees as a
//! backend would**. A model backend decodes escapes (twice), folds Unicode look-alikes
//! (NFKC), reads `\` as `/`, drops `;params`, trims trailing dots and spaces (Windows) and
//! resolves dot segments; for every accepted raw path its view equals the gateway's normal
//! form — so a path the policy denies can never be smuggled past RBAC under any encoding.

use axum::http::Method;
use proptest::prelude::*;
use warden_config::{PathCase, PathsConfig, RbacPolicy};

use crate::path::normalise;
use crate::rbac::{Caller, Policy, Verdict};

const PIECES: &[&str] = &[
    "api",
    "admin",
    "x",
    "A",
    "é",
    ".",
    "..",
    "...",
    " ",
    "%20",
    "%2e",
    "%2E",
    "%2e%2e",
    "%EF%BC%8E",
    "%EF%BC%8F",
    "%E2%80%A5",
    "%E2%80%A6",
    "%EF%BC%BC",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    ";",
    "%3b",
    "%3B",
    "%25",
    "%252e",
    "%41",
    "%61dmin",
    "%C3%A9",
    "%C0%AE",
    "/",
    "//",
    "%00",
    "%09",
    "~",
    "-",
    "_",
];

fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..10)
        .prop_map(|pieces| format!("/{}", pieces.concat()))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// NFKC of the look-alikes that matter for paths.
fn fold(c: char) -> &'static str {
    match c {
        '\u{FF0E}' | '\u{FE52}' | '\u{2024}' | '\u{3002}' | '\u{FF61}' => ".",
        '\u{2025}' => "..",
        '\u{2026}' => "...",
        '\u{FF0F}' | '\u{2215}' | '\u{2044}' => "/",
        '\u{FF3C}' | '\u{FE68}' | '\u{29F5}' => "\\",
        '\u{FF05}' | '\u{FE6A}' => "%",
        '\u{FF1B}' => ";",
        _ => "",
    }
}

/// How a lenient backend resolves `raw`.
fn backend_view(raw: &str) -> String {
    let decoded = percent_decode(&percent_decode(raw));
    let folded: String = decoded
        .chars()
        .map(|c| match fold(c) {
            "" => c.to_string(),
            f => f.to_string(),
        })
        .collect::<String>()
        .replace('\\', "/");
    let mut out: Vec<String> = Vec::new();
    for seg in folded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        let seg = seg.trim_end_matches(['.', ' ']).trim_start_matches(' ');
        let seg = if seg.is_empty() && !folded.is_empty() {
            // `...` and `. .` trim to nothing on Windows but mean `..` to some: take the
            // harsher reading (parent).
            ""
        } else {
            seg
        };
        match seg {
            "" => {}
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    format!("/{}", out.join("/"))
}

fn rules() -> PathsConfig {
    PathsConfig {
        case: PathCase::Sensitive,
        allow_semicolons: false,
    }
}

fn policy() -> Policy {
    let text = r#"
description = "props"
[roles.fleet_admin]
allow = [{ methods = ["*"], path = "/api/**" }]
[[deny]]
name = "admin-is-off-limits"
methods = ["*"]
path = "/api/admin/**"
"#;
    match RbacPolicy::from_toml(text) {
        Ok(p) => Policy::compile(&p, PathCase::Sensitive),
        Err(e) => panic!("test policy: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepted_paths_are_seen_as_a_backend_sees_them(raw in raw_path()) {
        if let Ok(n) = normalise(&raw, &rules()) {
            let mut want = backend_view(&raw);
            if want.len() > 1 && want.ends_with('/') {
                want.pop();
            }
            prop_assert_eq!(n.as_str(), want.as_str(), "raw {:?}", raw);
        }
    }

    #[test]
    fn a_denied_path_is_never_allowed_under_any_encoding(raw in raw_path()) {
        let view = backend_view(&raw);
        let roles = vec!["fleet_admin".to_string()];
        let caller = Caller { identity: Some("ops"), tenant: "acme", device_type: "console", roles: &roles };
        if (view == "/api/admin" || view.starts_with("/api/admin/"))
            && let Ok(n) = normalise(&raw, &rules())
        {
            let p = policy();
            let v = p.evaluate(&caller, &Method::GET, &n);
            prop_assert!(!matches!(v, Verdict::Allow { .. }), "{raw:?} → {n:?} allowed");
        }
    }

    #[test]
    fn event_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = warden_event::decode::<warden_event::RequestEvent>(&bytes);
        let _ = warden_event::decode::<warden_event::Decision>(&bytes);
    }

    #[test]
    fn duplicate_key_check_never_panics(text in "[\\[\\]{}\":,0-9a-z\\\\u ]{0,200}") {
        let _ = crate::validate::unique_keys(text.as_bytes());
    }
}

/// JWTs: arbitrary input and tampered claims are refused, never a panic.
mod jwt {
    use super::*;
    use crate::identity::jwt::JwtVerifier;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use warden_config::{JwtAlgorithm, JwtConfig};

    const SECRET: &[u8] = b"props-hs256-secret-0123456789abcdef";

    fn verifier() -> JwtVerifier {
        let config: JwtConfig = match serde_json::from_value(serde_json::json!({
            "issuer": "iss", "audiences": ["aud"], "algorithms": ["HS256"],
        })) {
            Ok(c) => c,
            Err(e) => panic!("jwt config: {e}"),
        };
        assert_eq!(config.algorithms, [JwtAlgorithm::HS256]);
        JwtVerifier::new(&config, None, Some(SECRET))
    }

    fn token(sub: &str) -> String {
        let claims =
            serde_json::json!({"iss": "iss", "aud": "aud", "sub": sub, "exp": 4_000_000_000u64});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap_or_default()
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        match tokio::runtime::Builder::new_current_thread().build() {
            Ok(rt) => rt.block_on(f),
            Err(e) => panic!("runtime: {e}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn arbitrary_tokens_are_refused(t in "[A-Za-z0-9_\\-.=]{0,300}") {
            let v = verifier();
            prop_assert!(run(v.verify(&t, 1_700_000_000)).is_err());
        }

        #[test]
        fn tampered_claims_are_refused(sub in "[a-z0-9-]{1,20}", forged in "[a-z0-9-]{1,20}") {
            prop_assume!(sub != forged);
            let v = verifier();
            let good = token(&sub);
            prop_assert!(run(v.verify(&good, 1_700_000_000)).is_ok());
            let parts: Vec<&str> = good.split('.').collect();
            prop_assume!(parts.len() == 3);
            let claims = serde_json::json!({"iss": "iss", "aud": "aud", "sub": forged, "exp": 4_000_000_000u64});
            let body = URL_SAFE_NO_PAD.encode(claims.to_string());
            let bad = format!("{}.{}.{}", parts[0], body, parts[2]);
            prop_assert!(run(v.verify(&bad, 1_700_000_000)).is_err());
        }
    }
}
