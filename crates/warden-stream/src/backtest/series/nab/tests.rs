use super::super::read::read_series;
use super::super::report::{FileReport, pool};
use super::super::score::DetectorRun;
use super::*;

const STANDARD: NabProfile = NAB_PROFILES[0];

/// A labelled series of `n` points (labels: 1 in the listed `[from, to)`).
fn series(n: usize, labelled: &[(usize, usize)]) -> Series {
    let mut text = String::from("timestamp,value,is_anomaly\n");
    for i in 0..n {
        let l = u8::from(labelled.iter().any(|(a, b)| (*a..*b).contains(&i)));
        text.push_str(&format!("{i},1,{l}\n"));
    }
    read_series("s.csv", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// Scores of 1 at `hits`, 0 elsewhere.
fn hits(n: usize, hits: &[usize]) -> Vec<f64> {
    (0..n)
        .map(|i| f64::from(u8::from(hits.contains(&i))))
        .collect()
}

fn score(s: &Series, scores: &[f64]) -> f64 {
    let p = NabPoints::of(s, scores).expect("labelled");
    p.at(&STANDARD, 1.0).expect("windows").score
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[test]
fn early_detection_earns_the_window_late_detection_little() {
    // 100 points, probation the first 15; one window of 10 at 50..60.
    let s = series(100, &[(50, 60)]);
    close(score(&s, &hits(100, &[50])), 100.0);
    close(score(&s, &hits(100, &[])), 0.0);
    // At the window's last point: σ̂(-1/10) / σ̂(-1), normalised over [-1, 1].
    let last = (2.0 / (1.0 + (-0.5f64).exp()) - 1.0) / (2.0 / (1.0 + (-5.0f64).exp()) - 1.0);
    close(score(&s, &hits(100, &[59])), 100.0 * (last + 1.0) / 2.0);
    // Halfway is worth more than the end, less than the start; a later second detection in
    // the same window adds nothing.
    let half = score(&s, &hits(100, &[55]));
    assert!(
        half < 100.0 && half > score(&s, &hits(100, &[59])),
        "{half}"
    );
    close(score(&s, &hits(100, &[50, 55, 59])), 100.0);
}

#[test]
fn false_positives_cost_most_far_from_a_window() {
    let s = series(100, &[(50, 60)]);
    // Before the first window: the full A_FP (0.11) each.
    close(
        score(&s, &hits(100, &[20, 50])),
        100.0 * (1.0 - 0.11 + 1.0) / 2.0,
    );
    close(
        score(&s, &hits(100, &[20, 21, 50])),
        100.0 * (1.0 - 0.22 + 1.0) / 2.0,
    );
    // Right after the window almost nothing; three widths after, the full A_FP.
    let just_after = score(&s, &hits(100, &[50, 60]));
    assert!(just_after > 98.0 && just_after < 100.0, "{just_after}");
    close(
        score(&s, &hits(100, &[50, 90])),
        100.0 * (1.0 - 0.11 + 1.0) / 2.0,
    );
    // A detector firing everywhere scores below the null detector.
    let all: Vec<usize> = (0..100).collect();
    assert!(score(&s, &hits(100, &all)) < 0.0);
}

#[test]
fn the_probationary_period_does_not_count() {
    // 100 points: the first 15 are probationary (a window there is not scored, nor a flag).
    let s = series(100, &[(5, 10), (50, 60)]);
    let p = NabPoints::of(&s, &hits(100, &[3, 50])).expect("labelled");
    assert_eq!(p.windows(), 1);
    close(p.at(&STANDARD, 1.0).expect("windows").score, 100.0);
    // The cap: 750 points of a 10 000-point file.
    let s = series(10_000, &[(740, 760)]);
    let p = NabPoints::of(&s, &hits(10_000, &[])).expect("labelled");
    assert_eq!((p.windows(), p.scores.len()), (1, 10_000 - 750));
}

/// The unweighted value of point `i` (after the probationary 15).
fn scores_at(p: &NabPoints, i: usize) -> f64 {
    p.value[i - 15]
}

#[test]
fn the_sweep_finds_the_threshold_that_excludes_the_false_alarms() {
    let s = series(100, &[(50, 60)]);
    let mut scores = vec![0.0; 100];
    scores[30] = 9.0; // a false alarm above the anomaly
    scores[52] = 5.0;
    scores[80] = 2.0;
    let p = NabPoints::of(&s, &scores).expect("labelled");
    let best = p.best(&STANDARD).expect("windows");
    assert_eq!(
        (best.threshold, best.detected, best.false_positives),
        (Some(5.0), 1, 1),
        "one false alarm is cheaper than a missed window, two are not needed: {best:?}"
    );
    close(
        best.score,
        100.0 * (1.0 - 0.11 + 1.0 + (scores_at(&p, 52) - 1.0)) / 2.0,
    );
    // Weighted 0.22 per false positive, the cheaper trade still holds; with no anomaly
    // detectable without 20 false alarms, firing nowhere is best.
    let mut scores = vec![0.0; 100];
    for s in scores.iter_mut().take(40).skip(20) {
        *s = 9.0;
    }
    scores[55] = 5.0;
    let p = NabPoints::of(&s, &scores).expect("labelled");
    let best = p.best(&NAB_PROFILES[1]).expect("windows");
    assert_eq!((best.threshold, best.score), (None, 0.0), "{best:?}");
    // NaN is never a detection.
    let mut scores = vec![f64::NAN; 100];
    scores[50] = 1.0;
    let p = NabPoints::of(&s, &scores).expect("labelled");
    close(p.best(&STANDARD).expect("windows").score, 100.0);
}

#[test]
fn unlabelled_or_windowless_series_have_no_score() {
    let text = "timestamp,value\n1,1\n2,1\n";
    let s = read_series("s.csv", text.as_bytes()).expect("read");
    assert!(NabPoints::of(&s, &[0.0, 0.0]).is_none());
    let s = series(20, &[]);
    let p = NabPoints::of(&s, &hits(20, &[])).expect("labelled");
    assert_eq!(p.at(&STANDARD, 1.0), None);
}

#[test]
fn pooled_files_are_normalised_over_every_window_with_one_threshold() {
    let run = |_: &Series, scores: Vec<f64>| DetectorRun {
        detector: "given".into(),
        flags: scores.iter().map(|v| *v >= 1.0).collect(),
        scores,
    };
    let a = series(100, &[(50, 60)]);
    let b = series(100, &[(40, 45), (70, 80)]);
    let mut sb = hits(100, &[40]);
    sb[70] = 0.5; // the second window of b is found only at a threshold of 0.5
    let (ra, rb) = (run(&a, hits(100, &[50])), run(&b, sb));
    let files = vec![
        FileReport::scored("a.csv".into(), &a, std::slice::from_ref(&ra)),
        FileReport::scored("b.csv".into(), &b, std::slice::from_ref(&rb)),
    ];
    let nab = pool("given", &files)
        .labels
        .and_then(|l| l.nab)
        .expect("pooled nab");
    // Flags: 2 of 3 windows at their start → (2 - 1 + 3) / 6.
    close(nab.flags[0].score, 100.0 * 4.0 / 6.0);
    assert_eq!((nab.flags[0].windows, nab.flags[0].detected), (3, 2));
    // Best: threshold 0.5 finds all three at their starts, no false positive.
    close(nab.best[0].score, 100.0);
    assert_eq!(nab.best[0].threshold, Some(0.5));
    // Reward low FN: misses cost 2 → (2 - 2 + 6) / 9.
    close(nab.flags[2].score, 100.0 * 6.0 / 9.0);
}
