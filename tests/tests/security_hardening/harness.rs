//! The suite's harness: an upstream that records every request it receives in full (method,
//! path, query, headers, body — or that the body never arrived whole), and a gateway on the
//! security suite's config with the routes these attacks need.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use warden_config::WardenConfig;

use crate::common;

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    /// The body, or `None` when it did not arrive whole.
    pub(crate) body: Option<Vec<u8>>,
}

impl Hit {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub(crate) struct Recorder {
    pub(crate) addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Recorder {
    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Requests received on paths starting with `prefix`.
    pub(crate) fn hits_under(&self, prefix: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.path.starts_with(prefix))
            .collect()
    }

    /// The shape `config` expects.
    pub(crate) fn as_upstream(&self) -> common::Upstream {
        common::Upstream {
            addr: self.addr,
            hits: Arc::default(),
            arrived: Arc::new(tokio::sync::Notify::new()),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

pub(crate) async fn recorder() -> anyhow::Result<Recorder> {
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let h = hits.clone();
    let app = Router::new().fallback(move |req: Request| {
        let h = h.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .ok()
                .map(|b| b.to_vec());
            let hit = Hit {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).to_string(),
                        )
                    })
                    .collect(),
                body,
            };
            if let Ok(mut all) = h.lock() {
                all.push(hit);
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Recorder { addr, hits })
}

pub(crate) const HS_SECRET: &[u8] = b"hardening-suite-hs256-secret-0123456789";
pub(crate) const ISSUER: &str = "warden-hardening";
pub(crate) const AUDIENCE: &str = "warden";

/// The security suite's config plus: a JWT issuer (HS256), `/api/bearer` (JWT, bearer
/// forwarded), `/api/jwtonly` (JWT, not forwarded) and `/api/legacy` (header names with `_`
/// allowed); short body and connection deadlines.
pub(crate) fn config(up: &Recorder, dir: &Path) -> anyhow::Result<WardenConfig> {
    let secret = dir.join("hs256.key");
    std::fs::write(&secret, HS_SECRET)?;
    let u = up.addr;
    let extra = format!(
        r#"
[identity.jwt]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
algorithms = ["HS256"]
hs256_secret_file = "{secret}"

[[routes]]
name = "bearer"
prefix = "/api/bearer"
upstream = "http://{u}"
auth = "jwt"
forward_bearer = true

[[routes]]
name = "jwtonly"
prefix = "/api/jwtonly"
upstream = "http://{u}"
auth = "jwt"

[[routes]]
name = "legacy"
prefix = "/api/legacy"
upstream = "http://{u}"
auth = "api_key"
allow_underscore_headers = true
"#,
        secret = secret.display()
    );
    let mut c = common::config(&up.as_upstream(), dir, &extra)?;
    c.gateway.connections.body_read_timeout_ms = 600;
    Ok(c)
}

/// An HS256 token for `sub` with the fleet-admin role.
pub(crate) fn token(sub: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "tenant": "acme",
        "device_type": "console", "roles": ["fleet_admin"], "iat": now, "exp": now + 600,
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET),
    )?)
}

/// An HTTP/2 (prior knowledge) client, as a device would use it.
pub(crate) fn h2() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()?)
}
