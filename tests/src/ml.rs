//! Helpers of the ML tests: benign fleet traffic generated to Parquet, models trained on it
//! with `warden train`'s code path (the archive replayed through the pipeline's own engine),
//! labelled scenarios run through a pipeline, and per-subject outcomes.

use std::collections::BTreeMap;
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
    archive(&s, &dir.join("benign.parquet"))
}

/// Run `scenario` in simulated time (its own seed) and write its events to the Parquet file
/// `path`; returns the number of events.
pub fn archive(scenario: &ScenarioConfig, path: &Path) -> u64 {
    let mut o = AcceleratedOptions::new(scenario);
    o.parquet = Some(path.to_path_buf());
    o.batch_span_ns = 1_000_000_000;
    o.batch_max = 16_384;
    let run = run_accelerated(scenario, scenario.seed, &o, None, |_, _| {})
        .unwrap_or_else(|e| panic!("{e}"));
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

pub use warden::evaluation::{EvalRow, Outcome, auc, markdown};

/// Who was alerted on and quarantined in an accelerated run.
pub fn outcome(run: &AcceleratedRun) -> Outcome {
    Outcome::new(
        &run.labels,
        run.alerts
            .iter()
            .map(|a| (a.subject.value.as_str(), a.detector.as_str())),
        run.decisions
            .iter()
            .filter(|d| d.action == warden_event::Action::Quarantine)
            .map(|d| d.subject.value.as_str()),
    )
}

/// Whether a detector name is one of `pipelines/ml.toml`'s ML detectors.
pub fn is_ml(detector: &str) -> bool {
    detector.starts_with("ml_")
}

/// Every identity's mean score under each model over the scenario's attack windows (full
/// samples of each model's window, recorded by an engine of `pipeline` with a recorder in
/// place of the first ML detector of that window; `models` in the pipeline's ML detector
/// order). A mean, not a maximum: one burst (a firmware download) is not what tells an
/// attacker from a benign device. NaN where a model's window has no sample of the identity.
pub fn mean_scores(
    scenario: &ScenarioConfig,
    pipeline: &PipelineConfig,
    models: &[Model],
) -> BTreeMap<String, Vec<f64>> {
    let ml: Vec<_> = pipeline
        .detector
        .iter()
        .filter_map(|d| d.ml().map(|c| (d, c)))
        .collect();
    assert_eq!(ml.len(), models.len(), "one model per ML detector");
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for members in warden_stream::backtest::scores::model_groups(pipeline) {
        let lead = members[0];
        let group: Vec<&Model> = members.iter().map(|&j| &models[j]).collect();
        for (name, v) in group_scores(scenario, pipeline, &ml[lead].1.name, &group) {
            let row = out.entry(name).or_insert_with(|| vec![f64::NAN; ml.len()]);
            for (&j, x) in members.iter().zip(v) {
                row[j] = x;
            }
        }
    }
    out
}

/// Mean scores of `models` (all over the window and features of detector `lead`).
fn group_scores(
    scenario: &ScenarioConfig,
    pipeline: &PipelineConfig,
    lead: &str,
    models: &[&Model],
) -> BTreeMap<String, Vec<f64>> {
    use warden_stream::ml::{Models, Recorder};
    let rec = Recorder::default();
    let mut engine = Engine::with_models(pipeline, Models::Record(lead.into(), rec.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut sums: BTreeMap<String, (Vec<f64>, f64)> = BTreeMap::new();
    let window = models
        .first()
        .map(|m| m.body.window.clone())
        .unwrap_or_default();
    let mut o = AcceleratedOptions::new(scenario);
    let spans: Vec<(i64, i64)> = scenario
        .attack
        .iter()
        .map(|a| {
            let (s, e) = a.window();
            (o.start_ns + (s * 1e9) as i64, o.start_ns + (e * 1e9) as i64)
        })
        .collect();
    let mut detect =
        |b: &arrow::record_batch::RecordBatch,
         now: i64|
         -> Result<Vec<(Alert, Option<Decision>)>, warden_sim::accelerated::DetectError> {
            engine.process(b, now)?;
            for s in rec.take().into_iter().filter(|s| s.full) {
                if !spans.iter().any(|(a, b)| s.at >= *a && s.at <= *b) {
                    continue;
                }
                let Some(name) = engine.key_name(&window, s.key) else {
                    continue;
                };
                let mut scratch = vec![0.0; s.values.len()];
                let v: Vec<f64> = models
                    .iter()
                    .map(|m| m.group(&s.device_type).score(&s.values, &mut scratch))
                    .collect();
                if v.iter().any(|x| !x.is_finite()) {
                    continue;
                }
                let e = sums
                    .entry(name)
                    .or_insert_with(|| (vec![0.0; models.len()], 0.0));
                for (acc, x) in e.0.iter_mut().zip(&v) {
                    *acc += x;
                }
                e.1 += 1.0;
            }
            Ok(Vec::new())
        };
    o.batch_span_ns = 1_000_000_000;
    o.batch_max = 16_384;
    run_accelerated(scenario, scenario.seed, &o, Some(&mut detect), |_, _| {})
        .unwrap_or_else(|e| panic!("{e}"));
    sums.into_iter()
        .map(|(k, (v, n))| (k, v.into_iter().map(|x| x / n).collect()))
        .collect()
}

/// Rows for one scenario: the statistical pipeline's run (`stats`), the ML pipeline's run
/// (`served`, one row per ML detector) and the models' scores (as `warden backtest
/// --attack-labels` reports them).
pub fn eval_rows(
    stats: &AcceleratedRun,
    served: &AcceleratedRun,
    models: &[(String, Model)],
    scores: &BTreeMap<String, Vec<f64>>,
) -> Vec<EvalRow> {
    let names: Vec<String> = models.iter().map(|(n, _)| n.clone()).collect();
    warden::evaluation::rows(
        &served.labels,
        Some(("statistics (default.toml)", &outcome(stats))),
        ("ml.toml (all detectors)", &outcome(served)),
        &names,
        scores,
    )
}
