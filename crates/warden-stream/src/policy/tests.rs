use warden_config::{Combine, DecisionConfig, DetectorAction, Mode};
use warden_event::{Action, Decision, Subject};

use super::*;

const S: i64 = 1_000_000_000;

fn config() -> DecisionConfig {
    let mut c = DecisionConfig::with_ttl(60);
    c.cooldown_s = 30;
    c.allowlist = vec!["vip".into(), "ip:10.0.0.9".into()];
    c.max_quarantines_per_minute = 10;
    c
}

fn src(detector: &str, action: DetectorAction, weight: f64) -> Source<'_> {
    Source {
        detector,
        mode: Mode::Enforce,
        action,
        weight,
        population: 1000,
        group: None,
    }
}

fn q(d: &str) -> Source<'_> {
    src(d, DetectorAction::Quarantine, 1.0)
}

fn enforced(v: &Verdict) -> Option<(Action, i64, u32)> {
    match v {
        Verdict::Enforce {
            action,
            until,
            offense,
            ..
        } => Some((*action, *until, *offense)),
        _ => None,
    }
}

fn decision(subject: Subject, action: Action, at: i64, until: Option<i64>) -> Decision {
    Decision {
        v: warden_event::SCHEMA_VERSION,
        id: format!("{at}"),
        subject,
        action,
        until,
        reason: String::new(),
        detector: "dashboard".into(),
        score: 0.0,
        evidence: serde_json::Value::Null,
        decided_at: at,
        limit: None,
    }
}

#[test]
fn quarantines_once_until_expiry_then_escalates() {
    let mut p = Policy::new(config());
    let s = Subject::identity("d1");
    assert_eq!(
        enforced(&p.decide(&s, &q("det"), true, 0)),
        Some((Action::Quarantine, 60 * S, 1))
    );
    assert_eq!(
        p.decide(&s, &q("det"), true, S),
        Verdict::Suppress,
        "live quarantine"
    );
    // Repeat offender: twice the TTL, then four times, capped at max.
    assert_eq!(
        enforced(&p.decide(&s, &q("det"), true, 61 * S)),
        Some((Action::Quarantine, 61 * S + 120 * S, 2))
    );
    assert_eq!(
        enforced(&p.decide(&s, &q("det"), true, 200 * S)),
        Some((Action::Quarantine, 200 * S + 240 * S, 3))
    );
    let mut c = config();
    c.max_quarantine_ttl_s = 100;
    let p2 = Policy::new(c);
    assert_eq!(p2.quarantine_ttl_ns(5), 100 * S, "capped");
    // Offenses are forgotten after the offense memory.
    let mut c = config();
    c.offense_memory_s = 100;
    let mut p3 = Policy::new(c);
    p3.decide(&s, &q("det"), true, 0);
    assert_eq!(
        enforced(&p3.decide(&s, &q("det"), true, 500 * S)).map(|e| e.2),
        Some(1)
    );
}

#[test]
fn quarantines_learned_from_the_bus_count_as_offenses() {
    let mut p = Policy::new(config());
    let s = Subject::identity("d1");
    p.apply(&decision(s.clone(), Action::Quarantine, 0, Some(60 * S)));
    assert_eq!(p.decide(&s, &q("det"), true, S), Verdict::Suppress);
    assert_eq!(
        enforced(&p.decide(&s, &q("det"), true, 61 * S)).map(|e| e.2),
        Some(2)
    );
}

#[test]
fn shadow_allowlist_cooldown_and_cap_alert_only() {
    let mut c = config();
    c.max_quarantines_per_minute = 1;
    let mut p = Policy::new(c);
    let shadow = Source {
        mode: Mode::Shadow,
        ..q("det")
    };
    assert_eq!(
        p.decide(&Subject::identity("a"), &shadow, true, 0),
        Verdict::AlertOnly("shadow mode".into())
    );
    assert_eq!(
        p.decide(&Subject::identity("a"), &shadow, true, S),
        Verdict::Suppress,
        "repeated alert suppressed"
    );
    assert_eq!(
        p.decide(&Subject::identity("vip"), &q("det"), true, 0),
        Verdict::AlertOnly("allowlisted".into())
    );
    let ip = Subject {
        kind: warden_event::SubjectKind::Ip,
        value: "10.0.0.9".into(),
    };
    assert_eq!(
        p.decide(&ip, &q("det"), true, 0),
        Verdict::AlertOnly("allowlisted".into())
    );
    assert_eq!(
        p.decide(&Subject::identity("r"), &q("det"), false, 0),
        Verdict::AlertOnly("subject kind cannot be enforced on".into())
    );
    p.apply(&decision(Subject::identity("b"), Action::Release, 0, None));
    assert_eq!(
        p.decide(&Subject::identity("b"), &q("det"), true, 10 * S),
        Verdict::AlertOnly("released recently (cooldown)".into())
    );
    assert!(enforced(&p.decide(&Subject::identity("c"), &q("det"), true, 0)).is_some());
    assert_eq!(
        p.decide(&Subject::identity("d"), &q("det"), true, S),
        Verdict::AlertOnly("quarantine rate cap reached".into())
    );
    assert!(
        enforced(&p.decide(&Subject::identity("d"), &q("det2"), true, 61 * S)).is_some(),
        "the cap is per minute"
    );
}

#[test]
fn a_release_lifts_a_quarantine_and_old_decisions_do_not_undo_it() {
    let mut p = Policy::new(config());
    let s = Subject::identity("d1");
    p.decide(&s, &q("det"), true, 0);
    p.apply(&decision(s.clone(), Action::Release, 5 * S, None));
    // A replay of the older quarantine changes nothing.
    p.apply(&decision(s.clone(), Action::Quarantine, 0, Some(60 * S)));
    assert_eq!(
        p.decide(&s, &q("det"), true, 10 * S),
        Verdict::Suppress,
        "alerted on by `det` 10 s ago"
    );
    assert_eq!(
        p.decide(&s, &q("det2"), true, 10 * S),
        Verdict::AlertOnly("released recently (cooldown)".into())
    );
    assert!(
        enforced(&p.decide(&s, &q("det"), true, 40 * S)).is_some(),
        "after the cooldown"
    );
}

#[test]
fn throttle_is_softer_and_quarantine_escalates_over_it() {
    let mut p = Policy::new(config());
    let s = Subject::identity("d1");
    let t = src("probing", DetectorAction::Throttle, 1.0);
    assert_eq!(
        enforced(&p.decide(&s, &t, true, 0)),
        Some((Action::Throttle, 300 * S, 1))
    );
    assert_eq!(
        p.decide(&s, &t, true, S),
        Verdict::Suppress,
        "already throttled"
    );
    assert_eq!(
        enforced(&p.decide(&s, &q("flood"), true, 2 * S)).map(|e| e.0),
        Some(Action::Quarantine),
        "a quarantine-level firing escalates"
    );
    let alert = src("new_ip", DetectorAction::Alert, 1.0);
    assert_eq!(
        p.decide(&Subject::identity("x"), &alert, true, 0),
        Verdict::AlertOnly("the detectors only alert".into())
    );
}

#[test]
fn k_of_n_needs_distinct_detectors_within_the_evidence_window() {
    let mut c = config();
    c.combine = Combine::KOfN;
    c.k = 2;
    c.evidence_window_s = 60;
    let mut p = Policy::new(c);
    let s = Subject::identity("d1");
    assert_eq!(
        p.decide(&s, &q("a"), true, 0),
        Verdict::AlertOnly("not enough evidence yet (1 of 2 detectors)".into())
    );
    assert_eq!(
        p.decide(&s, &q("a"), true, S),
        Verdict::Suppress,
        "same detector again"
    );
    let v = p.decide(&s, &src("b", DetectorAction::Throttle, 1.0), true, 2 * S);
    match v {
        Verdict::Enforce {
            action, detectors, ..
        } => {
            assert_eq!(action, Action::Quarantine, "the strongest action asked for");
            assert_eq!(detectors, ["a", "b"]);
        }
        other => panic!("{other:?}"),
    }
    // Evidence expires.
    let t = 1000 * S;
    assert!(enforced(&p.decide(&Subject::identity("e"), &q("a"), true, t)).is_none());
    assert!(enforced(&p.decide(&Subject::identity("e"), &q("b"), true, t + 61 * S)).is_none());
}

#[test]
fn weighted_scores_and_minimum_firings() {
    let mut c = config();
    c.combine = Combine::Weighted;
    c.min_score = 1.0;
    c.min_firings = 3;
    let mut p = Policy::new(c);
    let s = Subject::identity("d1");
    let half = |d: &'static str| src(d, DetectorAction::Quarantine, 0.5);
    assert!(
        matches!(p.decide(&s, &half("a"), true, 0), Verdict::AlertOnly(r) if r.contains("1 of 3 firings") && r.contains("weighted score 0.50 of 1"))
    );
    assert!(
        matches!(p.decide(&s, &half("b"), true, S), Verdict::AlertOnly(r) if r == "not enough evidence yet (2 of 3 firings)")
    );
    assert!(
        enforced(&p.decide(&s, &half("a"), true, 2 * S)).is_some(),
        "1.0 and 3 firings"
    );
}

#[test]
fn prune_forgets_expired_state() {
    let mut p = Policy::new(config());
    for i in 0..100 {
        p.decide(&Subject::identity(format!("d{i}")), &q("det"), true, 0);
    }
    p.prune(100_000 * S);
    assert!(p.active.is_empty() && p.evidence.is_empty() && p.last_alert.is_empty());
    assert!(p.offenses.is_empty());
}

/// Fleet context on `breadth`: 2 % of the window's keys (at least 5) within 120 s, 30 s grace.
fn fleet_config() -> DecisionConfig {
    let mut c = config();
    c.fleet_context = vec!["breadth".into()];
    c.fleet_share = 0.02;
    c.fleet_min_subjects = 5;
    c.fleet_grace_s = 30;
    c.evidence_window_s = 120;
    c.max_quarantines_per_minute = 1000;
    c
}

#[test]
fn fleet_context_holds_back_what_the_fleet_does_together() {
    let mut p = Policy::new(fleet_config());
    let breadth = src("breadth", DetectorAction::Throttle, 1.0);
    // One device, alone: watched for the grace, then throttled.
    let lone = Subject::identity("lone");
    assert!(matches!(
        p.decide(&lone, &breadth, true, 0),
        Verdict::AlertOnly(w) if w.starts_with("watching")
    ));
    assert!(matches!(
        p.decide(&lone, &breadth, true, 31 * S),
        Verdict::Enforce {
            action: Action::Throttle,
            ..
        }
    ));
    // A rollout: 30 of the 1000 keys fire within seconds; none is enforced on, even after the
    // grace, and the alerts say why.
    let mut verdicts = Vec::new();
    for round in 0..3i64 {
        for i in 0..30 {
            let s = Subject::identity(format!("dev-{i}"));
            verdicts.push(p.decide(&s, &breadth, true, 40 * S + round * 20 * S + i * S / 10));
        }
    }
    assert!(
        verdicts
            .iter()
            .all(|v| !matches!(v, Verdict::Enforce { .. })),
        "{verdicts:?}"
    );
    // One alert names the fleet-wide event; its other subjects are not alerted one by one
    // within the evidence window (the first subjects, before the event was fleet-wide, were
    // watched and alerted as such).
    let wide = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::AlertOnly(w) if w.starts_with("fleet-wide")))
        .count();
    assert_eq!(wide, 1, "{verdicts:?}");
    let alerts = verdicts
        .iter()
        .filter(|v| !matches!(v, Verdict::Suppress))
        .count();
    // Those watched before the event reached the fleet threshold (2 % of 1000 keys: 20),
    // and the one naming the event.
    assert!(alerts <= 21, "{alerts} alerts for one rollout");
    // After the evidence window a fleet-wide event still going on is named again.
    assert!(matches!(
        p.decide(&Subject::identity("dev-29"), &breadth, true, 200 * S),
        Verdict::AlertOnly(w) if w.starts_with("fleet-wide")
    ));
    // Another detector is not held back: a flood detector still quarantines at once.
    let flood = src("flood", DetectorAction::Quarantine, 1.0);
    assert!(matches!(
        p.decide(&Subject::identity("dev-3"), &flood, true, 100 * S),
        Verdict::Enforce {
            action: Action::Quarantine,
            ..
        }
    ));
}

/// Fleet context is judged in the subject's own peer group too: during a rollout of sensors,
/// an app user scraping (its group not taking part) is enforced after the grace, while a
/// small group that takes part (3 of 50 gateways) is held back with the fleet.
#[test]
fn a_fleet_wide_event_holds_back_only_the_groups_that_take_part() {
    let mut p = Policy::new(fleet_config());
    let in_group = |g: &'static str, size: usize| Source {
        group: Some((g, size)),
        ..src("breadth", DetectorAction::Throttle, 1.0)
    };
    // The rollout: 30 of 300 sensors, again and again.
    for round in 0..6i64 {
        for i in 0..30 {
            let s = Subject::identity(format!("sensor-{i}"));
            let v = p.decide(
                &s,
                &in_group("sensor", 300),
                true,
                round * 20 * S + i * S / 10,
            );
            assert!(!matches!(v, Verdict::Enforce { .. }), "{v:?}");
        }
        for i in 0..3 {
            let s = Subject::identity(format!("igw-{i}"));
            let v = p.decide(&s, &in_group("igw", 50), true, round * 20 * S + i * S);
            assert!(
                !matches!(v, Verdict::Enforce { .. }),
                "a group taking part: {v:?}"
            );
        }
    }
    // Meanwhile one app user of 500 fires on and on: watched, then throttled.
    let app = Subject::identity("user-7");
    let first = p.decide(&app, &in_group("app", 500), true, 10 * S);
    assert!(
        matches!(first, Verdict::AlertOnly(ref w) if w.starts_with("watching")),
        "{first:?}"
    );
    assert!(matches!(
        p.decide(&app, &in_group("app", 500), true, 45 * S),
        Verdict::Enforce {
            action: Action::Throttle,
            ..
        }
    ));
}

/// A release names the detectors whose decision it ended: only they are held back for the
/// cooldown; an independent detection of the subject is enforced at once.
#[test]
fn a_release_holds_back_the_released_detectors_only() {
    let mut p = Policy::new(config());
    let s = Subject::identity("dev-9");
    p.apply(&decision(s.clone(), Action::Quarantine, 0, Some(300 * S)));
    let mut release = decision(s.clone(), Action::Release, 5 * S, None);
    release.evidence = serde_json::json!({ "released_detectors": ["rate"] });
    p.apply(&release);
    assert_eq!(
        p.decide(&s, &q("rate"), true, 10 * S),
        Verdict::AlertOnly("released recently (cooldown)".into())
    );
    assert!(
        enforced(&p.decide(&s, &q("exfil"), true, 11 * S)).is_some(),
        "another detector is not held back"
    );
}
