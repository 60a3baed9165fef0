//! Identity attacks against a real gateway over real sockets: TLS and mTLS (client
//! certificates from CAs generated here, CRLs, a fingerprint deny list), bearer JWTs signed
//! with keys generated here (JWKS served over HTTPS by a local server), API keys with validity
//! windows, and the device registry. Every attack asserts its exact outcome (a status, or a
//! refused TLS handshake) and that the protected upstream was not reached; reload tests change
//! files under a running gateway and check the effect without a restart and without failing
//! requests in flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::Router;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use warden::{Stack, StackParts, ensure_topics, make_bus};
use warden_bus::Bus;
use warden_config::WardenConfig;
use warden_event::{AuthMethod, AuthResult, Outcome, RequestEvent};
use warden_gateway::TlsRejection;
use warden_tests::pki::{Ca, Issued, days, replace_file};

const ISSUER: &str = "https://idp.warden.test";
const AUDIENCE: &str = "warden-gateway";
const DEVICE_URI: &str = "urn:warden:device:";

// === the protected upstream ===

/// Counts every request it receives; paths ending in `/slow` answer after 300 ms.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

async fn upstream() -> anyhow::Result<Upstream> {
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

struct JwksServer {
    url: String,
    hits: Arc<AtomicUsize>,
    /// The JWKS document it serves (replace it to rotate keys).
    keys: Arc<Body>,
}

/// The document a test server serves.
#[derive(Default)]
struct Body(std::sync::Mutex<String>);

impl Body {
    fn set(&self, v: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }
    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn jwks_server(ca: &Ca, keys: &[Jwk]) -> anyhow::Result<JwksServer> {
    let leaf = ca.server()?;
    let certs = warden_config::parse_certs(leaf.cert_pem.as_bytes()).map_err(anyhow::Error::msg)?;
    let key =
        <rustls_pki_types::PrivateKeyDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
            leaf.key_pem.as_bytes(),
        )?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
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
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tls),
                    hyper_util::service::TowerToHyperService::new(app),
                )
                .await;
            });
        }
    });
    Ok(JwksServer {
        url: format!("https://127.0.0.1:{}/jwks.json", addr.port()),
        hits,
        keys: body,
    })
}

// === token signers ===

struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: String,
    /// Public key as PEM (what an algorithm-confusion attacker uses as an HMAC secret).
    public_pem: String,
}

impl Signer {
    fn rsa(kid: &str) -> anyhow::Result<Self> {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
        Ok(Self {
            key: EncodingKey::from_rsa_der(key.to_pkcs1_der()?.as_bytes()),
            alg: Algorithm::RS256,
            kid: kid.into(),
            public_pem: key.to_public_key().to_public_key_pem(LineEnding::LF)?,
        })
    }

    fn ec(kid: &str) -> anyhow::Result<Self> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Ok(Self {
            key: EncodingKey::from_ec_der(&kp.serialize_der()),
            alg: Algorithm::ES256,
            kid: kid.into(),
            public_pem: kp.public_key_pem(),
        })
    }

    fn jwk(&self) -> anyhow::Result<Jwk> {
        let mut j = Jwk::from_encoding_key(&self.key, self.alg)?;
        j.common.key_id = Some(self.kid.clone());
        Ok(j)
    }

    fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&h, claims, &self.key)?)
    }
}

fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "exp": now_s() + 600,
        "nbf": now_s() - 5,
        "iat": now_s() - 5,
    })
}

fn claims_with(sub: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims(sub);
    if let Value::Object(m) = &mut c {
        f(m);
    }
    c
}

fn rfc3339(offset_s: i64) -> anyhow::Result<String> {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_s);
    Ok(t.format(&time::format_description::well_known::Rfc3339)?)
}

fn b64url(data: &[u8]) -> String {
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
struct Certs {
    server_ca: Ca,
    device_ca: Ca,
    /// thermo-1: valid, registered for every credential kind.
    good: Issued,
    /// thermo-2: listed in the CRL.
    revoked: Issued,
    /// thermo-3: expired yesterday.
    expired: Issued,
    /// thermo-4: valid from tomorrow.
    future: Issued,
    /// thermo-5: valid, but its fingerprint is denied.
    denied: Issued,
    /// thermo-1 again, but issued by a CA the gateway does not trust.
    rogue: Issued,
    /// disabled-1: valid, but disabled in the registry.
    disabled: Issued,
    /// ghost-1: valid, but not in the registry.
    ghost: Issued,
    /// A valid certificate whose SAN URI lacks the device prefix.
    nameless: Issued,
}

impl Certs {
    fn new() -> anyhow::Result<Self> {
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

const REGISTRY: &str = r#"
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
struct Files {
    dir: tempfile::TempDir,
    server_cert: PathBuf,
    server_key: PathBuf,
    crl: PathBuf,
    deny: PathBuf,
    registry: PathBuf,
}

impl Files {
    fn write(certs: &Certs) -> anyhow::Result<Self> {
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// API keys of the scenario (in clear; the config holds their hashes).
const KEY_THERMO1: &str = "key-thermo1-5f0c2b7e9d4a61c8";
const KEY_OLD: &str = "key-thermo6-old-0a1b2c3d4e5f";
const KEY_CURRENT: &str = "key-thermo6-cur-1b2c3d4e5f6a";
const KEY_NEW: &str = "key-thermo6-new-2c3d4e5f6a7b";
const KEY_FUTURE: &str = "key-thermo6-fut-3d4e5f6a7b8c";
const KEY_DISABLED: &str = "key-disabled1-4e5f6a7b8c9d";

fn config(
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
struct Scenario {
    certs: Certs,
    files: Files,
    up: Upstream,
    idp: JwksServer,
    rsa: Signer,
    ec: Signer,
    bus: Arc<dyn Bus>,
    config: WardenConfig,
    stack: Stack,
    http: SocketAddr,
    https: SocketAddr,
}

impl Scenario {
    async fn start(reload_ms: u64) -> anyhow::Result<Self> {
        Self::start_with(reload_ms, false).await
    }

    async fn start_with(reload_ms: u64, cert_required: bool) -> anyhow::Result<Self> {
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

    fn hits(&self) -> usize {
        self.up.hits.load(Ordering::SeqCst)
    }

    fn identity(&self) -> anyhow::Result<&warden_gateway::IdentityHandle> {
        self.stack.identity.as_ref().context("identity handle")
    }

    /// A TLS client trusting the test server CA, presenting `cert` if given.
    fn tls_client(&self, cert: Option<&Issued>) -> anyhow::Result<reqwest::Client> {
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

    fn plain_client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?)
    }

    fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https.port())
    }

    fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Stop the gateway and return every event it emitted, by request id.
    async fn stop(self) -> anyhow::Result<Vec<RequestEvent>> {
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
enum Expect {
    Status(u16),
    /// The TLS handshake is refused: no HTTP response at all.
    HandshakeRefused,
}

/// Sends requests one at a time and checks each outcome and the upstream hit count.
struct Log {
    failures: Vec<String>,
    attacks: usize,
    /// Request id → (attack, expected auth method) of refused requests, checked against events.
    refused: HashMap<String, (&'static str, AuthMethod)>,
}

impl Log {
    fn new() -> Self {
        Self {
            failures: Vec::new(),
            attacks: 0,
            refused: HashMap::new(),
        }
    }

    /// An attack: must get `expect` and must not reach the upstream.
    async fn attack(
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
    async fn control(
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

// === the attack suite ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_attacks_get_exact_statuses_and_never_reach_the_upstream() -> anyhow::Result<()> {
    let s = Scenario::start(60_000).await?;
    let c = &s.certs;
    let mut log = Log::new();
    let plain = s.plain_client()?;
    let anon_tls = s.tls_client(None)?;
    let good_tls = s.tls_client(Some(&c.good))?;
    let forger = Signer::rsa("rsa-1")?;

    // --- legitimate traffic first: the setup is sound, so refusals below are the attacks' ---
    let resp = log
        .control(
            &s,
            "cert on the mTLS route",
            good_tls.get(s.https("/firmware/v2")),
        )
        .await;
    if let Some(r) = resp {
        ensure!(
            r.version() == reqwest::Version::HTTP_2,
            "h2 by ALPN, got {:?}",
            r.version()
        );
    }
    log.control(
        &s,
        "cert alone on a required route",
        good_tls.get(s.https("/api/t")),
    )
    .await;
    log.control(
        &s,
        "cert plus the same identity's API key",
        good_tls
            .get(s.https("/keys/t"))
            .header("x-api-key", KEY_THERMO1),
    )
    .await;
    log.control(
        &s,
        "anonymous on the open route over TLS",
        anon_tls.get(s.https("/open/x")),
    )
    .await;
    log.control(
        &s,
        "RS256 token",
        plain
            .get(s.http("/tokens/t"))
            .bearer_auth(s.rsa.sign(&claims("user-7"))?),
    )
    .await;
    log.control(
        &s,
        "ES256 token with an audience list",
        plain
            .get(s.http("/api/t"))
            .bearer_auth(s.ec.sign(&claims_with("thermo-1", |m| {
                m.insert("aud".into(), json!(["someone-else", AUDIENCE]));
            }))?),
    )
    .await;
    log.control(
        &s,
        "current key during rotation",
        plain
            .get(s.http("/keys/t"))
            .header("x-api-key", KEY_CURRENT),
    )
    .await;
    log.control(
        &s,
        "new key during rotation",
        plain
            .get(s.http("/keys/t"))
            .header("authorization", format!("ApiKey {KEY_NEW}")),
    )
    .await;

    // --- client certificates: refused at the handshake ---
    let cases: [(&'static str, &Issued, TlsRejection); 5] = [
        (
            "certificate from an untrusted CA",
            &c.rogue,
            TlsRejection::UnknownIssuer,
        ),
        ("expired certificate", &c.expired, TlsRejection::Expired),
        (
            "not-yet-valid certificate",
            &c.future,
            TlsRejection::NotYetValid,
        ),
        (
            "certificate revoked by CRL",
            &c.revoked,
            TlsRejection::Revoked,
        ),
        (
            "denied certificate fingerprint",
            &c.denied,
            TlsRejection::Denied,
        ),
    ];
    for (name, cert, _) in &cases {
        let client = s.tls_client(Some(cert))?;
        log.attack(
            &s,
            name,
            Expect::HandshakeRefused,
            AuthMethod::ClientCert,
            client.get(s.https("/api/t")),
        )
        .await;
    }
    // The server counts a refusal just after the client sees the alert.
    let stats = s.identity()?.tls_stats().context("tls stats")?;
    let counted = eventually(Duration::from_secs(2), || {
        let stats = stats.clone();
        let cases = &cases;
        async move { Ok(cases.iter().all(|(_, _, r)| stats.rejected(*r) == 1)) }
    })
    .await;
    if counted.is_err() {
        for (name, _, reason) in &cases {
            log.failures.push(format!(
                "{name}: {reason:?} counted {} times",
                stats.rejected(*reason)
            ));
        }
    }

    // --- client certificates: refused per request ---
    let attacks: Vec<(&'static str, u16, AuthMethod, reqwest::RequestBuilder)> = vec![
        (
            "no certificate on an mTLS route (TLS)",
            401,
            AuthMethod::ClientCert,
            anon_tls.get(s.https("/firmware/v2")),
        ),
        (
            "no certificate on an mTLS route (plain HTTP)",
            401,
            AuthMethod::ClientCert,
            plain.get(s.http("/firmware/v2")),
        ),
        (
            "API key instead of a certificate on an mTLS route",
            401,
            AuthMethod::ClientCert,
            anon_tls
                .get(s.https("/firmware/v2"))
                .header("x-api-key", KEY_THERMO1),
        ),
        (
            "certificate with another identity's API key",
            401,
            AuthMethod::ApiKey,
            good_tls
                .get(s.https("/api/t"))
                .header("x-api-key", KEY_CURRENT),
        ),
        (
            "certificate with another identity's token",
            401,
            AuthMethod::Jwt,
            good_tls
                .get(s.https("/api/t"))
                .bearer_auth(s.rsa.sign(&claims("user-7"))?),
        ),
        (
            "certificate without the API key an api_key route needs",
            401,
            AuthMethod::ApiKey,
            good_tls.get(s.https("/keys/t")),
        ),
        (
            "certificate of a disabled identity",
            401,
            AuthMethod::ClientCert,
            s.tls_client(Some(&c.disabled))?.get(s.https("/api/t")),
        ),
        (
            "certificate of an unregistered identity",
            401,
            AuthMethod::ClientCert,
            s.tls_client(Some(&c.ghost))?.get(s.https("/api/t")),
        ),
        (
            "certificate without the identity prefix",
            401,
            AuthMethod::ClientCert,
            s.tls_client(Some(&c.nameless))?.get(s.https("/api/t")),
        ),
    ];
    for (name, code, m, req) in attacks {
        log.attack(&s, name, Expect::Status(code), m, req).await;
    }

    // --- bearer tokens ---
    let hs_secret = EncodingKey::from_secret(b"an attacker's idea of a good HS256 secret");
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa-1".into());
    let confusion_rsa = jsonwebtoken::encode(
        &hs,
        &claims("user-7"),
        &EncodingKey::from_secret(s.rsa.public_pem.as_bytes()),
    )?;
    let mut hs_ec = Header::new(Algorithm::HS256);
    hs_ec.kid = Some("ec-1".into());
    let confusion_ec = jsonwebtoken::encode(
        &hs_ec,
        &claims("user-7"),
        &EncodingKey::from_secret(s.ec.public_pem.as_bytes()),
    )?;
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
        b64url(claims("user-7").to_string().as_bytes())
    );
    let none_upper = format!(
        "{}.{}.",
        b64url(br#"{"alg":"None","typ":"JWT"}"#),
        b64url(claims("user-7").to_string().as_bytes())
    );
    let stranger = Signer::ec("not-published")?;
    let token_attacks: Vec<(&'static str, String, &'static str)> = vec![
        (
            "forged signature (another key, same kid)",
            forger.sign(&claims("user-7"))?,
            "/tokens/t",
        ),
        (
            "signature of another token spliced in",
            {
                let good = s.rsa.sign(&claims("user-7"))?;
                let evil = s.rsa.sign(&claims("thermo-1"))?;
                let (head_payload, _) = evil.rsplit_once('.').context("jws")?;
                let (_, sig) = good.rsplit_once('.').context("jws")?;
                format!("{head_payload}.{sig}")
            },
            "/tokens/t",
        ),
        (
            "expired token",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("exp".into(), json!(now_s() - 60));
            }))?,
            "/tokens/t",
        ),
        (
            "not-yet-valid token",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("nbf".into(), json!(now_s() + 600));
            }))?,
            "/tokens/t",
        ),
        (
            "wrong audience",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("aud".into(), json!("some-other-api"));
            }))?,
            "/tokens/t",
        ),
        (
            "wrong issuer",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("iss".into(), json!("https://evil.example"));
            }))?,
            "/tokens/t",
        ),
        (
            "no expiry",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.remove("exp");
            }))?,
            "/tokens/t",
        ),
        (
            "string exp (type confusion)",
            s.rsa.sign(&claims_with("user-7", |m| {
                m.insert("exp".into(), json!("9999999999"));
            }))?,
            "/tokens/t",
        ),
        ("alg=none", none, "/tokens/t"),
        ("alg=None", none_upper, "/tokens/t"),
        (
            "HS256 keyed with the RSA public key (algorithm confusion)",
            confusion_rsa,
            "/tokens/t",
        ),
        (
            "HS256 keyed with the EC public key (algorithm confusion)",
            confusion_ec,
            "/tokens/t",
        ),
        (
            "HS256 when it is not enabled",
            {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some("any".into());
                jsonwebtoken::encode(&h, &claims("user-7"), &hs_secret)?
            },
            "/tokens/t",
        ),
        (
            "unknown kid",
            stranger.sign(&claims("user-7"))?,
            "/tokens/t",
        ),
        ("garbage token", "not-a-jwt".into(), "/tokens/t"),
        (
            "three segments of garbage",
            "eyJhbGciOi.eyJzdWIi.AAAA".into(),
            "/tokens/t",
        ),
        (
            "oversize token",
            format!(
                "{}.{}.{}",
                "a".repeat(3000),
                "b".repeat(3000),
                "c".repeat(3000)
            ),
            "/tokens/t",
        ),
        (
            "token of a disabled identity",
            s.rsa.sign(&claims("disabled-1"))?,
            "/tokens/t",
        ),
        (
            "token for an identity allowed only API keys",
            s.rsa.sign(&claims("thermo-6"))?,
            "/tokens/t",
        ),
        (
            "token of an unregistered identity",
            s.rsa.sign(&claims("ghost-1"))?,
            "/api/t",
        ),
        (
            "token on an API-key-only route",
            s.rsa.sign(&claims("thermo-1"))?,
            "/keys/t",
        ),
        (
            "anonymous subject claim",
            s.rsa.sign(&claims("anonymous"))?,
            "/api/t",
        ),
    ];
    for (name, token, path) in token_attacks {
        log.attack(
            &s,
            name,
            Expect::Status(401),
            AuthMethod::Jwt,
            plain.get(s.http(path)).bearer_auth(token),
        )
        .await;
    }

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
        log.attack(&s, name, Expect::Status(401), m, req).await;
    }

    let attacks = log.attacks;
    let refused = log.refused.clone();
    let failures = std::mem::take(&mut log.failures);
    let tls_rejections: Vec<(String, TlsRejection)> = cases
        .iter()
        .map(|(_, cert, r)| (cert.fingerprint(), *r))
        .collect();
    let good_fp = c.good.fingerprint();
    let events = s.stop().await?;
    ensure!(
        failures.is_empty(),
        "{} of {attacks} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    ensure!(attacks >= 45, "only {attacks} attacks");

    // Every refused request left a denied_auth event with the method that was tried.
    let by_id: HashMap<&str, &RequestEvent> = events.iter().map(|e| (e.id.as_str(), e)).collect();
    for (rid, (name, method)) in &refused {
        let e = by_id
            .get(rid.as_str())
            .with_context(|| format!("{name}: no event"))?;
        ensure!(
            e.decision == Outcome::DeniedAuth && e.status == 401,
            "{name}: {e:?}"
        );
        ensure!(
            e.auth.method == *method && e.auth.result != AuthResult::Ok,
            "{name}: {:?}",
            e.auth
        );
        ensure!(
            e.identity == warden_event::ANONYMOUS,
            "{name}: refused request attributed to {}",
            e.identity
        );
    }
    // Each refused handshake left an event with the certificate's fingerprint and no identity.
    for (fp, reason) in &tls_rejections {
        let n = events
            .iter()
            .filter(|e| {
                e.route == "tls_handshake"
                    && e.tls
                        .as_ref()
                        .and_then(|t| t.client_cert_fingerprint.as_deref())
                        == Some(fp)
            })
            .count();
        ensure!(n == 1, "{reason:?}: {n} handshake events");
    }
    ensure!(
        events
            .iter()
            .filter(|e| e.route == "tls_handshake")
            .all(|e| e.identity == warden_event::ANONYMOUS
                && e.decision == Outcome::DeniedAuth
                && e.auth.method == AuthMethod::ClientCert),
        "handshake events must be anonymous denied_auth client_cert events"
    );
    // Accepted TLS requests carry the TLS version and the certificate fingerprint.
    let tls_ok = events
        .iter()
        .find(|e| e.route == "firmware" && e.status == 200)
        .context("firmware event")?;
    ensure!(
        tls_ok.identity == "thermo-1" && tls_ok.tenant == "acme",
        "{tls_ok:?}"
    );
    ensure!(tls_ok.auth.method == AuthMethod::ClientCert, "{tls_ok:?}");
    let t = tls_ok.tls.as_ref().context("tls info")?;
    ensure!(
        t.version == "TLSv1.3" && t.client_cert_fingerprint.as_deref() == Some(good_fp.as_str()),
        "{t:?}"
    );
    println!("{attacks} identity attacks refused as expected");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_requires_certificates_refuses_handshakes_without_one() -> anyhow::Result<()>
{
    let s = Scenario::start_with(60_000, true).await?;
    let anonymous = s.tls_client(None)?;
    ensure!(
        anonymous.get(s.https("/open/x")).send().await.is_err(),
        "no certificate, no handshake"
    );
    let good = s.tls_client(Some(&s.certs.good))?;
    ensure!(status(good.get(s.https("/open/x"))).await? == 200);
    let stats = s.identity()?.tls_stats().context("tls stats")?;
    eventually(Duration::from_secs(2), || {
        let stats = stats.clone();
        async move { Ok(stats.rejected(TlsRejection::MissingCertificate) == 1) }
    })
    .await?;
    ensure!(s.hits() == 1);
    let events = s.stop().await?;
    let missing: Vec<_> = events
        .iter()
        .filter(|e| e.route == "tls_handshake")
        .collect();
    ensure!(missing.len() == 1, "{missing:?}");
    ensure!(
        missing[0].auth.result == AuthResult::Missing
            && missing[0]
                .tls
                .as_ref()
                .is_some_and(|t| t.client_cert_fingerprint.is_none()),
        "{:?}",
        missing[0]
    );
    Ok(())
}

// === reloads ===

/// Poll `probe` until it returns true or `limit` passes (for the background file watcher).
async fn eventually<F, Fut>(limit: Duration, mut probe: F) -> anyhow::Result<()>
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

async fn status(req: reqwest::RequestBuilder) -> anyhow::Result<u16> {
    Ok(req.send().await?.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_and_deny_list_changes_reach_open_connections_and_new_handshakes() -> anyhow::Result<()>
{
    let s = Scenario::start(60_000).await?;
    let good = s.tls_client(Some(&s.certs.good))?;
    ensure!(status(good.get(s.https("/firmware/a"))).await? == 200);

    // Revoke thermo-1 (serial 1) alongside thermo-2: the open h2 connection's next request is
    // refused, and a new connection is refused at the handshake.
    replace_file(&s.files.crl, s.certs.device_ca.crl(&[1, 2], 2)?.as_bytes())?;
    let report = s.identity()?.reload_now().await;
    ensure!(report.reloaded == vec!["tls"], "{report:?}");
    ensure!(
        status(good.get(s.https("/firmware/a"))).await? == 401,
        "open connection"
    );
    let fresh = s.tls_client(Some(&s.certs.good))?;
    ensure!(
        fresh.get(s.https("/firmware/a")).send().await.is_err(),
        "new handshake"
    );

    // A CRL that does not parse is refused as a whole: the previous one stays in force.
    replace_file(
        &s.files.crl,
        b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )?;
    let report = s.identity()?.reload_now().await;
    ensure!(
        report.failed.len() == 1 && report.failed[0].0 == "tls",
        "{report:?}"
    );
    ensure!(status(good.get(s.https("/firmware/a"))).await? == 401);

    // Un-revoke: a new connection works again.
    replace_file(&s.files.crl, s.certs.device_ca.crl(&[2], 3)?.as_bytes())?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["tls"]);
    let again = s.tls_client(Some(&s.certs.good))?;
    ensure!(status(again.get(s.https("/firmware/a"))).await? == 200);

    // Deny thermo-1's fingerprint: its open connection is refused on the next request.
    replace_file(
        &s.files.deny,
        format!(
            "{}\n{}\n",
            s.certs.denied.fingerprint(),
            s.certs.good.fingerprint()
        )
        .as_bytes(),
    )?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["deny_fingerprints"]);
    ensure!(status(again.get(s.https("/firmware/a"))).await? == 401);
    let hits = s.hits();
    s.stop().await?;
    ensure!(
        hits == 2,
        "upstream reached {hits} times, expected the 2 accepted requests"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_watcher_picks_up_changes_without_a_call() -> anyhow::Result<()> {
    let s = Scenario::start(100).await?;
    let plain = s.plain_client()?;
    let token = s.rsa.sign(&claims("user-7"))?;
    ensure!(status(plain.get(s.http("/tokens/t")).bearer_auth(&token)).await? == 200);
    replace_file(
        &s.files.registry,
        REGISTRY
            .replace(
                "roles = [\"operator\"]",
                "roles = [\"operator\"]\nstatus = \"disabled\"",
            )
            .as_bytes(),
    )?;
    eventually(Duration::from_secs(5), || async {
        Ok(status(plain.get(s.http("/tokens/t")).bearer_auth(&token)).await? == 401)
    })
    .await
    .context("registry change not picked up")?;
    s.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_reload_applies_and_a_bad_registry_is_refused_whole() -> anyhow::Result<()> {
    let s = Scenario::start(60_000).await?;
    let plain = s.plain_client()?;
    let req = || plain.get(s.http("/keys/t")).header("x-api-key", KEY_NEW);
    ensure!(status(req()).await? == 200);

    // Disable thermo-6.
    let disabled = REGISTRY.replace(
        "id = \"thermo-6\"\ntenant = \"acme\"",
        "id = \"thermo-6\"\ntenant = \"acme\"\nstatus = \"disabled\"",
    );
    ensure!(disabled != REGISTRY);
    replace_file(&s.files.registry, disabled.as_bytes())?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["registry"]);
    ensure!(status(req()).await? == 401);

    // An invalid registry (unknown key, duplicate id, bad method) is refused with every
    // problem; the disabled state stays.
    let bad = format!(
        "{disabled}\n[[identity]]\nid = \"thermo-1\"\nauth_methods = [\"password\"]\ncolour = \"red\"\n"
    );
    replace_file(&s.files.registry, bad.as_bytes())?;
    let report = s.identity()?.reload_now().await;
    ensure!(report.failed.len() == 1, "{report:?}");
    ensure!(
        report.failed[0].1.len() >= 2,
        "every problem listed: {report:?}"
    );
    ensure!(status(req()).await? == 401);
    ensure!(s.identity()?.registry_len() == Some(8));

    // Re-enable; only API keys are allowed for thermo-6, so a token for it stays refused.
    replace_file(&s.files.registry, REGISTRY.as_bytes())?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["registry"]);
    ensure!(status(req()).await? == 200);
    ensure!(
        status(
            plain
                .get(s.http("/api/t"))
                .bearer_auth(s.rsa.sign(&claims("thermo-6"))?)
        )
        .await?
            == 401
    );
    s.stop().await?;
    Ok(())
}

/// SHA-256 of the certificate a TLS server presents.
async fn served_fingerprint(s: &Scenario) -> anyhow::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in warden_config::parse_certs(s.certs.server_ca.cert_pem.as_bytes())
        .map_err(anyhow::Error::msg)?
    {
        roots.add(c)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.https).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1")?.to_owned(),
            tcp,
        )
        .await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no certificate")?;
    Ok(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        leaf.as_ref(),
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_reload_keeps_open_connections_and_refuses_a_mismatched_key()
-> anyhow::Result<()> {
    let s = Scenario::start(60_000).await?;
    let good = s.tls_client(Some(&s.certs.good))?;
    ensure!(status(good.get(s.https("/api/a"))).await? == 200);
    let before = served_fingerprint(&s).await?;

    let next = s.certs.server_ca.server()?;
    replace_file(&s.files.server_key, next.key_pem.as_bytes())?;
    replace_file(&s.files.server_cert, next.cert_pem.as_bytes())?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["tls"]);
    let after = served_fingerprint(&s).await?;
    ensure!(
        after == hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&next.der)),
        "new certificate served"
    );
    ensure!(after != before);
    // The connection opened before the reload still works.
    ensure!(status(good.get(s.https("/api/b"))).await? == 200);

    // A certificate whose key does not match is refused; the current pair stays.
    let other = s.certs.server_ca.server()?;
    replace_file(&s.files.server_cert, other.cert_pem.as_bytes())?;
    let report = s.identity()?.reload_now().await;
    ensure!(report.failed.len() == 1, "{report:?}");
    ensure!(served_fingerprint(&s).await? == after);
    s.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_while_requests_are_in_flight_fail_none_of_them() -> anyhow::Result<()> {
    let s = Arc::new(Scenario::start(60_000).await?);
    let good = s.tls_client(Some(&s.certs.good))?;
    let plain = s.plain_client()?;
    let token = s.rsa.sign(&claims("thermo-1"))?;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let req = match i % 3 {
            0 => good.get(s.https("/firmware/slow")),
            1 => plain.get(s.http("/api/slow")).bearer_auth(&token),
            _ => plain.get(s.http("/keys/slow")).header("x-api-key", KEY_NEW),
        };
        tasks.push(tokio::spawn(async move {
            req.send().await.map(|r| r.status().as_u16())
        }));
    }
    // While they wait on the slow upstream: swap the server certificate, the CRL, the deny
    // list and the registry (all still admitting these identities).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = s.certs.server_ca.server()?;
    replace_file(&s.files.server_key, next.key_pem.as_bytes())?;
    replace_file(&s.files.server_cert, next.cert_pem.as_bytes())?;
    replace_file(&s.files.crl, s.certs.device_ca.crl(&[2, 3], 5)?.as_bytes())?;
    replace_file(
        &s.files.deny,
        format!("{}\n", s.certs.denied.fingerprint()).as_bytes(),
    )?;
    replace_file(
        &s.files.registry,
        format!("{REGISTRY}\n# touched\n").as_bytes(),
    )?;
    let report = s.identity()?.reload_now().await;
    ensure!(
        report.failed.is_empty() && report.reloaded.len() == 3,
        "{report:?}"
    );
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(
            t.await?
                .map_err(|e| anyhow::anyhow!("in-flight request failed: {e}"))?,
        );
    }
    ensure!(codes.iter().all(|c| *c == 200), "{codes:?}");
    // And new requests after the reload still pass.
    ensure!(status(good.get(s.https("/firmware/x"))).await? == 200);
    let s = Arc::into_inner(s).context("scenario still shared")?;
    s.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_is_picked_up_and_unknown_kids_cannot_flood_the_idp() -> anyhow::Result<()> {
    let s = Scenario::start(60_000).await?;
    let plain = s.plain_client()?;
    let start_fetches = s.idp.hits.load(Ordering::SeqCst);
    ensure!(
        start_fetches == 1,
        "one fetch at start, got {start_fetches}"
    );

    // The IdP publishes a new key and signs with it: the first token with the new kid makes
    // the gateway refetch, and it is accepted.
    let rotated = Signer::rsa("rsa-2")?;
    s.idp.keys.set(serde_json::to_string(&JwkSet {
        keys: vec![s.rsa.jwk()?, s.ec.jwk()?, rotated.jwk()?],
    })?);
    ensure!(
        status(
            plain
                .get(s.http("/tokens/t"))
                .bearer_auth(rotated.sign(&claims("user-7"))?)
        )
        .await?
            == 200
    );
    ensure!(s.idp.hits.load(Ordering::SeqCst) == 2);

    // Made-up kids: all refused, and no more fetches within jwks_min_refetch_ms.
    for i in 0..20 {
        let fake = Signer::ec(&format!("made-up-{i}"))?;
        ensure!(
            status(
                plain
                    .get(s.http("/tokens/t"))
                    .bearer_auth(fake.sign(&claims("user-7"))?)
            )
            .await?
                == 401
        );
    }
    ensure!(
        s.idp.hits.load(Ordering::SeqCst) == 2,
        "refetches were not rate-limited"
    );
    ensure!(s.identity()?.jwks_fetches() == 2);

    // A scheduled refresh that removes the old key retires its tokens.
    s.idp.keys.set(serde_json::to_string(&JwkSet {
        keys: vec![rotated.jwk()?],
    })?);
    s.identity()?
        .refresh_jwks()
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(
        status(
            plain
                .get(s.http("/tokens/t"))
                .bearer_auth(s.rsa.sign(&claims("user-7"))?)
        )
        .await?
            == 401
    );
    ensure!(
        status(
            plain
                .get(s.http("/tokens/t"))
                .bearer_auth(rotated.sign(&claims("user-7"))?)
        )
        .await?
            == 200
    );
    s.stop().await?;
    Ok(())
}

#[test]
fn files_referenced_by_the_config_are_checked() -> anyhow::Result<()> {
    let certs = Certs::new()?;
    let files = Files::write(&certs)?;
    std::fs::remove_file(&files.crl)?;
    std::fs::write(&files.registry, "[[identity]]\nid = \"x\"\n")?;
    let errs = config(
        &files,
        "127.0.0.1:9".parse()?,
        "https://127.0.0.1:9/jwks.json",
        1000,
        false,
    )
    .err()
    .context("must fail")?;
    let text = errs.to_string();
    ensure!(
        text.contains("gateway.tls.client_auth.crl_files[0]"),
        "{text}"
    );
    ensure!(text.contains("identity.registry.file"), "{text}");
    let _unused: &Path = files.dir.path();
    Ok(())
}
