//! `warden train` as users run it: clear errors for a pipeline without an ML detector, an
//! unknown detector, an archive without events, a bad target FPR; nothing written then. And
//! `warden backtest --attack-labels`, the evaluation of the models against a labelled run.

use std::path::PathBuf;
use std::process::Command;

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn train(args: &[&str], events: &std::path::Path, out: &std::path::Path) -> (bool, String) {
    let o = warden()
        .arg("train")
        .args(args)
        .arg("--events")
        .arg(events)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn train_refuses_what_it_cannot_train_on_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).expect("dir");
    let out = dir.path().join("model.json");
    let default = repo("pipelines/default.toml");
    let ml = repo("pipelines/ml.toml");
    let (ok, text) = train(&["--pipeline", &default.to_string_lossy()], &events, &out);
    assert!(!ok && text.contains("has no ML detector"), "{text}");
    let (ok, text) = train(
        &["--pipeline", &ml.to_string_lossy(), "--detector", "nope"],
        &events,
        &out,
    );
    assert!(
        !ok && text.contains("no ML detector named `nope`") && text.contains("ml_kmeans"),
        "{text}"
    );
    let (ok, text) = train(&["--pipeline", &ml.to_string_lossy()], &events, &out);
    assert!(!ok && text.contains("no events"), "{text}");
    let (ok, text) = train(
        &["--pipeline", &ml.to_string_lossy(), "--target-fpr", "0.7"],
        &events,
        &out,
    );
    assert!(!ok && text.contains("--target-fpr"), "{text}");
    assert!(!out.exists());
}

/// The evaluation as a user runs it: a labelled attack run simulated to Parquet, then
/// `warden backtest --attack-labels` with the shipped `pipelines/ml.toml` (and its shipped
/// models) beside `pipelines/default.toml`: a Markdown and a JSON report, one row per model
/// with its ROC AUC. A sensor behaving like a camera is missed by the statistics and caught by
/// the models.
#[test]
fn backtest_reports_each_model_against_the_labels_beside_the_statistics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events");
    let labels = dir.path().join("run.labels.json");
    let sim = warden()
        .current_dir(repo(""))
        .args(["simulate", "--accelerated", "--scenario"])
        .arg(repo("tests/scenarios/ml/type_mimic_sensor.toml"))
        .arg("--parquet")
        .arg(&events)
        .arg("--labels")
        .arg(&labels)
        .output()
        .expect("run");
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let report = dir.path().join("report");
    std::fs::create_dir_all(&report).expect("dir");
    let o = warden()
        .current_dir(repo(""))
        .args(["backtest", "--pipeline", "pipelines/ml.toml", "--events"])
        .arg(&events)
        .arg("--attack-labels")
        .arg(&labels)
        .args(["--compare", "pipelines/default.toml", "--out"])
        .arg(&report)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(report.join("report.md")).expect("report.md");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).expect("json"))
            .expect("report.json");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["detector"].as_str()).collect();
    assert_eq!(
        names,
        [
            "default (all detectors)",
            "ml_kmeans",
            "ml_gmm",
            "ml_iforest",
            "ml_kmeans_5m",
            "ml_gmm_5m",
            "ml (all detectors)"
        ],
        "{md}"
    );
    for r in &rows {
        assert_eq!(r["class"], "type_mimic", "{md}");
        assert_eq!(r["false_quarantines"], 0, "{md}");
        assert!(md.contains(r["detector"].as_str().unwrap_or("?")), "{md}");
    }
    assert_eq!(rows[0]["caught"], 0, "the statistics miss it: {md}");
    assert_eq!(rows[0]["auc"], serde_json::Value::Null);
    assert_eq!(
        rows[6]["caught"], rows[6]["attackers"],
        "ML catches every one: {md}"
    );
    for r in &rows[1..6] {
        let auc = r["auc"].as_f64().unwrap_or(0.0);
        assert!(auc > 0.9, "{}: AUC {auc}\n{md}", r["detector"]);
    }
    // Bad labels: a clear error, nothing half-written.
    std::fs::write(&labels, "{").expect("write");
    let o = warden()
        .current_dir(repo(""))
        .args(["backtest", "--pipeline", "pipelines/ml.toml", "--events"])
        .arg(&events)
        .arg("--attack-labels")
        .arg(&labels)
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("run.labels.json"), "{err}");
}
