//! The JSON Schemas in `schemas/` are what other consumers of Warden's topics rely on: they
//! must match the types (regenerate with `UPDATE_SCHEMAS=1 cargo test -p warden-event`) and
//! accept real serialised values while refusing malformed ones.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use warden_event::*;

fn schema_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name)
}

fn check_file<T: schemars::JsonSchema>(name: &str) -> Value {
    let generated = serde_json::to_value(schemars::schema_for!(T)).expect("schema");
    let path = schema_path(name);
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        let text = serde_json::to_string_pretty(&generated).expect("json") + "\n";
        std::fs::write(&path, text).expect("write schema");
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let committed: Value = serde_json::from_str(&text).expect("committed schema is JSON");
    assert_eq!(
        committed, generated,
        "{name} is stale: run UPDATE_SCHEMAS=1 cargo test -p warden-event"
    );
    committed
}

fn assert_valid(schema: &Value, value: &Value) {
    let v = jsonschema::validator_for(schema).expect("valid schema");
    let errors: Vec<String> = v.iter_errors(value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?} for {value}");
}

fn assert_invalid(schema: &Value, value: &Value) {
    let v = jsonschema::validator_for(schema).expect("valid schema");
    assert!(!v.is_valid(value), "should be refused: {value}");
}

pub fn sample_event() -> RequestEvent {
    RequestEvent {
        v: SCHEMA_VERSION,
        id: "0193-abc".into(),
        gateway: "gw-1".into(),
        seq: 42,
        ts: 1_700_000_000_123_456_789,
        identity: "sensor-0001".into(),
        tenant: "acme".into(),
        device_type: "temperature_sensor".into(),
        auth: AuthInfo {
            method: AuthMethod::ApiKey,
            result: AuthResult::Ok,
        },
        client_ip: "10.1.2.3".into(),
        protocol: Protocol::Http,
        method: "POST".into(),
        route: "telemetry".into(),
        path: "/api/devices/sensor-0001/telemetry".into(),
        status: 201,
        decision: Outcome::Allowed,
        latency_us: 812,
        bytes_in: 64,
        bytes_out: 12,
        user_agent: Some("sensor-fw/1.2".into()),
        tls: Some(TlsInfo {
            version: "TLSv1.3".into(),
            client_cert_fingerprint: None,
        }),
        reason: warden_event::Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

#[test]
fn request_event_schema_matches_values() {
    let schema = check_file::<RequestEvent>("request_event.v2.json");
    let event = sample_event();
    let value = serde_json::to_value(&event).expect("json");
    assert_valid(&schema, &value);
    let mut anonymous = event.clone();
    anonymous.identity = ANONYMOUS.into();
    anonymous.decision = Outcome::DeniedAuth;
    anonymous.auth.result = AuthResult::Missing;
    anonymous.user_agent = None;
    anonymous.tls = None;
    anonymous.reason = Reason::Auth;
    assert_valid(&schema, &serde_json::to_value(&anonymous).expect("json"));
    // A scraper's query: its shape and hash, as the gateway records them.
    let mut scraped = event.clone();
    scraped.query = warden_event::query::shape("page=7&sort=name");
    scraped.query_hash = warden_event::query::hash(b"k", "page=7&sort=name");
    let scraped = serde_json::to_value(&scraped).expect("json");
    assert_eq!(scraped["query"], json!("page=int&sort=str"));
    assert_valid(&schema, &scraped);
    // Version 1 objects (without the new fields) are valid too.
    let mut v1 = serde_json::to_value(&event).expect("json");
    for k in ["reason", "query", "query_hash"] {
        v1.as_object_mut().expect("object").remove(k);
    }
    v1["v"] = json!(1);
    assert_valid(&schema, &v1);
    let mut bad_reason = serde_json::to_value(&event).expect("json");
    bad_reason["reason"] = json!("because");
    assert_invalid(&schema, &bad_reason);

    let mut missing = value.clone();
    missing.as_object_mut().expect("object").remove("seq");
    assert_invalid(&schema, &missing);
    let mut bad_enum = value.clone();
    bad_enum["decision"] = json!("maybe");
    assert_invalid(&schema, &bad_enum);
    let mut extra = value;
    extra["surprise"] = json!(1);
    assert_invalid(&schema, &extra);
}

#[test]
fn decision_and_alert_schemas_match_values() {
    let d_schema = check_file::<Decision>("decision.v2.json");
    let a_schema = check_file::<Alert>("alert.v2.json");
    let decision = Decision {
        v: SCHEMA_VERSION,
        id: "d-1".into(),
        subject: Subject::identity("sensor-0001"),
        action: Action::Quarantine,
        until: Some(1_700_000_300_000_000_000),
        reason: "rate spike".into(),
        detector: "rate_spike".into(),
        score: 42.5,
        evidence: json!({"features": {"request_rate": 50.0}}),
        decided_at: 1_700_000_000_000_000_000,
        limit: None,
    };
    assert_valid(&d_schema, &serde_json::to_value(&decision).expect("json"));
    let release = Decision {
        action: Action::Release,
        until: None,
        ..decision.clone()
    };
    assert_valid(&d_schema, &serde_json::to_value(&release).expect("json"));
    let throttle = Decision {
        action: Action::Throttle,
        limit: Some(ThrottleLimit {
            per_s: 0.2,
            burst: 5,
        }),
        ..decision.clone()
    };
    let t = serde_json::to_value(&throttle).expect("json");
    assert_eq!(t["limit"], json!({"per_s": 0.2, "burst": 5}));
    assert_valid(&d_schema, &t);
    let back: Decision =
        warden_event::decode(&serde_json::to_vec(&t).expect("bytes")).expect("decode");
    assert_eq!(back, throttle);
    let mut bad = serde_json::to_value(&decision).expect("json");
    bad["subject"]["kind"] = json!("planet");
    assert_invalid(&d_schema, &bad);

    let alert = Alert {
        v: SCHEMA_VERSION,
        id: "a-1".into(),
        ts: 1_700_000_000_000_000_000,
        pipeline: "default".into(),
        detector: "rate_spike".into(),
        subject: decision.subject.clone(),
        score: 42.5,
        severity: Severity::High,
        message: "request_rate spiked".into(),
        evidence: Evidence {
            features: BTreeMap::from([("request_rate".into(), 50.0)]),
            baseline: BTreeMap::from([("mean".into(), 0.2), ("std".into(), 0.5)]),
            threshold: 8.0,
            window: "identity_10s".into(),
            window_end: 1_700_000_000_000_000_000,
        },
        action: Some(Action::Quarantine),
        decision_id: Some("d-1".into()),
    };
    assert_valid(&a_schema, &serde_json::to_value(&alert).expect("json"));
    let mut bad = serde_json::to_value(&alert).expect("json");
    bad["severity"] = json!("apocalyptic");
    assert_invalid(&a_schema, &bad);
}

#[test]
fn wire_round_trip_and_version_check() {
    let event = sample_event();
    let bytes = encode(&event);
    let back: RequestEvent = decode(&bytes).expect("decode");
    assert_eq!(back, event);
    let mut future: Value = serde_json::from_slice(&bytes).expect("json");
    future["v"] = json!(3);
    let err = decode::<RequestEvent>(&serde_json::to_vec(&future).expect("json")).expect_err("v3");
    assert!(matches!(err, DecodeError::Version { found: 3 }));
    assert!(decode::<RequestEvent>(b"{not json").is_err());
}

#[test]
fn record_batch_has_one_row_per_event() {
    use arrow::array::{Array, AsArray};
    let mut events = vec![sample_event(); 3];
    events[1].seq = 43;
    events[2].tls = None;
    let batch = to_record_batch(&events).expect("batch");
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(batch.schema(), request_event_schema());
    let seq = batch
        .column_by_name("seq")
        .expect("seq")
        .as_primitive::<arrow::datatypes::UInt64Type>();
    assert_eq!(seq.values().to_vec(), vec![42, 43, 42]);
    let tls = batch.column_by_name("tls_version").expect("tls");
    assert!(tls.is_null(2) && !tls.is_null(0));
    assert_eq!(to_record_batch(&[]).expect("empty").num_rows(), 0);
}
