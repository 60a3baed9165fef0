//! The event pipeline survives Kafka outages and gateway restarts (issue: durable event
//! pipeline), against a real Kafka-protocol broker (Tansu, SQLite storage so it keeps its data
//! across the restart).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use warden::{Stack, StackParts, ensure_topics, make_bus};
use warden_config::{BusKind, RouteConfig, WardenConfig};
use warden_event::{Action, Decision, RequestEvent, Subject};
use warden_tests::tansu::Tansu;

fn config(
    broker: &Tansu,
    spool_dir: &std::path::Path,
    upstream: std::net::SocketAddr,
    devices: &[warden_sim::DemoDevice],
) -> WardenConfig {
    let mut c = WardenConfig::default();
    c.gateway.id = "gw-durable".into();
    c.gateway.listen = "127.0.0.1:0".parse().expect("addr");
    c.dashboard.listen = "127.0.0.1:0".parse().expect("addr");
    c.gateway.spool.dir = spool_dir.display().to_string();
    c.bus.kind = BusKind::Kafka;
    c.bus.brokers = broker.brokers();
    // Built from JSON so fields added later with defaults need no change here.
    let route: RouteConfig = serde_json::from_value(serde_json::json!({
        "name": "devices",
        "prefix": "/api",
        "upstream": format!("http://{upstream}"),
        "timeout_ms": 5000,
    }))
    .expect("route");
    c.routes = vec![route];
    c.api_keys = devices.iter().map(|d| d.config.clone()).collect();
    c
}

async fn read_events(config: &WardenConfig) -> Vec<RequestEvent> {
    let bus = make_bus(config).expect("bus");
    let mut events = Vec::new();
    warden_bus::read_to_end(
        &*bus,
        &config.bus.topics.events,
        Duration::from_secs(60),
        |m| {
            events.push(warden_event::decode::<RequestEvent>(&m.payload).expect("event"));
        },
    )
    .await
    .expect("read events");
    events
}

/// Every `(gateway, seq)` exactly once, consecutive from 0.
fn assert_exactly_once(events: &[RequestEvent], expected: u64) {
    let mut count: BTreeMap<u64, u32> = BTreeMap::new();
    for e in events {
        *count.entry(e.seq).or_default() += 1;
    }
    let dups: Vec<_> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    assert!(
        dups.is_empty(),
        "duplicated seq: {:?}",
        &dups[..dups.len().min(10)]
    );
    let missing: Vec<u64> = (0..expected).filter(|s| !count.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "missing seq ({} of them): {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        count.len() as u64,
        expected,
        "events beyond the requests sent"
    );
}

async fn wait_spool_drained(stack: &Stack) {
    let stats = stack.emit_stats.clone().expect("stats");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.spool_pending.load(Ordering::Relaxed) > 0
        || stats.published.load(Ordering::Relaxed) < stats.emitted.load(Ordering::Relaxed)
    {
        assert!(Instant::now() < deadline, "spool not drained: {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_loses_no_event_and_no_request() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,warden=info")
        .try_init();
    let mut broker = Tansu::start_sqlite();
    let spool = tempfile::tempdir().expect("spool dir");
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(warden_sim::demo_upstream(upstream));
    let devices = warden_sim::demo_keys(10, 3);
    let config = config(&broker, spool.path(), upstream_addr, &devices);
    let bus = make_bus(&config).expect("bus");
    ensure_topics(&*bus, &config).await.expect("topics");
    let stack = Stack::start(
        bus,
        &config,
        StackParts {
            gateway: true,
            ..StackParts::default()
        },
    )
    .await
    .expect("stack");
    let gw = stack.gateway_addr.expect("gateway");

    // Steady load: 10 devices, 5 requests/s each, until told to stop.
    let sent = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut load = Vec::new();
    for d in devices.clone() {
        let (sent, bad, mut stop) = (sent.clone(), bad.clone(), stop_rx.clone());
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        load.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => {}
                }
                let r = client
                    .post(format!("http://{gw}/api/devices/{}/telemetry", d.identity))
                    .header("x-api-key", &d.key)
                    .body("{\"t\":20}")
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !r.is_ok_and(|r| r.status() == 200) {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.stop();
    let stats = stack.emit_stats.clone().expect("stats");
    tokio::time::sleep(Duration::from_secs(21)).await;
    let pending_during = stats.spool_pending.load(Ordering::Relaxed);
    broker.start_again();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = stop_tx.send(true);
    for t in load {
        t.await.expect("load task");
    }
    let sent = sent.load(Ordering::Relaxed);
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "requests failed during the outage"
    );
    assert!(sent > 200, "load too small: {sent}");
    assert!(
        pending_during > 100,
        "events were not waiting in the spool during the outage: {pending_during}"
    );
    wait_spool_drained(&stack).await;
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    stack.stop().await.expect("stop");

    let events = read_events(&config).await;
    assert_exactly_once(&events, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_refuses_quarantined_devices_from_its_first_request() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,warden=info")
        .try_init();
    let broker = Tansu::start_sqlite();
    let spool = tempfile::tempdir().expect("spool dir");
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(warden_sim::demo_upstream(upstream));
    let devices = warden_sim::demo_keys(2, 5);
    let config = config(&broker, spool.path(), upstream_addr, &devices);
    let bus = make_bus(&config).expect("bus");
    ensure_topics(&*bus, &config).await.expect("topics");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let post = |gw: std::net::SocketAddr, d: &warden_sim::DemoDevice| {
        client
            .post(format!("http://{gw}/api/devices/{}/telemetry", d.identity))
            .header("x-api-key", d.key.clone())
            .body("{}")
            .send()
    };

    let first = Stack::start(
        bus.clone(),
        &config,
        StackParts {
            gateway: true,
            ..StackParts::default()
        },
    )
    .await
    .expect("stack");
    let gw = first.gateway_addr.expect("gateway");
    assert_eq!(post(gw, &devices[0]).await.expect("send").status(), 200);
    let now = warden_event::now_ns();
    let decision = Decision {
        v: warden_event::SCHEMA_VERSION,
        id: "q-1".into(),
        subject: Subject::identity(devices[0].identity.clone()),
        action: Action::Quarantine,
        until: Some(now + 600_000_000_000),
        reason: "test".into(),
        detector: "test".into(),
        score: 1.0,
        evidence: serde_json::Value::Null,
        decided_at: now,
        limit: None,
    };
    bus.producer()
        .send(
            &config.bus.topics.decisions,
            decision.subject.key().as_bytes(),
            &warden_event::encode(&decision),
        )
        .await
        .expect("publish decision");
    wait_spool_drained(&first).await;
    first.stop().await.expect("stop");

    // The restarted gateway (same id, same spool) knows the quarantine before it listens.
    let second = Stack::start(
        bus.clone(),
        &config,
        StackParts {
            gateway: true,
            ..StackParts::default()
        },
    )
    .await
    .expect("restart");
    let gw = second.gateway_addr.expect("gateway");
    assert_eq!(
        post(gw, &devices[0]).await.expect("send").status(),
        403,
        "very first request"
    );
    assert_eq!(post(gw, &devices[1]).await.expect("send").status(), 200);
    wait_spool_drained(&second).await;
    second.stop().await.expect("stop");

    // Sequence numbers continue across the restart: (gateway, seq) stays unique.
    let events = read_events(&config).await;
    assert_exactly_once(&events, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_event_path() {
    let broker = Tansu::start_sqlite();
    let spool = tempfile::tempdir().expect("spool dir");
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(warden_sim::demo_upstream(upstream));
    let devices = warden_sim::demo_keys(1, 9);
    let mut config = config(&broker, spool.path(), upstream_addr, &devices);
    config.metrics.listen = Some("127.0.0.1:0".parse().expect("addr"));
    let bus = make_bus(&config).expect("bus");
    ensure_topics(&*bus, &config).await.expect("topics");
    let stack = Stack::start(
        bus,
        &config,
        StackParts {
            gateway: true,
            ..StackParts::default()
        },
    )
    .await
    .expect("stack");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for _ in 0..3 {
        let r = client
            .post(format!(
                "http://{}/api/devices/{}/telemetry",
                stack.gateway_addr.expect("gw"),
                devices[0].identity
            ))
            .header("x-api-key", &devices[0].key)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
    }
    wait_spool_drained(&stack).await;
    let text = client
        .get(format!(
            "http://{}/metrics",
            stack.metrics_addr.expect("metrics")
        ))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    for line in [
        "warden_gateway_events_emitted_total{gateway=\"gw-durable\"} 3",
        "warden_gateway_events_spooled_total{gateway=\"gw-durable\"} 3",
        "warden_gateway_events_published_total{gateway=\"gw-durable\"} 3",
        "warden_gateway_events_dropped_total{gateway=\"gw-durable\"} 0",
        "warden_gateway_spool_pending_events{gateway=\"gw-durable\"} 0",
        "warden_gateway_upstream_up{gateway=\"gw-durable\",route=\"devices\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(text.contains("# TYPE warden_gateway_spool_bytes gauge"));
    stack.stop().await.expect("stop");
}

/// Every decision published reaches every running gateway (each within 5 s); the time it takes
/// is printed for docs/BENCHMARKS.md, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_reach_every_gateway_quickly() {
    let broker = Tansu::start_sqlite();
    let spool = tempfile::tempdir().expect("spool dir");
    let devices = warden_sim::demo_keys(1, 9);
    let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let base = config(&broker, spool.path(), upstream, &devices);
    let bus = make_bus(&base).expect("bus");
    ensure_topics(&*bus, &base).await.expect("topics");
    let mut gateways = Vec::new();
    for id in ["gw-p1", "gw-p2"] {
        let mut c = base.clone();
        c.gateway.id = id.into();
        gateways.push(
            Stack::start(
                bus.clone(),
                &c,
                StackParts {
                    gateway: true,
                    ..StackParts::default()
                },
            )
            .await
            .expect("stack"),
        );
    }
    let mut lags = Vec::new();
    for i in 0..20 {
        let subject = Subject::identity(format!("device-{i}"));
        let now = warden_event::now_ns();
        let d = Decision {
            v: warden_event::SCHEMA_VERSION,
            id: format!("p-{i}"),
            subject: subject.clone(),
            action: Action::Quarantine,
            until: Some(now + 600_000_000_000),
            reason: "propagation".into(),
            detector: "test".into(),
            score: 1.0,
            evidence: serde_json::Value::Null,
            decided_at: now,
            limit: None,
        };
        let started = Instant::now();
        bus.producer()
            .send(
                &base.bus.topics.decisions,
                subject.key().as_bytes(),
                &warden_event::encode(&d),
            )
            .await
            .expect("publish");
        for g in &gateways {
            let q = g.quarantine.clone().expect("quarantine");
            while !q.active(warden_event::now_ns()).contains(&subject) {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "decision {i} not enforced after 5 s"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        lags.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lags.sort();
    let p50 = lags[lags.len() / 2];
    let p99 = lags[lags.len() - 1];
    eprintln!("decision propagation to 2 gateways over Kafka (Tansu): p50 {p50:?}, max {p99:?}");
    for g in gateways {
        let stats = g.emit_stats.clone().expect("stats");
        assert_eq!(stats.decisions_applied.load(Ordering::Relaxed), 20);
        g.stop().await.expect("stop");
    }
}
