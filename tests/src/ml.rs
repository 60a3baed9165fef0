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

/// One line of the evaluation: a detector (or the statistical pipeline) on a scenario, at
/// subject level (an identity alerted on at least once).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalRow {
    pub scenario: String,
    pub class: String,
    pub detector: String,
    pub attackers: usize,
    pub caught: usize,
    pub benign: usize,
    pub false_alerts: usize,
    pub precision: f64,
    pub recall: f64,
    pub fpr: f64,
    /// ROC AUC of the model's mean score per identity over the attack window (attackers
    /// positive);
    /// none for the statistical pipeline (no single score).
    pub auc: Option<f64>,
    pub quarantined_attackers: usize,
    pub false_quarantines: usize,
}

/// ROC AUC (Mann–Whitney): the chance a random positive scores above a random negative.
pub fn auc(pos: &[f64], neg: &[f64]) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for p in pos {
        for n in neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

/// Every identity's mean score under each model over the scenario's attack windows (full
/// samples of the ML window, recorded by an engine of `pipeline` with a recorder in place of
/// `ml_kmeans`: all of `ml.toml`'s models read the same features). A mean, not a maximum:
/// one burst (a firmware download) is not what tells an attacker from a benign device.
pub fn mean_scores(
    scenario: &ScenarioConfig,
    pipeline: &PipelineConfig,
    models: &[Model],
) -> BTreeMap<String, Vec<f64>> {
    use warden_stream::ml::{Models, Recorder};
    let rec = Recorder::default();
    let mut engine = Engine::with_models(pipeline, Models::Record("ml_kmeans".into(), rec.clone()))
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
/// (`served`, one row per ML detector) and the models' scores.
pub fn eval_rows(
    scenario: &ScenarioConfig,
    stats: &AcceleratedRun,
    served: &AcceleratedRun,
    models: &[(String, Model)],
    scores: &BTreeMap<String, Vec<f64>>,
) -> Vec<EvalRow> {
    let class = stats
        .labels
        .attacks
        .iter()
        .map(|a| a.class.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join("+");
    let mut rows = Vec::new();
    let row = |detector: &str, o: &Outcome, pick: &dyn Fn(&str) -> bool, auc: Option<f64>| {
        let identities: BTreeSet<&String> = scores.keys().collect();
        let benign = identities.len().saturating_sub(o.attackers.len());
        let caught = o.caught(pick).len();
        let fa = o.false_alerts(pick).len();
        EvalRow {
            scenario: scenario.name.clone(),
            class: class.clone(),
            detector: detector.to_string(),
            attackers: o.attackers.len(),
            caught,
            benign,
            false_alerts: fa,
            precision: if caught + fa == 0 {
                0.0
            } else {
                caught as f64 / (caught + fa) as f64
            },
            recall: caught as f64 / o.attackers.len().max(1) as f64,
            fpr: fa as f64 / benign.max(1) as f64,
            auc,
            quarantined_attackers: o.quarantined.intersection(&o.attackers).count(),
            false_quarantines: o.false_quarantines().len(),
        }
    };
    let so = Outcome::of(stats);
    rows.push(row("statistics (default.toml)", &so, &|_| true, None));
    let mo = Outcome::of(served);
    for (i, (name, _)) in models.iter().enumerate() {
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for (k, v) in scores {
            let x = v.get(i).copied().unwrap_or(f64::NEG_INFINITY);
            if mo.attackers.contains(k) {
                pos.push(x);
            } else {
                neg.push(x);
            }
        }
        let a = auc(&pos, &neg);
        rows.push(row(name, &mo, &|d| d == name, a));
    }
    rows.push(row("ml.toml (all detectors)", &mo, &|_| true, None));
    rows
}

/// The evaluation as Markdown.
pub fn markdown(rows: &[EvalRow]) -> String {
    let mut out = String::from(
        "| scenario | class | detector | recall | precision | FPR (identities) | ROC AUC | attackers quarantined | false quarantines |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} ({}/{}) | {:.2} | {:.4} ({}/{}) | {} | {}/{} | {} |\n",
            r.scenario,
            r.class,
            r.detector,
            r.recall,
            r.caught,
            r.attackers,
            r.precision,
            r.fpr,
            r.false_alerts,
            r.benign,
            r.auc.map_or("—".to_string(), |a| format!("{a:.3}")),
            r.quarantined_attackers,
            r.attackers,
            r.false_quarantines
        ));
    }
    out
}
