//! Shared by the gateway bench and the load-test server: a fast backend, and a gateway with
//! every layer on — API-key identity, 100k quarantined subjects, rate limits, an RBAC policy
//! with owner scoping, content-type and JSON Schema validation, events to the embedded bus.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{WardenConfig, hash_api_key};
use warden_event::{Action, Decision, Subject};
use warden_gateway::Gateway;

/// The device key every bench request uses (identity `dev-1`).
pub const KEY: &str = "bench-key-dev-1-0123456789abcdef";
/// The telemetry body every bench request posts.
pub const BODY: &str = r#"{"t":21.5,"h":40.1,"seq":12345}"#;
/// Where it goes (owner-scoped in the policy).
pub const PATH: &str = "/api/devices/dev-1/telemetry";

const POLICY: &str = r#"
[roles.telemetry_writer]
allow = [
  { methods = ["POST"], path = "/api/devices/{identity}/telemetry" },
  { methods = ["GET"], path = "/api/devices/{identity}/config" },
]
[roles.firmware_reader]
allow = [{ methods = ["GET"], path = "/api/firmware/**" }]
[device_types.temperature_sensor]
roles = ["telemetry_writer"]
[[deny]]
name = "sensors-never-touch-firmware"
methods = ["*"]
path = "/api/firmware/**"
device_types = ["temperature_sensor"]
"#;

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["t"],
  "properties": { "t": { "type": "number" }, "h": { "type": "number" }, "seq": { "type": "integer" } },
  "additionalProperties": false
}"#;

/// The full-stack config, its policy and schema files written to `dir`.
pub fn config(listen: SocketAddr, backend: SocketAddr, dir: &Path) -> WardenConfig {
    let policy = dir.join("rbac.toml");
    let schema = dir.join("telemetry.schema.json");
    std::fs::write(&policy, POLICY).expect("write policy");
    std::fs::write(&schema, SCHEMA).expect("write schema");
    let text = format!(
        r#"
[gateway]
id = "gw-bench"
listen = "{listen}"
event_queue = 262144

[rbac]
policy = "{policy}"
reload_interval_ms = 0

[limits]
max_keys = 131072
[limits.identity]
rate_per_s = 1000000.0
burst = 1000000
[limits.identity_route]
rate_per_s = 1000000.0
burst = 1000000
[limits.tenant]
rate_per_s = 1000000.0
burst = 1000000

[validation.routes.devices]
max_body_bytes = 4096
content_types = ["application/json"]
json_schema = "{schema}"

[[routes]]
name = "devices"
prefix = "/api/devices"
upstream = "http://{backend}"
auth = "api_key"

[[api_keys]]
id = "k-dev-1"
sha256 = "{sha}"
identity = "dev-1"
tenant = "acme"
device_type = "temperature_sensor"
"#,
        policy = policy.display(),
        schema = schema.display(),
        sha = hash_api_key(KEY),
    );
    WardenConfig::from_toml(&text).unwrap_or_else(|e| panic!("bench config: {e}"))
}

/// A backend answering `ok` to anything (after reading the body), like the demo upstream.
pub async fn backend(listen: SocketAddr) -> SocketAddr {
    let app = axum::Router::new().fallback(|body: bytes::Bytes| async move {
        let _ = body.len();
        "ok"
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A started gateway on an embedded bus holding `quarantined` live quarantines of other
/// identities (read at start, as from the decisions topic).
pub async fn gateway(config: &WardenConfig, quarantined: usize) -> Gateway {
    let bus = EmbeddedBus::new(EmbeddedConfig::default());
    let t = &config.bus.topics;
    bus.ensure_topics(&[
        TopicSpec {
            name: t.events.clone(),
            partitions: 4,
            compacted: false,
            retention_ms: None,
        },
        TopicSpec {
            name: t.decisions.clone(),
            partitions: 4,
            compacted: true,
            retention_ms: None,
        },
    ])
    .await
    .expect("topics");
    let producer = bus.producer();
    let now = warden_event::now_ns();
    for i in 0..quarantined {
        let d = quarantine(&format!("other-{i}"), now);
        producer
            .send(
                &t.decisions,
                d.subject.key().as_bytes(),
                &warden_event::encode(&d),
            )
            .await
            .expect("decision");
    }
    Gateway::start(config, Arc::new(bus) as Arc<dyn Bus>)
        .await
        .expect("gateway")
}

/// A one-hour quarantine of `identity` decided at `now`.
pub fn quarantine(identity: &str, now: i64) -> Decision {
    Decision {
        v: warden_event::SCHEMA_VERSION,
        id: format!("bench-{identity}-{now}"),
        subject: Subject::identity(identity),
        action: Action::Quarantine,
        until: Some(now + 3_600_000_000_000),
        reason: "bench".into(),
        detector: "bench".into(),
        score: 0.0,
        evidence: serde_json::Value::Null,
        decided_at: now,
        limit: None,
    }
}
