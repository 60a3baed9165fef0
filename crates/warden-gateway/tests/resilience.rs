//! Retries and passive upstream health, over real sockets: an idempotent request without a
//! body is sent again after a 503 and succeeds, a POST is never sent twice, and an upstream
//! that stops answering is ejected after consecutive failures (its requests then refused at
//! once) and again when the probe after the ejection fails.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use warden_config::WardenConfig;

/// Answers 503 to every other request (the first included), 200 to the rest.
async fn flaky() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let h = h.clone();
        async move {
            if h.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
            } else {
                (axum::http::StatusCode::OK, "ok")
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// GET `path` on the gateway: the status (0 when no answer) and how long it took.
async fn timed_get(client: &reqwest::Client, gw: SocketAddr, path: &str) -> (u16, Duration) {
    let t = Instant::now();
    let status = client
        .get(format!("http://{gw}{path}"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    (status, t.elapsed())
}

/// Accepts connections and never answers.
async fn silent() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_and_failing_upstreams_ejected() {
    let (flaky_addr, hits) = flaky().await;
    let silent_addr = silent().await;
    let text = format!(
        r#"
[[routes]]
name = "flaky"
prefix = "/flaky"
upstream = "http://{flaky_addr}"
auth = "none"

[[routes]]
name = "silent"
prefix = "/silent"
upstream = "http://{silent_addr}"
auth = "none"
timeout_ms = 200
[routes.resilience]
retries = 0
eject_after_failures = 3
eject_for_ms = 1500
"#
    );
    let config = WardenConfig::from_toml(&text).expect("valid config");
    let served = common::serve(&config).await;
    let gw = served.gateway;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // GET: the 503 is retried once, the client sees the 200.
    let r = client
        .get(format!("http://{gw}/flaky/a"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // POST with a body: sent once, its 503 passed on.
    let r = client
        .post(format!("http://{gw}/flaky/a"))
        .body("reading=1")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(hits.load(Ordering::SeqCst), 3, "a POST is never sent twice");

    let timed = |path: &'static str| timed_get(&client, gw, path);
    for _ in 0..3 {
        assert_eq!(timed("/silent/x").await.0, 504);
    }
    // Ejected: refused at once, the upstream is not waited for.
    let (status, took) = timed("/silent/x").await;
    assert_eq!(status, 502);
    assert!(took < Duration::from_millis(150), "{took:?}");
    // After the ejection one probe goes through; it fails, so the upstream is ejected again
    // at once.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(timed("/silent/x").await.0, 504, "the probe");
    let (status, took) = timed("/silent/x").await;
    assert_eq!(status, 502, "ejected again after the failed probe");
    assert!(took < Duration::from_millis(150), "{took:?}");
    drop(served);
}

/// A backend whose `/health` answers 200 or 503 as `healthy` says; every other request is
/// counted in `served` (what the upstream actually received) and answered 200. `probes`
/// counts health checks that carried the gateway's user agent.
struct Backend {
    addr: SocketAddr,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    served: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
}

async fn backend() -> Backend {
    use std::sync::atomic::AtomicBool;
    let healthy = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicUsize::new(0));
    let probes = Arc::new(AtomicUsize::new(0));
    let (h, p, s) = (healthy.clone(), probes.clone(), served.clone());
    let app = axum::Router::new()
        .route(
            "/base/health",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let (h, p) = (h.clone(), p.clone());
                async move {
                    if headers
                        .get("user-agent")
                        .is_some_and(|v| v == "warden-health-check")
                    {
                        p.fetch_add(1, Ordering::SeqCst);
                    }
                    if h.load(Ordering::SeqCst) {
                        (axum::http::StatusCode::OK, "ok")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
                    }
                }
            }),
        )
        .fallback(move || {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                "served"
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Backend {
        addr,
        healthy,
        served,
        probes,
    }
}

/// Wait up to `limit` for `f` to hold.
async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Active health checks, seen from both ends: the gateway probes the configured path under the
/// upstream's base path on its own; an upstream whose checks fail twice in a row is marked down
/// and its requests are refused at once with 502 — the upstream receives none of them — and the
/// admin API shows it down; two passing checks bring it back without a client request spent on
/// finding out. An upstream that is not listening at all is marked down before any client
/// asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_mark_an_upstream_down_and_up_again() {
    let b = backend().await;
    // A port nothing listens on.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let token = "admin-token-0123456789abcdef";
    let text = format!(
        r#"
[admin]
token_sha256 = "{}"

[[routes]]
name = "checked"
prefix = "/checked"
upstream = "http://{}/base"
strip_prefix = true
auth = "none"
[routes.resilience]
retries = 0
eject_after_failures = 0
health_check = {{ path = "/health", interval_ms = 100, timeout_ms = 80, unhealthy_after = 2, healthy_after = 2 }}

[[routes]]
name = "gone"
prefix = "/gone"
upstream = "http://{gone}"
auth = "none"
[routes.resilience]
health_check = {{ path = "/health", interval_ms = 100, timeout_ms = 80 }}
"#,
        warden_config::hash_api_key(token),
        b.addr
    );
    let config = WardenConfig::from_toml(&text).expect("valid config");
    let served = common::serve(&config).await;
    let gw = served.gateway;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let get = |path: &'static str| timed_get(&client, gw, path);
    let health = |route: &'static str| {
        let client = client.clone();
        let admin = served.admin;
        async move {
            let v: serde_json::Value = client
                .get(format!("http://{admin}/admin/routes"))
                .bearer_auth(token)
                .send()
                .await
                .expect("admin")
                .json()
                .await
                .expect("json");
            v["routes"]
                .as_array()
                .and_then(|a| a.iter().find(|r| r["name"] == route))
                .map(|r| r["upstream_health"].clone())
                .unwrap_or_default()
        }
    };

    // The gateway probes on its own, at the configured pace.
    assert!(
        eventually(Duration::from_secs(3), async || b
            .probes
            .load(Ordering::SeqCst)
            >= 3)
        .await,
        "probes: {}",
        b.probes.load(Ordering::SeqCst)
    );
    assert_eq!(get("/checked/reading").await.0, 200);
    assert_eq!(b.served.load(Ordering::SeqCst), 1);
    assert_eq!(health("checked").await["down"], false);
    // Nothing listens behind `gone`: down without a client request.
    assert!(
        eventually(
            Duration::from_secs(3),
            async || health("gone").await["down"] == true
        )
        .await
    );
    let (status, took) = get("/gone/x").await;
    assert_eq!(status, 502);
    assert!(took < Duration::from_millis(150), "{took:?}");

    // The backend's health fails: marked down within two intervals or so, then refused at
    // once and the upstream receives nothing.
    b.healthy.store(false, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(3), async || get("/checked/reading")
            .await
            .0
            == 502)
        .await
    );
    let before = b.served.load(Ordering::SeqCst);
    for _ in 0..5 {
        let (status, took) = get("/checked/reading").await;
        assert_eq!(status, 502);
        assert!(took < Duration::from_millis(150), "{took:?}");
    }
    assert_eq!(
        b.served.load(Ordering::SeqCst),
        before,
        "the upstream received none of the refused requests"
    );
    let h = health("checked").await;
    assert_eq!(
        (h["checked"].clone(), h["down"].clone()),
        (true.into(), true.into()),
        "{h}"
    );
    // Healthy again: back after two passing checks.
    b.healthy.store(true, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(3), async || get("/checked/reading")
            .await
            .0
            == 200)
        .await
    );
    assert_eq!(health("checked").await["down"], false);
    drop(served);
}
