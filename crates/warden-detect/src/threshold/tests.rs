use warden_config::DetectorAction;

use super::*;

const S: i64 = 1_000_000_000;

fn config(alarm_after: u32, clear_after: u32) -> ThresholdConfig {
    ThresholdConfig {
        name: "errors".into(),
        feature: "error_ratio".into(),
        above: Some(0.5),
        below: None,
        alarm_after,
        clear_after,
        mode: None,
        action: DetectorAction::Throttle,
        weight: 1.0,
    }
}

fn obs(d: &mut Threshold, t: i64, v: f64) -> bool {
    d.observe(&Sample::of(0, &[v], t * S)).is_some()
}

#[test]
fn alarms_after_consecutive_breaches_and_explains() {
    let mut d = Threshold::new(config(3, 2));
    assert!(!obs(&mut d, 0, 0.9));
    assert!(!obs(&mut d, 1, 0.9));
    assert!(!obs(&mut d, 2, 0.1), "the run is broken");
    assert!(!obs(&mut d, 3, 0.9));
    assert!(!obs(&mut d, 4, 0.9));
    assert!(
        d.peek(&Sample::of(0, &[0.8], 5 * S)).is_some(),
        "the third breach would alarm"
    );
    let f = d.observe(&Sample::of(0, &[0.8], 5 * S)).expect("alarm");
    assert_eq!((f.score, f.threshold), (0.8, 0.5));
    assert_eq!(f.baseline["consecutive"], 3.0);
    assert_eq!(
        f.explanation,
        "error_ratio 0.80 is above 0.50 for 3 consecutive sample(s) (alarm after 3, clear after 2)"
    );
}

#[test]
fn clears_only_after_consecutive_normal_samples() {
    let mut d = Threshold::new(config(2, 2));
    assert!(!obs(&mut d, 0, 0.9));
    assert!(obs(&mut d, 1, 0.9));
    assert!(!obs(&mut d, 2, 0.1), "normal samples never fire");
    assert!(
        obs(&mut d, 3, 0.9),
        "one normal sample does not clear: fires at once"
    );
    assert!(!obs(&mut d, 4, 0.1));
    assert!(!obs(&mut d, 5, 0.1));
    assert!(!obs(&mut d, 6, 0.9), "cleared: needs two breaches again");
    assert!(obs(&mut d, 7, 0.9));
}

#[test]
fn below_bounds_and_untouched_keys_cost_nothing() {
    let mut d = Threshold::new(ThresholdConfig {
        above: None,
        below: Some(1.0),
        ..config(1, 1)
    });
    for t in 0..10 {
        assert!(!obs(&mut d, t, 5.0));
    }
    assert!(d.is_empty(), "no state for keys that never breached");
    let f = d.observe(&Sample::of(0, &[0.2], 0)).expect("below fires");
    assert!(f.explanation.contains("below 1"));
    assert_eq!(d.len(), 1);
    assert!(!obs(&mut d, 11, 2.0));
    assert!(d.is_empty());
}

#[test]
fn the_score_is_two_sided_with_both_bounds() {
    let d = Threshold::new(ThresholdConfig {
        above: Some(10.0),
        below: Some(2.0),
        ..config(1, 1)
    });
    let score = |v: f64| d.score(&Sample::of(0, &[v], 0));
    assert_eq!(score(20.0), 2.0);
    assert_eq!(
        score(1.0),
        2.0,
        "half the lower bound scores like twice the upper"
    );
    assert_eq!(score(5.0), 0.5);
    assert_eq!(score(f64::NAN), 0.0);
}
