use warden_config::{DetectorAction, Direction};

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
        direction: Direction::Up,
        min_rel_std: 0.001,
        resolution_floor: true,
        rebaseline_after: 20,
        period_ms: 0,
        buckets: 24,
        season_alpha: 0.1,
        season_warmup: 2,
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

fn series_config() -> EwmaZscoreConfig {
    EwmaZscoreConfig {
        alpha: 0.05,
        threshold: 4.0,
        warmup_samples: 30,
        min_value: 0.0,
        min_std: 1e-9,
        direction: Direction::Both,
        ..config()
    }
}

#[test]
fn a_mostly_zero_key_is_scored_in_steps_of_its_resolution() {
    let mut d = EwmaZscore::new(series_config());
    for t in 0..300 {
        let v = if t % 37 == 5 {
            1.0 + (t % 3) as f64
        } else {
            0.0
        };
        assert!(obs(&mut d, t, v).is_none(), "benign {v} at {t}");
    }
    // After a long run of zeros the variance is tiny, but one step is 1: a 2 scores ~2.
    for t in 300..340 {
        obs(&mut d, t, 0.0);
    }
    let two = d.score(&Sample::of(0, &[2.0], 340 * S));
    assert!(two > 1.0 && two < 3.0, "{two}");
    let f = obs(&mut d, 340, 30.0).expect("a blip fires");
    assert!(f.score > 20.0 && f.score < 40.0, "{}", f.score);
    assert_eq!(f.baseline["std"], 1.0);
}

#[test]
fn a_flat_key_scores_its_first_change_at_most_one_over_min_rel_std() {
    let mut d = EwmaZscore::new(series_config());
    for t in 0..100 {
        obs(&mut d, t, 0.0);
    }
    let z = d.score(&Sample::of(0, &[5.0], 100 * S));
    assert!((z - 1000.0).abs() < 1e-6, "{z}");
}

#[test]
fn a_sustained_shift_becomes_the_baseline_unless_rebaselining_is_off() {
    for (after, stops) in [(20, true), (0, false)] {
        let mut d = EwmaZscore::new(EwmaZscoreConfig {
            rebaseline_after: after,
            ..series_config()
        });
        for t in 0..100 {
            obs(&mut d, t, 10.0 + (t % 2) as f64);
        }
        let fired: Vec<bool> = (100..200)
            .map(|t| obs(&mut d, t, 30.0 + (t % 2) as f64).is_some())
            .collect();
        assert!(fired[0]);
        let last = fired.iter().rposition(|f| *f).expect("fired");
        if stops {
            assert_eq!(last, 19, "re-baselined after 20 firing samples");
            let mean = d.save_key(0).expect("state")["mean"]
                .as_f64()
                .unwrap_or(0.0);
            assert!((mean - 30.5).abs() < 0.5, "{mean}");
        } else {
            assert_eq!(last, 99, "fires for as long as the shift lasts");
        }
    }
}

#[test]
fn drops_fire_down_or_both_and_the_score_is_two_sided() {
    let mut up = EwmaZscore::new(config());
    let mut both = EwmaZscore::new(EwmaZscoreConfig {
        direction: Direction::Both,
        ..config()
    });
    let mut down = EwmaZscore::new(EwmaZscoreConfig {
        direction: Direction::Down,
        ..config()
    });
    for t in 0..20 {
        for d in [&mut up, &mut both, &mut down] {
            obs(d, t, 20.0 + (t % 2) as f64);
        }
    }
    let drop = Sample::of(0, &[2.0], 20 * S);
    assert!(up.peek(&drop).is_none());
    let f = both.peek(&drop).expect("both fires on a drop");
    assert!(
        f.explanation.contains("below its moving mean"),
        "{}",
        f.explanation
    );
    assert!(down.peek(&drop).is_some());
    assert!(down.peek(&Sample::of(0, &[60.0], 20 * S)).is_none());
    let (lo, hi) = (up.score(&drop), up.score(&Sample::of(0, &[39.0], 0)));
    assert!(lo > 15.0 && (lo - hi).abs() < 0.1, "{lo} {hi}");
}

#[test]
fn a_daily_pattern_is_learned_and_an_anomaly_in_phase_fires() {
    const MIN: i64 = 60 * S;
    let mut d = EwmaZscore::new(EwmaZscoreConfig {
        period_ms: 86_400_000,
        ..series_config()
    });
    // 15 min samples, amplitude 10 around 100, noise ±0.5.
    let day = |i: i64| {
        let phase = (i % 96) as f64 / 96.0;
        100.0 + 10.0 * (std::f64::consts::TAU * phase).sin() + if i % 2 == 0 { 0.5 } else { -0.5 }
    };
    for i in 0..96 * 5 {
        assert!(
            d.observe(&Sample::of(0, &[day(i)], i * 15 * MIN)).is_none() || i < 96 * 2,
            "fired at {i} on day {}",
            i / 96
        );
    }
    // At the trough (phase 0.75), the level of the peak: normal for the day, not the hour.
    let i = 96 * 5 + 72;
    let f = d
        .peek(&Sample::of(0, &[110.0], i * 15 * MIN))
        .expect("fires against the seasonal mean");
    assert_eq!(f.baseline["seasonal"], 1.0);
    assert!(
        f.explanation
            .contains("above its seasonal mean for this time 90"),
        "{}",
        f.explanation
    );
    assert!(d.peek(&Sample::of(0, &[90.0], i * 15 * MIN)).is_none());
    assert!(d.state_bytes() < 1024, "{}", d.state_bytes());
}

#[test]
fn state_saved_before_the_new_fields_still_loads() {
    let mut d = EwmaZscore::new(config());
    d.load_key(
        3,
        serde_json::json!({"mean": 1.0, "var": 0.0, "samples": 20}),
    )
    .expect("old state");
    assert!(d.peek(&Sample::of(3, &[50.0], 0)).is_some());
}

#[test]
fn state_per_key_stays_small() {
    let slot = std::mem::size_of::<Option<Baseline>>();
    let season = 24 * 8;
    assert!(slot + season <= 1024, "{slot} + {season}");
    println!("ewma_zscore slot {slot} B");
}

/// A flood seen through a 10 s window arrives as a ramp of partial windows, each under
/// `min_value` at first: learned in full, they inflated the variance until the flood no longer
/// stood out (a device at 8 requests/s, 100× its pace, never fired).
#[test]
fn a_flood_ramping_through_its_window_fires_once_past_min_value() {
    let mut d = EwmaZscore::new(EwmaZscoreConfig {
        alpha: 0.02,
        threshold: 8.0,
        warmup_samples: 40,
        rebaseline_after: 0,
        period_ms: 86_400_000,
        ..config()
    });
    let half = S / 2;
    // One request every 15 s seen through a 10 s window, sampled every 500 ms.
    for i in 0..600i64 {
        let t = i * half;
        let v = if (t / S) % 15 < 10 { 0.1 } else { 0.0 };
        assert!(d.observe(&Sample::of(0, &[v], t)).is_none());
    }
    // 8 requests/s from now on: the window's rate climbs 0.4 per sample.
    let fired = (0..40i64).find_map(|j| {
        let v = (0.4 * j as f64).min(8.0);
        d.observe(&Sample::of(0, &[v], (600 + j) * half))
            .map(|f| (j, f.value))
    });
    let (j, v) = fired.expect("the flood fires");
    assert!(v >= 5.0 && j <= 14, "fired at sample {j}, value {v}");
}
