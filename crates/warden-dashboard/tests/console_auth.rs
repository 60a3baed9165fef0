//! The console from the attacker's side, over a real socket: nothing without a session or an
//! operator token, sessions only from a sign-in (no fixation), CSRF tokens on state changes,
//! roles, releases of unknown subjects refused, releases recorded with who made them.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use sha2::{Digest, Sha256};
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{ConsoleRole, OperatorConfig, WardenConfig};
use warden_dashboard::Dashboard;
use warden_event::{Action, Decision, Subject};

const OPERATOR: &str = "op-7f3a9c0e-token";
const VIEWER: &str = "viewer-51b2d8-token";

fn operator(name: &str, role: ConsoleRole, token: &str) -> OperatorConfig {
    OperatorConfig {
        name: name.into(),
        role,
        token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
    }
}

struct Console {
    url: String,
    bus: Arc<dyn Bus>,
    config: WardenConfig,
    http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<(), warden_dashboard::DashboardError>>,
}

async fn console() -> Console {
    let mut config = WardenConfig::default();
    config.gateway.decisions_bootstrap_timeout_ms = 5_000;
    config.dashboard.operators = vec![
        operator("alice", ConsoleRole::Operator, OPERATOR),
        operator("victor", ConsoleRole::Viewer, VIEWER),
    ];
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
    let t = &config.bus.topics;
    let spec = |name: &str, compacted| TopicSpec {
        name: name.into(),
        partitions: 1,
        compacted,
        retention_ms: None,
    };
    bus.ensure_topics(&[
        spec(&t.events, false),
        spec(&t.decisions, true),
        spec(&t.alerts, false),
    ])
    .await
    .expect("topics");
    let dashboard = Dashboard::start(&config, bus.clone()).await.expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(dashboard.serve(listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Console {
        url,
        bus,
        config,
        http,
        stop,
        served,
    }
}

/// Sign in with `token`; the session cookie (`name=value`).
async fn sign_in(c: &Console, token: &str, bring: Option<&str>) -> (StatusCode, Option<String>) {
    let mut req = c
        .http
        .post(format!("{}/login", c.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"));
    if let Some(cookie) = bring {
        req = req.header(COOKIE, cookie);
    }
    let resp = req.send().await.expect("sign in");
    let cookie = resp
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    (resp.status(), cookie)
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

async fn quarantine(c: &Console, identity: &str) {
    let d = Decision {
        v: warden_event::SCHEMA_VERSION,
        id: format!("q-{identity}"),
        subject: Subject::identity(identity),
        action: Action::Quarantine,
        until: Some(warden_event::now_ns() + 600_000_000_000),
        reason: "flood".into(),
        detector: "burst".into(),
        score: 9.0,
        evidence: serde_json::json!({ "detectors": ["burst", "rate_spike"] }),
        decided_at: warden_event::now_ns(),
        limit: None,
    };
    c.bus
        .producer()
        .send(
            &c.config.bus.topics.decisions,
            d.subject.key().as_bytes(),
            &warden_event::encode(&d),
        )
        .await
        .expect("publish");
    // Wait until the console follows it.
    for _ in 0..100 {
        let active: Value = c
            .http
            .get(format!("{}/api/quarantine", c.url))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if active.as_array().is_some_and(|a| !a.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the quarantine never showed");
}

#[tokio::test]
async fn nothing_is_served_without_a_session_or_an_operator_token() {
    let c = console().await;
    let gets = [
        "/api/alerts",
        "/api/alerts/a-1",
        "/api/quarantine",
        "/api/devices/dev-1",
        "/api/traffic",
        "/api/traffic/identity/dev-1",
        "/api/search",
        "/api/status",
        "/api/session",
        "/api/stream",
        "/api/openapi.json",
    ];
    for path in gets {
        for auth in [None, Some("wrong-token")] {
            let mut req = c.http.get(format!("{}{path}", c.url));
            if let Some(t) = auth {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.expect("get");
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "GET {path} with {auth:?}"
            );
        }
    }
    // Pages send the browser to the sign-in page.
    for path in [
        "/",
        "/identities/dev-1",
        "/ips/203.0.113.9",
        "/tenants/acme",
        "/alerts/a-1",
        "/search?q=dev",
        "/anything",
    ] {
        let resp = c
            .http
            .get(format!("{}{path}", c.url))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "GET {path}");
        assert_eq!(resp.headers()[LOCATION], "/login");
    }
    let posts = ["/api/quarantine/release", "/api/quarantine", "/logout"];
    for path in posts {
        let resp = c
            .http
            .post(format!("{}{path}", c.url))
            .header("content-type", "application/json")
            .body(r#"{"kind":"identity","value":"dev-1","reason":"x","ttl_s":60}"#)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "POST {path}");
    }
    // Only the sign-in page and the health probe are public.
    for path in ["/login", "/healthz"] {
        let resp = c
            .http
            .get(format!("{}{path}", c.url))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    }
    // Every operation of the OpenAPI document is among those refused above, so a route added
    // to the API (and documented, which a test requires) cannot be left out of this list.
    let doc: Value = c
        .http
        .get(format!("{}/api/openapi.json", c.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 8, "{paths:?}");
    for (template, ops) in paths {
        let path = template
            .replace("{identity}", "dev-1")
            .replace("{id}", "a-1")
            .replace("{kind}", "identity")
            .replace("{value}", "dev-1");
        for method in ops.as_object().expect("operations").keys() {
            let listed = match method.as_str() {
                "get" => gets.contains(&path.as_str()),
                "post" => posts.contains(&path.as_str()),
                _ => false,
            };
            assert!(
                listed,
                "{method} {template} is not checked without a session"
            );
        }
    }
    // A forged session cookie is no session.
    let resp = c
        .http
        .get(format!("{}/api/alerts", c.url))
        .header(COOKIE, "warden_session=0123456789abcdef")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_gives_a_fresh_strict_http_only_session() {
    let c = console().await;
    let (status, cookie) = sign_in(&c, "not-a-token", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
    // An attacker plants a session id before the victim signs in: the sign-in ignores it.
    let planted = "warden_session=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let (status, cookie) = sign_in(&c, OPERATOR, Some(planted)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    let session = cookie_pair(&cookie);
    assert_ne!(session, planted);
    assert_eq!(session.len(), "warden_session=".len() + 64);
    let me: Value = c
        .http
        .get(format!("{}/api/session", c.url))
        .header(COOKIE, &session)
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    assert_eq!(me["name"], "alice");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["csrf"].as_str().map(str::len), Some(64));
    let resp = c
        .http
        .get(format!("{}/api/alerts", c.url))
        .header(COOKIE, planted)
        .send()
        .await
        .expect("get");
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "the planted id is no session"
    );
    // Signing out ends the session.
    let csrf = me["csrf"].as_str().unwrap_or_default();
    let resp = c
        .http
        .post(format!("{}/logout", c.url))
        .header(COOKIE, &session)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = c
        .http
        .get(format!("{}/api/alerts", c.url))
        .header(COOKIE, &session)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn state_changes_need_the_csrf_token_an_operator_and_an_active_decision() {
    let c = console().await;
    quarantine(&c, "dev-1").await;
    let (_, cookie) = sign_in(&c, OPERATOR, None).await;
    let session = cookie_pair(&cookie.expect("cookie"));
    let me: Value = c
        .http
        .get(format!("{}/api/session", c.url))
        .header(COOKIE, &session)
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    let csrf = me["csrf"].as_str().unwrap_or_default().to_string();
    let release = |value: &str, token: Option<&str>, cookie: Option<&str>| {
        let mut req = c
            .http
            .post(format!("{}/api/quarantine/release", c.url))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"kind":"identity","value":"{value}","reason":"false positive"}}"#
            ));
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        if let Some(k) = cookie {
            req = req.header(COOKIE, k);
        }
        req.send()
    };
    // A cross-site request rides the cookie but cannot know the token.
    for token in [None, Some("0".repeat(64).as_str()), Some("")] {
        let resp = release("dev-1", token, Some(&session)).await.expect("post");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "token {token:?}");
    }
    // A viewer may look, not release.
    let resp = c
        .http
        .post(format!("{}/api/quarantine/release", c.url))
        .bearer_auth(VIEWER)
        .header("content-type", "application/json")
        .body(r#"{"kind":"identity","value":"dev-1","reason":"false positive"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Nothing to release: 404, nothing published.
    let resp = release("nobody", Some(&csrf), Some(&session))
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The operator's release, recorded with who and why.
    let resp = release("dev-1", Some(&csrf), Some(&session))
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let d: Decision = resp.json().await.expect("decision");
    assert_eq!(d.action, Action::Release);
    assert_eq!(d.reason, "released by alice: false positive");
    assert_eq!(d.evidence["operator"], "alice");
    assert_eq!(
        d.evidence["released_detectors"],
        serde_json::json!(["burst", "rate_spike"])
    );
    // Released twice: the second finds nothing active.
    let resp = release("dev-1", Some(&csrf), Some(&session))
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The audit record is an alert on the bus and on the console.
    let alerts: Value = c
        .http
        .get(format!("{}/api/alerts?subject=identity:dev-1", c.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    let audit = alerts
        .as_array()
        .and_then(|a| a.iter().find(|x| x["detector"] == "console"))
        .cloned()
        .expect("an audit alert");
    assert!(
        audit["message"]
            .as_str()
            .is_some_and(|m| m.contains("release by alice (operator)")),
        "{audit}"
    );
    // A manual quarantine by the operator (bearer: scripts need no CSRF token).
    let resp = c
        .http
        .post(format!("{}/api/quarantine", c.url))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(r#"{"kind":"ip","value":"203.0.113.9","ttl_s":600,"reason":"scanner"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let q: Decision = resp.json().await.expect("decision");
    assert_eq!(q.action, Action::Quarantine);
    assert_eq!(q.reason, "quarantined by alice: scanner");
}

#[tokio::test]
async fn new_decisions_are_pushed_to_a_signed_in_console() {
    let c = console().await;
    let mut resp = c
        .http
        .get(format!("{}/api/stream", c.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        resp.headers()
    );
    quarantine(&c, "dev-live").await;
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\n\n") && seen.contains("dev-live") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "stream so far: {seen:?}");
    let data = seen
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let update: Value = serde_json::from_str(data).expect("json");
    assert!(seen.contains("event: update"), "{seen}");
    assert_eq!(update["kind"], "decision");
    assert_eq!(update["action"], "quarantine");
    assert_eq!(update["subject"]["value"], "dev-live");
}

#[tokio::test]
async fn an_open_event_stream_does_not_hold_up_a_shutdown() {
    let c = console().await;
    let mut resp = c
        .http
        .get(format!("{}/api/stream", c.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = c.stop.send(());
    let served = tokio::time::timeout(Duration::from_secs(5), c.served).await;
    assert!(
        matches!(served, Ok(Ok(Ok(())))),
        "the console did not stop with a stream open: {served:?}"
    );
    // The stream was ended, not cut.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the stream did not end");
}

#[tokio::test]
async fn subject_pages_have_urls_of_their_own_behind_the_sign_in() {
    let c = console().await;
    for path in [
        "/identities/dev-1",
        "/ips/203.0.113.9",
        "/tenants/acme",
        "/keys/k-1",
        "/routes/telemetry",
    ] {
        let signed_in = c
            .http
            .get(format!("{}{path}", c.url))
            .bearer_auth(VIEWER)
            .send()
            .await
            .expect("get");
        assert_eq!(signed_in.status(), StatusCode::OK, "GET {path}");
        let page = signed_in.text().await.expect("body");
        assert!(page.contains("Fleet overview"), "{path}: {page}");
        let anonymous = c
            .http
            .get(format!("{}{path}", c.url))
            .send()
            .await
            .expect("get");
        assert_eq!(anonymous.status(), StatusCode::SEE_OTHER, "GET {path}");
    }
}

/// Validate `body` against the OpenAPI document's schema for `path` / `method` / `status`.
fn check_against_openapi(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    assert!(schema.is_object(), "no schema for {method} {path} {status}");
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root)
        .unwrap_or_else(|e| panic!("schema of {method} {path}: {e}"));
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match the document: {errors:?}\n{body}"
    );
}

#[tokio::test]
async fn real_responses_match_the_openapi_document() {
    let c = console().await;
    let get = |path: &str| {
        let req = c.http.get(format!("{}{path}", c.url)).bearer_auth(OPERATOR);
        async move {
            let resp = req.send().await.expect("get");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };
    let (status, doc) = get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    quarantine(&c, "dev-doc").await;
    for path in ["/api/quarantine", "/api/devices/dev-doc", "/api/session"] {
        let (status, body) = get(path).await;
        let template = if path.starts_with("/api/devices/") {
            "/api/devices/{identity}"
        } else {
            path
        };
        check_against_openapi(&doc, template, "get", status, &body);
    }
    let resp = c
        .http
        .post(format!("{}/api/quarantine/release", c.url))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"kind": "identity", "value": "dev-doc", "reason": "checked"}))
        .send()
        .await
        .expect("release");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    check_against_openapi(&doc, "/api/quarantine/release", "post", status, &body);
    // The release left an audit alert; an unknown subject is a documented 404.
    let mut alerts = Value::Null;
    for _ in 0..100 {
        alerts = get("/api/alerts").await.1;
        if alerts.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(alerts.as_array().is_some_and(|a| !a.is_empty()), "{alerts}");
    check_against_openapi(&doc, "/api/alerts", "get", 200, &alerts);
    let id = alerts[0]["id"].as_str().expect("alert id").to_string();
    for (path, template, status) in [
        (format!("/api/alerts/{id}"), "/api/alerts/{id}", 200),
        ("/api/alerts/nope".to_string(), "/api/alerts/{id}", 404),
        ("/api/traffic".to_string(), "/api/traffic", 200),
        (
            "/api/traffic/identity/dev-doc".to_string(),
            "/api/traffic/{kind}/{value}",
            200,
        ),
        ("/api/search?q=dev".to_string(), "/api/search", 200),
    ] {
        let (got, body) = get(&path).await;
        assert_eq!(got, status, "GET {path}: {body}");
        check_against_openapi(&doc, template, "get", status, &body);
    }
    let resp = c
        .http
        .post(format!("{}/api/quarantine/release", c.url))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"kind": "identity", "value": "nobody", "reason": "x"}))
        .send()
        .await
        .expect("release");
    let status = resp.status().as_u16();
    assert_eq!(status, 404);
    let body: Value = resp.json().await.expect("json");
    check_against_openapi(&doc, "/api/quarantine/release", "post", status, &body);
}
