//! The gateway process: bootstrap decisions, serve requests, emit events.
//!
//! Phases of a request, in order (each may end it with a [`Reject`], whose [`Reject::reason`]
//! the event records):
//! 1. request id, client IP, query shape, and the event draft (so even a refused request is
//!    evented);
//! 2. global load shedding (503) and header limits (431): the cheapest refusals first;
//! 3. quarantine of the client IP (403) — before anything about the request is checked, so a
//!    quarantined address gets the same 403 for a valid key, a wrong key and no key, and for
//!    any path: it can no longer learn which keys are valid (no oracle);
//! 4. path normalisation ([`path`]) — refuse rather than rewrite anything that could bypass a
//!    route or a rule; the policy snapshot is taken here, so a reload never changes the rules
//!    under a request in flight; then route match and the route's method allow list. A
//!    request refused here (400/404/405) is still *attributed*: the credentials it presents
//!    are checked ([`Authenticator::attribute`]) so the event names the device that probed,
//!    a quarantined identity still gets its 403, and its probes count against its rate
//!    limits — but the client sees the same refusal whatever its credentials were;
//! 5. per-route load shedding;
//! 6. identity (API key, JWT, client certificate) — before the remaining quarantine checks,
//!    so a quarantined device is recognised;
//! 7. quarantine check on identity, key and tenant (403), which also finds live `throttle`
//!    decisions and the rate they allow;
//! 8. rate limits (429; the event says `throttle` for a decision's limit, `rate_limit` for a
//!    configured one) — after identity so limits are per device, before RBAC so a flood of
//!    forbidden requests is throttled too;
//! 9. RBAC on the normalised path (403), shadow policy counted;
//! 10. validation: body size (declared length now, streamed length while proxying), content
//!     type, JSON Schema;
//! 11. proxy to the upstream.
//!
//! The single rescue point is [`Reject::into_response`]: generic JSON body with the request id.
//! The event is finished when the response body ends, with the bytes really sent.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use tokio::net::TcpListener;
use tracing::{Instrument, debug, info, info_span, warn};
use warden_bus::Bus;
use warden_config::WardenConfig;
use warden_event::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, Decision, Outcome, Protocol, Reason, RequestEvent,
};

use crate::emit::Emitter;
use crate::identity::{Authenticator, IdentityHandle};
use crate::live::{LiveConfig, LiveState};
use crate::ratelimit::MonotonicClock;
use crate::rbac::PolicyStore;
use crate::tls::HandshakeFailure;
use crate::{GatewayError, QuarantineSet};

mod attribution;
mod mqtt;
mod request;
pub(crate) use mqtt::{Chain, ConnectRefused, Device, MqttEvent, Origin};
use request::handle;
pub use request::request_id;

/// Everything a request needs, shared by all requests.
struct Shared {
    id: String,
    /// Routes, API keys, limits: one snapshot per request, replaced whole by a live reload.
    live: Arc<ArcSwap<LiveState>>,
    identity: Authenticator,
    quarantine: Arc<QuarantineSet>,
    emitter: Emitter,
    trust_forwarded_for: bool,
    paths: warden_config::PathsConfig,
    policies: Arc<PolicyStore>,
    /// Key of the query hashes in events.
    query_hash_key: Vec<u8>,
    /// Method-override headers: refused or authorized.
    method_override: warden_config::MethodOverride,
    /// Longest wait for the next bytes of a request body.
    body_idle: Duration,
    /// Who calls deprecated routes (shared with the admin API).
    deprecated: Arc<crate::deprecation::DeprecatedCalls>,
}

/// Key of the query hashes when `gateway.query_hash_key` is empty.
const BUILT_IN_QUERY_HASH_KEY: &[u8] = b"warden-query-hash";

/// A running gateway (decisions bootstrapped, publisher and decision follower started).
pub struct Gateway {
    shared: Arc<Shared>,
    identity: IdentityHandle,
    /// Identity reloaders and the JWKS refresher.
    identity_tasks: Vec<tokio::task::JoinHandle<()>>,
    publisher: tokio::task::JoinHandle<()>,
    follower: tokio::task::JoinHandle<()>,
    admin: crate::admin::Admin,
    /// Watches the policy files.
    policy_watch: Option<tokio::task::JoinHandle<()>>,
    /// The live settings of the config file.
    live: LiveConfig,
    /// Watches the config file (see [`Gateway::watch_config`]).
    config_watch: Option<tokio::task::JoinHandle<()>>,
    /// Runs the routes' active health checks.
    prober: tokio::task::JoinHandle<()>,
    /// Open client connections, their caps and deadlines (every listener and thread).
    conns: Arc<crate::conns::Tracker>,
    /// Connected MQTT sessions.
    mqtt: Arc<crate::mqtt::MqttHub>,
    mqtt_config: Arc<warden_config::MqttConfig>,
}

impl Gateway {
    /// Read every live decision from the bus, then start following decisions and publishing
    /// events. Fails when the decisions cannot be read within the configured timeout: a
    /// gateway must not serve without knowing who is quarantined.
    pub async fn start(config: &WardenConfig, bus: Arc<dyn Bus>) -> Result<Self, GatewayError> {
        // Identity first: a gateway with a broken certificate, registry or JWKS must not start.
        let started = Authenticator::start(config)
            .await
            .map_err(GatewayError::Identity)?;
        // Policy files next, for the same reason.
        let policies = Arc::new(PolicyStore::load(config).map_err(GatewayError::Policy)?);
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

        let spool = crate::spool::open(config)?;
        let (emitter, publisher) = Emitter::start(
            bus.producer(),
            crate::emit::EventTopic {
                name: config.bus.topics.events.clone(),
                format: config.bus.event_format,
            },
            config.gateway.event_queue,
            spool,
        );
        let decision_stats = emitter.stats().clone();
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
                                    decision_stats.decision_applied(d.decided_at);
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

        // The config file's settings, with the keys the admin API manages.
        let (keys_file, managed) =
            crate::live::load_managed(config).map_err(GatewayError::Identity)?;
        let serving = crate::live::merge_managed(config, &managed, keys_file.as_deref())
            .map_err(GatewayError::Identity)?;
        serving
            .validate()
            .map_err(|e| GatewayError::Identity(e.0.iter().map(ToString::to_string).collect()))?;
        let live_state = Arc::new(ArcSwap::from_pointee(LiveState::new(
            &serving,
            Arc::new(MonotonicClock::default()),
        )));
        let prober = crate::health::spawn_prober(live_state.clone());
        let live = LiveConfig::new(
            live_state.clone(),
            policies.clone(),
            config.clone(),
            keys_file,
            managed,
        );
        let shared = Arc::new(Shared {
            id: config.gateway.id.clone(),
            live: live_state.clone(),
            identity: started.authenticator,
            quarantine,
            emitter,
            trust_forwarded_for: config.gateway.trust_forwarded_for,
            paths: config.paths.clone(),
            policies: policies.clone(),
            query_hash_key: if config.gateway.query_hash_key.is_empty() {
                BUILT_IN_QUERY_HASH_KEY.to_vec()
            } else {
                config.gateway.query_hash_key.as_bytes().to_vec()
            },
            method_override: config.gateway.method_override,
            body_idle: Duration::from_millis(config.gateway.connections.body_read_timeout_ms),
            deprecated: live.deprecated_calls().clone(),
        });
        let policy_watch = (config.rbac.reload_interval_ms > 0).then(|| {
            policies
                .clone()
                .watch(Duration::from_millis(config.rbac.reload_interval_ms))
        });
        let mqtt = crate::mqtt::MqttHub::new();
        let admin = crate::admin::Admin::new(
            config,
            bus.producer(),
            shared.quarantine.clone(),
            policies,
            started.handle.clone(),
            shared.emitter.clone(),
            live.clone(),
            mqtt.clone(),
        )
        .map_err(GatewayError::Identity)?;
        let limits = crate::conns::Limits::new(&config.gateway.connections);
        info!(
            max_total = limits.max_total,
            max_per_ip = limits.max_per_ip,
            first_request_ms = limits.first_request.as_millis() as u64,
            idle_ms = limits.idle.as_millis() as u64,
            "Connection limits set."
        );
        Ok(Self {
            conns: crate::conns::Tracker::new(limits),
            shared,
            identity: started.handle,
            identity_tasks: started.tasks,
            publisher,
            follower,
            admin,
            policy_watch,
            live,
            config_watch: None,
            prober,
            mqtt,
            mqtt_config: Arc::new(config.gateway.mqtt.clone()),
        })
    }

    /// The live settings (routes, API keys, limits, validation): reload or replace them.
    pub fn live(&self) -> &LiveConfig {
        &self.live
    }

    /// Reload the live settings from `file` (read by `loader`, with the same layers as at
    /// start) whenever it changes, checked every `interval`, and on [`LiveConfig::reload`].
    pub fn watch_config(
        &mut self,
        file: std::path::PathBuf,
        loader: crate::live::ConfigLoader,
        interval: Duration,
    ) {
        self.live.set_source(file, loader);
        if let Some(t) = self.config_watch.take() {
            t.abort();
        }
        self.config_watch = Some(self.live.watch(interval));
    }

    /// Reload and inspect the identity sources (TLS, registry, JWKS, deny list).
    pub fn identity(&self) -> &IdentityHandle {
        &self.identity
    }

    /// The admin API of this gateway (serve it with [`crate::Admin::serve`]).
    pub fn admin(&self) -> &crate::admin::Admin {
        &self.admin
    }

    /// The quarantine set this gateway enforces.
    pub fn quarantine(&self) -> &Arc<QuarantineSet> {
        &self.shared.quarantine
    }

    /// The event emitter (for its counters).
    pub fn emitter(&self) -> &Emitter {
        &self.shared.emitter
    }

    /// Counters of client connections (admitted, evicted, refused, timed out).
    pub fn conn_stats(&self) -> Arc<crate::ConnStats> {
        self.conns.stats.clone()
    }

    /// The MQTT listeners' server: serve it with [`MqttServer::serve`] beside the HTTP
    /// listeners (see [`crate::mqtt`]).
    pub fn mqtt(&self) -> MqttServer {
        MqttServer {
            config: self.mqtt_config.clone(),
            chain: self.chain(),
            hub: self.mqtt.clone(),
        }
    }

    /// The CoAP listener's server: serve it with [`CoapServer::serve`] (see `coap`).
    pub fn coap(&self, config: &warden_config::CoapConfig) -> CoapServer {
        CoapServer {
            config: Arc::new(config.clone()),
            chain: self.chain(),
        }
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
        self.serve_with_tls(listener, None, shutdown).await
    }

    /// Serve plain HTTP on `listener` and, given `tls_listener`, HTTPS on it (needs
    /// `gateway.tls`) with the same router, on the calling runtime, until `shutdown`
    /// resolves; then let open connections finish and drain queued events to the bus.
    pub async fn serve_with_tls(
        self,
        listener: TcpListener,
        tls_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        use futures::FutureExt;
        let tls = self.tls_for(tls_listener.is_some())?;
        serve_listeners(
            listener,
            tls_listener.zip(tls),
            self.router(),
            handshake_sink(self.shared.clone()),
            self.conns.clone(),
            shutdown.shared(),
        )
        .await?;
        self.finish().await;
        Ok(())
    }

    /// Like [`Gateway::serve_with_tls`], on `threads` serving threads, each with its own
    /// single-threaded runtime accepting on the same listening sockets (the way nginx runs
    /// one worker per core): a request, its upstream call and its pooled upstream connection
    /// stay on one thread, with no cross-thread wake-ups. Every thread serves the same
    /// gateway (one quarantine set, one set of rate-limit tables, one event queue); the
    /// background tasks (event publisher, decision follower, reloads) stay on the calling
    /// runtime.
    pub async fn serve_on_threads(
        self,
        listener: std::net::TcpListener,
        tls_listener: Option<std::net::TcpListener>,
        threads: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        use futures::FutureExt;
        let tls = self.tls_for(tls_listener.is_some())?;
        let shutdown = shutdown.shared();
        let router = self.router();
        let sink = handshake_sink(self.shared.clone());
        let tracker = self.conns.clone();
        let mut done = Vec::new();
        for i in 0..threads.max(1) {
            // Each thread registers its own handle of the same socket with its runtime; the
            // kernel hands each new connection to one of the threads waiting in `accept`.
            let plain = listener.try_clone()?;
            let secure = match (&tls_listener, &tls) {
                (Some(l), Some(rt)) => Some((l.try_clone()?, rt.clone())),
                _ => None,
            };
            let (router, sink, shutdown) = (router.clone(), sink.clone(), shutdown.clone());
            let tracker = tracker.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name(format!("warden-gw-{i}"))
                .spawn(move || {
                    let served = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(GatewayError::Io)
                        .and_then(|rt| {
                            rt.block_on(
                                async move {
                                    let plain = TcpListener::from_std(plain)?;
                                    let secure = match secure {
                                        Some((l, rt)) => Some((TcpListener::from_std(l)?, rt)),
                                        None => None,
                                    };
                                    serve_listeners(plain, secure, router, sink, tracker, shutdown)
                                        .await
                                }
                                .instrument(info_span!("gateway", worker = i)),
                            )
                        });
                    let _ = tx.send(served);
                })?;
            done.push(rx);
        }
        // The threads hold their own clones; these would keep the emitter alive (through the
        // router's state and the handshake sink) and the publisher from ending in `finish`.
        drop((router, sink, listener, tls_listener));
        let mut result = Ok(());
        for rx in done {
            let served = rx.await.unwrap_or_else(|_| {
                Err(GatewayError::Io(std::io::Error::other(
                    "a serving thread stopped abnormally",
                )))
            });
            if let Err(e) = served {
                warn!(error = %e, "A gateway serving thread failed.");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        self.finish().await;
        result
    }

    /// The TLS runtime for a TLS listener, when one is given.
    fn tls_for(&self, listener: bool) -> Result<Option<Arc<crate::tls::TlsRuntime>>, GatewayError> {
        match (listener, self.shared.identity.tls()) {
            (true, Some(rt)) => Ok(Some(rt.clone())),
            (true, None) => Err(GatewayError::Identity(vec![
                "a TLS listener was given but `gateway.tls` is not configured".into(),
            ])),
            (false, _) => Ok(None),
        }
    }

    /// After the listeners closed: stop the background tasks and drain queued events.
    async fn finish(self) {
        for t in &self.identity_tasks {
            t.abort();
        }
        self.follower.abort();
        self.prober.abort();
        if let Some(t) = &self.policy_watch {
            t.abort();
        }
        if let Some(t) = &self.config_watch {
            t.abort();
        }
        let Gateway {
            shared,
            publisher,
            admin,
            ..
        } = self;
        drop(shared);
        drop(admin);
        // The publisher ends once the last emitter (held by `shared`, the admin API, and
        // responses still streaming) is gone and the queue is drained.
        if tokio::time::timeout(Duration::from_secs(15), publisher)
            .await
            .is_err()
        {
            warn!("Events still unpublished after 15 s at shutdown.");
        }
    }
}

/// The MQTT listeners of a gateway (see [`crate::mqtt`]).
pub struct MqttServer {
    config: Arc<warden_config::MqttConfig>,
    chain: Chain,
    hub: Arc<crate::mqtt::MqttHub>,
}

impl MqttServer {
    /// The connected sessions.
    pub fn hub(&self) -> &Arc<crate::mqtt::MqttHub> {
        &self.hub
    }

    /// Serve MQTT on `plain` and, given one, on `tls` (needs `gateway.tls`) until `shutdown`
    /// resolves; sessions then get a DISCONNECT (server shutting down) and close.
    pub async fn serve(
        self,
        plain: Option<TcpListener>,
        tls: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        use futures::FutureExt;
        if tls.is_some() && self.chain.tls().is_none() {
            return Err(GatewayError::Identity(vec![
                "an MQTT TLS listener was given but `gateway.tls` is not configured".into(),
            ]));
        }
        crate::mqtt::serve(
            self.config,
            self.chain,
            self.hub,
            plain,
            tls,
            shutdown.shared(),
        )
        .await;
        Ok(())
    }
}

/// The CoAP listener of a gateway.
pub struct CoapServer {
    config: Arc<warden_config::CoapConfig>,
    chain: Chain,
}

impl CoapServer {
    /// Serve CoAP on `socket` until `shutdown` resolves.
    pub async fn serve(
        self,
        socket: tokio::net::UdpSocket,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        crate::coap::serve(
            crate::coap::Listener::new(self.config, self.chain),
            socket,
            shutdown,
        )
        .await;
    }

    /// Bind the CoAP-over-DTLS listener on `addr` (the gateway's TLS certificate; a device's
    /// client certificate is its identity); serve it with [`crate::coap::dtls::DtlsListener::serve`].
    pub async fn bind_dtls(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<crate::coap::dtls::DtlsListener, GatewayError> {
        crate::coap::dtls::DtlsListener::bind(
            crate::coap::Listener::new(self.config.clone(), self.chain.clone()),
            addr,
        )
        .await
    }
}

/// Serve `router` on the plain listener and, given one, the TLS listener, on the current
/// runtime until `shutdown`; then let open connections finish.
async fn serve_listeners(
    listener: TcpListener,
    tls: Option<(TcpListener, Arc<crate::tls::TlsRuntime>)>,
    router: Router,
    sink: crate::tls::FailureSink,
    tracker: Arc<crate::conns::Tracker>,
    shutdown: futures::future::Shared<impl Future<Output = ()> + Send + 'static>,
) -> Result<(), GatewayError> {
    let tls_task = tls.map(|(l, rt)| {
        tokio::spawn(crate::tls::serve(
            l,
            rt,
            router.clone(),
            sink,
            tracker.clone(),
            shutdown.clone(),
        ))
    });
    serve_plain(listener, router, tracker, shutdown).await;
    if let Some(t) = tls_task {
        let _ = t.await;
    }
    Ok(())
}

/// Accept plain connections until `shutdown`, then let open connections finish (up to 10 s):
/// the same connection handling as the TLS listener (`tls::serve_connection`).
async fn serve_plain(
    listener: TcpListener,
    router: Router,
    tracker: Arc<crate::conns::Tracker>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = tracker.limits;
    crate::tls::accept_loop(
        listener,
        shutdown,
        "HTTP",
        tracker,
        move |tcp, peer, watcher, conn| {
            let on = crate::tls::Served {
                watcher,
                peer,
                conn,
                limits,
            };
            crate::tls::serve_connection(tcp, router.clone(), on, "HTTP", |_| {})
        },
    )
    .await;
}

/// Refused TLS handshakes about client certificates become events: no identity (a refused
/// certificate proves nothing, so it must not count against the device it names), keyed by
/// client IP, `route = "tls_handshake"`, `status = 0`, `decision = denied_auth`,
/// `auth = client_cert/failed` (`missing` when a required certificate was absent), and the
/// refused certificate's fingerprint in `tls`.
fn handshake_sink(shared: Arc<Shared>) -> crate::tls::FailureSink {
    Arc::new(move |f: HandshakeFailure| {
        let result = if f.reason == crate::tls::Rejection::MissingCertificate {
            AuthResult::Missing
        } else {
            AuthResult::Failed
        };
        shared.emitter.emit(RequestEvent {
            v: warden_event::SCHEMA_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            gateway: shared.id.clone(),
            seq: 0,
            ts: warden_event::now_ns(),
            identity: ANONYMOUS.to_string(),
            tenant: String::new(),
            device_type: String::new(),
            auth: AuthInfo {
                method: AuthMethod::ClientCert,
                result,
            },
            client_ip: f.peer.ip().to_string(),
            protocol: Protocol::Http,
            method: String::new(),
            route: "tls_handshake".to_string(),
            path: String::new(),
            status: 0,
            decision: Outcome::DeniedAuth,
            latency_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            user_agent: None,
            tls: Some(warden_event::TlsInfo {
                version: "unknown".to_string(),
                client_cert_fingerprint: f.fingerprint,
            }),
            reason: Reason::Auth,
            query: String::new(),
            query_hash: 0,
        });
    })
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
