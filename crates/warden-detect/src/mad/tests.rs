use warden_config::{DetectorAction, Direction};

use super::*;

const S: i64 = 1_000_000_000;

fn config(direction: Direction) -> MadConfig {
    MadConfig {
        name: "bytes_mad".into(),
        feature: "bytes_out".into(),
        history: 20,
        threshold: 6.0,
        warmup_samples: 10,
        min_mad: 1.0,
        min_value: 0.0,
        direction,
        min_rel_mad: 0.001,
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

fn obs(d: &mut Mad, t: i64, v: f64) -> Option<Firing> {
    d.observe(&Sample::of(0, &[v], t * S))
}

#[test]
fn median_of_odd_and_even_lengths() {
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    assert_eq!(median(&mut [7.0]), 7.0);
}

#[test]
fn warms_up_then_fires_with_median_and_mad_in_the_evidence() {
    let mut d = Mad::new(config(Direction::Up));
    for t in 0..9 {
        assert!(d.observe(&Sample::of(1, &[100.0], t * S)).is_none());
    }
    assert!(
        d.observe(&Sample::of(1, &[5000.0], 9 * S)).is_none(),
        "still warming up"
    );
    // 95..=105 spread evenly: median 100, MAD 3.
    for t in 0..20 {
        assert!(obs(&mut d, t, 95.0 + ((t * 7) % 11) as f64).is_none());
    }
    let f = obs(&mut d, 20, 400.0).expect("fires");
    assert_eq!(f.baseline["median"], 100.0);
    assert_eq!(f.baseline["mad"], 3.0);
    assert!(
        (f.score - 300.0 / (3.0 * 1.4826)).abs() < 1e-6,
        "{}",
        f.score
    );
    assert!(
        f.explanation
            .contains("robust deviations above its median 100"),
        "{}",
        f.explanation
    );
    // Not learned: still fires; back to normal does not.
    assert!(obs(&mut d, 21, 400.0).is_some());
    assert!(obs(&mut d, 22, 105.0).is_none());
    // The warm-up outlier of key 1 was learned, but its median did not move.
    assert_eq!(d.save_key(1).expect("state")["median"], 100.0);
}

#[test]
fn direction_down_fires_on_drops_only() {
    let mut d = Mad::new(config(Direction::Down));
    for t in 0..15 {
        obs(&mut d, t, 100.0 + (t % 3) as f64);
    }
    assert!(d.peek(&Sample::of(0, &[1000.0], 0)).is_none());
    let f = d.peek(&Sample::of(0, &[0.0], 0)).expect("a drop fires");
    assert!(f.explanation.contains("below its median"));
    let mut both = Mad::new(config(Direction::Both));
    for t in 0..15 {
        obs(&mut both, t, 100.0 + (t % 3) as f64);
    }
    assert!(both.peek(&Sample::of(0, &[1000.0], 0)).is_some());
    assert!(both.peek(&Sample::of(0, &[0.0], 0)).is_some());
}

#[test]
fn min_mad_floors_constant_keys_and_history_rolls() {
    let mut d = Mad::new(config(Direction::Up));
    for t in 0..30 {
        obs(&mut d, t, 10.0);
    }
    assert!(
        d.peek(&Sample::of(0, &[15.0], 0)).is_none(),
        "5 / min_mad 1 < 6"
    );
    assert!(d.peek(&Sample::of(0, &[17.0], 0)).is_some());
    // A level change is learned once it fills half the history.
    for t in 30..41 {
        obs(&mut d, t, 5.0);
    }
    assert_eq!(d.save_key(0).expect("state")["median"], 5.0);
    assert_eq!(d.score(&Sample::of(0, &[5.0], 0)), 0.0);
}

fn series(direction: Direction) -> MadConfig {
    MadConfig {
        history: 200,
        threshold: 5.0,
        warmup_samples: 30,
        min_mad: 1e-9,
        ..config(direction)
    }
}

#[test]
fn a_zero_mad_falls_back_to_the_mean_deviation_and_the_resolution() {
    let mut d = Mad::new(series(Direction::Both));
    for t in 0..300 {
        let v = if t % 29 == 3 {
            1.0 + (t % 3) as f64
        } else {
            0.0
        };
        assert!(obs(&mut d, t, v).is_none(), "benign {v} at {t}");
    }
    let h = d.save_key(0).expect("state");
    assert_eq!(
        (h["median"].as_f64(), h["mad"].as_f64()),
        (Some(0.0), Some(0.0))
    );
    let three = d.score(&Sample::of(0, &[3.0], 0));
    assert!((three - 3.0).abs() < 1e-9, "one step is 1: {three}");
    let f = obs(&mut d, 300, 25.0).expect("a blip fires");
    assert_eq!(f.baseline["scale"], 1.0);
}

#[test]
fn a_sustained_shift_moves_the_history_with_its_spread() {
    let mut d = Mad::new(series(Direction::Both));
    for t in 0..100 {
        obs(&mut d, t, 100.0 + (t % 5) as f64);
    }
    let before = d.save_key(0).expect("state")["mad"].clone();
    let fired: Vec<bool> = (100..160)
        .map(|t| obs(&mut d, t, 50.0 + (t % 5) as f64).is_some())
        .collect();
    assert_eq!(fired.iter().rposition(|f| *f), Some(19), "{fired:?}");
    let h = d.save_key(0).expect("state");
    assert!(
        (h["median"].as_f64().unwrap_or(0.0) - 52.0).abs() <= 1.0,
        "{h}"
    );
    assert_eq!(h["mad"], before);
    assert!(d.peek(&Sample::of(0, &[52.0], 0)).is_none());
    assert!(
        d.peek(&Sample::of(0, &[100.0], 0)).is_some(),
        "the old level is now off"
    );
}

/// A daily cycle in 15-minute samples: 100 ± 10, alternating noise of ± 1.
fn daily(t: i64) -> f64 {
    let phase = (t % 96) as f64 / 96.0 * std::f64::consts::TAU;
    100.0 + 10.0 * phase.sin() + if t % 2 == 0 { 1.0 } else { -1.0 }
}

#[test]
fn a_seasonal_baseline_catches_a_level_normal_for_the_day_but_wrong_for_the_hour() {
    const MIN15: i64 = 900;
    let seasonal = MadConfig {
        period_ms: 86_400_000,
        ..series(Direction::Both)
    };
    let run = |c: MadConfig| {
        let mut d = Mad::new(c);
        let mut benign = 0;
        for t in 0..5 * 96 {
            if obs(&mut d, t * MIN15, daily(t)).is_some() {
                benign += 1;
            }
        }
        // Day six, around the trough (18:00): the daily mean, 10 above normal for the hour.
        let trough = 5 * 96 + 72;
        let caught = (trough - 4..trough + 4).find_map(|t| {
            obs(
                &mut d,
                t * MIN15,
                100.0 + if t % 2 == 0 { 1.0 } else { -1.0 },
            )
        });
        (benign, caught, d)
    };
    let (benign, caught, d) = run(seasonal.clone());
    assert_eq!(benign, 0, "the cycle is normal");
    let f = caught.expect("a level wrong for the hour fires");
    assert_eq!(f.baseline["seasonal"], 1.0);
    assert!(
        f.explanation
            .contains("above its seasonal median for this time"),
        "{}",
        f.explanation
    );
    assert!(f.baseline["median"] < 95.0, "{:?}", f.baseline);
    let state = d.save_key(0).expect("state");
    assert_eq!(state["resid"]["ring"].as_array().map(Vec::len), Some(200));
    // Without it the cycle's own spread hides the level: nothing fires.
    let (benign, caught, _) = run(MadConfig {
        period_ms: 0,
        ..seasonal
    });
    assert_eq!((benign, caught.is_some()), (0, false));
}

#[test]
fn state_per_key_stays_small() {
    let slot = std::mem::size_of::<Option<History>>();
    assert!(slot + 200 * 4 <= 1024, "{slot}");
    // With a seasonal baseline: a second ring and a mean per phase.
    assert!(slot + 2 * 200 * 4 + 24 * 8 <= 2048, "{slot}");
    println!("mad slot {slot} B");
}
