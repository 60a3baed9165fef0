//! Token checks with keys generated here and an injected clock.

use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const NOW: i64 = 1_800_000_000;

struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: String,
}

impl Signer {
    fn ec(kid: &str) -> Self {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        Self {
            key: EncodingKey::from_ec_der(&kp.serialize_der()),
            alg: Algorithm::ES256,
            kid: kid.into(),
        }
    }

    fn ed(kid: &str) -> Self {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        Self {
            key: EncodingKey::from_ed_der(&ed25519_pkcs8_v1(&kp.serialize_der())),
            alg: Algorithm::EdDSA,
            kid: kid.into(),
        }
    }

    fn jwk(&self) -> Jwk {
        let mut j = Jwk::from_encoding_key(&self.key, self.alg).expect("jwk");
        j.common.key_id = Some(self.kid.clone());
        j
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.key).expect("sign")
    }
}

fn claims() -> Value {
    json!({
        "iss": "https://issuer.test",
        "aud": ["other", "warden"],
        "sub": "dev-7",
        "exp": NOW + 600,
        "nbf": NOW - 10,
        "iat": NOW - 10,
        "ext": {"tenant": "acme"},
        "device_type": "thermometer",
        "roles": "reader writer",
    })
}

fn config(dir: &Path, keys: &[&Signer], hs256: bool) -> JwtConfig {
    let set = JwkSet {
        keys: keys.iter().map(|s| s.jwk()).collect(),
    };
    let file = dir.join("jwks.json");
    std::fs::write(&file, serde_json::to_vec(&set).expect("json")).expect("write");
    let mut algorithms = vec![JwtAlgorithm::ES256, JwtAlgorithm::EdDSA];
    if hs256 {
        algorithms.push(JwtAlgorithm::HS256);
    }
    JwtConfig {
        issuer: "https://issuer.test".into(),
        audiences: vec!["warden".into()],
        algorithms,
        leeway_s: 30,
        jwks_file: Some(file),
        jwks_url: None,
        jwks_ca_file: None,
        jwks_refresh_ms: 1000,
        jwks_min_refetch_ms: 1000,
        jwks_fetch_timeout_ms: 1000,
        hs256_secret_file: None,
        max_token_bytes: 4096,
        claims: ClaimsConfig {
            tenant: "ext.tenant".into(),
            ..ClaimsConfig::default()
        },
    }
}

fn verifier(c: &JwtConfig, secret: Option<&[u8]>) -> JwtVerifier {
    let jwks = c
        .jwks_file
        .clone()
        .map(|f| Arc::new(Jwks::from_file(f).expect("jwks")));
    JwtVerifier::new(c, jwks, secret)
}

fn with(f: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut c = claims();
    if let Value::Object(m) = &mut c {
        f(m);
    }
    c
}

#[tokio::test]
async fn a_valid_token_maps_its_claims() {
    let dir = tempfile::tempdir().expect("dir");
    let (ec, ed) = (Signer::ec("ec-1"), Signer::ed("ed-1"));
    let v = verifier(&config(dir.path(), &[&ec, &ed], false), None);
    let expected = JwtIdentity {
        identity: "dev-7".into(),
        tenant: "acme".into(),
        device_type: "thermometer".into(),
        roles: vec!["reader".into(), "writer".into()],
    };
    assert_eq!(
        v.verify(&ec.sign(&claims()), NOW).await,
        Ok(expected.clone())
    );
    assert_eq!(v.verify(&ed.sign(&claims()), NOW).await, Ok(expected));
    let roles = with(|m| {
        m.insert("roles".into(), json!(["a", "b"]));
        m.insert("aud".into(), json!("warden"));
    });
    assert_eq!(
        v.verify(&ec.sign(&roles), NOW).await.map(|j| j.roles),
        Ok(vec!["a".to_string(), "b".to_string()])
    );
}

#[tokio::test]
async fn time_claims_follow_the_injected_clock_with_leeway() {
    let dir = tempfile::tempdir().expect("dir");
    let ec = Signer::ec("ec-1");
    let v = verifier(&config(dir.path(), &[&ec], false), None);
    let t = ec.sign(&claims());
    assert!(v.verify(&t, NOW + 600 + 29).await.is_ok(), "within leeway");
    assert_eq!(v.verify(&t, NOW + 600 + 30).await, Err(JwtError::Expired));
    assert!(
        v.verify(&t, NOW - 10 - 30).await.is_ok(),
        "nbf within leeway"
    );
    assert_eq!(
        v.verify(&t, NOW - 10 - 31).await,
        Err(JwtError::NotYetValid)
    );
    let future_iat = ec.sign(&with(|m| {
        m.remove("nbf");
        m.insert("iat".into(), json!(NOW + 3600));
    }));
    assert_eq!(
        v.verify(&future_iat, NOW).await,
        Err(JwtError::IssuedInFuture)
    );
}

#[tokio::test]
async fn claims_of_the_wrong_type_or_value_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let ec = Signer::ec("ec-1");
    let v = verifier(&config(dir.path(), &[&ec], false), None);
    let cases: Vec<(Value, JwtError)> = vec![
        (
            with(|m| {
                m.remove("exp");
            }),
            JwtError::MissingClaim("exp".into()),
        ),
        // The type-confusion bypass: a string `exp` must not count as "no exp to check".
        (
            with(|m| {
                m.insert("exp".into(), json!("never"));
            }),
            JwtError::BadClaim("exp".into()),
        ),
        (
            with(|m| {
                m.insert("nbf".into(), json!("later"));
            }),
            JwtError::BadClaim("nbf".into()),
        ),
        (
            with(|m| {
                m.insert("iss".into(), json!("https://evil.test"));
            }),
            JwtError::WrongIssuer,
        ),
        (
            with(|m| {
                m.insert("iss".into(), json!(["https://issuer.test"]));
            }),
            JwtError::BadClaim("iss".into()),
        ),
        (
            with(|m| {
                m.remove("iss");
            }),
            JwtError::MissingClaim("iss".into()),
        ),
        (
            with(|m| {
                m.insert("aud".into(), json!("other"));
            }),
            JwtError::WrongAudience,
        ),
        (
            with(|m| {
                m.insert("aud".into(), json!([1, "warden"]));
            }),
            JwtError::BadClaim("aud".into()),
        ),
        (
            with(|m| {
                m.remove("aud");
            }),
            JwtError::MissingClaim("aud".into()),
        ),
        (
            with(|m| {
                m.remove("sub");
            }),
            JwtError::MissingClaim("sub".into()),
        ),
        (
            with(|m| {
                m.insert("sub".into(), json!(42));
            }),
            JwtError::BadClaim("sub".into()),
        ),
        (
            with(|m| {
                m.insert("sub".into(), json!("anonymous"));
            }),
            JwtError::BadClaim("sub".into()),
        ),
        (
            with(|m| {
                m.insert("roles".into(), json!({"admin": true}));
            }),
            JwtError::BadClaim("roles".into()),
        ),
        (
            with(|m| {
                m.insert("device_type".into(), json!(["x"]));
            }),
            JwtError::BadClaim("device_type".into()),
        ),
    ];
    for (c, expected) in cases {
        assert_eq!(v.verify(&ec.sign(&c), NOW).await, Err(expected), "{c}");
    }
}

#[tokio::test]
async fn forged_none_confused_and_unknown_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let (ec, ed) = (Signer::ec("ec-1"), Signer::ed("ed-1"));
    let c = config(dir.path(), &[&ec, &ed], false);
    let v = verifier(&c, None);

    // Forged: signed by another key under a known kid.
    let forger = Signer::ec("ec-1");
    assert_eq!(
        v.verify(&forger.sign(&claims()), NOW).await,
        Err(JwtError::BadSignature)
    );

    // alg=none: header parsing refuses it before any key is looked at.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims().to_string().as_bytes())
    );
    assert_eq!(v.verify(&none, NOW).await, Err(JwtError::Malformed));

    // A token claiming the EC key with the EdDSA algorithm.
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("ec-1".into());
    let mismatch = jsonwebtoken::encode(&h, &claims(), &ed.key).expect("sign");
    assert_eq!(
        v.verify(&mismatch, NOW).await,
        Err(JwtError::AlgorithmMismatch("ec-1".into(), Algorithm::EdDSA))
    );

    // Algorithm confusion: HS256 "signed" with public key material, HS256 not enabled.
    let public = serde_json::to_vec(&ec.jwk()).expect("json");
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("ec-1".into());
    let confused =
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(&public)).expect("sign");
    assert_eq!(
        v.verify(&confused, NOW).await,
        Err(JwtError::AlgorithmNotAllowed(Algorithm::HS256))
    );
    // An algorithm that is not configured at all.
    let mut h = Header::new(Algorithm::HS384);
    h.kid = Some("ec-1".into());
    let hs384 =
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(&public)).expect("sign");
    assert_eq!(
        v.verify(&hs384, NOW).await,
        Err(JwtError::AlgorithmNotAllowed(Algorithm::HS384))
    );

    // Unknown kid (a file source is not refetched).
    let stranger = Signer::ec("nobody");
    assert_eq!(
        v.verify(&stranger.sign(&claims()), NOW).await,
        Err(JwtError::UnknownKey(Some("nobody".into())))
    );

    // Critical header extensions.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec-1".into());
    h.crit = Some(vec!["exp-policy".into()]);
    let crit = jsonwebtoken::encode(&h, &claims(), &ec.key).expect("sign");
    assert_eq!(v.verify(&crit, NOW).await, Err(JwtError::Critical));

    // Garbage and oversize.
    for junk in ["", "a.b", "a.b.c", "....", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"] {
        assert!(v.verify(junk, NOW).await.is_err(), "{junk}");
    }
    assert_eq!(
        v.verify(&"a".repeat(5000), NOW).await,
        Err(JwtError::TooLong)
    );
}

#[tokio::test]
async fn hs256_only_with_its_own_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let ec = Signer::ec("ec-1");
    let c = config(dir.path(), &[&ec], true);
    let secret = b"0123456789abcdef0123456789abcdef";
    let v = verifier(&c, Some(secret));
    let hs = Signer {
        key: EncodingKey::from_secret(secret),
        alg: Algorithm::HS256,
        kid: "whatever".into(),
    };
    assert!(v.verify(&hs.sign(&claims()), NOW).await.is_ok());
    // Confusion: HS256 keyed with the public JWK is checked against the secret, not the key.
    let public = serde_json::to_vec(&ec.jwk()).expect("json");
    let confused = Signer {
        key: EncodingKey::from_secret(&public),
        alg: Algorithm::HS256,
        kid: "ec-1".into(),
    };
    assert_eq!(
        v.verify(&confused.sign(&claims()), NOW).await,
        Err(JwtError::BadSignature)
    );
}

/// ring writes Ed25519 keys as PKCS#8 v2 (with the public key); the RustCrypto signer reads
/// v1: same seed, shorter wrapper.
fn ed25519_pkcs8_v1(v2: &[u8]) -> Vec<u8> {
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    assert_eq!(&v2[5..16], &V1_PREFIX[5..], "unexpected PKCS#8 layout");
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(&v2[16..48]);
    v1
}

/// Unpadded base64url (enough for the hand-made `alg=none` token).
fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn ring_signature_checks_refuse_mismatched_keys_and_non_canonical_tokens() {
    let ec = Signer::ec("ec");
    let ed = Signer::ed("ed");
    let ec_key = DecodingKey::from_jwk(&ec.jwk()).expect("ec key");
    let ed_key = DecodingKey::from_jwk(&ed.jwk()).expect("ed key");
    let ec_token = ec.sign(&claims());
    let ed_token = ed.sign(&claims());

    // The right key and algorithm: the payload comes back.
    let v = verify_asymmetric(&ec_token, &ec_key, Algorithm::ES256).expect("ES256");
    assert_eq!(v["sub"], "dev-7");
    let v = verify_asymmetric(&ed_token, &ed_key, Algorithm::EdDSA).expect("EdDSA");
    assert_eq!(v["sub"], "dev-7");

    // A key of another family, or another curve's algorithm: refused.
    for (token, key, alg) in [
        (&ec_token, &ed_key, Algorithm::ES256),
        (&ed_token, &ec_key, Algorithm::EdDSA),
        (&ec_token, &ec_key, Algorithm::ES384),
        (&ec_token, &ec_key, Algorithm::RS256),
        (&ec_token, &ec_key, Algorithm::PS256),
    ] {
        assert_eq!(
            verify_asymmetric(token, key, alg),
            Err(JwtError::BadSignature),
            "{alg:?}"
        );
    }
    assert_eq!(
        verify_asymmetric(&ec_token, &ec_key, Algorithm::HS256),
        Err(JwtError::AlgorithmNotAllowed(Algorithm::HS256))
    );

    // Another token's payload under this signature, and a changed signature character.
    let (head, rest) = ec_token.split_once('.').expect("jws");
    let (payload, signature) = rest.split_once('.').expect("jws");
    let other = b64(br#"{"sub":"dev-8"}"#);
    assert_eq!(
        verify_asymmetric(
            &format!("{head}.{other}.{signature}"),
            &ec_key,
            Algorithm::ES256
        ),
        Err(JwtError::BadSignature)
    );
    let mut changed = signature.as_bytes().to_vec();
    changed[5] = if changed[5] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(changed).expect("ascii");
    assert_eq!(
        verify_asymmetric(
            &format!("{head}.{payload}.{changed}"),
            &ec_key,
            Algorithm::ES256
        ),
        Err(JwtError::BadSignature)
    );

    // Not exactly three unpadded base64url segments.
    for bad in [
        format!("{ec_token}.x"),
        format!("{ec_token}="),
        format!("{head}{payload}.{signature}"),
        format!("{head}.{payload}.+{signature}"),
        format!("{head}.{payload}!.{signature}"),
    ] {
        assert!(
            matches!(
                verify_asymmetric(&bad, &ec_key, Algorithm::ES256),
                Err(JwtError::Malformed | JwtError::BadSignature)
            ),
            "{bad}"
        );
    }
    // A non-canonical last character (unused bits set) is malformed, not another signature.
    let sig_bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
            .expect("sig");
    assert_eq!(sig_bytes.len(), 64);
    let canonical = b64(&sig_bytes);
    assert_eq!(canonical, signature);
    // 64 bytes → 86 characters, the last carrying 2 unused bits.
    let last = canonical.chars().next_back().expect("last");
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).expect("in alphabet");
    let tweaked = alphabet.as_bytes()[idx ^ 1] as char;
    let non_canonical = format!("{}{tweaked}", &canonical[..canonical.len() - 1]);
    let (signed, _) = ec_token.rsplit_once('.').expect("jws");
    assert_eq!(
        verify_asymmetric(
            &format!("{signed}.{non_canonical}"),
            &ec_key,
            Algorithm::ES256
        ),
        Err(JwtError::Malformed)
    );
}
