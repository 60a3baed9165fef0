//! A fleet of registered devices in the gateway's API-key store: what it costs to load, to
//! hold, to look up on every request, and to change one key through the admin API while
//! requests go on — at 1 000, 100 000 and 1 000 000 devices (`DEVICE_STORE_SIZES`).
//!
//! `cargo bench -p warden-benches --bench device_store` prints one line per size:
//! - the keys file (`admin.keys_file`, JSON, one key per device, as the admin API writes it),
//! - gateway start (reading and validating the file, building the store) and the resident
//!   memory it added, per device,
//! - a request's cost through the in-process router (every layer; RBAC answers 403 so no proxy
//!   hop blurs it) with keys drawn at random from the whole fleet, mean and p99,
//! - adding one key through `LiveConfig::add_key` (validate, write the file, rebuild, swap),
//!   and requests' p99 and worst latency while it runs on another thread.

// The allocator the `warden` binary runs on (crates/warden/src/main.rs), so the figures are
// what ships; `--features system-alloc` measures the same on glibc's.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The request and body constants of the shared setup are the other benches'.
#[allow(dead_code)]
#[path = "gateway_setup.rs"]
mod setup;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use tower::ServiceExt;
use warden_config::{ApiKeyConfig, hash_api_key};

fn key_of(i: usize) -> String {
    format!("device-key-{i:08}-0123456789abcdef")
}

/// Resident memory of the process, bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Write the keys file of `n` devices without holding them in memory.
fn write_keys(path: &std::path::Path, n: usize) -> u64 {
    let file = std::fs::File::create(path).expect("keys file");
    let mut w = std::io::BufWriter::new(file);
    w.write_all(b"{\"api_keys\":[").expect("write");
    for i in 0..n {
        let k = ApiKeyConfig {
            id: format!("k-{i:08}"),
            sha256: hash_api_key(&key_of(i)),
            identity: format!("dev-{i:08}"),
            tenant: format!("tenant-{}", i % 50),
            device_type: "temperature_sensor".into(),
            roles: Vec::new(),
            not_before: None,
            expires_at: None,
        };
        if i > 0 {
            w.write_all(b",").expect("write");
        }
        serde_json::to_writer(&mut w, &k).expect("write");
    }
    w.write_all(b"]}").expect("write");
    w.flush().expect("flush");
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn request(i: usize) -> Request<Body> {
    let mut req = Request::builder()
        .header("host", "gw")
        .method(Method::GET)
        // Not the device's own config: RBAC refuses after identity, quarantine and limits.
        .uri("/api/devices/someone-else/config")
        .header("x-api-key", key_of(i))
        .body(Body::empty())
        .expect("request");
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

/// Latencies (µs) of `count` requests with keys drawn from `n` devices (a fixed sequence).
async fn requests(router: &axum::Router, n: usize, count: usize, seed: &mut u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let req = request((*seed as usize) % n);
        let t = Instant::now();
        let resp = router.clone().oneshot(req).await.expect("infallible");
        assert_eq!(
            resp.status(),
            403,
            "an authenticated device refused by RBAC"
        );
        let _ = axum::body::to_bytes(resp.into_body(), 1 << 16).await;
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1)
        .copied()
        .unwrap_or(f64::NAN)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("DEVICE_STORE_SIZES")
        .unwrap_or_else(|_| "1000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let backend = rt.block_on(setup::backend("127.0.0.1:0".parse().expect("addr")));
    for n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys.json");
        let file_bytes = write_keys(&keys, n);
        let mut config = setup::config("127.0.0.1:0".parse().expect("addr"), backend, dir.path());
        config.admin.keys_file = Some(keys.display().to_string());
        let before = rss();
        let t = Instant::now();
        let gw = rt.block_on(setup::gateway(&config, 0));
        let start = t.elapsed();
        let held = rss().saturating_sub(before);
        let router = gw.router();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let count = 20_000;
        rt.block_on(requests(&router, n, 2_000, &mut seed));
        let mut lat = rt.block_on(requests(&router, n, count, &mut seed));
        let mean = lat.iter().sum::<f64>() / lat.len() as f64;
        let p99 = quantile(&mut lat, 0.99);
        // One key added through the admin path while requests go on.
        let live = gw.live().clone();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let adder = std::thread::spawn(move || {
            let t = Instant::now();
            let report = live.add_key(ApiKeyConfig {
                id: "k-new".into(),
                sha256: hash_api_key("a-brand-new-device-key-0123456789"),
                identity: "dev-new".into(),
                tenant: "tenant-0".into(),
                device_type: "temperature_sensor".into(),
                roles: Vec::new(),
                not_before: None,
                expires_at: None,
            });
            let took = t.elapsed();
            d.store(true, Ordering::Release);
            (took, report.map(|r| r.applied))
        });
        let mut during = Vec::new();
        rt.block_on(async {
            while !done.load(Ordering::Acquire) {
                during.extend(requests(&router, n, 100, &mut seed).await);
                tokio::time::sleep(Duration::from_micros(1)).await;
            }
        });
        let (add, applied) = adder.join().expect("adder");
        assert_eq!(applied, Ok(true), "the key was added");
        let during_p99 = quantile(&mut during, 0.99);
        let during_max = during.last().copied().unwrap_or(f64::NAN);
        println!(
            "{n} devices: keys file {:.1} MB; gateway start {:.2} s, +{:.1} MB resident ({:.0} B per device); \
             request (403 after identity) mean {mean:.1} µs, p99 {p99:.1} µs; add_key {:.2} s, \
             {} requests meanwhile: p99 {during_p99:.1} µs, max {during_max:.1} µs",
            file_bytes as f64 / 1e6,
            start.as_secs_f64(),
            held as f64 / 1e6,
            held as f64 / n as f64,
            add.as_secs_f64(),
            during.len(),
        );
        drop(gw);
    }
}
