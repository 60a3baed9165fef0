//! Every model family on synthetic correlated data: calibrated near its target FPR, a vector
//! whose features are each plausible alone but not together scores above the threshold, the
//! explanation names the features that moved; the file round-trips and refuses tampering.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use warden_ml::{MlError, Model, ModelKind, Row, TrainOptions, train};

const FEATURES: [&str; 3] = ["requests", "bytes_out", "distinct_paths"];

/// Requests per minute 20–200; bytes ≈ 500 per request; distinct paths ≈ requests / 10.
fn benign(n: usize, seed: u64) -> Vec<Row> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let req: f64 = rng.random_range(20.0..200.0);
            let bytes = req * 500.0 * rng.random_range(0.8..1.25);
            let paths = (req / 10.0 * rng.random_range(0.7..1.4)).round();
            Row {
                device_type: if i % 2 == 0 { "meter" } else { "camera" }.into(),
                values: vec![req, bytes, paths],
            }
        })
        .collect()
}

fn opts(kind: ModelKind) -> TrainOptions {
    let mut o = TrainOptions::new(
        kind,
        FEATURES.iter().map(|s| s.to_string()).collect(),
        "identity_1m".into(),
    );
    o.target_fpr = 0.01;
    o.per_device_type = false;
    o
}

#[test]
fn every_family_calibrates_and_flags_a_multivariate_outlier() {
    let rows = benign(3000, 1);
    let fresh = benign(2000, 99);
    for kind in ModelKind::ALL {
        let m = train(&rows, &opts(kind), |_| {}).expect("train");
        let g = m.group("");
        let c = &g.calibration;
        assert!(c.achieved_fpr <= 0.01 + 1e-9, "{kind:?}: {c:?}");
        // On fresh benign rows the rate stays near the target.
        let mut s = [0.0; 3];
        let fp = fresh
            .iter()
            .filter(|r| g.score(&r.values, &mut s) > c.threshold)
            .count() as f64
            / fresh.len() as f64;
        assert!(fp < 0.04, "{kind:?}: fresh benign FPR {fp}");
        // Each value is within the benign range, the combination is not: few requests,
        // each with a huge response, over many paths.
        let odd = [21.0, 120_000.0, 27.0];
        let score = g.score(&odd, &mut s);
        assert!(score > c.threshold, "{kind:?}: {score} vs {}", c.threshold);
        let top = g.explain(&m.body.features, &odd, 2);
        assert_eq!(top.len(), 2);
        assert!(
            top.iter()
                .any(|t| t.feature == "bytes_out" || t.feature == "distinct_paths"),
            "{kind:?}: {top:?}"
        );
        assert!(top[0].share >= top[1].share);
        // Missing values never score.
        assert!(g.score(&[f64::NAN, 1.0, 1.0], &mut s).is_nan());
    }
}

#[test]
fn per_device_type_groups() {
    let mut o = opts(ModelKind::Kmeans);
    o.per_device_type = true;
    let m = train(&benign(3000, 2), &o, |_| {}).expect("train");
    assert!(m.per_device_type());
    assert_eq!(m.group("meter").device_type.as_deref(), Some("meter"));
    assert_eq!(m.group("unknown").device_type, None);
}

#[test]
fn file_round_trips_and_refuses_tampering() {
    let m = train(&benign(1000, 3), &opts(ModelKind::IsolationForest), |_| {}).expect("train");
    let text = m.to_json().expect("json");
    let back = Model::from_json(&text).expect("load");
    assert_eq!(back, m);
    back.check_features(&FEATURES).expect("same features");
    assert!(matches!(
        back.check_features(&["requests", "bytes_out"]),
        Err(MlError::Features { .. })
    ));
    // One digit of the body changed.
    let at = text.find("\"threshold\":").expect("threshold") + 12;
    let mut bad = text.clone().into_bytes();
    bad[at] = if bad[at] == b'9' { b'8' } else { b'9' };
    let bad = String::from_utf8(bad).expect("utf8");
    assert!(
        matches!(Model::from_json(&bad), Err(MlError::Hash { .. })),
        "{:?}",
        Model::from_json(&bad)
    );
    let v2 = text.replacen("\"version\":1", "\"version\":2", 1);
    assert!(matches!(
        Model::from_json(&v2),
        Err(MlError::Version { found: 2, .. })
    ));
    assert!(matches!(Model::from_json("{}"), Err(MlError::Format(_))));
    assert!(Model::from_json(&text[..text.len() / 2]).is_err());
}

#[test]
fn clear_errors_on_bad_training_data() {
    let o = opts(ModelKind::Kmeans);
    assert!(matches!(
        train(&[], &o, |_| {}),
        Err(MlError::TooSmall { rows: 0, .. })
    ));
    let mut rows = benign(500, 4);
    rows[7].values[1] = f64::NAN;
    assert!(matches!(
        train(&rows, &o, |_| {}),
        Err(MlError::NonFinite { row: 7, ref feature }) if feature == "bytes_out"
    ));
    rows[7].values = vec![1.0];
    assert!(matches!(
        train(&rows, &o, |_| {}),
        Err(MlError::Features { .. })
    ));
}
