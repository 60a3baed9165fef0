//! The console's server-rendered pages and the views behind them: traffic over time from the
//! events topic, alert pages with their evidence, search, escaping of attacker-controlled
//! subjects, and scale (100 000 identities' traffic, 10 000 alerts).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use warden_bus::Bus;
use warden_config::WardenConfig;
use warden_dashboard::Dashboard;
use warden_event::{
    Action, Alert, AuthInfo, AuthMethod, AuthResult, Evidence, Outcome, Protocol, Reason,
    RequestEvent, Severity, Subject,
};

const TOKEN: &str = "operator-token-for-the-page-tests";

async fn setup(max_alerts: usize) -> (WardenConfig, Arc<dyn Bus>) {
    common::setup(TOKEN, Some(max_alerts)).await
}

fn event(identity: &str, ip: &str, reason: Reason, ts: i64) -> RequestEvent {
    let refused = !matches!(reason, Reason::None);
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("e-{identity}-{ts}"),
        gateway: "gw-1".into(),
        seq: 0,
        ts,
        identity: identity.into(),
        tenant: "acme".into(),
        device_type: "sensor".into(),
        auth: AuthInfo {
            method: AuthMethod::ApiKey,
            result: AuthResult::Ok,
        },
        client_ip: ip.into(),
        protocol: Protocol::Http,
        method: "POST".into(),
        route: "telemetry".into(),
        path: "/api/devices/x/telemetry".into(),
        status: if refused { 429 } else { 200 },
        decision: if refused {
            Outcome::Throttled
        } else {
            Outcome::Allowed
        },
        latency_us: 900,
        bytes_in: 100,
        bytes_out: 50,
        user_agent: None,
        tls: None,
        reason,
        query: String::new(),
        query_hash: 0,
    }
}

fn alert(id: &str, subject: Subject, ts: i64) -> Alert {
    Alert {
        v: warden_event::SCHEMA_VERSION,
        id: id.into(),
        ts,
        pipeline: "default".into(),
        detector: "request_rate".into(),
        subject,
        score: 7.5,
        severity: Severity::High,
        message: "far more requests than usual".into(),
        evidence: Evidence {
            features: [("requests_per_min".to_string(), 950.0)].into(),
            baseline: [("mean".to_string(), 12.0), ("std".to_string(), 3.0)].into(),
            threshold: 5.0,
            window: "1m".into(),
            window_end: ts,
        },
        action: Some(Action::Quarantine),
        decision_id: Some("d-1".into()),
    }
}

async fn get(router: &Router, uri: &str) -> (StatusCode, String, Option<String>) {
    let req = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let total = resp
        .headers()
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned(), total)
}

async fn get_json(router: &Router, uri: &str) -> Value {
    let (status, body, _) = get(router, uri).await;
    assert_eq!(status, StatusCode::OK, "GET {uri}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

#[tokio::test]
async fn traffic_from_the_events_topic_is_drawn_on_the_server() {
    let (config, bus) = setup(100).await;
    let dashboard = Dashboard::start(&config, bus.clone()).await.expect("start");
    let router = dashboard.router();
    let now = warden_event::now_ns();
    let producer = bus.producer();
    for i in 0..30 {
        let reason = if i % 3 == 0 {
            Reason::RateLimit
        } else {
            Reason::None
        };
        let e = event("dev-1", "203.0.113.9", reason, now - i * 1_000_000_000);
        producer
            .send(
                &config.bus.topics.events,
                b"dev-1",
                &warden_event::encode(&e),
            )
            .await
            .expect("publish");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let traffic = loop {
        let v = get_json(&router, "/api/traffic/identity/dev-1").await;
        let n: u64 = v["series"]
            .as_array()
            .expect("series")
            .iter()
            .filter_map(|p| p["requests"].as_u64())
            .sum();
        if n == 30 {
            break v;
        }
        assert!(Instant::now() < deadline, "traffic never counted: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(traffic["tracked"], true);
    assert_eq!(traffic["series"].as_array().map(Vec::len), Some(60));
    assert_eq!(traffic["refusals"]["rate_limit"], 10);
    assert_eq!(traffic["routes"][0]["value"], "POST telemetry");
    assert_eq!(traffic["peers"][0]["value"], "203.0.113.9");
    // The last eight requests, newest first: i = 0 (served) then i = 1, 2, 3 (rate limited).
    let recent = traffic["recent"].as_array().expect("recent");
    assert_eq!(recent.len(), 8, "{traffic}");
    assert_eq!(recent[0]["request"], "POST telemetry");
    assert_eq!(recent[0]["reason"], "rate_limit", "{traffic}");
    assert_eq!(recent[1]["reason"], "none", "{traffic}");
    let fleet = get_json(&router, "/api/traffic").await;
    assert_eq!(fleet["top_identities"][0]["subject"]["value"], "dev-1");
    assert_eq!(fleet["top_ips"][0]["subject"]["value"], "203.0.113.9");

    // The pages carry their data in the HTML (no script needed): charts, routes, peers.
    let (status, html, _) = get(&router, "/identities/dev-1").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        r#"id="subject-requests""#,
        "<polyline",
        "POST telemetry",
        "/ips/203.0.113.9",
        "rate_limit 10",
        r#"id="recent-requests""#,
        "refused: rate_limit",
        "Detector scores, last hour",
    ] {
        assert!(html.contains(needle), "subject page lacks {needle}: {html}");
    }
    let (_, html, _) = get(&router, "/ips/203.0.113.9").await;
    assert!(html.contains("/identities/dev-1"), "{html}");
    let (_, html, _) = get(&router, "/tenants/acme").await;
    assert!(html.contains(r#"id="subject-bytes""#), "{html}");
    let (_, html, _) = get(&router, "/").await;
    for needle in [
        r#"id="traffic-chart""#,
        r#"id="refusals-chart""#,
        "rate_limit",
        "/identities/dev-1",
    ] {
        assert!(html.contains(needle), "overview lacks {needle}");
    }
    let found = get_json(&router, "/api/search?q=DEV").await;
    assert_eq!(found["subjects"][0]["subject"]["value"], "dev-1");
    let found = get_json(&router, "/api/search?q=ip:203.0").await;
    assert_eq!(
        found["subjects"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    let (status, html, _) = get(&router, "/search?q=dev").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"href="/identities/dev-1""#), "{html}");
    let (status, _, _) = get(&router, "/api/search?q=").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Bad input is a clear 400, never a panic.
    let long = "x".repeat(600);
    for uri in [
        "/api/traffic/bogus/x".to_string(),
        format!("/api/traffic/identity/{long}"),
        "/api/alerts?offset=many".to_string(),
        "/api/search".to_string(),
        format!("/identities/{long}"),
        "/identities/dev-1?offset=-1".to_string(),
        "/search".to_string(),
    ] {
        let (status, _, _) = get(&router, &uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "GET {uri}");
    }
    let (status, _, _) = get(&router, &format!("/identities/dev-1?offset={}", usize::MAX)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an offset past the end is an empty page"
    );
}

#[tokio::test]
async fn an_alert_page_shows_its_evidence_and_decision() {
    let (config, bus) = setup(100).await;
    let dashboard = Dashboard::start(&config, bus).await.expect("start");
    let router = dashboard.router();
    let now = warden_event::now_ns();
    let state = dashboard.state();
    state.apply_alert(alert("a-1", Subject::identity("dev-7"), now));
    let mut other = alert("a-2", Subject::identity("dev-7"), now - 1);
    other.detector = "error_ratio".into();
    state.apply_alert(other);
    state.apply_decision(warden_event::Decision {
        v: warden_event::SCHEMA_VERSION,
        id: "d-1".into(),
        subject: Subject::identity("dev-7"),
        action: Action::Quarantine,
        until: Some(now + 600_000_000_000),
        reason: "request rate and errors".into(),
        detector: "request_rate".into(),
        score: 7.5,
        evidence: serde_json::json!({ "detectors": ["error_ratio", "request_rate"] }),
        decided_at: now,
        limit: None,
    });
    let v = get_json(&router, "/api/alerts/a-1").await;
    assert_eq!(
        v["detectors"],
        serde_json::json!(["error_ratio", "request_rate"])
    );
    assert_eq!(v["decision_is_this_alerts"], true);
    assert_eq!(v["active"], true);
    assert_eq!(v["agreeing"][0]["id"], "a-2");
    let (status, html, _) = get(&router, "/alerts/a-1").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "requests_per_min",
        "950",
        "mean",
        "error_ratio, request_rate",
        "quarantine (active)",
        r#"href="/alerts/a-2""#,
        r#"href="/identities/dev-7""#,
    ] {
        assert!(html.contains(needle), "alert page lacks {needle}: {html}");
    }
    let (status, _, _) = get(&router, "/api/alerts/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&router, "/alerts/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn attacker_controlled_subjects_are_rendered_inert() {
    let (config, bus) = setup(100).await;
    let dashboard = Dashboard::start(&config, bus).await.expect("start");
    let router = dashboard.router();
    let now = warden_event::now_ns();
    let evil = r#"<script>alert("x")</script>"#;
    let state = dashboard.state();
    state.apply_event(&event(evil, "198.51.100.1", Reason::Auth, now));
    let mut a = alert("<img src=x onerror=alert(1)>", Subject::identity(evil), now);
    a.message = evil.into();
    state.apply_alert(a);
    let enc: String = evil
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    for uri in [
        "/".to_string(),
        format!("/identities/{enc}"),
        "/ips/198.51.100.1".to_string(),
        "/search?q=script".to_string(),
        "/alerts/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E".to_string(),
    ] {
        let (status, html, _) = get(&router, &uri).await;
        assert_eq!(status, StatusCode::OK, "GET {uri}");
        assert!(
            !html.contains(evil),
            "GET {uri} renders the subject as markup"
        );
        assert!(
            !html.contains("<img src=x"),
            "GET {uri} renders the alert id as markup"
        );
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
            "GET {uri} does not show the subject"
        );
    }
}

/// 100 000 identities' traffic and 10 000 alerts: the store stays within its bound (the least
/// recently active identities forgotten), and the overview, a subject page, the alerts API
/// (paged), an alert page and search answer, each well within a generous bound.
#[tokio::test]
async fn a_large_fleet_stays_bounded_paged_and_quick() {
    let (config, bus) = setup(10_000).await;
    let dashboard = Dashboard::start(&config, bus).await.expect("start");
    let router = dashboard.router();
    let state = dashboard.state();
    let now = warden_event::now_ns();
    let started = Instant::now();
    for i in 0..100_000u32 {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        state.apply_event(&event(&format!("dev-{i}"), &ip, Reason::None, now));
    }
    for i in 0..10_000i64 {
        let id = format!("dev-{}", 99_999 - i);
        state.apply_alert(alert(&format!("a-{i}"), Subject::identity(id), now - i));
    }
    eprintln!(
        "100 000 identities and 10 000 alerts recorded in {:?}",
        started.elapsed()
    );

    let bound = Duration::from_secs(3);
    let timed = |uri: &'static str| {
        let router = router.clone();
        async move {
            let t = Instant::now();
            let (status, body, total) = get(&router, uri).await;
            let took = t.elapsed();
            eprintln!("GET {uri}: {took:?}");
            assert_eq!(status, StatusCode::OK, "GET {uri}");
            assert!(took < bound, "GET {uri} took {took:?}");
            (body, total)
        }
    };
    let (body, _) = timed("/api/traffic").await;
    let fleet: Value = serde_json::from_str(&body).expect("json");
    let held = fleet["tracked"]["identity"].as_u64().expect("count");
    assert!(
        held <= warden_dashboard::traffic::MAX_SUBJECTS as u64 && held > 0,
        "{held} identities held"
    );
    assert!(fleet["forgotten"].as_u64() > Some(0));
    assert_eq!(fleet["top_identities"].as_array().map(Vec::len), Some(10));
    let (html, _) = timed("/").await;
    assert!(html.contains("100000</b>"), "overview counts every request");
    // The most recent identity is held; the first one was forgotten, and its page says so.
    let (html, _) = timed("/identities/dev-99999").await;
    assert!(
        html.contains("<polyline") && html.contains("Alerts (1)"),
        "{html}"
    );
    let (html, _) = timed("/identities/dev-0").await;
    assert!(html.contains("No traffic of this subject"), "{html}");
    let (body, total) = timed("/api/alerts?limit=50&offset=100").await;
    let page: Vec<Alert> = serde_json::from_str(&body).expect("alerts");
    assert_eq!(page.len(), 50);
    assert_eq!(page[0].id, "a-100", "paged newest first");
    assert_eq!(total.as_deref(), Some("10000"));
    let (body, total) = timed("/api/alerts?limit=50&subject=identity:dev-90000").await;
    assert_eq!(total.as_deref(), Some("1"), "{body}");
    let (html, _) = timed("/alerts/a-5000").await;
    assert!(html.contains("dev-94999"));
    let (body, _) = timed("/api/search?q=dev-9999").await;
    let found: Value = serde_json::from_str(&body).expect("json");
    let n = found["subjects"].as_array().map_or(0, Vec::len);
    assert!((1..=50).contains(&n), "{found}");
}
