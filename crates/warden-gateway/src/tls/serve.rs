//! The accept loop of the TLS listener: handshake (with a timeout) on the newest configuration
//! generation, then HTTP/1.1 or HTTP/2 (by ALPN) on the same router as the plain listener, with
//! the connection's TLS details attached to every request.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use rustls::{CertificateError, ProtocolVersion};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tracing::{debug, warn};
use warden_config::CertField;

use super::verifier::REFUSED_CERT;
use super::{ConnInfo, Rejection, TlsConn, TlsRuntime};
use crate::conns::{ActiveBody, Conn, Limits, Tracker};
use crate::identity::cert::PeerCert;

/// A refused handshake, for the event the gateway emits.
#[derive(Debug, Clone)]
pub(crate) struct HandshakeFailure {
    pub peer: SocketAddr,
    pub reason: Rejection,
    /// Fingerprint (hex) of the refused client certificate, when one was presented.
    pub fingerprint: Option<String>,
}

/// Receives refused handshakes that were about client certificates.
pub(crate) type FailureSink = Arc<dyn Fn(HandshakeFailure) + Send + Sync>;

/// Accept on `listener` until `shutdown`, admitting each connection against `tracker`'s caps
/// (see `conns`) and handing it (Nagle's algorithm off) to `serve` with a watcher of the
/// graceful shutdown, until it ends or `tracker` closes it (first-request deadline, idle
/// timeout, eviction); then let open connections finish for up to 10 s and end the rest.
/// Accept errors (out of descriptors and the like) close the oldest idle connection and back
/// off exponentially (1 ms to 1 s), with one warning a second at most. `what` names the
/// listener in logs.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    what: &'static str,
    tracker: Arc<Tracker>,
    mut serve: F,
) where
    F: FnMut(tokio::net::TcpStream, SocketAddr, Watcher, Arc<Conn>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // The connections' tasks, so that those still open after the drain can be ended.
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(1);
    let mut failures = 0u64;
    let mut last_warning: Option<std::time::Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    failures += 1;
                    let freed = out_of_resources(&e) && tracker.evict_oldest_idle();
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        warn!(error = %e, failures, freed_idle = freed, backoff_ms = backoff.as_millis() as u64, "{what} accept failed; backing off.");
                        last_warning = Some(std::time::Instant::now());
                        failures = 0;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        backoff = Duration::from_millis(1);
        let Some(admitted) = tracker.admit(peer.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        while conns.try_join_next().is_some() {}
        let served = serve(tcp, peer, graceful.watcher(), admitted.conn.clone());
        conns.spawn(async move {
            tokio::select! {
                () = served => {}
                () = admitted.expired() => {}
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        warn!("{what} connections still open 10 s after shutdown; closing them.");
        conns.abort_all();
    }
}

/// Errors of `accept` that a closed connection can relieve (Linux: EMFILE, ENFILE, ENOBUFS,
/// ENOMEM).
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Accept TLS connections until `shutdown`, then let open connections finish (up to 10 s).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<TlsRuntime>,
    router: Router,
    failures: FailureSink,
    tracker: Arc<Tracker>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = tracker.limits;
    accept_loop(
        listener,
        shutdown,
        "TLS",
        tracker,
        move |tcp, peer, watcher, conn| {
            let tls = tls.clone();
            let router = router.clone();
            let failures = failures.clone();
            async move {
                let Some((stream, info)) = handshake(&tls, tcp, peer, &failures).await else {
                    return;
                };
                let on = Served {
                    watcher,
                    peer,
                    conn,
                    limits,
                };
                serve_connection(stream, router, on, "TLS", move |ext| {
                    ext.insert(info.clone());
                })
                .await;
            }
        },
    )
    .await;
}

/// The TLS handshake of an accepted connection on the newest configuration generation (with
/// the configured timeout), counted in `tls.stats`; a refused client certificate goes to
/// `failures`. The stream and the connection's TLS details, or `None` when it failed.
pub(crate) async fn handshake(
    tls: &Arc<TlsRuntime>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    failures: &FailureSink,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    TlsConn,
)> {
    let (field, prefix) = match &tls.config.client_auth {
        Some(c) => (c.identity_field, c.identity_prefix.as_str()),
        None => (CertField::SubjectCn, ""),
    };
    let generation = tls.current();
    let acceptor = tokio_rustls::TlsAcceptor::from(generation.server.clone());
    let (result, refused) = REFUSED_CERT
        .scope(Cell::new(None), async {
            let r = tokio::time::timeout(tls.handshake_timeout(), acceptor.accept(tcp)).await;
            (r, REFUSED_CERT.with(Cell::get))
        })
        .await;
    let stream = match result {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = classify(&e);
            tls.stats.count(reason);
            debug!(%peer, reason = reason.as_str(), error = %e, "TLS handshake refused.");
            if reason.is_certificate() {
                failures(HandshakeFailure {
                    peer,
                    reason,
                    fingerprint: refused.map(hex::encode),
                });
            }
            return None;
        }
        Err(_) => {
            tls.stats.count_timeout();
            debug!(%peer, "TLS handshake timed out.");
            return None;
        }
    };
    tls.stats.count_handshake();
    let (_, session) = stream.get_ref();
    let version = match session.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    };
    let chain = session
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let info = TlsConn(Arc::new(ConnInfo {
        version,
        peer: PeerCert::read(chain, field, prefix),
        verified: Mutex::new((generation.id, true)),
    }));
    Some((stream, info))
}

/// Where a connection is served: its graceful-shutdown watcher, peer, tracked state and the
/// deadlines of its protocol.
pub(crate) struct Served {
    pub watcher: Watcher,
    pub peer: SocketAddr,
    pub conn: Arc<Conn>,
    pub limits: Limits,
}

/// Serve HTTP/1.1 and HTTP/2 (by ALPN on TLS, by the client's preface on plain TCP) with
/// `router` on an accepted connection until it closes or the watcher's shutdown ends it. Each
/// request gets the peer's address and whatever `tag` inserts (the connection's certificate
/// details), and is counted in flight on the connection until its response body ends (see
/// `conns`); `what` names the listener in logs. Upgrades (WebSocket and the like) are not
/// served: the gateway strips `Upgrade` as a hop-by-hop header, and hyper's per-request
/// upgrade channel would be paid by every request for nothing.
pub(crate) async fn serve_connection<S, F>(
    stream: S,
    router: Router,
    on: Served,
    what: &'static str,
    tag: F,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(&mut axum::http::Extensions) + Clone + Send + Sync + 'static,
{
    let Served {
        watcher,
        peer,
        conn,
        limits,
    } = on;
    let service = router
        .map_request(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            tag(req.extensions_mut());
            req
        })
        .map_future(move |fut| {
            let in_flight = conn.enter();
            async move {
                fut.await.map(|resp: axum::response::Response| {
                    resp.map(|b| axum::body::Body::new(ActiveBody::new(b, in_flight)))
                })
            }
        });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that connects and then trickles its request head is cut off.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    // Pings find dead HTTP/2 peers; the tracker closes idle ones.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keepalive_interval)
        .keep_alive_timeout(limits.h2_keepalive_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        debug!(%peer, error = %e, "{what} connection ended with an error.");
    }
}

/// The rustls error inside a failed handshake, as a reason.
pub(crate) fn classify(e: &std::io::Error) -> Rejection {
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return Rejection::Protocol;
    };
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Rejection::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Rejection::NotYetValid
            }
            CertificateError::Revoked => Rejection::Revoked,
            CertificateError::UnknownIssuer => Rejection::UnknownIssuer,
            CertificateError::ApplicationVerificationFailure => Rejection::Denied,
            _ => Rejection::BadCertificate,
        },
        rustls::Error::NoCertificatesPresented => Rejection::MissingCertificate,
        _ => Rejection::Protocol,
    }
}
