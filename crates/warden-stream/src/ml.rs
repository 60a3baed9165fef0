//! ML detectors served by the engine: a model file from `warden train` scores each complete
//! window sample of a key (its feature vector as a whole) and explains each firing with the
//! features that contributed most, their values and their robust distance from normal.
//!
//! The model lives behind a [`ModelHandle`] shared by the detector and the engine: the engine
//! checks the file now and then ([`crate::Engine::refresh_models`]); a changed file is loaded
//! and validated (format, hash, kind, features) and swapped in, a bad one is refused and the
//! model already loaded keeps serving.
//!
//! Training replays archived events through the same engine, with a [`Recorder`] in place of
//! the detector: the rows a model is fitted on are the samples it will be served.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

pub mod train;

use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::histogram::Histogram;
use warden_config::{ConfigError, DetectorConfig, MlConfig, PeerGroup, PipelineConfig};
use warden_detect::{DetectError, Detector, Firing, KeyId, Sample};
use warden_ml::{MlError, Model, ModelKind};

/// The model kind a detector `type` needs.
pub fn kind_of(d: &DetectorConfig) -> Option<ModelKind> {
    match d {
        DetectorConfig::Kmeans(_) => Some(ModelKind::Kmeans),
        DetectorConfig::Gmm(_) => Some(ModelKind::Gmm),
        DetectorConfig::OneClassSvm(_) => Some(ModelKind::OneClassSvm),
        DetectorConfig::IsolationForest(_) => Some(ModelKind::IsolationForest),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
    })
}

struct Shared {
    model: RwLock<Arc<Model>>,
    /// Every judged sample's score over its firing threshold (see [`score_histogram`]).
    scores: Histogram,
    generation: AtomicU64,
    /// The file as last read (loaded or refused).
    seen: Mutex<Option<Stamp>>,
}

/// A served model and the file it came from.
#[derive(Clone)]
pub struct ModelHandle {
    path: PathBuf,
    kind: ModelKind,
    features: Vec<String>,
    /// The pipeline window the detector's features are over.
    window: String,
    shared: Arc<Shared>,
}

/// The distribution of a model's scores as a share of the bar it fires at (the calibrated
/// threshold × `threshold_factor`): comparable across model kinds and units, `≥ 1` is a
/// sample above the bar. A drift of the bulk towards 1 says the fleet moved away from what
/// the model was trained on (retrain); a sudden mass above 1, an incident or a bad model.
fn score_histogram() -> Histogram {
    Histogram::new([0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 4.0, 10.0])
}

/// A served model's score histogram, for the metrics endpoint, and the model itself, for the
/// console's processor health (which model version serves, trained when, on what).
#[derive(Clone)]
pub struct ModelScores {
    /// The detector's name in the pipeline.
    pub detector: String,
    /// The model kind (`kmeans`, `gmm`…).
    pub model: &'static str,
    pub scores: Histogram,
    /// The model's handle (`None` for scores recorded without one).
    pub handle: Option<ModelHandle>,
}

impl std::fmt::Debug for ModelScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelScores")
            .field("detector", &self.detector)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl ModelScores {
    /// The model now served, as the console shows it: kind, content hash (its version),
    /// file, training window and size, calibration target.
    pub fn describe(&self) -> serde_json::Value {
        let Some(handle) = &self.handle else {
            return serde_json::json!({ "detector": self.detector, "model": self.model });
        };
        let m = handle.current();
        let t = &m.body.training;
        serde_json::json!({
            "detector": self.detector,
            "model": self.model,
            "sha256": m.sha256,
            "path": handle.path.display().to_string(),
            "features": m.body.features,
            "trained_at_s": t.trained_at_s,
            "trained_from_ns": t.from_ns,
            "trained_to_ns": t.to_ns,
            "rows": t.rows,
            "target_fpr": m.body.target_fpr,
            "swaps": handle.generation(),
        })
    }
}

/// What a model refresh did.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelRefresh {
    /// The new file was valid and is served (its SHA-256).
    Swapped { detector: String, sha256: String },
    /// The new file was refused; the previous model keeps serving.
    Refused { detector: String, error: String },
}

impl ModelHandle {
    /// Load and validate the model of an ML detector config whose features are over the
    /// pipeline window `window`.
    pub fn open(kind: ModelKind, c: &MlConfig, window: &str) -> Result<Self, MlError> {
        let path = PathBuf::from(&c.model);
        let seen = stamp(&path);
        let model = Self::validate(&path, kind, &c.features, window)?;
        Ok(Self {
            path,
            kind,
            features: c.features.clone(),
            window: window.to_string(),
            shared: Arc::new(Shared {
                model: RwLock::new(Arc::new(model)),
                scores: score_histogram(),
                generation: AtomicU64::new(0),
                seen: Mutex::new(seen),
            }),
        })
    }

    fn validate(
        path: &Path,
        kind: ModelKind,
        features: &[String],
        window: &str,
    ) -> Result<Model, MlError> {
        if !path.exists() {
            return Err(MlError::Io {
                path: path.display().to_string(),
                reason: format!(
                    "no model file here (relative paths are from the working directory, {}); train one with `warden train --out {}`",
                    std::env::current_dir()
                        .map(|d| d.display().to_string())
                        .unwrap_or_else(|_| "unknown".into()),
                    path.display()
                ),
            });
        }
        let model = Model::load(path)?;
        if model.kind() != kind {
            return Err(MlError::Io {
                path: path.display().to_string(),
                reason: format!(
                    "a {} model, the detector is {}",
                    model.kind().as_str(),
                    kind.as_str()
                ),
            });
        }
        let names: Vec<&str> = features.iter().map(String::as_str).collect();
        model.check_features(&names).map_err(|e| e.in_file(path))?;
        if model.body.window != window {
            return Err(MlError::Io {
                path: path.display().to_string(),
                reason: format!(
                    "trained on samples of window `{}`, the detector's features are over `{window}` (retrain the model)",
                    model.body.window
                ),
            });
        }
        Ok(model)
    }

    /// The histogram of the scores this model served (shared by clones; it survives model
    /// swaps).
    pub fn scores(&self) -> &Histogram {
        &self.shared.scores
    }

    /// The model kind served.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    pub fn current(&self) -> Arc<Model> {
        self.shared.model.read().clone()
    }

    fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Reload the file if it changed since last read: `None` when unchanged.
    pub fn refresh(&self) -> Option<Result<String, MlError>> {
        let now = stamp(&self.path);
        {
            let mut seen = self.shared.seen.lock();
            if *seen == now {
                return None;
            }
            *seen = now;
        }
        match Self::validate(&self.path, self.kind, &self.features, &self.window) {
            Ok(m) => {
                let sha = m.sha256.clone();
                if self.current().sha256 == sha {
                    return None;
                }
                *self.shared.model.write() = Arc::new(m);
                self.shared.generation.fetch_add(1, Ordering::AcqRel);
                Some(Ok(sha))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// An ML detector: fires when a key's complete samples score above the calibrated threshold
/// (× `threshold_factor`) for `sustain_samples` (a leaky count: each sample below takes one
/// off).
pub struct MlDetector {
    config: MlConfig,
    handle: ModelHandle,
    model: Arc<Model>,
    generation: u64,
    streak: Vec<u16>,
    scaled: Vec<f64>,
    /// Per key: the fingerprint of the last vector scored and its score. A key's window
    /// changes only when an event enters or a bucket leaves it, so most samples of a
    /// sparse device repeat the previous vector; they reuse its score (the model, the
    /// group and the values are all in the fingerprint, so a hit is the same computation).
    memo: Vec<(u64, f64)>,
    /// Samples scored, and those answered from `memo`.
    pub scored: u64,
    pub reused: u64,
}

/// A 64-bit fingerprint of a vector, its peer group and the model generation
/// (SplitMix64's finaliser over each word; a false match needs a 64-bit collision).
fn fingerprint(values: &[f64], peer: &str, generation: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut h = mix(generation ^ 0x9e37_79b9_7f4a_7c15);
    for v in values {
        h = mix(h ^ v.to_bits());
    }
    for chunk in peer.as_bytes().chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    mix(h ^ peer.len() as u64)
}

impl MlDetector {
    pub fn new(config: MlConfig, handle: ModelHandle) -> Self {
        let model = handle.current();
        let dims = model.body.features.len();
        Self {
            generation: handle.generation(),
            config,
            handle,
            model,
            streak: Vec::new(),
            scaled: vec![0.0; dims],
            memo: Vec::new(),
            scored: 0,
            reused: 0,
        }
    }

    pub fn handle(&self) -> &ModelHandle {
        &self.handle
    }

    fn sync(&mut self) {
        let g = self.handle.generation();
        if g != self.generation {
            self.model = self.handle.current();
            self.generation = g;
        }
    }

    /// Score against the key's group model: `(score, threshold)`; `None` for a sample the
    /// model does not judge (window not yet full, a feature without a value).
    fn judge(&mut self, s: &Sample) -> Option<(f64, f64)> {
        if !s.full || s.values.len() != self.scaled.len() {
            return None;
        }
        let g = self.model.group(s.peer_name);
        let threshold = g.calibration.threshold * self.config.threshold_factor;
        let fp = fingerprint(s.values, s.peer_name, self.generation);
        let i = s.key as usize;
        if self.memo.len() <= i {
            self.memo.resize(i + 1, (0, f64::NAN));
        }
        let score = match self.memo[i] {
            (f, score) if f == fp && !score.is_nan() => {
                self.reused += 1;
                score
            }
            _ => {
                let score = g.score(s.values, &mut self.scaled);
                self.memo[i] = (fp, score);
                self.scored += 1;
                score
            }
        };
        if !score.is_finite() {
            return None;
        }
        if threshold > 0.0 {
            self.handle.scores().observe(score / threshold);
        }
        Some((score, threshold))
    }

    fn firing(&self, s: &Sample, score: f64, threshold: f64) -> Firing {
        let m = &self.model;
        let g = m.group(s.peer_name);
        let top = g.explain(&m.body.features, s.values, self.config.explain_top as usize);
        let mut baseline = std::collections::BTreeMap::new();
        baseline.insert("model_target_fpr".to_string(), g.calibration.target_fpr);
        baseline.insert("model_achieved_fpr".to_string(), g.calibration.achieved_fpr);
        let parts: Vec<String> = top
            .iter()
            .map(|c| {
                baseline.insert(format!("z.{}", c.feature), c.z);
                baseline.insert(format!("share.{}", c.feature), c.share);
                format!(
                    "{} = {} ({:+.1} IQR from normal, {:.0} %)",
                    c.feature,
                    num(c.value),
                    c.z,
                    c.share * 100.0
                )
            })
            .collect();
        let group = g.device_type.as_deref().unwrap_or("all device types");
        Firing {
            score,
            value: s.values.first().copied().unwrap_or(f64::NAN),
            threshold,
            baseline,
            explanation: format!(
                "{} {} {:.3} above {:.3} (model of {group}, {} {}); most unusual: {}",
                m.kind().as_str(),
                m.kind().score_unit(),
                score,
                threshold,
                m.sha256.get(..12).unwrap_or(""),
                if self.config.sustain_samples > 1 {
                    format!("sustained over {} samples", self.config.sustain_samples)
                } else {
                    "one sample".into()
                },
                parts.join("; ")
            ),
        }
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

impl Detector for MlDetector {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn observe(&mut self, s: &Sample) -> Option<Firing> {
        self.sync();
        let (score, threshold) = self.judge(s)?;
        let i = s.key as usize;
        if self.streak.len() <= i {
            self.streak.resize(i + 1, 0);
        }
        // A leaky count: a sample above the threshold adds one, one below takes one off, so
        // a deviation that lasts fires even if a sample now and then dips under the bar.
        if score <= threshold {
            self.streak[i] = self.streak[i].saturating_sub(1);
            return None;
        }
        self.streak[i] = self.streak[i].saturating_add(1);
        (u32::from(self.streak[i]) >= self.config.sustain_samples)
            .then(|| self.firing(s, score, threshold))
    }

    /// Models judge complete samples only.
    fn peek(&self, _s: &Sample) -> Option<Firing> {
        None
    }

    fn score(&self, s: &Sample) -> f64 {
        if s.values.len() != self.scaled.len() {
            return f64::NAN;
        }
        let mut scaled = vec![0.0; s.values.len()];
        self.model.group(s.peer_name).score(s.values, &mut scaled)
    }

    fn peer_group(&self) -> Option<PeerGroup> {
        Some(PeerGroup::DeviceType)
    }

    fn forget(&mut self, key: KeyId) {
        if let Some(s) = self.streak.get_mut(key as usize) {
            *s = 0;
        }
        if let Some(m) = self.memo.get_mut(key as usize) {
            *m = (0, f64::NAN);
        }
    }

    fn len(&self) -> usize {
        self.streak.iter().filter(|s| **s > 0).count()
    }

    fn state_bytes(&self) -> usize {
        self.streak.capacity() * 2 + self.memo.capacity() * std::mem::size_of::<(u64, f64)>()
    }

    fn save_key(&self, key: KeyId) -> Option<serde_json::Value> {
        self.streak
            .get(key as usize)
            .filter(|s| **s > 0)
            .map(|s| serde_json::Value::from(*s))
    }

    fn load_key(&mut self, key: KeyId, state: serde_json::Value) -> Result<(), DetectError> {
        let n: u16 = serde_json::from_value(state).map_err(|source| DetectError::State {
            detector: self.config.name.clone(),
            source,
        })?;
        let i = key as usize;
        if self.streak.len() <= i {
            self.streak.resize(i + 1, 0);
        }
        self.streak[i] = n;
        Ok(())
    }
}

/// Check every ML detector's model file as the processor will load it: it exists, parses,
/// its hash, version and parameters are sound, its kind is the detector's type, its features
/// are the detector's (names and order) and its window theirs. Every problem is reported, as
/// `detector[i].model`.
pub fn check_models(pipeline: &PipelineConfig) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    for (i, d) in pipeline.detector.iter().enumerate() {
        let (Some(c), Some(kind)) = (d.ml(), kind_of(d)) else {
            continue;
        };
        let window = pipeline
            .detector_window(d)
            .map(|w| w.name.as_str())
            .unwrap_or_default();
        if let Err(e) = ModelHandle::open(kind, c, window) {
            errs.push(ConfigError::new(
                format!("detector[{i}].model"),
                format!("`{}` ({}): {e}", c.name, kind.as_str()),
            ));
        }
    }
    errs
}

/// One complete sample as the ML detector would see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSample {
    /// The key's id in its window ([`crate::Engine::key_name`] names it while it lives).
    pub key: KeyId,
    /// The key's device type ("" when unknown).
    pub device_type: String,
    /// End of the window, ns.
    pub at: i64,
    pub values: Vec<f64>,
    /// Whether the window covered a whole window length of the key's life.
    pub full: bool,
}

/// Collects the samples of one detector (training, tests): every sample, or with
/// [`Recorder::capped`] a bounded uniform sample of the usable ones per device type.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Default)]
struct Recorded {
    /// Every sample (uncapped), or the reservoirs' contents in group order (capped).
    samples: Vec<RecordedSample>,
    cap: Option<Cap>,
}

/// A reservoir (Vitter's algorithm R) of at most `per_group` full samples with every value
/// finite, per device type; the others are only counted.
struct Cap {
    per_group: usize,
    groups: Vec<(String, Reservoir)>,
    rng: rand::rngs::SmallRng,
    /// Samples of windows not yet full, and with a feature without value (per feature).
    partial: usize,
    missing: Vec<usize>,
}

#[derive(Default)]
struct Reservoir {
    seen: u64,
    kept: Vec<RecordedSample>,
}

/// Usable samples seen and kept by a capped recorder, and those it skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedCounts {
    pub seen: u64,
    pub kept: usize,
    pub partial: usize,
    /// Per feature index: samples where it had no value.
    pub missing: Vec<usize>,
}

impl Recorder {
    /// Keep at most `per_group` usable samples per device type, a uniform sample of them
    /// (seeded: the same replay keeps the same rows). Memory is bounded by the number of
    /// device types, not the archive's length.
    pub fn capped(per_group: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        Self {
            inner: Arc::new(Mutex::new(Recorded {
                samples: Vec::new(),
                cap: Some(Cap {
                    per_group: per_group.max(1),
                    groups: Vec::new(),
                    rng: rand::rngs::SmallRng::seed_from_u64(seed),
                    partial: 0,
                    missing: Vec::new(),
                }),
            })),
        }
    }

    fn push(&self, s: RecordedSample) {
        let mut inner = self.inner.lock();
        let Some(cap) = inner.cap.as_mut() else {
            inner.samples.push(s);
            return;
        };
        if !s.full {
            cap.partial += 1;
            return;
        }
        if let Some(j) = s.values.iter().position(|v| !v.is_finite()) {
            if cap.missing.len() <= j {
                cap.missing.resize(j + 1, 0);
            }
            cap.missing[j] += 1;
            return;
        }
        let at = match cap.groups.iter().position(|(g, _)| *g == s.device_type) {
            Some(i) => i,
            None => {
                cap.groups
                    .push((s.device_type.clone(), Reservoir::default()));
                cap.groups.len() - 1
            }
        };
        let per_group = cap.per_group;
        let (_, r) = &mut cap.groups[at];
        r.seen += 1;
        if r.kept.len() < per_group {
            r.kept.push(s);
        } else {
            use rand::Rng;
            let j = cap.rng.random_range(0..r.seen);
            if let Some(slot) = r.kept.get_mut(j as usize) {
                *slot = s;
            }
        }
    }

    /// The samples recorded (and empties the recorder).
    pub fn take(&self) -> Vec<RecordedSample> {
        let mut inner = self.inner.lock();
        let mut out = std::mem::take(&mut inner.samples);
        if let Some(cap) = inner.cap.as_mut() {
            for (_, r) in &mut cap.groups {
                out.append(&mut r.kept);
            }
        }
        out
    }

    /// What a capped recorder saw and skipped (zeros when uncapped).
    pub fn counts(&self) -> RecordedCounts {
        let inner = self.inner.lock();
        let Some(cap) = &inner.cap else {
            return RecordedCounts::default();
        };
        RecordedCounts {
            seen: cap.groups.iter().map(|(_, r)| r.seen).sum(),
            kept: cap.groups.iter().map(|(_, r)| r.kept.len()).sum(),
            partial: cap.partial,
            missing: cap.missing.clone(),
        }
    }

    pub fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.samples.len()
            + inner
                .cap
                .as_ref()
                .map_or(0, |c| c.groups.iter().map(|(_, r)| r.kept.len()).sum())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records complete samples in place of an ML detector; never fires.
pub struct RecordingDetector {
    name: String,
    recorder: Recorder,
}

impl RecordingDetector {
    pub fn new(name: &str, recorder: Recorder) -> Self {
        Self {
            name: name.to_string(),
            recorder,
        }
    }
}

impl Detector for RecordingDetector {
    fn name(&self) -> &str {
        &self.name
    }
    fn observe(&mut self, s: &Sample) -> Option<Firing> {
        self.recorder.push(RecordedSample {
            key: s.key,
            device_type: s.peer_name.to_string(),
            at: s.at,
            values: s.values.to_vec(),
            full: s.full,
        });
        None
    }
    fn peek(&self, _s: &Sample) -> Option<Firing> {
        None
    }
    fn score(&self, _s: &Sample) -> f64 {
        f64::NAN
    }
    fn peer_group(&self) -> Option<PeerGroup> {
        Some(PeerGroup::DeviceType)
    }
    fn forget(&mut self, _key: KeyId) {}
    fn len(&self) -> usize {
        0
    }
    fn state_bytes(&self) -> usize {
        0
    }
    fn save_key(&self, _key: KeyId) -> Option<serde_json::Value> {
        None
    }
    fn load_key(&mut self, _key: KeyId, _state: serde_json::Value) -> Result<(), DetectError> {
        Ok(())
    }
}

/// How the engine builds ML detectors.
#[derive(Clone, Default)]
pub enum Models {
    /// Load each detector's model file (serving).
    #[default]
    Load,
    /// Record the samples of detector `.0` into `.1`; other ML detectors stay idle (their
    /// models may not exist yet).
    Record(String, Recorder),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repeated vector reuses its score; any change in the values, the group or the model
    /// scores again, and a reused score is the one scoring would give.
    #[test]
    fn repeated_vectors_reuse_their_score_and_nothing_else_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows: Vec<warden_ml::Row> = (0..2400)
            .map(|i| warden_ml::Row {
                device_type: if i % 2 == 0 { "a" } else { "b" }.into(),
                values: vec![(i % 13) as f64, (i % 7) as f64 * 10.0],
            })
            .collect();
        let opts = warden_ml::TrainOptions::new(
            ModelKind::IsolationForest,
            vec!["x".into(), "y".into()],
            "w".into(),
        );
        let path = dir.path().join("m.json");
        let model = warden_ml::train(&rows, &opts, |_| {}).expect("train");
        model.save(&path).expect("save");
        let config: MlConfig = serde_json::from_value(serde_json::json!({
            "name": "m", "model": path.display().to_string(), "features": ["x", "y"],
        }))
        .expect("config");
        let handle = ModelHandle::open(ModelKind::IsolationForest, &config, "w").expect("open");
        let mut d = MlDetector::new(config, handle);
        let sample = |key, values: &'static [f64], peer_name| Sample {
            key,
            values,
            at: 0,
            peer: 0,
            peer_name,
            full: true,
        };
        let first = d.judge(&sample(3, &[4.0, 30.0], "a")).expect("judged");
        assert_eq!((d.scored, d.reused), (1, 0));
        assert_eq!(d.judge(&sample(3, &[4.0, 30.0], "a")), Some(first));
        assert_eq!((d.scored, d.reused), (1, 1));
        // Another key, other values, another group: scored.
        d.judge(&sample(4, &[4.0, 30.0], "a"));
        d.judge(&sample(3, &[5.0, 30.0], "a"));
        d.judge(&sample(3, &[5.0, 30.0], "b"));
        assert_eq!((d.scored, d.reused), (4, 1));
        let mut scaled = vec![0.0; 2];
        let direct = model.group("b").score(&[5.0, 30.0], &mut scaled);
        assert_eq!(
            d.judge(&sample(3, &[5.0, 30.0], "b")).map(|j| j.0),
            Some(direct)
        );
        assert_eq!((d.scored, d.reused), (4, 2));
        // A forgotten key, and a new model generation, score again.
        d.forget(3);
        d.judge(&sample(3, &[5.0, 30.0], "b"));
        assert_eq!((d.scored, d.reused), (5, 2));
        d.generation += 1;
        d.judge(&sample(3, &[5.0, 30.0], "b"));
        assert_eq!((d.scored, d.reused), (6, 2));
    }

    /// A capped recorder keeps a uniform sample of each device type's usable samples, all of
    /// a small type, and counts what it skips.
    #[test]
    fn a_capped_recorder_keeps_a_uniform_sample_per_device_type() {
        let rec = Recorder::capped(1000, 7);
        let mut d = RecordingDetector::new("m", rec.clone());
        for i in 0..20_000u32 {
            let values = [f64::from(i), 1.0];
            let (peer_name, full) = match i % 10 {
                0 => ("rare", true),
                1 => ("common", false),
                _ => ("common", true),
            };
            d.observe(&Sample {
                key: i,
                values: &values,
                at: 0,
                peer: 0,
                peer_name,
                full,
            });
        }
        d.observe(&Sample::of(1, &[f64::NAN, 1.0], 0));
        let counts = rec.counts();
        assert_eq!(counts.seen, 2000 + 16_000);
        assert_eq!(counts.kept, 2000);
        assert_eq!((counts.partial, counts.missing.clone()), (2000, vec![1]));
        let kept = rec.take();
        let rare: Vec<_> = kept.iter().filter(|s| s.device_type == "rare").collect();
        let common: Vec<f64> = kept
            .iter()
            .filter(|s| s.device_type == "common")
            .map(|s| s.values[0])
            .collect();
        assert_eq!((rare.len(), common.len()), (1000, 1000));
        // Drawn from the whole replay, not its first rows: the mean index is near the middle.
        let mean = common.iter().sum::<f64>() / common.len() as f64;
        assert!((8_000.0..12_000.0).contains(&mean), "{mean}");
        assert!(rec.is_empty());
    }
}
