//! Events per second through the gateway's producer path: `Emitter::emit` (what the request
//! path calls) → in-memory queue → publisher task → [spool →] bus, until every event is
//! acknowledged. A load script, not a criterion bench (one timed run per variant is the
//! figure; criterion's repetition would mostly measure the broker's growing log):
//!
//! ```text
//! TANSU_BIN=/path/to/tansu cargo bench -p warden-benches --bench producer
//! ```
//!
//! Variants:
//! - `embedded`: the embedded bus (no spool: `warden up`);
//! - `kafka`: Tansu on loopback (SQLite storage), no spool;
//! - `kafka+spool`: Tansu, through the durable spool (fsync every 100 ms) — the gateway's
//!   default on Kafka.
//!
//! The Kafka variants need the Tansu binary (`TANSU_BIN`, or `tansu` on `PATH`); without it
//! they are skipped with a message. Events are real encoded `RequestEvent`s (~450 bytes of
//! JSON) from 1 000 identities. The emitter never blocks the request path: it counts a drop
//! when its queue is full, so the load generator keeps at most half a queue outstanding (a
//! closed loop: what is measured is what the path sustains, not how fast a queue overflows).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use warden_bus::spool::{FsyncPolicy, OverflowPolicy, Spool, SpoolConfig};
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, KafkaBus, KafkaConfig, TopicSpec};
use warden_event::{
    AuthInfo, AuthMethod, AuthResult, EventFormat, Outcome, Protocol, RequestEvent,
};
use warden_gateway::{Emitter, EventTopic};

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../tests/src/tansu.rs"]
mod tansu;

const TOPIC: &str = "warden.events";
const QUEUE: usize = 65_536;
const IDENTITIES: usize = 1_000;

fn event(i: usize) -> RequestEvent {
    let d = i % IDENTITIES;
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("0190c0de-0000-7000-8000-{i:012x}"),
        gateway: "gw-bench".into(),
        seq: 0,
        ts: warden_event::now_ns(),
        identity: format!("sensor-{d:05}"),
        tenant: format!("tenant-{}", d % 8),
        device_type: "temperature_sensor".into(),
        auth: AuthInfo {
            method: AuthMethod::ApiKey,
            result: AuthResult::Ok,
        },
        client_ip: format!("10.0.{}.{}", d / 256, d % 256),
        protocol: Protocol::Http,
        method: "POST".into(),
        route: "telemetry".into(),
        path: format!("/api/devices/sensor-{d:05}/telemetry"),
        status: 200,
        decision: Outcome::Allowed,
        latency_us: 850,
        bytes_in: 64,
        bytes_out: 120,
        user_agent: Some("warden-sim/1.0".into()),
        tls: None,
        reason: warden_event::Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

/// Emit `n` events and wait until the bus acknowledged all of them; events/s.
async fn run(name: &str, bus: Arc<dyn Bus>, spool: Option<Spool>, n: usize) -> f64 {
    bus.ensure_topics(&[TopicSpec {
        name: TOPIC.into(),
        partitions: 4,
        compacted: false,
        retention_ms: None,
    }])
    .await
    .unwrap_or_else(|e| panic!("{name}: topics: {e}"));
    let events: Vec<RequestEvent> = (0..n).map(event).collect();
    let topic = EventTopic {
        name: TOPIC.into(),
        format: EventFormat::default(),
    };
    let (emitter, task) = Emitter::start(bus.producer(), topic, QUEUE, spool);
    let stats = emitter.stats().clone();
    let started = Instant::now();
    for e in events {
        // Closed loop: keep at most half a queue not yet taken by the publisher.
        while stats.emitted.load(Ordering::Relaxed)
            - stats
                .published
                .load(Ordering::Relaxed)
                .max(stats.spooled.load(Ordering::Relaxed))
            > (QUEUE / 2) as u64
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        emitter.emit(e);
    }
    while stats.published.load(Ordering::Relaxed) < n as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{name}: not acknowledged after 10 minutes: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(emitter);
    let _ = task.await;
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0, "{name}: drops");
    let rate = n as f64 / secs;
    println!("{name:<12} {n:>8} events in {secs:>7.2} s = {rate:>9.0} events/s");
    rate
}

fn spool(dir: &std::path::Path) -> Spool {
    Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 64 << 20,
        max_bytes: 4 << 30,
        fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
        overflow: OverflowPolicy::DropNewest,
    })
    .unwrap_or_else(|e| panic!("spool: {e}"))
}

fn tansu_available() -> bool {
    std::env::var_os("TANSU_BIN").is_some()
        || std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("tansu").is_file()))
        || std::path::Path::new(tansu::CI_TANSU_BIN).is_file()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (n_embedded, n_kafka) = if quick {
        (2_000, 2_000)
    } else {
        (500_000, 200_000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        let embedded: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig {
            partition_capacity: n_embedded,
            default_partitions: 4,
        }));
        run("embedded", embedded, None, n_embedded).await;

        if !tansu_available() {
            println!("kafka variants skipped: no Tansu binary (set TANSU_BIN)");
            return;
        }
        for with_spool in [false, true] {
            // A fresh broker per variant, so each starts from an empty log.
            let broker = tansu::Tansu::start_sqlite();
            let bus: Arc<dyn Bus> = Arc::new(
                KafkaBus::connect(KafkaConfig::new(broker.brokers()))
                    .unwrap_or_else(|e| panic!("kafka: {e}")),
            );
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let (name, s) = if with_spool {
                ("kafka+spool", Some(spool(dir.path())))
            } else {
                ("kafka", None)
            };
            run(name, bus.clone(), s, n_kafka).await;
            let _ = bus.producer().flush(Duration::from_secs(30)).await;
        }
    });
}
