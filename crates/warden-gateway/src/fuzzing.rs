//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on in a normal
//! build): crate-private parsers reached the way the request path reaches them.

use std::sync::OnceLock;

use warden_config::JwtConfig;

use crate::identity::jwt::JwtVerifier;

/// The HS256 secret of [`jwt_verify`]'s verifier: the target signs with it to reach the claim
/// checks behind the signature.
pub const JWT_SECRET: &[u8] = b"fuzz-hs256-secret-0123456789abcdef";
/// Issuer and audience the verifier requires.
pub const JWT_ISSUER: &str = "fuzz-iss";
pub const JWT_AUDIENCE: &str = "fuzz-aud";

/// What a valid token said, for the target's assertions.
#[derive(Debug)]
pub struct JwtOutcome {
    pub identity: String,
    pub tenant: String,
    pub roles: Vec<String>,
}

fn verifier() -> Option<&'static JwtVerifier> {
    static V: OnceLock<Option<JwtVerifier>> = OnceLock::new();
    V.get_or_init(|| {
        let config: JwtConfig = serde_json::from_value(serde_json::json!({
            "issuer": JWT_ISSUER,
            "audiences": [JWT_AUDIENCE],
            "algorithms": ["HS256", "ES256", "EdDSA"],
            "claims": {"identity": "sub", "tenant": "tenant", "roles": "roles"},
        }))
        .ok()?;
        Some(JwtVerifier::new(&config, None, Some(JWT_SECRET)))
    })
    .as_ref()
}

/// Verify `token` at `now` (Unix seconds) with the gateway's JWT verifier (HS256 with
/// [`JWT_SECRET`]; ES256/EdDSA configured but with no key set, so always refused).
pub fn jwt_verify(token: &str, now: i64) -> Result<JwtOutcome, String> {
    let v = verifier().ok_or("verifier config")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(v.verify(token, now))
        .map(|id| JwtOutcome {
            identity: id.identity,
            tenant: id.tenant,
            roles: id.roles,
        })
        .map_err(|e| e.to_string())
}

/// What [`mqtt_read`] found in a byte stream.
#[derive(Debug, Default)]
pub struct MqttOutcome {
    /// Packets read before the stream ended or was refused.
    pub packets: usize,
    /// Paths translated PUBLISH packets became (under the rules of [`mqtt_read`]).
    pub paths: Vec<String>,
}

/// Read `bytes` as the MQTT listener reads a connection after CONNECT (MQTT 5 when `v5`, else
/// 3.1.1): see `mqtt::rules::read_stream`.
pub fn mqtt_read(bytes: &[u8], v5: bool) -> MqttOutcome {
    let (packets, paths) = crate::mqtt::rules::read_stream(bytes, v5);
    MqttOutcome { packets, paths }
}
