use warden_event::SubjectKind;

use super::*;
use crate::labels::{AttackLabel, AttackerLabel, FleetLabel, RunMode, RunSummary};
use crate::scenario::{Expect, ScenarioExpect};

const S: i64 = 1_000_000_000;

fn attacker(id: &str, first_sent: i64, refused: Option<i64>) -> AttackerLabel {
    AttackerLabel {
        subjects: vec![
            Subject::identity(id),
            Subject {
                kind: SubjectKind::Ip,
                value: format!("10.0.0.{}", id.len()),
            },
        ],
        sent: 100,
        first_sent_ns: Some(first_sent),
        through: 60,
        through_before_refused: 50,
        refused: 40,
        first_refused_ns: refused,
    }
}

fn labels(start: i64, detected_expected: bool) -> Labels {
    Labels {
        v: crate::LABELS_VERSION,
        scenario: "botnet_flood".into(),
        description: "t".into(),
        seed: 1,
        mode: RunMode::Live,
        target: None,
        fleet: FleetLabel {
            devices: 10,
            by_type: Default::default(),
            fingerprint: "x".into(),
        },
        started_at: start,
        ended_at: start + 100 * S,
        expect: ScenarioExpect {
            max_false_quarantines: 0,
        },
        attacks: vec![AttackLabel {
            name: "botnet".into(),
            class: AttackClass::BotnetFlood,
            start_ns: start + 40 * S,
            end_ns: start + 80 * S,
            expect: Expect {
                detected: detected_expected,
                reason: (!detected_expected).then(|| "no detector".into()),
                min_recall: None,
                quarantined: detected_expected,
            },
            attackers: vec![
                attacker("a", start + 41 * S, Some(start + 42 * S)),
                attacker("b", start + 40 * S, Some(start + 43 * S)),
            ],
            victims: vec![Subject::identity("victim")],
        }],
        summary: RunSummary::default(),
    }
}

fn finding(subject: Subject, ts: i64, quarantine: bool) -> Finding {
    Finding {
        subject,
        ts,
        detector: "rate_spike".into(),
        quarantine,
    }
}

#[test]
fn detection_recall_latencies_and_false_quarantines() {
    let t0 = 1_000 * S;
    let run = labels(t0, true);
    let f = vec![
        // Attacker a, by identity, 500 ms after its first request.
        finding(Subject::identity("a"), t0 + 41 * S + S / 2, true),
        // Attacker b, by IP, 2 s after.
        finding(
            Subject {
                kind: SubjectKind::Ip,
                value: "10.0.0.1".into(),
            },
            t0 + 42 * S,
            true,
        ),
        // A benign device: a false quarantine, and an alert-only on another.
        finding(Subject::identity("sensor-1"), t0 + 50 * S, true),
        finding(Subject::identity("sensor-2"), t0 + 51 * S, false),
        // The victim: neither.
        finding(Subject::identity("victim"), t0 + 52 * S, true),
        // Before the run: not this run's.
        finding(Subject::identity("sensor-3"), t0 - S, true),
    ];
    let report = evaluate(&[run], &f, DEFAULT_GRACE_NS);
    let sc = &report.scenarios[0];
    let a = &sc.attacks[0];
    assert!(a.detected && a.as_expected);
    assert_eq!((a.detected_attackers, a.attackers), (2, 2));
    assert_eq!(a.recall, 1.0);
    assert_eq!(a.time_to_alert.n, 2);
    assert_eq!(a.time_to_alert.p50_ms, Some(500.0));
    assert_eq!(a.time_to_alert.p99_ms, Some(2000.0));
    assert_eq!(a.time_to_quarantine.p50_ms, Some(1000.0));
    assert_eq!(a.time_to_quarantine.p99_ms, Some(3000.0));
    assert_eq!(a.through_before_quarantine, 100);
    assert_eq!(sc.false_quarantines.len(), 1);
    assert_eq!(
        sc.false_quarantines[0].subject,
        Subject::identity("sensor-1")
    );
    assert_eq!(sc.false_alerts, 1);
    let problems = sc.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("sensor-1"), "{problems:?}");
    let md = markdown(&report);
    assert!(md.contains("| botnet_flood | botnet | botnet_flood | yes | yes | 2/2 (100 %) | 500 ms / 2.00 s | 1.00 s / 3.00 s | 100 of 200 |"), "{md}");
    assert_eq!(report.by_class[0].detected, 1);
}

#[test]
fn an_undetected_attack_that_gets_detected_asks_to_flip_the_expectation() {
    let t0 = 5_000 * S;
    let run = labels(t0, false);
    let f = vec![finding(Subject::identity("a"), t0 + 45 * S, false)];
    let report = evaluate(std::slice::from_ref(&run), &f, DEFAULT_GRACE_NS);
    let a = &report.scenarios[0].attacks[0];
    assert!(a.detected && !a.as_expected);
    assert_eq!(a.recall, 0.5);
    let problems = report.scenarios[0].problems();
    assert!(
        problems[0].contains("is now detected")
            && problems[0].contains(
                "flip its `expect.detected` to true in tests/scenarios/botnet_flood.toml"
            ),
        "{problems:?}"
    );
    // Not detected at all: as expected.
    let quiet = evaluate(&[run], &[], DEFAULT_GRACE_NS);
    assert!(quiet.scenarios[0].problems().is_empty());
    assert!(!quiet.scenarios[0].attacks[0].detected);
}

#[test]
fn an_attack_expected_quarantined_that_is_only_alerted_on_is_a_problem() {
    let t0 = 7_000 * S;
    let mut run = labels(t0, true);
    for x in &mut run.attacks[0].attackers {
        x.first_refused_ns = None;
    }
    let f = vec![
        finding(Subject::identity("a"), t0 + 45 * S, false),
        finding(Subject::identity("b"), t0 + 45 * S, false),
    ];
    let report = evaluate(&[run], &f, DEFAULT_GRACE_NS);
    let a = &report.scenarios[0].attacks[0];
    assert!(a.detected && !a.as_expected);
    let problems = report.scenarios[0].problems();
    assert!(
        problems[0].contains("2 attackers detected but only 0 refused"),
        "{problems:?}"
    );
}

#[test]
fn quarantine_of_an_attacker_before_its_attack_is_false_and_runs_do_not_share_findings() {
    let t0 = 10_000 * S;
    let first = labels(t0, true);
    let second = labels(t0 + 110 * S, true);
    let f = vec![
        finding(Subject::identity("a"), t0 + 10 * S, true),
        finding(Subject::identity("b"), t0 + 60 * S, true),
        // In the first run's grace period but after the second started: the second's.
        finding(Subject::identity("a"), t0 + 160 * S, true),
    ];
    let report = evaluate(&[second, first], &f, DEFAULT_GRACE_NS);
    let (r1, r2) = (&report.scenarios[0], &report.scenarios[1]);
    assert_eq!(r1.started_at, t0, "runs in time order");
    assert_eq!(r1.false_quarantines.len(), 1, "{:?}", r1.false_quarantines);
    assert_eq!(r1.attacks[0].detected_attackers, 1);
    assert_eq!(r2.attacks[0].detected_attackers, 1);
    assert!(r2.false_quarantines.is_empty());
}

#[test]
fn latency_percentiles_are_nearest_rank() {
    let l = Latency::of((1..=100).map(|i| i * 1_000_000).collect());
    assert_eq!(
        (l.n, l.p50_ms, l.p99_ms, l.max_ms),
        (100, Some(50.0), Some(99.0), Some(100.0))
    );
    let one = Latency::of(vec![7_000_000]);
    assert_eq!((one.p50_ms, one.p99_ms), (Some(7.0), Some(7.0)));
    assert_eq!(Latency::of(vec![]).p50_ms, None);
}
