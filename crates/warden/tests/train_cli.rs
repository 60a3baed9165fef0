//! `warden train` as users run it: clear errors for a pipeline without an ML detector, an
//! unknown detector, an archive without events, a bad target FPR; nothing written then.

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
