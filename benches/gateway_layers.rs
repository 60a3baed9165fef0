//! Criterion benches of the gateway's request path.
//!
//! `full_stack/*` drive the real router in-process (every phase: request id, shedding,
//! header limits, path normalisation, route, API-key identity, quarantine lookup among 100k
//! live quarantines, three rate limits, RBAC with owner scoping, content-type and JSON Schema
//! validation, event emission to the embedded bus), and for `allowed` the proxy to a backend on
//! loopback; `direct_backend` is that same backend call without the gateway. The other groups
//! time one layer each; `quarantine` also with a writer thread applying decisions at full
//! speed, to show lookups do not stall behind updates.
//!
//! `identity/*` time the identity path: the same request (dev-1 reading dev-2's config, so
//! identity, quarantine among 100k, three rate limits and RBAC run, and RBAC answers 403 with
//! an event, without a proxy hop) authenticated by an API key, by bearer JWTs (RS256, ES256,
//! EdDSA; JWKS from a file), and by a client certificate over a real TLS socket on loopback —
//! a new connection per request (TCP + TLS 1.3 handshake with the client certificate + one
//! request) and a request on an open connection. The keys, tokens and certificates are fixed
//! test fixtures (see [`fixtures`]; they expire in 2099/2100), because the benches crate does not
//! depend on rcgen or a JWT signer.

// The allocator the `warden` binary runs on (crates/warden/src/main.rs), so the figures are
// what ships; `--features system-alloc` measures the same on glibc's.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "gateway_setup.rs"]
mod setup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use warden_config::{PathCase, PathsConfig, RbacPolicy, WardenConfig, hash_api_key};
use warden_event::SubjectKind;
use warden_gateway::QuarantineSet;
use warden_gateway::path::normalise;
use warden_gateway::ratelimit::{LimitKey, ManualClock, RateLimits};
use warden_gateway::rbac::{Caller, Policy};
use warden_gateway::reexport::{rustls, rustls_pki_types, tokio_rustls};

fn request(path: &str, body: &'static str) -> Request<Body> {
    let mut req = Request::builder()
        .header("host", "gw")
        .method(Method::POST)
        .uri(path)
        .header("x-api-key", setup::KEY)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body))
        .expect("request");
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn full_stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (router, backend) = rt.block_on(async {
        let backend = setup::backend("127.0.0.1:0".parse().expect("addr")).await;
        let config = setup::config("127.0.0.1:0".parse().expect("addr"), backend, dir.path());
        let gw = setup::gateway(&config, 100_000).await;
        (gw.router(), backend)
    });
    let mut g = c.benchmark_group("full_stack");
    g.throughput(Throughput::Elements(1));
    for (name, path, body, want) in [
        ("allowed", setup::PATH, setup::BODY, 200),
        (
            "denied_rbac",
            "/api/devices/dev-2/telemetry",
            setup::BODY,
            403,
        ),
        ("schema_invalid", setup::PATH, r#"{"t":"hot"}"#, 400),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || request(path, body),
                |req| {
                    let router = router.clone();
                    async move {
                        let resp = router.oneshot(req).await.expect("infallible");
                        assert_eq!(resp.status(), want);
                        // Finish the body: that is when the event is emitted.
                        axum::body::to_bytes(resp.into_body(), 1 << 16)
                            .await
                            .expect("body")
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    let client = hyper_client();
    g.bench_function("direct_backend", |b| {
        b.to_async(&rt).iter_batched(
            || {
                Request::builder()
                    .header("host", "gw")
                    .method(Method::POST)
                    .uri(format!("http://{backend}{}", setup::PATH))
                    .header("content-type", "application/json")
                    .body(Body::from(setup::BODY))
                    .expect("request")
            },
            |req| {
                let client = client.clone();
                async move {
                    let resp = client.request(req).await.expect("backend");
                    axum::body::to_bytes(Body::new(resp.into_body()), 1 << 16)
                        .await
                        .expect("body")
                }
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// The layers' own cost, without cross-thread wake-ups or sockets: the gateway's router and a
/// reference router (the same axum machinery, a handler that answers 403 at once) driven on
/// one current-thread runtime, each request's body read to its end (the event is emitted
/// then). `layers_vs_plain/gateway_denied_rbac − plain_router_403` is what the phases up to
/// RBAC, the 403 and the event cost; `gateway_schema_checked_403` adds reading and
/// validating the JSON body (the request is refused by RBAC after validation would run — see
/// `gateway_schema_invalid` for the schema's own refusal).
fn layers_vs_plain(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let router = rt.block_on(async {
        // No request reaches the backend in these benches.
        let config = setup::config(
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.1:1".parse().expect("addr"),
            dir.path(),
        );
        setup::gateway(&config, 100_000).await.router()
    });
    let plain = axum::Router::new().fallback(|| async { axum::http::StatusCode::FORBIDDEN });
    let mut g = c.benchmark_group("layers_vs_plain");
    g.throughput(Throughput::Elements(1));
    for (name, app, path, body, want) in [
        ("plain_router_403", plain, setup::PATH, setup::BODY, 403),
        (
            "gateway_denied_rbac",
            router.clone(),
            "/api/devices/dev-2/telemetry",
            setup::BODY,
            403,
        ),
        (
            "gateway_schema_invalid",
            router,
            setup::PATH,
            r#"{"t":"hot"}"#,
            400,
        ),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || request(path, body),
                |req| {
                    let app = app.clone();
                    async move {
                        let resp = app.oneshot(req).await.expect("infallible");
                        assert_eq!(resp.status(), want);
                        axum::body::to_bytes(resp.into_body(), 1 << 16)
                            .await
                            .expect("body")
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

type Client =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

fn hyper_client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// dev-1 reading dev-2's config: every layer up to RBAC runs, RBAC refuses (403). A GET without
/// a body, so the connection stays open after the refusal (an unread request body closes it).
const DENIED_PATH: &str = "/api/devices/dev-2/config";

/// The full-stack config with every credential kind on the `devices` route: API keys, bearer
/// JWTs (JWKS file), and client certificates on a TLS listener. Files are written to `dir`.
fn identity_config(backend: SocketAddr, dir: &std::path::Path) -> WardenConfig {
    // Writes the policy and the schema to `dir`.
    let _ = setup::config("127.0.0.1:0".parse().expect("addr"), backend, dir);
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write fixture");
        p.display().to_string()
    };
    let text = format!(
        r#"
[gateway]
id = "gw-bench-identity"
listen = "127.0.0.1:0"
event_queue = 262144

[gateway.tls]
listen = "127.0.0.1:0"
cert_file = "{server_cert}"
key_file = "{server_key}"
min_version = "1.3"
[gateway.tls.client_auth]
ca_files = ["{ca}"]
identity_field = "san_uri"
identity_prefix = "urn:warden:device:"

[identity.jwt]
issuer = "https://idp.bench.test"
audiences = ["warden-bench"]
algorithms = ["RS256", "ES256", "EdDSA"]
jwks_file = "{jwks}"

[rbac]
policy = "{policy}"
reload_interval_ms = 0

[limits]
max_keys = 131072
[limits.identity]
rate_per_s = 1000000000.0
burst = 1000000000
[limits.identity_route]
rate_per_s = 1000000000.0
burst = 1000000000
[limits.tenant]
rate_per_s = 1000000000.0
burst = 1000000000

[validation.routes.devices]
max_body_bytes = 4096
content_types = ["application/json"]
json_schema = "{schema}"

[[routes]]
name = "devices"
prefix = "/api/devices"
upstream = "http://{backend}"

[[api_keys]]
id = "k-dev-1"
sha256 = "{sha}"
identity = "dev-1"
tenant = "acme"
device_type = "temperature_sensor"
"#,
        server_cert = file("server.pem", fixtures::SERVER_CERT_PEM),
        server_key = file("server.key", fixtures::SERVER_KEY_PEM),
        ca = file("ca.pem", fixtures::CA_PEM),
        jwks = file("jwks.json", fixtures::JWKS),
        policy = dir.join("rbac.toml").display(),
        schema = dir.join("telemetry.schema.json").display(),
        sha = hash_api_key(setup::KEY),
    );
    WardenConfig::from_toml(&text).unwrap_or_else(|e| panic!("identity bench config: {e}"))
}

/// A rustls client presenting the device certificate, trusting the bench CA, HTTP/1.1.
fn mtls_connector() -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(fixtures::CA_PEM.as_bytes()) {
        roots.add(c.expect("CA pem")).expect("CA");
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(fixtures::DEVICE_CERT_PEM.as_bytes())
            .map(|c| c.expect("device pem"))
            .collect();
    let key = PrivateKeyDer::from_pem_slice(fixtures::DEVICE_KEY_PEM.as_bytes()).expect("key");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The bench request as HTTP/1.1 bytes.
fn raw_request(close: bool) -> Vec<u8> {
    format!(
        "GET {DENIED_PATH} HTTP/1.1\r\nHost: bench\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" },
    )
    .into_bytes()
}

/// Read one HTTP/1.1 response (Content-Length or chunked) and return its status.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> u16 {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().expect("status");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().expect("length"));
    match length {
        Some(len) => {
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed in the body");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            while !buf[head_end..].ends_with(b"0\r\n\r\n") {
                let n = s.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed in the body");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    status
}

fn identity(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (router, tls_addr) = rt.block_on(async {
        let backend = setup::backend("127.0.0.1:0".parse().expect("addr")).await;
        let config = identity_config(backend, dir.path());
        let gw = setup::gateway(&config, 100_000).await;
        let router = gw.router();
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let tls = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tls");
        let tls_addr = tls.local_addr().expect("tls addr");
        tokio::spawn(gw.serve_with_tls(plain, Some(tls), std::future::pending()));
        (router, tls_addr)
    });
    let mut g = c.benchmark_group("identity");
    g.throughput(Throughput::Elements(1));
    for (name, header, value) in [
        ("api_key", "x-api-key", setup::KEY.to_string()),
        (
            "jwt_rs256",
            "authorization",
            format!("Bearer {}", fixtures::TOKEN_RS256),
        ),
        (
            "jwt_es256",
            "authorization",
            format!("Bearer {}", fixtures::TOKEN_ES256),
        ),
        (
            "jwt_eddsa",
            "authorization",
            format!("Bearer {}", fixtures::TOKEN_EDDSA),
        ),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || {
                    let mut req = Request::builder()
                        .header("host", "gw")
                        .method(Method::GET)
                        .uri(DENIED_PATH)
                        .header(header, value.as_str())
                        .body(Body::empty())
                        .expect("request");
                    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                },
                |req| {
                    let router = router.clone();
                    async move {
                        let resp = router.oneshot(req).await.expect("infallible");
                        // 403 from RBAC: the credential was accepted (401 otherwise).
                        assert_eq!(resp.status(), 403);
                        axum::body::to_bytes(resp.into_body(), 1 << 16)
                            .await
                            .expect("body")
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }

    let connector = mtls_connector();
    let server_name = rustls_pki_types::ServerName::try_from("127.0.0.1")
        .expect("name")
        .to_owned();
    let close = raw_request(true);
    g.bench_function("mtls_handshake_and_request", |b| {
        b.to_async(&rt).iter(|| {
            let (connector, server_name, close) =
                (connector.clone(), server_name.clone(), close.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(tls_addr)
                    .await
                    .expect("connect");
                tcp.set_nodelay(true).expect("nodelay");
                let mut tls = connector
                    .connect(server_name, tcp)
                    .await
                    .expect("handshake");
                tls.write_all(&close).await.expect("write");
                let mut buf = Vec::with_capacity(1024);
                assert_eq!(read_response(&mut tls, &mut buf).await, 403);
            }
        });
    });
    let keep = raw_request(false);
    let open = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(tls_addr)
            .await
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let tls = connector
            .connect(server_name.clone(), tcp)
            .await
            .expect("handshake");
        Arc::new(tokio::sync::Mutex::new((tls, Vec::with_capacity(1024))))
    });
    g.bench_function("mtls_request_on_open_connection", |b| {
        b.to_async(&rt).iter(|| {
            let (open, keep) = (open.clone(), keep.clone());
            async move {
                let mut guard = open.lock().await;
                let (tls, buf) = &mut *guard;
                tls.write_all(&keep).await.expect("write");
                assert_eq!(read_response(tls, buf).await, 403);
            }
        });
    });
    g.finish();
}

fn layers(c: &mut Criterion) {
    let mut g = c.benchmark_group("layer");
    g.throughput(Throughput::Elements(1));
    let paths = PathsConfig {
        case: PathCase::Sensitive,
        allow_semicolons: false,
    };
    g.bench_function("path_normalise", |b| {
        b.iter(|| normalise(std::hint::black_box("/api/devices/dev-1/telemetry"), &paths))
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup::config(
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:1".parse().expect("addr"),
        dir.path(),
    );
    let policy_text = std::fs::read_to_string(dir.path().join("rbac.toml")).expect("policy file");
    let policy = Policy::compile(
        &RbacPolicy::from_toml(&policy_text).expect("policy"),
        PathCase::Sensitive,
    );
    let path = normalise(setup::PATH, &paths).expect("path");
    let caller = Caller {
        identity: Some("dev-1"),
        tenant: "acme",
        device_type: "temperature_sensor",
        roles: &[],
    };
    g.bench_function("rbac_evaluate", |b| {
        b.iter(|| policy.evaluate(&caller, &Method::POST, &path).allowed())
    });

    let clock = Arc::new(ManualClock::default());
    let limits = RateLimits::new(&config.limits, clock.clone());
    let ids: Vec<String> = (0..10_000).map(|i| format!("dev-{i}")).collect();
    let mut i = 0usize;
    g.bench_function("json_body_parse_unique_keys", |b| {
        b.iter(|| {
            warden_gateway::validate::unique_keys(std::hint::black_box(setup::BODY.as_bytes()))
        })
    });

    let event = bench_event();
    for (name, format) in [
        ("event_encode_compact", warden_event::EventFormat::Compact),
        ("event_encode_json", warden_event::EventFormat::Json),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| warden_event::encode_event(std::hint::black_box(&event), format))
        });
    }
    g.bench_function("request_id", |b| b.iter(warden_gateway::request_id));

    g.bench_function("rate_limit_3_limits_10k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            clock.set(i as u64 * 1_000);
            limits
                .check(&LimitKey {
                    identity: Some(&ids[i]),
                    tenant: "acme",
                    device_type: "temperature_sensor",
                    route: "devices",
                    ip: [127, 0, 0, 1].into(),
                    throttled: None,
                })
                .is_ok()
        })
    });
    g.finish();
}

fn quarantine(c: &mut Criterion) {
    let set = Arc::new(QuarantineSet::new());
    let now = warden_event::now_ns();
    for i in 0..100_000 {
        set.apply(&setup::quarantine(&format!("other-{i}"), now));
    }
    let mut g = c.benchmark_group("quarantine_100k");
    g.throughput(Throughput::Elements(1));
    let subjects = [
        (SubjectKind::Ip, "127.0.0.1"),
        (SubjectKind::Identity, "dev-1"),
        (SubjectKind::ApiKey, "k-dev-1"),
        (SubjectKind::Tenant, "acme"),
    ];
    g.bench_function("check_4_subjects", |b| {
        b.iter(|| set.check(now, std::hint::black_box(&subjects)))
    });
    // The same lookups while another thread applies decisions as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (set, stop) = (set.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                set.apply(&setup::quarantine(
                    &format!("other-{}", n % 200_000),
                    now + n as i64,
                ));
                n += 1;
            }
            n
        })
    };
    g.bench_function("check_4_subjects_with_writer", |b| {
        b.iter(|| set.check(now, std::hint::black_box(&subjects)))
    });
    stop.store(true, Ordering::Relaxed);
    let applied = writer.join().expect("writer");
    println!("writer applied {applied} decisions meanwhile");
    let mut n = 0u64;
    g.bench_function("apply", |b| {
        b.iter_batched(
            || {
                n += 1;
                setup::quarantine(&format!("new-{}", n % 200_000), now + n as i64)
            },
            |d| set.apply(&d),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// An event as the bench's requests produce.
fn bench_event() -> warden_event::RequestEvent {
    use warden_event::{AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, Reason};
    warden_event::RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: "0190c0de-0000-7000-8000-000000000001".into(),
        gateway: "gw-bench".into(),
        seq: 0,
        ts: warden_event::now_ns(),
        identity: "dev-1".into(),
        tenant: "acme".into(),
        device_type: "temperature_sensor".into(),
        auth: AuthInfo {
            method: AuthMethod::ApiKey,
            result: AuthResult::Ok,
        },
        client_ip: "127.0.0.1".into(),
        protocol: Protocol::Http,
        method: "POST".into(),
        route: "devices".into(),
        path: setup::PATH.into(),
        status: 200,
        decision: Outcome::Allowed,
        latency_us: 850,
        bytes_in: 31,
        bytes_out: 2,
        user_agent: Some("wrk".into()),
        tls: None,
        reason: Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

criterion_group!(
    benches,
    full_stack,
    layers_vs_plain,
    identity,
    layers,
    quarantine
);
criterion_main!(benches);

/// Fixed identity fixtures (generated once with Python `cryptography`; the keys exist only here).
mod fixtures {
    /// JWKS of the bench IdP: RS256, ES256 and EdDSA keys.
    pub const JWKS: &str = r#"{"keys": [{"kty": "RSA", "kid": "bench-rsa", "alg": "RS256", "use": "sig", "n": "wDfvSYAE3z5acfb6r9Ae8CHq44F9xMeYxwL-Mvlze-4iDm5jsdm379WlhrcbqPOuv4yLqA4Q1A9fGO81Ystg2dudOxQvoH3-Chhi-bMG_2seWSC9n4Dxik1ZDZzp9zMWHPCYFcFeUF6PuXIEuWtjM0DHC5BeN4x2J1Qvp4gG05riHYn_FqCnZYgcskHW1SAIs0X-M2F7BsTfFxKQj3wNrLrtovd4phCkBXkpKNvwe6bwzg-A_YzX0TrDdGfVY1t-ir429qFQhw8bh8AGXEJZfzLGHM_tCOUcVc1Y0ks0dw-dJw2X3-_BbntRakIdDFpvaRtnIwYZLVFdQYMVXSBnUw", "e": "AQAB"}, {"kty": "EC", "kid": "bench-ec", "alg": "ES256", "use": "sig", "crv": "P-256", "x": "rCzz_vkR6oM5cvHpAiYUabUj721Ov2pwTixNJzwbZZE", "y": "-2rR3D0dVmOFN5N4RzCcrrWZn_wIBT6IS7WtAtZkIbQ"}, {"kty": "OKP", "kid": "bench-ed", "alg": "EdDSA", "use": "sig", "crv": "Ed25519", "x": "0ypt04g6qKsRaXdiwwDGpZ8XTSHNLfkeYq70uWA6GD0"}]}"#;

    /// `sub = dev-1` (tenant acme, temperature_sensor), RS256, expires 2100-01-01.
    pub const TOKEN_RS256: &str = r#"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImJlbmNoLXJzYSJ9.eyJpc3MiOiJodHRwczovL2lkcC5iZW5jaC50ZXN0IiwiYXVkIjoid2FyZGVuLWJlbmNoIiwic3ViIjoiZGV2LTEiLCJ0ZW5hbnQiOiJhY21lIiwiZGV2aWNlX3R5cGUiOiJ0ZW1wZXJhdHVyZV9zZW5zb3IiLCJpYXQiOjE3NjQwMDAwMDAsIm5iZiI6MTc2NDAwMDAwMCwiZXhwIjo0MTAyNDQ0ODAwfQ.u5zmPyKKS9o4QJx9dBS0BYOLpM4uTo_k180mgaxJ_WjpgrPLAclrq4xnSV0DAUiAsZ9TtliPeMXtSvfAPZFa-eFkjJ-J0e3LoWlPtsxOvREfqrNjj-6kYOaw_kG4i3nhXmwjB0UGmtxtZ6I9N_sRLct1y6WEhW8a-JNQDcgae7hIFU9ABQmA0oxM7S6SyCvc5w_ip9kUc52Z4t1h7h181tbyBYrw053RKFewOoFEgePQ1eajGm_DTx59o_bLoNGxiTNMka9p7HEKZo1o7SeJ9d7MusVbXpAbj3Qa6z8Zn9A8sV5l7q1b69CxaqHLgdQnaI47cnlQtBfcHT71D1UmsQ"#;

    /// The same claims, ES256.
    pub const TOKEN_ES256: &str = r#"eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImJlbmNoLWVjIn0.eyJpc3MiOiJodHRwczovL2lkcC5iZW5jaC50ZXN0IiwiYXVkIjoid2FyZGVuLWJlbmNoIiwic3ViIjoiZGV2LTEiLCJ0ZW5hbnQiOiJhY21lIiwiZGV2aWNlX3R5cGUiOiJ0ZW1wZXJhdHVyZV9zZW5zb3IiLCJpYXQiOjE3NjQwMDAwMDAsIm5iZiI6MTc2NDAwMDAwMCwiZXhwIjo0MTAyNDQ0ODAwfQ.4EjN6689lGzjBtgwGRkijKCSoRHM85rzEjsZsghPjxIYzhZwrnPMmtoda4gRD_yIpgpO1xiZuWvvYjO50o_wrg"#;

    /// The same claims, EdDSA (Ed25519).
    pub const TOKEN_EDDSA: &str = r#"eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCIsImtpZCI6ImJlbmNoLWVkIn0.eyJpc3MiOiJodHRwczovL2lkcC5iZW5jaC50ZXN0IiwiYXVkIjoid2FyZGVuLWJlbmNoIiwic3ViIjoiZGV2LTEiLCJ0ZW5hbnQiOiJhY21lIiwiZGV2aWNlX3R5cGUiOiJ0ZW1wZXJhdHVyZV9zZW5zb3IiLCJpYXQiOjE3NjQwMDAwMDAsIm5iZiI6MTc2NDAwMDAwMCwiZXhwIjo0MTAyNDQ0ODAwfQ.wW6Kv6PKAGVQGLT6givl1Au44ng26rLQA-2oegeCsSj2AeiROLvHvqiF3h-Orqn3cX_amzpq6op8PXZedNBbDA"#;

    /// The bench CA (issues the server and the device certificate), ECDSA P-256.
    pub const CA_PEM: &str = r#"-----BEGIN CERTIFICATE-----
MIIBZzCCAQ2gAwIBAgIBATAKBggqhkjOPQQDAjAaMRgwFgYDVQQDDA93YXJkZW4g
YmVuY2ggQ0EwIBcNMjUwMTAxMDAwMDAwWhgPMjA5OTEyMzEwMDAwMDBaMBoxGDAW
BgNVBAMMD3dhcmRlbiBiZW5jaCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA
BE9PQxAnrphe7nUX39UM/rc4ggsuVFMlwXfihta3jXMITpxY1ke2JMIQuV51OZeW
0aGF7MGUi6FVcq3Eylw9b52jQjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/
BAQDAgGGMB0GA1UdDgQWBBTOhln7pgAcjHlQuZ7F3T09AMA2GzAKBggqhkjOPQQD
AgNIADBFAiAjil35TotZPppDR8cHGE/79AvI4lU2/BaXPi2DZsCVYgIhAJhI9GJn
h9LmJnqqD0Xqg+j0EaY7un/ICDU4P0TjVnDT
-----END CERTIFICATE-----
"#;

    /// Server certificate for 127.0.0.1 / localhost.
    pub const SERVER_CERT_PEM: &str = r#"-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIBAjAKBggqhkjOPQQDAjAaMRgwFgYDVQQDDA93YXJkZW4g
YmVuY2ggQ0EwIBcNMjUwMTAxMDAwMDAwWhgPMjA5OTEyMzEwMDAwMDBaMB4xHDAa
BgNVBAMME3dhcmRlbiBiZW5jaCBzZXJ2ZXIwWTATBgcqhkjOPQIBBggqhkjOPQMB
BwNCAAS7fhf6c2W+0MYfah+4qhuqk6N2dqqRoKP+t3LlZ8+Ws81ARETgiA81yGQC
eYgfwW2Yj5eqpWho2Lm7MNam3MF5o2IwYDAMBgNVHRMBAf8EAjAAMBoGA1UdEQQT
MBGCCWxvY2FsaG9zdIcEfwAAATATBgNVHSUEDDAKBggrBgEFBQcDATAfBgNVHSME
GDAWgBTOhln7pgAcjHlQuZ7F3T09AMA2GzAKBggqhkjOPQQDAgNHADBEAiB3oHqa
sR+cF44cBVMHI7lD6s7PBN7ngI2wfNI6jyRg4AIgUWhQ1cmOok/Hdcdm1uHdDBey
BGQdwPKOHiBjbIZece0=
-----END CERTIFICATE-----
"#;

    /// Its key.
    pub const SERVER_KEY_PEM: &str = r#"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDpiOCjFkVoHMEZwC
lpNrKpsQYAKweXe9EcDRvRRiqumhRANCAAS7fhf6c2W+0MYfah+4qhuqk6N2dqqR
oKP+t3LlZ8+Ws81ARETgiA81yGQCeYgfwW2Yj5eqpWho2Lm7MNam3MF5
-----END PRIVATE KEY-----
"#;

    /// Device certificate, SAN URI `urn:warden:device:dev-1`, valid 2025–2099.
    pub const DEVICE_CERT_PEM: &str = r#"-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIBAzAKBggqhkjOPQQDAjAaMRgwFgYDVQQDDA93YXJkZW4g
YmVuY2ggQ0EwIBcNMjUwMTAxMDAwMDAwWhgPMjA5OTEyMzEwMDAwMDBaMBAxDjAM
BgNVBAMMBWRldi0xMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE143T1dVGA61+
Ru5ffDUVXYVS76jtP6eE54bRt6O1Yh0GA5GRpj8+eMHYrG1BISWmgNI5wqYoUE4B
+m4WPyfRQ6NqMGgwDAYDVR0TAQH/BAIwADAiBgNVHREEGzAZhhd1cm46d2FyZGVu
OmRldmljZTpkZXYtMTATBgNVHSUEDDAKBggrBgEFBQcDAjAfBgNVHSMEGDAWgBTO
hln7pgAcjHlQuZ7F3T09AMA2GzAKBggqhkjOPQQDAgNIADBFAiEAmGDfXeX+2Y3V
qBu/2LOQdyytaAk2AlhypkoWGxrFdp0CIF5x9zzUj+oRe52u5enP+Cvcz2B4NyjM
phXyzOUN0IqS
-----END CERTIFICATE-----
"#;

    /// Its key.
    pub const DEVICE_KEY_PEM: &str = r#"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQDI8XvlDbtVDmFuP
1Ptpy382zVGW+jRTtehQOuZ0E/mhRANCAATXjdPV1UYDrX5G7l98NRVdhVLvqO0/
p4TnhtG3o7ViHQYDkZGmPz54wdisbUEhJaaA0jnCpihQTgH6bhY/J9FD
-----END PRIVATE KEY-----
"#;
}
