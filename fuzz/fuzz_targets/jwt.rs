//! JWT parsing and verification through the gateway's verifier (HS256 secret; ES256/EdDSA
//! configured with no keys). Byte 0 picks the mode:
//! - even: the rest is a raw token: refused, never a panic (no one can sign without the key);
//! - odd: byte 1 is a header length, then the header bytes, then the claims bytes; the target
//!   signs them with the real secret, so the verifier's header and claim checks are what the
//!   input exercises. Whatever is accepted must really carry the required `alg`, `iss`, `aud`,
//!   a live `exp` and a well-formed identity.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::Sha256;
use warden_gateway::fuzzing::{JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, jwt_verify};

const NOW: i64 = 1_700_000_000;
/// The verifier's default leeway.
const LEEWAY: f64 = 30.0;

fn sign(header: &[u8], claims: &[u8]) -> Option<String> {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(JWT_SECRET).ok()?;
    mac.update(input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Some(format!("{input}.{sig}"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode.is_multiple_of(2) {
        if let Ok(token) = std::str::from_utf8(rest) {
            assert!(
                jwt_verify(token, NOW).is_err(),
                "unsigned token accepted: {token:?}"
            );
        }
        return;
    }
    let Some((&hlen, rest)) = rest.split_first() else {
        return;
    };
    let (header, claims) = rest.split_at(usize::from(hlen).min(rest.len()));
    let Some(token) = sign(header, claims) else {
        return;
    };
    let Ok(id) = jwt_verify(&token, NOW) else {
        return;
    };
    let h: Value = serde_json::from_slice(header).expect("accepted header is JSON");
    assert_eq!(h["alg"], "HS256", "accepted with another alg: {h}");
    let c: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    assert_eq!(c["iss"], JWT_ISSUER);
    let aud_ok = match &c["aud"] {
        Value::String(s) => s == JWT_AUDIENCE,
        Value::Array(a) => a.iter().any(|v| v == JWT_AUDIENCE),
        _ => false,
    };
    assert!(aud_ok, "accepted with aud {}", c["aud"]);
    let exp = c["exp"].as_f64().expect("accepted without a numeric exp");
    assert!((NOW as f64) < exp + LEEWAY, "expired token accepted");
    assert_eq!(c["sub"].as_str(), Some(id.identity.as_str()));
    assert!(!id.identity.is_empty() && id.identity.len() <= 256);
    assert!(
        !id.identity
            .chars()
            .any(|ch| ch.is_control() || ch.is_whitespace())
    );
    assert!(id.tenant.len() <= 256);
    let _ = id.roles;
});
