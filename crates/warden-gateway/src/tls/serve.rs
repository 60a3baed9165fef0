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
use crate::identity::cert::PeerCert;

/// Time a client has to send a complete HTTP/1 request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Accept on `listener` until `shutdown`, handing each connection (Nagle's algorithm off) to
/// `serve` with a watcher of the graceful shutdown; then let open connections finish for up
/// to 10 s and end the rest. `what` names the listener in logs.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    what: &'static str,
    mut serve: F,
) where
    F: FnMut(tokio::net::TcpStream, SocketAddr, Watcher) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // The connections' tasks, so that those still open after the drain can be ended.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "{what} accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        while conns.try_join_next().is_some() {}
        conns.spawn(serve(tcp, peer, graceful.watcher()));
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

/// Accept TLS connections until `shutdown`, then let open connections finish (up to 10 s).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<TlsRuntime>,
    router: Router,
    failures: FailureSink,
    shutdown: impl Future<Output = ()>,
) {
    let (field, prefix) = match &tls.config.client_auth {
        Some(c) => (
            c.identity_field,
            Arc::<str>::from(c.identity_prefix.as_str()),
        ),
        None => (CertField::SubjectCn, Arc::<str>::from("")),
    };
    accept_loop(listener, shutdown, "TLS", move |tcp, peer, watcher| {
        let tls = tls.clone();
        let router = router.clone();
        let failures = failures.clone();
        let prefix = prefix.clone();
        async move {
            let generation = tls.current();
            let acceptor = tokio_rustls::TlsAcceptor::from(generation.server.clone());
            let (result, refused) = REFUSED_CERT
                .scope(Cell::new(None), async {
                    let r =
                        tokio::time::timeout(tls.handshake_timeout(), acceptor.accept(tcp)).await;
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
                    return;
                }
                Err(_) => {
                    tls.stats.count_timeout();
                    debug!(%peer, "TLS handshake timed out.");
                    return;
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
                peer: PeerCert::read(chain, field, &prefix),
                verified: Mutex::new((generation.id, true)),
            }));
            serve_connection(stream, router, watcher, peer, "TLS", move |ext| {
                ext.insert(info.clone());
            })
            .await;
        }
    })
    .await;
}

/// Serve HTTP/1.1 and HTTP/2 (by ALPN on TLS, by the client's preface on plain TCP) with
/// `router` on an accepted connection until it closes or `watcher`'s shutdown ends it. Each
/// request gets the peer's address and whatever `tag` inserts (the connection's certificate
/// details); `what` names the listener in logs. Upgrades (WebSocket and the like) are not
/// served: the gateway strips `Upgrade` as a hop-by-hop header, and hyper's per-request
/// upgrade channel would be paid by every request for nothing.
pub(crate) async fn serve_connection<S, F>(
    stream: S,
    router: Router,
    watcher: Watcher,
    peer: SocketAddr,
    what: &'static str,
    tag: F,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(&mut axum::http::Extensions) + Clone + Send + Sync + 'static,
{
    let service = router.map_request(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        tag(req.extensions_mut());
        req
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that connects and then trickles its request head is cut off.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
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
