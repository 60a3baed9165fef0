//! API-key and credential-header attacks: rotated-out and not-yet-valid keys, unknown keys,
//! disabled identities, keys on token-only routes, missing credentials, ambiguous or malformed
//! `Authorization` headers.

use warden_event::AuthMethod;

use crate::common::*;

/// Every API-key / header attack: 401, never upstream.
pub(crate) async fn attacks(s: &Scenario, log: &mut Log) -> anyhow::Result<()> {
    let plain = s.plain_client()?;
    // --- API keys and header forms ---
    let key_attacks: Vec<(&'static str, AuthMethod, reqwest::RequestBuilder)> = vec![
        (
            "rotated-out (expired) API key",
            AuthMethod::ApiKey,
            plain.get(s.http("/keys/t")).header("x-api-key", KEY_OLD),
        ),
        (
            "API key before its not_before",
            AuthMethod::ApiKey,
            plain.get(s.http("/keys/t")).header("x-api-key", KEY_FUTURE),
        ),
        (
            "unknown API key",
            AuthMethod::ApiKey,
            plain
                .get(s.http("/keys/t"))
                .header("x-api-key", "key-guessed-0000000000"),
        ),
        (
            "API key of a disabled identity",
            AuthMethod::ApiKey,
            plain
                .get(s.http("/api/t"))
                .header("x-api-key", KEY_DISABLED),
        ),
        (
            "API key on a JWT-only route",
            AuthMethod::ApiKey,
            plain
                .get(s.http("/tokens/t"))
                .header("x-api-key", KEY_THERMO1),
        ),
        (
            "no credentials on a required route",
            AuthMethod::None,
            plain.get(s.http("/api/t")),
        ),
        (
            "no API key on an api_key route",
            AuthMethod::ApiKey,
            plain.get(s.http("/keys/t")),
        ),
        (
            "no token on a jwt route",
            AuthMethod::Jwt,
            plain.get(s.http("/tokens/t")),
        ),
        (
            "API key and bearer token at once",
            AuthMethod::ApiKey,
            plain
                .get(s.http("/api/t"))
                .header("x-api-key", KEY_THERMO1)
                .bearer_auth(s.rsa.sign(&claims("thermo-1"))?),
        ),
        (
            "empty bearer",
            AuthMethod::ApiKey,
            plain
                .get(s.http("/api/t"))
                .header("authorization", "Bearer "),
        ),
        (
            "Basic credentials",
            AuthMethod::ApiKey,
            plain
                .get(s.http("/api/t"))
                .header("authorization", "Basic dGhlcm1vLTE6cHc="),
        ),
        (
            "bad credentials on an open route",
            AuthMethod::ApiKey,
            plain
                .get(s.http("/open/x"))
                .header("x-api-key", "key-guessed-0000000000"),
        ),
    ];
    for (name, m, req) in key_attacks {
        log.attack(s, name, Expect::Status(401), m, req).await;
    }
    Ok(())
}
