//! Evaluation: the labels of runs joined with the alerts and decisions the pipeline actually
//! produced. Per scenario and attack: detected or not, recall over attackers, false
//! quarantines of benign subjects, time from the attacker's first request to the first alert
//! and to the gateway's first refusal (p50/p99), and what the attacker got through before.

mod report;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;
use warden_event::{Action, Alert, Decision, Subject};

pub use report::markdown;

use crate::labels::Labels;
use crate::scenario::AttackClass;

/// Alerts and decisions up to this long after an attack (or a run) ends still count.
pub const DEFAULT_GRACE_NS: i64 = 30_000_000_000;

/// Something the pipeline said about a subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub subject: Subject,
    /// When (epoch ns): the alert's time, or the decision's.
    pub ts: i64,
    pub detector: String,
    /// Whether it quarantined the subject.
    pub quarantine: bool,
}

/// Findings from alerts and decisions (a decision and its alert are one finding each; both
/// say the same thing, which is harmless here).
pub fn findings(alerts: &[Alert], decisions: &[Decision]) -> Vec<Finding> {
    let mut out: Vec<Finding> = alerts
        .iter()
        .map(|a| Finding {
            subject: a.subject.clone(),
            ts: a.ts,
            detector: a.detector.clone(),
            quarantine: a.action == Some(Action::Quarantine),
        })
        .collect();
    out.extend(
        decisions
            .iter()
            .filter(|d| d.action == Action::Quarantine)
            .map(|d| Finding {
                subject: d.subject.clone(),
                ts: d.decided_at,
                detector: d.detector.clone(),
                quarantine: true,
            }),
    );
    out.sort_by_key(|f| f.ts);
    out
}

/// p50 and p99 (nearest rank) of some durations, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// How many values.
    pub n: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    /// Of `values_ns`.
    pub fn of(mut values_ns: Vec<i64>) -> Self {
        values_ns.sort_unstable();
        let n = values_ns.len();
        let rank = |p: f64| {
            (n > 0).then(|| {
                let i = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1;
                values_ns[i] as f64 / 1e6
            })
        };
        Self {
            n,
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
            max_ms: values_ns.last().map(|v| *v as f64 / 1e6),
        }
    }
}

/// One attack, evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttackEval {
    pub name: String,
    pub class: AttackClass,
    pub expected_detected: bool,
    /// Whether every detected attacker is expected to be refused by the gateway too.
    pub expected_quarantined: bool,
    /// Why detection is not expected yet (from the scenario).
    pub reason: Option<String>,
    pub min_recall: f64,
    /// Whether any attacker was alerted on (or quarantined) during the attack.
    pub detected: bool,
    pub attackers: usize,
    pub detected_attackers: usize,
    /// Detected attackers over attackers.
    pub recall: f64,
    /// Attackers the gateway refused at least once.
    pub refused_attackers: usize,
    /// Detectors that fired on the attackers.
    pub detectors: Vec<String>,
    /// From each detected attacker's first attack request to its first alert.
    pub time_to_alert: Latency,
    /// From each attacker's first attack request to the gateway's first refusal of it.
    pub time_to_quarantine: Latency,
    /// Attack requests sent, and those that got through before the attacker's first refusal.
    pub sent: u64,
    pub through_before_quarantine: u64,
    /// Whether this matches the scenario's expectation.
    pub as_expected: bool,
}

/// A quarantine of a subject that was not attacking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FalseQuarantine {
    pub subject: Subject,
    pub detector: String,
    pub ts: i64,
}

/// One run, evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioEval {
    pub scenario: String,
    pub seed: u64,
    pub devices: usize,
    pub started_at: i64,
    pub ended_at: i64,
    pub attacks: Vec<AttackEval>,
    pub false_quarantines: Vec<FalseQuarantine>,
    pub max_false_quarantines: usize,
    /// Alerts (without quarantine) on benign subjects.
    pub false_alerts: usize,
    /// Benign requests the gateway refused with `403`, as the client saw them.
    pub benign_refused: u64,
    pub requests: u64,
}

impl ScenarioEval {
    /// What does not match the scenario's expectations, one sentence each (empty: all good).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let file = format!("tests/scenarios/{}.toml", self.scenario);
        for a in &self.attacks {
            if a.as_expected {
                continue;
            }
            if !a.expected_detected && a.detected {
                out.push(format!(
                    "attack `{}` ({}) of scenario `{}` is now detected (by {}, recall {:.2}): \
                     flip its `expect.detected` to true in {file} and remove `reason`",
                    a.name,
                    a.class,
                    self.scenario,
                    a.detectors.join(", "),
                    a.recall
                ));
            } else if !a.detected {
                out.push(format!(
                    "attack `{}` ({}) of scenario `{}` was not detected, but {file} expects it to be",
                    a.name, a.class, self.scenario
                ));
            } else if a.recall + 1e-9 < a.min_recall {
                out.push(format!(
                    "attack `{}` ({}) of scenario `{}`: recall {:.2} below the expected {:.2}",
                    a.name, a.class, self.scenario, a.recall, a.min_recall
                ));
            } else {
                out.push(format!(
                    "attack `{}` ({}) of scenario `{}`: {} attackers detected but only {} refused                      by the gateway ({file} expects them quarantined)",
                    a.name, a.class, self.scenario, a.detected_attackers, a.refused_attackers
                ));
            }
        }
        if self.false_quarantines.len() > self.max_false_quarantines {
            let who: Vec<String> = self
                .false_quarantines
                .iter()
                .map(|f| format!("{} (by {})", f.subject, f.detector))
                .collect();
            out.push(format!(
                "scenario `{}`: {} benign subject(s) quarantined, at most {} expected: {}",
                self.scenario,
                self.false_quarantines.len(),
                self.max_false_quarantines,
                who.join(", ")
            ));
        }
        out
    }
}

/// A whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub scenarios: Vec<ScenarioEval>,
    pub by_class: Vec<ClassEval>,
}

/// Every attack of one class, over all scenarios.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassEval {
    pub class: AttackClass,
    pub attacks: usize,
    pub detected: usize,
    pub attackers: usize,
    pub detected_attackers: usize,
    pub recall: f64,
    pub time_to_alert: Latency,
    pub time_to_quarantine: Latency,
    pub through_before_quarantine: u64,
}

/// Evaluate runs against what the pipeline produced. Runs are evaluated in time order; a
/// run's findings are those from its start to its end plus `grace_ns` (but not past the
/// next run's start).
pub fn evaluate(runs: &[Labels], findings: &[Finding], grace_ns: i64) -> EvalReport {
    let mut runs: Vec<&Labels> = runs.iter().collect();
    runs.sort_by_key(|l| l.started_at);
    let mut scenarios = Vec::new();
    let mut class_lat: BTreeMap<AttackClass, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        let until = (run.ended_at + grace_ns).min(
            runs.get(i + 1)
                .map_or(i64::MAX, |next| next.started_at.max(run.ended_at)),
        );
        let mine: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.ts >= run.started_at && f.ts <= until)
            .collect();
        let (eval, lat) = evaluate_run(run, &mine, grace_ns, until);
        for (class, (alert, quarantine)) in lat {
            let e = class_lat.entry(class).or_default();
            e.0.extend(alert);
            e.1.extend(quarantine);
        }
        scenarios.push(eval);
    }
    let mut by_class: BTreeMap<AttackClass, ClassEval> = BTreeMap::new();
    for a in scenarios.iter().flat_map(|s| s.attacks.iter()) {
        let c = by_class.entry(a.class).or_insert_with(|| ClassEval {
            class: a.class,
            attacks: 0,
            detected: 0,
            attackers: 0,
            detected_attackers: 0,
            recall: 0.0,
            time_to_alert: Latency::default(),
            time_to_quarantine: Latency::default(),
            through_before_quarantine: 0,
        });
        c.attacks += 1;
        c.detected += usize::from(a.detected);
        c.attackers += a.attackers;
        c.detected_attackers += a.detected_attackers;
        c.through_before_quarantine += a.through_before_quarantine;
    }
    for c in by_class.values_mut() {
        c.recall = ratio(c.detected_attackers, c.attackers);
        if let Some((alert, quarantine)) = class_lat.remove(&c.class) {
            c.time_to_alert = Latency::of(alert);
            c.time_to_quarantine = Latency::of(quarantine);
        }
    }
    EvalReport {
        scenarios,
        by_class: by_class.into_values().collect(),
    }
}

type ClassLatencies = BTreeMap<AttackClass, (Vec<i64>, Vec<i64>)>;

fn evaluate_run(
    run: &Labels,
    findings: &[&Finding],
    grace_ns: i64,
    until: i64,
) -> (ScenarioEval, ClassLatencies) {
    let mut lat: ClassLatencies = BTreeMap::new();
    let mut attacks = Vec::new();
    // A quarantine of an attacker before its attack started is a false one.
    let mut early: Vec<&Finding> = Vec::new();
    for a in &run.attacks {
        let end = (a.end_ns + grace_ns).min(until.max(a.end_ns));
        let mut detectors = BTreeSet::new();
        let mut detected_attackers = 0;
        let mut alert_ns = Vec::new();
        let mut quarantine_ns = Vec::new();
        for x in &a.attackers {
            let subjects: HashSet<&Subject> = x.subjects.iter().collect();
            let on_me = findings.iter().filter(|f| subjects.contains(&f.subject));
            let mut first: Option<&Finding> = None;
            for f in on_me {
                if f.ts < a.start_ns {
                    if f.quarantine {
                        early.push(f);
                    }
                } else if f.ts <= end {
                    detectors.insert(f.detector.clone());
                    if first.is_none_or(|g| f.ts < g.ts) {
                        first = Some(f);
                    }
                }
            }
            let since = x.first_sent_ns.unwrap_or(a.start_ns);
            if let Some(f) = first {
                detected_attackers += 1;
                alert_ns.push((f.ts - since).max(0));
            }
            if let Some(r) = x.first_refused_ns {
                quarantine_ns.push((r - since).max(0));
            }
        }
        let e = lat.entry(a.class).or_default();
        e.0.extend(alert_ns.iter().copied());
        e.1.extend(quarantine_ns.iter().copied());
        let n = a.attackers.len();
        let recall = ratio(detected_attackers, n);
        let min_recall = a.expect.min_recall.unwrap_or(1.0);
        let detected = detected_attackers > 0;
        let refused_attackers = a
            .attackers
            .iter()
            .filter(|x| x.first_refused_ns.is_some())
            .count();
        attacks.push(AttackEval {
            name: a.name.clone(),
            class: a.class,
            expected_detected: a.expect.detected,
            expected_quarantined: a.expect.quarantined,
            reason: a.expect.reason.clone(),
            min_recall,
            detected,
            attackers: n,
            detected_attackers,
            recall,
            refused_attackers,
            detectors: detectors.into_iter().collect(),
            time_to_alert: Latency::of(alert_ns),
            time_to_quarantine: Latency::of(quarantine_ns),
            sent: a.attackers.iter().map(|x| x.sent).sum(),
            through_before_quarantine: a.attackers.iter().map(|x| x.through_before_refused).sum(),
            as_expected: if a.expect.detected {
                detected
                    && recall + 1e-9 >= min_recall
                    && (!a.expect.quarantined || refused_attackers >= detected_attackers)
            } else {
                !detected
            },
        });
    }
    let involved: HashSet<&Subject> = run.involved().collect();
    let mut false_quarantines: Vec<FalseQuarantine> = Vec::new();
    let mut seen = HashSet::new();
    let mut false_alerts = 0;
    for f in findings {
        let benign = !involved.contains(&f.subject);
        if benign && !f.quarantine {
            false_alerts += 1;
        }
        let is_false = f.quarantine && (benign || early.iter().any(|e| std::ptr::eq(*e, *f)));
        if is_false && seen.insert(f.subject.clone()) {
            false_quarantines.push(FalseQuarantine {
                subject: f.subject.clone(),
                detector: f.detector.clone(),
                ts: f.ts,
            });
        }
    }
    let eval = ScenarioEval {
        scenario: run.scenario.clone(),
        seed: run.seed,
        devices: run.fleet.devices,
        started_at: run.started_at,
        ended_at: run.ended_at,
        attacks,
        false_quarantines,
        max_false_quarantines: run.expect.max_false_quarantines,
        false_alerts,
        benign_refused: run.summary.benign_refused.values().sum(),
        requests: run.summary.sent,
    };
    (eval, lat)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests;
