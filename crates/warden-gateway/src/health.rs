//! Passive upstream health: a route's upstream that fails `eject_after_failures` requests in a
//! row (no connection, no TLS handshake, no answer in time) is *ejected*: for `eject_for_ms`
//! its requests are refused at once (502) instead of each waiting for the failure again, the
//! way nginx's `max_fails`/`fail_timeout` and Envoy's outlier detection spare a struggling
//! backend and the clients queued on it. The first request after the ejection is a probe: if
//! it fails too the upstream is ejected again at once (one probe per ejection length while it
//! stays down, so a recovered upstream is back within that length); any success ends it.
//! The length stays short by default (1 s): with one upstream per route, a longer ejection
//! would only keep refusing a backend that is already back.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether requests are refused now.
    pub fn ejected(&self) -> bool {
        self.now_ms() < self.until_ms.load(Ordering::Acquire)
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
}
