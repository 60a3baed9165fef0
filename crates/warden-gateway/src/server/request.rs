//! One request through the phases listed in the module docs of [`super`]: the event draft,
//! the phases themselves, and the event finished when the response body ends.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use tracing::{Instrument, debug, debug_span};
use warden_event::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, Reason, RequestEvent,
    SubjectKind,
};

use super::Shared;
use super::attribution::{principal_quarantine, refuse_attributed};
use crate::body::{Counters, FinishBody};
use crate::identity::Principal;
use crate::proxy::{self, Forwarded};
use crate::ratelimit::{LimitKey, Quota};
use crate::shed::Slot;
use crate::tls::TlsConn;
use crate::{Reject, Verdict, path};

/// Fields of the event known before the response.
pub(super) struct Draft {
    pub(super) id: String,
    pub(super) ts: i64,
    /// `anonymous` until an identity is known.
    pub(super) identity: Cow<'static, str>,
    pub(super) tenant: String,
    pub(super) device_type: String,
    pub(super) auth: AuthInfo,
    pub(super) client_ip: IpAddr,
    /// `client_ip` as text, formatted once (quarantine lookup, upstream header, event).
    pub(super) client_ip_text: String,
    pub(super) method: String,
    /// `unmatched` until a route is found.
    pub(super) route: Cow<'static, str>,
    pub(super) path: String,
    /// Shape and keyed hash of the query string (`warden_event::query`).
    pub(super) query: String,
    pub(super) query_hash: u32,
    pub(super) user_agent: Option<String>,
    /// Load-shedding slots, held until the event is finished.
    pub(super) slots: Vec<Slot>,
    /// The tightest rate limit, for `RateLimit-*` headers on accepted requests.
    pub(super) quota: Option<Quota>,
}

pub(super) async fn handle(
    State(gw): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let request_id = request_id().to_string();
    let request_id_header = HeaderValue::from_str(&request_id).ok();
    let client_ip = client_ip(&req, peer, gw.trust_forwarded_for);
    let tls_info = req.extensions().get::<TlsConn>().map(TlsConn::info);
    // A message translated from MQTT or CoAP: evented as such, with its rule and topic.
    let origin = req.extensions().get::<super::mqtt::Origin>().cloned();
    let mut draft = Draft {
        id: request_id,
        ts: warden_event::now_ns(),
        identity: Cow::Borrowed(ANONYMOUS),
        tenant: String::new(),
        device_type: String::new(),
        auth: AuthInfo {
            method: AuthMethod::None,
            result: AuthResult::NotRequired,
        },
        client_ip,
        client_ip_text: client_ip.to_string(),
        method: req.method().as_str().to_string(),
        route: Cow::Borrowed("unmatched"),
        path: req.uri().path().to_string(),
        query: req
            .uri()
            .query()
            .map(warden_event::query::shape)
            .unwrap_or_default(),
        query_hash: req
            .uri()
            .query()
            .map_or(0, |q| warden_event::query::hash(&gw.query_hash_key, q)),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        slots: Vec::new(),
        quota: None,
    };
    let counters = Arc::new(Counters::default());
    // A debug span: everything logged inside a request is at debug level, and an enabled span
    // per request (formatting its fields, entering and leaving it on every poll) cost the
    // `warden` binary's default `warden=info` logging ≈ 10 µs per request in the load bench.
    let span = debug_span!("request", request_id = %draft.id, identity = tracing::field::Empty, route = tracing::field::Empty);
    let result = phases(&gw, req, &mut draft, counters.clone())
        .instrument(span.clone())
        .await;
    let (mut response, outcome, reason) = match result {
        Ok(resp) => (resp, Outcome::Allowed, Reason::None),
        Err(reject) => {
            debug!(parent: &span, code = reject.code(), "Request refused.");
            (
                reject.into_response(&draft.id),
                reject.outcome(),
                reject.reason(),
            )
        }
    };
    if let Some(v) = request_id_header {
        response.headers_mut().insert(crate::names::X_REQUEST_ID, v);
    }
    if outcome == Outcome::Allowed
        && let Some(q) = draft.quota
    {
        let h = response.headers_mut();
        h.insert(crate::names::RATELIMIT_LIMIT, number(q.limit.into()));
        h.insert(
            crate::names::RATELIMIT_REMAINING,
            number(q.remaining.into()),
        );
        h.insert(crate::names::RATELIMIT_RESET, number(q.reset_s));
    }
    let status = response.status().as_u16();
    let emitter = gw.emitter.clone();
    let gateway = gw.id.clone();
    let c = counters.clone();
    let (protocol, route, path) = match origin {
        Some(o) => (o.protocol, o.rule, o.topic),
        None => (Protocol::Http, draft.route.into_owned(), draft.path),
    };
    let finish = move || {
        emitter.emit(RequestEvent {
            v: warden_event::SCHEMA_VERSION,
            id: draft.id,
            gateway,
            seq: 0,
            ts: draft.ts,
            identity: draft.identity.into_owned(),
            tenant: draft.tenant,
            device_type: draft.device_type,
            auth: draft.auth,
            client_ip: draft.client_ip_text,
            protocol,
            method: draft.method,
            route,
            path,
            status,
            decision: outcome,
            latency_us: started.elapsed().as_micros() as u64,
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            user_agent: draft.user_agent,
            tls: tls_info,
            reason,
            query: draft.query,
            query_hash: draft.query_hash,
        });
    };
    response.map(|body| Body::new(FinishBody::new(body, counters, finish)))
}

/// A UUIDv7 request id (Unix milliseconds, then 74 random bits) made without a system call:
/// the random bits are SipHash, under a per-thread key the standard library seeds from the OS,
/// of a per-thread counter — unique per thread by construction, and unpredictable without the
/// key. (`Uuid::now_v7` reads the OS random source on every call: one `getrandom` system call
/// per request.)
pub fn request_id() -> uuid::Uuid {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local! {
        static STATE: (RandomState, Cell<u64>) = (RandomState::new(), Cell::new(0));
    }
    let (a, b) = STATE.with(|(key, counter)| {
        let n = counter.get();
        counter.set(n.wrapping_add(1));
        (key.hash_one((n, 0u8)), key.hash_one((n, 1u8)))
    });
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&a.to_le_bytes());
    random[8..].copy_from_slice(&b.to_le_bytes()[..2]);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid()
}

/// A header value of a number, formatted on the stack (one allocation, the value's own;
/// `HeaderValue::from(u64)` makes two).
fn number(n: u64) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 20];
    let mut w = &mut buf[..];
    let len = match write!(w, "{n}") {
        Ok(()) => 20 - w.len(),
        Err(_) => 0,
    };
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("0"))
}

pub(super) fn rate_limited(l: crate::ratelimit::Limited) -> Reject {
    debug!(scope = ?l.scope, retry_after_s = l.retry_after_s, "Rate limited.");
    Reject::Throttled {
        retry_after_s: l.retry_after_s,
        limit: l.quota.limit,
        reset_s: l.quota.reset_s,
        by_decision: l.scope == crate::ratelimit::Scope::Decision,
    }
}

fn client_ip(req: &Request, peer: SocketAddr, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for
        && let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    peer.ip()
}

async fn phases(
    gw: &Shared,
    req: Request,
    draft: &mut Draft,
    counters: Arc<Counters>,
) -> Result<Response, Reject> {
    // One snapshot of the live settings for the whole request (a reload never changes the
    // routes, keys or limits under a request in flight).
    let live = gw.live.load_full();
    if let Some(slot) = live
        .shedder
        .enter_global()
        .map_err(|_| Reject::Overloaded)?
    {
        draft.slots.push(slot);
    }
    live.headers.check(req.headers())?;
    // Heads a backend could read differently from the gateway (see `hygiene`).
    crate::hygiene::check_method(req.method())?;
    crate::hygiene::check_host(&req)?;
    // A quarantined address gets the same 403 whatever it presents (see the module docs).
    let ip_subject = [(SubjectKind::Ip, draft.client_ip_text.as_str())];
    let ip_throttle = match gw.quarantine.check(warden_event::now_ns(), &ip_subject) {
        Verdict::Quarantined { subject, .. } => {
            debug!(%subject, "Quarantined address refused.");
            return Err(Reject::Quarantined);
        }
        Verdict::Throttled { subject, limit } => Some((subject, limit)),
        Verdict::Pass => None,
    };
    let normal = path::normalise(req.uri().path(), &gw.paths).map_err(|e| {
        debug!(error = %e, "Path refused.");
        Reject::BadPath
    });
    let policies = gw.policies.snapshot();
    let found = match &normal {
        Ok(_) => live.routes.find(req.uri().path()).ok_or(Reject::NoRoute),
        Err(reject) => Err(*reject),
    };
    let mut overridden = None;
    let route = match found {
        Ok(route) => {
            draft.route = Cow::Owned(route.name.clone());
            tracing::Span::current().record("route", route.name.as_str());
            route_checks(gw, route, &req).map(|m| {
                overridden = m;
                route
            })
        }
        Err(reject) => Err(reject),
    };
    let (route, normal) = match (route, normal) {
        (Ok(route), Ok(normal)) => (route, normal),
        (Err(reject), _) | (_, Err(reject)) => {
            let (headers, tls) = (req.headers(), req.extensions().get::<TlsConn>());
            return Err(
                refuse_attributed(gw, &live, headers, tls, draft, reject, ip_throttle).await,
            );
        }
    };
    if let Some(slot) = live
        .shedder
        .enter_route(&route.name)
        .map_err(|_| Reject::Overloaded)?
    {
        draft.slots.push(slot);
    }

    // Identity: exactly one, or refused (see `identity.rs`).
    let (principal, auth) = match gw
        .identity
        .authenticate(
            &live,
            req.headers(),
            req.extensions().get::<TlsConn>(),
            route,
            draft.ts,
        )
        .await
    {
        Ok(ok) => ok,
        Err(denied) => {
            debug!(reason = %denied.reason, "Identity refused.");
            draft.auth = denied.auth;
            // Failed credentials count against the client IP's limit (credential stuffing).
            live.limits
                .check_unauthenticated(draft.client_ip)
                .map_err(rate_limited)?;
            return Err(denied.reject);
        }
    };
    draft.auth = auth;
    let principal: Option<&Principal> = principal.as_ref();
    if let Some(p) = principal {
        draft.identity = Cow::Owned(p.identity.clone());
        draft.tenant = p.tenant.clone();
        draft.device_type = p.device_type.clone();
        tracing::Span::current().record("identity", p.identity.as_str());
    }

    // Who still calls a deprecated version: the operator's list of devices to update.
    if let Some(d) = &route.deprecation
        && d.deprecated(draft.ts / 1_000_000_000)
    {
        let caller = match principal {
            Some(p) => p.identity.clone(),
            None => format!("ip:{}", draft.client_ip_text),
        };
        gw.deprecated.record(&route.name, &caller, draft.ts);
    }

    let throttled = match principal_quarantine(gw, principal) {
        Verdict::Quarantined { subject, .. } => {
            debug!(%subject, "Quarantined subject refused.");
            return Err(Reject::Quarantined);
        }
        Verdict::Throttled { subject, limit } => Some((subject, limit)),
        Verdict::Pass => ip_throttle,
    };

    let limit_key = LimitKey {
        identity: principal.map(|p| p.identity.as_str()),
        tenant: principal.map_or("", |p| p.tenant.as_str()),
        device_type: principal.map_or("", |p| p.device_type.as_str()),
        route: &route.name,
        ip: draft.client_ip,
        throttled: throttled.as_ref().map(|(s, l)| (s, *l)),
    };
    draft.quota = live.limits.check(&limit_key).map_err(rate_limited)?;

    // An authorized method override must be allowed as well as the real method.
    for method in std::iter::once(req.method()).chain(overridden.as_ref()) {
        crate::rbac::authorize(
            &policies,
            &gw.policies.shadow_stats,
            principal,
            method,
            &normal,
            &draft.id,
        )?;
    }

    let fallback;
    let rules = match policies.routes.get(&route.name) {
        Some(r) => r,
        None => {
            fallback = crate::validate::RouteRules::with_limit(live.max_body);
            &fallback
        }
    };
    rules.check_declared_length(req.headers())?;
    let has_body = !http_body::Body::is_end_stream(req.body());
    rules.check_content_type(req.headers(), has_body)?;
    // A schema applies to every body, and to the methods that must carry one even when empty.
    let needs_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    let req = if rules.has_schema() && (has_body || needs_body) {
        let (parts, body) = req.into_parts();
        let bytes = rules.read_and_validate(body, gw.body_idle).await?;
        Request::from_parts(parts, Body::from(bytes))
    } else {
        req
    };

    let fwd = Forwarded {
        request_id: &draft.id,
        client_ip: &draft.client_ip_text,
        identity: principal.map(|p| p.identity.as_str()),
        tenant: principal.map(|p| p.tenant.as_str()),
    };
    let metrics = &gw.emitter.stats().requests;
    proxy::forward(
        route,
        req,
        fwd,
        rules.max_body,
        gw.body_idle,
        counters,
        metrics,
    )
    .await
}

/// The route's own checks of the head: its method allow list, header names with `_`, and a
/// method override (returned when authorized: the route must allow it too).
fn route_checks(
    gw: &Shared,
    route: &crate::routes::Route,
    req: &Request,
) -> Result<Option<Method>, Reject> {
    if !route.allows(req.method()) {
        return Err(Reject::MethodNotAllowed);
    }
    if route
        .deprecation
        .as_ref()
        .is_some_and(|d| d.gone(warden_event::now_ns() / 1_000_000_000))
    {
        return Err(Reject::Gone);
    }
    crate::hygiene::check_header_names(req.headers(), route)?;
    let overridden =
        crate::hygiene::method_override(req.headers(), req.uri().query(), gw.method_override)?;
    if let Some(m) = &overridden
        && !route.allows(m)
    {
        return Err(Reject::MethodNotAllowed);
    }
    Ok(overridden)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn request_ids_are_v7_unique_and_time_ordered_by_millisecond() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = super::request_id();
            assert_eq!(id.get_version_num(), 7);
            assert!(seen.insert(id), "duplicate {id}");
        }
        // Another thread has its own key and counter: still no duplicate.
        let other: Vec<uuid::Uuid> =
            std::thread::spawn(|| (0..10_000).map(|_| super::request_id()).collect())
                .join()
                .unwrap_or_default();
        assert_eq!(other.len(), 10_000);
        for id in other {
            assert!(seen.insert(id), "duplicate across threads {id}");
        }
        let (secs, nanos) = super::request_id()
            .get_timestamp()
            .map(|t| t.to_unix())
            .unwrap_or((0, 0));
        let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(ms >= before && ms < before + 60_000, "{ms} vs {before}");
    }
}
