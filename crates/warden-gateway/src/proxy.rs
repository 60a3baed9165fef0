//! Forwarding to upstreams over pooled connections (`upstream.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use tracing::{debug, warn};

use crate::body::{Counters, LimitedBody};
use crate::routes::Route;
use crate::{Reject, names, upstream};

/// Headers that apply to one connection only (RFC 9110 §7.6.1) and never cross a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Remove hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over the names instead of a removal (a hash and a
    // probe) per hop-by-hop name.
    let hop = |k: &HeaderName| HOP_BY_HOP.contains(k) || k.as_str() == "proxy-connection";
    if !headers.keys().any(hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for h in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(h);
    }
    headers.remove("proxy-connection");
}

/// What the upstream learns about the caller.
pub struct Forwarded<'a> {
    pub request_id: &'a str,
    /// The client's address, as text.
    pub client_ip: &'a str,
    pub identity: Option<&'a str>,
    pub tenant: Option<&'a str>,
}

/// Forward `req` to `route`, streaming both bodies.
pub async fn forward(
    route: &Route,
    req: Request<Body>,
    fwd: Forwarded<'_>,
    max_body: u64,
    body_idle: std::time::Duration,
    counters: Arc<Counters>,
    metrics: &crate::metrics::RequestMetrics,
) -> Result<Response<Body>, Reject> {
    let (mut parts, body) = req.into_parts();
    let uri = route
        .upstream_target(parts.uri.path(), parts.uri.query())
        .ok_or(Reject::BadPath)?;
    strip_hop_by_hop(&mut parts.headers);
    // Consumed credentials and the gateway's own headers (any variant) never pass.
    crate::hygiene::strip_for_upstream(&mut parts.headers, route);
    let h = &mut parts.headers;
    h.insert(header::HOST, route.upstream_host().clone());
    if let Ok(v) = HeaderValue::from_str(fwd.request_id) {
        h.insert(names::X_REQUEST_ID, v);
    }
    let xff = match h.get(names::X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", fwd.client_ip)),
        None => HeaderValue::from_str(fwd.client_ip),
    };
    if let Ok(v) = xff {
        h.insert(names::X_FORWARDED_FOR, v);
    }
    for (name, value) in [
        (names::X_WARDEN_IDENTITY, fwd.identity),
        (names::X_WARDEN_TENANT, fwd.tenant),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
    parts.uri = uri;
    parts.version = axum::http::Version::HTTP_11;
    if route.health.ejected() {
        debug!(route = %route.name, left_ms = route.health.ejected_for().as_millis() as u64, "Upstream ejected; refused at once.");
        metrics.observe_upstream(&route.name, "ejected", 0.0);
        return Err(Reject::UpstreamUnavailable);
    }
    // Sent again on failure only if nothing of it can be lost or done twice: an idempotent
    // method without a body.
    let replayable = route.retries > 0
        && matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        )
        && http_body::Body::is_end_stream(&body);
    let mut again = replayable.then(|| parts.clone());
    let mut attempts_left = if replayable { route.retries } else { 0 };
    let body = Body::new(LimitedBody::new(
        body,
        max_body,
        body_idle,
        counters.clone(),
    ));
    let mut outgoing = Request::from_parts(parts, body);
    let answer = loop {
        let sent = upstream::send(route.upstream_authority(), route.tls.as_ref(), outgoing);
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(route.timeout, sent).await;
        let result = match &answer {
            Ok(Ok(_)) => "response",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        };
        metrics.observe_upstream(&route.name, result, started.elapsed().as_secs_f64());
        let retry_status = matches!(&answer, Ok(Ok(r)) if matches!(r.status().as_u16(), 502..=504));
        match &answer {
            Ok(Ok(_)) => route.health.succeeded(),
            _ => {
                if route.health.failed() {
                    warn!(route = %route.name, for_ms = route.health.ejected_for().as_millis() as u64, "Upstream failed repeatedly; ejected (its requests are refused at once meanwhile).");
                }
            }
        }
        let failed = retry_status || !matches!(&answer, Ok(Ok(_)));
        match again.take() {
            Some(p) if failed && attempts_left > 0 && !route.health.ejected() => {
                attempts_left -= 1;
                if attempts_left > 0 {
                    again = Some(p.clone());
                }
                debug!(route = %route.name, "Retrying an idempotent request.");
                outgoing = Request::from_parts(p, Body::empty());
            }
            _ => break answer,
        }
    };
    let resp = match answer {
        // Waiting on the client's body when the time ran out: the client stalled.
        Err(_) if counters.body_waiting.load(Ordering::Relaxed) => {
            debug!(route = %route.name, "Client stalled mid-body.");
            return Err(Reject::ClientTimeout);
        }
        Err(_) => return Err(Reject::UpstreamTimeout),
        Ok(Err(e)) => {
            if counters.too_large.load(Ordering::Relaxed) {
                return Err(Reject::BodyTooLarge);
            }
            // The client's body failed, not the upstream: a client fault.
            if counters.client_stalled.load(Ordering::Relaxed) {
                debug!(route = %route.name, "Client stalled mid-body.");
                return Err(Reject::ClientTimeout);
            }
            if counters.client_failed.load(Ordering::Relaxed) {
                debug!(route = %route.name, error = %e, "Client body failed.");
                return Err(Reject::ClientBody);
            }
            if matches!(
                e,
                upstream::UpstreamError::TlsSettings(..)
                    | upstream::UpstreamError::TlsHandshake(..)
            ) {
                // A certificate the route does not trust, or settings it cannot use: the
                // operator must see it (the client gets a 502).
                warn!(route = %route.name, error = %e, "Upstream TLS failed; nothing was forwarded.");
            } else {
                debug!(route = %route.name, error = %e, "Upstream request failed.");
            }
            return Err(Reject::UpstreamUnavailable);
        }
        Ok(Ok(resp)) => resp,
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(d) = &route.deprecation {
        d.add_headers(&mut parts.headers);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}
