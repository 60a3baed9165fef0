//! Bearer-token attacks: forged and spliced signatures, expired / not-yet-valid / wrong-`aud` /
//! wrong-`iss` tokens, missing or mistyped claims, `alg=none`, algorithm confusion (HS256 keyed
//! with the RSA or EC public key), HS256 when not enabled, unknown `kid`s, garbage and
//! oversize tokens, and identities the registry refuses.

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use warden_event::AuthMethod;

use crate::common::*;

/// Every token attack: 401, never upstream.
pub(crate) async fn attacks(s: &Scenario, log: &mut Log) -> anyhow::Result<()> {
    let plain = s.plain_client()?;
    let forger = Signer::rsa("rsa-1")?;
    // --- bearer tokens ---
    let hs_secret = EncodingKey::from_secret(b"an attacker's idea of a good HS256 secret");
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa-1".into());
    let confusion_rsa = jsonwebtoken::encode(
        &hs,
        &claims("user-7"),
        &EncodingKey::from_secret(s.rsa.public_pem.as_bytes()),
    )?;
    let mut hs_ec = Header::new(Algorithm::HS256);
    hs_ec.kid = Some("ec-1".into());
    let confusion_ec = jsonwebtoken::encode(
        &hs_ec,
        &claims("user-7"),
        &EncodingKey::from_secret(s.ec.public_pem.as_bytes()),
    )?;
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
        b64url(claims("user-7").to_string().as_bytes())
    );
    let none_upper = format!(
        "{}.{}.",
        b64url(br#"{"alg":"None","typ":"JWT"}"#),
        b64url(claims("user-7").to_string().as_bytes())
    );
    let stranger = Signer::ec("not-published")?;
    let token_attacks: Vec<(&'static str, String, &'static str)> = vec![
        (
            "forged signature (another key, same kid)",
            forger.sign(&claims("user-7"))?,
            "/tokens/t",
        ),
        (
            "signature of another token spliced in",
            {
                let good = s.rsa.sign(&claims("user-7"))?;
                let evil = s.rsa.sign(&claims("thermo-1"))?;
                let (head_payload, _) = evil.rsplit_once('.').context("jws")?;
                let (_, sig) = good.rsplit_once('.').context("jws")?;
                format!("{head_payload}.{sig}")
            },
            "/tokens/t",
        ),
        (
            "expired token",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("exp".into(), json!(now_s() - 60));
            }))?,
            "/tokens/t",
        ),
        (
            "not-yet-valid token",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("nbf".into(), json!(now_s() + 600));
            }))?,
            "/tokens/t",
        ),
        (
            "wrong audience",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("aud".into(), json!("some-other-api"));
            }))?,
            "/tokens/t",
        ),
        (
            "wrong issuer",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("iss".into(), json!("https://evil.example"));
            }))?,
            "/tokens/t",
        ),
        (
            "no expiry",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.remove("exp");
            }))?,
            "/tokens/t",
        ),
        (
            "string exp (type confusion)",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("exp".into(), json!("9999999999"));
            }))?,
            "/tokens/t",
        ),
        ("alg=none", none, "/tokens/t"),
        ("alg=None", none_upper, "/tokens/t"),
        (
            "HS256 keyed with the RSA public key (algorithm confusion)",
            confusion_rsa,
            "/tokens/t",
        ),
        (
            "HS256 keyed with the EC public key (algorithm confusion)",
            confusion_ec,
            "/tokens/t",
        ),
        (
            "HS256 when it is not enabled",
            {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some("any".into());
                jsonwebtoken::encode(&h, &claims("user-7"), &hs_secret)?
            },
            "/tokens/t",
        ),
        (
            "unknown kid",
            stranger.sign(&claims("user-7"))?,
            "/tokens/t",
        ),
        ("garbage token", "not-a-jwt".into(), "/tokens/t"),
        (
            "three segments of garbage",
            "eyJhbGciOi.eyJzdWIi.AAAA".into(),
            "/tokens/t",
        ),
        (
            "oversize token",
            format!(
                "{}.{}.{}",
                "a".repeat(3000),
                "b".repeat(3000),
                "c".repeat(3000)
            ),
            "/tokens/t",
        ),
        (
            "token of a disabled identity",
            s.rsa.sign(&claims("disabled-1"))?,
            "/tokens/t",
        ),
        (
            "token for an identity allowed only API keys",
            s.rsa.sign(&claims("thermo-6"))?,
            "/tokens/t",
        ),
        (
            "token of an unregistered identity",
            s.rsa.sign(&claims("ghost-1"))?,
            "/api/t",
        ),
        (
            "token on an API-key-only route",
            s.rsa.sign(&claims("thermo-1"))?,
            "/keys/t",
        ),
        (
            "anonymous subject claim",
            s.rsa.sign(&claims("anonymous"))?,
            "/api/t",
        ),
    ];
    for (name, token, path) in token_attacks {
        log.attack(
            s,
            name,
            Expect::Status(401),
            AuthMethod::Jwt,
            plain.get(s.http(path)).bearer_auth(token),
        )
        .await;
    }
    Ok(())
}
