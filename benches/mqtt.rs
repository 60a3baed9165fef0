//! MQTT PUBLISH → HTTP through the gateway, side by side with the same message as an HTTP
//! POST through the same gateway, in one run: `cargo bench -p warden-benches --bench mqtt`.
//!
//! One process holds the backend, the gateway (every layer of `gateway_setup`: API-key
//! identity, 100 000 live quarantines of other identities, rate limits, RBAC with owner
//! scoping, JSON Schema validation, one event per message to the embedded bus) and the clients.
//! Each of `CONNS` connections keeps `WINDOW` messages in flight (QoS 1: the PUBACK comes after
//! the backend's answer; HTTP/1.1 keep-alive: one request at a time per connection, so HTTP
//! gets `CONNS × WINDOW` connections for the same concurrency). Reported: messages/s, the
//! process's CPU time per message (clients and backend included), and the latency from send
//! to acknowledgement (p50, p99). `MQTT_BENCH_SECONDS` (default 10) per variant.

// The allocator the `warden` binary runs on (crates/warden/src/main.rs), so the figures are
// what ships; `--features system-alloc` measures the same on glibc's.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "gateway_setup.rs"]
mod gateway_setup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNS: usize = 32;
const WINDOW: usize = 4;
const TOPIC: &str = "devices/dev-1/telemetry";

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Run {
    messages: usize,
    latencies_us: Vec<u64>,
    wall: Duration,
    cpu: f64,
}

impl Run {
    fn line(&self, label: &str) -> String {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        let q = |p: f64| {
            l.get(((l.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0)
        };
        let rate = self.messages as f64 / self.wall.as_secs_f64();
        format!(
            "{label:<28} {rate:>9.0} msg/s   {:>6.1} µs CPU/msg   p50 {:>6.2} ms   p99 {:>6.2} ms",
            self.cpu * 1e6 / self.messages.max(1) as f64,
            q(0.5) as f64 / 1000.0,
            q(0.99) as f64 / 1000.0,
        )
    }
}

fn encode(p: v4::Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    p.write(&mut b, usize::MAX).expect("encode");
    b.to_vec()
}

/// One MQTT connection: CONNECT, then QoS 1 PUBLISHes with `WINDOW` in flight until `stop`.
async fn mqtt_conn(addr: SocketAddr, id: usize, stop: Arc<AtomicBool>) -> (usize, Vec<u64>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut c = v4::Connect::new(format!("dev-1:{id}"));
    c.keep_alive = 60;
    c.set_login("dev-1", gateway_setup::KEY);
    s.write_all(&encode(v4::Packet::Connect(c)))
        .await
        .expect("CONNECT");
    let mut buf = BytesMut::with_capacity(4096);
    let mut sent = std::collections::HashMap::new();
    let mut next: u16 = 0;
    let (mut done, mut lat) = (0usize, Vec::new());
    let mut connected = false;
    loop {
        if connected && !stop.load(Ordering::Relaxed) {
            while sent.len() < WINDOW {
                next = next.checked_add(1).unwrap_or(1);
                let mut p = v4::Publish::new(
                    TOPIC,
                    rumqttc::mqttbytes::QoS::AtLeastOnce,
                    gateway_setup::BODY,
                );
                p.pkid = next;
                s.write_all(&encode(v4::Packet::Publish(p)))
                    .await
                    .expect("PUBLISH");
                sent.insert(next, Instant::now());
            }
        } else if connected && sent.is_empty() {
            return (done, lat);
        }
        match v4::Packet::read(&mut buf, 1 << 20) {
            Ok(v4::Packet::ConnAck(a)) => {
                assert_eq!(a.code, v4::ConnectReturnCode::Success, "CONNACK");
                connected = true;
            }
            Ok(v4::Packet::PubAck(a)) => {
                if let Some(t) = sent.remove(&a.pkid) {
                    lat.push(t.elapsed().as_micros() as u64);
                    done += 1;
                }
            }
            Ok(_) => {}
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                if s.read_buf(&mut buf).await.expect("read") == 0 {
                    return (done, lat);
                }
            }
            Err(e) => panic!("bad packet from the gateway: {e}"),
        }
    }
}

/// One HTTP/1.1 keep-alive connection posting the same body until `stop`.
async fn http_conn(addr: SocketAddr, stop: Arc<AtomicBool>) -> (usize, Vec<u64>) {
    use http_body_util::BodyExt;
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let (mut done, mut lat) = (0usize, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let req = hyper::Request::post(gateway_setup::PATH)
            .header("host", "bench")
            .header("x-api-key", gateway_setup::KEY)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                gateway_setup::BODY.as_bytes(),
            )))
            .expect("request");
        let t = Instant::now();
        let resp = tx.send_request(req).await.expect("response");
        assert!(resp.status().is_success(), "HTTP {}", resp.status());
        let _ = resp.into_body().collect().await;
        lat.push(t.elapsed().as_micros() as u64);
        done += 1;
    }
    (done, lat)
}

async fn measure<F, Fut>(seconds: u64, start: F) -> Run
where
    F: Fn(Arc<AtomicBool>) -> Vec<Fut>,
    Fut: std::future::Future<Output = (usize, Vec<u64>)> + Send + 'static,
{
    // Warm-up: a second of the same load, not counted.
    let stop = Arc::new(AtomicBool::new(false));
    let warm: Vec<_> = start(stop.clone()).into_iter().map(tokio::spawn).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in warm {
        let _ = t.await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let tasks: Vec<_> = start(stop.clone()).into_iter().map(tokio::spawn).collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        messages: 0,
        latencies_us: Vec::new(),
        wall: Duration::ZERO,
        cpu: 0.0,
    };
    for t in tasks {
        let (n, l) = t.await.expect("client");
        run.messages += n;
        run.latencies_us.extend(l);
    }
    run.wall = t0.elapsed();
    run.cpu = cpu_seconds() - c0;
    run
}

fn main() {
    let seconds = std::env::var("MQTT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let backend = gateway_setup::backend(any).await;
        let http_l = tokio::net::TcpListener::bind(any).await.expect("bind");
        let mqtt_l = tokio::net::TcpListener::bind(any).await.expect("bind");
        let (http, mqtt) = (
            http_l.local_addr().expect("addr"),
            mqtt_l.local_addr().expect("addr"),
        );
        let mut config = gateway_setup::config(http, backend, dir.path());
        config.gateway.mqtt = warden_config::MqttConfig {
            listen: Some(mqtt),
            messages_per_s: 1e9,
            burst_messages: u32::MAX,
            bytes_per_s: u64::MAX / 2,
            publish: vec![warden_config::MqttPublishRule {
                topic: "devices/{identity}/telemetry".into(),
                method: "POST".into(),
                path: "/api/devices/{identity}/telemetry".into(),
                payload: warden_config::PayloadMode::Raw,
                content_type: Some("application/json".into()),
                name: None,
            }],
            ..Default::default()
        };
        let gateway = gateway_setup::gateway(&config, 100_000).await;
        let server = gateway.mqtt();
        tokio::spawn(server.serve(Some(mqtt_l), None, futures::future::pending::<()>()));
        tokio::spawn(gateway.serve(http_l, futures::future::pending::<()>()));
        println!(
            "{CONNS} connections × {WINDOW} in flight (HTTP: {} keep-alive connections), {seconds} s per variant, {} cores",
            CONNS * WINDOW,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let mqtt_run = measure(seconds, |stop| {
            (0..CONNS)
                .map(|i| mqtt_conn(mqtt, i, stop.clone()))
                .collect::<Vec<_>>()
        })
        .await;
        println!("{}", mqtt_run.line("MQTT QoS 1 → HTTP backend"));
        let http_run = measure(seconds, |stop| {
            (0..CONNS * WINDOW)
                .map(|_| http_conn(http, stop.clone()))
                .collect::<Vec<_>>()
        })
        .await;
        println!("{}", http_run.line("HTTP POST → HTTP backend"));
        let r = |run: &Run| run.messages as f64 / run.wall.as_secs_f64();
        println!(
            "MQTT/HTTP throughput ratio {:.2}x; EMQX's published figure: 40 000 msg/s QoS 1 on 4 vCPUs (10 000 per vCPU), p99 9.5 ms",
            r(&mqtt_run) / r(&http_run)
        );
    });
}
