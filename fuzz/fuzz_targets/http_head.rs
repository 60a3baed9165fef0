//! Raw HTTP/1.1 (and HTTP/2 preface) bytes through the real gateway over a loopback socket:
//! a gateway started once with an API-key route in front of a recording upstream. Each input
//! is written on a fresh connection, which is then half-closed and read to the end.
//!
//! Properties (checked on what the upstream received, as a backend would see it): nothing
//! panics (libFuzzer aborts on a panic in any thread); every proxied request carries exactly
//! one `x-warden-identity`, the gateway's own (`dev-1`: the input cannot forge it), no
//! credential (`x-api-key`, `authorization`), no header name with `_`; its method is one the
//! route allows; its path is under the route and free of dot segments, encoded separators,
//! backslashes and `;`.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, Method, Uri};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{WardenConfig, hash_api_key};
use warden_gateway::Gateway;

/// The API key in the seed corpus (fuzz/corpus/http_head/).
const KEY: &str = "fuzz-key-0123456789abcdef";

struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

struct Harness {
    rt: Runtime,
    gateway: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gateway = rt.block_on(start(seen.clone()));
        Harness { rt, gateway, seen }
    })
}

async fn start(seen: Arc<Mutex<Vec<Seen>>>) -> SocketAddr {
    let up = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let up_addr = up.local_addr().expect("addr");
    let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            if let Ok(mut s) = seen.lock() {
                s.push(Seen {
                    method,
                    uri,
                    headers,
                });
            }
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(up, app).await });

    let text = format!(
        r#"
[gateway.connections]
first_request_timeout_ms = 2000
header_read_timeout_ms = 2000
body_read_timeout_ms = 2000
idle_timeout_ms = 2000

[[api_keys]]
id = "k1"
sha256 = "{hash}"
identity = "dev-1"
tenant = "acme"

[[routes]]
name = "telemetry"
prefix = "/api/telemetry"
upstream = "http://{up_addr}"
auth = "api_key"
methods = ["GET", "POST"]
timeout_ms = 2000
"#,
        hash = hash_api_key(KEY)
    );
    let config = WardenConfig::from_toml(&text).expect("fuzz config");
    let bus = EmbeddedBus::new(EmbeddedConfig {
        partition_capacity: 1024,
        ..EmbeddedConfig::default()
    });
    let t = &config.bus.topics;
    let topics =
        [(t.events.clone(), false), (t.decisions.clone(), true)].map(|(name, compacted)| {
            TopicSpec {
                name,
                partitions: 1,
                compacted,
                retention_ms: None,
            }
        });
    bus.ensure_topics(&topics).await.expect("topics");
    let gateway = Gateway::start(&config, Arc::new(bus))
        .await
        .expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { gateway.serve(listener, std::future::pending()).await });
    addr
}

async fn exchange(addr: SocketAddr, input: &[u8]) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let _ = s.write_all(input).await;
    let _ = s.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut sink)).await;
}

fn check(r: &Seen) {
    let ids: Vec<_> = r.headers.get_all("x-warden-identity").iter().collect();
    assert_eq!(ids.len(), 1, "identity headers: {ids:?}");
    assert_eq!(ids[0], "dev-1", "forged identity reached the upstream");
    assert!(!r.headers.contains_key("x-api-key"), "API key forwarded");
    assert!(
        !r.headers.contains_key("authorization"),
        "credential forwarded"
    );
    for name in r.headers.keys() {
        assert!(!name.as_str().contains('_'), "header {name} forwarded");
    }
    assert!(
        r.method == Method::GET || r.method == Method::POST,
        "method {}",
        r.method
    );
    let path = r.uri.path();
    assert!(
        path == "/api/telemetry" || path.starts_with("/api/telemetry/"),
        "path {path}"
    );
    let lower = path.to_ascii_lowercase();
    for bad in ["/./", "/../", "//", "%2e", "%2f", "%5c", "\\", ";", "%25"] {
        assert!(!lower.contains(bad), "path {path} reached the upstream");
    }
    assert!(
        !lower.ends_with("/.") && !lower.ends_with("/.."),
        "path {path}"
    );
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.rt.block_on(exchange(h.gateway, data));
    let seen = match h.seen.lock() {
        Ok(mut s) => std::mem::take(&mut *s),
        Err(_) => return,
    };
    seen.iter().for_each(check);
});
