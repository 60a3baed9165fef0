//! The dashboard API driven in-process over an embedded bus.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use warden_bus::Bus;
use warden_config::WardenConfig;
use warden_dashboard::Dashboard;
use warden_event::{Action, Alert, Decision, Evidence, Severity, Subject};

/// The operator token every request of these tests sends (`Authorization: Bearer`).
const TOKEN: &str = "operator-token-for-the-api-tests";

async fn setup(max_alerts: usize) -> (WardenConfig, Arc<dyn Bus>) {
    common::setup(TOKEN, Some(max_alerts)).await
}

fn alert(identity: &str, ts: i64) -> Alert {
    Alert {
        v: warden_event::SCHEMA_VERSION,
        id: format!("alert-{identity}-{ts}"),
        ts,
        pipeline: "default".into(),
        detector: "request_rate".into(),
        subject: Subject::identity(identity),
        score: 7.5,
        severity: Severity::High,
        message: format!("{identity} sends far more requests than usual"),
        evidence: Evidence::default(),
        action: Some(Action::Quarantine),
        decision_id: Some("d-1".into()),
    }
}

fn quarantine(identity: &str, until: i64) -> Decision {
    Decision {
        v: warden_event::SCHEMA_VERSION,
        id: format!("q-{identity}"),
        subject: Subject::identity(identity),
        action: Action::Quarantine,
        until: Some(until),
        reason: "request rate anomaly".into(),
        detector: "request_rate".into(),
        score: 7.5,
        evidence: serde_json::json!({}),
        decided_at: warden_event::now_ns(),
        limit: None,
    }
}

async fn publish<T: serde::Serialize>(bus: &Arc<dyn Bus>, topic: &str, key: &str, value: &T) {
    let payload = warden_event::encode(value);
    bus.producer()
        .send(topic, key.as_bytes(), &payload)
        .await
        .expect("publish");
}

async fn call(router: &Router, mut req: Request<Body>) -> (StatusCode, String) {
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().expect("header"),
    );
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn get_json(router: &Router, uri: &str) -> Value {
    let req = Request::get(uri).body(Body::empty()).expect("request");
    let (status, body) = call(router, req).await;
    assert_eq!(status, StatusCode::OK, "GET {uri}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn post_release(body: &str, json: bool) -> Request<Body> {
    let mut req = Request::post("/api/quarantine/release");
    if json {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    req.body(Body::from(body.to_string())).expect("request")
}

/// Poll `uri` until `done` holds (at most 5 s).
async fn wait_for(router: &Router, uri: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v = get_json(router, uri).await;
        if done(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out on {uri}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn followed_alert_and_quarantine_show_and_release_lifts_it() {
    let (config, bus) = setup(100).await;
    let topics = config.bus.topics.clone();
    let dashboard = Dashboard::start(&config, bus.clone()).await.expect("start");
    let router = dashboard.router();
    assert_eq!(len(&get_json(&router, "/api/quarantine").await), 0);

    let now = warden_event::now_ns();
    publish(&bus, &topics.alerts, "identity:dev-1", &alert("dev-1", now)).await;
    let q = quarantine("dev-1", now + 600_000_000_000);
    publish(&bus, &topics.decisions, "identity:dev-1", &q).await;

    let alerts = wait_for(&router, "/api/alerts", |v| len(v) == 1).await;
    assert_eq!(alerts[0]["subject"]["value"], "dev-1");
    assert_eq!(alerts[0]["detector"], "request_rate");
    let active = wait_for(&router, "/api/quarantine", |v| len(v) == 1).await;
    assert_eq!(
        active[0]["subject"],
        serde_json::json!({"kind": "identity", "value": "dev-1"})
    );
    assert_eq!(active[0]["decision_id"], "q-dev-1");
    assert_eq!(active[0]["until"], q.until.expect("until"));
    for field in ["reason", "detector", "score", "decided_at"] {
        assert!(active[0].get(field).is_some(), "{field} missing: {active}");
    }

    let device = get_json(&router, "/api/devices/dev-1").await;
    assert_eq!(len(&device["alerts"]), 1);
    assert_eq!(device["decision"]["id"], "q-dev-1");
    assert_eq!(device["active"], true);

    let (status, body) = call(
        &router,
        post_release(r#"{"kind":"identity","value":"dev-1"}"#, true),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a release names why: {body}"
    );
    for blank in ["", "   "] {
        let (status, body) = call(
            &router,
            post_release(
                &format!(r#"{{"kind":"identity","value":"dev-1","reason":"{blank}"}}"#),
                true,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("reason_required"), "{body}");
    }
    let (status, body) = call(
        &router,
        post_release(
            r#"{"kind":"identity","value":"dev-1","reason":"false positive"}"#,
            true,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let released: Decision = serde_json::from_str(&body).expect("a decision");
    assert_eq!(released.action, Action::Release);
    assert_eq!(released.detector, "console");
    assert!(
        released.reason == "released by ops: false positive",
        "{}",
        released.reason
    );
    assert_eq!(
        released.evidence["released_detectors"],
        serde_json::json!(["request_rate"])
    );
    assert_eq!(released.subject, Subject::identity("dev-1"));
    assert!(released.until.is_none() && released.decided_at >= q.decided_at);
    assert!(uuid::Uuid::parse_str(&released.id).is_ok());
    wait_for(&router, "/api/quarantine", |v| len(v) == 0).await;

    // The release is on the bus for the gateways, keyed by subject.
    let mut found = None;
    warden_bus::read_to_end(&*bus, &topics.decisions, Duration::from_secs(5), |m| {
        if let Ok(d) = warden_event::decode::<Decision>(&m.payload)
            && d.action == Action::Release
        {
            found = Some((m.key.clone(), d));
        }
    })
    .await
    .expect("read decisions");
    let (key, d) = found.expect("release published");
    assert_eq!(key.as_deref(), Some(&b"identity:dev-1"[..]));
    assert_eq!(d, released);
    let device = get_json(&router, "/api/devices/dev-1").await;
    assert_eq!(device["active"], false);
}

#[tokio::test]
async fn bootstrap_reads_history_newest_first_and_bounded() {
    let (config, bus) = setup(3).await;
    let topics = config.bus.topics.clone();
    let now = warden_event::now_ns();
    for (i, id) in ["dev-1", "dev-2", "dev-1", "dev-3", "dev-1"]
        .iter()
        .enumerate()
    {
        publish(&bus, &topics.alerts, id, &alert(id, now + i as i64)).await;
    }
    publish(
        &bus,
        &topics.decisions,
        "identity:dev-2",
        &quarantine("dev-2", now + 60_000_000_000),
    )
    .await;
    publish(
        &bus,
        &topics.decisions,
        "identity:old",
        &quarantine("old", now - 1),
    )
    .await;

    let dashboard = Dashboard::start(&config, bus.clone()).await.expect("start");
    let router = dashboard.router();
    let alerts = get_json(&router, "/api/alerts").await;
    let ts: Vec<i64> = alerts
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["ts"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(
        ts,
        vec![now + 4, now + 3, now + 2],
        "max_alerts newest first"
    );
    assert_eq!(len(&get_json(&router, "/api/alerts?limit=1").await), 1);
    let dev1 = get_json(&router, "/api/alerts?subject=identity:dev-1").await;
    assert_eq!(len(&dev1), 2);
    let active = get_json(&router, "/api/quarantine").await;
    assert_eq!(
        len(&active),
        1,
        "the expired quarantine is not active: {active}"
    );
    assert_eq!(active[0]["subject"]["value"], "dev-2");
    assert_eq!(
        dashboard.state().active(now - 2).len(),
        2,
        "both were active before `old` expired"
    );
}

fn assert_generic_400(status: StatusCode, body: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let v: Value = serde_json::from_str(body).expect("JSON error body");
    let err = &v["error"];
    assert_eq!(err["status"], 400);
    assert_eq!(err["code"], "bad_request");
    assert!(
        uuid::Uuid::parse_str(err["request_id"].as_str().unwrap_or("")).is_ok(),
        "{body}"
    );
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{body}");
    assert_eq!(err.as_object().map(|o| o.len()), Some(3), "{body}");
}

#[tokio::test]
async fn malformed_requests_get_a_generic_400() {
    let (config, bus) = setup(10).await;
    let router = Dashboard::start(&config, bus)
        .await
        .expect("start")
        .router();
    for (body, json) in [
        ("not json", true),
        (r#"{"kind":"bogus","value":"x"}"#, true),
        (r#"{"kind":"identity"}"#, true),
        (r#"{"kind":"identity","value":""}"#, true),
        (r#"{"kind":"identity","value":"x","extra":1}"#, true),
        (r#"{"kind":"identity","value":"dev-1"}"#, false),
    ] {
        let (status, text) = call(&router, post_release(body, json)).await;
        assert_generic_400(status, &text);
    }
    for uri in [
        "/api/alerts?limit=many",
        "/api/alerts?subject=bogus:x",
        "/api/alerts?subject=dev-1",
    ] {
        let (status, text) = call(
            &router,
            Request::get(uri).body(Body::empty()).expect("request"),
        )
        .await;
        assert_generic_400(status, &text);
    }
}

#[tokio::test]
async fn page_and_health() {
    let (config, bus) = setup(10).await;
    let router = Dashboard::start(&config, bus)
        .await
        .expect("start")
        .router();
    let (status, html) = call(
        &router,
        Request::get("/").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.starts_with("<!doctype html>"));
    for path in [
        "/api/alerts",
        "/api/quarantine",
        "/api/quarantine/release",
        "/api/devices/",
    ] {
        assert!(html.contains(path), "page does not use {path}");
    }
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external assets"
    );
    let (status, body) = call(
        &router,
        Request::get("/healthz")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn status_of_the_components_beside_the_dashboard() {
    let (config, bus) = setup(10).await;
    let plain = Dashboard::start(&config, bus.clone())
        .await
        .expect("start")
        .router();
    assert_eq!(get_json(&plain, "/api/status").await, serde_json::json!({}));
    let refused = serde_json::json!({
        "pipeline": {"name": "default", "reloads": 1, "last_failure": {"at": 1, "problems": ["p.toml: detector[0].alpha: must be in (0, 1]"]}}
    });
    let reported = refused.clone();
    let router = Dashboard::start(&config, bus)
        .await
        .expect("start")
        .with_status(Arc::new(move || reported.clone()))
        .router();
    assert_eq!(get_json(&router, "/api/status").await, refused);
    let (_, html) = call(
        &router,
        Request::get("/").body(Body::empty()).expect("request"),
    )
    .await;
    assert!(html.contains("/api/status") && html.contains("REFUSED"));
}
