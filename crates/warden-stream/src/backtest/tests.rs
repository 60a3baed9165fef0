use warden_event::{AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, RequestEvent};

use super::*;
use crate::archive::ArchiveWriter;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_767_603_600 * S;

fn event(identity: &str, ts: i64) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("{identity}-{ts}"),
        gateway: "gw".into(),
        seq: 0,
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
        path: format!("/api/devices/{identity}/telemetry"),
        status: 201,
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

fn pipeline() -> PipelineConfig {
    crate::load_pipeline(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/default.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn replaying_an_archive_reports_what_would_have_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = ArchiveWriter::new(dir.path().to_path_buf(), 1 << 20).expect("writer");
    // 50 devices, one request a second each, for 2 minutes; dev-7 floods at 50/s from 60 s.
    let mut events = Vec::new();
    for sec in 0..120i64 {
        for d in 0..50 {
            events.push(event(&format!("dev-{d}"), T0 + sec * S + d * 13_000_000));
        }
        if sec >= 60 {
            for k in 0..50 {
                events.push(event("dev-7", T0 + sec * S + k * 20_000_000));
            }
        }
    }
    // Written out of order and in two files: the replay sorts by event time.
    let (a, b) = events.split_at(events.len() / 2);
    w.write(&warden_event::to_record_batch(b).expect("batch"))
        .expect("write");
    w.close_all().expect("close");
    w.write(&warden_event::to_record_batch(a).expect("batch"))
        .expect("write");
    w.close_all().expect("close");

    let report = replay(&pipeline(), dir.path()).await.expect("replay");
    assert_eq!(report.events, events.len() as u64);
    assert_eq!(report.late_events, 0, "sorted by event time");
    assert_eq!(report.from, Some(T0));
    assert_eq!(
        report.quarantined.iter().collect::<Vec<_>>(),
        ["identity:dev-7"]
    );
    // One of the default pipeline's rate detectors (1 s or 10 s window) quarantined.
    let (decider, _) = report
        .by_detector
        .iter()
        .find(|(_, s)| s.quarantines == 1)
        .expect("a detector quarantined");
    assert!(
        ["rate_spike", "burst"].contains(&decider.as_str()),
        "{decider}"
    );
    assert_eq!(
        report
            .by_detector
            .values()
            .map(|s| s.quarantines)
            .sum::<u64>(),
        1
    );
    let first = report
        .alerts
        .iter()
        .find(|a| a.action == Some(Action::Quarantine))
        .expect("quarantine alert");
    assert!(
        first.ts - (T0 + 60 * S) <= S,
        "within a second of the flood"
    );
    let table = report.table();
    assert!(table.contains("would quarantine 1 subject(s)"), "{table}");
    assert!(table.contains(decider.as_str()), "{table}");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["quarantined"][0], "identity:dev-7");
    assert!(
        replay(&pipeline(), &dir.path().join("missing"))
            .await
            .is_err()
    );
}
