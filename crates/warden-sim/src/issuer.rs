//! The simulated fleet's token issuer: industrial gateways authenticate with OAuth2
//! client-credentials style bearer JWTs (EdDSA) rather than API keys, as machine-to-machine
//! clients of an identity provider do.
//!
//! The signing key is derived from the fleet's seed alone, so `warden up --scenario S --seed
//! N` trusts (through the JWKS file it writes) exactly the tokens `warden simulate --scenario
//! S --seed N` signs, in another process. Tokens are issued when a run starts, valid for a
//! day.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};
use warden_config::{ConfigError, ConfigErrors};

use crate::roster::SimDevice;

/// `iss` of the simulated identity provider.
pub const SIM_ISSUER: &str = "https://idp.warden-sim.invalid";
/// `aud` of the tokens it issues.
pub const SIM_AUDIENCE: &str = "warden";
/// Lifetime of an issued token.
const TOKEN_LIFETIME_S: i64 = 86_400;

/// The issuer of a fleet seeded with `seed`.
pub struct SimIssuer {
    key: EncodingKey,
    kid: String,
}

impl SimIssuer {
    pub fn new(seed: u64) -> Self {
        let secret = Sha256::digest(format!("warden-sim-issuer|{seed}").as_bytes());
        Self {
            key: EncodingKey::from_ed_der(&ed25519_pkcs8(&secret)),
            kid: format!("warden-sim-{seed}"),
        }
    }

    /// The key id of the signing key (`kid` of tokens and of the JWKS entry).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set a gateway verifies the tokens with.
    pub fn jwks(&self) -> Result<JwkSet, ConfigErrors> {
        let mut jwk = Jwk::from_encoding_key(&self.key, Algorithm::EdDSA)
            .map_err(|e| ConfigError::new("identity.jwt", format!("simulated issuer key: {e}")))?;
        jwk.common.key_id = Some(self.kid.clone());
        Ok(JwkSet { keys: vec![jwk] })
    }

    /// Write the JWKS to `dir/<kid>.jwks.json`; returns the file.
    pub fn write_jwks(&self, dir: &Path) -> Result<PathBuf, ConfigErrors> {
        let io = |e: std::io::Error| {
            ConfigError::new("identity.jwt.jwks_file", format!("{}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = dir.join(format!("{}.jwks.json", self.kid));
        let body = serde_json::to_vec_pretty(&self.jwks()?).map_err(|e| {
            ConfigError::new("identity.jwt.jwks_file", format!("simulated JWKS: {e}"))
        })?;
        crate::write_atomic(&file, &body).map_err(io)?;
        Ok(file)
    }

    /// A bearer token for `device`, issued at `now_s` (Unix seconds).
    pub fn token(
        &self,
        device: &SimDevice,
        now_s: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let claims = serde_json::json!({
            "iss": SIM_ISSUER,
            "aud": SIM_AUDIENCE,
            "sub": device.identity,
            "tenant": device.tenant,
            "device_type": device.device_type.as_str(),
            "roles": ["device"],
            "iat": now_s,
            "nbf": now_s - 60,
            "exp": now_s + TOKEN_LIFETIME_S,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

/// PKCS#8 v1 DER of the Ed25519 private key `seed` (the RFC 8410 wrapper).
pub(crate) fn ed25519_pkcs8(seed: &[u8]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(&seed[..32]);
    der
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;
    use crate::{DeviceType, Fleet};

    #[test]
    fn tokens_verify_with_the_written_jwks_and_not_another_seeds() {
        let scenario = crate::builtin_scenario("benign")
            .expect("built in")
            .expect("valid");
        let fleet = Fleet::new(&scenario, 5);
        let gw = fleet
            .devices
            .iter()
            .find(|d| d.device_type == DeviceType::IndustrialGateway)
            .expect("an industrial gateway");
        let dir = tempfile::tempdir().expect("dir");
        let issuer = SimIssuer::new(5);
        let file = issuer.write_jwks(dir.path()).expect("write");
        let set: JwkSet =
            serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("jwks");
        let token = issuer.token(gw, 1_800_000_000).expect("sign");
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[SIM_AUDIENCE]);
        v.set_issuer(&[SIM_ISSUER]);
        v.validate_exp = false;
        let key = DecodingKey::from_jwk(&set.keys[0]).expect("key");
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).expect("valid");
        assert_eq!(data.claims["sub"], gw.identity.as_str());
        assert_eq!(data.claims["tenant"], gw.tenant.as_str());
        assert_eq!(data.header.kid.as_deref(), Some(issuer.kid()));
        // Same seed, same key (another process verifies what this one signs).
        assert_eq!(
            serde_json::to_value(SimIssuer::new(5).jwks().expect("jwks")).expect("json"),
            serde_json::to_value(&set).expect("json")
        );
        let other = SimIssuer::new(6).jwks().expect("jwks");
        let key = DecodingKey::from_jwk(&other.keys[0]).expect("key");
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).is_err());
    }
}
