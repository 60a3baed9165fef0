//! Helpers of the processor durability tests: request events published straight to the events
//! topic (as gateways do), and the decisions the processors published.
//!
//! Also compiled into `crates/warden/tests/processor_crash.rs` by path: keep to `std`, `tokio`,
//! `warden-bus` and `warden-event`.

use std::collections::BTreeMap;
use std::time::Duration;

use warden_bus::Bus;
use warden_event::{
    Action, AuthInfo, AuthMethod, AuthResult, Decision, Outcome, Protocol, RequestEvent,
};

/// A pipeline that quarantines an identity with more than `above` requests in 5 minutes (no
/// learning, so the outcome depends only on the events counted: a processor that lost part
/// of a device's requests misses its quarantine).
pub fn counting_pipeline(group: &str, above: u32) -> String {
    format!(
        r#"
name = "counting"
[source]
group = "{group}"
batch_max_wait_ms = 20
[[window]]
name = "w"
key = "identity"
size_ms = 300000
slide_ms = 5000
[[feature]]
name = "requests"
window = "w"
type = "count"
[[detector]]
name = "burst"
type = "threshold"
feature = "requests"
above = {above}
[decision]
quarantine_ttl_s = 3600
max_quarantines_per_minute = 1000
"#
    )
}

/// A request event of `identity` now, with a unique id.
pub fn event(identity: &str, seq: u64) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("{identity}-{seq}-{}", warden_event::now_ns()),
        gateway: "gw-test".into(),
        seq,
        ts: warden_event::now_ns(),
        identity: identity.into(),
        tenant: "t".into(),
        device_type: "sensor".into(),
        auth: AuthInfo {
            method: AuthMethod::ApiKey,
            result: AuthResult::Ok,
        },
        client_ip: "10.0.0.1".into(),
        protocol: Protocol::Http,
        method: "POST".into(),
        route: "telemetry".into(),
        path: format!("/api/devices/{identity}/telemetry"),
        status: 200,
        decision: Outcome::Allowed,
        latency_us: 100,
        bytes_in: 10,
        bytes_out: 10,
        user_agent: None,
        tls: None,
        reason: warden_event::Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

/// Publish `n` requests of each of `identities` (interleaved), acknowledged, `pause` apart.
pub async fn publish(
    bus: &dyn Bus,
    topic: &str,
    identities: &[String],
    n: u64,
    pause: Duration,
) -> u64 {
    let producer = bus.producer();
    let mut sent = 0;
    for i in 0..n {
        for id in identities {
            let e = event(id, i);
            producer
                .send(topic, e.key().as_bytes(), &warden_event::encode(&e))
                .await
                .expect("publish event");
            sent += 1;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    sent
}

/// Every quarantine published, per subject value (the raw topic, not its compacted view: a
/// quarantine published twice shows up twice).
pub async fn quarantines(bus: &dyn Bus, topic: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    warden_bus::read_to_end(bus, topic, Duration::from_secs(60), |m| {
        if let Ok(d) = warden_event::decode::<Decision>(&m.payload)
            && d.action == Action::Quarantine
        {
            *out.entry(d.subject.value).or_insert(0) += 1;
        }
    })
    .await
    .expect("read decisions");
    out
}

/// Poll `f` every 100 ms until it holds; panics with `what` after `timeout`.
pub async fn until(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
