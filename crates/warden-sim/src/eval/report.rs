//! The evaluation as Markdown tables.

use std::fmt::Write;

use super::{EvalReport, Latency};

fn lat(l: &Latency) -> String {
    match (l.p50_ms, l.p99_ms) {
        (Some(a), Some(b)) => format!("{} / {}", ms(a), ms(b)),
        _ => "—".into(),
    }
}

fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0} s", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The report as Markdown: one row per attack (a benign-only run has one row), then one row
/// per attack class.
pub fn markdown(report: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| scenario | attack | class | expected | detected | recall | alert p50 / p99 | \
         quarantine p50 / p99 | through before quarantine | false quarantines |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for sc in &report.scenarios {
        let fq = if sc.false_quarantines.is_empty() {
            "0".to_string()
        } else {
            let who: Vec<String> = sc
                .false_quarantines
                .iter()
                .map(|f| f.subject.to_string())
                .collect();
            format!("**{}**: {}", who.len(), who.join(", "))
        };
        if sc.attacks.is_empty() {
            let _ = writeln!(
                s,
                "| {} | — | benign | — | — | — | — | — | — | {fq} |",
                sc.scenario
            );
        }
        for a in &sc.attacks {
            let mark = if a.as_expected { "" } else { " ⚠" };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {}{mark} | {}/{} ({:.0} %) | {} | {} | {} of {} | {fq} |",
                sc.scenario,
                a.name,
                a.class,
                yes(a.expected_detected),
                yes(a.detected),
                a.detected_attackers,
                a.attackers,
                a.recall * 100.0,
                lat(&a.time_to_alert),
                lat(&a.time_to_quarantine),
                a.through_before_quarantine,
                a.sent,
            );
        }
    }
    if !report.by_class.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| class | attacks detected | recall | alert p50 / p99 | quarantine p50 / p99 | through before quarantine |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for c in &report.by_class {
            let _ = writeln!(
                s,
                "| {} | {}/{} | {}/{} ({:.0} %) | {} | {} | {} |",
                c.class,
                c.detected,
                c.attacks,
                c.detected_attackers,
                c.attackers,
                c.recall * 100.0,
                lat(&c.time_to_alert),
                lat(&c.time_to_quarantine),
                c.through_before_quarantine,
            );
        }
    }
    let problems: Vec<String> = report.scenarios.iter().flat_map(|s| s.problems()).collect();
    if !problems.is_empty() {
        let _ = writeln!(s);
        for p in problems {
            let _ = writeln!(s, "- ⚠ {p}");
        }
    }
    s
}
