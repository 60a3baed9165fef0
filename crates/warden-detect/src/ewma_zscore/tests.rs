use super::*;

fn config() -> EwmaZscoreConfig {
    EwmaZscoreConfig {
        name: "rate_spike".into(),
        feature: "request_rate".into(),
        alpha: 0.1,
        threshold: 6.0,
        warmup_samples: 10,
        min_value: 5.0,
        min_std: 0.5,
        mode: None,
    }
}

#[test]
fn silent_during_warmup() {
    let mut d = EwmaZscore::new(config());
    for _ in 0..9 {
        assert!(d.observe("k", 1.0).is_none());
    }
    assert!(
        d.observe("k", 100.0).is_none(),
        "9 samples: still warming up"
    );
}

#[test]
fn fires_on_spike_with_explanation_and_does_not_learn_it() {
    let mut d = EwmaZscore::new(config());
    for i in 0..20 {
        assert!(d.observe("k", 1.0 + f64::from(i % 2) * 0.2).is_none());
    }
    let f = d.observe("k", 50.0).expect("spike fires");
    assert!(f.score > 6.0);
    assert_eq!(f.value, 50.0);
    assert_eq!(f.threshold, 6.0);
    let mean = f.baseline["mean"];
    assert!((mean - 1.1).abs() < 0.1, "mean {mean}");
    assert_eq!(f.baseline["std"], 0.5, "std floored at min_std");
    assert_eq!(f.baseline["samples"], 20.0);
    // The spike did not move the baseline: it still fires.
    assert!(d.observe("k", 50.0).is_some());
    assert!(d.peek("k", 50.0).is_some());
}

#[test]
fn min_value_suppresses_small_keys() {
    let mut d = EwmaZscore::new(config());
    for _ in 0..20 {
        d.observe("k", 0.01);
    }
    assert!(
        d.peek("k", 4.0).is_none(),
        "huge z-score but below min_value"
    );
    assert!(d.observe("k", 6.0).is_some());
}

#[test]
fn gradual_growth_is_learned_and_keys_are_independent() {
    let mut d = EwmaZscore::new(config());
    let mut v = 5.0;
    for _ in 0..200 {
        assert!(
            d.observe("k", v).is_none(),
            "slow drift at {v} must not fire"
        );
        v *= 1.01;
    }
    assert!(
        d.peek("other", 1000.0).is_none(),
        "unknown key has no baseline"
    );
    d.forget("k");
    assert!(d.is_empty());
}

#[test]
fn peek_does_not_learn() {
    let mut d = EwmaZscore::new(config());
    for _ in 0..20 {
        d.observe("k", 1.0);
    }
    for _ in 0..100 {
        assert!(d.peek("k", 3.0).is_none());
    }
    assert!(d.observe("k", 50.0).is_some());
}
