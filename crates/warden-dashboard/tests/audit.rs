//! Console actions and sign-ins written to the audit log.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;
use warden_bus::Bus;
use warden_config::WardenConfig;
use warden_dashboard::Dashboard;
use warden_event::audit::{AuditLog, Kind, Record, verify};
use warden_event::{Action, Decision, Subject};

const TOKEN: &str = "operator-token-for-the-audit-tests";

async fn setup() -> (WardenConfig, Arc<dyn Bus>) {
    common::setup(TOKEN, None).await
}

fn records(path: &std::path::Path) -> Vec<Record> {
    let content = std::fs::read(path).expect("read");
    let summary = verify(&content, None).expect("a sound chain");
    let records: Vec<Record> = String::from_utf8_lossy(&content)
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    assert_eq!(summary.records, records.len() as u64);
    records
}

/// Quarantine `dev-1` on the bus, start a console recording in `log`, wait until it sees the
/// quarantine.
async fn console_with_quarantine(
    config: &WardenConfig,
    bus: &Arc<dyn Bus>,
    log: Arc<AuditLog>,
) -> Dashboard {
    let quarantine = Decision {
        v: warden_event::SCHEMA_VERSION,
        id: "q-dev-1".into(),
        subject: Subject::identity("dev-1"),
        action: Action::Quarantine,
        until: Some(warden_event::now_ns() + 600_000_000_000),
        reason: "request rate anomaly".into(),
        detector: "request_rate".into(),
        score: 7.5,
        evidence: serde_json::json!({}),
        decided_at: warden_event::now_ns(),
        limit: None,
    };
    bus.producer()
        .send(
            &config.bus.topics.decisions,
            b"identity:dev-1",
            &warden_event::encode(&quarantine),
        )
        .await
        .expect("publish");
    let dashboard = Dashboard::start_with_audit(config, bus.clone(), Some(log))
        .await
        .expect("start");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while dashboard.state().active(warden_event::now_ns()).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "quarantine not seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dashboard
}

fn release() -> Request<Body> {
    Request::post("/api/quarantine/release")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from(
            r#"{"kind":"identity","value":"dev-1","reason":"false positive"}"#,
        ))
        .expect("request")
}

#[tokio::test]
async fn release_and_sign_ins_are_recorded() {
    let (config, bus) = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path, None).expect("open"));
    let dashboard = console_with_quarantine(&config, &bus, log).await;
    let router = dashboard.router();
    let resp = router.clone().oneshot(release()).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    for token in ["not-a-token", TOKEN] {
        let login = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .expect("request");
        router.clone().oneshot(login).await.expect("infallible");
    }

    let r = records(&path);
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r[0].kind, Kind::Operator);
    let p = &r[0].payload;
    assert_eq!(p["action"], "release");
    assert_eq!(p["operator"], "ops");
    assert_eq!(p["role"], "operator");
    assert_eq!(p["subject"]["value"], "dev-1");
    assert_eq!(p["decision"]["action"], "release");
    assert!(
        p["decision"]["reason"]
            .as_str()
            .is_some_and(|s| s.ends_with("false positive")),
        "{p}"
    );
    assert_eq!(p["decision"]["evidence"]["released_decision"], "q-dev-1");
    assert_eq!(
        (r[1].kind, &r[1].payload["ok"]),
        (Kind::Signin, &false.into())
    );
    assert!(
        !r[1].payload.to_string().contains("not-a-token"),
        "tokens are never written"
    );
    assert_eq!(r[2].kind, Kind::Signin);
    assert_eq!(r[2].payload["ok"], true);
    assert_eq!(r[2].payload["operator"], "ops");
}

/// An action the audit log cannot record is not taken: 503, and nothing is published.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_unrecordable_release_is_refused() {
    let (config, bus) = setup().await;
    // Every write to /dev/full fails (ENOSPC).
    let log = Arc::new(AuditLog::open(std::path::Path::new("/dev/full"), None).expect("open"));
    let dashboard = console_with_quarantine(&config, &bus, log).await;
    let resp = dashboard
        .router()
        .oneshot(release())
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let mut releases = 0;
    warden_bus::read_to_end(
        &*bus,
        &config.bus.topics.decisions,
        Duration::from_secs(5),
        |m| {
            if warden_event::decode::<Decision>(&m.payload)
                .is_ok_and(|d| d.action == Action::Release)
            {
                releases += 1;
            }
        },
    )
    .await
    .expect("read");
    assert_eq!(releases, 0);
    assert!(!dashboard.state().active(warden_event::now_ns()).is_empty());
}
