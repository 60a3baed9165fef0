//! The processor loop: bus → engine → bus, with commits after acknowledgements.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{Instrument, debug, info, info_span, warn};
use warden_bus::{Bus, BusError, Consumer, Position, Producer};
use warden_config::{PipelineConfig, TopicsConfig};
use warden_event::{Decision, RequestEvent};

use crate::{Engine, Output};

/// Errors that stop a processor.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Counters of a running processor.
#[derive(Debug, Default)]
pub struct ProcessorStats {
    pub events: AtomicU64,
    pub undecodable: AtomicU64,
    pub batches: AtomicU64,
    pub alerts: AtomicU64,
    pub decisions: AtomicU64,
    /// Batches whose offsets were committed.
    pub commits: AtomicU64,
}

/// A processor running one pipeline.
pub struct Processor {
    pipeline: PipelineConfig,
    topics: TopicsConfig,
    engine: Engine,
    stats: Arc<ProcessorStats>,
}

impl Processor {
    pub fn new(pipeline: PipelineConfig, topics: TopicsConfig) -> Self {
        Self {
            engine: Engine::new(&pipeline),
            pipeline,
            topics,
            stats: Arc::new(ProcessorStats::default()),
        }
    }

    pub fn stats(&self) -> Arc<ProcessorStats> {
        self.stats.clone()
    }

    /// Run until `shutdown` resolves.
    pub async fn run(
        mut self,
        bus: Arc<dyn Bus>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StreamError> {
        let span = info_span!("processor", pipeline = %self.pipeline.name);
        let engine = &mut self.engine;
        let mut decisions = warden_bus::read_to_end(
            &*bus,
            &self.topics.decisions,
            Duration::from_secs(30),
            |m| apply(engine, &m.payload),
        )
        .instrument(span.clone())
        .await?;
        let mut events = bus
            .group_consumer(&self.pipeline.source.group, &[self.topics.events.as_str()])
            .await?;
        let producer = bus.producer();
        info!(parent: &span, group = %self.pipeline.source.group, "Processor consuming events.");
        tokio::pin!(shutdown);
        loop {
            let wait = Duration::from_millis(self.pipeline.source.batch_max_wait_ms.max(1));
            let polled = tokio::select! {
                _ = &mut shutdown => break,
                polled = events.poll(self.pipeline.source.batch_max_events, wait) => polled,
            };
            let msgs = match polled {
                Ok(m) => m,
                Err(e) if e.is_retriable() => {
                    warn!(parent: &span, error = %e, "Polling events failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            // Decisions from other processors, gateways' admins and the dashboard.
            for m in decisions
                .poll(1024, Duration::ZERO)
                .await
                .unwrap_or_default()
            {
                apply(&mut self.engine, &m.payload);
            }
            if msgs.is_empty() {
                continue;
            }
            self.process(&msgs, &*producer, &mut *events)
                .instrument(span.clone())
                .await?;
        }
        info!(parent: &span, "Processor stopped.");
        Ok(())
    }

    async fn process(
        &mut self,
        msgs: &[warden_bus::Message],
        producer: &dyn Producer,
        consumer: &mut dyn Consumer,
    ) -> Result<(), StreamError> {
        let mut positions: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut batch = Vec::with_capacity(msgs.len());
        for m in msgs {
            let p = positions.entry((m.topic.clone(), m.partition)).or_insert(0);
            *p = (*p).max(m.offset + 1);
            match warden_event::decode::<RequestEvent>(&m.payload) {
                Ok(e) => batch.push(e),
                Err(e) => {
                    self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                    debug!(error = %e, partition = m.partition, offset = m.offset, "Skipping an unreadable event.");
                }
            }
        }
        let record_batch = warden_event::to_record_batch(&batch)?;
        let outputs = self.engine.process(&record_batch, warden_event::now_ns())?;
        self.stats
            .events
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        for out in &outputs {
            self.publish(producer, out).await;
        }
        let positions: Vec<Position> = positions
            .into_iter()
            .map(|((topic, partition), offset)| Position {
                topic,
                partition,
                offset,
            })
            .collect();
        // Only now: every decision and alert this batch caused is acknowledged.
        loop {
            match consumer.commit(&positions).await {
                Ok(()) => break,
                Err(e) if e.is_retriable() => {
                    warn!(error = %e, "Committing offsets failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Publish a decision (first: it is what gateways enforce) and its alert, retrying until
    /// the bus acknowledges both.
    async fn publish(&self, producer: &dyn Producer, out: &Output) {
        if let Some(d) = &out.decision {
            send_until_acked(
                producer,
                &self.topics.decisions,
                &d.subject.key(),
                &warden_event::encode(d),
            )
            .await;
            self.stats.decisions.fetch_add(1, Ordering::Relaxed);
            info!(subject = %d.subject, detector = %d.detector, score = d.score, "Quarantine decided.");
        }
        send_until_acked(
            producer,
            &self.topics.alerts,
            &out.alert.subject.key(),
            &warden_event::encode(&out.alert),
        )
        .await;
        self.stats.alerts.fetch_add(1, Ordering::Relaxed);
    }
}

fn apply(engine: &mut Engine, payload: &[u8]) {
    match warden_event::decode::<Decision>(payload) {
        Ok(d) => engine.apply_decision(&d),
        Err(e) => warn!(error = %e, "Ignoring an unreadable decision."),
    }
}

async fn send_until_acked(producer: &dyn Producer, topic: &str, key: &str, payload: &[u8]) {
    let mut backoff = Duration::from_millis(50);
    while let Err(e) = producer.send(topic, key.as_bytes(), payload).await {
        warn!(error = %e, topic, "Publishing failed; retrying.");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
