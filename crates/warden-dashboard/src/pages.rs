//! The console's pages, rendered on the server: the fleet overview, subject pages, alert pages
//! and search results carry their data (tables and SVG charts) in the HTML itself, so they
//! read without JavaScript; the page's script adds live updates (it reloads the server-rendered
//! part, `#server`, when the live stream says something changed) and the actions.

use std::fmt::Write;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use warden_event::{Alert, Subject, SubjectKind};

use crate::api::{AppState, check_value, page_headers};
use crate::error::ApiError;
use crate::render::{
    Line, alert_link, bytes, chart, enc, esc, facts, num, subject_link, table, time,
};
use crate::views::{self, SearchQuery, TOP};

const PAGE: &str = include_str!("page.html");
/// Alerts per page of a subject page (and of the overview without JavaScript).
const ALERTS_PER_PAGE: usize = 50;
const MINUTE_NS: i64 = 60_000_000_000;

/// The page template with `title` and the server-rendered part filled in.
fn page(status: StatusCode, title: &str, server: &str) -> Response {
    let (head, tail) = PAGE.split_once("{{server}}").unwrap_or((PAGE, ""));
    let head = head.replacen("{{title}}", &esc(title), 1);
    let mut resp = (status, Html(format!("{head}{server}{tail}"))).into_response();
    page_headers(resp.headers_mut());
    resp
}

fn error_page(e: &ApiError) -> Response {
    let (status, text) = match e {
        ApiError::NotFound(_) => (
            StatusCode::NOT_FOUND,
            "Not found: nothing of that name is held.",
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "That address is not one the console understands.",
        ),
    };
    page(
        status,
        "Warden console",
        &format!(
            r#"<section id="server" class="wide warn"><p>{}</p></section>"#,
            esc(text)
        ),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    offset: Option<usize>,
}

fn alert_rows(alerts: &[Alert], with_subject: bool) -> Vec<Vec<String>> {
    alerts
        .iter()
        .map(|a| {
            let mut row = vec![alert_link(&a.id, &time(a.ts))];
            if with_subject {
                row.push(subject_link(&a.subject));
            }
            row.extend([
                esc(&a.detector),
                num(a.score),
                esc(&a.message),
                esc(a.action.map_or("none", action_name)),
            ]);
            row
        })
        .collect()
}

fn action_name(a: warden_event::Action) -> &'static str {
    match a {
        warden_event::Action::Quarantine => "quarantine",
        warden_event::Action::Throttle => "throttle",
        warden_event::Action::Release => "release",
    }
}

/// `GET /`: the fleet overview.
pub(crate) async fn overview(State(app): State<AppState>) -> Response {
    let now = warden_event::now_ns();
    let fleet = app.state.traffic().fleet(now, TOP);
    let t0 = fleet.series.first().map_or(now, |p| p.t);
    let mut html = String::from(
        r#"<section id="server" class="wide" data-page="overview"><h2>Traffic, last hour</h2>"#,
    );
    let total: u64 = fleet.series.iter().map(|p| p.requests).sum();
    let refused: u64 = fleet.series.iter().flat_map(|p| p.refused.values()).sum();
    let last = fleet.series.iter().rev().nth(1).map_or(0, |p| p.requests);
    let tracked = |k: &str| fleet.tracked.get(k).copied().unwrap_or(0);
    let _ = write!(
        html,
        r#"<div class="facts"><div class="fact"><b>{}</b><span>requests/s (last full minute)</span></div><div class="fact"><b>{total}</b><span>requests, last hour</span></div><div class="fact"><b>{refused}</b><span>refused, last hour</span></div><div class="fact"><b>{}</b><span>identities active</span></div><div class="fact"><b>{}</b><span>client IPs active</span></div></div>"#,
        num(last as f64 / 60.0),
        tracked("identity"),
        tracked("ip"),
    );
    let rate = Line {
        name: "requests/s".into(),
        values: fleet
            .series
            .iter()
            .map(|p| p.requests as f64 / 60.0)
            .collect(),
    };
    html.push_str(&chart(
        "traffic-chart",
        "Requests per second",
        "/s",
        t0,
        MINUTE_NS,
        &[rate],
    ));
    let mut reasons: Vec<&String> = fleet.series.iter().flat_map(|p| p.refused.keys()).collect();
    reasons.sort();
    reasons.dedup();
    let lines: Vec<Line> = reasons
        .iter()
        .map(|r| Line {
            name: (*r).clone(),
            values: fleet
                .series
                .iter()
                .map(|p| p.refused.get(*r).copied().unwrap_or(0) as f64)
                .collect(),
        })
        .collect();
    html.push_str(&chart(
        "refusals-chart",
        "Refusals per minute, by reason",
        "/min",
        t0,
        MINUTE_NS,
        &lines,
    ));
    let talker_rows = |talkers: &[crate::traffic::Talker]| -> Vec<Vec<String>> {
        talkers
            .iter()
            .map(|t| {
                vec![
                    subject_link(&t.subject),
                    t.requests.to_string(),
                    t.refused.to_string(),
                    bytes(t.bytes),
                ]
            })
            .collect()
    };
    html.push_str(r#"<div class="cols"><div><h2>Top identities (last 10 minutes)</h2>"#);
    html.push_str(&table(
        "top-identities",
        &["identity", "requests", "refused", "bytes"],
        &talker_rows(&fleet.top_identities),
        "no traffic",
    ));
    html.push_str(r#"</div><div><h2>Top client IPs (last 10 minutes)</h2>"#);
    html.push_str(&table(
        "top-ips",
        &["IP", "requests", "refused", "bytes"],
        &talker_rows(&fleet.top_ips),
        "no traffic",
    ));
    html.push_str("</div></div>");
    if let Some(status) = &app.status {
        html.push_str(&crate::health::section(&status()));
    }
    // Without JavaScript, the alerts and quarantines the script would list.
    let alerts = app.state.alerts(ALERTS_PER_PAGE, None);
    let active = app.state.active(now);
    html.push_str("<noscript><h2>Recent alerts</h2>");
    html.push_str(&table(
        "ns-alerts",
        &["time", "subject", "detector", "score", "message", "action"],
        &alert_rows(&alerts, true),
        "no alerts yet",
    ));
    html.push_str("<h2>Quarantined subjects</h2>");
    let rows: Vec<Vec<String>> = active
        .iter()
        .map(|d| {
            vec![
                subject_link(&d.subject),
                esc(action_name(d.action)),
                d.until.map_or("until released".into(), time),
                esc(&d.detector),
                esc(&d.reason),
            ]
        })
        .collect();
    html.push_str(&table(
        "ns-quarantine",
        &["subject", "action", "until", "detector", "reason"],
        &rows,
        "nobody is quarantined",
    ));
    html.push_str("</noscript></section>");
    page(StatusCode::OK, "Warden console", &html)
}

/// `GET /identities/{id}`, `/ips/{ip}`, `/tenants/{t}`, `/keys/{k}`, `/routes/{r}`.
pub(crate) async fn subject(
    kind: SubjectKind,
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let (Ok(Path(value)), Ok(Query(q))) = (path, query) else {
        return error_page(&ApiError::BadRequest("path or query".into()));
    };
    if let Err(e) = check_value(&value) {
        return error_page(&e);
    }
    let subject = Subject { kind, value };
    let now = warden_event::now_ns();
    let traffic = app.state.traffic().subject(&subject, now);
    let offset = q.offset.unwrap_or(0);
    let (alerts, total) = app
        .state
        .alerts_page(offset, ALERTS_PER_PAGE, Some(&subject));
    let decision = app.state.decision(&subject);
    let mut html = format!(
        r#"<section id="server" class="wide" data-page="subject"><h2>{} — traffic, last hour</h2>"#,
        esc(&subject.to_string())
    );
    let decision_text = match &decision {
        Some(d) => format!(
            "{} ({}) by {}: {} — decided {}{}",
            esc(action_name(d.action)),
            if d.is_active(now) {
                "active"
            } else {
                "not active"
            },
            esc(&d.detector),
            esc(&d.reason),
            time(d.decided_at),
            d.until
                .map_or(String::new(), |u| format!(", until {}", time(u)))
        ),
        None => "none".into(),
    };
    html.push_str(&facts(&[
        ("decision", decision_text),
        (
            "last request",
            traffic
                .last_seen
                .map_or("none in the last hour".into(), time),
        ),
        ("alerts held", total.to_string()),
    ]));
    if traffic.tracked {
        let t0 = traffic.series.first().map_or(now, |p| p.t);
        let series = |f: &dyn Fn(&crate::traffic::TrafficPoint) -> f64| -> Vec<f64> {
            traffic.series.iter().map(f).collect()
        };
        html.push_str(r#"<div class="cols"><div>"#);
        html.push_str(&chart(
            "subject-requests",
            "Requests per minute",
            "/min",
            t0,
            MINUTE_NS,
            &[
                Line {
                    name: "requests".into(),
                    values: series(&|p| p.requests as f64),
                },
                Line {
                    name: "refused".into(),
                    values: series(&|p| p.refused as f64),
                },
            ],
        ));
        html.push_str("</div><div>");
        html.push_str(&chart(
            "subject-bytes",
            "Bytes per minute (in + out)",
            " B",
            t0,
            MINUTE_NS,
            &[Line {
                name: "bytes".into(),
                values: series(&|p| p.bytes as f64),
            }],
        ));
        html.push_str("</div><div>");
        html.push_str(&chart(
            "subject-errors",
            "Error ratio (status ≥ 400)",
            "",
            t0,
            MINUTE_NS,
            &[Line {
                name: "error ratio".into(),
                values: series(&|p| {
                    if p.requests == 0 {
                        0.0
                    } else {
                        p.errors as f64 / p.requests as f64
                    }
                }),
            }],
        ));
        html.push_str("</div></div>");
        let refusals: Vec<String> = traffic
            .refusals
            .iter()
            .map(|(r, n)| format!("{} {n}", esc(r)))
            .collect();
        html.push_str(&facts(&[(
            "refusals by reason",
            if refusals.is_empty() {
                "none".into()
            } else {
                refusals.join(", ")
            },
        )]));
        let seen = |list: &[crate::traffic::Seen], link: Option<SubjectKind>| -> Vec<Vec<String>> {
            list.iter()
                .map(|s| {
                    let value = match link {
                        Some(kind) => subject_link(&Subject {
                            kind,
                            value: s.value.clone(),
                        }),
                        None => esc(&s.value),
                    };
                    vec![value, s.requests.to_string(), time(s.last_seen)]
                })
                .collect()
        };
        let (peer_title, peer_kind) = if kind == SubjectKind::Ip {
            ("Identities seen", SubjectKind::Identity)
        } else {
            ("Client IPs seen", SubjectKind::Ip)
        };
        let recent: Vec<Vec<String>> = traffic
            .recent
            .iter()
            .map(|r| {
                vec![
                    time(r.t),
                    esc(&r.request),
                    r.status.to_string(),
                    if r.reason == "none" {
                        "served".into()
                    } else {
                        format!("refused: {}", esc(&r.reason))
                    },
                    crate::render::bytes(r.bytes),
                ]
            })
            .collect();
        html.push_str("<h2>Last requests</h2>");
        html.push_str(&table(
            "recent-requests",
            &["time", "request", "status", "outcome", "bytes"],
            &recent,
            "none",
        ));
        html.push_str(r#"<div class="cols"><div><h2>Routes seen</h2>"#);
        html.push_str(&table(
            "routes-seen",
            &["route", "requests", "last"],
            &seen(&traffic.routes, None),
            "none",
        ));
        let _ = write!(html, r#"</div><div><h2>{peer_title}</h2>"#);
        html.push_str(&table(
            "peers-seen",
            &["subject", "requests", "last"],
            &seen(&traffic.peers, Some(peer_kind)),
            "none",
        ));
        html.push_str("</div></div>");
    } else {
        html.push_str(r#"<p class="empty">No traffic of this subject in the last hour is held (the console keeps the most recently active identities, IPs and tenants).</p>"#);
    }
    html.push_str(&crate::scores::section(&app.scores, &subject, now));
    let _ = write!(html, "<h2>Alerts ({total})</h2>");
    html.push_str(&table(
        "subject-alerts",
        &["time", "detector", "score", "message", "action"],
        &alert_rows(&alerts, false),
        "no alerts for this subject",
    ));
    if offset.saturating_add(alerts.len()) < total {
        let _ = write!(
            html,
            r#"<p><a href="?offset={}">older alerts</a></p>"#,
            offset.saturating_add(alerts.len())
        );
    }
    html.push_str("</section>");
    page(StatusCode::OK, &format!("{subject} · Warden"), &html)
}

/// `GET /alerts/{id}`: one alert, its evidence and the decision.
pub(crate) async fn alert(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = path else {
        return error_page(&ApiError::BadRequest("path".into()));
    };
    let v = match views::alert_view(&app, &id) {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let a = &v.alert;
    let mut html = format!(
        r#"<section id="server" class="wide" data-page="alert"><h2>Alert {}</h2>"#,
        esc(&a.id)
    );
    html.push_str(&facts(&[
        ("time", time(a.ts)),
        ("subject", subject_link(&a.subject)),
        ("detector", esc(&a.detector)),
        (
            "score",
            format!("{} (threshold {})", num(a.score), num(a.evidence.threshold)),
        ),
        ("severity", esc(&format!("{:?}", a.severity).to_lowercase())),
        ("pipeline", esc(&a.pipeline)),
        ("message", esc(&a.message)),
        (
            "window",
            format!(
                "{} ending {}",
                esc(&a.evidence.window),
                time(a.evidence.window_end)
            ),
        ),
        ("detectors that agreed", esc(&v.detectors.join(", "))),
    ]));
    html.push_str("<h2>Evidence: feature values</h2>");
    let features: Vec<Vec<String>> = a
        .evidence
        .features
        .iter()
        .map(|(k, x)| {
            let base = a
                .evidence
                .baseline
                .get(k)
                .map_or(String::new(), |b| num(*b));
            vec![esc(k), num(*x), base]
        })
        .collect();
    html.push_str(&table(
        "evidence-features",
        &["feature", "value", "baseline (same name)"],
        &features,
        "no features recorded",
    ));
    html.push_str("<h2>Baseline</h2>");
    let baseline: Vec<Vec<String>> = a
        .evidence
        .baseline
        .iter()
        .map(|(k, x)| vec![esc(k), num(*x)])
        .collect();
    html.push_str(&table(
        "evidence-baseline",
        &["statistic", "value"],
        &baseline,
        "no baseline recorded",
    ));
    html.push_str("<h2>Decision</h2>");
    let decision = match &v.decision {
        Some(d) => facts(&[
            (
                "action",
                format!(
                    "{} ({})",
                    esc(action_name(d.action)),
                    if v.active { "active" } else { "not active" }
                ),
            ),
            (
                "this alert's",
                if v.decision_is_this_alerts {
                    "yes".into()
                } else {
                    format!(
                        "no: the latest about the subject (this alert led to {})",
                        esc(a.decision_id.as_deref().unwrap_or("none"))
                    )
                },
            ),
            ("reason", esc(&d.reason)),
            ("by", esc(&d.detector)),
            ("decided", time(d.decided_at)),
            ("until", d.until.map_or("until released".into(), time)),
        ]),
        None => facts(&[("action", esc(a.action.map_or("none", action_name)))]),
    };
    html.push_str(&decision);
    html.push_str("<h2>Alerts that led to the same decision</h2>");
    html.push_str(&table(
        "agreeing",
        &["time", "subject", "detector", "score", "message", "action"],
        &alert_rows(&v.agreeing, true),
        "none",
    ));
    html.push_str("</section>");
    page(StatusCode::OK, &format!("Alert {} · Warden", a.id), &html)
}

/// `GET /search?q=`: subjects whose value contains the query, with links to their pages.
pub(crate) async fn search(
    State(app): State<AppState>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error_page(&ApiError::BadRequest("query".into()));
    };
    let v = match views::search(&app, &q.q) {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let rows: Vec<Vec<String>> = v
        .subjects
        .iter()
        .map(|h| {
            vec![
                subject_link(&h.subject),
                h.requests.to_string(),
                h.alerts.to_string(),
            ]
        })
        .collect();
    let html = format!(
        r#"<section id="server" class="wide" data-page="search"><h2>Search: {}</h2>{}</section>"#,
        esc(&v.query),
        table(
            "search-results",
            &["subject", "requests (last hour)", "alerts"],
            &rows,
            "nothing found"
        )
    );
    let _ = enc;
    page(
        StatusCode::OK,
        &format!("Search {} · Warden", v.query),
        &html,
    )
}
