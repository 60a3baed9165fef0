//! Passive upstream health: a route's upstream that fails `eject_after_failures` requests in a
//! row (no connection, no TLS handshake, no answer in time) is *ejected*: for `eject_for_ms`
//! its requests are refused at once (502) instead of each waiting for the failure again, the
//! way nginx's `max_fails`/`fail_timeout` and Envoy's outlier detection spare a struggling
//! backend and the clients queued on it. The first request after the ejection is a probe: if
//! it fails too the upstream is ejected again at once (one probe per ejection length while it
//! stays down, so a recovered upstream is back within that length); any success ends it.
//! The length stays short by default (1 s): with one upstream per route, a longer ejection
//! would only keep refusing a backend that is already back.
//!
//! Active health checks (`resilience.health_check`): one task sends each configured route's
//! upstream `GET path` every interval, over the route's own connection settings (pool, TLS,
//! client certificate), as nginx's `health_check` and Envoy's active health checking do. After
//! `unhealthy_after` failures in a row (no connection, no answer in time, a status of 400 or
//! more) the upstream is *down*: its requests are refused at once with 502 until
//! `healthy_after` probes in a row succeed — a backend that is gone is known before a client
//! waits on it, and one that is back is known without sacrificing a client's request to find
//! out. The verdict lives with the route's passive health, and a live reload keeps both while
//! the route's name, upstream and `resilience` settings are unchanged (`RouteTable::carry_over`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{Request, Uri, header};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::live::LiveState;
use crate::routes::Route;

/// A route's upstream health as the admin API and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHealth {
    pub route: String,
    /// The route has active health checks.
    pub checked: bool,
    /// Marked down by them.
    pub down: bool,
    /// Requests refused at once: down, or ejected after failures in a row.
    pub ejected: bool,
}

/// A route's active health check, compiled.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Origin-form target on the upstream: its base path and the configured path.
    target: Uri,
    interval: Duration,
    timeout: Duration,
    unhealthy_after: u32,
    healthy_after: u32,
}

impl Probe {
    /// From validated settings; `base` is the upstream URL's path without its trailing `/`.
    pub fn new(h: &warden_config::HealthCheck, base: &str) -> Option<Self> {
        let target = format!("{base}{}", h.path).parse().ok()?;
        Some(Self {
            target,
            interval: Duration::from_millis(h.interval_ms),
            timeout: Duration::from_millis(h.timeout_ms),
            unhealthy_after: h.unhealthy_after.max(1),
            healthy_after: h.healthy_after.max(1),
        })
    }
}

/// One route's upstream health.
#[derive(Debug)]
pub struct UpstreamHealth {
    after: u32,
    base: Duration,
    failures: AtomicU32,
    /// Consecutive ejections (0: healthy).
    ejections: AtomicU32,
    /// Milliseconds since `epoch` until which requests are refused.
    until_ms: AtomicU64,
    epoch: Instant,
    /// Down by the active health checks.
    down: AtomicBool,
    /// Probe results in a row against the current verdict.
    streak: AtomicU32,
    /// When the next probe is due (ms since `epoch`), and whether one is in flight.
    next_probe_ms: AtomicU64,
    probing: AtomicBool,
}

impl UpstreamHealth {
    /// Eject after `after` consecutive failures (0: never) for `base`.
    pub fn new(after: u32, base: Duration) -> Self {
        Self {
            after,
            base,
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            down: AtomicBool::new(false),
            streak: AtomicU32::new(0),
            next_probe_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether requests are refused now: down by the health checks, or ejected.
    pub fn ejected(&self) -> bool {
        self.down.load(Ordering::Acquire) || self.now_ms() < self.until_ms.load(Ordering::Acquire)
    }

    /// Whether the active health checks marked the upstream down.
    pub fn down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Claim the next probe when it is due and none is in flight (then the next is due one
    /// `interval` from now).
    fn claim_probe(&self, interval: Duration) -> bool {
        let now = self.now_ms();
        if now < self.next_probe_ms.load(Ordering::Acquire)
            || self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        let step = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.next_probe_ms
            .store(now.saturating_add(step), Ordering::Release);
        true
    }

    /// A probe's result; `Some(down)` when it changed the verdict.
    fn probed(&self, ok: bool, probe: &Probe) -> Option<bool> {
        self.probing.store(false, Ordering::Release);
        let down = self.down.load(Ordering::Acquire);
        if ok != down {
            // Agrees with the verdict: the streak against it is broken.
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::AcqRel) + 1;
        let needed = if down {
            probe.healthy_after
        } else {
            probe.unhealthy_after
        };
        if streak < needed {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        if down {
            // Up again: the passive count starts over too.
            self.failures.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
            self.until_ms.store(0, Ordering::Release);
        }
        self.down.store(!down, Ordering::Release);
        Some(!down)
    }

    /// A request reached the upstream and got an answer.
    pub fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 || self.ejections.load(Ordering::Relaxed) != 0
        {
            self.failures.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed to reach the upstream; true when this ejected it.
    pub fn failed(&self) -> bool {
        if self.after == 0 {
            return false;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let ejections = self.ejections.load(Ordering::Acquire);
        // A probe after an ejection that fails ejects again at once.
        if failures < self.after && ejections == 0 {
            return false;
        }
        self.ejections.fetch_add(1, Ordering::AcqRel);
        self.failures.store(0, Ordering::Relaxed);
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(self.base.as_millis()).unwrap_or(u64::MAX));
        self.until_ms.store(until, Ordering::Release);
        true
    }

    /// How long the current ejection still lasts.
    pub fn ejected_for(&self) -> Duration {
        Duration::from_millis(
            self.until_ms
                .load(Ordering::Acquire)
                .saturating_sub(self.now_ms()),
        )
    }
}

/// Run the active health checks of the routes serving now (re-read every tick, so routes
/// added, changed or removed live are probed from the next tick). Each probe runs on its own
/// task; a route has at most one in flight.
pub(crate) fn spawn_prober(state: Arc<ArcSwap<LiveState>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let snapshot = state.load_full();
                for route in snapshot.routes.all() {
                    let Some(probe) = &route.probe else {
                        continue;
                    };
                    if route.health.claim_probe(probe.interval) {
                        let route = route.clone();
                        tokio::spawn(async move { check(&route).await }.in_current_span());
                    }
                }
            }
        }
        .instrument(info_span!("health_checks")),
    )
}

/// Probe `route`'s upstream once and record the result.
async fn check(route: &Route) {
    let Some(probe) = &route.probe else {
        return;
    };
    let req = Request::get(probe.target.clone())
        .header(header::HOST, route.upstream_host().clone())
        .header(header::USER_AGENT, "warden-health-check")
        .body(Body::empty());
    let ok = match req {
        Ok(req) => {
            let sent = crate::upstream::send(route.upstream_authority(), route.tls.as_ref(), req);
            match tokio::time::timeout(probe.timeout, sent).await {
                Ok(Ok(resp)) if resp.status().as_u16() < 400 => true,
                Ok(Ok(resp)) => {
                    debug!(route = %route.name, status = resp.status().as_u16(), "Health check answered with an error status.");
                    false
                }
                Ok(Err(e)) => {
                    debug!(route = %route.name, error = %e, "Health check failed.");
                    false
                }
                Err(_) => {
                    debug!(route = %route.name, "Health check timed out.");
                    false
                }
            }
        }
        Err(_) => false,
    };
    match route.health.probed(ok, probe) {
        Some(true) => warn!(
            route = %route.name,
            path = %probe.target,
            "Upstream failed its health checks; marked down (its requests are refused at once)."
        ),
        Some(false) => info!(route = %route.name, "Upstream passed its health checks; marked up."),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejected_after_consecutive_failures_then_a_failed_probe_ejects_again() {
        let h = UpstreamHealth::new(3, Duration::from_millis(50));
        assert!(!h.failed() && !h.failed());
        h.succeeded();
        assert!(!h.failed() && !h.failed(), "a success resets the count");
        assert!(h.failed(), "third in a row");
        assert!(h.ejected());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!h.ejected(), "the ejection ends");
        assert!(h.failed(), "the probe failed: ejected again at once");
        assert!(h.ejected() && h.ejected_for() > Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(60));
        h.succeeded();
        assert!(
            !h.failed() && !h.failed(),
            "healthy again: the count starts over"
        );
        let never = UpstreamHealth::new(0, Duration::from_secs(1));
        assert!((0..100).all(|_| !never.failed()) && !never.ejected());
    }

    #[test]
    fn health_checks_mark_down_after_failures_in_a_row_and_up_after_successes() {
        let cfg = warden_config::HealthCheck {
            path: "/healthz".into(),
            interval_ms: 100,
            timeout_ms: 50,
            unhealthy_after: 3,
            healthy_after: 2,
        };
        let probe = Probe::new(&cfg, "/base").expect("probe");
        assert_eq!(probe.target.path(), "/base/healthz");
        let h = UpstreamHealth::new(5, Duration::from_millis(50));
        assert_eq!(h.probed(false, &probe), None);
        assert_eq!(h.probed(false, &probe), None);
        assert_eq!(h.probed(true, &probe), None, "a success breaks the streak");
        assert!(!h.ejected());
        assert_eq!(h.probed(false, &probe), None);
        assert_eq!(h.probed(false, &probe), None);
        assert_eq!(
            h.probed(false, &probe),
            Some(true),
            "third failure in a row"
        );
        assert!(h.ejected() && h.down());
        assert_eq!(h.probed(false, &probe), None, "still down");
        assert_eq!(h.probed(true, &probe), None);
        assert_eq!(
            h.probed(false, &probe),
            None,
            "a failure breaks the streak up"
        );
        assert_eq!(h.probed(true, &probe), None);
        assert_eq!(
            h.probed(true, &probe),
            Some(false),
            "second success in a row"
        );
        assert!(!h.ejected() && !h.down());
        // One probe in flight at a time, one per interval.
        assert!(h.claim_probe(Duration::from_millis(40)));
        assert!(!h.claim_probe(Duration::from_millis(40)), "in flight");
        h.probed(true, &probe);
        assert!(!h.claim_probe(Duration::from_millis(40)), "not due yet");
        std::thread::sleep(Duration::from_millis(50));
        assert!(h.claim_probe(Duration::from_millis(40)));
    }
}
