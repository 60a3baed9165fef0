//! The whole loop, run the same way on the embedded bus and on a real Kafka-protocol broker:
//! simulated fleet → gateway → events → processor → decision → gateway refuses the flooder,
//! other devices keep working, the decision reaches a gateway started afterwards, and every
//! request left exactly one event with consecutive `seq`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden::{Stack, StackParts, ensure_topics, make_bus};
use warden_bus::Bus;
use warden_config::{PipelineConfig, RouteAuth, RouteConfig, WardenConfig};
use warden_event::{Outcome, RequestEvent};
use warden_sim::{DemoDevice, FleetConfig, FleetStats, FloodConfig};

/// The default pipeline with a shorter warm-up (5 s instead of 20 s) so the test is quick; the
/// detector, thresholds and windows are the shipped ones.
pub fn fast_pipeline() -> anyhow::Result<PipelineConfig> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pipelines/default.toml"
    ))?;
    ensure!(
        text.contains("warmup_samples = 40"),
        "default pipeline changed its warm-up"
    );
    PipelineConfig::from_toml(&text.replace("warmup_samples = 40", "warmup_samples = 10"))
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A config for one gateway of the test: ephemeral ports, the upstream, the fleet's keys.
pub fn config(
    base: &WardenConfig,
    gateway_id: &str,
    upstream: SocketAddr,
    devices: &[DemoDevice],
) -> WardenConfig {
    let mut c = base.clone();
    c.gateway.id = gateway_id.into();
    c.gateway.listen = "127.0.0.1:0".parse().expect("addr");
    c.dashboard.listen = "127.0.0.1:0".parse().expect("addr");
    c.metrics.listen = Some("127.0.0.1:0".parse().expect("addr"));
    c.routes = vec![RouteConfig {
        name: "devices".into(),
        prefix: "/api".into(),
        upstream: format!("http://{upstream}"),
        upstream_tls: None,
        deprecation: None,
        resilience: Default::default(),
        timeout_ms: 5_000,
        strip_prefix: false,
        auth: RouteAuth::ApiKey,
        methods: vec![],
        require_mtls: false,
        forward_bearer: false,
        allow_underscore_headers: false,
    }];
    c.api_keys = devices.iter().map(|d| d.config.clone()).collect();
    c.dashboard.operators = vec![warden_config::OperatorConfig {
        name: "e2e".into(),
        role: warden_config::ConsoleRole::Viewer,
        token_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            CONSOLE_TOKEN.as_bytes(),
        )),
    }];
    c
}

/// The console token of the test's viewer (`Authorization: Bearer`).
pub const CONSOLE_TOKEN: &str = "e2e-console-viewer-token";

/// Send a raw request line (so the path is not normalised by a client library); returns the
/// status, the `x-request-id` header and the body.
pub async fn raw_request(
    addr: SocketAddr,
    request: &str,
) -> anyhow::Result<(u16, Option<String>, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let status: u16 = head.split(' ').nth(1).context("no status")?.parse()?;
    let rid = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("x-request-id: ")
            .map(str::to_owned)
    });
    Ok((status, rid, body.to_string()))
}

/// A generic error body: exactly status, code and the request id of the response.
fn assert_generic_error(status: u16, rid: Option<&str>, body: &str) -> anyhow::Result<()> {
    let v: Value =
        serde_json::from_str(body.trim()).with_context(|| format!("error body {body:?}"))?;
    let err = v.get("error").context("no error object")?;
    ensure!(err["status"] == status, "status in body: {v}");
    ensure!(
        err["request_id"].as_str() == rid,
        "request id in body {v} vs header {rid:?}"
    );
    let keys: HashSet<&str> = err
        .as_object()
        .context("object")?
        .keys()
        .map(String::as_str)
        .collect();
    ensure!(
        keys == HashSet::from(["status", "code", "request_id"]),
        "extra fields: {v}"
    );
    Ok(())
}

/// Probes of malformed and unauthenticated requests; returns how many requests were sent.
async fn probes(gw: SocketAddr, device: &DemoDevice) -> anyhow::Result<u64> {
    let cases = [
        (
            "GET /api/devices/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string(),
            401,
        ),
        (
            "GET /api/x HTTP/1.1
Host: t
X-Api-Key: wrong-key
Connection: close

"
            .to_string(),
            401,
        ),
        (
            format!(
                "GET /api/%2e%2e/admin HTTP/1.1\r\nHost: t\r\nX-Api-Key: {}\r\nConnection: close\r\n\r\n",
                device.key
            ),
            400,
        ),
        (
            format!(
                "GET /api/a/../../admin HTTP/1.1\r\nHost: t\r\nX-Api-Key: {}\r\nConnection: close\r\n\r\n",
                device.key
            ),
            400,
        ),
        (
            "GET /nothing-here HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string(),
            404,
        ),
    ];
    for (req, want) in &cases {
        let (status, rid, body) = raw_request(gw, req).await?;
        ensure!(status == *want, "{req:?} → {status}, want {want}: {body}");
        assert_generic_error(status, rid.as_deref(), &body)?;
    }
    Ok(cases.len() as u64)
}

async fn post_telemetry(
    client: &reqwest::Client,
    gw: SocketAddr,
    d: &DemoDevice,
) -> anyhow::Result<u16> {
    Ok(client
        .post(format!("http://{gw}/api/devices/{}/telemetry", d.identity))
        .header("x-api-key", &d.key)
        .body(r#"{"t":21.5}"#)
        .send()
        .await?
        .status()
        .as_u16())
}

/// Read the whole events topic.
async fn read_events(bus: &dyn Bus, topic: &str) -> anyhow::Result<Vec<RequestEvent>> {
    let mut events = Vec::new();
    let mut bad = 0;
    warden_bus::read_to_end(
        bus,
        topic,
        Duration::from_secs(30),
        |m| match warden_event::decode::<RequestEvent>(&m.payload) {
            Ok(e) => events.push(e),
            Err(_) => bad += 1,
        },
    )
    .await?;
    ensure!(bad == 0, "{bad} undecodable events");
    Ok(events)
}

/// Check one gateway's events: `expected` of them, `seq` exactly 0..expected, unique ids.
fn check_events(events: &[RequestEvent], gateway: &str, expected: u64) -> anyhow::Result<()> {
    let mine: Vec<&RequestEvent> = events.iter().filter(|e| e.gateway == gateway).collect();
    let mut seqs: Vec<u64> = mine.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    ensure!(
        seqs.len() as u64 == expected,
        "{gateway}: {} events for {expected} requests",
        seqs.len()
    );
    ensure!(
        seqs.iter().copied().eq(0..expected),
        "{gateway}: seq not consecutive from 0"
    );
    let ids: HashSet<&str> = mine.iter().map(|e| e.id.as_str()).collect();
    ensure!(ids.len() == mine.len(), "{gateway}: duplicate event ids");
    Ok(())
}

/// Run the loop on `base` (its `bus` section selects embedded or Kafka).
pub async fn full_loop(base: WardenConfig) -> anyhow::Result<()> {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(warden_sim::demo_upstream(upstream));
    let devices = warden_sim::demo_keys(30, 11);
    let flooder = devices[0].clone();
    let normal = devices[1].clone();

    // Each run gets its own spool (used with Kafka): sequence numbers continue across restarts
    // of a gateway with the same spool, and this test expects them from 0.
    let spool = tempfile::tempdir()?;
    let mut base = base;
    base.gateway.spool.dir = spool.path().display().to_string();
    let config_a = config(&base, "gw-a", upstream_addr, &devices);
    let bus = make_bus(&config_a)?;
    ensure_topics(&*bus, &config_a).await?;
    let stack = Stack::start(
        bus.clone(),
        &config_a,
        StackParts {
            gateway: true,
            processor: Some(fast_pipeline()?),
            dashboard: true,
        },
    )
    .await?;
    let gw = stack.gateway_addr.context("gateway")?;
    let dash = stack.dashboard_addr.context("dashboard")?;
    let mut sent_a = probes(gw, &normal).await?;

    // The fleet: 30 devices every 500 ms; device 0 floods at 100 req/s after 8 s.
    let stats = Arc::new(FleetStats::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let fleet = tokio::spawn(warden_sim::run_fleet(
        FleetConfig {
            gateway: format!("http://{gw}"),
            devices: devices.clone(),
            period: Duration::from_millis(500),
            seed: 11,
            flood: Some(FloodConfig {
                device: 0,
                start_after: Duration::from_secs(8),
                rate_per_s: 100.0,
            }),
        },
        stats.clone(),
        stop_rx,
    ));
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let snap = stats.snapshot();
        if let Some(t) = snap.first_refused_at {
            tracing::info!(refused_after_ms = t.as_millis() as u64, "Flooder refused.");
            break;
        }
        if Instant::now() > deadline {
            bail!("flooder never refused: {snap}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Keep traffic going a little: the flooder must stay refused, the others served.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let report = fleet.await??;
    tracing::info!(%report, "Fleet stopped.");
    let refused_after = report.first_refused_at.context("first refusal")?;
    ensure!(
        refused_after < Duration::from_secs(5),
        "quarantine took {refused_after:?}"
    );
    ensure!(
        report.normal_errors == 0 && report.flooder_errors == 0,
        "transport errors: {report}"
    );
    ensure!(report.normal_total() > 100, "fleet too small: {report}");
    ensure!(
        report.normal_ok() == report.normal_total(),
        "a normal device was refused: {report}"
    );
    ensure!(
        report.flooder.get(&403).copied().unwrap_or(0) > 50,
        "flooder not kept out: {report}"
    );
    sent_a += report.normal_total() + report.flooder_total();

    // The dashboard shows the alert and the quarantine.
    let client = reqwest::Client::builder().no_proxy().build()?;
    let q: Value = client
        .get(format!("http://{dash}/api/quarantine"))
        .bearer_auth(CONSOLE_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let quarantined: Vec<&str> = q
        .as_array()
        .context("array")?
        .iter()
        .filter_map(|d| d["subject"]["value"].as_str())
        .collect();
    ensure!(
        quarantined == [flooder.identity.as_str()],
        "dashboard quarantine: {q}"
    );
    let alerts: Value = client
        .get(format!("http://{dash}/api/alerts"))
        .bearer_auth(CONSOLE_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let alerts = alerts.as_array().context("array")?;
    ensure!(!alerts.is_empty(), "no alert on the dashboard");
    ensure!(
        alerts
            .iter()
            .all(|a| a["subject"]["value"] == flooder.identity.as_str()),
        "alert for a normal device: {alerts:?}"
    );
    // The alert explains itself: the rate over the window of the detector that fired
    // (`burst`: the last second; `rate_spike`: the last 10 s), at least its floor.
    let features = &alerts[0]["evidence"]["features"];
    let rate = ["burst_rate", "request_rate"]
        .iter()
        .filter_map(|f| features[*f].as_f64())
        .fold(0.0, f64::max);
    ensure!(rate >= 5.0, "alert evidence: {}", alerts[0]);

    // A gateway started now learns the quarantine before it serves its first request.
    let config_b = config(&base, "gw-b", upstream_addr, &devices);
    let stack_b = Stack::start(
        bus.clone(),
        &config_b,
        StackParts {
            gateway: true,
            ..StackParts::default()
        },
    )
    .await?;
    let q_b = stack_b.quarantine.clone().context("quarantine set")?;
    let active: Vec<String> = q_b
        .active(warden_event::now_ns())
        .into_iter()
        .map(|s| s.value)
        .collect();
    ensure!(
        active == [flooder.identity.clone()],
        "gateway b quarantine: {active:?}"
    );
    let gw_b = stack_b.gateway_addr.context("gateway b")?;
    ensure!(
        post_telemetry(&client, gw_b, &flooder).await? == 403,
        "gateway b served the flooder"
    );
    ensure!(
        post_telemetry(&client, gw_b, &normal).await? / 100 == 2,
        "gateway b refused a normal device"
    );

    // The metrics of a stack that served, refused and quarantined: everything documented and
    // everything the Grafana dashboards query is there.
    let scrape = client
        .get(format!(
            "http://{}/metrics",
            stack.metrics_addr.context("metrics")?
        ))
        .send()
        .await?
        .text()
        .await?;
    crate::metrics::check_scrape(&scrape).with_context(|| scrape.clone())?;
    let ready = client
        .get(format!(
            "http://{}/readyz",
            stack.metrics_addr.context("metrics")?
        ))
        .send()
        .await?;
    ensure!(ready.status() == 200, "not ready: {}", ready.text().await?);
    ensure!(
        scrape.lines().any(
            |l| l.starts_with("warden_processor_detector_firings_total{")
                && l.contains("action=\"quarantine\"")
        ),
        "no quarantine firing counted"
    );

    // Stopping drains every queued event to the bus.
    let emitted_a = stack.emit_stats.clone().context("stats")?;
    let stopping = std::time::Instant::now();
    stack.stop().await?;
    stack_b.stop().await?;
    // A gateway's publisher ends as soon as its queue is drained once the listeners closed;
    // something still holding the emitter would keep it waiting for its 15 s limit.
    ensure!(
        stopping.elapsed() < Duration::from_secs(14),
        "stopping two gateways took {:?}: an event publisher did not end after its listeners closed",
        stopping.elapsed()
    );
    let events = read_events(&*bus, &config_a.bus.topics.events).await?;
    ensure!(
        emitted_a.dropped.load(std::sync::atomic::Ordering::Relaxed) == 0,
        "events dropped"
    );
    check_events(&events, "gw-a", sent_a)?;
    check_events(&events, "gw-b", 2)?;
    let outcomes: BTreeMap<Outcome, usize> = events.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.decision).or_default() += 1;
        m
    });
    ensure!(
        outcomes.get(&Outcome::Quarantined).copied().unwrap_or(0) > 50,
        "{outcomes:?}"
    );
    ensure!(
        outcomes.get(&Outcome::DeniedAuth).copied().unwrap_or(0) == 2,
        "{outcomes:?}"
    );
    ensure!(
        outcomes.get(&Outcome::Invalid).copied().unwrap_or(0) == 3,
        "{outcomes:?}"
    );
    let refused: HashSet<&str> = events
        .iter()
        .filter(|e| e.decision == Outcome::Quarantined)
        .map(|e| e.identity.as_str())
        .collect();
    ensure!(
        refused == HashSet::from([flooder.identity.as_str()]),
        "quarantined events for {refused:?}"
    );
    Ok(())
}
