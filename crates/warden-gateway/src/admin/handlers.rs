//! The admin API's operations.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};
use warden_config::Rate;
use warden_event::{Action, Decision, Subject, SubjectKind};

use super::{Admin, AdminError, read_json, reads};
use crate::rbac::Caller;

/// Longest quarantine the admin API sets (30 days).
const MAX_TTL_S: u64 = 30 * 24 * 3600;
/// TTL when a request does not give one (1 hour).
const DEFAULT_TTL_S: u64 = 3600;

pub(super) type Handled = Result<(Response, String), AdminError>;

/// `caller` names who is calling, for the audit log: the operator certificate's name, else
/// `token`.
pub(super) async fn dispatch(
    admin: &Admin,
    req: Request,
    request_id: &str,
    caller: &str,
) -> Handled {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method().clone();
    match segs.as_slice() {
        ["admin", "quarantines"] if reads(&method) => list(admin),
        ["admin", "quarantines"] if method == Method::POST => {
            let body: AddRequest = read_json(req.into_body()).await?;
            add(admin, body, request_id, caller).await
        }
        ["admin", "quarantines", kind, value] if method == Method::DELETE => {
            let subject = subject(kind, &percent_decode(value)?)?;
            release(admin, subject, request_id, caller).await
        }
        ["admin", "reload"] if method == Method::POST => reload(admin).await,
        ["admin", "policy", identity] if reads(&method) => {
            let query = parse_query(req.uri().query().unwrap_or(""))?;
            effective(admin, &percent_decode(identity)?, &query)
        }
        ["admin", "rbac", "shadow"] if reads(&method) => shadow(admin),
        ["admin", "deprecated"] if reads(&method) => ok(
            StatusCode::OK,
            json!({ "routes": admin.0.live.deprecated() }),
            "list_deprecated",
        ),
        ["admin", "keys"] if reads(&method) => super::keys::list(admin),
        ["admin", "keys"] if method == Method::POST => {
            let body: warden_config::ApiKeyConfig = read_json(req.into_body()).await?;
            super::keys::add(admin, body).await
        }
        ["admin", "keys", id] if method == Method::DELETE => {
            super::keys::remove(admin, percent_decode(id)?).await
        }
        ["admin", "mqtt"] if reads(&method) => ok(
            StatusCode::OK,
            json!({ "connected": admin.0.mqtt.connected() }),
            "list_mqtt",
        ),
        ["admin", "mqtt", "publish"] if method == Method::POST => {
            let body: MqttCommand = read_json(req.into_body()).await?;
            mqtt_publish(admin, body)
        }
        ["admin", "mqtt"] | ["admin", "mqtt", "publish"] => Err(AdminError::MethodNotAllowed),
        ["admin", "keys"] | ["admin", "keys", _] => Err(AdminError::MethodNotAllowed),
        ["admin", "routes"] if reads(&method) => super::keys::list_routes(admin),
        ["admin", "routes"] if method == Method::POST => {
            let body: warden_config::RouteConfig = read_json(req.into_body()).await?;
            super::keys::add_route(admin, body).await
        }
        ["admin", "routes", name] if method == Method::DELETE => {
            super::keys::remove_route(admin, percent_decode(name)?).await
        }
        ["admin", "routes"] | ["admin", "routes", _] => Err(AdminError::MethodNotAllowed),
        ["admin", "limits"] if reads(&method) => super::keys::get_limits(admin),
        ["admin", "limits"] if method == Method::PUT => {
            let body: warden_config::LimitsConfig = read_json(req.into_body()).await?;
            super::keys::set_limits(admin, Some(body)).await
        }
        ["admin", "limits"] if method == Method::DELETE => {
            super::keys::set_limits(admin, None).await
        }
        ["admin", "limits"] => Err(AdminError::MethodNotAllowed),
        ["admin", "quarantines"]
        | ["admin", "quarantines", _, _]
        | ["admin", "reload"]
        | ["admin", "policy", _]
        | ["admin", "rbac", "shadow"]
        | ["admin", "deprecated"] => Err(AdminError::MethodNotAllowed),
        _ => Err(AdminError::NotFound),
    }
}

/// A command to a device over MQTT.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttCommand {
    identity: String,
    topic: String,
    /// The payload as text…
    #[serde(default)]
    payload: Option<String>,
    /// …or as base64 (binary).
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    qos: u8,
}

fn mqtt_publish(admin: &Admin, c: MqttCommand) -> Handled {
    use base64::Engine;
    let payload = match (c.payload, c.payload_base64) {
        (Some(p), None) => bytes::Bytes::from(p),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(bytes::Bytes::from)
            .map_err(|_| AdminError::BadRequest)?,
        (None, None) => bytes::Bytes::new(),
        (Some(_), Some(_)) => return Err(AdminError::BadRequest),
    };
    let topic_ok =
        !c.topic.is_empty() && !c.topic.contains(['+', '#', '\0']) && c.topic.len() <= 65_535;
    if !topic_ok || c.qos > 1 || c.identity.is_empty() {
        return Err(AdminError::BadRequest);
    }
    let d = admin.0.mqtt.publish(&c.identity, &c.topic, c.qos, payload);
    let status = if d.delivered > 0 {
        StatusCode::OK
    } else if d.queued > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::NOT_FOUND
    };
    ok(status, json!(d), "mqtt_publish")
}

pub(super) fn ok(
    status: StatusCode,
    body: serde_json::Value,
    action: impl Into<String>,
) -> Handled {
    Ok(((status, axum::Json(body)).into_response(), action.into()))
}

fn list(admin: &Admin) -> Handled {
    let live = admin.0.quarantine.live(warden_event::now_ns());
    ok(
        StatusCode::OK,
        json!({ "decisions": live }),
        "list_quarantines",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectBody {
    kind: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    subject: SubjectBody,
    /// `quarantine` (default) or `throttle`.
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    ttl_s: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
}

/// A subject the gateway can enforce on (routes cannot be quarantined).
fn subject(kind: &str, value: &str) -> Result<Subject, AdminError> {
    let kind = match kind {
        "identity" => SubjectKind::Identity,
        "api_key" => SubjectKind::ApiKey,
        "tenant" => SubjectKind::Tenant,
        "ip" => SubjectKind::Ip,
        _ => return Err(AdminError::BadRequest),
    };
    let value = value.trim();
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(AdminError::BadRequest);
    }
    let value = if kind == SubjectKind::Ip {
        // The gateway matches the canonical text form of the client IP.
        value
            .parse::<IpAddr>()
            .map_err(|_| AdminError::BadRequest)?
            .to_string()
    } else {
        value.to_string()
    };
    Ok(Subject { kind, value })
}

async fn add(admin: &Admin, body: AddRequest, request_id: &str, caller: &str) -> Handled {
    let subject = subject(&body.subject.kind, &body.subject.value)?;
    let action = match body.action.as_deref() {
        None | Some("quarantine") => Action::Quarantine,
        Some("throttle") => Action::Throttle,
        Some(_) => return Err(AdminError::BadRequest),
    };
    let ttl_s = body.ttl_s.unwrap_or(DEFAULT_TTL_S);
    if ttl_s == 0 || ttl_s > MAX_TTL_S {
        return Err(AdminError::BadRequest);
    }
    let reason = body
        .reason
        .unwrap_or_else(|| "set through the admin API".into())
        .chars()
        .take(512)
        .collect();
    let now = warden_event::now_ns();
    let until = now.saturating_add(
        i64::try_from(ttl_s)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000_000),
    );
    let d = decision(subject, action, Some(until), reason, request_id, now);
    publish(admin, &d, caller).await?;
    ok(
        StatusCode::CREATED,
        json!({ "decision": d }),
        format!("{}:{}", action_name(action), d.subject),
    )
}

async fn release(admin: &Admin, subject: Subject, request_id: &str, caller: &str) -> Handled {
    let now = warden_event::now_ns();
    let d = decision(
        subject,
        Action::Release,
        None,
        "released through the admin API".into(),
        request_id,
        now,
    );
    publish(admin, &d, caller).await?;
    ok(
        StatusCode::OK,
        json!({ "decision": d }),
        format!("release:{}", d.subject),
    )
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Quarantine => "quarantine",
        Action::Throttle => "throttle",
        Action::Release => "release",
    }
}

fn decision(
    subject: Subject,
    action: Action,
    until: Option<i64>,
    reason: String,
    request_id: &str,
    now: i64,
) -> Decision {
    Decision {
        v: warden_event::SCHEMA_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        subject,
        action,
        until,
        reason,
        detector: "admin".into(),
        score: 0.0,
        evidence: json!({ "request_id": request_id }),
        decided_at: now,
        limit: None,
    }
}

/// Record in the audit log (if the process has one: an action that cannot be recorded is not
/// taken), publish on the decisions topic (acknowledged), then apply here at once.
async fn publish(admin: &Admin, d: &Decision, caller: &str) -> Result<(), AdminError> {
    if let Some(log) = admin.0.audit.get().cloned() {
        let payload = json!({
            "action": action_name(d.action),
            "operator": caller,
            "role": "admin",
            "via": "admin_api",
            "subject": d.subject,
            "decision": d,
        });
        let appended = tokio::task::spawn_blocking(move || {
            log.append(warden_event::audit::Kind::Operator, &payload)
        })
        .await;
        match appended {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(error = %e, subject = %d.subject, "An admin decision could not be recorded in the audit log; not published.");
                return Err(AdminError::Unavailable);
            }
            Err(e) => {
                warn!(error = %e, subject = %d.subject, "An admin decision could not be recorded in the audit log; not published.");
                return Err(AdminError::Unavailable);
            }
        }
    }
    let payload = warden_event::encode(d);
    admin
        .0
        .producer
        .send(
            &admin.0.decisions_topic,
            d.subject.key().as_bytes(),
            &payload,
        )
        .await
        .map_err(|e| {
            warn!(error = %e, subject = %d.subject, "Publishing an admin decision failed.");
            AdminError::Unavailable
        })?;
    admin.0.quarantine.apply(d);
    info!(target: "warden::audit", subject = %d.subject, action = action_name(d.action), decision_id = %d.id, "Decision published.");
    Ok(())
}

async fn reload(admin: &Admin) -> Handled {
    let policies = admin.0.policies.clone();
    let result = tokio::task::spawn_blocking(move || policies.reload())
        .await
        .map_err(|_| AdminError::Unavailable)?;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            warn!(problems = %e, "Reload refused: invalid policy files; the previous rules stay.");
            return Err(AdminError::InvalidPolicy);
        }
    };
    let identity = admin.0.identity.reload_now().await;
    // The config file's live settings (routes, keys, limits, validation), when it has one.
    let live = admin.0.live.clone();
    let config =
        match tokio::task::spawn_blocking(move || live.has_source().then(|| live.reload())).await {
            Ok(Some(r)) => json!(r),
            Ok(None) | Err(_) => serde_json::Value::Null,
        };
    // The admin listener's own certificate and operator CAs.
    let admin_tls = match admin.0.tls.clone() {
        Some(t) => match tokio::task::spawn_blocking(move || t.reload()).await {
            Ok(Ok(generation)) => json!({ "reloaded": true, "generation": generation }),
            Ok(Err(problems)) => {
                for p in &problems {
                    warn!(problem = %p, "Admin TLS reload refused; the previous configuration stays.");
                }
                json!({ "reloaded": false })
            }
            Err(_) => json!({ "reloaded": false }),
        },
        None => serde_json::Value::Null,
    };
    ok(
        StatusCode::OK,
        json!({
            "policies": report,
            "identity": {
                "reloaded": identity.reloaded,
                "failed": identity.failed.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            },
            "admin_tls": admin_tls,
            "config": config,
        }),
        format!("reload:{}", report.generation),
    )
}

fn effective(admin: &Admin, identity: &str, query: &HashMap<String, String>) -> Handled {
    if identity.is_empty() || identity.len() > 256 {
        return Err(AdminError::BadRequest);
    }
    let live = admin.0.live.snapshot();
    let key = live.config.api_keys.iter().find(|k| k.identity == identity);
    let pick = |name: &str, from_key: Option<&String>| {
        query
            .get(name)
            .cloned()
            .or_else(|| from_key.cloned())
            .unwrap_or_default()
    };
    let tenant = pick("tenant", key.map(|k| &k.tenant));
    let device_type = pick("device_type", key.map(|k| &k.device_type));
    let roles: Vec<String> = match query.get("roles") {
        Some(r) => r
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => key.map(|k| k.roles.clone()).unwrap_or_default(),
    };
    let caller = Caller {
        identity: Some(identity),
        tenant: &tenant,
        device_type: &device_type,
        roles: &roles,
    };
    let snapshot = admin.0.policies.snapshot();
    let enforced = snapshot.enforced.as_ref().map(|p| p.effective(&caller));
    let shadow = snapshot.shadow.as_ref().map(|p| p.effective(&caller));
    let now = warden_event::now_ns();
    let quarantines: Vec<_> = admin
        .0
        .quarantine
        .live(now)
        .into_iter()
        .filter(|d| {
            (d.subject.kind == SubjectKind::Identity && d.subject.value == identity)
                || (d.subject.kind == SubjectKind::Tenant
                    && !tenant.is_empty()
                    && d.subject.value == tenant)
                || key.is_some_and(|k| {
                    d.subject.kind == SubjectKind::ApiKey && d.subject.value == k.id
                })
        })
        .collect();
    let l = &live.config.limits;
    let rate = |r: Rate| json!({ "rate_per_s": r.rate_per_s, "burst": r.burst });
    let limits = json!({
        "identity": l.identity.as_ref().map(|k| rate(*k.device_types.get(&device_type).unwrap_or(&k.base()))),
        "identity_route": l.identity_route.as_ref().map(|k| json!({
            "default": rate(*k.device_types.get(&device_type).unwrap_or(&k.base())),
            "routes": k.routes.iter().map(|(n, r)| (n.clone(), rate(*r))).collect::<serde_json::Map<_, _>>(),
        })),
        "tenant": l.tenant.filter(|_| !tenant.is_empty()).map(rate),
        "global": l.global.map(rate),
    });
    ok(
        StatusCode::OK,
        json!({
            "identity": identity,
            "tenant": tenant,
            "device_type": device_type,
            "roles": roles,
            "known_key": key.map(|k| k.id.clone()),
            "rbac": {
                "enforced": enforced,
                "shadow": shadow,
                "note": if snapshot.enforced.is_none() { "no enforced policy: every authenticated request is allowed" } else { "default deny" },
            },
            "limits": limits,
            "quarantines": quarantines,
        }),
        format!("show_policy:{identity}"),
    )
}

fn shadow(admin: &Admin) -> Handled {
    let s = &admin.0.policies.shadow_stats;
    let snapshot = admin.0.policies.snapshot();
    ok(
        StatusCode::OK,
        json!({
            "configured": snapshot.shadow.is_some(),
            "evaluated": s.evaluated.load(std::sync::atomic::Ordering::Relaxed),
            "would_deny": s.would_deny.load(std::sync::atomic::Ordering::Relaxed),
            "recent": s.recent(),
        }),
        "show_shadow",
    )
}

fn parse_query(q: &str) -> Result<HashMap<String, String>, AdminError> {
    let mut out = HashMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Ok(out)
}

/// Decode `%XX` escapes (and `+` as space in queries is not used here).
fn percent_decode(s: &str) -> Result<String, AdminError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let v = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(AdminError::BadRequest)?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AdminError::BadRequest)
}
