//! The processor loop: bus → engine → bus, with commits after acknowledgements, and hot
//! reload of the pipeline file.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tracing::{Instrument, debug, error, info, info_span, warn};
use warden_bus::{Bus, BusError, Consumer, Position, Producer};
use warden_config::{ConfigErrors, PipelineConfig, TopicsConfig};
use warden_event::{Decision, RequestBatchBuilder, RequestEventRef};

use crate::checkpoint::{CheckpointStore, EventKeys, KeyOwners, PartitionCheckpoint};
use crate::dedup::{Dedup, DedupConfig, PartitionDedup, Seen};
use crate::{Engine, EngineError, Output};

/// How often a durable processor checkpoints its partitions and commits their offsets, by
/// default.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// How long reading the checkpoint topic on an assignment may take.
const CHECKPOINT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often consumer lag and throughput are measured.
const LAG_INTERVAL: Duration = Duration::from_secs(2);
/// How long a newly assigned partition with records holds the watermark back before its
/// first record (after that it counts as idle, and its records may arrive late).
const FIRST_RECORD_WAIT: Duration = Duration::from_secs(5);
/// Attempts of a commit (or a checkpoint write) before it is left for the next round.
const COMMIT_ATTEMPTS: u32 = 10;

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
    /// Event time each detector needs before it judges a key (longest first).
    pub warmup: Vec<crate::DetectorWarmup>,
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
    /// Events skipped because an event with the same id was processed already (replays).
    pub duplicates: AtomicU64,
    /// Records skipped because their offset is already in the state (redelivered after a
    /// restart or a rebalance, below the checkpoint's offset).
    pub redelivered: AtomicU64,
    /// Event ids the dedup forgot early because a partition held too many.
    pub dedup_evicted: AtomicU64,
    /// Partition checkpoints written (and acknowledged).
    pub checkpoints: AtomicU64,
    /// Bytes of checkpoint records written.
    pub checkpoint_bytes: AtomicU64,
    /// Checkpoint writes or commits that failed (retried at the next round).
    pub checkpoint_failures: AtomicU64,
    /// Partitions whose state was restored from a checkpoint.
    pub restores: AtomicU64,
    /// Partitions of the events topic assigned to this processor.
    pub assigned_partitions: AtomicU64,
    /// Partitions with processed events whose offsets are not committed yet (0: everything
    /// processed is committed, and checkpointed when checkpointing).
    pub uncommitted_partitions: AtomicU64,
    /// Events processed per second over the last measurement (every 2 s).
    pub events_per_second: AtomicU64,
    /// Consumer lag (records not yet processed) summed over the assigned partitions.
    pub lag_total: AtomicU64,
    /// When the bus last answered a request of this processor (the decisions read at start,
    /// then the end offsets measured with the lag, every 2 s), nanoseconds since the Unix
    /// epoch; 0 before it first did. Readiness needs it recent.
    pub bus_reached_at: AtomicU64,
    /// Consumer lag per assigned partition, at the last measurement.
    pub lag: Mutex<BTreeMap<i32, u64>>,
    pub pipeline: Mutex<PipelineStatus>,
    /// The ML detectors' score histograms (replaced when the pipeline is reloaded).
    pub model_scores: Mutex<Vec<crate::ml::ModelScores>>,
    /// Batch duration and event-to-decision latency histograms, firings by detector.
    pub histograms: ProcessorHistograms,
    /// Detector scores over time of the subjects fired on or looked at (the console's charts).
    pub scores: Arc<crate::ScoreBoard>,
    /// When [`Processor::run`] started, nanoseconds since the Unix epoch (0 before).
    pub started_at: AtomicU64,
}

/// Label of `warden_processor_detector_firings_total`: the detector's name from the pipeline
/// (a closed set) and the action its firing led to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct FiringLabels {
    pub detector: String,
    /// `alert`, `throttle` or `quarantine`.
    pub action: &'static str,
}

/// The processor's histograms and labelled counters on `prometheus-client` (clones share
/// their series).
#[derive(Clone, Debug)]
pub struct ProcessorHistograms {
    /// Time to run one batch through the engine, seconds.
    pub batch_duration: prometheus_client::metrics::histogram::Histogram,
    /// From the event time of the window end a detector fired on to its decision being
    /// acknowledged by the bus, seconds (the processor's share of event-to-enforcement).
    pub event_to_decision: prometheus_client::metrics::histogram::Histogram,
    /// Alerts by detector and action.
    pub firings: prometheus_client::metrics::family::Family<
        FiringLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl Default for ProcessorHistograms {
    fn default() -> Self {
        use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
        Self {
            // 10 µs … ~0.3 s.
            batch_duration: Histogram::new(exponential_buckets(0.00001, 2.0, 16)),
            // 1 ms … ~33 s.
            event_to_decision: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            firings: Default::default(),
        }
    }
}

impl ProcessorStats {
    pub fn pipeline_status(&self) -> PipelineStatus {
        self.pipeline.lock().clone()
    }

    /// Consumer lag per partition at the last measurement.
    pub fn lag_by_partition(&self) -> BTreeMap<i32, u64> {
        self.lag.lock().clone()
    }
}

/// A processor running one pipeline.
pub struct Processor {
    pipeline: PipelineConfig,
    topics: TopicsConfig,
    engine: Engine,
    stats: Arc<ProcessorStats>,
    reload: Option<Reload>,
    /// Checkpoint to the bus: `None` decides by the bus ([`Bus::durable`]).
    checkpointing: Option<bool>,
    checkpoint_interval: Duration,
    dedup: Dedup,
    owners: KeyOwners,
    /// Partitions of the events topic this processor has state for.
    parts: BTreeMap<i32, PartState>,
    /// Partitions of the events topic assigned to this processor.
    assigned: BTreeSet<i32>,
    /// Assigned partitions with no record read since their assignment, and since when.
    awaiting: BTreeMap<i32, Instant>,
    /// End offsets of the events topic at the last measurement.
    ends: BTreeMap<i32, i64>,
    /// New partitions were assigned: measure the end offsets before the next batch.
    ends_stale: bool,
    checkpoint_seq: u64,
    scratch: String,
    /// Where published decisions are recorded (`[audit]`).
    audit: Option<Arc<warden_event::audit::AuditLog>>,
}

/// What the processor holds of one partition of the events topic.
#[derive(Debug, Clone, Copy)]
struct PartState {
    /// The events below this offset are in the engine's state.
    next: i64,
    /// Whether it is assigned to this processor now.
    owned: bool,
    /// (Re)assigned and not read since: its first record tells whether another processor
    /// moved it on meanwhile.
    fresh: bool,
    /// Events were added since the last checkpoint and commit.
    dirty: bool,
    /// Newest event time read from it (its own watermark).
    newest: Option<i64>,
}

/// The pipeline file being watched.
struct Reload {
    path: PathBuf,
    every: Duration,
    /// Content last seen (applied or refused).
    seen: Option<String>,
    /// A new content read once: applied (or refused) when the next check reads it again, so
    /// a file caught half-written by an editor that does not replace files atomically is
    /// never judged.
    pending: Option<String>,
}

impl Processor {
    /// A processor for a validated pipeline; fails when its SQL features do not compile.
    pub fn new(pipeline: PipelineConfig, topics: TopicsConfig) -> Result<Self, ConfigErrors> {
        let stats = Arc::new(ProcessorStats::default());
        *stats.pipeline.lock() = PipelineStatus {
            name: pipeline.name.clone(),
            loaded_at: warden_event::now_ns(),
            warmup: crate::warmups(&pipeline),
            ..PipelineStatus::default()
        };
        let mut engine = Engine::new(&pipeline)?;
        engine.set_score_board(stats.scores.clone());
        *stats.model_scores.lock() = engine.model_scores();
        Ok(Self {
            engine,
            dedup: Dedup::new(DedupConfig::for_pipeline(&pipeline)),
            owners: KeyOwners::new(&pipeline),
            pipeline,
            topics,
            stats,
            reload: None,
            checkpointing: None,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            parts: BTreeMap::new(),
            assigned: BTreeSet::new(),
            awaiting: BTreeMap::new(),
            ends: BTreeMap::new(),
            ends_stale: false,
            checkpoint_seq: 0,
            scratch: String::new(),
            audit: None,
        })
    }

    /// Checkpoint partition state to the bus (on) or not (off), instead of deciding by the
    /// bus (on for Kafka, off for the embedded bus, whose records die with the process).
    pub fn with_checkpoints(mut self, on: bool) -> Self {
        self.checkpointing = Some(on);
        self
    }

    /// Checkpoint and commit every `every` (default [`DEFAULT_CHECKPOINT_INTERVAL`]); zero
    /// does it after every batch. Without checkpoints offsets are committed after every batch.
    pub fn with_checkpoint_interval(mut self, every: Duration) -> Self {
        self.checkpoint_interval = every;
        self
    }

    /// Cap the event ids remembered per partition for deduplication.
    pub fn with_dedup_max_ids(mut self, max_ids: usize) -> Self {
        let mut c = self.dedup.config();
        c.max_ids = max_ids.max(1);
        self.dedup.set_config(c);
        self
    }

    /// Record every decision published in `log` (after the bus acknowledges it).
    pub fn with_audit(mut self, log: Arc<warden_event::audit::AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// The engine (for inspection).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Watch `path` (the file the pipeline came from) and swap in valid changes, checking
    /// every `every`.
    pub fn with_reload(mut self, path: PathBuf, every: Duration) -> Self {
        self.stats.pipeline.lock().path = Some(path.display().to_string());
        self.reload = Some(Reload {
            seen: std::fs::read_to_string(&path).ok(),
            pending: None,
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
        self.stats.started_at.store(
            u64::try_from(warden_event::now_ns()).unwrap_or(0),
            Ordering::Relaxed,
        );
        let checkpointing = self.checkpointing.unwrap_or_else(|| bus.durable());
        let store = CheckpointStore::new(&self.pipeline.source.group, &self.topics.events);
        if checkpointing {
            store.ensure(&*bus).instrument(span.clone()).await?;
        }
        let engine = &mut self.engine;
        let mut decisions = warden_bus::read_to_end(
            &*bus,
            &self.topics.decisions,
            Duration::from_secs(30),
            |m| apply(engine, &m.payload),
        )
        .instrument(span.clone())
        .await?;
        self.stats.bus_reached_at.store(
            u64::try_from(warden_event::now_ns()).unwrap_or(0),
            Ordering::Relaxed,
        );
        let mut events = bus
            .group_consumer(&self.pipeline.source.group, &[self.topics.events.as_str()])
            .await?;
        let producer = bus.producer();
        info!(parent: &span, group = %self.pipeline.source.group, checkpointing, "Processor consuming events.");
        let every = self
            .reload
            .as_ref()
            .map_or(Duration::from_secs(3600), |r| r.every);
        let mut reload_tick = tokio::time::interval(every);
        reload_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // ML detectors' model files are checked for a new model this often (hot swap).
        let mut model_tick = tokio::time::interval(Duration::from_secs(5));
        model_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        let mut rate = Rate::new(&self.stats);
        tokio::pin!(shutdown);
        loop {
            let wait = Duration::from_millis(self.pipeline.source.batch_max_wait_ms.max(1));
            let polled = tokio::select! {
                _ = &mut shutdown => break,
                _ = reload_tick.tick(), if self.reload.is_some() => {
                    self.check_reload();
                    continue;
                }
                _ = model_tick.tick(), if self.engine.has_models() => {
                    self.engine.refresh_models();
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
            self.track_assignment(&*events);
            if !msgs.is_empty() {
                self.process(&msgs, &*bus, checkpointing.then_some(&store), &*producer)
                    .instrument(span.clone())
                    .await?;
            } else {
                // Events stopped (after a backlog): score what its full batches deferred.
                self.flush(&*producer).instrument(span.clone()).await?;
            }
            if !checkpointing || last_checkpoint.elapsed() >= self.checkpoint_interval {
                last_checkpoint = Instant::now();
                if checkpointing {
                    // The events about to be committed are never read again: their deferred
                    // provisional scoring is done first. (Without checkpoints, offsets are
                    // committed after every batch and a crash loses the windows anyway.)
                    self.flush(&*producer).instrument(span.clone()).await?;
                }
                self.checkpoint_and_commit(
                    checkpointing.then_some(&store),
                    &*producer,
                    &mut *events,
                )
                .instrument(span.clone())
                .await;
            }
            if rate.due() {
                self.measure_lag(&*bus, &mut rate)
                    .instrument(span.clone())
                    .await;
            }
        }
        // A clean stop leaves nothing to redo: deferred scoring is done, and the last events
        // are checkpointed and committed.
        self.flush(&*producer).instrument(span.clone()).await?;
        self.checkpoint_and_commit(checkpointing.then_some(&store), &*producer, &mut *events)
            .instrument(span.clone())
            .await;
        info!(parent: &span, "Processor stopped.");
        Ok(())
    }

    fn count_uncommitted(&self) {
        let n = self
            .parts
            .values()
            .filter(|st| st.dirty && st.owned)
            .count();
        self.stats
            .uncommitted_partitions
            .store(n as u64, Ordering::Relaxed);
    }

    /// Follow the consumer's assignment: revoked partitions are no longer checkpointed nor
    /// committed, (re)assigned ones are checked against their checkpoint on their first record.
    fn track_assignment(&mut self, consumer: &dyn Consumer) {
        let Some(assigned) = consumer.assignment() else {
            return;
        };
        let assigned: BTreeSet<i32> = assigned
            .into_iter()
            .filter(|(t, _)| *t == self.topics.events)
            .map(|(_, p)| p)
            .collect();
        self.stats
            .assigned_partitions
            .store(assigned.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        for p in assigned.difference(&self.assigned) {
            self.awaiting.insert(*p, now);
            self.ends_stale = true;
        }
        self.awaiting.retain(|p, _| assigned.contains(p));
        self.assigned = assigned.clone();
        for (p, st) in self.parts.iter_mut() {
            let owned = assigned.contains(p);
            if owned && !st.owned {
                st.fresh = true;
                debug!(partition = p, "Partition assigned again.");
            } else if !owned && st.owned {
                debug!(partition = p, "Partition revoked.");
            }
            st.owned = owned;
        }
        self.count_uncommitted();
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
            r.pending = None;
            return;
        }
        if r.pending.as_deref() != Some(text.as_str()) {
            r.pending = Some(text);
            return;
        }
        r.pending = None;
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
                *self.stats.model_scores.lock() = self.engine.model_scores();
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
                status.warmup = crate::warmups(&p);
                let source = self.pipeline.source.clone();
                self.owners.reconfigure(&p);
                let mut dedup = DedupConfig::for_pipeline(&p);
                dedup.max_ids = self.dedup.config().max_ids;
                self.dedup.set_config(dedup);
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

    /// Restore the state of partitions met for the first time, or (re)assigned after another
    /// processor moved them on, from their checkpoints.
    async fn restore(
        &mut self,
        msgs: &[warden_bus::Message],
        bus: &dyn Bus,
        store: Option<&CheckpointStore>,
    ) -> Result<(), StreamError> {
        let mut first: BTreeMap<i32, i64> = BTreeMap::new();
        for m in msgs {
            first.entry(m.partition).or_insert(m.offset);
        }
        let needed: BTreeSet<i32> = first
            .iter()
            .filter(|(p, o)| match self.parts.get(p) {
                None => true,
                Some(st) => st.fresh && **o > st.next,
            })
            .map(|(p, _)| *p)
            .collect();
        let mut restored = BTreeMap::new();
        if let Some(store) = store.filter(|_| !needed.is_empty()) {
            let mut attempt = 0;
            restored = loop {
                attempt += 1;
                match store.read(bus, &needed, CHECKPOINT_READ_TIMEOUT).await {
                    Ok(r) => break r,
                    Err(e) if e.is_retriable() && attempt < 5 => {
                        warn!(error = %e, "Reading checkpoints failed; retrying.");
                        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                    }
                    // Going on without the state would overwrite the checkpoints with less.
                    Err(e) => return Err(e.into()),
                }
            };
        }
        for (p, offset) in first {
            let known = self.parts.get(&p).copied();
            let mut st = known.unwrap_or(PartState {
                next: offset,
                owned: true,
                fresh: false,
                dirty: false,
                newest: None,
            });
            st.owned = true;
            st.fresh = false;
            if let Some(cp) = restored.remove(&p) {
                let next = cp.next_offset;
                self.restore_partition(cp);
                self.stats.restores.fetch_add(1, Ordering::Relaxed);
                if next < offset {
                    warn!(
                        partition = p,
                        checkpoint = next,
                        committed = offset,
                        "The checkpoint is behind the committed offset: the events between are missing from the state."
                    );
                }
                st.next = next.max(offset);
                info!(
                    partition = p,
                    next_offset = st.next,
                    "Partition state restored from its checkpoint."
                );
            } else if needed.contains(&p) {
                if known.is_some() {
                    warn!(
                        partition = p,
                        from = st.next,
                        to = offset,
                        "Another processor moved this partition on and left no checkpoint: keeping the state held."
                    );
                } else if store.is_some() {
                    info!(
                        partition = p,
                        offset, "No checkpoint for this partition: starting with empty state."
                    );
                }
                st.next = offset;
            }
            self.parts.insert(p, st);
        }
        Ok(())
    }

    fn restore_partition(&mut self, cp: PartitionCheckpoint) {
        let p = cp.partition;
        debug!(
            partition = p,
            keys = cp.engine.windows.values().map(|w| w.keys.len()).sum::<usize>(),
            watermark = ?cp.engine.watermark,
            "Restoring a partition checkpoint."
        );
        for (window, ws) in &cp.engine.windows {
            for k in &ws.keys {
                self.owners
                    .set(window, &k.state.name, p, k.state.last_event_ns);
            }
        }
        self.dedup
            .set_partition(p, PartitionDedup::restore(&cp.dedup));
        if let Err(e) = self.engine.restore(cp.engine) {
            warn!(partition = p, error = %e, "Part of a checkpoint could not be restored.");
        }
    }

    /// Provisional scoring deferred under backlog (see [`Engine::flush`]; nothing when none
    /// is), published.
    async fn flush(&mut self, producer: &dyn Producer) -> Result<(), StreamError> {
        let outputs = self.engine.flush(warden_event::now_ns())?;
        for out in &outputs {
            self.publish(producer, out).await;
        }
        Ok(())
    }

    async fn process(
        &mut self,
        msgs: &[warden_bus::Message],
        bus: &dyn Bus,
        store: Option<&CheckpointStore>,
        producer: &dyn Producer,
    ) -> Result<(), StreamError> {
        self.restore(msgs, bus, store).await?;
        if self.ends_stale {
            self.ends_stale = false;
            let _ = self.refresh_ends(bus).await;
        }
        // Payloads are decoded borrowing their strings and appended to the batch's columns
        // directly (no owned event per record).
        let mut batch = RequestBatchBuilder::with_capacity(msgs.len());
        // Oldest event time per partition in this batch (the engine reads the batch in
        // order, partition after partition).
        let mut oldest: BTreeMap<i32, i64> = BTreeMap::new();
        let evicted_before = self.dedup.evicted();
        for m in msgs {
            self.awaiting.remove(&m.partition);
            let Some(st) = self.parts.get_mut(&m.partition) else {
                continue;
            };
            if m.offset < st.next {
                self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            st.next = m.offset + 1;
            st.dirty = true;
            match RequestEventRef::decode(&m.payload) {
                Ok(e) => {
                    st.newest = Some(st.newest.map_or(e.ts, |n| n.max(e.ts)));
                    oldest
                        .entry(m.partition)
                        .and_modify(|o| *o = (*o).min(e.ts))
                        .or_insert(e.ts);
                    if self.dedup.check(m.partition, &e.id, e.ts) == Seen::Duplicate {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    self.owners.record_fields(
                        m.partition,
                        EventKeys {
                            identity: &e.identity,
                            client_ip: &e.client_ip,
                            tenant: &e.tenant,
                            route: &e.route,
                            ts: e.ts,
                        },
                        &mut self.scratch,
                    );
                    batch.push_ref(&e);
                }
                Err(e) => {
                    self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                    debug!(error = %e, partition = m.partition, offset = m.offset, "Skipping an unreadable event.");
                }
            }
        }
        self.stats
            .dedup_evicted
            .fetch_add(self.dedup.evicted() - evicted_before, Ordering::Relaxed);
        self.count_uncommitted();
        if batch.is_empty() {
            return Ok(());
        }
        let events = batch.len();
        let record_batch = batch.finish()?;
        self.engine.set_watermark_cap(self.watermark_cap(&oldest));
        let late_before = self.engine.stats().late_events;
        let started = Instant::now();
        let outputs = self.engine.process(&record_batch, warden_event::now_ns())?;
        self.stats
            .histograms
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        self.stats.late_events.fetch_add(
            self.engine.stats().late_events - late_before,
            Ordering::Relaxed,
        );
        self.stats
            .events
            .fetch_add(events as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        if self.stats.batches.load(Ordering::Relaxed) % 64 == 1 {
            self.stats
                .state_bytes
                .store(self.engine.state_bytes() as u64, Ordering::Relaxed);
        }
        debug!(
            events,
            late = self.engine.stats().late_events - late_before,
            outputs = outputs.len(),
            watermark = ?self.engine.watermark(),
            "Batch processed."
        );
        for out in &outputs {
            self.publish(producer, out).await;
        }
        Ok(())
    }

    /// Checkpoint the partitions with new events (when checkpointing), then commit their
    /// offsets: only now is every decision and alert of those events acknowledged, and their
    /// state written. A failure leaves them for the next round (nothing is lost: at worst the
    /// events since the last commit are read again and skipped or deduplicated).
    async fn checkpoint_and_commit(
        &mut self,
        store: Option<&CheckpointStore>,
        producer: &dyn Producer,
        consumer: &mut dyn Consumer,
    ) {
        let dirty: BTreeSet<i32> = self
            .parts
            .iter()
            .filter(|(_, st)| st.dirty && st.owned)
            .map(|(p, _)| *p)
            .collect();
        if dirty.is_empty() {
            return;
        }
        if let Some(store) = store {
            let owners = &self.owners;
            let snap = self.engine.snapshot(|window, key| {
                owners
                    .owner(window, key)
                    .is_some_and(|p| dirty.contains(&p))
            });
            let now = warden_event::now_ns();
            let cps: Vec<PartitionCheckpoint> = crate::checkpoint::split(snap, &dirty, owners)
                .into_iter()
                .map(|(p, engine)| PartitionCheckpoint {
                    v: 1,
                    group: store.group.clone(),
                    topic: store.events_topic.clone(),
                    partition: p,
                    next_offset: self.parts.get(&p).map_or(0, |st| st.next),
                    written_at: now,
                    engine,
                    dedup: self
                        .dedup
                        .partition(p)
                        .map(PartitionDedup::snapshot)
                        .unwrap_or_default(),
                })
                .collect();
            self.checkpoint_seq = (self.checkpoint_seq + 1).max(u64::try_from(now).unwrap_or(0));
            let mut attempt = 0;
            loop {
                attempt += 1;
                match store.write(producer, &cps, self.checkpoint_seq).await {
                    Ok(bytes) => {
                        self.stats
                            .checkpoints
                            .fetch_add(cps.len() as u64, Ordering::Relaxed);
                        self.stats
                            .checkpoint_bytes
                            .fetch_add(bytes as u64, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if attempt < COMMIT_ATTEMPTS => {
                        warn!(error = %e, "Writing checkpoints failed; retrying.");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => {
                        warn!(error = %e, "Writing checkpoints failed; offsets stay uncommitted until the next round.");
                        self.stats
                            .checkpoint_failures
                            .fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Only partitions still assigned: a revoked one belongs to another member now.
            self.track_assignment(consumer);
            let positions: Vec<Position> = dirty
                .iter()
                .filter_map(|p| self.parts.get(p).map(|st| (p, st)))
                .filter(|(_, st)| st.owned)
                .map(|(p, st)| Position {
                    topic: self.topics.events.clone(),
                    partition: *p,
                    offset: st.next,
                })
                .collect();
            if positions.is_empty() {
                return;
            }
            match consumer.commit(&positions).await {
                Ok(()) => {
                    for pos in &positions {
                        if let Some(st) = self.parts.get_mut(&pos.partition) {
                            st.dirty = false;
                        }
                    }
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.count_uncommitted();
                    return;
                }
                Err(e) if e.is_retriable() && attempt < COMMIT_ATTEMPTS => {
                    warn!(error = %e, "Committing offsets failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    warn!(error = %e, "Committing offsets failed; they stay uncommitted until the next round.");
                    self.stats
                        .checkpoint_failures
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Measure the end offsets of the events topic (for [`Processor::watermark_cap`]).
    /// (Also the lag measurement's source.) Whether they were measured.
    async fn refresh_ends(&mut self, bus: &dyn Bus) -> bool {
        match tokio::time::timeout(Duration::from_secs(5), bus.end_offsets(&self.topics.events))
            .await
        {
            Ok(Ok(ends)) => {
                self.ends = ends;
                self.stats.bus_reached_at.store(
                    u64::try_from(warden_event::now_ns()).unwrap_or(0),
                    Ordering::Relaxed,
                );
                true
            }
            Ok(Err(e)) => {
                debug!(error = %e, "Measuring end offsets failed.");
                false
            }
            Err(_) => {
                debug!("Measuring end offsets timed out.");
                false
            }
        }
    }

    /// How far the engine's watermark may advance while it reads a batch whose oldest event
    /// per partition is `oldest`: the oldest of those, and the newest event time of every
    /// other assigned partition that still has records to read (`i64::MIN`, no advance,
    /// while a partition with records has not delivered any yet, for at most
    /// [`FIRST_RECORD_WAIT`] after its assignment); `None` when nothing holds it back.
    /// Event time is per partition: after a restart or a rebalance one partition's backlog
    /// may be read before another's (in an earlier batch, or earlier in the same batch), and
    /// its newer events must not make the other's older ones late.
    fn watermark_cap(&self, oldest: &BTreeMap<i32, i64>) -> Option<i64> {
        let mut cap: Option<i64> = oldest.values().min().copied();
        for p in &self.assigned {
            if oldest.contains_key(p) {
                continue;
            }
            let end = self.ends.get(p).copied();
            match (self.parts.get(p), self.awaiting.get(p)) {
                (Some(st), None) => {
                    if end.is_none_or(|end| st.next >= end) {
                        continue;
                    }
                    match st.newest {
                        Some(n) => cap = Some(cap.map_or(n, |c| c.min(n))),
                        None => return Some(i64::MIN),
                    }
                }
                (_, since) => {
                    if end == Some(0) {
                        continue;
                    }
                    if since.is_some_and(|at| at.elapsed() < FIRST_RECORD_WAIT) {
                        return Some(i64::MIN);
                    }
                }
            }
        }
        cap
    }

    /// Consumer lag of the assigned partitions and the event rate since the last measurement.
    async fn measure_lag(&mut self, bus: &dyn Bus, rate: &mut Rate) {
        rate.update(&self.stats);
        if !self.refresh_ends(bus).await {
            return;
        }
        let ends = &self.ends;
        let lag: BTreeMap<i32, u64> = self
            .parts
            .iter()
            .filter(|(_, st)| st.owned)
            .filter_map(|(p, st)| {
                ends.get(p)
                    .map(|end| (*p, u64::try_from(end - st.next).unwrap_or(0)))
            })
            .collect();
        self.stats
            .lag_total
            .store(lag.values().sum(), Ordering::Relaxed);
        *self.stats.lag.lock() = lag;
        // Keys the engine has forgotten (idle past every window's expiry) need no owner.
        if let Some(wm) = self.engine.watermark() {
            let keep = self
                .pipeline
                .window
                .iter()
                .map(|w| w.idle_expiry_ms.saturating_add(w.size_ms))
                .max()
                .unwrap_or(0);
            let keep = i64::try_from(keep)
                .unwrap_or(i64::MAX / 2_000_000)
                .saturating_mul(1_000_000);
            self.owners.prune(wm.saturating_sub(keep));
        }
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
            let since_event = warden_event::now_ns()
                .saturating_sub(out.alert.evidence.window_end)
                .max(0);
            self.stats
                .histograms
                .event_to_decision
                .observe(since_event as f64 / 1e9);
            info!(subject = %d.subject, action = ?d.action, detector = %d.detector, score = d.score, "Decision published.");
            if let Some(log) = &self.audit {
                record_decision(log.clone(), d.clone()).await;
            }
        }
        debug!(subject = %out.alert.subject, detector = %out.alert.detector, "Alert published.");
        send_until_acked(
            producer,
            &self.topics.alerts,
            &out.alert.subject.key(),
            &warden_event::encode(&out.alert),
        )
        .await;
        self.stats.alerts.fetch_add(1, Ordering::Relaxed);
        let action = match out.alert.action {
            Some(warden_event::Action::Quarantine) => "quarantine",
            Some(warden_event::Action::Throttle) => "throttle",
            _ => "alert",
        };
        self.stats
            .histograms
            .firings
            .get_or_create(&FiringLabels {
                detector: out.alert.detector.clone(),
                action,
            })
            .inc();
    }
}

/// Events per second between measurements.
struct Rate {
    at: Instant,
    events: u64,
}

impl Rate {
    fn new(stats: &ProcessorStats) -> Self {
        Self {
            at: Instant::now(),
            events: stats.events.load(Ordering::Relaxed),
        }
    }

    fn due(&self) -> bool {
        self.at.elapsed() >= LAG_INTERVAL
    }

    fn update(&mut self, stats: &ProcessorStats) {
        let events = stats.events.load(Ordering::Relaxed);
        let secs = self.at.elapsed().as_secs_f64();
        if secs > 0.0 {
            let per_s = (events.saturating_sub(self.events)) as f64 / secs;
            stats
                .events_per_second
                .store(per_s.round() as u64, Ordering::Relaxed);
        }
        self.at = Instant::now();
        self.events = events;
    }
}

/// Append a published decision to the audit log; a failure is logged (the decision stands).
async fn record_decision(log: Arc<warden_event::audit::AuditLog>, d: Decision) {
    let id = d.id.clone();
    let appended =
        tokio::task::spawn_blocking(move || log.append(warden_event::audit::Kind::Decision, &d))
            .await;
    match appended {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            error!(error = %e, decision_id = %id, "The decision could not be written to the audit log.");
        }
        Err(e) => {
            error!(error = %e, decision_id = %id, "The decision could not be written to the audit log.");
        }
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
