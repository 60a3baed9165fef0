//! `warden up --scenario`, `warden simulate` and `warden eval` as users run them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.stderr(Stdio::null()).output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// Kills the child on drop.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `warden up` with `args`: the process, the gateway and dashboard URLs, the `simulate` line
/// it printed and its one-time console token.
fn up(dir: &Path, args: &[&str]) -> (Up, String, String, String, String) {
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        "[gateway]\nlisten = \"127.0.0.1:0\"\n[dashboard]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("write");
    let mut child = warden()
        .arg("up")
        .args(args)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let child = Up(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut gateway, mut dashboard, mut simulate, mut token) = (None, None, None, None);
    while gateway.is_none() || dashboard.is_none() || simulate.is_none() || token.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("startup output");
        if let Some(rest) = line.strip_prefix("gateway    http://") {
            gateway = Some(format!("http://{}", rest.trim().trim_end_matches('/')));
        } else if let Some(rest) = line.strip_prefix("dashboard  ") {
            dashboard = Some(rest.trim().trim_end_matches('/').to_string());
        } else if let Some(rest) = line.strip_prefix("simulate: ") {
            simulate = Some(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("console    token ") {
            token = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    (
        child,
        gateway.unwrap_or_default(),
        dashboard.unwrap_or_default(),
        simulate.unwrap_or_default(),
        token.unwrap_or_default(),
    )
}

/// The README's flow: `up --scenario`, the `simulate` line it prints, then `eval` from the
/// dashboard. A short benign run: every request authenticated (the keys agree), nothing
/// quarantined, `eval --check` passes.
#[test]
fn up_simulate_eval_agree_on_the_fleet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_up, gateway, dashboard, simulate, token) =
        up(dir.path(), &["--scenario", "benign", "--devices", "40"]);
    // The fleet's cameras present client certificates on the TLS listener `up` opened.
    let (plain, tls) = simulate
        .split_once(" --gateway-tls https://127.0.0.1:")
        .expect("a TLS listener for the cameras");
    assert!(tls.parse::<u16>().is_ok(), "{simulate}");
    assert_eq!(
        plain,
        format!("warden simulate --scenario benign --seed 7 --devices 40 --gateway {gateway}")
    );
    let labels = dir.path().join("benign.labels.json");
    let args: Vec<&str> = simulate.split_whitespace().skip(1).collect();
    let (code, out) = run(warden()
        .args(&args)
        .args(["--duration", "8", "--labels"])
        .arg(&labels));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("fleet of scenario `benign` (seed 7): 40 devices"),
        "{out}"
    );
    assert!(out.contains("0 without response"), "{out}");
    assert!(!out.contains("warning:"), "keys or quarantines: {out}");
    let json = dir.path().join("report.json");
    let (code, out) = run(warden()
        .args(["eval", "--check", "--dashboard", &dashboard, "--labels"])
        .env("WARDEN_CONSOLE_TOKEN", &token)
        .arg(&labels)
        .arg("--json")
        .arg(&json));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("| benign | — | benign |"), "{out}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("report");
    assert_eq!(
        report["scenarios"][0]["false_quarantines"],
        serde_json::json!([])
    );
    assert!(report["scenarios"][0]["requests"].as_u64().unwrap_or(0) > 20);
}

/// Accelerated with the default pipeline: a flood in simulated time is quarantined, the
/// events land in Parquet, and `eval --alerts` reads the run's alerts file.
#[test]
fn accelerated_simulate_detects_and_eval_reads_its_alerts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = dir.path().join("flood.labels.json");
    let parquet = dir.path().join("out");
    let (code, out) = run(warden()
        .args([
            "simulate",
            "--scenario",
            "device_flood",
            "--devices",
            "60",
            "--accelerated",
            "--detect",
            "--parquet",
        ])
        .arg(&parquet)
        .arg("--labels")
        .arg(&labels));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("| device_flood | flood | device_flood | yes | yes | 1/1 (100 %)"),
        "{out}"
    );
    assert!(parquet.join("device_flood-seed7.parquet").is_file());
    let alerts = dir.path().join("flood.labels.alerts.json");
    let (code, out) = run(warden()
        .args(["eval", "--check", "--labels"])
        .arg(&labels)
        .arg("--alerts")
        .arg(&alerts));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("| device_flood | 1/1 |"), "{out}");
    // Bad input: every problem of a scenario file, with its path; a missing labels file.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x y\"\ndescription = \"\"\nduration_s = -1.0\n",
    )
    .expect("w");
    let (code, out) = {
        let o = warden()
            .args(["simulate", "--accelerated", "--detect", "--scenario"])
            .arg(&bad)
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    assert_eq!(code, Some(1));
    assert!(
        out.contains("bad.toml") && out.contains("fleet") && out.contains("expect"),
        "{out}"
    );
    let (code, _) = run(warden()
        .args(["eval", "--labels", "/nonexistent.json", "--alerts"])
        .arg(&alerts));
    assert_eq!(code, Some(1));
}
