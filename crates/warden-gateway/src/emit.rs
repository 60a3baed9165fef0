//! Event emission off the request path: a bounded queue drained by a publisher task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use warden_bus::Producer;
use warden_event::RequestEvent;

/// Counters of the event path.
#[derive(Debug, Default)]
pub struct EmitStats {
    /// Events handed to the queue.
    pub emitted: AtomicU64,
    /// Events acknowledged by the bus.
    pub published: AtomicU64,
    /// Events lost because the queue was full or closed (must stay 0).
    pub dropped: AtomicU64,
    /// Failed publish attempts (each is retried).
    pub failed_attempts: AtomicU64,
}

/// Hands events to the publisher; cheap to clone.
#[derive(Clone)]
pub struct Emitter {
    tx: mpsc::Sender<RequestEvent>,
    seq: Arc<AtomicU64>,
    stats: Arc<EmitStats>,
}

impl Emitter {
    /// Start the publisher task writing to `topic`; it ends once every `Emitter` is dropped
    /// and the queue is drained.
    pub fn start(
        producer: Arc<dyn Producer>,
        topic: String,
        capacity: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(EmitStats::default());
        let task = tokio::spawn(publish(rx, producer, topic, stats.clone()));
        (
            Self {
                tx,
                seq: Arc::new(AtomicU64::new(0)),
                stats,
            },
            task,
        )
    }

    /// Number the event and queue it. Never waits: a full queue counts a drop.
    pub fn emit(&self, mut event: RequestEvent) {
        event.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
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

/// Events in flight to the bus at once.
const IN_FLIGHT: usize = 512;

async fn publish(
    mut rx: mpsc::Receiver<RequestEvent>,
    producer: Arc<dyn Producer>,
    topic: String,
    stats: Arc<EmitStats>,
) {
    let mut batch = Vec::with_capacity(IN_FLIGHT);
    while rx.recv_many(&mut batch, IN_FLIGHT).await > 0 {
        let sends = futures::stream::iter(batch.drain(..))
            .map(|event| send_until_acked(&*producer, &topic, event, &stats))
            .buffered(IN_FLIGHT);
        sends.collect::<()>().await;
    }
    if let Err(e) = producer.flush(Duration::from_secs(10)).await {
        warn!(error = %e, "Flushing events at shutdown failed.");
    }
    debug!("Event publisher stopped.");
}

/// Publish one event, retrying with back-off until the bus acknowledges it.
async fn send_until_acked(
    producer: &dyn Producer,
    topic: &str,
    event: RequestEvent,
    stats: &EmitStats,
) {
    let payload = warden_event::encode(&event);
    let key = event.key().as_bytes().to_vec();
    let mut backoff = Duration::from_millis(50);
    loop {
        match producer.send(topic, &key, &payload).await {
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
