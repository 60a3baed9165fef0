//! Console sign-in with OpenID Connect: the authorization code flow with PKCE (RFC 7636,
//! `S256`), a `state` bound to the browser by a cookie (no login CSRF) and used once, a `nonce`
//! the ID token must carry (no replay), the ID token verified with the provider's JWKS (the
//! gateway's key-set code: asymmetric keys only, each for its own algorithms, refetched when a
//! token names an unknown `kid`), then `iss`, `aud`, `azp`, `exp`, `iat` and `nbf` checked and
//! the user's groups mapped to a console role. Anyone the mapping gives no role is refused.
//!
//! The provider's endpoints come from its discovery document, fetched on the first sign-in
//! (and again after a failure, at most every [`REDISCOVER_AFTER`]), over HTTPS only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Validation, decode_header};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use warden_config::{ConsoleRole, OidcConfig};
use warden_gateway::jwks::{Jwks, KeySet, https_client};

use crate::DashboardError;
use crate::auth::same;
use crate::render::enc;

/// The cookie that binds a sign-in's `state` to the browser that started it.
pub(crate) const STATE_COOKIE: &str = "warden_oidc";
/// How long a started sign-in may take at the provider.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Sign-ins in progress kept at most (oldest dropped first).
const MAX_PENDING: usize = 10_000;
/// Failed discoveries are retried no sooner than this (sign-in attempts cannot make the
/// console hammer an unreachable provider).
const REDISCOVER_AFTER: Duration = Duration::from_secs(5);
/// Largest discovery document or token response read.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Unknown `kid`s refetch the JWKS at most this often. ID tokens come straight from the
/// provider's token endpoint over TLS (not from whoever calls the console), so an unknown `kid`
/// is nearly always a key rotation: the bound is short.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);

/// The provider's endpoints and keys, once discovered.
struct Provider {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks: Jwks,
    /// The provider takes the client secret only in the form (`client_secret_post`), not
    /// as HTTP Basic (the default of RFC 6749 and OpenID Connect).
    secret_in_form: bool,
}

struct Pending {
    nonce: String,
    verifier: String,
    created: Instant,
}

/// Who signed in, as the provider vouches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedIn {
    pub(crate) name: String,
    pub(crate) role: ConsoleRole,
    pub(crate) subject: String,
}

/// Why a sign-in failed: what the log gets (the user sees [`Refused::public`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("the identity provider cannot be reached: {0}")]
    Provider(String),
    #[error("unknown, expired or already used sign-in state")]
    State,
    #[error("the identity provider refused: {0}")]
    ProviderError(String),
    #[error("the token exchange failed: {0}")]
    Exchange(String),
    #[error("the ID token is not valid: {0}")]
    Token(String),
    #[error("user {0:?} has no console role")]
    NoRole(String),
}

impl Refused {
    /// What the sign-in page says (nothing the provider or the token could inject).
    pub(crate) fn public(&self) -> &'static str {
        match self {
            Refused::Provider(_) => "The identity provider cannot be reached; try again later.",
            Refused::State => "That sign-in expired or was not started here; sign in again.",
            Refused::ProviderError(_) => "The identity provider did not sign you in.",
            Refused::Exchange(_) | Refused::Token(_) => {
                "The identity provider's answer could not be verified; sign in again."
            }
            Refused::NoRole(_) => "Your account has no role in this console; ask an administrator.",
        }
    }

    /// Short code for the audit log.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refused::Provider(_) => "provider_unreachable",
            Refused::State => "bad_state",
            Refused::ProviderError(_) => "provider_error",
            Refused::Exchange(_) => "exchange_failed",
            Refused::Token(_) => "bad_id_token",
            Refused::NoRole(_) => "no_role",
        }
    }
}

/// The OpenID Connect client of the console.
pub(crate) struct Oidc {
    config: OidcConfig,
    secret: Option<String>,
    client: reqwest::Client,
    timeout: Duration,
    /// The discovered provider, or when discovery last failed.
    provider: tokio::sync::Mutex<(Option<Arc<Provider>>, Option<Instant>)>,
    pending: Mutex<HashMap<String, Pending>>,
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl Oidc {
    /// The client for `config`: its secret read and its HTTPS client built now, so a bad
    /// setting stops the console at start rather than at the first sign-in.
    pub(crate) fn new(config: &OidcConfig) -> Result<Self, DashboardError> {
        let bad = |what: String| DashboardError::Config(format!("dashboard.oidc: {what}"));
        let secret = match (&config.client_secret_env, &config.client_secret_file) {
            (Some(var), _) => Some(
                std::env::var(var)
                    .map_err(|_| bad(format!("environment variable {var} is not set")))?,
            ),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("cannot read {path}: {e}")))?,
            ),
            (None, None) => None,
        }
        .map(|s| s.trim().to_string());
        if secret.as_deref().is_some_and(str::is_empty) {
            return Err(bad("the client secret is empty".into()));
        }
        let ca = match &config.ca_file {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| bad(format!("cannot read {path}: {e}")))?)
            }
            None => None,
        };
        let client = https_client(ca.as_deref()).map_err(bad)?;
        Ok(Self {
            config: config.clone(),
            secret,
            client,
            timeout: Duration::from_millis(config.timeout_ms),
            provider: tokio::sync::Mutex::new((None, None)),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The sign-in button's label.
    pub(crate) fn display_name(&self) -> &str {
        &self.config.display_name
    }

    async fn provider(&self) -> Result<Arc<Provider>, Refused> {
        let mut slot = self.provider.lock().await;
        if let Some(p) = &slot.0 {
            return Ok(p.clone());
        }
        if slot.1.is_some_and(|t| t.elapsed() < REDISCOVER_AFTER) {
            return Err(Refused::Provider("discovery failed moments ago".into()));
        }
        match self.discover().await {
            Ok(p) => {
                let p = Arc::new(p);
                *slot = (Some(p.clone()), None);
                Ok(p)
            }
            Err(e) => {
                slot.1 = Some(Instant::now());
                Err(Refused::Provider(e))
            }
        }
    }

    async fn discover(&self) -> Result<Provider, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let doc: Value = self.get_json(self.client.get(&url)).await?;
        let field = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("the discovery document has no `{k}`"))
        };
        let issuer = field("issuer")?;
        if issuer != self.config.issuer {
            return Err(format!(
                "the discovery document names issuer {issuer:?}, not {:?}",
                self.config.issuer
            ));
        }
        let (authorization_endpoint, token_endpoint, jwks_uri) = (
            field("authorization_endpoint")?,
            field("token_endpoint")?,
            field("jwks_uri")?,
        );
        for u in [&authorization_endpoint, &token_endpoint, &jwks_uri] {
            if !u.starts_with("https://") {
                return Err(format!("endpoint {u:?} is not https://"));
            }
        }
        let jwks = Jwks::from_url(
            jwks_uri,
            self.client.clone(),
            self.timeout,
            JWKS_MIN_REFETCH,
        );
        jwks.refresh().await?;
        let methods: Vec<&str> = doc
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let secret_in_form =
            !methods.contains(&"client_secret_basic") && methods.contains(&"client_secret_post");
        Ok(Provider {
            authorization_endpoint,
            token_endpoint,
            jwks,
            secret_in_form,
        })
    }

    async fn get_json(&self, req: reqwest::RequestBuilder) -> Result<Value, String> {
        let read = async {
            let mut resp = req
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = resp.status();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading: {e}"))? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_RESPONSE_BYTES {
                    return Err(format!("answer larger than {MAX_RESPONSE_BYTES} bytes"));
                }
            }
            if !status.is_success() {
                let error = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                return Err(format!("status {status} {error}"));
            }
            serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    }

    /// Start a sign-in: the provider's authorization URL to send the browser to, and the
    /// `state` to bind to it in [`STATE_COOKIE`].
    pub(crate) async fn start(&self) -> Result<(String, String), Refused> {
        let provider = self.provider().await?;
        let random = || crate::auth::random_hex().ok_or(Refused::Provider("no randomness".into()));
        let (state, nonce, verifier) = (random()?, random()?, random()?);
        let challenge = b64url(&Sha256::digest(verifier.as_bytes()));
        {
            let mut pending = self.pending.lock();
            pending.retain(|_, p| p.created.elapsed() < PENDING_TTL);
            if pending.len() >= MAX_PENDING
                && let Some(oldest) = pending
                    .iter()
                    .min_by_key(|(_, p)| p.created)
                    .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
            pending.insert(
                state.clone(),
                Pending {
                    nonce: nonce.clone(),
                    verifier,
                    created: Instant::now(),
                },
            );
        }
        let mut scopes = vec!["openid".to_string()];
        scopes.extend(
            self.config
                .scopes
                .iter()
                .filter(|s| s.as_str() != "openid")
                .cloned(),
        );
        let params = [
            ("response_type", "code".to_string()),
            ("client_id", self.config.client_id.clone()),
            ("redirect_uri", self.config.redirect_url.clone()),
            ("scope", scopes.join(" ")),
            ("state", state.clone()),
            ("nonce", nonce),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".into()),
        ];
        let query = params
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let sep = if provider.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok((
            format!("{}{sep}{query}", provider.authorization_endpoint),
            state,
        ))
    }

    /// Finish a sign-in: the provider sent the browser back with `query`; `cookie_state` is
    /// the state the browser's cookie holds.
    pub(crate) async fn finish(
        &self,
        query: &HashMap<String, String>,
        cookie_state: Option<&str>,
    ) -> Result<SignedIn, Refused> {
        let state = query.get("state").ok_or(Refused::State)?;
        if !cookie_state.is_some_and(|c| same(c, state)) {
            return Err(Refused::State);
        }
        // Used once, whatever happens next.
        let pending = self.pending.lock().remove(state).ok_or(Refused::State)?;
        if pending.created.elapsed() >= PENDING_TTL {
            return Err(Refused::State);
        }
        if let Some(error) = query.get("error") {
            return Err(Refused::ProviderError(error.chars().take(100).collect()));
        }
        let code = query
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Refused::ProviderError("no code".into()))?;
        let provider = self.provider().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", self.config.redirect_url.as_str()),
            ("code_verifier", pending.verifier.as_str()),
            ("client_id", self.config.client_id.as_str()),
        ];
        let mut req = self.client.post(&provider.token_endpoint);
        match &self.secret {
            Some(secret) if provider.secret_in_form => form.push(("client_secret", secret)),
            // client_secret_basic (RFC 6749 §2.3.1: both parts form-encoded first).
            Some(secret) => req = req.basic_auth(enc(&self.config.client_id), Some(enc(secret))),
            None => {}
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let answer = self
            .get_json(
                req.header("content-type", "application/x-www-form-urlencoded")
                    .body(body),
            )
            .await
            .map_err(Refused::Exchange)?;
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| Refused::Exchange("no id_token in the answer".into()))?;
        let claims = self.verify(&provider, id_token, &pending.nonce).await?;
        self.map(&claims)
    }

    /// The ID token's claims, once its signature and claims check out.
    async fn verify(
        &self,
        provider: &Provider,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, Refused> {
        let bad = |e: String| Refused::Token(e);
        let header = decode_header(token).map_err(|e| bad(format!("not a JWS: {e}")))?;
        let pick = |set: &KeySet| -> Option<usize> {
            match &header.kid {
                Some(kid) => set.keys.iter().position(|k| k.kid.as_ref() == Some(kid)),
                None => {
                    let usable: Vec<usize> = (0..set.keys.len())
                        .filter(|&i| set.keys[i].algorithms.contains(&header.alg))
                        .collect();
                    (usable.len() == 1).then(|| usable[0])
                }
            }
        };
        let mut keys = provider.jwks.current();
        if pick(&keys).is_none() && provider.jwks.refetch_for_unknown_kid().await {
            keys = provider.jwks.current();
        }
        let key = pick(&keys)
            .map(|i| &keys.keys[i])
            .ok_or_else(|| bad(format!("no key for kid {:?}", header.kid)))?;
        if !key.algorithms.contains(&header.alg) {
            return Err(bad(format!("key does not verify {:?}", header.alg)));
        }
        let mut v = Validation::new(header.alg);
        v.leeway = self.config.leeway_s;
        v.validate_nbf = true;
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.client_id]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
            .map_err(|e| bad(e.to_string()))?
            .claims;
        let now = warden_event::now_ns() / 1_000_000_000;
        let leeway = i64::try_from(self.config.leeway_s).unwrap_or(i64::MAX);
        match claims.get("iat").and_then(Value::as_i64) {
            Some(iat) if iat <= now.saturating_add(leeway) => {}
            _ => return Err(bad("iat missing or in the future".into())),
        }
        if !claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| same(n, nonce))
        {
            return Err(bad("nonce missing or not this sign-in's".into()));
        }
        if let Some(azp) = claims.get("azp")
            && azp.as_str() != Some(self.config.client_id.as_str())
        {
            return Err(bad("azp is another client".into()));
        }
        Ok(claims)
    }

    /// The user's name and console role from verified claims.
    fn map(&self, claims: &Map<String, Value>) -> Result<SignedIn, Refused> {
        let text = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let subject = text("sub").unwrap_or_default();
        let name = text(&self.config.name_claim)
            .or_else(|| text("email"))
            .unwrap_or_else(|| subject.clone());
        let values = roles(claims, &self.config.roles_claim);
        let has = |wanted: &[String]| values.iter().any(|v| wanted.contains(v));
        let role = if has(&self.config.operator_values) {
            ConsoleRole::Operator
        } else if has(&self.config.viewer_values) {
            ConsoleRole::Viewer
        } else {
            return Err(Refused::NoRole(name));
        };
        Ok(SignedIn {
            name,
            role,
            subject,
        })
    }
}

/// The strings at `path` (dotted: `realm_access.roles`) in `claims`: one string or an array.
fn roles(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return Vec::new();
    };
    let mut at = claims.get(first);
    for p in parts {
        at = at.and_then(|v| v.get(p));
    }
    match at {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> OidcConfig {
        toml::from_str(
            r#"
            issuer = "https://idp.example"
            client_id = "console"
            redirect_url = "https://console.example/oidc/callback"
            roles_claim = "realm_access.roles"
            operator_values = ["ops"]
            viewer_values = ["staff"]
            "#,
        )
        .expect("config")
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn roles_map_from_nested_claims_and_nobody_else_gets_in() {
        let oidc = Oidc::new(&config()).expect("client");
        let op = oidc
            .map(&claims(json!({"sub": "u1", "preferred_username": "alice",
                "realm_access": {"roles": ["staff", "ops"]}})))
            .expect("operator");
        assert_eq!(
            (op.name.as_str(), op.role),
            ("alice", ConsoleRole::Operator)
        );
        let viewer = oidc
            .map(&claims(json!({"sub": "u2", "email": "bob@example",
                "realm_access": {"roles": "staff"}})))
            .expect("viewer");
        assert_eq!(
            (viewer.name.as_str(), viewer.role),
            ("bob@example", ConsoleRole::Viewer)
        );
        for nobody in [
            json!({"sub": "u3", "realm_access": {"roles": ["guest"]}}),
            json!({"sub": "u3", "realm_access": "ops"}),
            json!({"sub": "u3", "roles": ["ops"]}),
            json!({"sub": "u3"}),
        ] {
            assert!(matches!(oidc.map(&claims(nobody)), Err(Refused::NoRole(_))));
        }
    }
}
