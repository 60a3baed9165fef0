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
fn nearest_rank_quantile() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(PeerPercentile::quantile(&v, 0.99), 99.0);
    assert_eq!(PeerPercentile::quantile(&v, 1.0), 100.0);
    assert_eq!(PeerPercentile::quantile(&v, 0.001), 1.0);
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
    assert_eq!(f.baseline["peer_quantile"], 2049.0);
    assert_eq!(f.baseline["peers"], 50.0);
    assert_eq!(f.threshold, 3.0);
    assert!(
        f.explanation.starts_with(
            "bytes_out 50000 is 24.4× the p99 (2049) of its 50 peers (device_type=sensor)"
        ),
        "{}",
        f.explanation
    );
    // The firing value did not enter the next reference.
    d.end_round(2 * S);
    let (q, n) = d.reference(0).expect("reference");
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
    let (q, n) = d.reference(0).expect("reference");
    assert_eq!((q, n), (2100.0, 50));
    assert!(d.peek(&sample(3, &[2100.0], 0)).is_none());
}
