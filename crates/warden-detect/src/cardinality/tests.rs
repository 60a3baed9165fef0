use warden_config::DetectorAction;

use super::*;

const S: i64 = 1_000_000_000;

fn config(limit: Option<f64>, factor: Option<f64>) -> CardinalityConfig {
    CardinalityConfig {
        name: "enumeration".into(),
        feature: "distinct_paths".into(),
        limit,
        factor,
        alpha: 0.1,
        warmup_samples: 10,
        min_value: 8.0,
        mode: None,
        action: DetectorAction::Quarantine,
        weight: 1.0,
    }
}

fn obs(d: &mut Cardinality, t: i64, v: f64) -> Option<Firing> {
    d.observe(&Sample::of(0, &[v], t * S))
}

#[test]
fn an_absolute_limit_fires_from_the_first_sample() {
    let mut d = Cardinality::new(config(Some(20.0), None));
    assert!(obs(&mut d, 0, 20.0).is_none());
    let f = obs(&mut d, 1, 57.0).expect("above the limit");
    assert_eq!((f.score, f.threshold), (57.0, 20.0));
    assert_eq!(
        f.explanation,
        "distinct_paths 57 is above the limit 20 (usually 0)"
    );
    assert!(d.is_empty(), "limit-only keeps no state");
}

#[test]
fn a_factor_over_the_own_baseline_fires_after_warmup() {
    let mut d = Cardinality::new(config(None, Some(4.0)));
    for t in 0..40 {
        assert!(obs(&mut d, t, 3.0).is_none());
    }
    assert!(
        d.peek(&Sample::of(0, &[7.0], 0)).is_none(),
        "below min_value 8"
    );
    let f = obs(&mut d, 40, 30.0).expect("10× the usual 3");
    assert!(f.score > 9.0 && f.score < 10.5, "{}", f.score);
    assert_eq!(f.threshold, 4.0);
    assert!(f.explanation.contains("× its usual 3"), "{}", f.explanation);
    // Not learned.
    assert!(obs(&mut d, 41, 30.0).is_some());
    // A key that showed a burst of 50 while warming up is judged against its bursts (50 over
    // √4 = 25): 30 is within them, 150 is not.
    let mut d = Cardinality::new(config(None, Some(4.0)));
    for t in 0..9 {
        assert!(obs(&mut d, t, 3.0).is_none());
    }
    assert!(obs(&mut d, 9, 50.0).is_none(), "warming up: learned");
    for t in 10..40 {
        assert!(obs(&mut d, t, 3.0).is_none());
    }
    assert!(obs(&mut d, 40, 30.0).is_none(), "within its bursts");
    let f = obs(&mut d, 41, 150.0).expect("far above its bursts");
    // Its usual value is the decayed peak over √4 (≈ 18 after 30 samples), not its mean of 3.
    let usual = f.baseline["peak"] / 2.0;
    assert!(usual > 15.0 && usual < 25.0, "{}", f.explanation);
    assert!((f.score - 150.0 / usual).abs() < 1e-6, "{}", f.explanation);
    // Growth in steps the baseline follows never fires.
    let mut d = Cardinality::new(config(None, Some(4.0)));
    let mut v = 3.0;
    for t in 0..300 {
        assert!(obs(&mut d, t, v).is_none(), "{v}");
        v *= 1.02;
    }
}

#[test]
fn clears_when_the_value_returns_and_partial_windows_are_not_learned() {
    let mut d = Cardinality::new(config(Some(20.0), Some(4.0)));
    for t in 0..20 {
        assert!(obs(&mut d, t, 3.0).is_none());
    }
    let f = obs(&mut d, 20, 40.0).expect("above the limit");
    assert!(
        f.explanation.contains("above the limit 20 (usually 3)"),
        "{}",
        f.explanation
    );
    assert_eq!(f.baseline["samples"], 20.0);
    assert!(obs(&mut d, 21, 3.0).is_none(), "back to normal: cleared");
    assert!(d.peek(&Sample::of(0, &[4.0], 0)).is_none());
    // A window still filling (counts rising) scores but teaches the mean nothing; its count,
    // a lower bound, can only raise the peak.
    let before = d.save_key(0).expect("state");
    for t in 22..30 {
        assert!(
            d.observe(&Sample::of(0, &[10.0], t * S).partial())
                .is_none()
        );
    }
    let after = d.save_key(0).expect("state");
    assert_eq!(after["mean"], before["mean"]);
    assert_eq!(after["samples"], before["samples"]);
    assert_eq!(after["peak"], 10.0);
}

#[test]
fn a_bursty_key_is_judged_against_its_bursts_a_steady_one_against_its_pace() {
    let mut cfg = config(None, Some(6.0));
    cfg.alpha = 0.002;
    cfg.min_value = 10.0;
    // A session of 10 every 60 samples, 0 in between: a mean near 0.2, bursts of 10.
    let mut bursty = Cardinality::new(cfg.clone());
    let mut fired = 0;
    for t in 0..600 {
        let v = if t % 60 < 2 { 10.0 } else { 0.0 };
        fired += usize::from(obs(&mut bursty, t, v).is_some());
    }
    assert_eq!(fired, 0, "its own sessions are not an attack");
    // A steady key at 2 that jumps to 14 fires, and so does the bursty one at 6× its bursts.
    let mut steady = Cardinality::new(cfg);
    for t in 0..100 {
        assert!(obs(&mut steady, t, 2.0).is_none());
    }
    assert!(obs(&mut steady, 100, 14.0).is_some());
    assert!(obs(&mut bursty, 600, 60.0).is_some());
}
