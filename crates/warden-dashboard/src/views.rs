//! The JSON views behind the console's pages: traffic over time (fleet and subject), one
//! alert with its evidence, and search. The HTML pages ([`crate::pages`]) render the same
//! views.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use warden_event::{Alert, Decision, Subject, SubjectKind};

use crate::api::{AppState, check_value};
use crate::error::ApiError;
use crate::traffic::{FleetTrafficView, SubjectTrafficView};

/// Talkers listed per kind on the overview.
pub(crate) const TOP: usize = 10;
/// Results of a search, at most.
pub(crate) const SEARCH_LIMIT: usize = 50;
/// Alerts sharing a decision listed with an alert, at most.
const AGREEING_LIMIT: usize = 50;

/// One alert with everything that explains it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct AlertView {
    pub(crate) alert: Alert,
    /// The detectors that agreed on the decision this alert led to (the decision's evidence,
    /// else the detectors of the alerts sharing its id), or this alert's detector alone.
    pub(crate) detectors: Vec<String>,
    /// Other alerts that led to the same decision, newest first.
    pub(crate) agreeing: Vec<Alert>,
    /// The latest decision about the alert's subject (active or not).
    pub(crate) decision: Option<Decision>,
    /// Whether that decision is the one this alert led to.
    pub(crate) decision_is_this_alerts: bool,
    /// Whether that decision restricts the subject now.
    pub(crate) active: bool,
}

/// A subject found by a search.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct SearchHit {
    pub(crate) subject: Subject,
    /// Requests over the traffic window (0 when none is held).
    pub(crate) requests: u64,
    /// Alerts held about it.
    pub(crate) alerts: u64,
}

/// Search results (`GET /api/search?q=`), busiest first.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct SearchView {
    pub(crate) query: String,
    pub(crate) subjects: Vec<SearchHit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchQuery {
    pub(crate) q: String,
}

/// The kind of a subject as written in a URL (`identity`, `ip`, `tenant`, `api_key`, `route`).
pub(crate) fn parse_kind(kind: &str) -> Result<SubjectKind, ApiError> {
    serde_json::from_value(serde_json::Value::String(kind.into()))
        .map_err(|e| ApiError::BadRequest(format!("subject kind: {e}")))
}

pub(crate) fn alert_view(app: &AppState, id: &str) -> Result<AlertView, ApiError> {
    check_value(id)?;
    let alert = app
        .state
        .alert(id)
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id} is held")))?;
    let decision = app.state.decision(&alert.subject);
    let decision_is_this_alerts = decision
        .as_ref()
        .is_some_and(|d| alert.decision_id.as_deref() == Some(d.id.as_str()));
    let agreeing: Vec<Alert> = alert
        .decision_id
        .as_deref()
        .map(|d| app.state.alerts_of_decision(d, AGREEING_LIMIT))
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.id != alert.id)
        .collect();
    let mut detectors = decision
        .as_ref()
        .filter(|_| decision_is_this_alerts)
        .map(|d| d.evidence_strings("detectors"))
        .unwrap_or_default();
    if detectors.is_empty() {
        detectors.push(alert.detector.clone());
        detectors.extend(agreeing.iter().map(|a| a.detector.clone()));
        detectors.sort();
        detectors.dedup();
    }
    let active = decision
        .as_ref()
        .is_some_and(|d| d.is_active(warden_event::now_ns()));
    Ok(AlertView {
        alert,
        detectors,
        agreeing,
        decision,
        decision_is_this_alerts,
        active,
    })
}

/// Subjects matching `q`: `kind:value` looks for that kind only; anything else looks in every
/// kind. Traffic first (busiest first), then subjects only known from alerts.
pub(crate) fn search(app: &AppState, q: &str) -> Result<SearchView, ApiError> {
    let q = q.trim();
    check_value(q)?;
    let (kind, needle) = match q.split_once(':') {
        Some((k, v)) if !v.is_empty() => match parse_kind(k) {
            Ok(kind) => (Some(kind), v),
            Err(_) => (None, q),
        },
        _ => (None, q),
    };
    let alerted = app.state.alerted_subjects(needle, SEARCH_LIMIT * 4);
    let alerts_of = |s: &Subject| {
        alerted
            .iter()
            .find(|(a, _)| a == s)
            .map_or(0, |(_, n)| *n as u64)
    };
    let mut subjects: Vec<SearchHit> = app
        .state
        .traffic()
        .search(needle, SEARCH_LIMIT * 4)
        .into_iter()
        .map(|t| SearchHit {
            alerts: alerts_of(&t.subject),
            subject: t.subject,
            requests: t.requests,
        })
        .collect();
    for (s, n) in &alerted {
        if !subjects.iter().any(|h| h.subject == *s) {
            subjects.push(SearchHit {
                subject: s.clone(),
                requests: 0,
                alerts: *n as u64,
            });
        }
    }
    subjects.retain(|h| kind.is_none_or(|k| h.subject.kind == k));
    subjects.truncate(SEARCH_LIMIT);
    Ok(SearchView {
        query: q.to_string(),
        subjects,
    })
}

/// `GET /api/traffic`: the fleet's traffic over the window and its top talkers.
pub(crate) async fn fleet_traffic(State(app): State<AppState>) -> Json<FleetTrafficView> {
    Json(app.state.traffic().fleet(warden_event::now_ns(), TOP))
}

/// `GET /api/traffic/{kind}/{value}`: one subject's traffic over the window.
pub(crate) async fn subject_traffic(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<SubjectTrafficView>, ApiError> {
    let Path((kind, value)) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_value(&value)?;
    let subject = Subject {
        kind: parse_kind(&kind)?,
        value,
    };
    Ok(Json(
        app.state
            .traffic()
            .subject(&subject, warden_event::now_ns()),
    ))
}

/// `GET /api/alerts/{id}`: one alert with its evidence and decision (404 when not held).
pub(crate) async fn alert(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AlertView>, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    alert_view(&app, &id).map(Json)
}

/// `GET /api/search?q=`: identities, IPs and tenants whose value contains `q`.
pub(crate) async fn search_api(
    State(app): State<AppState>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<SearchView>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    search(&app, &q.q).map(Json)
}
