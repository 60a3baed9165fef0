//! Helpers of the ML tests: benign fleet traffic generated to Parquet, models trained on it
//! with `warden train`'s code path (the archive replayed through the pipeline's own engine),
//! labelled scenarios run through a pipeline, and per-subject outcomes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use warden_config::PipelineConfig;
use warden_event::{Alert, Decision};
use warden_ml::Model;
use warden_sim::{AcceleratedOptions, AcceleratedRun, ScenarioConfig, run_accelerated};
use warden_stream::Engine;
use warden_stream::ml::train::collect;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Benign fleet traffic: `devices` devices from `start_hour` for `hours`, seed `seed`, written
/// to `dir/benign.parquet` (the archive `warden train` reads).
pub fn benign_archive(dir: &Path, devices: usize, start_hour: f64, hours: f64, seed: u64) -> u64 {
    let mut s = warden_sim::builtin_scenario("benign")
        .expect("built in")
        .unwrap_or_else(|e| panic!("{e}"))
        .with_duration(hours * 3600.0);
    s.fleet.devices = devices;
    s.fleet.start_hour = start_hour;
    s.seed = seed;
    s.validate().unwrap_or_else(|e| panic!("{e}"));
    let mut o = AcceleratedOptions::new(&s);
    o.parquet = Some(dir.join("benign.parquet"));
    o.batch_span_ns = 1_000_000_000;
    o.batch_max = 16_384;
    let run = run_accelerated(&s, seed, &o, None, |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    run.events
}

/// `pipelines/ml.toml` with its model paths under `models` (absolute).
pub fn ml_pipeline(models: &Path) -> PipelineConfig {
    let text = std::fs::read_to_string(repo().join("pipelines/ml.toml")).expect("ml.toml");
    let text = text.replace("\"models/", &format!("\"{}/", models.display()));
    warden_stream::parse_pipeline(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// Train every ML detector of `pipeline` on the archive in `events` (as `warden train
/// --detector NAME` does) and write each to its `model` path.
pub async fn train_all(
    pipeline: &PipelineConfig,
    events: &Path,
    target_fpr: f64,
    seed: u64,
) -> Vec<Model> {
    let mut out = Vec::new();
    for d in pipeline.detector.iter().filter(|d| d.ml().is_some()) {
        let set = collect(pipeline, Some(d.name()), events)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let opts = set
            .options(&pipeline.name, target_fpr, seed)
            .expect("ML detector");
        let model = warden_ml::train(&set.rows, &opts, |_| {}).unwrap_or_else(|e| panic!("{e}"));
        let path = &d.ml().expect("ml").model;
        model
            .save(Path::new(path))
            .unwrap_or_else(|e| panic!("{e}"));
        out.push(model);
    }
    out
}

/// Run `scenario` through a fresh engine of `pipeline` (quarantines enforced by the emulated
/// gateway as decided).
pub fn run(scenario: &ScenarioConfig, pipeline: &PipelineConfig) -> AcceleratedRun {
    let mut engine = Engine::new(pipeline).unwrap_or_else(|e| panic!("{e}"));
    let mut detect =
        |b: &arrow::record_batch::RecordBatch,
         now: i64|
         -> Result<Vec<(Alert, Option<Decision>)>, warden_sim::accelerated::DetectError> {
            Ok(engine
                .process(b, now)?
                .into_iter()
                .map(|o| (o.alert, o.decision))
                .collect())
        };
    let mut o = AcceleratedOptions::new(scenario);
    o.batch_span_ns = 1_000_000_000;
    o.batch_max = 16_384;
    let mut run = run_accelerated(scenario, scenario.seed, &o, Some(&mut detect), |_, _| {})
        .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    let tail = engine
        .flush(run.labels.ended_at)
        .unwrap_or_else(|e| panic!("{e}"));
    for o in tail {
        run.alerts.push(o.alert);
        run.decisions.extend(o.decision);
    }
    run
}

/// A scenario file of `tests/scenarios/`.
pub fn scenario(rel: &str) -> ScenarioConfig {
    ScenarioConfig::load(&repo().join("tests/scenarios").join(rel))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Who was alerted on, quarantined, by which detectors; attackers vs the rest.
#[derive(Debug, Default)]
pub struct Outcome {
    pub attackers: BTreeSet<String>,
    /// Subject → detectors that alerted on it.
    pub alerted: BTreeMap<String, BTreeSet<String>>,
    pub quarantined: BTreeSet<String>,
}

impl Outcome {
    pub fn of(run: &AcceleratedRun) -> Self {
        let mut o = Outcome::default();
        for a in &run.labels.attacks {
            for at in &a.attackers {
                // Identities: an attacker's address is shared with its device's other traffic.
                o.attackers.extend(
                    at.subjects
                        .iter()
                        .filter(|s| s.kind == warden_event::SubjectKind::Identity)
                        .map(|s| s.value.clone()),
                );
            }
        }
        for a in &run.alerts {
            o.alerted
                .entry(a.subject.value.clone())
                .or_default()
                .insert(a.detector.clone());
        }
        for d in &run.decisions {
            if d.action == warden_event::Action::Quarantine {
                o.quarantined.insert(d.subject.value.clone());
            }
        }
        o
    }

    /// Attackers alerted on by a detector `pick` accepts.
    pub fn caught(&self, pick: impl Fn(&str) -> bool) -> BTreeSet<String> {
        self.attackers
            .iter()
            .filter(|a| {
                self.alerted
                    .get(*a)
                    .is_some_and(|ds| ds.iter().any(|d| pick(d)))
            })
            .cloned()
            .collect()
    }

    /// Benign subjects alerted on by a detector `pick` accepts.
    pub fn false_alerts(&self, pick: impl Fn(&str) -> bool) -> BTreeSet<String> {
        self.alerted
            .iter()
            .filter(|(s, ds)| !self.attackers.contains(*s) && ds.iter().any(|d| pick(d)))
            .map(|(s, _)| s.clone())
            .collect()
    }

    pub fn false_quarantines(&self) -> BTreeSet<String> {
        self.quarantined
            .difference(&self.attackers)
            .cloned()
            .collect()
    }
}

/// Whether a detector name is one of `pipelines/ml.toml`'s ML detectors.
pub fn is_ml(detector: &str) -> bool {
    detector.starts_with("ml_")
}
