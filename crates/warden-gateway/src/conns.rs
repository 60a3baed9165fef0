//! Connection hygiene: every accepted connection is admitted against a per-address and a
//! global cap, and closed when it has not completed a first request within the first-request
//! deadline, or has had no request in flight for the idle timeout.
//!
//! At a cap the **oldest idle** connection (of that address for the per-address cap, of anyone
//! for the global one) is closed to make room; when every connection is busy the new one is
//! refused. So a flood of silent connections from one address evicts only itself, and a flood
//! from many cannot hold the last descriptors against a client with a real request: a silent
//! connection is always idle, and always older than the client that just arrived.
//!
//! "In flight" spans a request from its head until its response body has been sent (or
//! dropped): a long download is not idle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::debug;
use warden_config::ConnectionLimits;

/// Deadlines and caps, as the tracker uses them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub first_request: Duration,
    pub idle: Duration,
    pub header_read: Duration,
    pub h2_keepalive_interval: Option<Duration>,
    pub h2_keepalive_timeout: Duration,
    pub max_per_ip: usize,
    pub max_total: usize,
}

impl Limits {
    /// From the config; a `max_total` of 0 becomes three quarters of the soft file-descriptor
    /// limit (each connection holds one, the upstream pool and files need the rest).
    pub(crate) fn new(c: &ConnectionLimits) -> Self {
        let max_total = if c.max_total > 0 {
            c.max_total
        } else {
            let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
            usize::try_from(soft / 4 * 3).unwrap_or(usize::MAX).max(16)
        };
        Self {
            first_request: Duration::from_millis(c.first_request_timeout_ms),
            idle: Duration::from_millis(c.idle_timeout_ms),
            header_read: Duration::from_millis(c.header_read_timeout_ms),
            h2_keepalive_interval: (c.h2_keepalive_interval_ms > 0)
                .then(|| Duration::from_millis(c.h2_keepalive_interval_ms)),
            h2_keepalive_timeout: Duration::from_millis(c.h2_keepalive_timeout_ms),
            max_per_ip: c.max_per_ip.max(1),
            max_total: max_total.max(1),
        }
    }
}

/// Counters of the tracker (for logs, metrics and tests).
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections admitted.
    pub admitted: AtomicU64,
    /// Idle connections closed to make room at a cap.
    pub evicted: AtomicU64,
    /// New connections refused at a cap (every connection busy).
    pub refused: AtomicU64,
    /// Connections closed by the first-request deadline or the idle timeout.
    pub timed_out: AtomicU64,
}

/// One open connection.
pub(crate) struct Conn {
    id: u64,
    ip: IpAddr,
    epoch: Instant,
    in_flight: AtomicUsize,
    /// A request has started on this connection.
    served: AtomicBool,
    /// Milliseconds since `epoch` of the last time the connection became idle (or opened).
    last_idle_ms: AtomicU64,
    close: Notify,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request starts; the returned guard ends it (put it in the response body).
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn idle_since(&self) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.last_idle_ms.load(Ordering::Relaxed))
    }
}

/// A request in flight on a connection.
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_idle_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&c.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&c.ip);
            }
        }
        Some(c)
    }

    /// The oldest idle connection (of `ip`, if given).
    fn oldest_idle(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.conns
            .values()
            .filter(|c| ip.is_none_or(|ip| c.ip == ip))
            .filter_map(|c| c.idle_since().map(|t| (t, c.id)))
            .min()
            .map(|(_, id)| id)
    }

    fn evict(&mut self, id: u64) {
        if let Some(c) = self.remove(id) {
            c.close.notify_one();
        }
    }
}

/// The connections of one gateway, across its listeners and serving threads.
pub(crate) struct Tracker {
    pub(crate) limits: Limits,
    epoch: Instant,
    table: Mutex<Table>,
    pub(crate) stats: Arc<ConnStats>,
}

impl Tracker {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
            stats: Arc::default(),
        })
    }

    /// Admit a connection from `ip`, closing the oldest idle one at a cap; `None` when a cap
    /// is reached and every connection there is busy.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut t = self.table.lock();
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_ip {
            let Some(id) = t.oldest_idle(Some(ip)) else {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                debug!(%ip, "Connection refused: every connection of the address is busy.");
                return None;
            };
            t.evict(id);
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        if t.conns.len() >= self.limits.max_total {
            let Some(id) = t.oldest_idle(None) else {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                debug!(%ip, "Connection refused: every connection is busy.");
                return None;
            };
            t.evict(id);
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        t.next_id += 1;
        let conn = Arc::new(Conn {
            id: t.next_id,
            ip,
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_idle_ms: AtomicU64::new(0),
            close: Notify::new(),
        });
        conn.last_idle_ms.store(conn.now_ms(), Ordering::Relaxed);
        t.conns.insert(conn.id, conn.clone());
        *t.per_ip.entry(ip).or_default() += 1;
        self.stats.admitted.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            tracker: self.clone(),
            conn,
        })
    }

    /// Close the oldest idle connection (out of descriptors); whether there was one.
    pub(crate) fn evict_oldest_idle(&self) -> bool {
        let mut t = self.table.lock();
        match t.oldest_idle(None) {
            Some(id) => {
                t.evict(id);
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// An admitted connection; dropping it releases its place.
pub(crate) struct Admitted {
    tracker: Arc<Tracker>,
    pub(crate) conn: Arc<Conn>,
}

impl Admitted {
    /// Resolves when the connection must close: evicted, no first request within the
    /// first-request deadline, or idle for the idle timeout.
    pub(crate) async fn expired(&self) {
        let c = &self.conn;
        let closed = c.close.notified();
        tokio::pin!(closed);
        loop {
            let limit = if c.served.load(Ordering::Relaxed) {
                self.tracker.limits.idle
            } else {
                self.tracker.limits.first_request
            };
            let wait = match c.idle_since() {
                Some(since) => {
                    let idle = Duration::from_millis(c.now_ms().saturating_sub(since));
                    if idle >= limit {
                        self.tracker.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        debug!(ip = %c.ip, served = c.served.load(Ordering::Relaxed), "Connection closed: no request in time.");
                        return;
                    }
                    limit - idle
                }
                None => limit,
            };
            tokio::select! {
                () = &mut closed => {
                    debug!(ip = %c.ip, "Idle connection closed to make room.");
                    return;
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.tracker.table.lock().remove(self.conn.id);
    }
}

/// A response body that keeps its request in flight until it ends or is dropped.
pub(crate) struct ActiveBody {
    inner: Body,
    _in_flight: InFlight,
}

impl ActiveBody {
    pub(crate) fn new(inner: Body, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for ActiveBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
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

    fn tracker(per_ip: usize, total: usize) -> Arc<Tracker> {
        Tracker::new(Limits {
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            h2_keepalive_interval: None,
            h2_keepalive_timeout: Duration::from_secs(10),
            max_per_ip: per_ip,
            max_total: total,
        })
    }

    #[test]
    fn caps_evict_the_oldest_idle_or_refuse_when_all_are_busy() {
        let t = tracker(2, 3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = t.admit(a).expect("a1");
        let a2 = t.admit(a).expect("a2");
        // Third from `a`: its oldest idle (a1) goes.
        let a3 = t.admit(a).expect("a3");
        assert_eq!(t.stats.evicted.load(Ordering::Relaxed), 1);
        assert!(!t.table.lock().conns.contains_key(&a1.conn.id));
        // Busy connections are never evicted: with a2 and a3 busy, a fourth is refused.
        let (_g2, _g3) = (a2.conn.enter(), a3.conn.enter());
        assert!(t.admit(a).is_none());
        assert_eq!(t.stats.refused.load(Ordering::Relaxed), 1);
        // Another address still gets in (3 = the global cap); at the cap, the oldest idle
        // connection of anyone goes, and when all are busy the newcomer is refused.
        let b1 = t.admit(b).expect("b1");
        let b2 = t.admit(b).expect("b2 evicts the idle b1");
        assert!(!t.table.lock().conns.contains_key(&b1.conn.id));
        let _g = b2.conn.enter();
        assert!(t.admit(b).is_none(), "global cap, every connection busy");
        drop(a1);
        assert_eq!(t.table.lock().conns.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_connections_expire_and_busy_ones_do_not() {
        let t = tracker(10, 10);
        let silent = t.admit([10, 0, 0, 1].into()).expect("silent");
        let t0 = tokio::time::Instant::now();
        silent.expired().await;
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        let busy = t.admit([10, 0, 0, 1].into()).expect("busy");
        let guard = busy.conn.enter();
        let waited = tokio::time::timeout(Duration::from_secs(60), busy.expired()).await;
        assert!(waited.is_err(), "a request in flight keeps the connection");
        drop(guard);
        busy.expired().await;
        assert_eq!(t.stats.timed_out.load(Ordering::Relaxed), 2);
    }
}
