use warden_config::DetectorAction;

use super::*;

const S: i64 = 1_000_000_000;

fn config(direction: Direction) -> CusumConfig {
    CusumConfig {
        name: "drift".into(),
        feature: "request_rate".into(),
        alpha: 0.0,
        k: 0.5,
        h: 5.0,
        warmup_samples: 20,
        min_std: 0.1,
        direction,
        min_rel_std: 0.001,
        // The tests alternate 9 and 11 to get a standard deviation of exactly 1; their step
        // (2) would floor it at 2. `resolution_floor_bounds_integer_keys` covers the floor.
        resolution_floor: false,
        rebaseline_after: 20,
        period_ms: 0,
        buckets: 24,
        season_alpha: 0.1,
        season_warmup: 2,
        mode: None,
        action: DetectorAction::Alert,
        weight: 1.0,
    }
}

fn obs(d: &mut Cusum, t: i64, v: f64) -> Option<Firing> {
    d.observe(&Sample::of(0, &[v], t * S))
}

/// 10 ± 1 alternating: mean 10, std 1.
fn warm(d: &mut Cusum) {
    for t in 0..20 {
        assert!(obs(d, t, if t % 2 == 0 { 9.0 } else { 11.0 }).is_none());
    }
}

#[test]
fn warmup_learns_a_plain_mean_and_variance() {
    let mut d = Cusum::new(config(Direction::Both));
    for t in 0..19 {
        assert!(obs(&mut d, t, if t % 2 == 0 { 9.0 } else { 1000.0 }).is_none());
    }
    let mut d = Cusum::new(config(Direction::Both));
    warm(&mut d);
    let s = d.save_key(0).expect("state");
    let (mean, var) = (s["mean"].as_f64(), s["var"].as_f64());
    assert!(mean.is_some_and(|m| (m - 10.0).abs() < 1e-9), "{s}");
    assert!(var.is_some_and(|v| (v - 1.0).abs() < 1e-9), "{s}");
}

#[test]
fn a_small_persistent_shift_accumulates_until_it_fires() {
    let mut d = Cusum::new(config(Direction::Both));
    warm(&mut d);
    // +1.4 std each sample: each adds 0.9 to the upper sum; z-score alone would never fire.
    let mut fired_at = None;
    for t in 20..40 {
        if let Some(f) = obs(&mut d, t, 11.4) {
            fired_at = Some(t);
            assert!(f.score > 5.0 && f.score <= 6.0, "{}", f.score);
            assert_eq!(f.threshold, 5.0);
            assert!(
                f.explanation.starts_with("request_rate shifted up"),
                "{}",
                f.explanation
            );
            assert!((f.baseline["mean"] - 10.0).abs() < 1e-9);
            break;
        }
    }
    assert_eq!(
        fired_at,
        Some(25),
        "sum 0.9, 1.8, …, 5.4 > 5 on the sixth sample"
    );
    // The sums restart after firing.
    assert_eq!(d.save_key(0).expect("state")["hi"], 0.0);
}

#[test]
fn shifts_down_fire_in_both_mode_but_not_up_mode() {
    let mut both = Cusum::new(config(Direction::Both));
    let mut up = Cusum::new(config(Direction::Up));
    warm(&mut both);
    warm(&mut up);
    let mut fired = false;
    for t in 20..30 {
        fired |= obs(&mut both, t, 8.0).is_some_and(|f| f.explanation.contains("shifted down"));
        assert!(obs(&mut up, t, 8.0).is_none());
    }
    assert!(fired);
}

#[test]
fn noise_within_the_slack_never_accumulates() {
    let mut d = Cusum::new(config(Direction::Both));
    warm(&mut d);
    for t in 20..1000 {
        let v = 10.0 + 0.4 * if t % 2 == 0 { 1.0 } else { -1.0 };
        assert!(obs(&mut d, t, v).is_none());
    }
    assert!(d.score(&Sample::of(0, &[10.0], 0)) < 0.5);
}

#[test]
fn peek_does_not_accumulate() {
    let mut d = Cusum::new(config(Direction::Both));
    warm(&mut d);
    for _ in 0..100 {
        assert!(d.peek(&Sample::of(0, &[12.0], 0)).is_none());
    }
    assert!(
        d.peek(&Sample::of(0, &[16.0], 0)).is_some(),
        "one step of 6 − 0.5 > 5"
    );
}

#[test]
fn partial_windows_are_scored_but_not_learned() {
    let mut d = Cusum::new(config(Direction::Both));
    for t in 0..30 {
        assert!(
            d.observe(&Sample::of(0, &[t as f64], t * S).partial())
                .is_none()
        );
    }
    assert!(
        d.is_empty(),
        "a filling window (counts rising) teaches nothing"
    );
    warm(&mut d);
    assert!(
        d.observe(&Sample::of(0, &[30.0], 30 * S).partial())
            .is_some(),
        "a warm baseline still fires on a partial window"
    );
    assert_eq!(d.save_key(0).expect("state")["samples"], 20, "not learned");
}

#[test]
fn clears_once_the_level_returns() {
    let mut d = Cusum::new(config(Direction::Both));
    warm(&mut d);
    let fired = (20..40).filter(|t| obs(&mut d, *t, 11.4).is_some()).count();
    assert!(fired >= 1, "the shift fires");
    // Back to the baseline: the sums restarted at the last firing and now drain to 0.
    for t in 40..200 {
        let v = if t % 2 == 0 { 9.0 } else { 11.0 };
        assert!(
            obs(&mut d, t, v).is_none(),
            "fired at {t} after the shift ended"
        );
    }
    let s = d.save_key(0).expect("state");
    assert!(
        s["hi"].as_f64().is_some_and(|h| h < 1.0),
        "upper sum drained: {s}"
    );
    assert!(d.score(&Sample::of(0, &[10.0], 0)) < 1.0);
}

#[test]
fn resolution_floor_bounds_integer_keys() {
    let mut d = Cusum::new(CusumConfig {
        resolution_floor: true,
        min_std: 1e-9,
        h: 10.0,
        alpha: 0.005,
        ..config(Direction::Both)
    });
    // A mostly-zero count: the occasional 1 or 2 is one or two steps, not a shift.
    for t in 0..600 {
        let v = if t % 31 == 7 {
            1.0 + (t % 2) as f64
        } else {
            0.0
        };
        assert!(obs(&mut d, t, v).is_none(), "benign {v} at {t}");
    }
    assert!(obs(&mut d, 600, 30.0).is_some(), "a blip of 30 steps fires");
}

#[test]
fn a_lasting_shift_fires_a_few_times_then_is_the_new_level() {
    let mut d = Cusum::new(config(Direction::Both));
    warm(&mut d);
    let fired: Vec<usize> = (20..200)
        .filter(|t| obs(&mut d, *t as i64, if t % 2 == 0 { 12.0 } else { 14.0 }).is_some())
        .collect();
    assert!(fired.len() >= 2 && fired.len() <= 8, "{fired:?}");
    assert!(fired.iter().all(|t| *t < 45), "{fired:?}");
    let mean = d.save_key(0).expect("state")["mean"]
        .as_f64()
        .unwrap_or(0.0);
    assert!((mean - 13.0).abs() < 0.5, "{mean}");
    // Off: it keeps firing.
    let mut d = Cusum::new(CusumConfig {
        rebaseline_after: 0,
        ..config(Direction::Both)
    });
    warm(&mut d);
    let late = (20..200)
        .filter(|t| obs(&mut d, *t as i64, if t % 2 == 0 { 12.0 } else { 14.0 }).is_some())
        .filter(|t| *t > 150)
        .count();
    assert!(late > 5, "{late}");
}

#[test]
fn state_per_key_stays_small() {
    let slot = std::mem::size_of::<Option<State>>();
    assert!(slot <= 128, "{slot}");
    println!("cusum slot {slot} B");
}

/// A daily cycle of ±10 around 100 (noise ±1), sampled every 15 minutes.
fn daily(t: i64) -> f64 {
    let day = 96.0;
    let phase = (t % 96) as f64 / day * std::f64::consts::TAU;
    100.0 + 10.0 * phase.sin() + if t % 2 == 0 { 1.0 } else { -1.0 }
}

#[test]
fn a_seasonal_baseline_keeps_the_daily_cycle_quiet_and_catches_a_level_wrong_for_the_hour() {
    const MIN15: i64 = 900;
    let seasonal = CusumConfig {
        period_ms: 86_400_000,
        alpha: 0.01,
        resolution_floor: true,
        ..config(Direction::Both)
    };
    let run = |c: CusumConfig| {
        let mut d = Cusum::new(c);
        let mut benign = 0;
        // Five days of the cycle: after the seasonal warm-up (two days), nothing fires.
        for t in 0..5 * 96 {
            if let Some(f) = obs(&mut d, t * MIN15, daily(t))
                && t >= 3 * 96
            {
                eprintln!("{t}: {}", f.explanation);
                benign += 1;
            }
        }
        // Day six: at the trough (06:00 is the sine's peak, 18:00 its trough) the series
        // holds the daily mean, normal for the day, 10 above normal for the hour.
        let trough = 5 * 96 + 72;
        let caught = (trough - 4..trough + 4).any(|t| {
            obs(
                &mut d,
                t * MIN15,
                100.0 + if t % 2 == 0 { 1.0 } else { -1.0 },
            )
            .is_some()
        });
        (benign, caught, d)
    };
    let (benign, caught, d) = run(seasonal.clone());
    assert_eq!(benign, 0, "the cycle is normal");
    assert!(caught, "a level wrong for the hour fires");
    let state = d.save_key(0).expect("state");
    assert!(
        state["season"]["buckets"]
            .as_array()
            .is_some_and(|b| b.len() == 24)
    );
    // Without it, the cycle itself keeps firing (it is a shift every half day).
    let (benign, _, _) = run(CusumConfig {
        period_ms: 0,
        ..seasonal
    });
    assert!(benign > 0, "{benign}");
}
