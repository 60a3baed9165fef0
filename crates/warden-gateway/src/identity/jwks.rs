//! The JSON Web Key Set that bearer tokens are verified with: from a file (reloaded when it
//! changes) or an HTTPS URL (fetched at start, on an interval, and when a token names an
//! unknown `kid` — such fetches at most once per `min_refetch`, so made-up key ids cannot make
//! the gateway hammer the identity provider, while a real key rotation is picked up by the
//! first token signed with the new key).
//!
//! Only asymmetric public keys are taken from a JWKS; each key accepts only the algorithms of
//! its type (and only its own `alg` when it has one). Symmetric (`oct`) keys are ignored: the
//! HS256 secret comes from its own file, so a token can never get itself checked with a key
//! published for another purpose.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::RwLock;
use tracing::{debug, warn};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// A verification key.
pub struct JwkKey {
    pub kid: Option<String>,
    /// Algorithms this key may verify.
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

/// The usable keys of one JWKS document.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<JwkKey>,
}

impl KeySet {
    /// Parse a JWKS document; keys that are not usable for signatures are skipped, a document
    /// that is not a JWKS is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let by_type: &[Algorithm] = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => &[Algorithm::ES256],
                    EllipticCurve::P384 => &[Algorithm::ES384],
                    _ => &[],
                },
                AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                    EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
                    _ => &[],
                },
                _ => &[],
            };
            let mut algorithms = by_type.to_vec();
            if let Some(ka) = jwk.common.key_algorithm {
                match Algorithm::try_from(ka) {
                    Ok(a) => algorithms.retain(|x| *x == a),
                    Err(_) => algorithms.clear(),
                }
            }
            if algorithms.is_empty() {
                debug!(kid = ?jwk.common.key_id, "Skipping a JWK that cannot verify signatures here.");
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => keys.push(JwkKey {
                    kid: jwk.common.key_id.clone(),
                    algorithms,
                    key,
                }),
                Err(e) => {
                    return Err(format!(
                        "key {:?} is malformed: {e}",
                        jwk.common.key_id.as_deref().unwrap_or("(no kid)")
                    ));
                }
            }
        }
        Ok(Self { keys })
    }
}

enum Source {
    File(PathBuf),
    Url {
        url: String,
        client: reqwest::Client,
        timeout: Duration,
    },
}

/// The current key set and where it comes from.
pub struct Jwks {
    keys: RwLock<Arc<KeySet>>,
    source: Source,
    /// When an unknown `kid` last caused a fetch; held while fetching, so concurrent requests
    /// with an unknown `kid` share one fetch.
    last_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch: Duration,
    fetches: AtomicU64,
    /// Incremented whenever the key set is replaced.
    generation: AtomicU64,
}

impl Jwks {
    /// Keys from a file (which must load now).
    pub fn from_file(path: PathBuf) -> Result<Self, String> {
        let keys = read_file(&path)?;
        Ok(Self {
            keys: RwLock::new(Arc::new(keys)),
            source: Source::File(path),
            last_kid_fetch: tokio::sync::Mutex::new(None),
            min_refetch: Duration::ZERO,
            fetches: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        })
    }

    /// Keys from an HTTPS URL; nothing is fetched until [`Jwks::refresh`].
    pub fn from_url(
        url: String,
        client: reqwest::Client,
        timeout: Duration,
        min_refetch: Duration,
    ) -> Self {
        Self {
            keys: RwLock::new(Arc::new(KeySet::default())),
            source: Source::Url {
                url,
                client,
                timeout,
            },
            last_kid_fetch: tokio::sync::Mutex::new(None),
            min_refetch,
            fetches: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.keys.read().clone()
    }

    /// How many times the URL was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Re-read the file source (the file watcher calls this).
    pub fn reload_file(&self) -> Result<String, Vec<String>> {
        let Source::File(path) = &self.source else {
            return Ok("not a file".into());
        };
        let keys = read_file(path).map_err(|e| vec![e])?;
        let n = keys.keys.len();
        self.replace(keys);
        Ok(format!("{n} key(s)"))
    }

    /// Fetch the URL now (scheduled refresh). Keeps the current keys on failure.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _serialised = self.last_kid_fetch.lock().await;
        self.fetch().await
    }

    /// A token named a `kid` we do not have: fetch again unless the last fetch is more recent
    /// than `min_refetch`. True when the key set was replaced.
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        if !matches!(self.source, Source::Url { .. }) {
            return false;
        }
        let before = self.generation.load(Ordering::Acquire);
        let mut last = self.last_kid_fetch.lock().await;
        if self.generation.load(Ordering::Acquire) != before {
            // Another request fetched while we waited for the lock.
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            debug!("Unknown kid; JWKS refetch rate-limited.");
            return false;
        }
        *last = Some(Instant::now());
        self.fetch().await.is_ok()
    }

    fn replace(&self, keys: KeySet) {
        *self.keys.write() = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::Release);
    }

    async fn fetch(&self) -> Result<usize, String> {
        let Source::Url {
            url,
            client,
            timeout,
        } = &self.source
        else {
            return Err("not a URL source".into());
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = tokio::time::timeout(*timeout, fetch_url(client, url))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        match result {
            Ok(keys) => {
                let n = keys.keys.len();
                self.replace(keys);
                debug!(%url, keys = n, "JWKS fetched.");
                Ok(n)
            }
            Err(e) => {
                warn!(%url, error = %e, "JWKS fetch failed; keeping the previous keys.");
                Err(e)
            }
        }
    }
}

fn read_file(path: &std::path::Path) -> Result<KeySet, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    KeySet::parse(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))
}

async fn fetch_url(client: &reqwest::Client, url: &str) -> Result<KeySet, String> {
    let mut resp = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
        }
    }
    KeySet::parse(&body)
}

/// The HTTPS client for JWKS URLs: rustls (ring), HTTPS only, no redirects, and either the
/// web PKI roots or only the CAs of `ca_pem`.
pub fn https_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(pem) = ca_pem {
        b = b.tls_built_in_root_certs(false);
        for cert in warden_config::parse_certs(pem)? {
            let c = reqwest::Certificate::from_der(&cert).map_err(|e| e.to_string())?;
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| format!("building the HTTPS client: {e}"))
}
