//! The gateway over real sockets: proxying, upstream failures, body limits, header handling,
//! quarantine, and one event per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{any, get};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{ApiKeyConfig, RouteAuth, RouteConfig, WardenConfig, hash_api_key};
use warden_event::{Action, Decision, EventFormat, Outcome, RequestEvent, Subject};
use warden_gateway::Gateway;

const KEY: &str = "test-key-0123456789abcdef";
const OTHER_KEY: &str = "test-key-fedcba9876543210";

/// Echoes the headers it received; `/api/slow` answers after 2 s; `/api/big` sends 100 KiB.
async fn upstream() -> SocketAddr {
    let app = Router::new()
        .route(
            "/api/echo",
            any(|headers: HeaderMap, body: axum::body::Bytes| async move {
                let h: serde_json::Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value::String(v.to_str().unwrap_or("").to_string()),
                        )
                    })
                    .collect();
                axum::Json(serde_json::json!({"headers": h, "body_len": body.len()}))
            }),
        )
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        )
        .route("/api/big", get(|| async { vec![b'x'; 100 * 1024] }))
        .route(
            "/api/hop",
            get(|| async {
                (
                    [
                        ("connection", "x-secret"),
                        ("x-secret", "1"),
                        ("keep-alive", "timeout=5"),
                        ("x-kept", "yes"),
                    ],
                    "ok",
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn key(id: &str, key: &str, identity: &str) -> ApiKeyConfig {
    ApiKeyConfig {
        id: id.into(),
        sha256: hash_api_key(key),
        identity: identity.into(),
        tenant: "acme".into(),
        device_type: "sensor".into(),
        roles: vec![],
        not_before: None,
        expires_at: None,
    }
}

struct Harness {
    addr: SocketAddr,
    bus: EmbeddedBus,
    config: WardenConfig,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dead_upstream: SocketAddr, format: EventFormat) -> Harness {
    let up = upstream().await;
    let mut config = WardenConfig::default();
    config.bus.event_format = format;
    config.gateway.max_body_bytes = 1024;
    config.routes = vec![
        RouteConfig {
            name: "api".into(),
            prefix: "/api".into(),
            upstream: format!("http://{up}"),
            upstream_tls: None,
            deprecation: None,
            resilience: Default::default(),
            timeout_ms: 500,
            strip_prefix: false,
            auth: RouteAuth::ApiKey,
            methods: vec![],
            require_mtls: false,
            forward_bearer: false,
            allow_underscore_headers: false,
        },
        RouteConfig {
            name: "dead".into(),
            prefix: "/dead".into(),
            upstream: format!("http://{dead_upstream}"),
            upstream_tls: None,
            deprecation: None,
            resilience: Default::default(),
            timeout_ms: 500,
            strip_prefix: false,
            auth: RouteAuth::None,
            methods: vec!["GET".into()],
            require_mtls: false,
            forward_bearer: false,
            allow_underscore_headers: false,
        },
        RouteConfig {
            name: "raw".into(),
            prefix: "/raw".into(),
            upstream: format!("http://{dead_upstream}"),
            upstream_tls: None,
            deprecation: None,
            resilience: Default::default(),
            timeout_ms: 500,
            strip_prefix: false,
            auth: RouteAuth::None,
            methods: vec![],
            require_mtls: false,
            forward_bearer: false,
            allow_underscore_headers: false,
        },
    ];
    config.api_keys = vec![key("k1", KEY, "dev-1"), key("k2", OTHER_KEY, "dev-2")];
    config.validate().expect("valid");
    let bus = EmbeddedBus::new(EmbeddedConfig::default());
    let t = &config.bus.topics;
    bus.ensure_topics(&[
        TopicSpec {
            name: t.events.clone(),
            partitions: 2,
            compacted: false,
            retention_ms: None,
        },
        TopicSpec {
            name: t.decisions.clone(),
            partitions: 2,
            compacted: true,
            retention_ms: None,
        },
    ])
    .await
    .expect("topics");
    let gateway = Gateway::start(&config, Arc::new(bus.clone()))
        .await
        .expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        gateway
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
    });
    Harness {
        addr,
        bus,
        config,
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        stop,
        task,
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop_and_events(self) -> Vec<RequestEvent> {
        let _ = self.stop.send(());
        self.task.await.expect("gateway task");
        let mut events = Vec::new();
        warden_bus::read_to_end(
            &self.bus,
            &self.config.bus.topics.events,
            Duration::from_secs(5),
            |m| {
                // Written in the configured form.
                let compact = self.config.bus.event_format == EventFormat::Compact;
                assert_eq!(warden_event::compact::is_compact(&m.payload), compact);
                events.push(warden_event::decode::<RequestEvent>(&m.payload).expect("event"))
            },
        )
        .await
        .expect("read events");
        events.sort_by_key(|e| e.seq);
        events
    }
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let rid = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = resp.json().await.expect("json error body");
    assert_eq!(
        body["error"]["request_id"].as_str(),
        rid.as_deref(),
        "{body}"
    );
    assert_eq!(body["error"]["status"], status, "{body}");
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_and_reports_upstream_failures() {
    let h = start(closed_port(), EventFormat::Compact).await;
    // Proxied, with identity headers set by the gateway and spoofed ones dropped.
    let resp = h
        .client
        .post(h.url("/api/echo"))
        .header("x-api-key", KEY)
        .header("x-warden-identity", "admin")
        .header("connection", "x-drop-me")
        .header("x-drop-me", "1")
        .body("hello")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.expect("json");
    let headers = &echoed["headers"];
    assert_eq!(headers["x-warden-identity"], "dev-1");
    assert_eq!(headers["x-warden-tenant"], "acme");
    assert!(
        headers.get("x-api-key").is_none(),
        "the key is not forwarded"
    );
    assert!(
        headers.get("x-drop-me").is_none(),
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert!(
        headers["x-request-id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(echoed["body_len"], 5);

    // Hop-by-hop response headers are stripped, others kept.
    let resp = h
        .client
        .get(h.url("/api/hop"))
        .header("x-api-key", KEY)
        .send()
        .await
        .expect("send");
    assert!(resp.headers().get("x-secret").is_none());
    assert!(resp.headers().get("keep-alive").is_none());
    assert_eq!(resp.headers()["x-kept"], "yes");

    // Streaming a large response counts its bytes.
    let resp = h
        .client
        .get(h.url("/api/big"))
        .header("x-api-key", KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.bytes().await.expect("body").len(), 100 * 1024);

    let slow = h
        .client
        .get(h.url("/api/slow"))
        .header("x-api-key", KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(slow).await, (504, "upstream_timeout".into()));
    let dead = h.client.get(h.url("/dead/x")).send().await.expect("send");
    assert_eq!(error_code(dead).await, (502, "bad_gateway".into()));
    let wrong_method = h.client.post(h.url("/dead/x")).send().await.expect("send");
    assert_eq!(
        error_code(wrong_method).await,
        (405, "method_not_allowed".into())
    );

    let events = h.stop_and_events().await;
    assert_eq!(events.len(), 6);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    let big = events.iter().find(|e| e.path == "/api/big").expect("big");
    assert_eq!(big.bytes_out, 100 * 1024);
    let echo = events.iter().find(|e| e.path == "/api/echo").expect("echo");
    assert_eq!(
        (echo.bytes_in, echo.identity.as_str(), echo.route.as_str()),
        (5, "dev-1", "api")
    );
    let outcomes: Vec<Outcome> = events.iter().map(|e| e.decision).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::UpstreamError)
            .count(),
        2
    );
    let dead = events
        .iter()
        .find(|e| e.path == "/dead/x" && e.status == 502)
        .expect("dead");
    assert_eq!(dead.identity, "anonymous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_oversize_bodies_bad_credentials_and_quarantined_subjects() {
    let h = start(closed_port(), EventFormat::Json).await;
    let big = vec![b'a'; 4096];
    let declared = h
        .client
        .post(h.url("/api/echo"))
        .header("x-api-key", KEY)
        .body(big.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(
        error_code(declared).await,
        (413, "payload_too_large".into())
    );
    // Chunked (no Content-Length): refused while streaming.
    let mut req = format!(
        "POST /api/echo HTTP/1.1\r\nHost: t\r\nX-Api-Key: {KEY}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..8 {
        req.push_str(&format!("200\r\n{}\r\n", "a".repeat(512)));
    }
    req.push_str("0\r\n\r\n");
    let mut s = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"payload_too_large\""), "{text}");

    for (hdr, value) in [
        ("x-api-key", "nope"),
        ("authorization", "Bearer abc"),
        ("authorization", "ApiKey nope"),
    ] {
        let r = h
            .client
            .get(h.url("/api/echo"))
            .header(hdr, value)
            .send()
            .await
            .expect("send");
        assert_eq!(
            error_code(r).await,
            (401, "unauthenticated".into()),
            "{hdr}: {value}"
        );
    }
    let ok = h
        .client
        .get(h.url("/api/echo"))
        .header("authorization", format!("ApiKey {OTHER_KEY}"))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);

    // A quarantine published on the bus is enforced within a moment, for that identity only.
    let decision = Decision {
        v: warden_event::SCHEMA_VERSION,
        id: "d1".into(),
        subject: Subject::identity("dev-1"),
        action: Action::Quarantine,
        until: Some(warden_event::now_ns() + 60_000_000_000),
        reason: "test".into(),
        detector: "test".into(),
        score: 1.0,
        evidence: Value::Null,
        decided_at: warden_event::now_ns(),
        limit: None,
    };
    h.bus
        .producer()
        .send(
            &h.config.bus.topics.decisions,
            decision.subject.key().as_bytes(),
            &warden_event::encode(&decision),
        )
        .await
        .expect("publish");
    let mut status = 0;
    for _ in 0..50 {
        let r = h
            .client
            .get(h.url("/api/echo"))
            .header("x-api-key", KEY)
            .send()
            .await
            .expect("send");
        status = r.status().as_u16();
        if status == 403 {
            assert_eq!(error_code(r).await, (403, "forbidden".into()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 403, "quarantine not enforced");
    let other = h
        .client
        .get(h.url("/api/echo"))
        .header("x-api-key", OTHER_KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), 200);

    let events = h.stop_and_events().await;
    let quarantined: Vec<&RequestEvent> = events
        .iter()
        .filter(|e| e.decision == Outcome::Quarantined)
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].status, 403);
    assert_eq!(events.iter().filter(|e| e.status == 413).count(), 2);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.decision == Outcome::DeniedAuth)
            .count(),
        3
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());
}

/// A raw HTTP/1.1 upstream that counts the connections it accepts. Every response is
/// `200 ok`; `/dead/close-later` closes the connection 50 ms after its response (without
/// saying so, like an upstream's keep-alive timeout), `/dead/close` answers with
/// `Connection: close`, `/raw/early` answers before reading the request body and then
/// neither reads nor closes.
async fn counting_upstream() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 1024];
                    let n = match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let close = path == "/dead/close";
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{}\r\nok",
                        if close { "connection: close\r\n" } else { "" }
                    );
                    if tcp.write_all(reply.as_bytes()).await.is_err() || close {
                        return;
                    }
                    if path == "/dead/close-later" {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                    if path == "/raw/early" {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

// One serving thread: its pool holds the upstream connections.
#[tokio::test]
async fn reuses_upstream_connections_and_replaces_those_the_upstream_closed() {
    use std::sync::atomic::Ordering::SeqCst;
    let (up, accepted) = counting_upstream().await;
    let h = start(up, EventFormat::Compact).await;
    let get = |path: &'static str| {
        let req = h.client.get(h.url(path));
        async move {
            let resp = req.send().await.expect("send");
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    };
    // Sequential requests share one upstream connection.
    for _ in 0..10 {
        assert_eq!(get("/dead/keep").await, (200, "ok".into()));
    }
    assert_eq!(accepted.load(SeqCst), 1);

    // The upstream closes each connection after its response (the first one on the kept
    // connection): the next request gets a new one instead of failing on the closed one.
    for i in 0..5 {
        assert_eq!(get("/dead/close-later").await, (200, "ok".into()), "{i}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accepted.load(SeqCst), 5);
    // `Connection: close` responses: a new connection each time, and none kept.
    for _ in 0..3 {
        assert_eq!(get("/dead/close").await, (200, "ok".into()));
    }
    assert_eq!(accepted.load(SeqCst), 8);
    for _ in 0..3 {
        assert_eq!(get("/dead/keep").await, (200, "ok".into()));
    }
    assert_eq!(accepted.load(SeqCst), 9);

    let events = h.stop_and_events().await;
    assert_eq!(events.len(), 21);
    assert!(events.iter().all(|e| e.status == 200), "{events:?}");
}

// One serving thread, so the second request would get the first one's connection if it
// were pooled.
#[tokio::test]
async fn a_connection_still_sending_a_request_body_is_not_given_to_another_request() {
    let (up, accepted) = counting_upstream().await;
    let h = start(up, EventFormat::Compact).await;
    // A client announces 100 bytes, sends 10 and stalls; the upstream answers at once.
    let mut slow = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect");
    slow.write_all(
        b"POST /raw/early HTTP/1.1\r\nhost: gw\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut chunk = [0u8; 512];
    while !String::from_utf8_lossy(&head).ends_with("ok") {
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "gateway closed: {}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&chunk[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Another request meanwhile: served on a new upstream connection, not stuck behind the
    // stalled body until the route's timeout.
    let resp = h
        .client
        .get(h.url("/dead/keep"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    drop(slow);
}
