//! The detection engine: pure computation from event batches to decisions and alerts, with
//! time passed in (no I/O), so it is tested deterministically and reused by backtests.
//!
//! Windows run on event time. Each batch updates the buckets of every window key it touches;
//! every slide that is complete (the watermark — newest event time seen — is past its end plus
//! the allowed lateness) gives each key one sample that detectors score and learn from; and
//! every key touched by the batch is also scored, without learning, on its window as it
//! stands, so a flood fires within a batch or two instead of after the next complete slide
//! (under backlog — full batches — once per `source.provisional_every_ms` instead; see
//! [`Engine::flush`]).
//! Event-level detectors (`novelty`) see each event as it is added.

mod models;
mod rates;
mod reload;
mod scores;
mod snapshot;
mod warmup;

use std::collections::BTreeMap;

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use warden_config::{
    ConfigError, ConfigErrors, DetectorConfig, FeatureConfig, Mode, NoveltyField, PeerGroup,
    PipelineConfig, WindowConfig, WindowKey,
};
use warden_detect::{Detector, EventView, Firing, KeyId, Sample};
use warden_event::{
    ANONYMOUS, Action, Alert, Decision, Evidence, SCHEMA_VERSION, Severity, Subject, SubjectKind,
    ThrottleLimit,
};

use rates::RateMemory;
pub use reload::ReloadReport;
pub use scores::{ScoreBoard, ScoreSeries};
pub use snapshot::{EngineSnapshot, KeySnapshot};
pub use warmup::{DetectorWarmup, warmups};

use crate::columns::{Columns, StrCol};
use crate::feature::{Compiler, WindowPlan, hasher};
use crate::ml::{MlDetector, ModelHandle, Models, RecordingDetector};
use crate::policy::{Policy, Source, Verdict};
use crate::sketch::Sketch;
use crate::window::WindowState;

/// What a batch produced: an alert, and the decision published with it (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub alert: Alert,
    pub decision: Option<Decision>,
}

/// Errors processing a batch.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The batch does not have the event schema.
    #[error("unreadable batch: {0}")]
    Batch(#[from] ArrowError),
    /// A feature expression failed on the batch.
    #[error("evaluating features: {0}")]
    Eval(#[from] DataFusionError),
}

/// Counters of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    /// Events older than the watermark minus the allowed lateness (not counted in windows).
    pub late_events: u64,
    /// Complete samples scored (keys × slides).
    pub samples: u64,
    /// Provisional samples scored (touched keys × provisional scorings).
    pub provisional: u64,
    pub firings: u64,
    pub alerts: u64,
    pub decisions: u64,
}

/// A detector of a window, with what the engine needs to feed it.
struct DetectorRt {
    config: DetectorConfig,
    detector: Box<dyn Detector>,
    /// Feature indices (in the window's plan) of its inputs.
    inputs: Vec<usize>,
    mode: Mode,
    peer: Option<PeerGroup>,
    novelty: Option<NoveltyField>,
    /// The served model of an ML detector (checked for changes by
    /// [`Engine::refresh_models`]).
    model: Option<ModelHandle>,
}

/// A window with its features, state and detectors.
struct WindowRt {
    features: Vec<FeatureConfig>,
    plan: WindowPlan,
    state: WindowState,
    detectors: Vec<DetectorRt>,
    track_peers: bool,
    /// Keys touched since their last provisional scoring (only in provisional windows), and
    /// per id the events since then (saturating; 0 = not listed).
    touched: Vec<KeyId>,
    marked: Vec<u8>,
    /// An earlier window keyed by the same column (`identity_10s` for `identity_1s`): a row's
    /// key is looked up once, in the leader, and found here through `link`.
    leader: Option<usize>,
    /// Leader's key id → this window's id of the same key, as last seen (checked by name
    /// before use, so ids forgotten and reused on either side need no bookkeeping).
    link: Vec<KeyId>,
    /// Keys whose detector scores go to the score board, until this event time (ns).
    watch: std::collections::HashMap<KeyId, i64>,
    /// Per key id: the values its last complete sample read, and that sample's slot (see
    /// [`WindowState::complete_unchanged`]).
    sampled_values: Vec<f64>,
    sampled_at: Vec<i64>,
}

#[derive(Default)]
struct Scratch {
    /// Per window, the id of each row's key when it existed before the batch (see
    /// [`Engine::lookup_known_keys`]); empty for windows the pre-pass skips.
    known: Vec<Vec<Option<KeyId>>>,
    ids: Vec<KeyId>,
    values: Vec<f64>,
    features: Vec<f64>,
    scalars: Vec<f64>,
    sketches: Vec<Sketch>,
    key: String,
    /// Scores of watched keys in the current round: detector index, key, window end, score.
    scored: Vec<(usize, KeyId, i64, f64)>,
}

pub struct Engine {
    config: PipelineConfig,
    windows: Vec<WindowRt>,
    policy: Policy,
    watermark: Option<i64>,
    /// The watermark does not advance past this (see [`Engine::set_watermark_cap`]).
    watermark_cap: Option<i64>,
    /// Newest event time seen (the watermark without the cap).
    newest: Option<i64>,
    /// Newest event time and the caller's clock at the last provisional scoring (see
    /// [`Engine::provisional_due`]).
    provisional_at: Option<(i64, i64)>,
    stats: EngineStats,
    scratch: Scratch,
    /// Normal rates for relative throttles (`decision.throttle_baseline`).
    rates: Option<RateMemory>,
    /// Where watched subjects' scores go (see [`ScoreBoard`]).
    scores: Option<std::sync::Arc<ScoreBoard>>,
}

/// A detector fired for a key.
struct Fired {
    window: usize,
    detector: usize,
    key: String,
    /// The key's peer group (id, name), for detectors that compare peers.
    peer: Option<(u32, String)>,
    firing: Firing,
    features: BTreeMap<String, f64>,
    window_end: i64,
}

fn compile_errors(pipeline: &PipelineConfig) -> Result<Vec<WindowPlan>, ConfigErrors> {
    let compiler = Compiler::new()
        .map_err(|e| ConfigError::new("", format!("internal: cannot start DataFusion: {e}")))?;
    let mut plans: Vec<WindowPlan> = pipeline
        .window
        .iter()
        .map(|_| WindowPlan::default())
        .collect();
    let mut errs = Vec::new();
    for (i, f) in pipeline.feature.iter().enumerate() {
        let Some(wi) = pipeline.window.iter().position(|w| w.name == f.window()) else {
            errs.push(ConfigError::new(
                format!("feature[{i}].window"),
                format!("unknown window `{}`", f.window()),
            ));
            continue;
        };
        if let Err(e) = plans[wi].add(&compiler, f) {
            errs.push(ConfigError::new(
                format!("feature[{i}].{}", e.key),
                e.reason,
            ));
        }
    }
    if errs.is_empty() {
        Ok(plans)
    } else {
        Err(ConfigErrors(errs))
    }
}

/// Compile-time checks of a (validated) pipeline that need the engine: SQL feature
/// expressions parse and use supported aggregates. Every problem is reported.
pub fn check(pipeline: &PipelineConfig) -> Result<(), ConfigErrors> {
    compile_errors(pipeline).map(|_| ())
}

impl WindowRt {
    fn new(
        config: &WindowConfig,
        pipeline: &PipelineConfig,
        plan: WindowPlan,
        models: &Models,
    ) -> Result<Self, Vec<ConfigError>> {
        let features = pipeline
            .feature
            .iter()
            .filter(|f| f.window() == config.name)
            .cloned()
            .collect();
        let mut detectors: Vec<DetectorRt> = Vec::new();
        let mut errs = Vec::new();
        for (i, d) in pipeline.detector.iter().enumerate() {
            if pipeline
                .detector_window(d)
                .is_none_or(|w| w.name != config.name)
            {
                continue;
            }
            match build_detector(d, pipeline, &plan, config, models) {
                Ok(d) => detectors.push(d),
                Err(e) => errs.push(ConfigError::new(format!("detector[{i}].model"), e)),
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let track_peers = detectors
            .iter()
            .any(|d| matches!(d.peer, Some(PeerGroup::DeviceType | PeerGroup::Tenant)));
        Ok(Self {
            state: WindowState::new(config, &plan),
            features,
            plan,
            detectors,
            track_peers,
            touched: Vec::new(),
            marked: Vec::new(),
            leader: None,
            link: Vec::new(),
            watch: std::collections::HashMap::new(),
            sampled_values: Vec::new(),
            sampled_at: Vec::new(),
        })
    }
}

fn build_detector(
    d: &DetectorConfig,
    pipeline: &PipelineConfig,
    plan: &WindowPlan,
    window: &WindowConfig,
    models: &Models,
) -> Result<DetectorRt, String> {
    let mut model = None;
    let detector: Box<dyn Detector> = match (d.ml(), crate::ml::kind_of(d), models) {
        (Some(c), Some(_), Models::Record(name, rec)) if *name == c.name => {
            Box::new(RecordingDetector::new(&c.name, rec.clone()))
        }
        (Some(_), _, Models::Record(..)) => warden_detect::build(d, window.size_ms),
        (Some(c), Some(kind), Models::Load) => {
            let h = ModelHandle::open(kind, c, &window.name).map_err(|e| e.to_string())?;
            model = Some(h.clone());
            Box::new(MlDetector::new(c.clone(), h))
        }
        _ => warden_detect::build(d, window.size_ms),
    };
    let inputs = d
        .features()
        .iter()
        .filter_map(|f| plan.names.iter().position(|n| n == f))
        .collect();
    Ok(DetectorRt {
        peer: detector.peer_group(),
        novelty: match d {
            DetectorConfig::Novelty(c) => Some(c.field),
            _ => None,
        },
        detector,
        inputs,
        mode: d.mode().unwrap_or(pipeline.mode),
        config: d.clone(),
        model,
    })
}

impl Engine {
    /// Build the engine a validated pipeline declares; fails only on what
    /// [`PipelineConfig::validate`] cannot see (SQL feature expressions, see [`check`]).
    pub fn new(pipeline: &PipelineConfig) -> Result<Self, ConfigErrors> {
        Self::with_models(pipeline, Models::Load)
    }

    /// Build the engine with ML detectors built as `models` says: served from their model
    /// files (what [`Engine::new`] does), or recording their samples for training.
    pub fn with_models(pipeline: &PipelineConfig, models: Models) -> Result<Self, ConfigErrors> {
        let plans = compile_errors(pipeline)?;
        let mut windows: Vec<WindowRt> = Vec::new();
        let mut errs = Vec::new();
        for (w, plan) in pipeline.window.iter().zip(plans) {
            match WindowRt::new(w, pipeline, plan, &models) {
                Ok(w) => windows.push(w),
                Err(e) => errs.extend(e),
            }
        }
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        for wi in 0..windows.len() {
            let key = windows[wi].state.config.key;
            // `identity|route` keys are built per row: not linked.
            if key != WindowKey::IdentityRoute {
                windows[wi].leader = windows[..wi].iter().position(|l| l.state.config.key == key);
            }
        }
        Ok(Self {
            config: pipeline.clone(),
            windows,
            policy: Policy::new(pipeline.decision.clone()),
            watermark: None,
            watermark_cap: None,
            newest: None,
            provisional_at: None,
            stats: EngineStats::default(),
            scratch: Scratch::default(),
            rates: None,
            scores: None,
        })
        .map(|mut e| {
            e.rates = RateMemory::new(pipeline, &e.windows);
            e
        })
    }

    /// Report the detector scores of watched subjects (fired on, or asked for with
    /// [`ScoreBoard::watch`]) to `board`.
    pub fn set_score_board(&mut self, board: std::sync::Arc<ScoreBoard>) {
        self.scores = Some(board);
    }

    pub fn pipeline(&self) -> &PipelineConfig {
        &self.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Newest event time seen (held back by the cap, when one is set).
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Keep the watermark from advancing past `cap` (`None`: no cap; `i64::MIN`: no advance
    /// at all). A processor reading several partitions sets it to the event time of its
    /// slowest partition that still has records to read, so that a partition read ahead of
    /// the others (a backlog after a restart) does not turn the others' events late.
    pub fn set_watermark_cap(&mut self, cap: Option<i64>) {
        self.watermark_cap = cap;
    }

    /// Keys held per window, by window name.
    pub fn keys(&self) -> Vec<(String, usize)> {
        self.windows
            .iter()
            .map(|w| (w.state.config.name.clone(), w.state.len()))
            .collect()
    }

    /// Approximate bytes of state: windows (buckets, sketches, key index) and detectors.
    pub fn state_bytes(&self) -> usize {
        self.windows
            .iter()
            .map(|w| {
                w.state.state_bytes()
                    + w.detectors
                        .iter()
                        .map(|d| d.detector.state_bytes())
                        .sum::<usize>()
                    + w.marked.capacity()
                    + w.touched.capacity() * 4
                    + w.link.capacity() * 4
                    + w.sampled_values.capacity() * 8
                    + w.sampled_at.capacity() * 8
            })
            .sum()
    }

    /// Approximate bytes of state per window: (window, its keys' buckets and caches, its
    /// detectors' state).
    pub fn state_breakdown(&self) -> Vec<(String, usize, usize)> {
        self.windows
            .iter()
            .map(|w| {
                (
                    w.state.config.name.clone(),
                    w.state.state_bytes()
                        + w.marked.capacity()
                        + w.touched.capacity() * 4
                        + w.link.capacity() * 4
                        + w.sampled_values.capacity() * 8
                        + w.sampled_at.capacity() * 8,
                    w.detectors
                        .iter()
                        .map(|d| d.detector.state_bytes())
                        .sum::<usize>(),
                )
            })
            .collect()
    }

    /// Learn a decision from the decisions topic (releases start a cooldown; quarantines
    /// published by another processor are not repeated and count as offenses).
    pub fn apply_decision(&mut self, d: &Decision) {
        self.policy.apply(d);
    }

    /// Process one batch of request events (with [`warden_event::request_event_schema`]) at
    /// processing time `now_ns`.
    pub fn process(
        &mut self,
        batch: &RecordBatch,
        now_ns: i64,
    ) -> Result<Vec<Output>, EngineError> {
        let cols = Columns::read(batch)?;
        self.take_watch_requests();
        let mut inputs = Vec::with_capacity(self.windows.len());
        for w in &self.windows {
            inputs.push(w.plan.evaluate(batch)?);
        }
        let mut fired = Vec::new();
        // Per-batch caches: dictionary key → key id, per window.
        let mut dict_cache: Vec<Vec<KeyId>> = vec![Vec::new(); self.windows.len()];
        // And dictionary key → peer group id (device type, tenant), per window.
        let mut peer_cache: Vec<[Vec<u32>; 2]> = vec![[Vec::new(), Vec::new()]; self.windows.len()];
        let hasher = hasher();
        // Key id of the current row per window (`None`: late or no key), for linked windows.
        let mut row_ids: Vec<Option<KeyId>> = vec![None; self.windows.len()];
        let mut known = std::mem::take(&mut self.scratch.known);
        self.lookup_known_keys(&cols, &mut known);
        for i in 0..cols.len() {
            let ts = cols.ts[i];
            self.stats.events += 1;
            let mut late = false;
            for (wi, w) in self.windows.iter_mut().enumerate() {
                row_ids[wi] = None;
                if self
                    .watermark
                    .is_some_and(|wm| ts < wm - w.state.lateness_ns)
                {
                    late = true;
                    continue;
                }
                let key_col = cols.key_column(w.state.config.key);
                let lead = w.leader.and_then(|l| row_ids[l]);
                let known_id = known[wi].get(i).copied().flatten();
                let id =
                    match known_id.or_else(|| lead.and_then(|l| linked(w, l, key_col.value(i)))) {
                        Some(id) => id,
                        None => match intern(
                            w,
                            &cols,
                            key_col,
                            i,
                            ts,
                            &mut dict_cache[wi],
                            &mut self.scratch.key,
                        ) {
                            Some(id) => {
                                if let Some(l) = lead {
                                    link(w, l, id);
                                }
                                id
                            }
                            None => continue,
                        },
                    };
                row_ids[wi] = Some(id);
                w.state.add(id, ts, &w.plan, &inputs[wi], i);
                let idx = id as usize;
                if w.state.config.provisional {
                    if idx >= w.marked.len() {
                        w.marked.resize(idx + 1, 0);
                    }
                    let m = &mut w.marked[idx];
                    if *m == 0 {
                        w.touched.push(id);
                    }
                    *m = m.saturating_add(1);
                }
                if w.track_peers {
                    let [dt_cache, tn_cache] = &mut peer_cache[wi];
                    let peers = [
                        peer_id(&mut w.state.peers, cols.device_type, i, dt_cache),
                        peer_id(&mut w.state.peers, cols.tenant, i, tn_cache),
                    ];
                    if let Some(k) = w.state.key_mut(id) {
                        k.peers = peers;
                    }
                }
                for (di, d) in w.detectors.iter_mut().enumerate() {
                    let Some(field) = d.novelty else { continue };
                    let value = cols.novelty_column(field).value(i);
                    if value.is_empty() {
                        continue;
                    }
                    use std::hash::BuildHasher;
                    let ev = EventView {
                        key: id,
                        ts,
                        value,
                        hash: hasher.hash_one(value),
                    };
                    if let Some(firing) = d.detector.on_event(&ev) {
                        fired.push(Fired {
                            window: wi,
                            detector: di,
                            key: w.state.name(id).to_string(),
                            peer: None,
                            firing,
                            features: BTreeMap::new(),
                            window_end: ts,
                        });
                    }
                }
            }
            self.stats.late_events += u64::from(late);
            let advance = match self.watermark_cap {
                Some(cap) if cap < ts => cap,
                _ => ts,
            };
            self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
            if advance > i64::MIN {
                self.watermark = Some(self.watermark.map_or(advance, |wm| wm.max(advance)));
            }
        }
        self.scratch.known = known;
        // Provisional scores see every event counted so far (the newest event time), complete
        // samples wait for the (capped) watermark.
        let Some(view) = self.newest else {
            return Ok(Vec::new());
        };
        let due = self.provisional_due(batch.num_rows(), view, now_ns);
        // Under backlog, a key with too few new events waits for its complete sample.
        let min_events = if batch.num_rows() < self.config.source.batch_max_events {
            1
        } else {
            self.config.source.provisional_min_events
        };
        for wi in 0..self.windows.len() {
            if let Some(wm) = self.watermark {
                self.sample_complete(wi, wm, &mut fired)?;
            }
            if due {
                self.score_touched(wi, view, min_events, &mut fired)?;
            }
        }
        if due {
            self.provisional_at = Some((view, now_ns));
        }
        self.finish(fired, view, now_ns)
    }

    /// Whether the keys touched since the last provisional scoring are scored after a batch of
    /// `rows` events: always when the batch is not full (the processor has caught up, and
    /// scoring costs little next to waiting for events), and under backlog (full batches)
    /// once `source.provisional_every_ms` has passed since the last scoring, in event time
    /// (the newest seen) or in the caller's clock (`now_ns`), whichever comes first — a key
    /// touched by fifty consecutive batches is then scored once instead of fifty times, for at
    /// most that much more decision latency. The clock bounds the wait when event time stands
    /// still: a lagging partition's backlog read after another partition's recent events.
    fn provisional_due(&self, rows: usize, view: i64, now_ns: i64) -> bool {
        let every = i64::try_from(self.config.source.provisional_every_ms)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        rows < self.config.source.batch_max_events
            || every == 0
            || self.provisional_at.is_none_or(|(at, at_now)| {
                view >= at.saturating_add(every) || now_ns >= at_now.saturating_add(every)
            })
    }

    /// Whether keys touched by earlier batches wait for their provisional scoring (see
    /// [`Engine::flush`]).
    pub fn pending(&self) -> bool {
        self.windows.iter().any(|w| !w.touched.is_empty())
    }

    /// Score the keys whose provisional scoring was deferred under backlog (see
    /// `source.provisional_every_ms`): for when events stop arriving, and at the end of a
    /// replay.
    pub fn flush(&mut self, now_ns: i64) -> Result<Vec<Output>, EngineError> {
        let Some(view) = self.newest else {
            return Ok(Vec::new());
        };
        if !self.pending() {
            return Ok(Vec::new());
        }
        let mut fired = Vec::new();
        for wi in 0..self.windows.len() {
            self.score_touched(wi, view, 1, &mut fired)?;
        }
        self.provisional_at = Some((view, now_ns));
        self.finish(fired, view, now_ns)
    }

    /// Score every key of window `wi` with at least `min_events` events since the last
    /// scoring on its provisional window as of `view`; the others are no longer pending (their
    /// complete sample, at most a slide away, judges them).
    fn score_touched(
        &mut self,
        wi: usize,
        view: i64,
        min_events: u32,
        fired: &mut Vec<Fired>,
    ) -> Result<(), EngineError> {
        let w = &mut self.windows[wi];
        let mut ids = std::mem::take(&mut w.touched);
        // Each once, and only if still live: a key forgotten since it was touched has its
        // mark cleared (and its id may be touched again by a new key, so listed twice).
        ids.retain(|id| {
            let events = w
                .marked
                .get_mut(*id as usize)
                .map_or(0, |m| std::mem::replace(m, 0));
            u32::from(events) >= min_events.max(1) && w.state.key(*id).is_some()
        });
        let slot = w.state.slot(view);
        self.stats.provisional += ids.len() as u64;
        round(w, wi, &ids, slot, false, &mut self.scratch, fired)?;
        ids.clear();
        self.windows[wi].touched = ids;
        Ok(())
    }

    /// Watch the subjects the console asked about (those the windows know).
    fn take_watch_requests(&mut self) {
        let Some(board) = &self.scores else {
            return;
        };
        let requests = board.take_requests();
        if requests.is_empty() {
            return;
        }
        let until = self.newest.unwrap_or(0).saturating_add(scores::WATCH_NS);
        for (kind, value) in requests {
            for w in &mut self.windows {
                if subject_kind(w.state.config.key) == Some(kind)
                    && w.watch.len() < scores::MAX_SUBJECTS
                    && let Some(id) = w.state.id(&value)
                {
                    w.watch.insert(id, until);
                }
            }
        }
    }

    /// Event-level firings' features, then the decisions of a batch's firings.
    fn finish(
        &mut self,
        mut fired: Vec<Fired>,
        view: i64,
        now_ns: i64,
    ) -> Result<Vec<Output>, EngineError> {
        // Event-level firings carry the features of their key's window as it stands.
        for f in fired.iter_mut().filter(|f| f.features.is_empty()) {
            let w = &mut self.windows[f.window];
            if let Some(id) = w.state.id(&f.key) {
                let slot = w.state.slot(view);
                f.features = key_features(w, id, slot, &mut self.scratch)?;
            }
        }
        if let Some(board) = &self.scores {
            // A subject fired on is watched: its page shows the firing's score and how its
            // scores go on.
            for f in &fired {
                let w = &mut self.windows[f.window];
                if let Some(id) = w.state.id(&f.key)
                    && (w.watch.len() < scores::MAX_SUBJECTS || w.watch.contains_key(&id))
                {
                    w.watch
                        .insert(id, f.window_end.saturating_add(scores::WATCH_NS));
                }
                if let (Some(kind), Some(d)) = (
                    subject_kind(w.state.config.key),
                    w.detectors.get(f.detector),
                ) {
                    board.record(&[scores::Scored {
                        kind,
                        subject: &f.key,
                        window: &w.state.config.name,
                        detector: d.detector.name(),
                        at: f.window_end,
                        score: f.firing.score,
                    }]);
                }
            }
        }
        self.policy.prune(now_ns);
        Ok(fired
            .into_iter()
            .filter_map(|f| self.decide(f, now_ns))
            .collect())
    }

    /// Before the row loop: per window keyed by a plain string column, the id of each row's
    /// key if the key already exists. The row loop would find the same ids (keys are created
    /// there, never removed before the batch ends), but one row at a time, each lookup a cache
    /// miss in a table of every key behind the previous row's work; here the lookups of a
    /// batch are independent of each other and the processor overlaps their misses. A window
    /// linked to a leader finds its ids through the leader's (name checked, as in the loop).
    /// Rows whose key is new (or dictionary-encoded, or `identity|route`) are left to the loop.
    fn lookup_known_keys(&self, cols: &Columns, known: &mut Vec<Vec<Option<KeyId>>>) {
        known.resize_with(self.windows.len(), Vec::new);
        for wi in 0..self.windows.len() {
            let w = &self.windows[wi];
            let (before, rest) = known.split_at_mut(wi);
            let out = &mut rest[0];
            out.clear();
            let kind = w.state.config.key;
            let key_col = cols.key_column(kind);
            if kind == WindowKey::IdentityRoute || key_col.is_dict() {
                continue;
            }
            let leader = w
                .leader
                .and_then(|l| before.get(l))
                .filter(|l| !l.is_empty());
            out.extend((0..cols.len()).map(|i| {
                let key = key_col.value(i);
                if key.is_empty() || (kind == WindowKey::Identity && key == ANONYMOUS) {
                    return None;
                }
                match leader {
                    Some(l) => l[i].and_then(|lid| linked(w, lid, key)),
                    None => w.state.id(key),
                }
            }));
        }
    }

    /// Score and learn every complete slide not sampled yet.
    fn sample_complete(
        &mut self,
        wi: usize,
        wm: i64,
        fired: &mut Vec<Fired>,
    ) -> Result<(), EngineError> {
        let w = &mut self.windows[wi];
        let last = w.state.slot(wm - w.state.lateness_ns) - 1;
        let from = w
            .state
            .sampled_through
            .map_or(last, |s| s + 1)
            .max(last - w.state.slides());
        for slot in from..=last {
            let mut ids = std::mem::take(&mut self.scratch.ids);
            if w.state.samples_active() {
                w.state.active_keys(slot, &mut ids);
            } else {
                w.state.live(&mut ids);
            }
            self.stats.samples += ids.len() as u64;
            round(w, wi, &ids, slot, true, &mut self.scratch, fired)?;
            if let Some(board) = &self.scores {
                report_scores(board, w, &mut self.scratch.scored);
            }
            if let Some(m) = self.rates.as_mut().filter(|m| m.window == wi)
                && !ids.is_empty()
            {
                if !w.detectors.iter().any(|d| !d.inputs.is_empty()) {
                    // `round` computed no features: no detector samples this window.
                    features_of(w, &ids, slot, Read::Complete, &mut self.scratch)?;
                }
                let nf = w.plan.outputs.len();
                for (r, id) in ids.iter().enumerate() {
                    if let Some(v) = self.scratch.features.get(r * nf + m.feature) {
                        m.learn(*id, *v);
                    }
                }
            }
            if w.state.samples_active() {
                w.state.trim_keys(&ids, slot);
            }
            self.scratch.ids = ids;
            if !w.state.sweep_due(slot) {
                continue;
            }
            let end = w.state.slot_end(slot);
            for id in w.state.trim(slot, end) {
                if let Some(m) = self.rates.as_mut().filter(|m| m.window == wi) {
                    m.forget(id);
                }
                for d in w.detectors.iter_mut() {
                    d.detector.forget(id);
                }
                w.watch.remove(&id);
                if let Some(m) = w.marked.get_mut(id as usize) {
                    *m = 0;
                }
            }
        }
        if from <= last {
            w.state.sampled_through = Some(last);
            if !w.watch.is_empty() {
                let through = w.state.slot_end(last);
                w.watch.retain(|_, until| *until >= through);
            }
        }
        Ok(())
    }

    fn decide(&mut self, f: Fired, now: i64) -> Option<Output> {
        self.stats.firings += 1;
        let w = &self.windows[f.window];
        let d = &w.detectors[f.detector];
        let (kind, value, enforceable, route) = match w.state.config.key {
            WindowKey::Identity => (SubjectKind::Identity, f.key.as_str(), true, None),
            WindowKey::ClientIp => (SubjectKind::Ip, f.key.as_str(), true, None),
            WindowKey::Tenant => (SubjectKind::Tenant, f.key.as_str(), true, None),
            WindowKey::Route => (SubjectKind::Route, f.key.as_str(), false, None),
            WindowKey::IdentityRoute => {
                let (id, route) = f.key.rsplit_once('|').unwrap_or((f.key.as_str(), ""));
                (SubjectKind::Identity, id, true, Some(route))
            }
        };
        let subject = Subject {
            kind,
            value: value.to_string(),
        };
        let name = d.detector.name().to_string();
        let group = f
            .peer
            .as_ref()
            .map(|(p, g)| (g.as_str(), d.detector.peer_population(*p)));
        let src = Source {
            detector: &name,
            mode: d.mode,
            action: d.config.action(),
            weight: d.config.weight(),
            population: w.state.len(),
            group,
        };
        let verdict = self.policy.decide(&subject, &src, enforceable, now);
        let mut message = format!("{subject}");
        if let Some(r) = route {
            message.push_str(&format!(" on route {r}"));
        }
        message.push_str(&format!(": {}", f.firing.explanation));
        let (action, until, why) = match &verdict {
            Verdict::Suppress => return None,
            Verdict::AlertOnly(why) => {
                message.push_str(&format!("; not enforced: {why}"));
                (None, None, None)
            }
            Verdict::Enforce {
                action,
                until,
                offense,
                detectors,
            } => {
                let verb = if *action == Action::Quarantine {
                    "quarantined"
                } else {
                    "throttled"
                };
                message.push_str(&format!(
                    "; {verb} for {} s (offense {offense}; evidence: {})",
                    (until - now) / 1_000_000_000,
                    detectors.join(", ")
                ));
                (
                    Some(*action),
                    Some(*until),
                    Some((*offense, detectors.clone())),
                )
            }
        };
        let evidence = Evidence {
            features: f.features,
            baseline: f.firing.baseline.clone(),
            threshold: f.firing.threshold,
            window: w.state.config.name.clone(),
            window_end: f.window_end,
        };
        // A throttle holds its subject to a multiple of its own normal rate, when known.
        let c = self.policy.config();
        let normal_rate = self.rates.as_ref().and_then(|m| {
            let w = &self.windows[m.window];
            let same_kind = matches!(
                (w.state.config.key, subject.kind),
                (WindowKey::Identity, SubjectKind::Identity)
                    | (WindowKey::ClientIp, SubjectKind::Ip)
                    | (WindowKey::Tenant, SubjectKind::Tenant)
            );
            if !same_kind {
                return None;
            }
            m.level(w.state.id(&subject.value)?)
        });
        let limit = (action == Some(Action::Throttle)).then(|| ThrottleLimit {
            per_s: normal_rate.map_or(c.throttle_rate_per_s, |n| {
                (n * c.throttle_rate_factor).max(c.throttle_min_rate_per_s)
            }),
            burst: c.throttle_burst,
        });
        if let Some(l) = &limit {
            message.push_str(&format!(
                " at {} requests/s{}",
                fmt_rate(l.per_s),
                normal_rate.map_or(String::new(), |n| format!(
                    " ({}× its normal {}/s)",
                    c.throttle_rate_factor,
                    fmt_rate(n)
                ))
            ));
        }
        let decision = action.map(|action| {
            let mut ev = serde_json::to_value(&evidence).unwrap_or_default();
            if let serde_json::Value::Object(m) = &mut ev {
                if let Some((offense, detectors)) = &why {
                    m.insert("offense".into(), (*offense).into());
                    m.insert("detectors".into(), detectors.clone().into());
                }
                if action == Action::Throttle
                    && let Some(l) = &limit
                {
                    m.insert("rate_limit_per_s".into(), l.per_s.into());
                    if let Some(normal) = normal_rate {
                        m.insert("normal_rate_per_s".into(), normal.into());
                    }
                }
            }
            Decision {
                v: SCHEMA_VERSION,
                id: uuid::Uuid::now_v7().to_string(),
                subject: subject.clone(),
                action,
                until,
                reason: message.clone(),
                detector: name.clone(),
                score: f.firing.score,
                evidence: ev,
                decided_at: now,
                limit,
            }
        });
        self.stats.alerts += 1;
        self.stats.decisions += u64::from(decision.is_some());
        let high = if f.firing.threshold > 0.0 {
            f.firing.score >= 2.0 * f.firing.threshold
        } else {
            false
        };
        let alert = Alert {
            v: SCHEMA_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            ts: now,
            pipeline: self.config.name.clone(),
            detector: name,
            subject,
            score: f.firing.score,
            severity: if high || action == Some(Action::Quarantine) {
                Severity::High
            } else {
                Severity::Medium
            },
            message,
            evidence,
            action: decision.as_ref().map(|d| d.action),
            decision_id: decision.as_ref().map(|d| d.id.clone()),
        };
        Some(Output { alert, decision })
    }
}

/// A rate for messages: 3 significant digits.
fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 1.0 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

/// The interned peer group of row `i` of a (usually dictionary-encoded) column, looked up
/// once per dictionary value and batch.
fn peer_id(
    peers: &mut crate::window::Interner,
    col: StrCol,
    i: usize,
    cache: &mut Vec<u32>,
) -> u32 {
    let Some((k, n)) = col.dict_key(i) else {
        return peers.intern(col.value(i));
    };
    if cache.len() != n {
        cache.clear();
        cache.resize(n, u32::MAX);
    }
    if cache[k] == u32::MAX {
        cache[k] = peers.intern(col.value(i));
    }
    cache[k]
}

/// The id of `key` in `w` through its leader's id of the row's key, when linked before.
fn linked(w: &WindowRt, leader_id: KeyId, key: &str) -> Option<KeyId> {
    let id = *w.link.get(leader_id as usize)?;
    (w.state.key(id)?.name.as_str() == key).then_some(id)
}

fn link(w: &mut WindowRt, leader_id: KeyId, id: KeyId) {
    let l = leader_id as usize;
    if w.link.len() <= l {
        w.link.resize(l + 1, KeyId::MAX);
    }
    w.link[l] = id;
}

/// The key id of row `i` for window `w`, or `None` when the row has no key for it.
fn intern(
    w: &mut WindowRt,
    cols: &Columns,
    key_col: StrCol,
    i: usize,
    ts: i64,
    cache: &mut Vec<KeyId>,
    buf: &mut String,
) -> Option<KeyId> {
    let kind = w.state.config.key;
    if kind == WindowKey::IdentityRoute {
        let identity = cols.identity.value(i);
        if identity.is_empty() || identity == ANONYMOUS {
            return None;
        }
        buf.clear();
        buf.push_str(identity);
        buf.push('|');
        buf.push_str(cols.route.value(i));
        return Some(w.state.intern(buf, ts));
    }
    if let Some((k, n)) = key_col.dict_key(i) {
        if cache.len() != n {
            cache.clear();
            cache.resize(n, KeyId::MAX);
        }
        if cache[k] != KeyId::MAX && w.state.key(cache[k]).is_some() {
            return Some(cache[k]);
        }
        let key = key_col.value(i);
        if key.is_empty() {
            return None;
        }
        let id = w.state.intern(key, ts);
        cache[k] = id;
        return Some(id);
    }
    let key = key_col.value(i);
    if key.is_empty() || (kind == WindowKey::Identity && key == ANONYMOUS) {
        return None;
    }
    Some(w.state.intern(key, ts))
}

/// How a window is read: which fold of [`WindowState`] fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Between complete samples, many times per slot ([`WindowState::fold_provisional`]).
    Provisional,
    /// A complete sample, slide after slide ([`WindowState::fold_complete`]).
    Complete,
    /// Once, e.g. for an event-level firing's evidence ([`WindowState::fold`]).
    Once,
}

/// Feature values of `ids` over the window ending with `slot` into `scratch.features`.
fn features_of(
    w: &mut WindowRt,
    ids: &[KeyId],
    slot: i64,
    read: Read,
    scratch: &mut Scratch,
) -> Result<(), EngineError> {
    let nv = w.plan.values.len().max(1);
    scratch.values.clear();
    scratch.values.resize(ids.len() * nv, f64::NAN);
    for (r, id) in ids.iter().enumerate() {
        let (scalars, sketches) = (&mut scratch.scalars, &mut scratch.sketches);
        let row = &mut scratch.values[r * nv..(r + 1) * nv];
        let idx = *id as usize;
        match read {
            Read::Provisional => w
                .state
                .fold_provisional(*id, slot, &w.plan, scalars, sketches),
            Read::Complete => {
                if w.sampled_at.len() <= idx {
                    w.sampled_at.resize(idx + 1, i64::MIN);
                    w.sampled_values.resize((idx + 1) * nv, f64::NAN);
                }
                let cached = &mut w.sampled_values[idx * nv..(idx + 1) * nv];
                if w.sampled_at[idx] == slot.wrapping_sub(1)
                    && w.state.complete_unchanged(*id, slot)
                {
                    row.copy_from_slice(cached);
                    w.sampled_at[idx] = slot;
                    continue;
                }
                w.state.fold_complete(*id, slot, &w.plan, scalars, sketches);
                w.plan.read_values(scalars, sketches, row);
                cached.copy_from_slice(row);
                w.sampled_at[idx] = slot;
                continue;
            }
            Read::Once => w.state.fold(*id, slot, &w.plan, scalars, sketches),
        }
        w.plan.read_values(&scratch.scalars, &scratch.sketches, row);
    }
    w.plan.features(
        &scratch.values,
        ids.len(),
        w.state.size_secs(),
        w.state.slot_end(slot),
        &mut scratch.features,
    )?;
    Ok(())
}

fn key_features(
    w: &mut WindowRt,
    id: KeyId,
    slot: i64,
    scratch: &mut Scratch,
) -> Result<BTreeMap<String, f64>, EngineError> {
    features_of(w, &[id], slot, Read::Once, scratch)?;
    Ok(w.plan
        .names
        .iter()
        .zip(&scratch.features)
        .map(|(n, v)| (n.clone(), *v))
        .collect())
}

/// Score every detector of window `wi` on `ids` over the window ending with `slot`; learn
/// when `learn` (a complete sample).
/// The subject kind of a window's keys (`identity|route` windows have none: their keys are
/// not subjects).
fn subject_kind(key: WindowKey) -> Option<SubjectKind> {
    match key {
        WindowKey::Identity => Some(SubjectKind::Identity),
        WindowKey::ClientIp => Some(SubjectKind::Ip),
        WindowKey::Tenant => Some(SubjectKind::Tenant),
        WindowKey::Route => Some(SubjectKind::Route),
        WindowKey::IdentityRoute => None,
    }
}

/// Hand the scores of watched keys that [`round`] collected to the board.
fn report_scores(board: &ScoreBoard, w: &WindowRt, scored: &mut Vec<(usize, KeyId, i64, f64)>) {
    if scored.is_empty() {
        return;
    }
    if let Some(kind) = subject_kind(w.state.config.key) {
        let points: Vec<scores::Scored<'_>> = scored
            .iter()
            .filter_map(|(di, id, at, score)| {
                Some(scores::Scored {
                    kind,
                    subject: w.state.key(*id).map(|_| w.state.name(*id))?,
                    window: &w.state.config.name,
                    detector: w.detectors.get(*di)?.detector.name(),
                    at: *at,
                    score: *score,
                })
            })
            .collect();
        board.record(&points);
    }
    scored.clear();
}

fn round(
    w: &mut WindowRt,
    wi: usize,
    ids: &[KeyId],
    slot: i64,
    learn: bool,
    scratch: &mut Scratch,
    fired: &mut Vec<Fired>,
) -> Result<(), EngineError> {
    let sampled = w.detectors.iter().any(|d| !d.inputs.is_empty());
    if ids.is_empty() || !sampled {
        if learn {
            let at = w.state.slot_end(slot);
            for d in w.detectors.iter_mut() {
                d.detector.end_round(at);
            }
        }
        return Ok(());
    }
    let read = if learn {
        Read::Complete
    } else {
        Read::Provisional
    };
    features_of(w, ids, slot, read, scratch)?;
    let nf = w.plan.outputs.len();
    let at = w.state.slot_end(slot);
    let size_ns = w.state.size_ns();
    // Detectors read at most 16 features (ML detectors; the others one or two).
    let mut buf = [f64::NAN; 16];
    for (di, d) in w.detectors.iter_mut().enumerate() {
        if d.inputs.is_empty() {
            continue;
        }
        for (r, id) in ids.iter().enumerate() {
            let row = &scratch.features[r * nf..(r + 1) * nf];
            for (j, fi) in d.inputs.iter().take(buf.len()).enumerate() {
                buf[j] = row[*fi];
            }
            let (peer, peer_name) = match d.peer {
                Some(PeerGroup::DeviceType) => {
                    let p = w.state.key(*id).map_or(0, |k| k.peers[0]);
                    (p, w.state.peers.name(p))
                }
                Some(PeerGroup::Tenant) => {
                    let p = w.state.key(*id).map_or(0, |k| k.peers[1]);
                    (p, w.state.peers.name(p))
                }
                _ => (0, ""),
            };
            let full = w
                .state
                .key(*id)
                .is_some_and(|k| at - k.first_event_ns >= size_ns);
            let sample = Sample {
                key: *id,
                values: &buf[..d.inputs.len().min(buf.len())],
                at,
                peer,
                peer_name,
                full,
            };
            if learn && !w.watch.is_empty() && w.watch.get(id).is_some_and(|until| at <= *until) {
                scratch
                    .scored
                    .push((di, *id, at, d.detector.score(&sample)));
            }
            let firing = if learn {
                d.detector.observe(&sample)
            } else {
                d.detector.peek(&sample)
            };
            if let Some(firing) = firing {
                fired.push(Fired {
                    window: wi,
                    detector: di,
                    key: w.state.name(*id).to_string(),
                    peer: d.peer.map(|_| (peer, peer_name.to_string())),
                    firing,
                    features: w
                        .plan
                        .names
                        .iter()
                        .cloned()
                        .zip(row.iter().copied())
                        .collect(),
                    window_end: at,
                });
            }
        }
        if learn {
            d.detector.end_round(at);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
