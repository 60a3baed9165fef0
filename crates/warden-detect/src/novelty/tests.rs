use warden_config::{DetectorAction, NoveltyField};

use super::*;

const S: i64 = 1_000_000_000;

fn config(min_new: u32, max_values: u32) -> NoveltyConfig {
    NoveltyConfig {
        name: "new_route".into(),
        window: "identity_10s".into(),
        field: NoveltyField::Route,
        baseline_ms: 60_000,
        min_baseline_events: 5,
        min_new,
        max_values,
        mode: None,
        action: DetectorAction::Quarantine,
        weight: 1.0,
    }
}

fn hash(v: &str) -> u64 {
    // Any stable hash will do for the detector; the engine uses its own.
    v.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn event(d: &mut Novelty, key: KeyId, t: i64, value: &str) -> Option<Firing> {
    d.on_event(&EventView {
        key,
        ts: t,
        value,
        hash: hash(value),
    })
}

#[test]
fn values_of_the_baseline_period_are_learned() {
    let mut d = Novelty::new(config(1, 64), 10_000);
    for (i, route) in ["telemetry", "config", "telemetry", "firmware"]
        .iter()
        .enumerate()
    {
        assert!(event(&mut d, 0, i as i64 * S, route).is_none());
    }
    // 59 s after the first event: still the baseline period (time), whatever the count.
    for i in 0..20 {
        assert!(event(&mut d, 0, 50 * S + i, "state").is_none());
    }
    // After it, known values are fine...
    assert!(event(&mut d, 0, 70 * S, "firmware").is_none());
    assert!(event(&mut d, 0, 71 * S, "state").is_none());
    // ...and a new one fires once, with its name in the explanation.
    let f = event(&mut d, 0, 72 * S, "admin").expect("new route fires");
    assert_eq!((f.score, f.threshold), (1.0, 1.0));
    assert_eq!(f.baseline["known_values"], 4.0);
    assert!(
        f.explanation.starts_with(
            "1 route value(s) never seen before for this key after its baseline (admin) within 10 s"
        ),
        "{}",
        f.explanation
    );
    assert!(event(&mut d, 0, 80 * S, "admin").is_none(), "learned");
}

#[test]
fn min_new_counts_new_values_within_one_window() {
    let mut d = Novelty::new(config(3, 64), 10_000);
    for i in 0..10 {
        event(&mut d, 0, i * S, "telemetry");
    }
    let t0 = 100 * S;
    assert!(event(&mut d, 0, t0, "a").is_none());
    assert!(event(&mut d, 0, t0 + S, "b").is_none());
    assert!(
        event(&mut d, 0, t0 + 20 * S, "c").is_none(),
        "a and b left the window"
    );
    assert!(event(&mut d, 0, t0 + 21 * S, "d").is_none());
    let f = event(&mut d, 0, t0 + 22 * S, "e").expect("three new within 10 s");
    assert_eq!(f.score, 3.0);
    assert!(f.explanation.contains("(c, d, e)"), "{}", f.explanation);
}

#[test]
fn a_key_needs_enough_events_and_keys_are_independent() {
    let mut d = Novelty::new(config(1, 64), 10_000);
    assert!(event(&mut d, 0, 0, "telemetry").is_none());
    // Long after its first event but only 3 events: still in its baseline.
    assert!(event(&mut d, 0, 100 * S, "x").is_none());
    assert!(event(&mut d, 0, 101 * S, "y").is_none());
    for i in 0..5 {
        event(&mut d, 1, i, "telemetry");
    }
    assert!(
        event(&mut d, 1, 200 * S, "x").is_some(),
        "key 1 is past its baseline"
    );
    assert!(
        event(&mut d, 0, 200 * S, "z").is_none(),
        "key 0 has 4 events, needs more than 5"
    );
    assert!(event(&mut d, 0, 201 * S, "w").is_none());
    assert!(event(&mut d, 0, 202 * S, "v").is_some());
}

#[test]
fn the_cap_bounds_memory_and_new_values_still_fire() {
    let mut d = Novelty::new(config(1, 2), 10_000);
    for i in 0..10 {
        event(&mut d, 0, i, if i % 2 == 0 { "a" } else { "b" });
    }
    assert!(event(&mut d, 0, 100 * S, "c").is_some());
    assert!(
        event(&mut d, 0, 101 * S, "c").is_some(),
        "not learned at the cap: still new"
    );
    let saved = d.save_key(0).expect("state");
    assert_eq!(saved["values"].as_array().map(Vec::len), Some(2));
    d.forget(0);
    assert!(d.is_empty());
    let mut e = Novelty::new(config(1, 2), 10_000);
    e.load_key(0, saved).expect("restore");
    assert!(
        event(&mut e, 0, 102 * S, "a").is_none(),
        "restored known values"
    );
}
