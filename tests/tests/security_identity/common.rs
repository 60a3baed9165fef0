//! Shared by the identity suite: the protected upstream, the IdP's JWKS endpoint over HTTPS,
//! token signers, the scenario's certificates, files and config, the running gateway, and the
//! attack log that checks each outcome and the upstream hit count.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use warden::{Stack, StackParts, ensure_topics, make_bus};
use warden_bus::Bus;
use warden_config::WardenConfig;
use warden_event::{AuthMethod, RequestEvent};
use warden_tests::pki::{Ca, Issued, days};

pub(crate) const ISSUER: &str = "https://idp.warden.test";
pub(crate) const AUDIENCE: &str = "warden-gateway";
pub(crate) const DEVICE_URI: &str = "urn:warden:device:";

// === the protected upstream ===

/// Counts every request it receives; paths ending in `/slow` answer after 300 ms.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<AtomicUsize>,
}

pub(crate) async fn upstream() -> anyhow::Result<Upstream> {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            if uri.path().ends_with("/slow") {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Upstream { addr, hits })
}

// === the identity provider's JWKS endpoint, over HTTPS ===

pub(crate) struct JwksServer {
    pub(crate) url: String,
    pub(crate) hits: Arc<AtomicUsize>,
    /// The JWKS document it serves (replace it to rotate keys).
    pub(crate) keys: Arc<Body>,
}

/// The document a test server serves.
#[derive(Default)]
pub(crate) struct Body(std::sync::Mutex<String>);

impl Body {
    pub(crate) fn set(&self, v: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }
    pub(crate) fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub(crate) async fn jwks_server(ca: &Ca, keys: &[Jwk]) -> anyhow::Result<JwksServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(Body::default());
    body.set(serde_json::to_string(&JwkSet {
        keys: keys.to_vec(),
    })?);
    let (h, b) = (hits.clone(), body.clone());
    let app = Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (h, b) = (h.clone(), b.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                ([("content-type", "application/json")], b.get())
            }
        }),
    );
    warden_tests::https::serve(listener, app, ca, None)?;
    Ok(JwksServer {
        url: format!("https://127.0.0.1:{}/jwks.json", addr.port()),
        hits,
        keys: body,
    })
}

// === token signers ===

pub(crate) struct Signer {
    pub(crate) key: EncodingKey,
    pub(crate) alg: Algorithm,
    pub(crate) kid: String,
    /// Public key as PEM (what an algorithm-confusion attacker uses as an HMAC secret).
    pub(crate) public_pem: String,
}

impl Signer {
    pub(crate) fn rsa(kid: &str) -> anyhow::Result<Self> {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
        Ok(Self {
            key: EncodingKey::from_rsa_der(key.to_pkcs1_der()?.as_bytes()),
            alg: Algorithm::RS256,
            kid: kid.into(),
            public_pem: key.to_public_key().to_public_key_pem(LineEnding::LF)?,
        })
    }

    pub(crate) fn ec(kid: &str) -> anyhow::Result<Self> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Ok(Self {
            key: EncodingKey::from_ec_der(&kp.serialize_der()),
            alg: Algorithm::ES256,
            kid: kid.into(),
            public_pem: kp.public_key_pem(),
        })
    }

    pub(crate) fn jwk(&self) -> anyhow::Result<Jwk> {
        let mut j = Jwk::from_encoding_key(&self.key, self.alg)?;
        j.common.key_id = Some(self.kid.clone());
        Ok(j)
    }

    pub(crate) fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&h, claims, &self.key)?)
    }
}

pub(crate) fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn claims(sub: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "exp": now_s() + 600,
        "nbf": now_s() - 5,
        "iat": now_s() - 5,
    })
}

pub(crate) fn claims_with(sub: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims(sub);
    if let Value::Object(m) = &mut c {
        f(m);
    }
    c
}

pub(crate) fn rfc3339(offset_s: i64) -> anyhow::Result<String> {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_s);
    Ok(t.format(&time::format_description::well_known::Rfc3339)?)
}

pub(crate) fn b64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

// === the gateway under test ===

/// Certificates of the scenario.
pub(crate) struct Certs {
    pub(crate) server_ca: Ca,
    pub(crate) device_ca: Ca,
    /// thermo-1: valid, registered for every credential kind.
    pub(crate) good: Issued,
    /// thermo-2: listed in the CRL.
    pub(crate) revoked: Issued,
    /// thermo-3: expired yesterday.
    pub(crate) expired: Issued,
    /// thermo-4: valid from tomorrow.
    pub(crate) future: Issued,
    /// thermo-5: valid, but its fingerprint is denied.
    pub(crate) denied: Issued,
    /// thermo-1 again, but issued by a CA the gateway does not trust.
    pub(crate) rogue: Issued,
    /// disabled-1: valid, but disabled in the registry.
    pub(crate) disabled: Issued,
    /// ghost-1: valid, but not in the registry.
    pub(crate) ghost: Issued,
    /// A valid certificate whose SAN URI lacks the device prefix.
    pub(crate) nameless: Issued,
}

impl Certs {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let device_ca = Ca::new("warden test devices")?;
        let rogue_ca = Ca::new("rogue devices")?;
        let dev = |ca: &Ca, id: &str, serial, from, to| {
            ca.device(&format!("{DEVICE_URI}{id}"), id, serial, from, to)
        };
        Ok(Self {
            server_ca: Ca::new("warden test servers")?,
            good: dev(&device_ca, "thermo-1", 1, days(-1), days(30))?,
            revoked: dev(&device_ca, "thermo-2", 2, days(-1), days(30))?,
            expired: dev(&device_ca, "thermo-3", 3, days(-30), days(-1))?,
            future: dev(&device_ca, "thermo-4", 4, days(1), days(30))?,
            denied: dev(&device_ca, "thermo-5", 5, days(-1), days(30))?,
            rogue: dev(&rogue_ca, "thermo-1", 6, days(-1), days(30))?,
            disabled: dev(&device_ca, "disabled-1", 7, days(-1), days(30))?,
            ghost: dev(&device_ca, "ghost-1", 8, days(-1), days(30))?,
            nameless: device_ca.device("urn:other:thermo-1", "thermo-1", 9, days(-1), days(30))?,
            device_ca,
        })
    }
}

pub(crate) const REGISTRY: &str = r#"
[[identity]]
id = "thermo-1"
tenant = "acme"
device_type = "thermometer"
roles = ["telemetry"]
auth_methods = ["client_cert", "api_key", "jwt"]

[[identity]]
id = "thermo-2"
auth_methods = ["client_cert"]
[[identity]]
id = "thermo-3"
auth_methods = ["client_cert"]
[[identity]]
id = "thermo-4"
auth_methods = ["client_cert"]
[[identity]]
id = "thermo-5"
auth_methods = ["client_cert"]

[[identity]]
id = "thermo-6"
tenant = "acme"
auth_methods = ["api_key"]

[[identity]]
id = "disabled-1"
auth_methods = ["client_cert", "api_key", "jwt"]
status = "disabled"

[[identity]]
id = "user-7"
tenant = "globex"
roles = ["operator"]
auth_methods = ["jwt"]
"#;

/// Files the gateway reads.
pub(crate) struct Files {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) crl: PathBuf,
    pub(crate) deny: PathBuf,
    pub(crate) registry: PathBuf,
}

impl Files {
    pub(crate) fn write(certs: &Certs) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let p = |n: &str| dir.path().join(n);
        let server = certs.server_ca.server()?;
        std::fs::write(p("server.pem"), &server.cert_pem)?;
        std::fs::write(p("server.key"), &server.key_pem)?;
        std::fs::write(p("devices-ca.pem"), &certs.device_ca.cert_pem)?;
        std::fs::write(p("server-ca.pem"), &certs.server_ca.cert_pem)?;
        std::fs::write(p("devices.crl"), certs.device_ca.crl(&[2], 1)?)?;
        std::fs::write(
            p("deny.txt"),
            format!("# thermo-5, key leaked\n{}\n", certs.denied.fingerprint()),
        )?;
        std::fs::write(p("registry.toml"), REGISTRY)?;
        Ok(Self {
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            crl: p("devices.crl"),
            deny: p("deny.txt"),
            registry: p("registry.toml"),
            dir,
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// API keys of the scenario (in clear; the config holds their hashes).
pub(crate) const KEY_THERMO1: &str = "key-thermo1-5f0c2b7e9d4a61c8";
pub(crate) const KEY_OLD: &str = "key-thermo6-old-0a1b2c3d4e5f";
pub(crate) const KEY_CURRENT: &str = "key-thermo6-cur-1b2c3d4e5f6a";
pub(crate) const KEY_NEW: &str = "key-thermo6-new-2c3d4e5f6a7b";
pub(crate) const KEY_FUTURE: &str = "key-thermo6-fut-3d4e5f6a7b8c";
pub(crate) const KEY_DISABLED: &str = "key-disabled1-4e5f6a7b8c9d";

pub(crate) fn config(
    files: &Files,
    up: SocketAddr,
    jwks_url: &str,
    reload_ms: u64,
    cert_required: bool,
) -> anyhow::Result<WardenConfig> {
    let key = |id: &str, secret: &str, ident: &str, window: &str| {
        format!(
            "[[api_keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nidentity = \"{ident}\"\n{window}\n",
            warden_config::hash_api_key(secret)
        )
    };
    let keys = [
        key("k-thermo1", KEY_THERMO1, "thermo-1", ""),
        key(
            "k-old",
            KEY_OLD,
            "thermo-6",
            &format!("expires_at = \"{}\"", rfc3339(-60)?),
        ),
        key(
            "k-current",
            KEY_CURRENT,
            "thermo-6",
            &format!(
                "not_before = \"{}\"\nexpires_at = \"{}\"",
                rfc3339(-3600)?,
                rfc3339(3600)?
            ),
        ),
        key(
            "k-new",
            KEY_NEW,
            "thermo-6",
            &format!("not_before = \"{}\"", rfc3339(-60)?),
        ),
        key(
            "k-future",
            KEY_FUTURE,
            "thermo-6",
            &format!("not_before = \"{}\"", rfc3339(3600)?),
        ),
        key("k-disabled", KEY_DISABLED, "disabled-1", ""),
    ]
    .join("\n");
    let p = |n: &str| files.path(n).display().to_string();
    let text = format!(
        r#"
[gateway]
id = "gw-identity"
listen = "127.0.0.1:0"

[gateway.tls]
listen = "127.0.0.1:0"
cert_file = "{server_cert}"
key_file = "{server_key}"
handshake_timeout_ms = 2000

[gateway.tls.client_auth]
ca_files = ["{ca}"]
crl_files = ["{crl}"]
identity_field = "san_uri"
identity_prefix = "{DEVICE_URI}"
deny_fingerprints_file = "{deny}"
required = {cert_required}

[dashboard]
listen = "127.0.0.1:0"

[identity]
reload_interval_ms = {reload_ms}

[identity.registry]
file = "{registry}"

[identity.jwt]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
algorithms = ["RS256", "ES256"]
leeway_s = 5
jwks_url = "{jwks_url}"
jwks_ca_file = "{server_ca}"
jwks_min_refetch_ms = 600000

[[routes]]
name = "api"
prefix = "/api"
upstream = "http://{up}"

[[routes]]
name = "keys"
prefix = "/keys"
upstream = "http://{up}"
auth = "api_key"

[[routes]]
name = "tokens"
prefix = "/tokens"
upstream = "http://{up}"
auth = "jwt"

[[routes]]
name = "firmware"
prefix = "/firmware"
upstream = "http://{up}"
require_mtls = true

[[routes]]
name = "open"
prefix = "/open"
upstream = "http://{up}"
auth = "none"

{keys}
"#,
        server_cert = files.server_cert.display(),
        server_key = files.server_key.display(),
        ca = p("devices-ca.pem"),
        crl = files.crl.display(),
        deny = files.deny.display(),
        registry = files.registry.display(),
        server_ca = p("server-ca.pem"),
    );
    WardenConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A running scenario.
pub(crate) struct Scenario {
    pub(crate) certs: Certs,
    pub(crate) files: Files,
    pub(crate) up: Upstream,
    pub(crate) idp: JwksServer,
    pub(crate) rsa: Signer,
    pub(crate) ec: Signer,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) config: WardenConfig,
    pub(crate) stack: Stack,
    pub(crate) http: SocketAddr,
    pub(crate) https: SocketAddr,
}

impl Scenario {
    pub(crate) async fn start(reload_ms: u64) -> anyhow::Result<Self> {
        Self::start_with(reload_ms, false).await
    }

    pub(crate) async fn start_with(reload_ms: u64, cert_required: bool) -> anyhow::Result<Self> {
        let certs = Certs::new()?;
        let files = Files::write(&certs)?;
        let up = upstream().await?;
        let (rsa, ec) = (Signer::rsa("rsa-1")?, Signer::ec("ec-1")?);
        let idp = jwks_server(&certs.server_ca, &[rsa.jwk()?, ec.jwk()?]).await?;
        let config = config(&files, up.addr, &idp.url, reload_ms, cert_required)?;
        let bus = make_bus(&config)?;
        ensure_topics(&*bus, &config).await?;
        let stack = Stack::start(
            bus.clone(),
            &config,
            StackParts {
                gateway: true,
                ..StackParts::default()
            },
        )
        .await?;
        let http = stack.gateway_addr.context("http listener")?;
        let https = stack.gateway_tls_addr.context("tls listener")?;
        Ok(Self {
            certs,
            files,
            up,
            idp,
            rsa,
            ec,
            bus,
            config,
            stack,
            http,
            https,
        })
    }

    pub(crate) fn hits(&self) -> usize {
        self.up.hits.load(Ordering::SeqCst)
    }

    pub(crate) fn identity(&self) -> anyhow::Result<&warden_gateway::IdentityHandle> {
        self.stack.identity.as_ref().context("identity handle")
    }

    /// A TLS client trusting the test server CA, presenting `cert` if given.
    pub(crate) fn tls_client(&self, cert: Option<&Issued>) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(
                self.certs.server_ca.cert_pem.as_bytes(),
            )?)
            .no_proxy()
            .timeout(Duration::from_secs(10));
        if let Some(c) = cert {
            b = b.identity(reqwest::Identity::from_pem(c.identity_pem().as_bytes())?);
        }
        Ok(b.build()?)
    }

    pub(crate) fn plain_client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?)
    }

    pub(crate) fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https.port())
    }

    pub(crate) fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Stop the gateway and return every event it emitted, by request id.
    pub(crate) async fn stop(self) -> anyhow::Result<Vec<RequestEvent>> {
        self.stack.stop().await?;
        let mut events = Vec::new();
        warden_bus::read_to_end(
            &*self.bus,
            &self.config.bus.topics.events,
            Duration::from_secs(5),
            |m| {
                if let Ok(e) = warden_event::decode::<RequestEvent>(&m.payload) {
                    events.push(e);
                }
            },
        )
        .await?;
        Ok(events)
    }
}

// === attack bookkeeping ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Status(u16),
    /// The TLS handshake is refused: no HTTP response at all.
    HandshakeRefused,
}

/// Sends requests one at a time and checks each outcome and the upstream hit count.
pub(crate) struct Log {
    pub(crate) failures: Vec<String>,
    pub(crate) attacks: usize,
    /// Request id → (attack, expected auth method) of refused requests, checked against events.
    pub(crate) refused: HashMap<String, (&'static str, AuthMethod)>,
}

impl Log {
    pub(crate) fn new() -> Self {
        Self {
            failures: Vec::new(),
            attacks: 0,
            refused: HashMap::new(),
        }
    }

    /// An attack: must get `expect` and must not reach the upstream.
    pub(crate) async fn attack(
        &mut self,
        s: &Scenario,
        name: &'static str,
        expect: Expect,
        method: AuthMethod,
        req: reqwest::RequestBuilder,
    ) {
        self.attacks += 1;
        let before = s.hits();
        let got = req.send().await;
        match (&got, expect) {
            (Ok(resp), Expect::Status(code)) if resp.status().as_u16() == code => {
                if let Some(rid) = resp
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                {
                    self.refused.insert(rid.to_string(), (name, method));
                } else {
                    self.failures.push(format!("{name}: no x-request-id"));
                }
            }
            (Err(_), Expect::HandshakeRefused) => {}
            (Ok(resp), _) => self.failures.push(format!(
                "{name}: got status {}, expected {expect:?}",
                resp.status()
            )),
            (Err(e), _) => self
                .failures
                .push(format!("{name}: request failed ({e}), expected {expect:?}")),
        }
        if s.hits() != before {
            self.failures.push(format!("{name}: reached the upstream"));
        }
    }

    /// A legitimate request: must get 200 and reach the upstream once.
    pub(crate) async fn control(
        &mut self,
        s: &Scenario,
        name: &str,
        req: reqwest::RequestBuilder,
    ) -> Option<reqwest::Response> {
        let before = s.hits();
        match req.send().await {
            Ok(resp) if resp.status() == 200 => {
                if s.hits() != before + 1 {
                    self.failures
                        .push(format!("{name}: upstream hits {} → {}", before, s.hits()));
                }
                Some(resp)
            }
            Ok(resp) => {
                self.failures
                    .push(format!("{name}: got {}, expected 200", resp.status()));
                None
            }
            Err(e) => {
                self.failures.push(format!("{name}: request failed: {e}"));
                None
            }
        }
    }
}

/// Poll `probe` until it returns true or `limit` passes (for the background file watcher).
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if probe().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("condition not met within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn status(req: reqwest::RequestBuilder) -> anyhow::Result<u16> {
    Ok(req.send().await?.status().as_u16())
}
