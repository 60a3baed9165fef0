use warden_config::DetectorAction;

use super::*;

const S: i64 = 1_000_000_000;

fn config() -> EwmaZscoreConfig {
    EwmaZscoreConfig {
        name: "rate_spike".into(),
        feature: "request_rate".into(),
        alpha: 0.1,
        threshold: 6.0,
        warmup_samples: 10,
        min_value: 5.0,
        min_std: 0.5,
        min_deviation: 0.0,
        mode: None,
        action: DetectorAction::Quarantine,
        weight: 1.0,
    }
}

/// Feed `v` as the sample of key 0 at time `t` seconds.
fn obs(d: &mut EwmaZscore, t: i64, v: f64) -> Option<Firing> {
    d.observe(&Sample::of(0, &[v], t * S))
}

#[test]
fn silent_during_warmup() {
    let mut d = EwmaZscore::new(config());
    for t in 0..9 {
        assert!(obs(&mut d, t, 1.0).is_none());
    }
    assert!(
        obs(&mut d, 9, 100.0).is_none(),
        "9 samples: still warming up"
    );
}

#[test]
fn fires_on_spike_with_explanation_and_does_not_learn_it() {
    let mut d = EwmaZscore::new(config());
    for t in 0..20 {
        assert!(obs(&mut d, t, 1.0 + (t % 2) as f64 * 0.2).is_none());
    }
    let f = obs(&mut d, 20, 50.0).expect("spike fires");
    assert!(f.score > 6.0);
    assert_eq!(f.value, 50.0);
    assert_eq!(f.threshold, 6.0);
    let mean = f.baseline["mean"];
    assert!((mean - 1.1).abs() < 0.1, "mean {mean}");
    assert_eq!(f.baseline["std"], 0.5, "std floored at min_std");
    assert_eq!(f.baseline["samples"], 20.0);
    assert!(
        f.explanation
            .starts_with("request_rate 50 is 97.8 standard deviations above its moving mean 1.1"),
        "{}",
        f.explanation
    );
    // The spike did not move the baseline: it still fires.
    assert!(obs(&mut d, 21, 50.0).is_some());
    assert!(d.peek(&Sample::of(0, &[50.0], 22 * S)).is_some());
}

#[test]
fn clears_when_the_value_returns_to_normal() {
    let mut d = EwmaZscore::new(config());
    for t in 0..20 {
        obs(&mut d, t, 1.0);
    }
    assert!(obs(&mut d, 20, 40.0).is_some());
    assert!(obs(&mut d, 21, 1.2).is_none(), "back to normal: no firing");
}

#[test]
fn min_value_and_min_deviation_suppress_small_keys() {
    let mut d = EwmaZscore::new(config());
    for t in 0..20 {
        obs(&mut d, t, 0.01);
    }
    assert!(
        d.peek(&Sample::of(0, &[4.0], 20 * S)).is_none(),
        "huge z-score but below min_value"
    );
    assert!(obs(&mut d, 21, 6.0).is_some());
    let mut d = EwmaZscore::new(EwmaZscoreConfig {
        min_deviation: 10.0,
        ..config()
    });
    for t in 0..20 {
        obs(&mut d, t, 0.01);
    }
    assert!(
        d.peek(&Sample::of(0, &[8.0], 20 * S)).is_none(),
        "only 8 above the mean"
    );
    assert!(d.peek(&Sample::of(0, &[12.0], 20 * S)).is_some());
}

#[test]
fn gradual_growth_is_learned_and_keys_are_independent() {
    let mut d = EwmaZscore::new(config());
    let mut v = 5.0;
    for t in 0..200 {
        assert!(
            obs(&mut d, t, v).is_none(),
            "slow drift at {v} must not fire"
        );
        v *= 1.01;
    }
    assert!(
        d.peek(&Sample::of(1, &[1000.0], 0)).is_none(),
        "unknown key has no baseline"
    );
    d.forget(0);
    assert!(d.is_empty());
}

#[test]
fn peek_does_not_learn_and_nan_is_skipped() {
    let mut d = EwmaZscore::new(config());
    for t in 0..20 {
        obs(&mut d, t, 1.0);
    }
    for _ in 0..100 {
        assert!(d.peek(&Sample::of(0, &[3.0], 0)).is_none());
    }
    assert!(obs(&mut d, 20, f64::NAN).is_none());
    assert_eq!(d.save_key(0).expect("state")["samples"], 20);
    assert!(obs(&mut d, 21, 50.0).is_some());
}

#[test]
fn state_round_trips() {
    let mut d = EwmaZscore::new(config());
    for t in 0..20 {
        obs(&mut d, t, 1.0);
    }
    let saved = d.save_key(0).expect("state");
    let mut e = EwmaZscore::new(config());
    e.load_key(7, saved).expect("load");
    assert!(e.peek(&Sample::of(7, &[50.0], 0)).is_some());
    assert!(e.load_key(8, serde_json::json!({"mean": "x"})).is_err());
}
