//! API-key authentication: keys are looked up by their SHA-256, never stored in clear.

use std::collections::HashMap;

use axum::http::HeaderMap;
use warden_config::ApiKeyConfig;

/// Who a credential authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub identity: String,
    pub tenant: String,
    pub device_type: String,
    pub roles: Vec<String>,
    /// Id of the API key used.
    pub key_id: String,
}

/// Result of reading credentials from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    /// A header was present but not readable (non-ASCII, wrong scheme).
    Malformed,
    ApiKey(String),
}

/// Read the API key from `X-Api-Key` or `Authorization: ApiKey <key>`.
pub fn credential(headers: &HeaderMap) -> Credential {
    if let Some(v) = headers.get("x-api-key") {
        return match v.to_str() {
            Ok(k) if !k.trim().is_empty() => Credential::ApiKey(k.trim().to_string()),
            _ => Credential::Malformed,
        };
    }
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let Ok(v) = v.to_str() else {
            return Credential::Malformed;
        };
        return match v.split_once(' ') {
            Some((scheme, key))
                if scheme.eq_ignore_ascii_case("apikey") && !key.trim().is_empty() =>
            {
                Credential::ApiKey(key.trim().to_string())
            }
            _ => Credential::Malformed,
        };
    }
    Credential::None
}

/// API keys by hash.
#[derive(Debug, Default)]
pub struct KeyStore {
    by_hash: HashMap<String, Principal>,
}

impl KeyStore {
    pub fn new(keys: &[ApiKeyConfig]) -> Self {
        let by_hash = keys
            .iter()
            .map(|k| {
                (
                    k.sha256.clone(),
                    Principal {
                        identity: k.identity.clone(),
                        tenant: k.tenant.clone(),
                        device_type: k.device_type.clone(),
                        roles: k.roles.clone(),
                        key_id: k.id.clone(),
                    },
                )
            })
            .collect();
        Self { by_hash }
    }

    pub fn authenticate(&self, key: &str) -> Option<&Principal> {
        self.by_hash.get(&warden_config::hash_api_key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn reads_both_header_forms() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert_eq!(credential(&h), Credential::ApiKey("k1".into()));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("ApiKey k2"));
        assert_eq!(credential(&h), Credential::ApiKey("k2".into()));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Basic xyz"));
        assert_eq!(credential(&h), Credential::Malformed);
        let mut h = HeaderMap::new();
        h.insert(
            "x-api-key",
            HeaderValue::from_bytes(b"\xff").expect("opaque bytes"),
        );
        assert_eq!(credential(&h), Credential::Malformed);
        assert_eq!(credential(&HeaderMap::new()), Credential::None);
    }

    #[test]
    fn authenticates_by_hash() {
        let store = KeyStore::new(&[ApiKeyConfig {
            id: "k".into(),
            sha256: warden_config::hash_api_key("secret-1"),
            identity: "dev-1".into(),
            tenant: "t".into(),
            device_type: "sensor".into(),
            roles: vec![],
        }]);
        assert_eq!(
            store.authenticate("secret-1").map(|p| p.identity.as_str()),
            Some("dev-1")
        );
        assert!(store.authenticate("secret-2").is_none());
    }
}
