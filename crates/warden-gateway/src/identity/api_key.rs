//! API keys: looked up by their SHA-256 (never stored in clear), each with an optional validity
//! window. Rotation is two keys for one identity, valid at the same time during the overlap.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use warden_config::ApiKeyConfig;

/// What a key says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyEntry {
    pub id: String,
    pub identity: String,
    pub tenant: String,
    pub device_type: String,
    pub roles: Vec<String>,
    /// Unix seconds from which the key is accepted.
    not_before: Option<i64>,
    /// Unix seconds from which the key is refused.
    expires_at: Option<i64>,
}

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("unknown API key")]
    Unknown,
    #[error("API key not valid yet")]
    NotYetValid,
    #[error("API key expired")]
    Expired,
}

/// API keys by SHA-256 digest (the configured hex decoded once, so a lookup hashes the
/// presented key and compares 32 bytes, with no hex string per request).
#[derive(Debug, Default)]
pub(crate) struct KeyStore {
    by_hash: HashMap<[u8; 32], KeyEntry>,
}

impl KeyStore {
    /// Compile validated key configs (times were checked by config validation; one that does
    /// not parse here makes the key unusable rather than unlimited).
    pub fn new(keys: &[ApiKeyConfig]) -> Self {
        let time = |t: &Option<String>, unusable: i64| {
            t.as_deref()
                .map(|t| warden_config::parse_rfc3339(t).unwrap_or(unusable))
        };
        let by_hash = keys
            .iter()
            .filter_map(|k| {
                // Validation accepts only 64 hex digits; anything else leaves the key unusable.
                let mut digest = [0u8; 32];
                hex::decode_to_slice(&k.sha256, &mut digest).ok()?;
                Some((
                    digest,
                    KeyEntry {
                        id: k.id.clone(),
                        identity: k.identity.clone(),
                        tenant: k.tenant.clone(),
                        device_type: k.device_type.clone(),
                        roles: k.roles.clone(),
                        not_before: time(&k.not_before, i64::MAX),
                        expires_at: time(&k.expires_at, i64::MIN),
                    },
                ))
            })
            .collect();
        Self { by_hash }
    }

    /// The entry of `key` if it is valid at `now` (Unix seconds).
    pub fn authenticate(&self, key: &str, now: i64) -> Result<&KeyEntry, KeyError> {
        let entry = self
            .by_hash
            .get::<[u8; 32]>(&Sha256::digest(key.as_bytes()).into())
            .ok_or(KeyError::Unknown)?;
        if entry.not_before.is_some_and(|t| now < t) {
            return Err(KeyError::NotYetValid);
        }
        if entry.expires_at.is_some_and(|t| now >= t) {
            return Err(KeyError::Expired);
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str, nbf: Option<&str>, exp: Option<&str>) -> ApiKeyConfig {
        ApiKeyConfig {
            id: id.into(),
            sha256: warden_config::hash_api_key(secret),
            identity: "dev-1".into(),
            tenant: "t".into(),
            device_type: "sensor".into(),
            roles: vec![],
            not_before: nbf.map(str::to_owned),
            expires_at: exp.map(str::to_owned),
        }
    }

    #[test]
    fn authenticates_by_hash() {
        let store = KeyStore::new(&[key("k", "secret-1", None, None)]);
        assert_eq!(
            store
                .authenticate("secret-1", 0)
                .map(|p| p.identity.as_str()),
            Ok("dev-1")
        );
        assert_eq!(store.authenticate("secret-2", 0), Err(KeyError::Unknown));
    }

    #[test]
    fn hex_case_does_not_matter_and_a_malformed_hash_makes_its_key_unusable() {
        let mut upper = key("k", "secret-1", None, None);
        upper.sha256 = upper.sha256.to_uppercase();
        let mut broken = key("b", "secret-2", None, None);
        broken.sha256.replace_range(..2, "zz");
        let store = KeyStore::new(&[upper, broken]);
        assert!(store.authenticate("secret-1", 0).is_ok());
        assert_eq!(store.authenticate("secret-2", 0), Err(KeyError::Unknown));
    }

    #[test]
    fn rotation_overlap_and_expiry_follow_the_clock() {
        // Old key valid until 12:00, new key from 11:00: both work in between.
        let store = KeyStore::new(&[
            key("old", "old-secret", None, Some("2026-01-01T12:00:00Z")),
            key("new", "new-secret", Some("2026-01-01T11:00:00Z"), None),
        ]);
        let at = |t: &str| warden_config::parse_rfc3339(t).expect("time");
        let before = at("2026-01-01T10:59:59Z");
        let overlap = at("2026-01-01T11:30:00Z");
        let after = at("2026-01-01T12:00:00Z");
        assert!(store.authenticate("old-secret", before).is_ok());
        assert_eq!(
            store.authenticate("new-secret", before),
            Err(KeyError::NotYetValid)
        );
        assert_eq!(
            store
                .authenticate("old-secret", overlap)
                .map(|e| e.id.as_str()),
            Ok("old")
        );
        assert_eq!(
            store
                .authenticate("new-secret", overlap)
                .map(|e| e.id.as_str()),
            Ok("new")
        );
        assert_eq!(
            store.authenticate("old-secret", after),
            Err(KeyError::Expired)
        );
        assert!(store.authenticate("new-secret", after).is_ok());
    }
}
