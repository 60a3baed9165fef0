use super::*;

fn csv(values: &[f64]) -> String {
    let mut s = String::from("timestamp,value\n");
    for (i, v) in values.iter().enumerate() {
        s.push_str(&format!("2014-04-01 {:02}:{:02}:00,{v}\n", i / 60, i % 60));
    }
    s
}

fn spiky() -> Vec<f64> {
    let mut values: Vec<f64> = (0..200)
        .map(|i| 10.0 + ((i * 7) % 5) as f64 * 0.2)
        .collect();
    values[150] = 60.0;
    values
}

fn read(text: &str) -> Series {
    read_series("s.csv", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    read_series("s.csv", text.as_bytes())
        .expect_err("an error")
        .to_string()
}

#[test]
fn a_series_gets_a_score_per_row_and_the_spike_fires() {
    let text = csv(&spiky());
    for kind in DEFAULT_SERIES_DETECTORS {
        let d = series_detector(kind, &[]).unwrap_or_else(|e| panic!("{e}"));
        let (series, runs) = run_file("s.csv", text.as_bytes(), &[d], None).expect("run");
        let run = &runs[0];
        assert_eq!(run.scores.len(), 200);
        let fired: Vec<usize> = (0..200).filter(|i| run.flags[*i]).collect();
        assert_eq!(fired.first(), Some(&150), "{kind}: {fired:?}");
        assert!(run.scores[150] > run.scores[149] * 3.0, "{kind}");
        assert_eq!(series.points[0].timestamp, "2014-04-01 00:00:00");
    }
    let d = series_detector("threshold", &[("above".into(), "50".into())]).expect("threshold");
    let (series, runs) = run_file("s.csv", text.as_bytes(), &[d], None).expect("run");
    assert_eq!(runs[0].flags.iter().filter(|f| **f).count(), 1);
    let out = render_scored(&series, &runs);
    assert!(
        out.starts_with("timestamp,value,score,flag\n2014-04-01 00:00:00,10,0.200000,0\n"),
        "{out}"
    );
}

#[test]
fn bom_quotes_and_header_aliases_are_read() {
    let s = read(
        "\u{feff}\"Time\",\"Value\",\"note\"\n\"2014-04-01 00:00:00\",\"1.5\",\"a, b\"\n\"2014-04-01T00:01:00Z\", 2 ,\"\"\n",
    );
    assert!(s.quality.header);
    assert!(!s.labelled);
    let values: Vec<f64> = s.points.iter().map(|p| p.value).collect();
    assert_eq!(values, [1.5, 2.0]);
    assert_eq!(s.points[1].timestamp, "2014-04-01T00:01:00Z");
    assert_eq!(s.points[1].at - s.points[0].at, 60_000_000_000);
    // A quoted value holding a comma is one field, and not a number.
    let e = err("\u{feff}timestamp,value\n\"2014-04-01 00:00:00\",\"1,5\"\n");
    assert_eq!(e, "s.csv:2: value `1,5` is not a number");
}

#[test]
fn a_file_without_header_is_timestamp_value_label() {
    let s = read("1396310400,5,0\n1396310460,6,1\n1396310520,,0\n");
    assert!(!s.quality.header);
    assert!(s.labelled);
    assert_eq!(s.points.len(), 2);
    assert_eq!(s.points[1].at, 1_396_310_460 * 1_000_000_000);
    assert_eq!(s.points[1].label, Some(true));
    assert_eq!(s.quality.missing_values.lines, [3]);
    // CRLF line ends, and a first row without a value is still data.
    let s = read("2014-04-01 00:00:00,\r\n2014-04-01 00:01:00,6\r\n");
    assert!(!s.quality.header);
    assert_eq!(
        (s.points.len(), s.quality.missing_values.lines.as_slice()),
        (1, &[1][..])
    );
    // Milliseconds are recognised by their magnitude.
    let ms = read("1396310400000,5\n1396310460000,6\n");
    assert_eq!(ms.points[1].at, 1_396_310_460 * 1_000_000_000);
    assert_eq!(ms.quality.sampling.median_s, Some(60.0));
}

#[test]
fn missing_and_non_finite_values_are_skipped_and_reported() {
    let s = read(
        "timestamp,value\n1,1\n2,NaN\n3,\n4,inf\n5,-Infinity\n6,NA\n7,2\n# a comment\n\n8,3\n",
    );
    assert_eq!(s.points.len(), 3);
    assert_eq!(s.quality.rows, 8);
    assert_eq!(s.quality.scored, 3);
    assert_eq!(s.quality.non_finite_values.lines, [3, 5, 6]);
    assert_eq!(s.quality.missing_values.lines, [4, 7]);
    let w = s.quality.warnings().join("\n");
    assert!(
        w.contains("3 NaN/infinite value(s) skipped (line 3, 5, 6)"),
        "{w}"
    );
    assert!(w.contains("2 missing value(s) skipped (line 4, 7)"), "{w}");
    assert!(
        err("timestamp,value\n1,NaN\n").contains("no usable rows"),
        "every value NaN"
    );
}

#[test]
fn disorder_duplicates_and_gaps_are_reported_and_the_series_sorted() {
    // One-minute rows; line 4 is out of order, line 6 repeats line 5's time, and an
    // hour-long hole before line 8.
    let s = read(
        "timestamp,value\n\
         2014-04-01 00:00:00,1\n\
         2014-04-01 00:02:00,3\n\
         2014-04-01 00:01:00,2\n\
         2014-04-01 00:03:00,4\n\
         2014-04-01 00:03:00,5\n\
         2014-04-01 00:04:00,6\n\
         2014-04-01 01:04:00,7\n\
         2014-04-01 01:05:00,8\n",
    );
    let q = &s.quality;
    assert_eq!(q.out_of_order.lines, [4]);
    assert_eq!(q.duplicate_timestamps.lines, [6]);
    let values: Vec<f64> = s.points.iter().map(|p| p.value).collect();
    assert_eq!(
        values,
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        "sorted, stable"
    );
    assert!(s.points.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(q.sampling.median_s, Some(60.0));
    assert_eq!(q.sampling.gaps.lines, [8]);
    let gap = q.sampling.longest_gap.as_ref().expect("gap");
    assert_eq!((gap.seconds, gap.line), (3600.0, 8));
    assert_eq!(gap.from, "2014-04-01 00:04:00");
    assert!(!q.sampling.irregular);
    let w = q.warnings().join("\n");
    assert!(w.contains("1 row(s) out of time order"), "{w}");
    assert!(w.contains("longest gap 60 min"), "{w}");
    // Irregular sampling: intervals of 1 and 1.5 minutes alternating.
    let mut text = String::from("timestamp,value\n");
    let mut t = 0;
    for i in 0..40 {
        text.push_str(&format!("{t},1\n"));
        t += if i % 2 == 0 { 60 } else { 90 };
    }
    let q = read(&text).quality;
    assert!(q.sampling.irregular, "{q:?}");
}

#[test]
fn timestamps_reach_the_detector() {
    // A daily seasonal baseline needs the real time: 15-minute samples over 10 days.
    let mut text = String::from("timestamp,value\n");
    for i in 0..960i64 {
        let phase = (i % 96) as f64 / 96.0 * std::f64::consts::TAU;
        text.push_str(&format!(
            "{},{}\n",
            1_396_310_400 + i * 900,
            100.0 + 10.0 * phase.sin()
        ));
    }
    let s = read(&text);
    assert_eq!(s.points[1].at - s.points[0].at, 900_000_000_000);
    let d = series_detector("ewma_zscore", &[]).expect("ewma");
    let run = score(&d, &s);
    assert!(
        run.flags.iter().filter(|f| **f).count() <= 2,
        "the cycle is learned"
    );
}

#[test]
fn bad_rows_name_the_file_and_line() {
    assert_eq!(
        err("timestamp,value\n1,2\n2,x\n"),
        "s.csv:3: value `x` is not a number"
    );
    assert!(err("time,reading\n1,2\n").contains("s.csv:1: no value column"));
    assert!(
        err("when,value\n1,2\n")
            .contains("no timestamp column in the header (columns: when, value")
    );
    assert!(
        err("timestamp,value\nyesterday,2\n")
            .starts_with("s.csv:2: unreadable timestamp `yesterday`"),
    );
    assert_eq!(err("timestamp,value\n,2\n"), "s.csv:2: no timestamp");
    assert!(err("timestamp,value,label\n1,2,maybe\n").contains("s.csv:2: label `maybe`"));
    assert!(err("timestamp,value\n1\n").starts_with("s.csv:2: 1 field(s), expected 2"));
    assert_eq!(err(""), "s.csv: no rows");
    let bytes = b"timestamp,value\n1,\xff\xfe\n";
    let e = read_series("s.csv", bytes)
        .expect_err("not utf-8")
        .to_string();
    assert!(e.starts_with("s.csv:2"), "{e}");
}

#[test]
fn odd_input_is_an_error_never_a_panic() {
    for text in [
        "timestamp,value\n+275760-09-13 00:00:00,1\n",
        "timestamp,value\n2014-13-45 99:99:99,1\n",
        "timestamp,value\n1e400,1\n",
        "timestamp,value\n-1e300,1\n",
        "timestamp,value\n1e18,1\n-1e18,2\n",
        "timestamp,value\n\"1,2\n",
        "\"\n",
        ",\n,\n",
        "timestamp,value\n1,1e400\n",
        "timestamp,value,label\n1,1,\n2,2,1\n",
        "\u{feff}",
        "timestamp;value\n1;2\n",
    ] {
        let _ = read_series("odd.csv", text.as_bytes());
    }
    // Epoch values at the edge of the representable range are refused, not wrapped.
    assert!(err("1e11,1\n9.3e18,2\n").contains("out of range"));
    // Semicolons and tabs separate when the first line has no comma.
    assert_eq!(
        read("timestamp;value\n1;2,5\n").points[0].value,
        2.5,
        "decimal comma"
    );
    assert!(err("timestamp;value\n1;2,5\n2;x\n").contains("s.csv:3: value `x`"));
    assert_eq!(read("timestamp\tvalue\n1\t2\n").points[0].value, 2.0);
}

#[test]
fn labels_give_precision_recall_and_ranges() {
    let mut text = String::from("timestamp,value,is_anomaly\n");
    for i in 0..200 {
        let (v, l) = match i {
            150 => (60.0, 1),
            151 => (10.0, 1),
            180 => (10.0, 1),
            _ => (10.0 + ((i * 7) % 5) as f64 * 0.2, 0),
        };
        text.push_str(&format!("{i},{v},{l}\n"));
    }
    let d = series_detector("mad", &[]).expect("mad");
    let (s, runs) =
        run_file("s.csv", text.as_bytes(), std::slice::from_ref(&d), None).expect("run");
    let sum = RunSummary::of(&s, &runs[0]);
    let l = sum.labels.expect("labelled");
    assert_eq!((l.point.tp, l.point.fp, l.point.fn_), (1, 0, 2));
    assert_eq!(l.point.precision, Some(1.0));
    assert_eq!(
        (l.range.ranges, l.range.detected, l.range.false_alarms),
        (2, 1, 0)
    );
    let report = SeriesReport::new(&[d], vec![FileReport::scored("s.csv".into(), &s, &runs)]);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["version"], 1);
    assert_eq!(json["files"][0]["detectors"][0]["labels"]["point"]["fn"], 2);
    assert_eq!(json["pooled"][0]["labels"]["range"]["detected"], 1);
    assert_eq!(json["detectors"][0]["params"]["history"], 200);
    let out = render_scored(&s, &runs);
    assert!(
        out.starts_with("timestamp,value,score,flag,label\n"),
        "{out}"
    );
    assert!(report.table().contains("1/2"), "{}", report.table());
    assert!(
        report
            .markdown()
            .starts_with("# Series backtest\n\n| file |")
    );
}

#[test]
fn parameter_mistakes_are_answered_with_the_valid_ones() {
    let e = series_detector("novelty", &[])
        .expect_err("no series")
        .to_string();
    assert!(e.contains("cannot score a metric series"), "{e}");
    let e = series_detector("mad", &[("alpha".into(), "0.1".into())])
        .expect_err("unknown")
        .to_string();
    // `mad` has `season_alpha`: the likely one is named.
    assert!(
        e.starts_with("--param alpha: unknown parameter (did you mean `season_alpha`?);"),
        "{e}"
    );
    for valid in [
        "history",
        "threshold",
        "warmup_samples",
        "min_mad",
        "rebaseline_after",
    ] {
        assert!(e.contains(valid), "{e}");
    }
    assert!(!e.contains("weight"), "not a series parameter: {e}");
    let e = series_detector("mad", &[("treshold".into(), "3".into())])
        .expect_err("typo")
        .to_string();
    assert!(e.contains("(did you mean `threshold`?)"), "{e}");
    let e = series_detector(
        "mad",
        &[
            ("threshold".into(), "-1".into()),
            ("history".into(), "2".into()),
        ],
    )
    .expect_err("bad values")
    .to_string();
    assert!(
        e.contains("--param mad.threshold: must be a positive number"),
        "{e}"
    );
    assert!(
        e.contains("--param mad.history: must be in 8..=1024"),
        "{e}"
    );
    let e = series_detector("threshold", &[])
        .expect_err("needs a bound")
        .to_string();
    assert!(e.contains("--param threshold.above"), "{e}");
    let e = series_detector("mad", &[("direction".into(), "sideways".into())])
        .expect_err("bad enum")
        .to_string();
    assert!(e.contains("direction"), "{e}");
}

#[test]
fn several_detectors_share_or_target_parameters() {
    let kinds: Vec<String> = vec!["ewma_zscore".into(), "mad".into(), "cusum".into()];
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    let ds = series_detectors(&kinds, &[p("threshold", "6"), p("cusum.h", "8")]).expect("ok");
    let json: Vec<serde_json::Value> = ds
        .iter()
        .map(|d| serde_json::to_value(d).expect("json"))
        .collect();
    assert_eq!(json[0]["threshold"], 6.0);
    assert_eq!(json[1]["threshold"], 6.0);
    assert_eq!(json[2]["h"], 8.0);
    let e = series_detectors(&kinds, &[p("mad.h", "1"), p("depth", "2")])
        .expect_err("unknown")
        .to_string();
    assert!(e.contains("--param mad.h: unknown parameter"), "{e}");
    assert!(
        e.contains("--param depth: unknown parameter; valid ones — ewma_zscore: "),
        "{e}"
    );
    assert_eq!(series_detectors(&[], &[]).expect("defaults").len(), 3);
    let e = series_detectors(&["mad".into(), "mad".into()], &[]).expect_err("twice");
    assert!(e.to_string().contains("named twice"), "{e}");
}

/// The catalogue is generated from the code: its defaults are what a config without the key
/// gets, and its series values are what `--series` runs with.
#[test]
fn the_catalogue_matches_the_code() {
    let cat = catalog();
    let kinds: Vec<&str> = cat.iter().map(|d| d.kind.as_str()).collect();
    for k in [
        "ewma_zscore",
        "mad",
        "cusum",
        "threshold",
        "novelty",
        "cardinality",
    ] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    for d in &cat {
        assert!(!d.meaning.is_empty(), "{}", d.kind);
        assert_eq!(d.series, SERIES_DEFAULTS.iter().any(|(k, _)| *k == d.kind));
        // Pipeline defaults: a config with only the required keys gets the listed ones.
        let mut minimal = serde_json::Map::new();
        minimal.insert("type".into(), d.kind.clone().into());
        for p in d.params.iter().filter(|p| p.required) {
            let v = if p.series.is_null() {
                example(&p.kind)
            } else {
                p.series.clone()
            };
            minimal.insert(p.name.clone(), v);
        }
        let config: DetectorConfig =
            serde_json::from_value(minimal.into()).unwrap_or_else(|e| panic!("{}: {e}", d.kind));
        let config = serde_json::to_value(config).expect("json");
        for p in d.params.iter().filter(|p| !p.required) {
            assert_eq!(config[&p.name], p.default, "{}.{}", d.kind, p.name);
        }
        if d.series {
            let run = series_config_of(&d.kind);
            for p in &d.params {
                if !p.series.is_null() {
                    assert_eq!(run[&p.name], p.series, "{}.{}", d.kind, p.name);
                }
            }
            let valid = series_params(&d.kind);
            assert!(!valid.contains(&"name".to_string()));
            assert_eq!(valid.len(), d.params.len() - 5, "{}", d.kind);
        }
    }
    let ewma = cat.iter().find(|d| d.kind == "ewma_zscore").expect("ewma");
    let dir = ewma
        .params
        .iter()
        .find(|p| p.name == "direction")
        .expect("direction");
    assert_eq!(
        (dir.kind.as_str(), &dir.default, &dir.series),
        ("up|down|both", &"up".into(), &"both".into())
    );
    let text = render_catalog(&cat);
    assert!(text.contains("ewma_zscore  [--series]"), "{text}");
    assert!(text.contains("novelty\n"), "{text}");
}

fn series_config_of(kind: &str) -> serde_json::Value {
    let bound = [
        ("above".to_string(), "1".to_string()),
        ("limit".to_string(), "1".to_string()),
    ];
    let params: Vec<(String, String)> = match kind {
        "threshold" => bound[..1].to_vec(),
        "cardinality" => bound[1..].to_vec(),
        _ => Vec::new(),
    };
    serde_json::to_value(series_detector(kind, &params).expect("series config")).expect("json")
}

fn example(kind: &str) -> serde_json::Value {
    match kind {
        "string" => "x".into(),
        "integer" => 2.into(),
        "number" => 0.5.into(),
        "boolean" => true.into(),
        list if list.starts_with('[') => serde_json::json!([]),
        "object" => serde_json::json!({}),
        choices => choices.split('|').next().unwrap_or_default().into(),
    }
}

#[test]
fn windows_label_a_series_by_its_name() {
    let windows = Windows::parse(
        "windows.json",
        r#"{"realKnownCause/a.csv": [["1970-01-01 00:02:30.000000", "1970-01-01 00:03:00"]],
            "artificial/b.csv": []}"#,
    )
    .expect("windows");
    let d = series_detector("mad", &[]).expect("mad");
    // Found by its key, a path ending with the key, or its file name alone.
    for name in ["realKnownCause/a.csv", "data/realKnownCause/a.csv", "a.csv"] {
        let w = windows.of(name).expect(name);
        assert_eq!(w[0].1 - w[0].0, 30_000_000_000, "{name}");
    }
    assert_eq!(
        windows.of("b.csv"),
        Some(&[][..]),
        "a file without anomalies"
    );
    assert_eq!(windows.of("other/c.csv"), None);
    let mut text = String::from("timestamp,value\n");
    for (i, v) in spiky().iter().enumerate() {
        text.push_str(&format!("{},{v}\n", i));
    }
    let (s, runs) = run_file("a.csv", text.as_bytes(), &[d], Some(&windows)).expect("run");
    let labelled: Vec<usize> = (0..s.points.len())
        .filter(|i| s.points[*i].label == Some(true))
        .collect();
    assert_eq!(labelled, (150..=180).collect::<Vec<_>>());
    let l = LabelScore::of(&s, &runs[0]).expect("labelled");
    assert_eq!((l.range.ranges, l.range.detected), (1, 1));
    let (s, _) = run_file("c.csv", text.as_bytes(), &[], Some(&windows)).expect("run");
    assert!(!s.labelled, "not in the windows file");
    let e = Windows::parse("w.json", r#"{"a.csv": [["2014-01-01"]]}"#).expect_err("bad");
    assert!(
        e.to_string()
            .contains("w.json: a.csv: window 0 has 1 timestamps"),
        "{e}"
    );
    let e = Windows::parse("w.json", "[]").expect_err("bad");
    assert!(e.to_string().starts_with("w.json: "), "{e}");
}

/// A run with given scores over a labelled series (labels: 1 in the listed `[from, to)`).
fn ranked(scores: &[f64], labelled: &[(usize, usize)]) -> (Series, DetectorRun) {
    let mut text = String::from("timestamp,value,is_anomaly\n");
    for i in 0..scores.len() {
        let l = u8::from(labelled.iter().any(|(a, b)| (*a..*b).contains(&i)));
        text.push_str(&format!("{i},1,{l}\n"));
    }
    let run = DetectorRun {
        detector: "given".into(),
        scores: scores.to_vec(),
        flags: vec![false; scores.len()],
    };
    (read(&text), run)
}

#[test]
fn average_precision_ranks_each_range_once_and_every_other_point() {
    // Ranges score 5 (its highest) and 3; the other points 4, 1, 0: ranked 5 4 3 1 0,
    // precision 1/1 at the first range and 2/3 at the second.
    let (s, run) = ranked(&[0.0, 2.0, 5.0, 4.0, 3.0, 1.0], &[(1, 3), (4, 5)]);
    let l = LabelScore::of(&s, &run).expect("labelled");
    let ap = l.average_precision.expect("ap");
    assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12, "{ap}");
    // The best threshold: at 3 both ranges, one false alarm (F1 0.8), better than at 5.
    let best = l.best.expect("sweep");
    assert_eq!(
        (best.threshold, best.detected, best.false_alarms),
        (3.0, 2, 1)
    );
    assert!((best.f1 - 0.8).abs() < 1e-12, "{best:?}");
    // Ties rank together (a range tied with a point is half a hit), NaN ranks lowest.
    let (s, run) = ranked(&[2.0, 2.0, f64::NAN], &[(0, 1)]);
    let l = LabelScore::of(&s, &run).expect("labelled");
    assert_eq!(l.average_precision, Some(0.5));
    // Unlabelled files have neither.
    let (s, run) = ranked(&[1.0, 2.0], &[]);
    let l = LabelScore::of(&s, &run).expect("labelled");
    assert_eq!((l.average_precision, l.best), (None, None));
}

#[test]
fn pooled_average_precision_needs_scores_comparable_across_files() {
    // Each file alone ranks its range first (AP 1), but the first file's normal points score
    // above the second file's anomaly: pooled, one threshold cannot serve both.
    let (a, ra) = ranked(&[10.0, 10.0, 50.0, 10.0], &[(2, 3)]);
    let (b, rb) = ranked(&[0.1, 0.1, 2.0, 0.1], &[(2, 3)]);
    for (s, r) in [(&a, &ra), (&b, &rb)] {
        assert_eq!(
            LabelScore::of(s, r).and_then(|l| l.average_precision),
            Some(1.0)
        );
    }
    let files = vec![
        FileReport::scored("a.csv".into(), &a, std::slice::from_ref(&ra)),
        FileReport::scored("b.csv".into(), &b, std::slice::from_ref(&rb)),
    ];
    let pooled = super::report::pool("given", &files);
    let ap = pooled.labels.and_then(|l| l.average_precision).expect("ap");
    assert!(ap < 0.8, "{ap}");
    let table = SeriesReport {
        version: 1,
        detectors: Vec::new(),
        files,
        pooled: vec![pooled],
    }
    .table();
    assert!(table.contains("AP") && table.contains("best F1"), "{table}");
}
