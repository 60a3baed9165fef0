use warden_config::DetectorAction;

use super::*;

const S: i64 = 1_000_000_000;

fn detector() -> AuthFailures {
    AuthFailures::new(AuthFailuresConfig {
        name: "stuffing".into(),
        failures: "auth_failed".into(),
        requests: "requests".into(),
        min_failures: 20.0,
        min_ratio: 0.5,
        mode: None,
        action: DetectorAction::Quarantine,
        weight: 1.0,
    })
}

/// (failures, requests) of key 0's window ending at second `t`.
fn sample(values: &[f64], t: i64) -> Sample<'_> {
    Sample::of(0, values, t * S)
}

#[test]
fn needs_no_warmup_the_window_holds_the_counts() {
    // Stateless: the very first sample of a never-seen key can fire, and nothing is kept.
    let mut d = detector();
    assert!(d.observe(&sample(&[25.0, 25.0], 0)).is_some());
    assert!(d.is_empty());
    assert_eq!(d.state_bytes(), 0);
    assert_eq!(d.save_key(0), None);
    // A partial window (a key seen for the first time) is scored like any other.
    assert!(d.observe(&sample(&[25.0, 30.0], 1).partial()).is_some());
}

#[test]
fn fires_on_many_failures_that_are_most_of_the_traffic() {
    let mut d = detector();
    assert!(
        d.observe(&sample(&[19.0, 19.0], 0)).is_none(),
        "below min_failures"
    );
    assert!(
        d.observe(&sample(&[30.0, 100.0], 1)).is_none(),
        "30 % of requests"
    );
    let f = d.observe(&sample(&[42.0, 45.0], 2)).expect("fires");
    assert_eq!((f.score, f.value, f.threshold), (42.0, 42.0, 20.0));
    assert!(d.peek(&sample(&[42.0, 45.0], 2)).is_some());
    assert_eq!(d.score(&sample(&[10.0, 10.0], 2)), 0.5);
    assert!(d.observe(&sample(&[f64::NAN, 1.0], 3)).is_none());
    assert!(
        d.observe(&sample(&[30.0], 3)).is_none(),
        "no requests input"
    );
}

#[test]
fn explains_with_the_counts_and_the_ratio() {
    let mut d = detector();
    let f = d.observe(&sample(&[42.0, 45.0], 0)).expect("fires");
    assert_eq!(
        f.explanation,
        "42 failed authentication(s) in the window (93 % of 45 requests); fires at 20 and 50 %"
    );
    assert_eq!(f.baseline["requests"], 45.0);
    assert!((f.baseline["failure_ratio"] - 42.0 / 45.0).abs() < 1e-12);
    assert_eq!(f.baseline["min_ratio"], 0.5);
    // Failures without any counted request (a window of failures only): 100 %.
    let f = d.observe(&sample(&[20.0, 0.0], 1)).expect("fires");
    assert_eq!(f.baseline["failure_ratio"], 1.0);
}

#[test]
fn clears_when_the_failures_leave_the_window() {
    let mut d = detector();
    assert!(d.observe(&sample(&[42.0, 45.0], 0)).is_some());
    assert!(d.observe(&sample(&[30.0, 40.0], 1)).is_some());
    assert!(
        d.observe(&sample(&[12.0, 20.0], 2)).is_none(),
        "the burst is leaving the window"
    );
    assert!(
        d.observe(&sample(&[0.0, 45.0], 3)).is_none(),
        "the window holds only good requests"
    );
    assert!(d.peek(&sample(&[0.0, 45.0], 3)).is_none());
}
