//! Every pipeline shipped in `pipelines/` loads; every file under `tests/invalid/` is rejected
//! with the errors its first line promises (`# expect: KEY | KEY ...`).

use std::path::{Path, PathBuf};

use warden_config::PipelineConfig;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn shipped_pipelines_are_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("pipelines")).expect("pipelines dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn invalid_pipelines_report_every_expected_problem() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("invalid dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line must be `# expect: KEY | ...`",
                    path.display()
                )
            });
        let errs = PipelineConfig::load(&path).expect_err("must be rejected");
        for key in expect.split('|').map(str::trim) {
            assert!(
                errs.0.iter().any(|e| e.key == key),
                "{}: expected a problem at `{key}`, got:\n{errs}",
                path.display()
            );
        }
        assert!(
            errs.0
                .iter()
                .all(|e| e.file.as_deref() == Some(path.as_path()))
        );
        n += 1;
    }
    assert!(n >= 3);
}
