//! `warden backtest --series` and `warden detectors` as users run them: the real binary over
//! real files in a temporary folder.

use std::path::Path;
use std::process::{Command, Output};

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run warden")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(cmd: &mut Command) -> Output {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    o
}

fn failed(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    stderr(&o)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// 120 one-minute rows around 10 with a spike to 60 at row 90 (line 92).
fn series_csv() -> String {
    let mut s = String::from("timestamp,value\n");
    for i in 0..120 {
        let v = if i == 90 {
            60.0
        } else {
            10.0 + ((i * 7) % 5) as f64 * 0.2
        };
        s.push_str(&format!("2014-04-01 {:02}:{:02}:00,{v}\n", i / 60, i % 60));
    }
    s
}

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

#[test]
fn backtest_scores_a_metric_series_row_by_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let series = dir.path().join("series.csv");
    write(&series, &series_csv());
    for detector in ["ewma_zscore", "mad", "cusum"] {
        let out = stdout(&ok(warden()
            .args(["backtest", "--detector", detector, "--series"])
            .arg(&series)));
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("timestamp,value,score,flag"));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 120, "{detector}: one row per input row");
        assert!(rows.iter().all(|r| r.len() == 4), "{out}");
        assert_eq!(rows[90][0], "2014-04-01 01:30:00");
        assert_eq!(rows[90][1], "60");
        let fired: Vec<usize> = (0..120).filter(|i| rows[*i][3] == "1").collect();
        assert_eq!(fired.first(), Some(&90), "{detector}: {fired:?}\n{out}");
        let score = |i: usize| rows[i][2].parse::<f64>().expect("score");
        assert!(
            score(90) > 3.0 * score(89).abs().max(1.0),
            "{detector}\n{out}"
        );
    }

    // Parameters override the detector's series defaults; output to a file.
    let out_file = dir.path().join("scores.csv");
    ok(warden()
        .args(["backtest", "--detector", "threshold", "--param", "above=50"])
        .arg("--series")
        .arg(&series)
        .arg("--out")
        .arg(&out_file));
    let scored = std::fs::read_to_string(&out_file).expect("scores");
    let flagged: Vec<&str> = scored.lines().filter(|l| l.ends_with(",1")).collect();
    assert_eq!(flagged, ["2014-04-01 01:30:00,60,1.200000,1"], "{scored}");

    // Every detector at once (the default): a column pair each.
    let out = stdout(&ok(warden().args(["backtest", "--series"]).arg(&series)));
    assert!(
        out.starts_with(
            "timestamp,value,score_ewma_zscore,flag_ewma_zscore,score_mad,flag_mad,score_cusum,flag_cusum\n"
        ),
        "{out}"
    );
}

#[test]
fn parameter_and_row_mistakes_are_answered_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let series = dir.path().join("series.csv");
    write(&series, &series_csv());
    let backtest = |args: &[&str]| {
        let mut c = warden();
        c.arg("backtest").args(args).arg("--series").arg(&series);
        c
    };
    // Every bad value with its key.
    let err = failed(&mut backtest(&[
        "--detector",
        "mad",
        "--param",
        "threshold=-1",
        "--param",
        "history=2",
    ]));
    assert!(
        err.contains("--param mad.threshold: must be a positive number"),
        "{err}"
    );
    assert!(
        err.contains("--param mad.history: must be in 8..=1024"),
        "{err}"
    );
    // An unknown parameter: the valid ones, and the likely one.
    let err = failed(&mut backtest(&[
        "--detector",
        "mad",
        "--param",
        "alpha=0.1",
    ]));
    assert!(
        err.contains(
            "--param alpha: unknown parameter (did you mean `season_alpha`?); valid ones — mad: \
             history, threshold"
        ),
        "{err}"
    );
    assert!(err.contains("warden detectors"), "{err}");
    let err = failed(&mut backtest(&[
        "--detector",
        "cusum",
        "--param",
        "cusum.hh=3",
    ]));
    assert!(err.contains("(did you mean `h`?)"), "{err}");
    let err = failed(&mut backtest(&["--detector", "novelty"]));
    assert!(err.contains("cannot score a metric series"), "{err}");
    let err = failed(&mut backtest(&["--format", "xml"]));
    assert!(err.contains("unknown format `xml`"), "{err}");
    // A bad row: the file and line.
    write(&series, "timestamp,value\n1396310400,1\n1396310460,many\n");
    let err = failed(&mut backtest(&["--detector", "mad"]));
    assert!(
        err.contains(&format!(
            "{}:3: value `many` is not a number",
            series.display()
        )),
        "{err}"
    );
}

/// A file with every quirk a real export has: BOM, quoted fields, NaN and empty values,
/// rows out of order, a duplicate timestamp and an hour-long gap.
fn quirky_csv() -> String {
    let mut rows: Vec<String> = (0..120)
        .map(|i| {
            let v = if i == 90 {
                60.0
            } else {
                10.0 + ((i * 7) % 5) as f64 * 0.2
            };
            format!("\"2014-04-01 {:02}:{:02}:00\",\"{v}\"", i / 60, i % 60)
        })
        .collect();
    rows[10] = "\"2014-04-01 00:10:00\",NaN".into();
    rows[20] = "\"2014-04-01 00:20:00\",".into();
    rows.swap(30, 31);
    rows[41] = rows[40].clone();
    rows.drain(100..110);
    format!("\u{feff}\"timestamp\",\"value\"\n{}\n", rows.join("\n"))
}

#[test]
fn json_report_gives_quality_and_scores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let series = dir.path().join("quirky.csv");
    write(&series, &quirky_csv());
    let o = ok(warden()
        .args([
            "backtest",
            "--format",
            "json",
            "--detector",
            "mad,cusum",
            "--series",
        ])
        .arg(&series));
    let report = json(&stdout(&o));
    assert_eq!(report["version"], 1);
    assert_eq!(report["detectors"][0]["type"], "mad");
    assert_eq!(report["detectors"][1]["params"]["h"], 10.0);
    let file = &report["files"][0];
    assert!(file["error"].is_null());
    let q = &file["quality"];
    assert_eq!(q["header"], true);
    assert_eq!(q["rows"], 110);
    assert_eq!(q["scored"], 108);
    // Lines are 1-based and count the header: row i is on line i + 2.
    assert_eq!(q["non_finite_values"]["lines"], serde_json::json!([12]));
    assert_eq!(q["missing_values"]["lines"], serde_json::json!([22]));
    assert_eq!(q["out_of_order"]["lines"], serde_json::json!([33]));
    assert_eq!(q["duplicate_timestamps"]["lines"], serde_json::json!([43]));
    assert_eq!(q["sampling"]["median_s"], 60.0);
    assert_eq!(q["sampling"]["gaps"]["count"], 1);
    assert_eq!(q["sampling"]["longest_gap"]["seconds"], 660.0);
    assert_eq!(file["detectors"][0]["detector"], "mad");
    assert_eq!(file["detectors"][0]["first_flag"], "2014-04-01 01:30:00");
    assert!(file["detectors"][0]["labels"].is_null());
    let warnings = file["warnings"].to_string();
    assert!(warnings.contains("out of time order"), "{warnings}");

    // CSV out: the findings on stderr, the rows sorted by time.
    let o = ok(warden()
        .args(["backtest", "--detector", "mad", "--series"])
        .arg(&series));
    let err = stderr(&o);
    assert!(
        err.contains("1 NaN/infinite value(s) skipped (line 12)"),
        "{err}"
    );
    assert!(err.contains("1 duplicate timestamp(s)"), "{err}");
    let out = stdout(&o);
    let times: Vec<&str> = out.lines().skip(1).map(|l| &l[..19]).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{out}");
    assert_eq!(times.len(), 108);
}

#[test]
fn a_folder_in_gives_a_folder_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    // A labelled file in a subfolder (NAB's layout), the quirky one, and a broken one.
    let mut labelled = String::from("timestamp,value,label\n");
    for (i, row) in series_csv().lines().skip(1).enumerate() {
        labelled.push_str(&format!("{row},{}\n", u8::from(i == 90)));
    }
    write(&input.join("realKnownCause/machine.csv"), &labelled);
    write(&input.join("artificial/quirky.csv"), &quirky_csv());
    write(
        &input.join("artificial/broken.csv"),
        "timestamp,value\n1,2\n2,lots\n",
    );
    write(&input.join("notes.txt"), "not a series");
    let out = dir.path().join("out");
    let o = run(warden()
        .args(["backtest", "--detector", "mad", "--series"])
        .arg(&input)
        .arg("--out")
        .arg(&out));
    // One file failed: the others are written and the run says so.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 of 3 file(s) could not be scored"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains('\r'),
        "no progress bar when not a terminal"
    );
    let table = stdout(&o);
    assert!(table.contains("realKnownCause/machine.csv"), "{table}");
    let scored = std::fs::read_to_string(out.join("realKnownCause/machine.csv")).expect("scored");
    assert!(
        scored.starts_with("timestamp,value,score,flag,label\n"),
        "{scored}"
    );
    assert!(scored.contains("2014-04-01 01:30:00,60,"), "{scored}");
    assert!(out.join("artificial/quirky.csv").is_file());
    assert!(!out.join("artificial/broken.csv").exists());
    let summary = json(&std::fs::read_to_string(out.join("summary.json")).expect("summary"));
    let files: Vec<&str> = summary["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["file"].as_str())
        .collect();
    assert_eq!(
        files,
        [
            "artificial/broken.csv",
            "artificial/quirky.csv",
            "realKnownCause/machine.csv"
        ]
    );
    assert!(
        summary["files"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("artificial/broken.csv:3: value `lots`")),
        "{summary}"
    );
    let labels = &summary["files"][2]["detectors"][0]["labels"];
    assert_eq!(labels["point"]["tp"], 1, "{summary}");
    assert_eq!(labels["point"]["f1"], 1.0, "{summary}");
    assert_eq!(summary["pooled"][0]["labelled_files"], 1);
    let md = std::fs::read_to_string(out.join("summary.md")).expect("md");
    assert!(md.contains("## Data quality"), "{md}");

    // Labels apart from the data (NAB's windows file): the quirky file's spike is a window.
    let windows = dir.path().join("windows.json");
    write(
        &windows,
        r#"{"artificial/quirky.csv": [["2014-04-01 01:29:00.000000", "2014-04-01 01:35:00.000000"]],
            "realKnownCause/machine.csv": []}"#,
    );
    let o = run(warden()
        .args([
            "backtest",
            "--format",
            "json",
            "--detector",
            "mad",
            "--series",
        ])
        .arg(&input)
        .arg("--labels")
        .arg(&windows));
    let report = json(&stdout(&o));
    let quirky = &report["files"][1]["detectors"][0]["labels"];
    assert_eq!(quirky["range"]["ranges"], 1, "{report}");
    assert_eq!(quirky["range"]["detected"], 1, "{report}");
    let machine = &report["files"][2]["detectors"][0]["labels"];
    assert_eq!(
        machine["range"]["ranges"], 0,
        "windows replace the label column"
    );

    // Without --out: the summary only, as JSON on request; a second run over the same
    // folder does not read its own output.
    let o = run(warden()
        .args([
            "backtest",
            "--format",
            "json",
            "--detector",
            "mad",
            "--series",
        ])
        .arg(&input));
    assert_eq!(json(&stdout(&o))["files"].as_array().map(Vec::len), Some(3));
    std::fs::remove_file(input.join("artificial/broken.csv")).expect("rm");
    let nested = input.join("scored");
    ok(warden()
        .args(["backtest", "--detector", "mad", "--series"])
        .arg(&input)
        .arg("--out")
        .arg(&nested));
    ok(warden()
        .args(["backtest", "--detector", "mad", "--series"])
        .arg(&input)
        .arg("--out")
        .arg(&nested));
    let summary = json(&std::fs::read_to_string(nested.join("summary.json")).expect("summary"));
    assert_eq!(summary["files"].as_array().map(Vec::len), Some(2));
}

#[test]
fn detectors_lists_parameters_and_defaults() {
    let table = stdout(&ok(warden().arg("detectors")));
    for t in [
        "ewma_zscore  [--series]",
        "mad  [--series]",
        "cusum  [--series]",
        "novelty",
    ] {
        assert!(table.contains(t), "{table}");
    }
    let out = stdout(&ok(warden().args(["detectors", "--format", "json", "mad"])));
    let list = json(&out);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let history = list[0]["params"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "history"))
        .expect("history");
    assert_eq!(history["series"], 200);
    assert_eq!(history["required"], true);
    let err = failed(warden().args(["detectors", "madd"]));
    assert!(err.contains("unknown detector type `madd`"), "{err}");
    let help = stdout(&ok(warden().args(["backtest", "--help"])));
    assert!(help.contains("warden detectors"), "{help}");
    assert!(help.contains("  mad: history=200 threshold=5.0"), "{help}");
    assert!(
        help.contains("  threshold: above=- alarm_after=1"),
        "{help}"
    );
}
