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
//! - `plain`: the reference — a plain librdkafka `FutureProducer` with the same settings
//!   (idempotent, `acks=all`, lz4, `linger.ms=5`) sending the same encoded records, up to
//!   100 000 sends in flight (librdkafka's own queue limit), into the same broker;
//! - `kafka`: the gateway's emitter, no spool;
//! - `kafka+spool`: the emitter through the durable spool (fsync every 100 ms) — the gateway's
//!   default on Kafka.
//!
//! The three Kafka variants run on Tansu with SQLite storage and again with memory storage
//! (a fresh broker per variant), and the bench prints the emitter's ratio to `plain` for each.
//! Then `drain`: with the broker stopped, events arrive at a fixed rate for 60 s (5 s with
//! `PRODUCER_BENCH_OUTAGE_S=5`) at 1 000 events/s (`PRODUCER_BENCH_DRAIN_RATE`) into the spool; the broker comes back while events keep
//! arriving at that rate, and the bench reports how fast the backlog drains, as a multiple of
//! the incoming rate.
//!
//! The Kafka variants need the Tansu binary (`TANSU_BIN`, or `tansu` on `PATH`); without it
//! they are skipped with a message. Events are real encoded `RequestEvent`s (~450 bytes of
//! JSON) from 1 000 identities. The emitter never blocks the request path: it counts a drop
//! when its queue is full, so the load generator keeps at most half a queue outstanding (a
//! closed loop: what is measured is what the path sustains, not how fast a queue overflows).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use warden_bus::spool::{FsyncPolicy, OverflowPolicy, Spool, SpoolConfig};
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, KafkaBus, KafkaConfig, TopicSpec};
use warden_event::{
    AuthInfo, AuthMethod, AuthResult, EventFormat, Outcome, Protocol, RequestEvent, encode_event,
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

async fn make_topic(name: &str, bus: &dyn Bus) {
    bus.ensure_topics(&[TopicSpec {
        name: TOPIC.into(),
        partitions: 4,
        compacted: false,
        retention_ms: None,
    }])
    .await
    .unwrap_or_else(|e| panic!("{name}: topics: {e}"));
}

/// The reference: a plain librdkafka producer, the bus's settings, the same encoded records,
/// keyed by identity like the emitter's; events/s until every one is acknowledged.
async fn run_plain(name: &str, brokers: &str, n: usize) -> f64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()
        .unwrap_or_else(|e| panic!("{name}: producer: {e}"));
    let records: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let e = event(i);
            (e.identity.clone(), encode_event(&e, EventFormat::default()))
        })
        .collect();
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut acked = 0usize;
    for (key, payload) in &records {
        while in_flight.len() >= 100_000 {
            if let Some(r) = in_flight.next().await {
                if let Err((e, _)) = r {
                    panic!("{name}: delivery failed: {e}");
                }
                acked += 1;
            }
        }
        let record = FutureRecord::to(TOPIC)
            .key(key.as_str())
            .payload(payload.as_slice());
        in_flight.push(producer.send(record, Duration::from_secs(60)));
    }
    while let Some(r) = in_flight.next().await {
        if let Err((e, _)) = r {
            panic!("{name}: delivery failed: {e}");
        }
        acked += 1;
    }
    let _ = producer.flush(Duration::from_secs(30));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(acked, n);
    let rate = n as f64 / secs;
    println!("{name:<20} {n:>8} events in {secs:>7.2} s = {rate:>9.0} events/s");
    rate
}

/// Emit `n` events and wait until the bus acknowledged all of them; events/s.
async fn run(name: &str, bus: Arc<dyn Bus>, spool: Option<Spool>, n: usize) -> f64 {
    make_topic(name, &*bus).await;
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
    println!("{name:<20} {n:>8} events in {secs:>7.2} s = {rate:>9.0} events/s");
    rate
}

/// A 60 s (or `outage_s`) broker outage at `rate` events/s into the spool, then recovery with
/// events still arriving at `rate`: how fast the backlog drains, as a multiple of `rate`.
async fn run_drain(outage_s: f64, rate: f64) {
    let mut broker = tansu::Tansu::start_sqlite();
    let bus: Arc<dyn Bus> = Arc::new(
        KafkaBus::connect(KafkaConfig::new(broker.brokers()))
            .unwrap_or_else(|e| panic!("kafka: {e}")),
    );
    make_topic("drain", &*bus).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let topic = EventTopic {
        name: TOPIC.into(),
        format: EventFormat::default(),
    };
    let (emitter, task) = Emitter::start(bus.producer(), topic, QUEUE, Some(spool(dir.path())));
    let stats = emitter.stats().clone();
    broker.stop();
    // Paced arrivals: event i is due at i / rate seconds.
    let started = Instant::now();
    let mut i = 0usize;
    let emit_until = |until: f64, i: &mut usize| {
        let due = (until * rate) as usize;
        while *i < due {
            emitter.emit(event(*i));
            *i += 1;
        }
    };
    while started.elapsed().as_secs_f64() < outage_s {
        emit_until(started.elapsed().as_secs_f64(), &mut i);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let backlog = i as u64 - stats.published.load(Ordering::Relaxed);
    broker.start_again();
    let back = Instant::now();
    // Drained when what is still unacknowledged is no more than what arrives in 100 ms (plus
    // one publisher batch): with arrivals continuing, a few events are always in flight, so
    // "everything acknowledged" may never be observed at a poll.
    let in_flight = (rate * 0.1) as u64 + 512;
    loop {
        emit_until(started.elapsed().as_secs_f64(), &mut i);
        if (i as u64).saturating_sub(stats.published.load(Ordering::Relaxed)) <= in_flight {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(600),
            "drain: backlog not drained after 10 minutes: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_s = back.elapsed().as_secs_f64();
    // Over the drain the publisher delivered the backlog plus what kept arriving.
    let delivered_rate = (backlog as f64 + drain_s * rate) / drain_s;
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0, "drain: drops");
    println!(
        "drain                {backlog:>8} events spooled during a {outage_s:.0} s outage at {rate:.0}/s; drained in {drain_s:.2} s with arrivals continuing: {delivered_rate:.0} events/s = {:.1}x the incoming rate",
        delivered_rate / rate
    );
    drop(emitter);
    let _ = task.await;
}

fn spool(dir: &std::path::Path) -> Spool {
    Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 64 << 20,
        max_bytes: 4 << 30,
        fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
        overflow: OverflowPolicy::DropNewest,
        keys: None,
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
        for storage in ["sqlite", "memory"] {
            let start = || {
                if storage == "sqlite" {
                    tansu::Tansu::start_sqlite()
                } else {
                    tansu::Tansu::start()
                }
            };
            let broker = start();
            let bus: Arc<dyn Bus> = Arc::new(
                KafkaBus::connect(KafkaConfig::new(broker.brokers()))
                    .unwrap_or_else(|e| panic!("kafka: {e}")),
            );
            make_topic("plain", &*bus).await;
            let plain = run_plain(&format!("plain ({storage})"), &broker.brokers(), n_kafka).await;
            drop(broker);
            for with_spool in [false, true] {
                // A fresh broker per variant, so each starts from an empty log.
                let broker = start();
                let bus: Arc<dyn Bus> = Arc::new(
                    KafkaBus::connect(KafkaConfig::new(broker.brokers()))
                        .unwrap_or_else(|e| panic!("kafka: {e}")),
                );
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
                let (name, s) = if with_spool {
                    (format!("kafka+spool ({storage})"), Some(spool(dir.path())))
                } else {
                    (format!("kafka ({storage})"), None)
                };
                let rate = run(&name, bus.clone(), s, n_kafka).await;
                println!("{:<20} {:.2}x plain", "", rate / plain);
                let _ = bus.producer().flush(Duration::from_secs(30)).await;
            }
        }
        let outage_s = std::env::var("PRODUCER_BENCH_OUTAGE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 2.0 } else { 60.0 });
        let rate = std::env::var("PRODUCER_BENCH_DRAIN_RATE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000.0);
        run_drain(outage_s, rate).await;
    });
}
