//! The processor loop: bus → engine → bus, with commits after acknowledgements, and hot
//! reload of the pipeline file.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tracing::{Instrument, debug, info, info_span, warn};
use warden_bus::{Bus, BusError, Consumer, Position, Producer};
use warden_config::{ConfigErrors, PipelineConfig, TopicsConfig};
use warden_event::{Decision, RequestEvent};

use crate::{Engine, EngineError, Output};

/// Errors that stop a processor.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
}

/// The pipeline a processor runs and how its reloads went (shown by the dashboard).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PipelineStatus {
    /// Name of the running pipeline.
    pub name: String,
    /// File it was loaded from (hot reload watches it), if any.
    pub path: Option<String>,
    /// When the running pipeline was loaded, nanoseconds since the Unix epoch.
    pub loaded_at: i64,
    /// Successful reloads.
    pub reloads: u64,
    /// What the last successful reload kept and reset.
    pub last_reload: Option<String>,
    /// The last refused change, if it is still the file's content.
    pub last_failure: Option<ReloadFailure>,
}

/// A pipeline change that was refused (the previous pipeline keeps running).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadFailure {
    /// When, nanoseconds since the Unix epoch.
    pub at: i64,
    /// Every problem, as `file: key: reason`.
    pub problems: Vec<String>,
}

/// Counters of a running processor (exported as `warden_processor_*`).
#[derive(Debug, Default)]
pub struct ProcessorStats {
    pub events: AtomicU64,
    pub undecodable: AtomicU64,
    /// Events older than the watermark minus the allowed lateness.
    pub late_events: AtomicU64,
    pub batches: AtomicU64,
    pub alerts: AtomicU64,
    pub decisions: AtomicU64,
    /// Batches whose offsets were committed.
    pub commits: AtomicU64,
    /// Pipeline reloads applied.
    pub reloads: AtomicU64,
    /// Pipeline changes refused (invalid).
    pub reload_failures: AtomicU64,
    /// Approximate bytes of engine state (windows and detectors), updated every batch.
    pub state_bytes: AtomicU64,
    pub pipeline: Mutex<PipelineStatus>,
}

impl ProcessorStats {
    pub fn pipeline_status(&self) -> PipelineStatus {
        self.pipeline.lock().clone()
    }
}

/// A processor running one pipeline.
pub struct Processor {
    pipeline: PipelineConfig,
    topics: TopicsConfig,
    engine: Engine,
    stats: Arc<ProcessorStats>,
    reload: Option<Reload>,
}

/// The pipeline file being watched.
struct Reload {
    path: PathBuf,
    every: Duration,
    /// Content last seen (applied or refused).
    seen: Option<String>,
}

impl Processor {
    /// A processor for a validated pipeline; fails when its SQL features do not compile.
    pub fn new(pipeline: PipelineConfig, topics: TopicsConfig) -> Result<Self, ConfigErrors> {
        let stats = Arc::new(ProcessorStats::default());
        *stats.pipeline.lock() = PipelineStatus {
            name: pipeline.name.clone(),
            loaded_at: warden_event::now_ns(),
            ..PipelineStatus::default()
        };
        Ok(Self {
            engine: Engine::new(&pipeline)?,
            pipeline,
            topics,
            stats,
            reload: None,
        })
    }

    /// Watch `path` (the file the pipeline came from) and swap in valid changes, checking
    /// every `every`.
    pub fn with_reload(mut self, path: PathBuf, every: Duration) -> Self {
        self.stats.pipeline.lock().path = Some(path.display().to_string());
        self.reload = Some(Reload {
            seen: std::fs::read_to_string(&path).ok(),
            path,
            every,
        });
        self
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
        let every = self
            .reload
            .as_ref()
            .map_or(Duration::from_secs(3600), |r| r.every);
        let mut reload_tick = tokio::time::interval(every);
        reload_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let wait = Duration::from_millis(self.pipeline.source.batch_max_wait_ms.max(1));
            let polled = tokio::select! {
                _ = &mut shutdown => break,
                _ = reload_tick.tick(), if self.reload.is_some() => {
                    self.check_reload();
                    continue;
                }
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

    /// Reload the pipeline file if it changed: a valid change is swapped in (state of
    /// unchanged detectors kept), an invalid one is refused and reported.
    fn check_reload(&mut self) {
        let Some(r) = &mut self.reload else { return };
        let text = match std::fs::read_to_string(&r.path) {
            Ok(t) => t,
            Err(e) => {
                debug!(path = %r.path.display(), error = %e, "Pipeline file unreadable; keeping the running pipeline.");
                return;
            }
        };
        if r.seen.as_deref() == Some(text.as_str()) {
            return;
        }
        r.seen = Some(text.clone());
        let path = r.path.clone();
        let result = crate::parse_pipeline(&text)
            .map_err(|mut e| {
                for x in &mut e.0 {
                    x.file.get_or_insert_with(|| path.clone());
                }
                e
            })
            .and_then(|p| {
                let report = self.engine.reconfigure(&p)?;
                Ok((p, report))
            });
        match result {
            Ok((p, report)) => {
                if p.source != self.pipeline.source {
                    warn!(path = %path.display(), "Pipeline `source` changes apply after a restart.");
                }
                info!(path = %path.display(), pipeline = %p.name, %report, "Pipeline reloaded.");
                self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                let mut status = self.stats.pipeline.lock();
                status.name = p.name.clone();
                status.loaded_at = warden_event::now_ns();
                status.reloads += 1;
                status.last_reload = Some(report.to_string());
                status.last_failure = None;
                let source = self.pipeline.source.clone();
                self.pipeline = p;
                self.pipeline.source = source;
            }
            Err(errs) => {
                let problems: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
                warn!(path = %path.display(), problems = %problems.join("; "), "Pipeline change refused; the previous pipeline keeps running.");
                self.stats.reload_failures.fetch_add(1, Ordering::Relaxed);
                self.stats.pipeline.lock().last_failure = Some(ReloadFailure {
                    at: warden_event::now_ns(),
                    problems,
                });
            }
        }
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
        let late_before = self.engine.stats().late_events;
        let outputs = self.engine.process(&record_batch, warden_event::now_ns())?;
        self.stats.late_events.fetch_add(
            self.engine.stats().late_events - late_before,
            Ordering::Relaxed,
        );
        self.stats
            .events
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        if self.stats.batches.load(Ordering::Relaxed) % 64 == 1 {
            self.stats
                .state_bytes
                .store(self.engine.state_bytes() as u64, Ordering::Relaxed);
        }
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
            info!(subject = %d.subject, action = ?d.action, detector = %d.detector, score = d.score, "Decision published.");
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
