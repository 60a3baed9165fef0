//! The HTTP API and the page.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing::info;
use warden_bus::Producer;
use warden_event::{Action, Alert, Decision, Evidence, Severity, Subject, SubjectKind};

use crate::auth::{self, Auth, Operator};
use crate::error::ApiError;
use crate::state::DashboardState;
use crate::{pages, views};

/// Alerts returned by `/api/alerts` when no `limit` is given.
const DEFAULT_LIMIT: usize = 100;
/// Longest subject value accepted in a release.
const MAX_SUBJECT_LEN: usize = 512;
/// Time allowed for the bus to acknowledge a release.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reason accepted for a release or a manual quarantine.
const MAX_REASON_LEN: usize = 1_000;
/// Longest manual quarantine, seconds (a week).
const MAX_MANUAL_TTL_S: u64 = 7 * 86_400;

/// Reports the status of the components running beside the dashboard (e.g. the processor's
/// pipeline and its last refused reload), as JSON.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) state: Arc<DashboardState>,
    pub(crate) producer: Arc<dyn Producer>,
    pub(crate) decisions_topic: String,
    pub(crate) alerts_topic: String,
    pub(crate) status: Option<StatusFn>,
    /// Detector scores of subjects (the processor beside the console).
    pub(crate) scores: crate::scores::Scores,
    pub(crate) auth: Arc<Auth>,
    /// Where console actions are recorded before they are published (`[audit]`).
    pub(crate) audit: Option<Arc<warden_event::audit::AuditLog>>,
    /// Turns `true` when the server shuts down: live streams end then (a graceful shutdown
    /// waits for every open connection, and an event stream never ends by itself).
    pub(crate) closing: tokio::sync::watch::Receiver<bool>,
}

pub(crate) fn router(app: AppState) -> Router {
    let auth = app.auth.clone();
    let signin = Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/oidc/start", get(auth::oidc_start))
        .route("/oidc/callback", get(auth::oidc_callback))
        .with_state(auth.clone());
    Router::new()
        .route("/", get(pages::overview))
        // Subject pages: the page opened on the subject the URL names, its traffic and alerts
        // rendered on the server.
        .route(
            "/identities/{subject}",
            get(|s, p, q| pages::subject(SubjectKind::Identity, s, p, q)),
        )
        .route(
            "/ips/{subject}",
            get(|s, p, q| pages::subject(SubjectKind::Ip, s, p, q)),
        )
        .route(
            "/tenants/{subject}",
            get(|s, p, q| pages::subject(SubjectKind::Tenant, s, p, q)),
        )
        .route(
            "/keys/{subject}",
            get(|s, p, q| pages::subject(SubjectKind::ApiKey, s, p, q)),
        )
        .route(
            "/routes/{subject}",
            get(|s, p, q| pages::subject(SubjectKind::Route, s, p, q)),
        )
        .route("/alerts/{id}", get(pages::alert))
        .route("/search", get(pages::search))
        .route("/api/traffic", get(views::fleet_traffic))
        .route("/api/traffic/{kind}/{value}", get(views::subject_traffic))
        .route("/api/alerts/{id}", get(views::alert))
        .route("/api/search", get(views::search_api))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/session", get(session))
        .route("/api/alerts", get(alerts))
        .route("/api/quarantine", get(quarantine).post(manual_quarantine))
        .route("/api/quarantine/release", post(release))
        .route("/api/devices/{identity}", get(device))
        .route("/api/status", get(status))
        .route("/api/stream", get(stream))
        .route("/api/openapi.json", get(crate::openapi::serve))
        .with_state(app)
        .merge(signin)
        .layer(axum::middleware::from_fn_with_state(auth, auth::gate))
}

/// `GET /api/stream`: server-sent events, one `update` event (JSON [`LiveUpdate`]) per new
/// alert or decision, a `resync` event when this console fell behind (reload the lists), and a
/// keep-alive comment every 15 s. The stream ends when the console shuts down.
///
/// [`LiveUpdate`]: crate::state::LiveUpdate
async fn stream(State(app): State<AppState>) -> impl IntoResponse {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let rx = app.state.subscribe();
    let closing = app.closing.clone();
    let events = futures::stream::unfold((rx, closing), |(mut rx, mut closing)| async move {
        let received = tokio::select! {
            r = rx.recv() => r,
            _ = closing.wait_for(|c| *c) => return None,
        };
        let event = match received {
            Ok(update) => Event::default()
                .event("update")
                .json_data(&update)
                .unwrap_or_else(|_| Event::default().event("resync").data("")),
            Err(RecvError::Lagged(_)) => Event::default().event("resync").data(""),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), (rx, closing)))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Who is signed in, and the CSRF token the page sends with state changes.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct SessionView {
    name: String,
    role: warden_config::ConsoleRole,
    csrf: Option<String>,
}

async fn session(Extension(op): Extension<Operator>) -> Json<SessionView> {
    Json(SessionView {
        name: op.name,
        role: op.role,
        csrf: op.csrf,
    })
}

/// Security headers of every page.
pub(crate) fn page_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn status(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(
        app.status
            .as_ref()
            .map_or_else(|| serde_json::json!({}), |f| f()),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    limit: Option<usize>,
    /// Alerts to skip (paging: the next page starts at `offset + limit`).
    offset: Option<usize>,
    /// `kind:value`, e.g. `identity:dev-1`.
    subject: Option<String>,
}

async fn alerts(
    State(app): State<AppState>,
    query: Result<Query<AlertsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let subject = q.subject.as_deref().map(parse_subject).transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let (page, total) = app
        .state
        .alerts_page(q.offset.unwrap_or(0), limit, subject.as_ref());
    let mut resp = Json(page).into_response();
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        resp.headers_mut().insert("x-total-count", v);
    }
    Ok(resp)
}

async fn quarantine(State(app): State<AppState>) -> impl IntoResponse {
    Json(app.state.active(warden_event::now_ns()))
}

/// A release: who, and why (recorded with the operator's name).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseRequest {
    kind: SubjectKind,
    value: String,
    /// Why (required, not blank, at most 1000 bytes): recorded with the operator's name.
    #[schemars(length(min = 1, max = 1000))]
    reason: String,
}

/// A manual quarantine.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuarantineRequest {
    kind: SubjectKind,
    value: String,
    ttl_s: u64,
    reason: String,
}

/// A release or a manual quarantine must say why: a reason of 1 to `MAX_REASON_LEN` bytes,
/// not only blanks.
fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.trim().is_empty() {
        return Err(ApiError::ReasonRequired);
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(ApiError::BadRequest(format!(
            "reason must be at most {MAX_REASON_LEN} bytes"
        )));
    }
    Ok(())
}

/// Publish `decision` and an audit alert recording who made it and why; apply it locally.
/// With an audit log, the action is written there first: an action that cannot be recorded
/// is not taken (503).
async fn publish(
    app: &AppState,
    decision: Decision,
    op: &Operator,
    what: &str,
) -> Result<(), ApiError> {
    let action = serde_json::json!({
        "action": what,
        "operator": op.name,
        "role": role_name(op),
        "subject": decision.subject,
        "decision": decision,
    });
    record(app, &action)
        .await
        .map_err(|e| ApiError::Unavailable(format!("recording a {what} in the audit log: {e}")))?;
    let send = |topic: &str, key: String, payload: Vec<u8>| {
        let producer = app.producer.clone();
        let topic = topic.to_string();
        async move {
            match tokio::time::timeout(
                PUBLISH_TIMEOUT,
                producer.send(&topic, key.as_bytes(), &payload),
            )
            .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ApiError::Unavailable(format!("publishing a {what}: {e}"))),
                Err(_) => Err(ApiError::Unavailable(format!(
                    "publishing a {what} timed out"
                ))),
            }
        }
    };
    if let Err(e) = send(
        &app.decisions_topic,
        decision.subject.key(),
        warden_event::encode(&decision),
    )
    .await
    {
        // The log already says it was requested: say it did not happen.
        let failed = serde_json::json!({
            "action": what,
            "operator": op.name,
            "role": role_name(op),
            "decision_id": decision.id,
            "failed": match &e {
                ApiError::BadRequest(why)
                | ApiError::Unavailable(why)
                | ApiError::Forbidden(why)
                | ApiError::NotFound(why) => why.clone(),
                ApiError::ReasonRequired => "no reason".into(),
            },
        });
        if let Err(e) = record(app, &failed).await {
            tracing::error!(error = %e, decision_id = %decision.id, "The failure of a console action could not be written to the audit log.");
        }
        return Err(e);
    }
    let audit = Alert {
        v: warden_event::SCHEMA_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        ts: decision.decided_at,
        pipeline: "console".into(),
        detector: "console".into(),
        subject: decision.subject.clone(),
        score: 0.0,
        severity: Severity::Low,
        message: format!(
            "{} by {} ({}): {}",
            what,
            op.name,
            role_name(op),
            decision.reason
        ),
        evidence: Evidence::default(),
        action: Some(decision.action),
        decision_id: Some(decision.id.clone()),
    };
    // The decision is what counts; an audit record that cannot be published is logged.
    if let Err(e) = send(
        &app.alerts_topic,
        audit.subject.key(),
        warden_event::encode(&audit),
    )
    .await
    {
        tracing::warn!(error = ?e, decision_id = %decision.id, "The audit record of a console action was not published.");
    } else {
        app.state.apply_alert(audit);
    }
    info!(subject = %decision.subject, action = ?decision.action, operator = %op.name, decision_id = %decision.id, reason = %decision.reason, "Console action.");
    app.state.apply_decision(decision);
    Ok(())
}

/// Append an operator record to the audit log, if there is one.
async fn record(app: &AppState, payload: &serde_json::Value) -> Result<(), String> {
    let Some(log) = app.audit.clone() else {
        return Ok(());
    };
    let payload = payload.clone();
    tokio::task::spawn_blocking(move || log.append(warden_event::audit::Kind::Operator, &payload))
        .await
        .map_err(|e| e.to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn role_name(op: &Operator) -> &'static str {
    match op.role {
        warden_config::ConsoleRole::Viewer => "viewer",
        warden_config::ConsoleRole::Operator => "operator",
    }
}

/// `POST /api/quarantine/release`: end the subject's active quarantine or throttle (404 when
/// it has none). The release names the operator and the detectors whose decision it ends:
/// processors hold back only those detectors for their cooldown, so any other detection of
/// the subject is enforced at once.
async fn release(
    State(app): State<AppState>,
    Extension(op): Extension<Operator>,
    body: Result<Json<ReleaseRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Decision>), ApiError> {
    if !op.may_act() {
        return Err(ApiError::Forbidden("viewers cannot release".into()));
    }
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_value(&req.value)?;
    check_reason(&req.reason)?;
    let subject = Subject {
        kind: req.kind,
        value: req.value,
    };
    let now = warden_event::now_ns();
    let Some(active) = app.state.decision(&subject).filter(|d| d.is_active(now)) else {
        return Err(ApiError::NotFound(format!(
            "{subject} is not quarantined or throttled"
        )));
    };
    let reason = format!("released by {}: {}", op.name, req.reason.trim());
    let decision = Decision {
        v: warden_event::SCHEMA_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        subject,
        action: Action::Release,
        until: None,
        reason,
        detector: "console".into(),
        score: 0.0,
        evidence: serde_json::json!({
            "operator": op.name,
            "released_decision": active.id,
            "released_detectors": released_detectors(&active),
        }),
        decided_at: now,
        limit: None,
    };
    publish(&app, decision.clone(), &op, "release").await?;
    Ok((StatusCode::ACCEPTED, Json(decision)))
}

/// The detectors whose firings made `d` (its evidence's `detectors`, else its detector).
fn released_detectors(d: &Decision) -> Vec<String> {
    let listed = d.evidence_strings("detectors");
    if listed.is_empty() {
        vec![d.detector.clone()]
    } else {
        listed
    }
}

/// `POST /api/quarantine`: quarantine a subject by hand for `ttl_s` seconds.
async fn manual_quarantine(
    State(app): State<AppState>,
    Extension(op): Extension<Operator>,
    body: Result<Json<QuarantineRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Decision>), ApiError> {
    if !op.may_act() {
        return Err(ApiError::Forbidden("viewers cannot quarantine".into()));
    }
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_value(&req.value)?;
    check_reason(&req.reason)?;
    if req.ttl_s == 0 || req.ttl_s > MAX_MANUAL_TTL_S {
        return Err(ApiError::BadRequest(format!(
            "ttl_s must be 1 to {MAX_MANUAL_TTL_S}"
        )));
    }
    let now = warden_event::now_ns();
    let ttl_ns = i64::try_from(req.ttl_s)
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(1_000_000_000);
    let decision = Decision {
        v: warden_event::SCHEMA_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        subject: Subject {
            kind: req.kind,
            value: req.value,
        },
        action: Action::Quarantine,
        until: Some(now.saturating_add(ttl_ns)),
        reason: format!("quarantined by {}: {}", op.name, req.reason.trim()),
        detector: "console".into(),
        score: 0.0,
        evidence: serde_json::json!({ "operator": op.name }),
        decided_at: now,
        limit: None,
    };
    publish(&app, decision.clone(), &op, "manual quarantine").await?;
    Ok((StatusCode::ACCEPTED, Json(decision)))
}

/// The drill-down of one identity.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct DeviceView {
    subject: Subject,
    alerts: Vec<Alert>,
    /// The latest decision about the identity, active or not.
    decision: Option<Decision>,
    /// Whether that decision restricts the identity now.
    active: bool,
}

async fn device(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<DeviceView>, ApiError> {
    let Path(identity) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_value(&identity)?;
    let subject = Subject::identity(identity);
    let decision = app.state.decision(&subject);
    let active = decision
        .as_ref()
        .is_some_and(|d| d.is_active(warden_event::now_ns()));
    Ok(Json(DeviceView {
        alerts: app.state.alerts(usize::MAX, Some(&subject)),
        subject,
        decision,
        active,
    }))
}

/// Parse `kind:value` (the value may itself contain `:`, e.g. an IPv6 address).
fn parse_subject(text: &str) -> Result<Subject, ApiError> {
    let (kind, value) = text
        .split_once(':')
        .ok_or_else(|| ApiError::BadRequest("subject is not `kind:value`".into()))?;
    let kind: SubjectKind = serde_json::from_value(serde_json::Value::String(kind.into()))
        .map_err(|e| ApiError::BadRequest(format!("subject kind: {e}")))?;
    check_value(value)?;
    Ok(Subject {
        kind,
        value: value.into(),
    })
}

pub(crate) fn check_value(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_SUBJECT_LEN {
        return Err(ApiError::BadRequest(format!(
            "subject value must be 1 to {MAX_SUBJECT_LEN} bytes"
        )));
    }
    Ok(())
}
