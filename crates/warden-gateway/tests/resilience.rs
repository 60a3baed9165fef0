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

    let timed = |path: &'static str| {
        let client = client.clone();
        async move {
            let t = Instant::now();
            let status = client
                .get(format!("http://{gw}{path}"))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            (status, t.elapsed())
        }
    };
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
