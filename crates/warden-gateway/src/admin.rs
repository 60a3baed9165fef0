//! The admin API, on its own listener (`[admin] listen`), for operators:
//!
//! | method and path | does |
//! | --- | --- |
//! | `GET /admin/quarantines` | live quarantines and throttles of this gateway |
//! | `POST /admin/quarantines` | `{"subject":{"kind","value"},"action"?,"ttl_s"?,"reason"?}` → publishes a decision |
//! | `DELETE /admin/quarantines/{kind}/{value}` | publishes a release |
//! | `POST /admin/reload` | re-reads the policy files, JSON Schemas, identity sources and the config file's live settings |
//! | `GET /admin/policy/{identity}` | the identity's roles, grants, deny rules, limits and quarantines |
//! | `GET /admin/rbac/shadow` | what the shadow policy would have denied |
//! | `GET /admin/keys` | every API key (no digests) and whether the config file or this API manages it |
//! | `POST /admin/keys` | `{"id","sha256","identity",…}` (an `api_keys` entry) → adds an API-managed key (`admin.keys_file`) |
//! | `DELETE /admin/keys/{id}` | disables (removes) an API-managed key |
//! | `GET /admin/routes` | every route and whether the config file or this API manages it |
//! | `POST /admin/routes` | a `routes` entry → adds an API-managed route (`admin.keys_file`) |
//! | `DELETE /admin/routes/{name}` | removes an API-managed route |
//! | `GET /admin/limits` | the `[limits]` table serving now, and who set it |
//! | `PUT /admin/limits` | a whole `[limits]` table → replaces the config file's until cleared |
//! | `DELETE /admin/limits` | back to the config file's limits |
//! | `GET /admin/mqtt` | connected MQTT sessions |
//! | `POST /admin/mqtt/publish` | `{"identity","topic","payload"?,"payload_base64"?,"qos"?}` → a command to the identity's sessions subscribed to the topic (200 delivered; 202 queued for its disconnected persistent sessions; 404 none) |
//!
//! Every call needs `Authorization: Bearer TOKEN` whose SHA-256 is `admin.token_sha256`, or —
//! with `[admin.tls]`, where the listener serves HTTPS — an operator client certificate on the
//! connection (see [`tls`]); 401 otherwise. Decisions are published on the decisions topic — so every gateway, the
//! processor and the dashboard see them — and applied here at once. Every call, refused or
//! not, is **audited**: one `warden::audit` log line and one event on the events topic with
//! `route = "admin"`, `identity = "admin"` (or `anonymous` when the credentials were missing or
//! wrong), `auth.method = api_key` (`client_cert` when a certificate was presented, with its
//! fingerprint in `tls`), and the status; the log line names the operator certificate.
//! With an audit log ([`Admin::record_in`]), every decision is also recorded there before it is
//! published (`503`, and nothing published, when it cannot be).
//! Errors are the gateway's generic body.

mod handlers;
mod keys;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tracing::info;
use warden_bus::Producer;
use warden_config::WardenConfig;
use warden_event::{ANONYMOUS, AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, RequestEvent};

use crate::emit::Emitter;
use crate::identity::IdentityHandle;
use crate::rbac::PolicyStore;
use crate::tls::TlsStats;
use crate::{GatewayError, QuarantineSet};
use tls::{AdminTls, CertAuth, OperatorConn};

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

/// Identity recorded in audit events of authenticated admin calls.
pub const ADMIN_IDENTITY: &str = "admin";

struct Inner {
    gateway_id: String,
    token_sha256: Option<[u8; 32]>,
    producer: Arc<dyn Producer>,
    decisions_topic: String,
    quarantine: Arc<QuarantineSet>,
    policies: Arc<PolicyStore>,
    identity: IdentityHandle,
    emitter: Emitter,
    /// Keys and limits as served now; API-managed keys.
    live: crate::live::LiveConfig,
    /// Connected MQTT sessions (commands to devices).
    mqtt: Arc<crate::mqtt::MqttHub>,
    /// `[admin.tls]`: HTTPS with operator certificates.
    tls: Option<Arc<AdminTls>>,
    /// Where decisions made here are recorded (`[audit]`, set once by the process).
    audit: std::sync::OnceLock<Arc<warden_event::audit::AuditLog>>,
}

/// The admin API of one gateway; cheap to clone.
#[derive(Clone)]
pub struct Admin(Arc<Inner>);

/// An admin error: status and public code, in the gateway's generic body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminError {
    Unauthenticated,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    TooLarge,
    /// The policy files are invalid (details in the log); the old rules stay.
    InvalidPolicy,
    /// The bus did not take the decision.
    Unavailable,
}

impl AdminError {
    fn status(self) -> StatusCode {
        match self {
            AdminError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AdminError::NotFound => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::BadRequest => StatusCode::BAD_REQUEST,
            AdminError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::InvalidPolicy => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(self) -> &'static str {
        match self {
            AdminError::Unauthenticated => "unauthenticated",
            AdminError::NotFound => "not_found",
            AdminError::MethodNotAllowed => "method_not_allowed",
            AdminError::BadRequest => "bad_request",
            AdminError::TooLarge => "payload_too_large",
            AdminError::InvalidPolicy => "invalid_policy",
            AdminError::Unavailable => "unavailable",
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let status = self.status();
        let body = serde_json::json!({
            "error": { "status": status.as_u16(), "code": self.code(), "request_id": request_id }
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if self == AdminError::Unauthenticated {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"warden-admin\""),
            );
        }
        resp
    }
}

impl Admin {
    #[expect(
        clippy::too_many_arguments,
        reason = "the gateway's shared handles, each used by its own endpoints"
    )]
    pub(crate) fn new(
        config: &WardenConfig,
        producer: Arc<dyn Producer>,
        quarantine: Arc<QuarantineSet>,
        policies: Arc<PolicyStore>,
        identity: IdentityHandle,
        emitter: Emitter,
        live: crate::live::LiveConfig,
        mqtt: Arc<crate::mqtt::MqttHub>,
    ) -> Result<Self, Vec<String>> {
        let token_sha256 = hex::decode(&config.admin.token_sha256)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok());
        let tls = match &config.admin.tls {
            Some(t) if config.admin.listen.is_some() => {
                Some(Arc::new(AdminTls::new(t, token_sha256.is_some())?))
            }
            _ => None,
        };
        Ok(Self(Arc::new(Inner {
            gateway_id: config.gateway.id.clone(),
            token_sha256,
            producer,
            decisions_topic: config.bus.topics.decisions.clone(),
            quarantine,
            policies,
            identity,
            emitter,
            live,
            mqtt,
            tls,
            audit: std::sync::OnceLock::new(),
        })))
    }

    /// Counters of the admin listener's TLS handshakes (with `[admin.tls]`).
    pub fn tls_stats(&self) -> Option<Arc<TlsStats>> {
        self.0.tls.as_ref().map(|t| t.stats().clone())
    }

    /// Record every decision made through this API in `log` before it is published (the log
    /// the rest of the process writes to; only the first call takes effect).
    pub fn record_in(&self, log: Arc<warden_event::audit::AuditLog>) {
        let _ = self.0.audit.set(log);
    }

    /// Whether the admin listener serves HTTPS (`[admin.tls]`).
    pub fn is_tls(&self) -> bool {
        self.0.tls.is_some()
    }

    /// The admin router (every path goes through token check, dispatch and audit).
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Serve the admin API on `listener` until `shutdown` resolves: HTTPS with `[admin.tls]`,
    /// plain HTTP otherwise.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        if let Some(t) = self.0.tls.clone() {
            tls::serve(listener, t, self.router(), shutdown).await;
            return Ok(());
        }
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }

    /// Whether `headers` carry the admin token (compared as SHA-256 digests, in constant time).
    fn authenticated(&self, headers: &axum::http::HeaderMap) -> AuthResult {
        let Some(v) = headers.get(header::AUTHORIZATION) else {
            return AuthResult::Missing;
        };
        let Some(token) = v
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
        else {
            return AuthResult::Failed;
        };
        let Some(want) = &self.0.token_sha256 else {
            return AuthResult::Failed;
        };
        let got: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let diff = got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            AuthResult::Ok
        } else {
            AuthResult::Failed
        }
    }
}

async fn handle(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let ts = warden_event::now_ns();
    let request_id = uuid::Uuid::now_v7().to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let token = admin.authenticated(req.headers());
    let cert = match &admin.0.tls {
        Some(t) => t.check(
            req.extensions().get::<OperatorConn>(),
            ts.div_euclid(1_000_000_000),
        ),
        None => CertAuth::None,
    };
    let auth = combine(token, &cert);
    let caller = match &cert {
        CertAuth::Operator { name, .. } => name.clone(),
        _ => "token".to_string(),
    };
    let result = if auth == AuthResult::Ok {
        handlers::dispatch(&admin, req, &request_id, &caller).await
    } else {
        Err(AdminError::Unauthenticated)
    };
    let (mut response, action) = match result {
        Ok((resp, action)) => (resp, action),
        Err(e) => (e.into_response(&request_id), "refused".to_string()),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(crate::names::X_REQUEST_ID, v);
    }
    let status = response.status().as_u16();
    let authed = auth == AuthResult::Ok;
    let (operator, fingerprint) = match &cert {
        CertAuth::None => (None, None),
        CertAuth::Operator { name, fingerprint } => (Some(name.as_str()), Some(fingerprint)),
        CertAuth::Refused { fingerprint, why } => {
            info!(target: "warden::audit", %request_id, %fingerprint, why, "Admin certificate refused.");
            (None, Some(fingerprint))
        }
    };
    info!(
        target: "warden::audit",
        %request_id,
        client_ip = %peer.ip(),
        %method,
        %path,
        status,
        authenticated = authed,
        operator = operator.unwrap_or(""),
        token = ?token,
        %action,
        "Admin call."
    );
    admin.0.emitter.emit(RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: request_id,
        gateway: admin.0.gateway_id.clone(),
        seq: 0,
        ts,
        identity: if authed { ADMIN_IDENTITY } else { ANONYMOUS }.to_string(),
        tenant: String::new(),
        device_type: String::new(),
        auth: AuthInfo {
            method: if cert == CertAuth::None {
                AuthMethod::ApiKey
            } else {
                AuthMethod::ClientCert
            },
            result: auth,
        },
        client_ip: peer.ip().to_string(),
        protocol: Protocol::Http,
        method: method.as_str().to_string(),
        route: "admin".to_string(),
        path,
        status,
        decision: match auth {
            AuthResult::Ok => Outcome::Allowed,
            _ => Outcome::DeniedAuth,
        },
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        bytes_in: 0,
        bytes_out: 0,
        user_agent: None,
        tls: admin.0.tls.as_ref().map(|_| warden_event::TlsInfo {
            version: "unknown".to_string(),
            client_cert_fingerprint: fingerprint.cloned(),
        }),
        reason: match (auth, status) {
            (AuthResult::Ok, 200..=399) => warden_event::Reason::None,
            (AuthResult::Ok, 404 | 405) => warden_event::Reason::Route,
            (AuthResult::Ok, 500..) => warden_event::Reason::Upstream,
            (AuthResult::Ok, _) => warden_event::Reason::Invalid,
            _ => warden_event::Reason::Auth,
        },
        query: String::new(),
        query_hash: 0,
    });
    response
}

/// The admin caller is authenticated by a valid operator certificate or the token; every
/// credential presented must hold (a wrong token next to a good certificate is refused, and so
/// is a refused certificate next to a good token).
fn combine(token: AuthResult, cert: &CertAuth) -> AuthResult {
    match (token, cert) {
        (_, CertAuth::Refused { .. }) | (AuthResult::Failed, _) => AuthResult::Failed,
        (_, CertAuth::Operator { .. }) | (AuthResult::Ok, CertAuth::None) => AuthResult::Ok,
        _ => AuthResult::Missing,
    }
}

/// `GET` and `HEAD` only read; everything else changes state.
fn reads(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD
}

async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, AdminError> {
    let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_BODY))
        .await
        .map_err(|_| AdminError::TooLarge)?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|_| AdminError::BadRequest)
}
