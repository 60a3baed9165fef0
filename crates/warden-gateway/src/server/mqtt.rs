//! The gateway's security chain as MQTT sessions use it: a CONNECT is authenticated and
//! checked against quarantines like a request's credentials; each PUBLISH becomes an HTTP
//! request that goes through every phase of [`super::request::handle`] (identity again,
//! quarantine, limits, RBAC on the translated path, validation, proxy) and is evented there
//! with `protocol = "mqtt"`. What happens outside a request (CONNECT, SUBSCRIBE, refusals
//! before translation) is evented here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;
use warden_event::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, Reason, RequestEvent,
    SubjectKind,
};

use super::Shared;
use super::attribution::principal_quarantine;
use crate::Verdict;
use crate::identity::Principal;
use crate::tls::TlsConn;

/// Request extension of a translated message (an MQTT PUBLISH, a CoAP request): its event
/// says the protocol, the rule as the route and the topic (or CoAP path) as the path.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub protocol: Protocol,
    pub rule: String,
    pub topic: String,
}

/// The chain, for the MQTT listener.
#[derive(Clone)]
pub(crate) struct Chain {
    shared: Arc<Shared>,
    router: Router,
}

/// An authenticated MQTT connection.
#[derive(Clone)]
pub(crate) struct Device {
    pub principal: Principal,
    pub auth: AuthInfo,
    pub peer: SocketAddr,
    /// The credential headers every translated request carries (identity is checked again
    /// per message, so a revoked key stops working on open connections too).
    headers: HeaderMap,
    tls: Option<TlsConn>,
}

impl Device {
    /// A device named by credentials that were refused (quarantined): for its event only.
    pub(crate) fn unverified(principal: Principal, auth: AuthInfo, peer: SocketAddr) -> Self {
        Self {
            principal,
            auth,
            peer,
            headers: HeaderMap::new(),
            tls: None,
        }
    }
}

/// A refused CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectRefused {
    /// No valid credentials.
    Credentials,
    /// A quarantined identity, key, tenant or address.
    Quarantined,
}

/// What an MQTT- or CoAP-level event records (outside a translated request).
pub(crate) struct MqttEvent<'a> {
    pub protocol: Protocol,
    pub device: Option<&'a Device>,
    pub peer: SocketAddr,
    pub tls: Option<&'a TlsConn>,
    pub auth: Option<AuthInfo>,
    /// `CONNECT`, `SUBSCRIBE`, `PUBLISH`.
    pub method: &'static str,
    pub route: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub outcome: Outcome,
    pub reason: Reason,
    pub bytes_in: u64,
    pub started: Instant,
}

/// The header a credential given as the MQTT password travels in: a JWT (three base64url
/// parts) as `Authorization: Bearer`, anything else as an API key.
fn credential_headers(password: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        let jwt = p.split('.').count() == 3
            && p.split('.').all(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if jwt {
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {p}")) {
                h.insert(header::AUTHORIZATION, v);
            }
        } else if let Ok(v) = HeaderValue::from_str(p) {
            h.insert("x-api-key", v);
        }
    }
    h
}

impl super::Gateway {
    /// The chain for MQTT sessions.
    pub(crate) fn chain(&self) -> Chain {
        Chain {
            shared: self.shared.clone(),
            router: self.router(),
        }
    }
}

impl Chain {
    /// The TLS settings of the gateway (for the MQTT TLS listener).
    pub(crate) fn tls(&self) -> Option<Arc<crate::tls::TlsRuntime>> {
        self.shared.identity.tls().cloned()
    }

    /// Where refused TLS handshakes are evented (as on the HTTPS listener).
    pub(crate) fn handshake_sink(&self) -> crate::tls::FailureSink {
        super::handshake_sink(self.shared.clone())
    }

    /// Authenticate a CONNECT: the client certificate of the connection and the password as a
    /// credential, then the quarantines of the address and of what the credential names.
    pub(crate) async fn connect(
        &self,
        peer: SocketAddr,
        tls: Option<TlsConn>,
        password: Option<&str>,
    ) -> Result<Device, (ConnectRefused, AuthInfo, Option<Principal>)> {
        let now = warden_event::now_ns();
        let headers = credential_headers(password);
        let ip = peer.ip().to_string();
        let live = self.shared.live.load_full();
        let (principal, auth) = self
            .shared
            .identity
            .attribute(&live, &headers, tls.as_ref(), now)
            .await;
        if let Verdict::Quarantined { .. } =
            self.shared.quarantine.check(now, &[(SubjectKind::Ip, &ip)])
        {
            return Err((ConnectRefused::Quarantined, auth, principal));
        }
        let Some(principal) = principal else {
            let auth = if auth.result == AuthResult::NotRequired {
                AuthInfo {
                    method: AuthMethod::None,
                    result: AuthResult::Missing,
                }
            } else {
                auth
            };
            return Err((ConnectRefused::Credentials, auth, None));
        };
        if let Verdict::Quarantined { .. } = principal_quarantine(&self.shared, Some(&principal)) {
            return Err((ConnectRefused::Quarantined, auth, Some(principal)));
        }
        Ok(Device {
            principal,
            auth,
            peer,
            headers,
            tls,
        })
    }

    /// Whether the device (or its address) is quarantined now.
    pub(crate) fn quarantined(&self, d: &Device) -> bool {
        let ip = d.peer.ip().to_string();
        matches!(
            self.shared
                .quarantine
                .check(warden_event::now_ns(), &[(SubjectKind::Ip, &ip)]),
            Verdict::Quarantined { .. }
        ) || matches!(
            principal_quarantine(&self.shared, Some(&d.principal)),
            Verdict::Quarantined { .. }
        )
    }

    /// Send one translated message through the whole chain: the HTTP status it got and up
    /// to `keep` bytes of the response body (`None` when it was longer). The event is emitted
    /// by the chain when the response body has been read to its end.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn request(
        &self,
        d: &Device,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
        origin: Origin,
        keep: usize,
    ) -> (u16, Option<Bytes>) {
        let len = body.len();
        let mut b = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, origin.protocol.as_str());
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        if len > 0 || method != "GET" {
            b = b.header(header::CONTENT_LENGTH, len);
        }
        let mut req = match b.body(Body::from(body)) {
            Ok(r) => r,
            Err(_) => return (400, Some(Bytes::new())),
        };
        for (k, v) in &d.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let ext = req.extensions_mut();
        ext.insert(ConnectInfo(d.peer));
        ext.insert(origin);
        if let Some(t) = &d.tls {
            ext.insert(t.clone());
        }
        let Ok(resp) = self.router.clone().oneshot(req).await;
        let status = resp.status().as_u16();
        // Read the response to its end (the chain's event is finished there), keeping at most
        // `keep` bytes of it.
        let mut body = resp.into_body();
        let mut kept = Some(bytes::BytesMut::new());
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let (Some(k), Some(data)) = (kept.as_mut(), frame.data_ref()) {
                if k.len() + data.len() > keep {
                    kept = None;
                } else {
                    k.extend_from_slice(data);
                }
            }
        }
        (status, kept.map(bytes::BytesMut::freeze))
    }

    /// Emit an event about an MQTT session or a CoAP request outside the chain.
    pub(crate) fn event(&self, e: MqttEvent<'_>) {
        let (identity, tenant, device_type, auth) = match e.device {
            Some(d) => (
                d.principal.identity.clone(),
                d.principal.tenant.clone(),
                d.principal.device_type.clone(),
                e.auth.unwrap_or_else(|| d.auth.clone()),
            ),
            None => (
                ANONYMOUS.to_string(),
                String::new(),
                String::new(),
                e.auth.unwrap_or(AuthInfo {
                    method: AuthMethod::None,
                    result: AuthResult::Missing,
                }),
            ),
        };
        self.shared.emitter.emit(RequestEvent {
            v: warden_event::SCHEMA_VERSION,
            id: super::request::request_id().to_string(),
            gateway: self.shared.id.clone(),
            seq: 0,
            ts: warden_event::now_ns(),
            identity,
            tenant,
            device_type,
            auth,
            client_ip: e.peer.ip().to_string(),
            protocol: e.protocol,
            method: e.method.to_string(),
            route: e.route.to_string(),
            path: e.path.chars().take(1024).collect(),
            status: e.status,
            decision: e.outcome,
            latency_us: e.started.elapsed().as_micros() as u64,
            bytes_in: e.bytes_in,
            bytes_out: 0,
            user_agent: None,
            tls: e.tls.map(TlsConn::info),
            reason: e.reason,
            query: String::new(),
            query_hash: 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_password_is_a_bearer_token_anything_else_an_api_key() {
        let h = credential_headers(Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(h.get(header::AUTHORIZATION).is_some());
        let h = credential_headers(Some("wk_live_123"));
        assert_eq!(h.get("x-api-key").expect("api key header"), "wk_live_123");
        assert!(credential_headers(Some("")).is_empty());
        assert!(credential_headers(None).is_empty());
        // A header-breaking password is no credential at all.
        assert!(credential_headers(Some("a\r\nx-api-key: b")).is_empty());
    }
}
