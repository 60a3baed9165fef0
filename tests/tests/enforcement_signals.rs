//! The default pipeline and the gateway's own enforcement: a device is not flagged for the
//! 403s and 429s Warden itself returned (its own quarantine, or its address's), while the same
//! refusals for what the client did (RBAC, unknown routes) still count; a throttle decision
//! is set relative to the identity's normal rate; query-string scraping raises the distinct
//! resources an identity reads.

use arrow::record_batch::RecordBatch;
use warden_config::PipelineConfig;
use warden_event::{
    Action, Alert, AuthInfo, AuthMethod, AuthResult, Decision, Outcome, Protocol, Reason,
    RequestEvent,
};
use warden_stream::Engine;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_767_600_000 * S;

fn default_pipeline() -> PipelineConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/default.toml");
    warden_stream::load_pipeline(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn event(identity: &str, n: u64, ts: i64) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("{identity}-{n}"),
        gateway: "gw".into(),
        seq: n,
        ts,
        identity: identity.into(),
        tenant: "acme".into(),
        device_type: "temperature_sensor".into(),
        auth: AuthInfo {
            method: AuthMethod::ApiKey,
            result: AuthResult::Ok,
        },
        client_ip: format!("10.0.{}.{}", n % 7, identity.len()),
        protocol: Protocol::Http,
        method: "POST".into(),
        route: "telemetry".into(),
        path: format!("/api/devices/{identity}/telemetry"),
        status: 202,
        decision: Outcome::Allowed,
        latency_us: 900,
        bytes_in: 120,
        bytes_out: 40,
        user_agent: None,
        tls: None,
        reason: Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

/// A fleet of `n` sensors each sending one request every `period_s` seconds for
/// `duration_s`, with `shape` applied to the events of `sensor-0` between `from_s` and
/// `to_s`; returns the alerts and decisions about `sensor-0`.
fn run(
    n: usize,
    period_s: f64,
    duration_s: i64,
    (from_s, to_s): (i64, i64),
    shape: &dyn Fn(&mut RequestEvent, u64) -> Vec<RequestEvent>,
) -> (Vec<Alert>, Vec<Decision>) {
    let mut engine = Engine::new(&default_pipeline()).unwrap_or_else(|e| panic!("{e}"));
    let mut events = Vec::new();
    let step = (period_s * 1e9) as i64;
    for d in 0..n {
        let id = format!("sensor-{d}");
        // Spread devices over the period.
        let mut ts = T0 + (d as i64 * step) / n as i64;
        let mut k = 0u64;
        while ts < T0 + duration_s * S {
            let mut e = event(&id, k, ts);
            let at = (ts - T0) / S;
            if d == 0 && at >= from_s && at < to_s {
                events.extend(shape(&mut e, k));
            } else {
                events.push(e);
            }
            k += 1;
            ts += step;
        }
    }
    events.sort_by_key(|e| e.ts);
    let (mut alerts, mut decisions) = (Vec::new(), Vec::new());
    // Batches of at most 512 events and one second of event time, as a processor keeping up
    // reads them (a batch spanning minutes would skip the slides in between).
    let mut batches: Vec<&[RequestEvent]> = Vec::new();
    let mut start = 0;
    for i in 1..=events.len() {
        if i == events.len() || i - start == 512 || events[i].ts - events[start].ts >= S {
            batches.push(&events[start..i]);
            start = i;
        }
    }
    for chunk in batches {
        let batch: RecordBatch = warden_event::to_record_batch(chunk).expect("batch");
        let now = chunk.last().map_or(T0, |e| e.ts);
        for o in engine.process(&batch, now).expect("process") {
            alerts.push(o.alert);
            decisions.extend(o.decision);
        }
    }
    let end = events.last().map_or(T0, |e| e.ts) + 10 * S;
    for o in engine.flush(end).expect("flush") {
        alerts.push(o.alert);
        decisions.extend(o.decision);
    }
    alerts.retain(|a| a.subject.value == "sensor-0");
    decisions.retain(|d| d.subject.value == "sensor-0");
    (alerts, decisions)
}

/// During [60 s, 240 s) sensor-0 keeps sending at 4 requests/s, each answered `status` for
/// `reason` (as during a quarantine, or as RBAC refusals).
fn refused(
    status: u16,
    reason: Reason,
    decision: Outcome,
) -> impl Fn(&mut RequestEvent, u64) -> Vec<RequestEvent> {
    move |e: &mut RequestEvent, k: u64| {
        (0..4)
            .map(|j| {
                let mut r = e.clone();
                r.id = format!("{}-r{j}", e.id);
                r.ts += j * 250_000_000;
                r.seq = k * 4 + j as u64;
                r.path = format!("/api/devices/sensor-0/config/{}", k % 3);
                r.route = "config".into();
                r.status = status;
                r.reason = reason;
                r.decision = decision;
                r
            })
            .collect()
    }
}

#[test]
fn wardens_own_refusals_are_not_the_clients_errors() {
    // The refusals of a quarantine: nothing enforcing fires on them.
    let (alerts, decisions) = run(
        40,
        1.0,
        420,
        (60, 240),
        &refused(403, Reason::Quarantine, Outcome::Quarantined),
    );
    let probing: Vec<&Alert> = alerts.iter().filter(|a| a.detector == "probing").collect();
    assert!(
        probing.is_empty(),
        "flagged for Warden's own 403s: {probing:#?}"
    );
    assert!(
        decisions.iter().all(|d| d.detector != "probing"),
        "{decisions:#?}"
    );
    // Nor on the 429s of a throttle.
    let (alerts, _) = run(
        40,
        1.0,
        420,
        (60, 240),
        &refused(429, Reason::Throttle, Outcome::Throttled),
    );
    assert!(
        alerts.iter().all(|a| a.detector != "probing"),
        "{alerts:#?}"
    );
    // The same refusals for what the client did (RBAC) are probing: the test can fail.
    let (alerts, decisions) = run(
        40,
        1.0,
        420,
        (60, 240),
        &refused(403, Reason::Rbac, Outcome::DeniedRbac),
    );
    assert!(
        alerts.iter().any(|a| a.detector == "probing"),
        "RBAC refusals must count: {alerts:#?}"
    );
    let throttle = decisions
        .iter()
        .find(|d| d.detector == "probing" && d.action == Action::Throttle)
        .expect("a throttle decision");
    // Set relative to its normal rate: 1 request/s, not a fixed figure.
    let limit = throttle.limit.expect("the decision carries its rate");
    assert!(
        (0.8..=1.6).contains(&limit.per_s),
        "relative to the normal 1/s: {limit:?}"
    );
    assert!(throttle.evidence["normal_rate_per_s"].is_number());
}

#[test]
fn throttles_follow_each_identitys_own_rate() {
    // The same probing from a device whose normal rate is 0.2 request/s: its throttle is 5×
    // tighter than the 1/s device's.
    let (_, decisions) = run(
        40,
        5.0,
        900,
        (300, 480),
        &refused(403, Reason::Rbac, Outcome::DeniedRbac),
    );
    let limit = decisions
        .iter()
        .find(|d| d.action == Action::Throttle)
        .and_then(|d| d.limit)
        .expect("a throttle with a limit");
    assert!(
        (0.15..=0.4).contains(&limit.per_s),
        "relative to the normal 0.2/s: {limit:?}"
    );
}

#[test]
fn query_string_scraping_raises_distinct_resources() {
    // sensor-0 reads `/api/catalog?page=N` at 3 requests/s (3× its rate), a new page each
    // time: one path, many resources.
    let scrape = |e: &mut RequestEvent, k: u64| {
        (0..3)
            .map(|j| {
                let mut r = e.clone();
                r.id = format!("{}-s{j}", e.id);
                r.ts += j * 333_000_000;
                let q = format!("page={}", k * 3 + j as u64);
                r.method = "GET".into();
                r.route = "catalog".into();
                r.path = "/api/catalog".into();
                r.query = warden_event::query::shape(&q);
                r.query_hash = warden_event::query::hash(b"k", &q);
                r.bytes_out = 2_000;
                r
            })
            .collect()
    };
    let (alerts, _) = run(40, 1.0, 420, (120, 300), &scrape);
    let breadth: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.detector == "breadth_vs_peers")
        .collect();
    assert!(!breadth.is_empty(), "query scraping not seen: {alerts:#?}");
    let seen = breadth[0].evidence.features["distinct_resources_2m"];
    assert!(seen >= 12.0, "distinct resources {seen}");
    // Raw query values never reach an alert.
    let text = serde_json::to_string(&alerts).expect("json");
    assert!(!text.contains("page=1"), "{text}");
}

#[test]
fn a_low_rate_flood_is_caught_against_the_devices_own_pace() {
    // Sensors reporting every 30 s; after an hour of that (the history `route_pace` needs),
    // sensor-0 sends 12 reports per 30 s (0.4/s): far under any absolute floor, 12× its own
    // pace.
    let flood = |e: &mut RequestEvent, k: u64| {
        (0..12)
            .map(|j| {
                let mut r = e.clone();
                r.id = format!("{}-f{j}", e.id);
                r.ts += j * 2_500_000_000;
                r.seq = k * 12 + j as u64;
                r
            })
            .collect()
    };
    let (alerts, decisions) = run(60, 30.0, 4200, (3700, 4000), &flood);
    let by: Vec<&str> = alerts.iter().map(|a| a.detector.as_str()).collect();
    assert!(by.contains(&"route_pace"), "{by:?}");
    // Held to its normal pace: a throttle with a limit near its 2 requests a minute.
    let throttle = decisions
        .iter()
        .find(|d| d.action == Action::Throttle)
        .unwrap_or_else(|| panic!("{decisions:#?}"));
    let limit = throttle.limit.expect("a limit");
    assert!(limit.per_s < 0.1, "{limit:?}");
}
