//! What each ML model of a pipeline scores each identity, replaying an archive: the input of
//! an evaluation's ROC AUC (`warden backtest --attack-labels`).

use std::collections::BTreeMap;
use std::path::Path;

use warden_config::PipelineConfig;
use warden_ml::Model;

use super::{BacktestError, replay_with};
use crate::Engine;
use crate::ml::{Models, Recorder};

/// Every identity's mean score under each ML model of `pipeline`, over the complete samples
/// of its window whose end falls in one of `spans` (`[from, to]` ns; none: every sample). A
/// mean, not a maximum: one burst (a firmware download) is not what tells an attacker from
/// a benign device. Models over the same window and features share one replay; each other
/// window (or feature list) gets its own.
#[derive(Debug, Clone, Default)]
pub struct ModelScores {
    /// The ML detectors scored, in pipeline order.
    pub detectors: Vec<String>,
    /// Identity → mean score per detector (NaN where that detector's window has no complete
    /// sample of the identity in `spans`).
    pub by_identity: BTreeMap<String, Vec<f64>>,
}

/// The pipeline's ML detectors (indices in pipeline order among its ML detectors) grouped by
/// the window and features they read: one replay (a recorder in place of the group's first
/// detector) scores a whole group.
pub fn model_groups(pipeline: &PipelineConfig) -> Vec<Vec<usize>> {
    let keys: Vec<(Option<&str>, &[String])> = pipeline
        .detector
        .iter()
        .filter_map(|d| {
            let c = d.ml()?;
            Some((
                pipeline.detector_window(d).map(|w| w.name.as_str()),
                c.features.as_slice(),
            ))
        })
        .collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match groups.iter_mut().find(|g| keys[g[0]] == *k) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

pub async fn model_scores(
    pipeline: &PipelineConfig,
    dir: &Path,
    spans: &[(i64, i64)],
) -> Result<ModelScores, BacktestError> {
    let ml: Vec<_> = pipeline
        .detector
        .iter()
        .filter_map(|d| d.ml().map(|c| (d, c)))
        .collect();
    let windows: Vec<String> = ml
        .iter()
        .map(|(d, _)| {
            pipeline
                .detector_window(d)
                .map(|w| w.name.clone())
                .unwrap_or_default()
        })
        .collect();
    let mut models: Vec<Option<Model>> = Vec::new();
    for ((_, c), window) in ml.iter().zip(&windows) {
        let m = Model::load(Path::new(&c.model)).map_err(|e| {
            BacktestError::Model(format!("the model of `{}` ({}): {e}", c.name, c.model))
        })?;
        models.push((m.body.window == *window).then_some(m));
    }
    let mut by_identity: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for members in model_groups(pipeline) {
        let lead = members[0];
        let window = &windows[lead];
        let rec = Recorder::default();
        let engine = Engine::with_models(
            pipeline,
            Models::Record(ml[lead].1.name.clone(), rec.clone()),
        )?;
        let mut sums: BTreeMap<String, (Vec<f64>, f64)> = BTreeMap::new();
        let mut scratch = Vec::new();
        replay_with(engine, pipeline, dir, |engine| {
            for s in rec.take().into_iter().filter(|s| s.full) {
                if !spans.is_empty() && !spans.iter().any(|(a, b)| s.at >= *a && s.at <= *b) {
                    continue;
                }
                let Some(name) = engine.key_name(window, s.key) else {
                    continue;
                };
                scratch.resize(s.values.len(), 0.0);
                let v: Vec<f64> = members
                    .iter()
                    .map(|&j| {
                        models[j].as_ref().map_or(f64::NAN, |m| {
                            m.group(&s.device_type).score(&s.values, &mut scratch)
                        })
                    })
                    .collect();
                if v.iter().any(|x| x.is_infinite()) {
                    continue;
                }
                let e = sums
                    .entry(name)
                    .or_insert_with(|| (vec![0.0; v.len()], 0.0));
                for (acc, x) in e.0.iter_mut().zip(&v) {
                    *acc += x;
                }
                e.1 += 1.0;
            }
        })
        .await?;
        for (name, (v, n)) in sums {
            let row = by_identity
                .entry(name)
                .or_insert_with(|| vec![f64::NAN; ml.len()]);
            for (&j, x) in members.iter().zip(v) {
                row[j] = x / n;
            }
        }
    }
    Ok(ModelScores {
        detectors: ml.iter().map(|(_, c)| c.name.clone()).collect(),
        by_identity,
    })
}
