//! The detection engine: pure computation from event batches to decisions and alerts, with
//! time passed in (no I/O), so it is tested deterministically and reused by backtests.
//!
//! Windows run on event time. Each batch updates the per-slide buckets of every window; every
//! slide that is complete (the watermark — newest event time seen — is past its end plus the
//! allowed lateness) gives each key one sample that detectors score and learn from; and every
//! key touched by the batch is also scored, without learning, on its window as it stands, so a
//! flood fires within a batch or two instead of after the next complete slide.

use std::collections::{BTreeMap, HashSet};

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use warden_config::{FeatureKind, Mode, PipelineConfig, WindowKey};
use warden_detect::{Detector, Firing};
use warden_event::{
    ANONYMOUS, Action, Alert, Decision, Evidence, SCHEMA_VERSION, Severity, Subject, SubjectKind,
};

use crate::columns::Columns;
use crate::policy::{Policy, Verdict};
use crate::window::{Aggregate, WindowState, feature_value};

/// What a batch produced: an alert, and the decision published with it (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub alert: Alert,
    pub decision: Option<Decision>,
}

/// Counters of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    /// Events older than the watermark minus the allowed lateness (not counted in windows).
    pub late_events: u64,
    /// Complete samples scored.
    pub samples: u64,
    pub firings: u64,
    pub alerts: u64,
    pub decisions: u64,
}

struct FeatureSlot {
    name: String,
    window: usize,
    kind: FeatureKind,
    /// Index of this feature's error threshold in its window's thresholds.
    error_idx: usize,
}

struct DetectorSlot {
    detector: Box<dyn Detector>,
    feature: usize,
    window: usize,
    mode: Mode,
}

pub struct Engine {
    name: String,
    windows: Vec<WindowState>,
    features: Vec<FeatureSlot>,
    detectors: Vec<DetectorSlot>,
    policy: Policy,
    watermark: Option<i64>,
    stats: EngineStats,
}

struct Fired {
    window: usize,
    detector: usize,
    key: String,
    firing: Firing,
    features: BTreeMap<String, f64>,
    window_end: i64,
}

impl Engine {
    /// Build the engine a (validated) pipeline declares.
    pub fn new(pipeline: &PipelineConfig) -> Self {
        let mut windows: Vec<WindowState> = pipeline
            .window
            .iter()
            .map(|w| {
                let mut thresholds: Vec<u16> = pipeline
                    .feature
                    .iter()
                    .filter(|f| f.window == w.name && f.kind == FeatureKind::ErrorRatio)
                    .map(|f| f.error_status())
                    .collect();
                thresholds.sort_unstable();
                thresholds.dedup();
                WindowState::new(w, thresholds)
            })
            .collect();
        let window_idx = |name: &str| windows.iter().position(|w| w.name == name).unwrap_or(0);
        let features: Vec<FeatureSlot> = pipeline
            .feature
            .iter()
            .map(|f| {
                let window = window_idx(&f.window);
                let error_idx = windows[window]
                    .thresholds
                    .iter()
                    .position(|t| *t == f.error_status())
                    .unwrap_or(0);
                FeatureSlot {
                    name: f.name.clone(),
                    window,
                    kind: f.kind,
                    error_idx,
                }
            })
            .collect();
        let detectors = pipeline
            .detector
            .iter()
            .filter_map(|d| {
                let feature = features
                    .iter()
                    .position(|f| d.features().contains(&f.name.as_str()))?;
                Some(DetectorSlot {
                    detector: warden_detect::build(d),
                    feature,
                    window: features[feature].window,
                    mode: d.mode().unwrap_or(pipeline.mode),
                })
            })
            .collect();
        windows.shrink_to_fit();
        Self {
            name: pipeline.name.clone(),
            windows,
            features,
            detectors,
            policy: Policy::new(pipeline.decision.clone()),
            watermark: None,
            stats: EngineStats::default(),
        }
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Newest event time seen.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Learn a decision from the decisions topic (releases start a cooldown; quarantines
    /// published by another processor are not repeated).
    pub fn apply_decision(&mut self, d: &Decision) {
        self.policy.apply(d);
    }

    /// Process one batch of request events at processing time `now_ns`.
    pub fn process(&mut self, batch: &RecordBatch, now_ns: i64) -> Result<Vec<Output>, ArrowError> {
        let cols = Columns::read(batch)?;
        let mut touched: Vec<HashSet<String>> = vec![HashSet::new(); self.windows.len()];
        for i in 0..cols.len() {
            let ts = cols.ts[i];
            self.stats.events += 1;
            let mut late = false;
            for (wi, w) in self.windows.iter_mut().enumerate() {
                let key = key_of(w.key, &cols, i);
                if key.is_empty() || (w.key == WindowKey::Identity && key == ANONYMOUS) {
                    continue;
                }
                if self.watermark.is_some_and(|wm| ts < wm - w.lateness_ns) {
                    late = true;
                    continue;
                }
                w.add(key, ts, cols.status[i], cols.denied[i]);
                if !touched[wi].contains(key) {
                    touched[wi].insert(key.to_string());
                }
            }
            self.stats.late_events += u64::from(late);
            self.watermark = Some(self.watermark.map_or(ts, |wm| wm.max(ts)));
        }
        let Some(wm) = self.watermark else {
            return Ok(Vec::new());
        };

        let mut fired = Vec::new();
        for (wi, keys) in touched.iter().enumerate() {
            self.sample_complete(wi, wm, &mut fired);
            let w = &self.windows[wi];
            let slot = w.slot(wm);
            for key in keys {
                evaluate(
                    w,
                    wi,
                    key,
                    slot,
                    &self.features,
                    &mut self.detectors,
                    false,
                    &mut fired,
                );
            }
        }
        self.policy.prune(now_ns);
        Ok(fired
            .into_iter()
            .filter_map(|f| self.decide(f, now_ns))
            .collect())
    }

    /// Score and learn every complete slide not sampled yet.
    fn sample_complete(&mut self, wi: usize, wm: i64, fired: &mut Vec<Fired>) {
        let w = &self.windows[wi];
        let last = w.slot(wm - w.lateness_ns) - 1;
        let from = w
            .sampled_through
            .map_or(last, |s| s + 1)
            .max(last - w.slides());
        for slot in from..=last {
            let w = &self.windows[wi];
            let keys: Vec<String> = w.keys().cloned().collect();
            for key in &keys {
                self.stats.samples += 1;
                evaluate(
                    w,
                    wi,
                    key,
                    slot,
                    &self.features,
                    &mut self.detectors,
                    true,
                    fired,
                );
            }
            let end = w.slot_end(slot);
            for key in self.windows[wi].trim(slot, end) {
                for d in self.detectors.iter_mut().filter(|d| d.window == wi) {
                    d.detector.forget(&key);
                }
            }
        }
        if from <= last {
            self.windows[wi].sampled_through = Some(last);
        }
    }

    fn decide(&mut self, f: Fired, now: i64) -> Option<Output> {
        self.stats.firings += 1;
        let w = &self.windows[f.window];
        let d = &self.detectors[f.detector];
        let (kind, enforceable) = match w.key {
            WindowKey::Identity => (SubjectKind::Identity, true),
            WindowKey::ClientIp => (SubjectKind::Ip, true),
            WindowKey::Tenant => (SubjectKind::Tenant, true),
            WindowKey::Route => (SubjectKind::Route, false),
        };
        let subject = Subject {
            kind,
            value: f.key.clone(),
        };
        let name = d.detector.name().to_string();
        let verdict = self
            .policy
            .decide(&subject, &name, d.mode, enforceable, now);
        if verdict == Verdict::Suppress {
            return None;
        }
        let feature = &self.features[d.feature].name;
        let mean = f.firing.baseline.get("mean").copied().unwrap_or(0.0);
        let mut message = format!(
            "{feature} of {subject} is {:.2}, {:.1} standard deviations above its baseline {:.2} (threshold {})",
            f.firing.value, f.firing.score, mean, f.firing.threshold
        );
        if let Verdict::AlertOnly(why) = verdict {
            message.push_str(&format!("; not quarantined: {why}"));
        }
        let evidence = Evidence {
            features: f.features,
            baseline: f.firing.baseline.clone(),
            threshold: f.firing.threshold,
            window: w.name.clone(),
            window_end: f.window_end,
        };
        let decision = (verdict == Verdict::Quarantine).then(|| Decision {
            v: SCHEMA_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            subject: subject.clone(),
            action: Action::Quarantine,
            until: Some(now + self.policy.ttl_ns()),
            reason: message.clone(),
            detector: name.clone(),
            score: f.firing.score,
            evidence: serde_json::to_value(&evidence).unwrap_or_default(),
            decided_at: now,
        });
        self.stats.alerts += 1;
        self.stats.decisions += u64::from(decision.is_some());
        let alert = Alert {
            v: SCHEMA_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            ts: now,
            pipeline: self.name.clone(),
            detector: name,
            subject,
            score: f.firing.score,
            severity: if f.firing.score >= 2.0 * f.firing.threshold {
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

fn key_of(key: WindowKey, cols: &Columns, i: usize) -> &str {
    match key {
        WindowKey::Identity => cols.identity.value(i),
        WindowKey::Tenant => cols.tenant.value(i),
        WindowKey::Route => cols.route.value(i),
        WindowKey::ClientIp => cols.client_ip.value(i),
    }
}

/// Score every detector of window `wi` for `key` on the window ending with `slot`.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    w: &WindowState,
    wi: usize,
    key: &str,
    slot: i64,
    features: &[FeatureSlot],
    detectors: &mut [DetectorSlot],
    learn: bool,
    fired: &mut Vec<Fired>,
) {
    let agg: Aggregate = w.aggregate(key, slot);
    let size = w.size_secs();
    let values: BTreeMap<String, f64> = features
        .iter()
        .filter(|f| f.window == wi)
        .map(|f| {
            (
                f.name.clone(),
                feature_value(f.kind, &agg, f.error_idx, size),
            )
        })
        .collect();
    for (di, d) in detectors
        .iter_mut()
        .enumerate()
        .filter(|(_, d)| d.window == wi)
    {
        let value = values
            .get(&features[d.feature].name)
            .copied()
            .unwrap_or(0.0);
        let firing = if learn {
            d.detector.observe(key, value)
        } else {
            d.detector.peek(key, value)
        };
        if let Some(firing) = firing {
            fired.push(Fired {
                window: wi,
                detector: di,
                key: key.to_string(),
                firing,
                features: values.clone(),
                window_end: w.slot_end(slot),
            });
        }
    }
}

#[cfg(test)]
mod tests;
