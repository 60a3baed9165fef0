use warden_config::DetectorAction;

use super::*;

const S: i64 = 1_000_000_000;

fn detector() -> PeerPercentile {
    PeerPercentile::new(PeerPercentileConfig {
        name: "bytes_vs_peers".into(),
        feature: "bytes_out".into(),
        peers: PeerGroup::DeviceType,
        quantile: 0.99,
        factor: 3.0,
        min_peers: 20,
        min_value: 1000.0,
        tail_peers: 5,
        mode: None,
        action: DetectorAction::Quarantine,
        weight: 1.0,
    })
}

fn sample(key: KeyId, value: &[f64], peer: u32) -> Sample<'_> {
    Sample {
        key,
        values: value,
        at: 0,
        peer,
        peer_name: if peer == 1 {
            "device_type=camera"
        } else {
            "device_type=sensor"
        },
        full: true,
    }
}

/// One round: keys 0..n of group `peer` with values from `f`.
fn round(d: &mut PeerPercentile, n: u32, peer: u32, f: impl Fn(u32) -> f64) -> Vec<KeyId> {
    let mut fired = Vec::new();
    for k in 0..n {
        let v = [f(k)];
        if d.observe(&sample(k + peer * 1000, &v, peer)).is_some() {
            fired.push(k);
        }
    }
    fired
}

#[test]
fn interpolated_quantile_leaving_one_out() {
    let v: Vec<f64> = (1..=101).map(f64::from).collect();
    assert_eq!(PeerPercentile::quantile(&v, None, 0.99), 100.0);
    assert_eq!(PeerPercentile::quantile(&v, None, 1.0), 101.0);
    assert_eq!(PeerPercentile::quantile(&v, None, 0.5), 51.0);
    assert_eq!(
        PeerPercentile::quantile(&v, Some(100), 1.0),
        100.0,
        "the max left out"
    );
    assert_eq!(PeerPercentile::quantile(&[1.0, 2.0, 10.0], None, 0.75), 6.0);
    assert_eq!(
        PeerPercentile::quantile(&[1.0, 2.0, 10.0], Some(0), 0.5),
        6.0
    );
}

#[test]
fn compares_a_key_with_its_own_group_of_the_previous_round() {
    let mut d = detector();
    // Round 1: no reference yet.
    assert!(round(&mut d, 50, 0, |k| 2000.0 + f64::from(k)).is_empty());
    assert!(round(&mut d, 50, 1, |k| 200_000.0 + f64::from(k)).is_empty());
    d.end_round(S);
    // Round 2: sensors around 2 kB; one sends 50 kB. Cameras send 200 kB: they are compared
    // with cameras, not with sensors.
    let fired = round(&mut d, 50, 0, |k| if k == 7 { 50_000.0 } else { 2000.0 });
    assert_eq!(fired, vec![7]);
    assert!(round(&mut d, 50, 1, |_| 200_000.0).is_empty());
    let f = d.peek(&sample(7, &[50_000.0], 0)).expect("still above");
    // Its own 2007 of round 1 left out: 49 others, p99 lowered to keep 5 above it (p89.8).
    assert!((f.baseline["peer_quantile"] - 2044.102).abs() < 1e-3);
    assert_eq!(f.baseline["peers"], 49.0);
    assert_eq!(f.threshold, 3.0);
    assert!(
        f.explanation.starts_with(
            "bytes_out 50000 is 24.5× the p89.8 (2044.1) of its 49 other peers (device_type=sensor)"
        ),
        "{}",
        f.explanation
    );
    // The firing value did not enter the next reference.
    d.end_round(2 * S);
    let (q, n, _) = d.reference(0, 999).expect("reference");
    assert_eq!((q, n), (2000.0, 49));
}

#[test]
fn small_groups_and_small_values_never_fire() {
    let mut d = detector();
    round(&mut d, 10, 0, |_| 2000.0);
    d.end_round(S);
    assert!(
        d.peek(&sample(0, &[1e9], 0)).is_none(),
        "10 peers < min_peers"
    );
    let mut d = detector();
    round(&mut d, 30, 0, |_| 100.0);
    d.end_round(S);
    assert!(d.peek(&sample(0, &[900.0], 0)).is_none(), "below min_value");
    assert!(d.peek(&sample(0, &[1000.0], 0)).is_some());
    assert!((d.score(&sample(0, &[1000.0], 0)) - 10.0).abs() < 1e-9);
    // A round with no values empties the group.
    d.end_round(2 * S);
    assert!(d.is_empty());
}

#[test]
fn clears_when_the_key_is_back_among_its_peers() {
    let mut d = detector();
    round(&mut d, 50, 0, |_| 2000.0);
    d.end_round(S);
    assert_eq!(
        round(&mut d, 50, 0, |k| if k == 3 { 40_000.0 } else { 2000.0 }),
        vec![3]
    );
    d.end_round(2 * S);
    // Next round key 3 is normal again: nobody fires, and the reference is still the peers'.
    assert!(round(&mut d, 50, 0, |_| 2100.0).is_empty());
    d.end_round(3 * S);
    let (q, n, _) = d.reference(0, 999).expect("reference");
    assert_eq!((q, n), (2100.0, 50));
    assert!(d.peek(&sample(3, &[2100.0], 0)).is_none());
}

#[test]
fn a_key_is_never_its_own_reference_nor_are_a_few_accomplices() {
    let mut d = detector();
    // 30 sensors at 2 kB; keys 0..3 exfiltrate 1 MB each in round 1 (not yet compared).
    let big = |k: u32| if k < 3 { 1e6 } else { 2000.0 };
    assert!(round(&mut d, 30, 0, big).is_empty());
    d.end_round(S);
    // Old nearest-rank p99 of 30 would be 1 MB (an accomplice, or the key itself): nobody
    // fires. Now the reference keeps 5 peers above it: 2 kB, and all three fire.
    assert_eq!(round(&mut d, 30, 0, big), vec![0, 1, 2]);
    let (q, n, quantile) = d.reference(0, 0).expect("reference");
    assert_eq!((q, n), (2000.0, 29));
    assert!((quantile - (1.0 - 5.0 / 29.0)).abs() < 1e-12);
    // Score: the multiple of the reference.
    assert!((d.score(&sample(0, &[1e6], 0)) - 500.0).abs() < 1e-9);
}
