//! Shared by the processor tests on the embedded bus: the bus with the three topics, request
//! events published as gateways do, and the quarantines the processor published.

use std::sync::Arc;
use std::time::Duration;

use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{TopicsConfig, WardenConfig};
use warden_event::{
    Action, AuthInfo, AuthMethod, AuthResult, Decision, Outcome, Protocol, RequestEvent,
};

/// An embedded bus with the default topics, each with `partitions` partitions.
pub async fn bus(partitions: i32) -> (Arc<dyn Bus>, TopicsConfig) {
    let topics = WardenConfig::default().bus.topics;
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
    let specs: Vec<TopicSpec> = [&topics.events, &topics.decisions, &topics.alerts]
        .iter()
        .map(|t| TopicSpec {
            name: (*t).clone(),
            partitions,
            compacted: *t == &topics.decisions,
            retention_ms: None,
        })
        .collect();
    bus.ensure_topics(&specs).await.expect("topics");
    (bus, topics)
}

/// Request `i` of `identity`, at event time `ts`.
pub fn event(identity: &str, i: u64, ts: i64) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("{identity}-{i}"),
        gateway: "gw".into(),
        seq: i,
        ts,
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
        path: "/t".into(),
        status: 200,
        decision: Outcome::Allowed,
        latency_us: 1,
        bytes_in: 1,
        bytes_out: 1,
        user_agent: None,
        tls: None,
        reason: warden_event::Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

/// Publish `n` requests of `identity`, request `i` at event time `ts(i)`.
pub async fn publish(
    bus: &dyn Bus,
    topics: &TopicsConfig,
    identity: &str,
    n: u64,
    ts: impl Fn(u64) -> i64,
) {
    let p = bus.producer();
    for i in 0..n {
        let e = event(identity, i, ts(i));
        p.send(
            &topics.events,
            e.key().as_bytes(),
            &warden_event::encode(&e),
        )
        .await
        .expect("send");
    }
}

/// The subjects quarantined so far, sorted.
pub async fn quarantined(bus: &dyn Bus, topics: &TopicsConfig) -> Vec<String> {
    let mut out = Vec::new();
    warden_bus::read_to_end(bus, &topics.decisions, Duration::from_secs(5), |m| {
        if let Ok(d) = warden_event::decode::<Decision>(&m.payload)
            && d.action == Action::Quarantine
        {
            out.push(d.subject.value);
        }
    })
    .await
    .expect("read decisions");
    out.sort();
    out
}
