//! Live counters of a running fleet, and the report they add up to.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// A device behaving normally.
    Normal,
    /// The flooding device (in either phase).
    Flooder,
}

/// Live counters of a fleet run, shared (`Arc`) between [`run_fleet`](crate::run_fleet) and
/// whoever wants to show progress: everything is atomic, [`FleetStats::snapshot`] reads a
/// consistent-enough [`FleetReport`] at any time.
#[derive(Debug)]
pub struct FleetStats {
    started: OnceLock<Instant>,
    flood_started: OnceLock<Instant>,
    normal: StatusCounts,
    flooder: StatusCounts,
    normal_errors: AtomicU64,
    flooder_errors: AtomicU64,
    flood_sent: AtomicU64,
    flood_ok: AtomicU64,
    /// Nanoseconds from flood start to the first 403, `u64::MAX` while none.
    first_refused_ns: AtomicU64,
}

impl Default for FleetStats {
    fn default() -> Self {
        Self {
            started: OnceLock::new(),
            flood_started: OnceLock::new(),
            normal: StatusCounts::new(),
            flooder: StatusCounts::new(),
            normal_errors: AtomicU64::new(0),
            flooder_errors: AtomicU64::new(0),
            flood_sent: AtomicU64::new(0),
            flood_ok: AtomicU64::new(0),
            first_refused_ns: AtomicU64::new(u64::MAX),
        }
    }
}

/// Responses by HTTP status (100 to 999).
#[derive(Debug)]
struct StatusCounts(Box<[AtomicU64]>);

impl StatusCounts {
    fn new() -> Self {
        Self((0..1000).map(|_| AtomicU64::new(0)).collect())
    }

    fn add(&self, status: u16) {
        if let Some(c) = self.0.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> BTreeMap<u16, u64> {
        (0u16..)
            .zip(self.0.iter())
            .map(|(s, c)| (s, c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

impl FleetStats {
    /// Fresh counters (wrap them in an `Arc` to share them).
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn mark_started(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// Returns the flood start (the first call sets it).
    pub(crate) fn mark_flood_started(&self) -> Instant {
        *self.flood_started.get_or_init(Instant::now)
    }

    pub(crate) fn flood_sent(&self) {
        self.flood_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Count the outcome of one request: its status, or `None` when no response came;
    /// `in_flood`: sent by the flooder after the flood started.
    pub(crate) fn record(&self, sender: Sender, in_flood: bool, status: Option<u16>) {
        let (counts, errors) = match sender {
            Sender::Normal => (&self.normal, &self.normal_errors),
            Sender::Flooder => (&self.flooder, &self.flooder_errors),
        };
        let Some(status) = status else {
            errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        counts.add(status);
        if !in_flood {
            return;
        }
        if (200..300).contains(&status) {
            self.flood_ok.fetch_add(1, Ordering::Relaxed);
        } else if status == 403
            && let Some(start) = self.flood_started.get()
        {
            let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.first_refused_ns.fetch_min(ns, Ordering::Relaxed);
        }
    }

    /// The counters now, as one line of text (see [`FleetReport`]'s `Display`).
    pub fn summary(&self) -> String {
        self.snapshot().to_string()
    }

    /// The counters now.
    pub fn snapshot(&self) -> FleetReport {
        let first = self.first_refused_ns.load(Ordering::Relaxed);
        FleetReport {
            elapsed: self.started.get().map_or(Duration::ZERO, Instant::elapsed),
            normal: self.normal.snapshot(),
            flooder: self.flooder.snapshot(),
            normal_errors: self.normal_errors.load(Ordering::Relaxed),
            flooder_errors: self.flooder_errors.load(Ordering::Relaxed),
            flood_started: self.flood_started.get().is_some(),
            flood_sent: self.flood_sent.load(Ordering::Relaxed),
            flood_ok: self.flood_ok.load(Ordering::Relaxed),
            first_refused_at: (first != u64::MAX).then(|| Duration::from_nanos(first)),
        }
    }
}

/// What a fleet run saw (or has seen so far, from [`FleetStats::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetReport {
    /// Time since the fleet started.
    pub elapsed: Duration,
    /// Responses to normal devices, by status.
    pub normal: BTreeMap<u16, u64>,
    /// Responses to the flooding device (before and during the flood), by status.
    pub flooder: BTreeMap<u16, u64>,
    /// Normal devices' requests that got no response (connect errors, timeouts…).
    pub normal_errors: u64,
    /// The flooder's requests that got no response.
    pub flooder_errors: u64,
    /// Whether the flood has started.
    pub flood_started: bool,
    /// Requests the flooder sent since the flood started.
    pub flood_sent: u64,
    /// Of those, the ones answered 2xx (what got through before the gateway cut it off).
    pub flood_ok: u64,
    /// Time from flood start to the flooder's first 403 (quarantined), if any.
    pub first_refused_at: Option<Duration>,
}

impl FleetReport {
    /// Responses to normal devices.
    pub fn normal_total(&self) -> u64 {
        self.normal.values().sum()
    }

    /// Responses to normal devices with a 2xx status.
    pub fn normal_ok(&self) -> u64 {
        sum_2xx(&self.normal)
    }

    /// Responses to the flooder.
    pub fn flooder_total(&self) -> u64 {
        self.flooder.values().sum()
    }
}

fn sum_2xx(counts: &BTreeMap<u16, u64>) -> u64 {
    counts.range(200..300).map(|(_, n)| n).sum()
}

impl fmt::Display for FleetReport {
    /// One line, e.g. for progress output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses = |m: &BTreeMap<u16, u64>| {
            m.iter()
                .map(|(s, n)| format!("{s}×{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        write!(
            f,
            "{:.1}s normal: {}/{} ok [{}] errors {}; flooder: [{}] errors {}",
            self.elapsed.as_secs_f64(),
            self.normal_ok(),
            self.normal_total(),
            statuses(&self.normal),
            self.normal_errors,
            statuses(&self.flooder),
            self.flooder_errors,
        )?;
        if self.flood_started {
            write!(
                f,
                "; flood: sent {}, 2xx {}",
                self.flood_sent, self.flood_ok
            )?;
            if let Some(at) = self.first_refused_at {
                write!(f, ", refused after {:.2}s", at.as_secs_f64())?;
            }
        }
        Ok(())
    }
}
