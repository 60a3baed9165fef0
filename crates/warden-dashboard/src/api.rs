//! The HTTP API and the page.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing::info;
use warden_bus::Producer;
use warden_event::{Action, Alert, Decision, Subject, SubjectKind};

use crate::error::ApiError;
use crate::state::DashboardState;

const PAGE: &str = include_str!("page.html");
/// Alerts returned by `/api/alerts` when no `limit` is given.
const DEFAULT_LIMIT: usize = 100;
/// Longest subject value accepted in a release.
const MAX_SUBJECT_LEN: usize = 512;
/// Time allowed for the bus to acknowledge a release.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Reports the status of the components running beside the dashboard (e.g. the processor's
/// pipeline and its last refused reload), as JSON.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) state: Arc<DashboardState>,
    pub(crate) producer: Arc<dyn Producer>,
    pub(crate) decisions_topic: String,
    pub(crate) status: Option<StatusFn>,
}

pub(crate) fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/alerts", get(alerts))
        .route("/api/quarantine", get(quarantine))
        .route("/api/quarantine/release", post(release))
        .route("/api/devices/{identity}", get(device))
        .route("/api/status", get(status))
        .with_state(app)
}

async fn status(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(
        app.status
            .as_ref()
            .map_or_else(|| serde_json::json!({}), |f| f()),
    )
}

async fn page() -> Response {
    let mut resp = Html(PAGE).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    limit: Option<usize>,
    /// `kind:value`, e.g. `identity:dev-1`.
    subject: Option<String>,
}

async fn alerts(
    State(app): State<AppState>,
    query: Result<Query<AlertsQuery>, QueryRejection>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let subject = q.subject.as_deref().map(parse_subject).transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    Ok(Json(app.state.alerts(limit, subject.as_ref())))
}

async fn quarantine(State(app): State<AppState>) -> impl IntoResponse {
    Json(app.state.active(warden_event::now_ns()))
}

async fn release(
    State(app): State<AppState>,
    body: Result<Json<Subject>, JsonRejection>,
) -> Result<(StatusCode, Json<Decision>), ApiError> {
    let Json(subject) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_value(&subject.value)?;
    let decision = Decision {
        v: warden_event::SCHEMA_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        subject,
        action: Action::Release,
        until: None,
        reason: "released from the dashboard".into(),
        detector: "dashboard".into(),
        score: 0.0,
        evidence: serde_json::json!({}),
        decided_at: warden_event::now_ns(),
        limit: None,
    };
    let key = decision.subject.key();
    let payload = warden_event::encode(&decision);
    let sent = tokio::time::timeout(
        PUBLISH_TIMEOUT,
        app.producer
            .send(&app.decisions_topic, key.as_bytes(), &payload),
    )
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ApiError::Unavailable(format!("publishing a release: {e}"))),
        Err(_) => {
            return Err(ApiError::Unavailable(
                "publishing a release timed out".into(),
            ));
        }
    }
    info!(subject = %decision.subject, decision_id = %decision.id, "Subject released from the dashboard.");
    // The follower will read it back; applying it now makes the next refresh reflect it.
    app.state.apply_decision(decision.clone());
    Ok((StatusCode::ACCEPTED, Json(decision)))
}

/// The drill-down of one identity.
#[derive(Debug, Serialize)]
struct DeviceView {
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

fn check_value(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_SUBJECT_LEN {
        return Err(ApiError::BadRequest(format!(
            "subject value must be 1 to {MAX_SUBJECT_LEN} bytes"
        )));
    }
    Ok(())
}
