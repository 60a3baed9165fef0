//! Detection measured against the labels of a simulated run, per detector and side by side
//! with another pipeline: recall and precision over identities, the false-positive rate over
//! benign identities, the ROC AUC of each ML model's mean score, quarantines
//! (`warden backtest --attack-labels`; the ML tests report with the same rows).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use warden_sim::labels::Labels;

/// Who was alerted on and quarantined, by which detectors; attackers apart.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// The attackers' identities (an attacker's address is shared with its device's other
    /// traffic, so identities are what is counted).
    pub attackers: BTreeSet<String>,
    /// Subject value → detectors that alerted on it.
    pub alerted: BTreeMap<String, BTreeSet<String>>,
    pub quarantined: BTreeSet<String>,
}

impl Outcome {
    /// From `labels` and a run's alerts `(subject value, detector)` and quarantined subject
    /// values.
    pub fn new<'a>(
        labels: &Labels,
        alerts: impl IntoIterator<Item = (&'a str, &'a str)>,
        quarantined: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut o = Outcome::default();
        for a in &labels.attacks {
            for at in &a.attackers {
                o.attackers.extend(
                    at.subjects
                        .iter()
                        .filter(|s| s.kind == warden_event::SubjectKind::Identity)
                        .map(|s| s.value.clone()),
                );
            }
        }
        for (subject, detector) in alerts {
            o.alerted
                .entry(subject.to_string())
                .or_default()
                .insert(detector.to_string());
        }
        o.quarantined
            .extend(quarantined.into_iter().map(str::to_string));
        o
    }

    /// From a backtest's report (subjects written `kind:value`; identities only).
    pub fn of_backtest(labels: &Labels, r: &warden_stream::backtest::BacktestReport) -> Self {
        let alerts: Vec<(&str, &str)> = r
            .alerts
            .iter()
            .filter_map(|f| identity(&f.subject).map(|s| (s, f.detector.as_str())))
            .collect();
        Self::new(
            labels,
            alerts,
            r.quarantined.iter().filter_map(|s| identity(s)),
        )
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

/// The identity of a backtest subject written `identity:value`.
fn identity(s: &str) -> Option<&str> {
    s.strip_prefix("identity:")
}

/// One line of the evaluation: a detector (or a whole pipeline) on a run, at identity level
/// (an identity alerted on at least once).
#[derive(Debug, Clone, Serialize)]
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
    /// ROC AUC of the model's mean score per identity over the attack windows (attackers
    /// positive); none for a whole pipeline (no single score).
    pub auc: Option<f64>,
    pub quarantined_attackers: usize,
    pub false_quarantines: usize,
}

/// ROC AUC (Mann–Whitney): the chance a random positive scores above a random negative
/// (ties count half).
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

/// The attack classes of a run, joined (`—` for a benign run).
pub fn classes(labels: &Labels) -> String {
    let c: BTreeSet<&str> = labels.attacks.iter().map(|a| a.class.as_str()).collect();
    if c.is_empty() {
        "—".into()
    } else {
        c.into_iter().collect::<Vec<_>>().join("+")
    }
}

/// One row for the detectors `pick` accepts in `o`, over `identities` (every identity seen).
pub fn row(
    labels: &Labels,
    identities: usize,
    detector: &str,
    o: &Outcome,
    pick: &dyn Fn(&str) -> bool,
    auc: Option<f64>,
) -> EvalRow {
    let benign = identities.saturating_sub(o.attackers.len());
    let caught = o.caught(pick).len();
    let fa = o.false_alerts(pick).len();
    EvalRow {
        scenario: labels.scenario.clone(),
        class: classes(labels),
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
}

/// Rows of a run: the compared pipeline's (`compare`: its name and outcome), each ML
/// detector's of the served pipeline (with its model's ROC AUC from `scores`, identity →
/// mean score per detector in `detectors` order) and the served pipeline's as a whole.
pub fn rows(
    labels: &Labels,
    compare: Option<(&str, &Outcome)>,
    served: (&str, &Outcome),
    detectors: &[String],
    scores: &BTreeMap<String, Vec<f64>>,
) -> Vec<EvalRow> {
    let seen: BTreeSet<&String> = scores
        .keys()
        .chain(served.1.alerted.keys())
        .chain(served.1.attackers.iter())
        .collect();
    let identities = seen.len().max(labels.fleet.devices);
    let mut out = Vec::new();
    if let Some((name, o)) = compare {
        out.push(row(labels, identities, name, o, &|_| true, None));
    }
    for (i, name) in detectors.iter().enumerate() {
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for (k, v) in scores {
            let x = v.get(i).copied().unwrap_or(f64::NAN);
            if x.is_nan() {
                continue;
            }
            if served.1.attackers.contains(k) {
                pos.push(x);
            } else {
                neg.push(x);
            }
        }
        let a = auc(&pos, &neg);
        out.push(row(labels, identities, name, served.1, &|d| d == name, a));
    }
    out.push(row(labels, identities, served.0, served.1, &|_| true, None));
    out
}

/// The rows as a Markdown table.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_is_the_chance_a_positive_outscores_a_negative() {
        assert_eq!(auc(&[2.0, 3.0], &[1.0, 0.0]), Some(1.0));
        assert_eq!(auc(&[0.0], &[1.0]), Some(0.0));
        assert_eq!(auc(&[1.0], &[1.0]), Some(0.5));
        assert_eq!(auc(&[2.0, 0.5], &[1.0]), Some(0.5));
        assert_eq!(auc(&[], &[1.0]), None);
    }
}
