//! Bearer JWTs: signature with a JWKS key (or the HS256 secret when explicitly configured),
//! then `iss`, `aud`, `exp`, `nbf` and `iat` checked here with strict JSON types and an injected
//! clock, then the configured claims mapped to an identity and its attributes.
//!
//! Refused: `alg=none` (not an algorithm the header parser knows), algorithms not configured,
//! a key used with an algorithm of another type (algorithm confusion: an HS256 token can only
//! ever be checked with the HS256 secret, never with a public key), `crit` headers, tokens
//! longer than `max_token_bytes`, and claims of the wrong JSON type (a string `exp` is not
//! "no exp").

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use warden_config::{ClaimsConfig, JwtAlgorithm, JwtConfig};

use super::jwks::Jwks;

/// Why a token was refused (for logs and tests; clients only see 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwtError {
    #[error("token longer than allowed")]
    TooLong,
    #[error("token is not a JWS (or its alg is unknown, e.g. `none`)")]
    Malformed,
    #[error("algorithm {0:?} not accepted")]
    AlgorithmNotAllowed(Algorithm),
    #[error("key `{0}` does not verify {1:?} (algorithm confusion)")]
    AlgorithmMismatch(String, Algorithm),
    #[error("no key for this token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("signature does not verify")]
    BadSignature,
    #[error("critical header extensions are not supported")]
    Critical,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("claim `{0}` missing")]
    MissingClaim(String),
    #[error("claim `{0}` has the wrong type or value")]
    BadClaim(String),
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtIdentity {
    pub identity: String,
    pub tenant: String,
    pub device_type: String,
    pub roles: Vec<String>,
}

/// Verifies bearer tokens.
pub(crate) struct JwtVerifier {
    issuer: String,
    audiences: Vec<String>,
    leeway: f64,
    max_len: usize,
    /// Configured asymmetric algorithms.
    asymmetric: Vec<Algorithm>,
    /// The HS256 key, when HS256 is configured.
    hs256: Option<DecodingKey>,
    jwks: Option<Arc<Jwks>>,
    claims: ClaimsConfig,
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        JwtAlgorithm::HS256 => Algorithm::HS256,
    }
}

impl JwtVerifier {
    /// `hs256_secret`: the secret when the config enables HS256.
    pub fn new(config: &JwtConfig, jwks: Option<Arc<Jwks>>, hs256_secret: Option<&[u8]>) -> Self {
        let asymmetric = config
            .algorithms
            .iter()
            .filter(|a| **a != JwtAlgorithm::HS256)
            .map(|a| algorithm(*a))
            .collect();
        let hs256 = hs256_secret
            .filter(|_| config.algorithms.contains(&JwtAlgorithm::HS256))
            .map(DecodingKey::from_secret);
        Self {
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            leeway: config.leeway_s as f64,
            max_len: config.max_token_bytes,
            asymmetric,
            hs256,
            jwks,
            claims: config.claims.clone(),
        }
    }

    /// Verify `token` at `now` (Unix seconds).
    pub async fn verify(&self, token: &str, now: i64) -> Result<JwtIdentity, JwtError> {
        if token.len() > self.max_len {
            return Err(JwtError::TooLong);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.crit.is_some() {
            return Err(JwtError::Critical);
        }
        let alg = header.alg;
        let claims = if alg == Algorithm::HS256 {
            let key = self
                .hs256
                .as_ref()
                .ok_or(JwtError::AlgorithmNotAllowed(alg))?;
            verify_with(token, key, alg)?
        } else {
            if !self.asymmetric.contains(&alg) {
                return Err(JwtError::AlgorithmNotAllowed(alg));
            }
            let jwks = self
                .jwks
                .as_ref()
                .ok_or(JwtError::AlgorithmNotAllowed(alg))?;
            match try_keys(jwks, token, alg, header.kid.as_deref())? {
                Some(c) => c,
                None => {
                    if header.kid.is_some() && jwks.refetch_for_unknown_kid().await {
                        try_keys(jwks, token, alg, header.kid.as_deref())?
                            .ok_or(JwtError::UnknownKey(header.kid.clone()))?
                    } else {
                        return Err(JwtError::UnknownKey(header.kid));
                    }
                }
            }
        };
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Value, now: i64) -> Result<JwtIdentity, JwtError> {
        let obj = claims.as_object().ok_or(JwtError::Malformed)?;
        let now = now as f64;
        let exp = number(obj, "exp")?.ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
        if now >= exp + self.leeway {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = number(obj, "nbf")?
            && now + self.leeway < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(iat) = number(obj, "iat")?
            && iat > now + self.leeway
        {
            return Err(JwtError::IssuedInFuture);
        }
        match obj.get("iss") {
            None => return Err(JwtError::MissingClaim("iss".into())),
            Some(Value::String(s)) if *s == self.issuer => {}
            Some(Value::String(_)) => return Err(JwtError::WrongIssuer),
            Some(_) => return Err(JwtError::BadClaim("iss".into())),
        }
        let auds: Vec<&str> = match obj.get("aud") {
            None => return Err(JwtError::MissingClaim("aud".into())),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().ok_or_else(|| JwtError::BadClaim("aud".into())))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(JwtError::BadClaim("aud".into())),
        };
        if !auds.iter().any(|a| self.audiences.iter().any(|x| x == a)) {
            return Err(JwtError::WrongAudience);
        }

        let c = &self.claims;
        let identity = match claim(obj, &c.identity) {
            None => return Err(JwtError::MissingClaim(c.identity.clone())),
            Some(Value::String(s)) if valid_identity(s) => s.clone(),
            Some(_) => return Err(JwtError::BadClaim(c.identity.clone())),
        };
        let text = |name: &str| -> Result<String, JwtError> {
            match (name.is_empty(), claim(obj, name)) {
                (true, _) | (false, None) => Ok(String::new()),
                (false, Some(Value::String(s))) if s.len() <= 256 => Ok(s.clone()),
                (false, Some(_)) => Err(JwtError::BadClaim(name.into())),
            }
        };
        let tenant = text(&c.tenant)?;
        let device_type = text(&c.device_type)?;
        let roles = match (c.roles.is_empty(), claim(obj, &c.roles)) {
            (true, _) | (false, None) => vec![],
            (false, Some(Value::String(s))) => s.split_whitespace().map(str::to_owned).collect(),
            (false, Some(Value::Array(a))) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| JwtError::BadClaim(c.roles.clone()))
                })
                .collect::<Result<_, _>>()?,
            (false, Some(_)) => return Err(JwtError::BadClaim(c.roles.clone())),
        };
        Ok(JwtIdentity {
            identity,
            tenant,
            device_type,
            roles,
        })
    }
}

/// Try the keys that match `kid` (every key when the token has none) and can verify `alg`.
/// `Ok(None)`: no key has that `kid`.
fn try_keys(
    jwks: &Jwks,
    token: &str,
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<Option<Value>, JwtError> {
    let set = jwks.current();
    let named: Vec<_> = set
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .collect();
    if named.is_empty() {
        return Ok(None);
    }
    let usable: Vec<_> = named
        .iter()
        .filter(|k| k.algorithms.contains(&alg))
        .collect();
    if usable.is_empty() {
        return Err(match kid {
            Some(kid) => JwtError::AlgorithmMismatch(kid.to_owned(), alg),
            None => JwtError::UnknownKey(None),
        });
    }
    let mut last = JwtError::BadSignature;
    for k in usable {
        match verify_with(token, &k.key, alg) {
            Ok(claims) => return Ok(Some(claims)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Signature only; the claims are checked by [`JwtVerifier::check_claims`].
fn verify_with(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Value, JwtError> {
    if alg != Algorithm::HS256 {
        return verify_asymmetric(token, key, alg);
    }
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    match jsonwebtoken::decode::<Value>(token, key, &v) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => JwtError::BadSignature,
            ErrorKind::InvalidAlgorithm => JwtError::AlgorithmNotAllowed(alg),
            _ => JwtError::Malformed,
        }),
    }
}

/// An asymmetric JWS signature checked with `ring`; the payload as JSON once it verifies.
///
/// The key must be of the algorithm's family (an RSA key only for `RS*`/`PS*`, a P-256/P-384
/// point only for `ES256`/`ES384`, an Ed25519 key only for `EdDSA`); RSA keys must have at
/// least 2048 bits. The token must be exactly `header.payload.signature` in unpadded base64url
/// (non-canonical encodings are refused). The header was parsed by the caller.
fn verify_asymmetric(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Value, JwtError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::AlgorithmFamily;
    use jsonwebtoken::DecodingKeyKind;
    use ring::signature as sig;

    let (signed, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (_, payload) = signed.split_once('.').ok_or(JwtError::Malformed)?;
    if payload.contains('.') {
        return Err(JwtError::Malformed);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Malformed)?;
    let msg = signed.as_bytes();

    let rsa = |params: &'static sig::RsaParameters| -> Result<(), JwtError> {
        if key.family() != AlgorithmFamily::Rsa {
            return Err(JwtError::BadSignature);
        }
        let ok = match key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => sig::RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(params, msg, &signature)
            .is_ok(),
            // PKCS#1 DER (keys read from PEM).
            DecodingKeyKind::SecretOrDer(der) => sig::UnparsedPublicKey::new(params, der)
                .verify(msg, &signature)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(JwtError::BadSignature)
        }
    };
    let point = |family: AlgorithmFamily,
                 verify: &'static dyn sig::VerificationAlgorithm|
     -> Result<(), JwtError> {
        match key.kind() {
            DecodingKeyKind::SecretOrDer(bytes) if key.family() == family => {
                sig::UnparsedPublicKey::new(verify, bytes)
                    .verify(msg, &signature)
                    .map_err(|_| JwtError::BadSignature)
            }
            _ => Err(JwtError::BadSignature),
        }
    };
    match alg {
        Algorithm::RS256 => rsa(&sig::RSA_PKCS1_2048_8192_SHA256)?,
        Algorithm::RS384 => rsa(&sig::RSA_PKCS1_2048_8192_SHA384)?,
        Algorithm::RS512 => rsa(&sig::RSA_PKCS1_2048_8192_SHA512)?,
        Algorithm::PS256 => rsa(&sig::RSA_PSS_2048_8192_SHA256)?,
        Algorithm::PS384 => rsa(&sig::RSA_PSS_2048_8192_SHA384)?,
        Algorithm::PS512 => rsa(&sig::RSA_PSS_2048_8192_SHA512)?,
        Algorithm::ES256 => point(AlgorithmFamily::Ec, &sig::ECDSA_P256_SHA256_FIXED)?,
        Algorithm::ES384 => point(AlgorithmFamily::Ec, &sig::ECDSA_P384_SHA384_FIXED)?,
        Algorithm::EdDSA => point(AlgorithmFamily::Ed, &sig::ED25519)?,
        _ => return Err(JwtError::AlgorithmNotAllowed(alg)),
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)
}

fn number(obj: &Map<String, Value>, name: &str) -> Result<Option<f64>, JwtError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| JwtError::BadClaim(name.into())),
        Some(_) => Err(JwtError::BadClaim(name.into())),
    }
}

/// A claim by name, or by dotted path into nested objects.
fn claim<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = obj.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = obj.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

fn valid_identity(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s != warden_event::ANONYMOUS
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests;
