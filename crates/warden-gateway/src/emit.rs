//! Event emission off the request path: a bounded in-memory queue drained by a publisher task,
//! optionally through a durable spool.
//!
//! Without a spool (embedded bus), the publisher sends queued events straight to the bus.
//! With a spool (Kafka), every event is first appended to the spool (write-ahead), then sent
//! from the spool in order with many sends in flight; the spool's cursor advances as the bus
//! acknowledges. A Kafka outage therefore only makes the spool grow — the request path never
//! waits — and the backlog is sent in order when the broker is back, or after a restart.
//! Crash bound: a `kill -9` loses the events still in the in-memory queue (at most
//! `gateway.event_queue`, normally a few milliseconds' worth); a machine crash also loses what
//! was appended since the last fsync (`gateway.spool.fsync_interval_ms`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use warden_bus::Producer;
use warden_bus::spool::Spool;
use warden_event::{EventFormat, RequestEvent, encode_event};

/// Counters of the event path.
#[derive(Debug, Default)]
pub struct EmitStats {
    /// Events handed to the queue.
    pub emitted: AtomicU64,
    /// Events written to the spool.
    pub spooled: AtomicU64,
    /// Events acknowledged by the bus.
    pub published: AtomicU64,
    /// Events lost because the queue was full or closed, or refused by a full spool (must
    /// stay 0).
    pub dropped: AtomicU64,
    /// Failed publish attempts (each is retried).
    pub failed_attempts: AtomicU64,
    /// Bytes in the spool.
    pub spool_bytes: AtomicU64,
    /// Events in the spool not yet acknowledged.
    pub spool_pending: AtomicU64,
    /// Age of the oldest unacknowledged spooled event, milliseconds.
    pub oldest_unsent_ms: AtomicU64,
    /// Spool I/O errors (events then go straight to the bus).
    pub spool_errors: AtomicU64,
    /// Decisions applied from the decisions topic (after start-up).
    pub decisions_applied: AtomicU64,
    /// Time from a decision being made to this gateway enforcing it, for the last decision
    /// applied, milliseconds (clock skew between hosts adds to it).
    pub decision_lag_ms_last: AtomicU64,
    /// Largest such time seen, milliseconds.
    pub decision_lag_ms_max: AtomicU64,
    /// Requests by route, method class, status, outcome and reason; latency histograms.
    pub requests: crate::metrics::RequestMetrics,
}

impl EmitStats {
    /// Record that a decision made at `decided_at_ns` is now enforced.
    pub fn decision_applied(&self, decided_at_ns: i64) {
        let lag_ns = (warden_event::now_ns() - decided_at_ns).max(0) as u64;
        let lag = lag_ns / 1_000_000;
        self.decisions_applied.fetch_add(1, Ordering::Relaxed);
        self.decision_lag_ms_last.store(lag, Ordering::Relaxed);
        self.decision_lag_ms_max.fetch_max(lag, Ordering::Relaxed);
        self.requests
            .decision_propagation
            .observe(lag_ns as f64 / 1e9);
    }
}

/// Hands events to the publisher; cheap to clone.
#[derive(Clone)]
pub struct Emitter {
    tx: mpsc::Sender<RequestEvent>,
    seq: Arc<AtomicU64>,
    stats: Arc<EmitStats>,
}

impl Emitter {
    /// Start the publisher task writing to `topic`, through `spool` when given; it ends once
    /// every `Emitter` is dropped and the queue (and spool) is drained. Sequence numbers
    /// continue after the largest one the spool has seen, so `(gateway, seq)` stays unique
    /// across restarts.
    pub fn start(
        producer: Arc<dyn Producer>,
        topic: EventTopic,
        capacity: usize,
        spool: Option<Spool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(EmitStats::default());
        let first_seq = spool
            .as_ref()
            .and_then(|s| s.max_tag())
            .map_or(0, |t| t + 1);
        let task = match spool {
            Some(spool) => tokio::spawn(publish_spooled(rx, producer, topic, stats.clone(), spool)),
            None => tokio::spawn(publish(rx, producer, topic, stats.clone())),
        };
        (
            Self {
                tx,
                seq: Arc::new(AtomicU64::new(first_seq)),
                stats,
            },
            task,
        )
    }

    /// Number the event and queue it. Never waits: a full queue counts a drop.
    pub fn emit(&self, mut event: RequestEvent) {
        event.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        self.stats.requests.observe(&event);
        if self.tx.try_send(event).is_err() {
            let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(dropped, "Event queue full; events dropped.");
            }
        }
    }

    pub fn stats(&self) -> &Arc<EmitStats> {
        &self.stats
    }
}

/// The topic events are published to, and their encoding (`bus.topics.events`,
/// `bus.event_format`).
#[derive(Debug, Clone)]
pub struct EventTopic {
    pub name: String,
    pub format: EventFormat,
}

/// Events in flight to the bus at once.
const IN_FLIGHT: usize = 512;
/// After a partial batch the publisher waits this long before taking the next one, so that
/// under load events gather in the queue instead of each request waking the publisher (a
/// cross-thread wake-up, often a futex call, per request). Adds at most this much to an event's
/// delivery time; never blocks the request path.
const PACE: Duration = Duration::from_millis(1);
/// Spooled events in flight at once (librdkafka queues them while the broker is away).
const SPOOL_IN_FLIGHT: usize = 4096;

/// Send queued events with a continuous window of up to [`IN_FLIGHT`] sends: a new event
/// is sent as soon as any send is acknowledged, never after a whole batch (waiting for the
/// slowest acknowledgement of each batch of 512 capped a Kafka producer at a fraction of what
/// librdkafka sustains with the same settings).
async fn publish(
    mut rx: mpsc::Receiver<RequestEvent>,
    producer: Arc<dyn Producer>,
    topic: EventTopic,
    stats: Arc<EmitStats>,
) {
    let (producer_ref, stats_ref, name, format) =
        (&*producer, &*stats, topic.name.as_str(), topic.format);
    let send = |event: RequestEvent| async move {
        let payload = encode_event(&event, format);
        send_until_acked(
            producer_ref,
            name,
            event.key().as_bytes(),
            &payload,
            stats_ref,
        )
        .await;
    };
    let mut in_flight = FuturesUnordered::new();
    let mut batch = Vec::with_capacity(IN_FLIGHT);
    let mut open = true;
    // After a partial take, wait `PACE` before the next (acknowledgements are still taken).
    let pace = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(pace);
    let mut pacing = false;
    loop {
        let room = IN_FLIGHT - in_flight.len();
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {
                while let Some(Some(())) = futures::FutureExt::now_or_never(in_flight.next()) {}
            }
            () = &mut pace, if pacing => pacing = false,
            n = rx.recv_many(&mut batch, room), if open && room > 0 && !pacing => {
                if n == 0 {
                    open = false;
                    continue;
                }
                in_flight.extend(batch.drain(..).map(send));
                if n < room {
                    pace.as_mut().reset(tokio::time::Instant::now() + PACE);
                    pacing = true;
                }
            }
            else => break,
        }
    }
    if let Err(e) = producer.flush(Duration::from_secs(10)).await {
        warn!(error = %e, "Flushing events at shutdown failed.");
    }
    debug!("Event publisher stopped.");
}

/// Run blocking spool I/O without stalling other tasks on a multi-threaded runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

async fn publish_spooled(
    mut rx: mpsc::Receiver<RequestEvent>,
    producer: Arc<dyn Producer>,
    topic: EventTopic,
    stats: Arc<EmitStats>,
    mut spool: Spool,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut done: BTreeSet<u64> = BTreeSet::new();
    let mut next_ack = spool.acked();
    let mut closed = false;
    let mut batch: Vec<RequestEvent> = Vec::with_capacity(1024);
    let mut sync = tokio::time::interval(Duration::from_millis(100));
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if in_flight.len() < SPOOL_IN_FLIGHT {
            match blocking(|| spool.read(SPOOL_IN_FLIGHT - in_flight.len())) {
                Ok(records) => {
                    for r in records {
                        let producer = producer.clone();
                        let topic = topic.name.clone();
                        let stats = stats.clone();
                        in_flight.push(async move {
                            send_until_acked(&*producer, &topic, &r.key, &r.payload, &stats).await;
                            r.number
                        });
                    }
                }
                Err(e) => {
                    stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, "Reading the spool failed.");
                    let _ = blocking(|| spool.rewind());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        stats.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        stats
            .spool_pending
            .store(spool.pending(), Ordering::Relaxed);
        stats.oldest_unsent_ms.store(
            spool
                .oldest_pending_age()
                .map_or(0, |d| d.as_millis() as u64),
            Ordering::Relaxed,
        );
        if closed && in_flight.is_empty() && spool.unread() == 0 {
            break;
        }
        tokio::select! {
            n = rx.recv_many(&mut batch, 1024), if !closed => {
                if n == 0 {
                    closed = true;
                    continue;
                }
                append(&mut spool, &mut batch, &producer, &topic, &stats).await;
                if n < 1024 {
                    // Let events gather (see `PACE`); acknowledgements wait in `in_flight`.
                    tokio::time::sleep(PACE).await;
                }
            }
            Some(number) = in_flight.next(), if !in_flight.is_empty() => {
                done.insert(number);
                // Take every other completion that is ready, then persist the cursor once.
                while let Some(Some(n)) = futures::FutureExt::now_or_never(in_flight.next()) {
                    done.insert(n);
                }
                let before = next_ack;
                while done.remove(&next_ack) {
                    next_ack += 1;
                }
                if next_ack > before && let Err(e) = blocking(|| spool.ack(next_ack)) {
                    stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, "Persisting the spool cursor failed.");
                }
            }
            _ = sync.tick() => {
                if let Err(e) = blocking(|| spool.sync()) {
                    stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, "Syncing the spool failed.");
                }
            }
        }
    }
    if let Err(e) = producer.flush(Duration::from_secs(10)).await {
        warn!(error = %e, "Flushing events at shutdown failed.");
    }
    debug!("Event publisher stopped.");
}

/// Append queued events to the spool; if the spool cannot be written, send them directly so
/// nothing is lost to a disk problem while the bus works.
async fn append(
    spool: &mut Spool,
    batch: &mut Vec<RequestEvent>,
    producer: &Arc<dyn Producer>,
    topic: &EventTopic,
    stats: &EmitStats,
) {
    let encoded: Vec<(Vec<u8>, Vec<u8>, u64)> = batch
        .drain(..)
        .map(|e| {
            let payload = encode_event(&e, topic.format);
            (e.key().as_bytes().to_vec(), payload, e.seq)
        })
        .collect();
    let n = encoded.len() as u64;
    let dropped_before = spool.stats().dropped;
    let appended = blocking(|| {
        spool.append(
            encoded
                .iter()
                .map(|(k, p, s)| (k.as_slice(), p.as_slice(), *s)),
        )
    });
    match appended {
        Ok(accepted) => {
            stats.spooled.fetch_add(accepted as u64, Ordering::Relaxed);
            let lost = spool.stats().dropped - dropped_before;
            if lost > 0 {
                let total = stats.dropped.fetch_add(lost, Ordering::Relaxed) + lost;
                warn!(
                    lost,
                    total, "Spool full: events dropped by the overflow policy."
                );
            }
        }
        Err(e) => {
            stats.spool_errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, events = n, "Writing the spool failed; sending directly.");
            for (key, payload, _) in encoded {
                send_until_acked(&**producer, &topic.name, &key, &payload, stats).await;
            }
        }
    }
}

/// Publish one event, retrying with back-off until the bus acknowledges it.
async fn send_until_acked(
    producer: &dyn Producer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    stats: &EmitStats,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match producer.send(topic, key, payload).await {
            Ok(()) => {
                stats.published.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                let n = stats.failed_attempts.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(error = %e, failed_attempts = n, "Publishing an event failed; retrying.");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests;
