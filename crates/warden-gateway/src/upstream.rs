//! Upstream HTTP/1.1 connections, pooled per serving thread.
//!
//! Each serving thread keeps its own idle connections per upstream (`host:port`), the way an
//! nginx worker keeps its `keepalive` connections: a request, its upstream connection and
//! that connection's task stay on one thread and one runtime, with no lock and no cross-thread
//! wake-up. A connection is leased for one request and comes back to its thread's pool when the
//! response body has been read to the end; a response dropped before its end (client gone)
//! takes the connection with it, since the rest of that response is still on the wire.
//!
//! Compared with `hyper_util`'s pooled client this saves, per request, the pool's lock and
//! key, a task spawned to wait for the connection to become ready again, and a channel: in
//! the load bench a plain proxy went from 1.3–1.5× nginx's CPU per request to about nginx's
//! (docs/BENCHMARKS.md).
//!
//! A connection goes back only if it can take the next request at once: one whose request
//! body hyper is still writing (the upstream answered early) is closed instead, so no request
//! ever waits behind another's body. Idle connections are closed after [`IDLE_TIMEOUT`] by
//! their own task, and at most [`MAX_IDLE`] are kept per upstream and thread. A request sent on a pooled connection that
//! the upstream closed meanwhile (a keep-alive race) is sent again on another connection when
//! hyper reports that none of it was written; a fresh connection is never retried.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::uri::Authority;
use axum::http::{Request, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tracing::debug;

use crate::upstream_tls::UpstreamTls;

/// An idle upstream connection is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per upstream and serving thread; more are closed.
pub const MAX_IDLE: usize = 256;
/// Time allowed to open a TCP connection to an upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {0} failed: {1}")]
    Connect(String, std::io::Error),
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    #[error("HTTP/1 handshake with {0} failed: {1}")]
    Handshake(String, hyper::Error),
    #[error("upstream request failed: {0}")]
    Request(#[from] hyper::Error),
    #[error("TLS settings for {0} cannot be used: {1}")]
    TlsSettings(String, String),
    #[error("TLS handshake with {0} failed: {1}")]
    TlsHandshake(String, std::io::Error),
}

/// Upstreams are pooled apart by TLS settings (the id of a route's [`UpstreamTls`], new for
/// every route table; 0 for plain HTTP): a connection verified against one route's CA never
/// serves another's, nor the same route's after its settings were reloaded.
type PoolKey = (Authority, u64);

fn pool_key(upstream: &Authority, tls: Option<&Arc<UpstreamTls>>) -> PoolKey {
    (upstream.clone(), tls.map_or(0, |t| t.id))
}

thread_local! {
    static POOL: RefCell<HashMap<PoolKey, VecDeque<Conn>>> = RefCell::new(HashMap::new());
}

/// One upstream connection: the request half, and when it went idle (shared with the task
/// that drives the connection, which closes it once idle for too long).
struct Conn {
    sender: SendRequest<Body>,
    idle: Arc<IdleSince>,
}

impl Conn {
    /// Whether the connection can take a request now: open, not busy, not idle too long. A
    /// pooled connection went back ready (`Leased::release`), so one that is not ready now
    /// was closed by the upstream meanwhile.
    fn usable(&self, now: u64) -> bool {
        self.sender.is_ready() && !self.idle.expired(now)
    }
}

/// Milliseconds since [`epoch`] at which the connection went idle; `IN_USE` while leased.
struct IdleSince(AtomicU64);

const IN_USE: u64 = u64::MAX;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(IN_USE - 1)
}

impl IdleSince {
    /// How long from `now` (ms) until the connection would expire if it stays idle (the whole
    /// timeout while it is leased).
    fn until_expiry(&self, now: u64) -> Duration {
        let since = self.0.load(Ordering::Acquire);
        if since == IN_USE {
            return IDLE_TIMEOUT;
        }
        let idle = Duration::from_millis(now.saturating_sub(since));
        IDLE_TIMEOUT
            .saturating_sub(idle)
            .max(Duration::from_millis(1))
    }

    /// Whether the connection has been idle for at least `IDLE_TIMEOUT` at `now` (ms).
    fn expired(&self, now: u64) -> bool {
        let since = self.0.load(Ordering::Acquire);
        since != IN_USE && now.saturating_sub(since) >= IDLE_TIMEOUT.as_millis() as u64
    }
}

/// Send `req` (origin-form target, `Host` already set) to `upstream` on a pooled connection,
/// or a new one. The connection goes back to this thread's pool once the returned response's
/// body has been read to its end.
pub async fn send(
    upstream: &Authority,
    tls: Option<&Arc<UpstreamTls>>,
    mut req: Request<Body>,
) -> Result<Response<Body>, UpstreamError> {
    let key = pool_key(upstream, tls);
    loop {
        let (mut conn, reused) = match checkout(&key) {
            Some(c) => (c, true),
            // Boxed: a new connection (TCP, maybe TLS) is the rare case, and its future is
            // most of this one's size, which every request's future would carry and move.
            None => (Box::pin(connect(upstream, tls)).await?, false),
        };
        if !reused {
            conn.sender.ready().await?;
        }
        match conn.sender.try_send_request(req).await {
            Ok(resp) => {
                let lease = Lease {
                    upstream: key.clone(),
                    conn,
                };
                return Ok(resp.map(|body| {
                    Body::new(Leased {
                        inner: body,
                        lease: Some(lease),
                    })
                }));
            }
            Err(mut e) => match e.take_message() {
                // Nothing was written: the upstream had closed this idle connection.
                Some(r) if reused => {
                    debug!(%upstream, error = %e.error(), "Pooled upstream connection was closed; retrying.");
                    req = r;
                }
                _ => return Err(e.into_error().into()),
            },
        }
    }
}

/// The newest idle connection to `upstream` that is still usable, if any.
fn checkout(upstream: &PoolKey) -> Option<Conn> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(upstream)?;
        let now = now_ms();
        while let Some(c) = idle.pop_back() {
            if !c.usable(now) {
                continue;
            }
            c.idle.0.store(IN_USE, Ordering::Release);
            return Some(c);
        }
        None
    })
}

/// Return a connection whose response was read to the end and that is ready for the next.
fn checkin(upstream: PoolKey, conn: Conn) {
    let now = now_ms();
    conn.idle.0.store(now, Ordering::Release);
    // `try_with`: a response dropped while the thread's locals are torn down just closes.
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(upstream).or_default();
        // The oldest are at the front: drop those that expired or closed meanwhile.
        while idle.front().is_some_and(|c| !c.usable(now)) {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(conn);
        }
    });
}

async fn connect(
    upstream: &Authority,
    tls: Option<&Arc<UpstreamTls>>,
) -> Result<Conn, UpstreamError> {
    let port = upstream
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let host = upstream
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tcp = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(UpstreamError::Connect(upstream.to_string(), e)),
        Err(_) => return Err(UpstreamError::ConnectTimeout(upstream.to_string())),
    };
    let _ = tcp.set_nodelay(true);
    match tls {
        None => drive(upstream, tcp).await,
        Some(t) => {
            let config = t
                .config()
                .map_err(|e| UpstreamError::TlsSettings(upstream.to_string(), e))?;
            let stream = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(config).connect(t.server_name.clone(), tcp),
            )
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(upstream.to_string()))?
            .map_err(|e| UpstreamError::TlsHandshake(upstream.to_string(), e))?;
            drive(upstream, stream).await
        }
    }
}

/// HTTP/1.1 over `io`, driven by a task of its own until closed or idle too long.
async fn drive<T>(upstream: &Authority, io: T) -> Result<Conn, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| UpstreamError::Handshake(upstream.to_string(), e))?;
    let idle = Arc::new(IdleSince(AtomicU64::new(IN_USE)));
    let watched = idle.clone();
    let name = upstream.to_string();
    // The connection's task: drives it until either side closes it, or it has been idle in
    // the pool for `IDLE_TIMEOUT` (then dropping it closes the socket).
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        let mut wait = IDLE_TIMEOUT;
        loop {
            tokio::select! {
                ended = &mut conn => {
                    if let Err(e) = ended {
                        debug!(upstream = %name, error = %e, "Upstream connection ended with an error.");
                    }
                    return;
                }
                () = tokio::time::sleep(wait) => {
                    let now = now_ms();
                    if watched.expired(now) {
                        return;
                    }
                    wait = watched.until_expiry(now);
                }
            }
        }
    });
    Ok(Conn { sender, idle })
}

/// A connection leased for one response.
struct Lease {
    upstream: PoolKey,
    conn: Conn,
}

/// An upstream response body that returns its connection to the pool at its end.
struct Leased {
    inner: Incoming,
    lease: Option<Lease>,
}

impl Leased {
    /// The response has been read to its end: the connection goes back to the pool if it can
    /// take the next request now. It cannot while hyper is still writing this request's body
    /// (an upstream may answer before reading all of it); such a connection is dropped rather
    /// than pooled, so that no other request waits behind a body it does not own.
    fn release(&mut self) {
        if let Some(l) = self.lease.take()
            && l.conn.sender.is_ready()
        {
            checkin(l.upstream, l.conn);
        }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        // Only a response read to its end leaves the connection reusable.
        if http_body::Body::is_end_stream(&self.inner) {
            self.release();
        }
    }
}

impl http_body::Body for Leased {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            // Trailers are a body's last frame (hyper reports no end after them).
            Poll::Ready(Some(Ok(f))) if f.is_trailers() || self.inner.is_end_stream() => {
                self.release();
            }
            Poll::Ready(Some(Err(_))) => {
                // The connection is broken; let it go.
                self.lease = None;
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_expires_only_when_idle_for_the_timeout() {
        let timeout = IDLE_TIMEOUT.as_millis() as u64;
        let idle = IdleSince(AtomicU64::new(IN_USE));
        assert!(
            !idle.expired(u64::MAX - 1),
            "a leased connection never expires"
        );
        idle.0.store(1_000, Ordering::Release);
        assert!(!idle.expired(1_000 + timeout - 1));
        assert!(idle.expired(1_000 + timeout));
        // A clock read before the connection went idle does not expire it.
        assert!(!idle.expired(500));
    }
}
