//! The gateway process: bootstrap decisions, serve requests, emit events.
//!
//! Phases of a request, in order (each may end it with a [`Reject`]):
//! 1. request id, client IP, and the event draft (so even a refused request is evented);
//! 2. raw path check — refuse rather than rewrite anything that could bypass a route;
//! 3. route match and method allow list;
//! 4. identity (API key) — before quarantine, so a quarantined device is recognised;
//! 5. quarantine check on identity, key, tenant and client IP;
//! 6. body size limit (declared length now, streamed length while proxying);
//! 7. proxy to the upstream.
//!
//! The single rescue point is [`Reject::into_response`]: generic JSON body with the request id.
//! The event is finished when the response body ends, with the bytes really sent.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::net::TcpListener;
use tracing::{Instrument, debug, info, info_span, warn};
use warden_bus::Bus;
use warden_config::{RouteAuth, WardenConfig};
use warden_event::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, Decision, Outcome, Protocol, RequestEvent,
    SubjectKind,
};

use crate::auth::{Credential, KeyStore, Principal};
use crate::body::{Counters, FinishBody};
use crate::emit::Emitter;
use crate::proxy::{self, Forwarded, HttpClient};
use crate::routes::RouteTable;
use crate::{GatewayError, QuarantineSet, Reject, Verdict, path};

/// Everything a request needs, shared by all requests.
struct Shared {
    id: String,
    routes: RouteTable,
    keys: KeyStore,
    quarantine: Arc<QuarantineSet>,
    emitter: Emitter,
    client: HttpClient,
    max_body: u64,
    trust_forwarded_for: bool,
}

/// A running gateway (decisions bootstrapped, publisher and decision follower started).
pub struct Gateway {
    shared: Arc<Shared>,
    publisher: tokio::task::JoinHandle<()>,
    follower: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Read every live decision from the bus, then start following decisions and publishing
    /// events. Fails when the decisions cannot be read within the configured timeout: a
    /// gateway must not serve without knowing who is quarantined.
    pub async fn start(config: &WardenConfig, bus: Arc<dyn Bus>) -> Result<Self, GatewayError> {
        let quarantine = Arc::new(QuarantineSet::new());
        let topic = config.bus.topics.decisions.clone();
        let timeout = Duration::from_millis(config.gateway.decisions_bootstrap_timeout_ms);
        let mut applied = 0usize;
        let q = quarantine.clone();
        let mut reader = warden_bus::read_to_end(&*bus, &topic, timeout, |msg| {
            if let Some(d) = decode_decision(&msg.payload) {
                q.apply(&d);
                applied += 1;
            }
        })
        .await
        .map_err(GatewayError::Bootstrap)?;
        let now = warden_event::now_ns();
        info!(
            decisions = applied,
            quarantined = quarantine.active(now).len(),
            "Live decisions loaded."
        );

        let q = quarantine.clone();
        let follower = tokio::spawn(
            async move {
                let mut last_prune = Instant::now();
                loop {
                    match reader.poll(1024, Duration::from_millis(200)).await {
                        Ok(msgs) => {
                            for m in msgs {
                                if let Some(d) = decode_decision(&m.payload) {
                                    debug!(subject = %d.subject, action = ?d.action, "Decision applied.");
                                    q.apply(&d);
                                }
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "Reading decisions failed; retrying.");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                    if last_prune.elapsed() > Duration::from_secs(30) {
                        q.prune(warden_event::now_ns());
                        last_prune = Instant::now();
                    }
                }
            }
            .instrument(info_span!("decisions")),
        );

        let (emitter, publisher) = Emitter::start(
            bus.producer(),
            config.bus.topics.events.clone(),
            config.gateway.event_queue,
        );
        let shared = Arc::new(Shared {
            id: config.gateway.id.clone(),
            routes: RouteTable::new(&config.routes),
            keys: KeyStore::new(&config.api_keys),
            quarantine,
            emitter,
            client: proxy::client(),
            max_body: config.gateway.max_body_bytes,
            trust_forwarded_for: config.gateway.trust_forwarded_for,
        });
        Ok(Self {
            shared,
            publisher,
            follower,
        })
    }

    /// The quarantine set this gateway enforces.
    pub fn quarantine(&self) -> &Arc<QuarantineSet> {
        &self.shared.quarantine
    }

    /// The event emitter (for its counters).
    pub fn emitter(&self) -> &Emitter {
        &self.shared.emitter
    }

    /// The request router (every path goes through the phases above).
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(handle)
            .with_state(self.shared.clone())
    }

    /// Serve on `listener` until `shutdown` resolves, then drain queued events to the bus.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        self.follower.abort();
        let Gateway {
            shared, publisher, ..
        } = self;
        drop(shared);
        // The publisher ends once the last emitter (held by `shared`, and by responses still
        // streaming) is gone and the queue is drained.
        if tokio::time::timeout(Duration::from_secs(15), publisher)
            .await
            .is_err()
        {
            warn!("Events still unpublished after 15 s at shutdown.");
        }
        Ok(())
    }
}

fn decode_decision(payload: &[u8]) -> Option<Decision> {
    match warden_event::decode::<Decision>(payload) {
        Ok(d) => Some(d),
        Err(e) => {
            warn!(error = %e, "Ignoring an unreadable decision.");
            None
        }
    }
}

/// Fields of the event known before the response.
struct Draft {
    id: String,
    ts: i64,
    identity: String,
    tenant: String,
    device_type: String,
    auth: AuthInfo,
    client_ip: IpAddr,
    method: String,
    route: String,
    path: String,
    user_agent: Option<String>,
}

async fn handle(
    State(gw): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::now_v7().to_string();
    let client_ip = client_ip(&req, peer, gw.trust_forwarded_for);
    let mut draft = Draft {
        id: request_id.clone(),
        ts: warden_event::now_ns(),
        identity: ANONYMOUS.to_string(),
        tenant: String::new(),
        device_type: String::new(),
        auth: AuthInfo {
            method: AuthMethod::None,
            result: AuthResult::NotRequired,
        },
        client_ip,
        method: req.method().as_str().to_string(),
        route: "unmatched".to_string(),
        path: req.uri().path().to_string(),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    };
    let counters = Arc::new(Counters::default());
    let span = info_span!("request", %request_id, identity = tracing::field::Empty, route = tracing::field::Empty);
    let result = phases(&gw, req, &mut draft, counters.clone())
        .instrument(span.clone())
        .await;
    let (mut response, outcome) = match result {
        Ok(resp) => (resp, Outcome::Allowed),
        Err(reject) => {
            debug!(parent: &span, code = reject.code(), "Request refused.");
            (reject.into_response(&request_id), reject.outcome())
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    let emitter = gw.emitter.clone();
    let gateway = gw.id.clone();
    let c = counters.clone();
    let finish = move || {
        emitter.emit(RequestEvent {
            v: warden_event::SCHEMA_VERSION,
            id: draft.id,
            gateway,
            seq: 0,
            ts: draft.ts,
            identity: draft.identity,
            tenant: draft.tenant,
            device_type: draft.device_type,
            auth: draft.auth,
            client_ip: draft.client_ip.to_string(),
            protocol: Protocol::Http,
            method: draft.method,
            route: draft.route,
            path: draft.path,
            status,
            decision: outcome,
            latency_us: started.elapsed().as_micros() as u64,
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            user_agent: draft.user_agent,
            tls: None,
        });
    };
    response.map(|body| Body::new(FinishBody::new(body, counters, finish)))
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
    if !path::is_normal(req.uri().path()) {
        return Err(Reject::BadPath);
    }
    let route = gw.routes.find(req.uri().path()).ok_or(Reject::NoRoute)?;
    draft.route = route.name.clone();
    tracing::Span::current().record("route", route.name.as_str());
    if !route.allows(req.method()) {
        return Err(Reject::MethodNotAllowed);
    }

    let credential = crate::auth::credential(req.headers());
    let principal: Option<&Principal> = match (route.auth, credential) {
        (_, Credential::Malformed) => {
            draft.auth = AuthInfo {
                method: AuthMethod::ApiKey,
                result: AuthResult::Failed,
            };
            return Err(if route.auth == RouteAuth::None {
                Reject::BadHeader
            } else {
                Reject::BadCredentials
            });
        }
        (RouteAuth::ApiKey, Credential::None) => {
            draft.auth = AuthInfo {
                method: AuthMethod::ApiKey,
                result: AuthResult::Missing,
            };
            return Err(Reject::MissingCredentials);
        }
        (RouteAuth::None, Credential::None) => None,
        (_, Credential::ApiKey(key)) => match gw.keys.authenticate(&key) {
            Some(p) => {
                draft.auth = AuthInfo {
                    method: AuthMethod::ApiKey,
                    result: AuthResult::Ok,
                };
                Some(p)
            }
            None => {
                draft.auth = AuthInfo {
                    method: AuthMethod::ApiKey,
                    result: AuthResult::Failed,
                };
                return Err(Reject::BadCredentials);
            }
        },
    };
    if let Some(p) = principal {
        draft.identity = p.identity.clone();
        draft.tenant = p.tenant.clone();
        draft.device_type = p.device_type.clone();
        tracing::Span::current().record("identity", p.identity.as_str());
    }

    let ip = draft.client_ip.to_string();
    let mut subjects: Vec<(SubjectKind, &str)> = vec![(SubjectKind::Ip, ip.as_str())];
    if let Some(p) = principal {
        subjects.push((SubjectKind::Identity, &p.identity));
        subjects.push((SubjectKind::ApiKey, &p.key_id));
        if !p.tenant.is_empty() {
            subjects.push((SubjectKind::Tenant, &p.tenant));
        }
    }
    if let Verdict::Quarantined { subject, .. } =
        gw.quarantine.check(warden_event::now_ns(), &subjects)
    {
        debug!(%subject, "Quarantined subject refused.");
        return Err(Reject::Quarantined);
    }

    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()));
    match declared {
        Some(None) => return Err(Reject::BadHeader),
        Some(Some(n)) if n > gw.max_body => return Err(Reject::BodyTooLarge),
        _ => {}
    }

    let fwd = Forwarded {
        request_id: &draft.id,
        client_ip: draft.client_ip,
        identity: principal.map(|p| p.identity.as_str()),
        tenant: principal.map(|p| p.tenant.as_str()),
    };
    proxy::forward(&gw.client, route, req, fwd, gw.max_body, counters).await
}
