//! Webhook alert sinks against a real local receiver: signed deliveries, retries with
//! back-off on 5xx, no retry on a permanent refusal, dead-letter counts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{WardenConfig, WebhookConfig};
use warden_dashboard::Dashboard;
use warden_event::{Action, Alert, Decision, Evidence, Severity, Subject};

/// What the receiver saw: (timestamp header, signature header, body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A receiver answering the statuses in `answers` in turn (the last one from then on).
async fn receiver(answers: Vec<u16>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let (s, calls, answers) = (s.clone(), calls.clone(), answers.clone());
            async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                s.lock()
                    .push((h("x-warden-timestamp"), h("x-warden-signature"), body));
                let i = calls.fetch_add(1, Ordering::SeqCst).min(answers.len() - 1);
                StatusCode::from_u16(answers[i]).unwrap_or(StatusCode::OK)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// A webhook whose secret is in a file (kept alive by the returned guard).
fn hook(name: &str, url: &str, secret: &str) -> (WebhookConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{secret}\n")).expect("write");
    let config = WebhookConfig {
        name: name.into(),
        url: url.into(),
        secret_env: None,
        secret_file: Some(file.display().to_string()),
        min_severity: "medium".into(),
        decisions: true,
        timeout_ms: 2_000,
        max_attempts: 3,
        queue: 100,
    };
    (config, dir)
}

async fn start(hooks: Vec<WebhookConfig>) -> (Dashboard, Arc<dyn Bus>, WardenConfig) {
    let mut config = WardenConfig::default();
    config.gateway.decisions_bootstrap_timeout_ms = 5_000;
    config.dashboard.webhooks = hooks;
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
    let t = &config.bus.topics;
    let spec = |name: &str, compacted| TopicSpec {
        name: name.into(),
        partitions: 1,
        compacted,
        retention_ms: None,
    };
    bus.ensure_topics(&[spec(&t.decisions, true), spec(&t.alerts, false)])
        .await
        .expect("topics");
    let dashboard = Dashboard::start(&config, bus.clone()).await.expect("start");
    (dashboard, bus, config)
}

fn alert(id: &str, severity: Severity) -> Alert {
    Alert {
        v: warden_event::SCHEMA_VERSION,
        id: id.into(),
        ts: warden_event::now_ns(),
        pipeline: "default".into(),
        detector: "burst".into(),
        subject: Subject::identity("dev-9"),
        score: 7.5,
        severity,
        message: "flood".into(),
        evidence: Evidence::default(),
        action: Some(Action::Quarantine),
        decision_id: None,
    }
}

async fn publish(bus: &Arc<dyn Bus>, topic: &str, payload: Vec<u8>) {
    bus.producer()
        .send(topic, b"dev-9", &payload)
        .await
        .expect("publish");
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn alerts_and_decisions_are_delivered_signed_and_retried() {
    let (url, seen) = receiver(vec![503, 200]).await;
    let (h, _secret) = hook("siem", &url, "s3cret-a");
    let (dashboard, bus, config) = start(vec![h]).await;
    let t = &config.bus.topics;
    // Below the severity floor: not sent.
    publish(
        &bus,
        &t.alerts,
        warden_event::encode(&alert("a-low", Severity::Low)),
    )
    .await;
    publish(
        &bus,
        &t.alerts,
        warden_event::encode(&alert("a-high", Severity::High)),
    )
    .await;
    let decision = Decision {
        v: warden_event::SCHEMA_VERSION,
        id: "d-1".into(),
        subject: Subject::identity("dev-9"),
        action: Action::Quarantine,
        until: Some(warden_event::now_ns() + 60_000_000_000),
        reason: "flood".into(),
        detector: "burst".into(),
        score: 7.5,
        evidence: serde_json::Value::Null,
        decided_at: warden_event::now_ns(),
        limit: None,
    };
    publish(&bus, &t.decisions, warden_event::encode(&decision)).await;
    let (_, stats) = dashboard.webhook_stats().remove(0);
    wait_for("two deliveries", || {
        stats.delivered.load(Ordering::Relaxed) == 2
    })
    .await;
    assert_eq!(
        stats.failed_attempts.load(Ordering::Relaxed),
        1,
        "the 503 was retried"
    );
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 3, "503, its retry, and the other notification");
    let mut types = Vec::new();
    for (ts, sig, body) in &seen {
        let ts: u64 = ts.parse().expect("timestamp header");
        assert_eq!(
            *sig,
            warden_dashboard::sink::signature(b"s3cret-a", ts, body.as_bytes()),
            "signature of {body}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        types.push(v["type"].as_str().unwrap_or("").to_string());
        if v["type"] == "alert" {
            assert_eq!(v["alert"]["id"], "a-high", "{v}");
        } else {
            assert_eq!(v["decision"]["id"], "d-1", "{v}");
        }
    }
    assert!(types.contains(&"alert".to_string()) && types.contains(&"decision".to_string()));
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_lettered_without_retries() {
    let (url, seen) = receiver(vec![400]).await;
    let (mut h, _secret) = hook("oncall", &url, "s3cret-b");
    h.decisions = false;
    let (dashboard, bus, config) = start(vec![h]).await;
    publish(
        &bus,
        &config.bus.topics.alerts,
        warden_event::encode(&alert("a-1", Severity::Medium)),
    )
    .await;
    let (_, stats) = dashboard.webhook_stats().remove(0);
    wait_for("a dead letter", || {
        stats.dead_lettered.load(Ordering::Relaxed) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(seen.lock().len(), 1, "no retry after a 400");
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_missing_secret_is_a_clear_error() {
    let (url, _) = receiver(vec![200]).await;
    let mut config = WardenConfig::default();
    let (mut h, _secret) = hook("x", &url, "unused");
    h.secret_file = None;
    h.secret_env = Some("WARDEN_TEST_HOOK_SECRET_UNSET".into());
    config.dashboard.webhooks = vec![h];
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
    let err = match Dashboard::start(&config, bus).await {
        Ok(_) => panic!("started without its secret"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("WARDEN_TEST_HOOK_SECRET_UNSET"), "{err}");
}
