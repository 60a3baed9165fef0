//! The `warden` binary as users run it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn check_accepts_the_shipped_files() {
    // The compose config names container paths: the PKI `warden certs` writes, the RBAC
    // policy mounted at /etc/warden.
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    let out = warden()
        .arg("certs")
        .arg("--out")
        .arg(&pki)
        .output()
        .expect("certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kafka = std::fs::read_to_string(repo("docs/examples/warden.kafka.toml"))
        .expect("config")
        .replace("/var/lib/warden/pki", &pki.display().to_string())
        .replace(
            "/etc/warden/rbac.toml",
            &repo("docs/examples/rbac.toml").display().to_string(),
        );
    let kafka_path = dir.path().join("warden.kafka.toml");
    std::fs::write(&kafka_path, kafka).expect("write");
    let mut cmd = warden();
    // From the repository root, as a processor runs: `ml.toml`'s model paths are relative.
    cmd.current_dir(repo(""))
        .arg("check")
        .arg("--config")
        .arg(&kafka_path);
    for entry in std::fs::read_dir(repo("pipelines")).expect("pipelines") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            cmd.arg("--pipeline").arg(path);
        }
    }
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"
[gateway]
listen = 8080
colour = "blue"

[[routes]]
name = "api"
prefix = "/api"
"#,
    )
    .expect("write");
    let out = warden()
        .args(["check", "--config"])
        .arg(&bad)
        .arg("--pipeline")
        .arg(repo(
            "crates/warden-config/tests/invalid/dangling_references.toml",
        ))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "bad.toml: gateway.listen:",
        "bad.toml: gateway: Additional properties are not allowed ('colour' was unexpected)",
        "bad.toml: routes[0]: \"upstream\" is a required property",
        "dangling_references.toml: feature[0].window: unknown window `nope`",
        "dangling_references.toml: detector[0].feature: unknown feature `missing`",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
    assert!(!stdout.contains("panicked"));
}

/// `warden check --pipeline` loads every ML detector's model file as the processor would
/// (from the working directory): missing, another kind, other features, truncated — each
/// reported with its detector; the shipped models pass.
#[test]
fn check_verifies_the_model_files_a_pipeline_references() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("dir");
    let shipped = std::fs::read_to_string(repo("pipelines/ml.toml")).expect("ml.toml");
    let check = |pipeline: &str| {
        let path = dir.path().join("p.toml");
        std::fs::write(&path, pipeline).expect("write");
        let out = warden()
            .current_dir(dir.path())
            .args(["check", "--pipeline"])
            .arg(&path)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let copy = |from: &str, to: &str| {
        std::fs::copy(repo(from), models.join(to)).expect("copy");
    };
    // No model file at all.
    let (code, out) = check(&shipped);
    assert_eq!(code, Some(2), "{out}");
    for name in [
        "`ml_kmeans` (kmeans)",
        "`ml_gmm` (gmm)",
        "`ml_iforest` (isolation_forest)",
        "`ml_kmeans_5m` (kmeans)",
        "`ml_gmm_5m` (gmm)",
    ] {
        assert!(
            out.lines().any(|l| l.contains(".model: ")
                && l.contains(name)
                && l.contains("no model file here")),
            "{name} in:\n{out}"
        );
    }
    assert!(out.contains("5 problem(s)"), "{out}");
    // The five-minute models in place; k-means valid but the detector lists its features in another order; a k-means model
    // where the Gaussian mixture should be; a truncated forest.
    copy("models/ml-kmeans-5m.json", "ml-kmeans-5m.json");
    copy("models/ml-gmm-5m.json", "ml-gmm-5m.json");
    copy("models/ml-kmeans.json", "ml-kmeans.json");
    copy("models/ml-kmeans.json", "ml-gmm.json");
    let forest = std::fs::read_to_string(repo("models/ml-iforest.json")).expect("forest");
    std::fs::write(models.join("ml-iforest.json"), &forest[..forest.len() / 2]).expect("write");
    let reordered = shipped.replacen(
        "features = [\"requests_1m\", \"bytes_in_1m\", \"bytes_out_1m\"",
        "features = [\"requests_1m\", \"bytes_out_1m\", \"bytes_in_1m\"",
        1,
    );
    assert_ne!(reordered, shipped);
    let (code, out) = check(&reordered);
    assert_eq!(code, Some(2), "{out}");
    for (name, why) in [
        ("`ml_kmeans` (kmeans)", "do not match the pipeline's"),
        ("`ml_gmm` (gmm)", "a kmeans model, the detector is gmm"),
        ("`ml_iforest` (isolation_forest)", "not a Warden model file"),
    ] {
        assert!(
            out.lines().any(|l| l.contains(name) && l.contains(why)),
            "{name}: {why} in:\n{out}"
        );
    }
    assert!(out.contains("3 problem(s)"), "{out}");
    // The shipped models with the shipped pipeline.
    copy("models/ml-gmm.json", "ml-gmm.json");
    copy("models/ml-iforest.json", "ml-iforest.json");
    let (code, out) = check(&shipped);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("p.toml: ok"), "{out}");
}

#[test]
fn check_reports_unreadable_files() {
    let out = warden()
        .args(["check", "--config", "/nonexistent/warden.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("/nonexistent/warden.toml: (document): cannot read")
    );
}

/// `warden up --demo` with the shipped default pipeline: the flooding device is quarantined and
/// shown on the dashboard, a normal device keeps being served.
#[test]
fn up_demo_quarantines_the_flooder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        "[gateway]\nlisten = \"127.0.0.1:0\"\n[dashboard]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("write");
    let mut child = warden()
        .args([
            "up",
            "--demo",
            "--devices",
            "60",
            "--flood-after",
            "22",
            "--config",
        ])
        .arg(&config)
        .env("WARDEN_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"))
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut dashboard = None;
    let mut curl = None;
    let mut flooder = None;
    let mut token = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    let result = (|| {
        while dashboard.is_none() || curl.is_none() || flooder.is_none() || token.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .map_err(|e| format!("no startup output: {e}"))?;
            if let Some(rest) = line.strip_prefix("console    token ") {
                token = rest.split_whitespace().next().map(str::to_owned);
            } else if let Some(rest) = line.strip_prefix("dashboard  ") {
                dashboard = Some(rest.trim().trim_end_matches('/').to_string());
            } else if line.starts_with("try: curl") {
                curl = Some(line);
            } else if let Some(rest) = line.strip_prefix("demo: ") {
                flooder = rest
                    .split(';')
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .map(str::to_owned);
            }
        }
        let dashboard = dashboard.clone().ok_or("no dashboard")?;
        let flooder = flooder.clone().ok_or("no flooder")?;
        loop {
            if Instant::now() > deadline {
                return Err("flooder not quarantined within 90 s".to_string());
            }
            let token = token.clone().ok_or("no console token")?;
            let body = http_get(&format!("{dashboard}/api/quarantine"), &token)?;
            if body.contains(&format!("\"value\":\"{flooder}\"")) {
                let alerts = http_get(&format!("{dashboard}/api/alerts"), &token)?;
                if !alerts.contains(&flooder) {
                    return Err(format!("quarantine without alert: {alerts}"));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        // The printed curl line works for a normal device.
        let curl = curl.clone().ok_or("no curl line")?;
        let args: Vec<String> = shell_words(&curl["try: ".len()..]);
        let out = Command::new(&args[0])
            .args(&args[1..])
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .output()
            .map_err(|e| e.to_string())?;
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        if code != "200" {
            return Err(format!("normal device got {code}"));
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        panic!("{e}");
    }
    // `WARDEN_LOG_FORMAT=json`: every log line is one JSON object, colourless; the decision
    // that quarantined the flooder is among them with its fields.
    let logs = std::fs::read_to_string(dir.path().join("stderr.log")).expect("logs");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!logs.contains('\u{1b}'), "ANSI escapes in logs");
    assert!(
        lines.iter().any(|l| l["message"] == "Decision published."
            && l["level"] == "INFO"
            && l["action"] == "Quarantine"),
        "no decision in the JSON logs: {logs}"
    );
}

fn http_get(url: &str, token: &str) -> Result<String, String> {
    let auth = format!("Authorization: Bearer {token}");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-H", &auth, url])
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Split the printed curl line (single-quoted arguments) into words.
fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}
