//! The analysis commands as users run them: `warden archive` (a real Kafka-protocol broker,
//! Tansu, between `warden up` and the archiver), `warden query` (table, CSV, JSON),
//! `warden backtest --events DIR` (table, JSON); `warden backtest --series` is in
//! `series_cli.rs`.
//!
//! The archive for `query` and `backtest` is a simulated run (`warden simulate --accelerated
//! --parquet`): one sensor floods at 200 req/s among 60 devices, with labels naming it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
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

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A simulated flood written as Parquet events into `dir/events`; returns (events dir,
/// the flooding identity from the labels).
fn simulated_archive(dir: &Path) -> (PathBuf, String) {
    let events = dir.join("events");
    let labels = dir.join("flood.labels.json");
    ok(warden()
        .args([
            "simulate",
            "--scenario",
            "device_flood",
            "--devices",
            "60",
            "--accelerated",
            "--parquet",
        ])
        .arg(&events)
        .arg("--labels")
        .arg(&labels));
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&labels).expect("labels")).expect("labels json");
    let attacker = labels["attacks"][0]["attackers"][0]["subjects"][0]["value"]
        .as_str()
        .expect("attacker identity")
        .to_string();
    (events, attacker)
}

fn query(archive: &Path, format: &str, sql: &str) -> String {
    ok(warden()
        .args(["query", "--format", format, "--archive"])
        .arg(archive)
        .arg(sql))
}

#[test]
fn query_prints_tables_csv_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, attacker) = simulated_archive(dir.path());
    let top = "select identity, count(*) as requests from events \
               group by identity order by requests desc, identity limit 3";

    // CSV: a header, then rows; the flooder is on top with most of the traffic.
    let csv = query(&events, "csv", top);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("identity,requests"), "{csv}");
    let rows: Vec<(String, u64)> = lines
        .map(|l| {
            let (id, n) = l.split_once(',').expect("two columns");
            (id.to_string(), n.parse().expect("count"))
        })
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert_eq!(rows[0].0, attacker, "{csv}");
    assert!(rows[0].1 > 10 * rows[1].1, "{csv}");

    // JSON: an array of objects with the same numbers.
    let json: serde_json::Value =
        serde_json::from_str(&query(&events, "json", top)).expect("json output");
    let arr = json.as_array().expect("array");
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["identity"], attacker.as_str());
    assert_eq!(arr[0]["requests"].as_u64(), Some(rows[0].1));

    // Table (the default): a bordered table with the header and the flooder's row.
    let table = ok(warden().args(["query", "--archive"]).arg(&events).arg(top));
    assert!(table.starts_with('+'), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("| identity") && l.contains("| requests")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(&attacker) && l.contains(&rows[0].1.to_string())),
        "{table}"
    );

    // Empty results are an empty JSON array; SQL errors and unknown formats fail with a reason.
    let none = query(
        &events,
        "json",
        "select identity from events where identity = 'nobody'",
    );
    assert_eq!(none.trim(), "[]");
    let bad = run(warden()
        .args(["query", "--archive"])
        .arg(&events)
        .arg("select nonsense from events"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("nonsense"), "{}", stderr(&bad));
    let bad = run(warden()
        .args(["query", "--format", "xml", "--archive"])
        .arg(&events)
        .arg("select 1"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("unknown format `xml`"),
        "{}",
        stderr(&bad)
    );
    let missing = run(warden()
        .args(["query", "--archive"])
        .arg(dir.path().join("nope"))
        .arg("select 1"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("nope"), "{}", stderr(&missing));
}

#[test]
fn backtest_replays_an_archive_and_reports_what_would_have_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, attacker) = simulated_archive(dir.path());
    let total: u64 = query(&events, "csv", "select count(*) as n from events")
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("count");

    // JSON (to a file): every event replayed, the flooder quarantined, nobody else.
    let report_file = dir.path().join("report.json");
    ok(warden()
        .args(["backtest", "--format", "json", "--events"])
        .arg(&events)
        .arg("--out")
        .arg(&report_file));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_file).expect("report")).expect("json");
    assert_eq!(report["pipeline"], "default");
    assert_eq!(report["events"].as_u64(), Some(total));
    assert_eq!(report["late_events"].as_u64(), Some(0));
    let quarantined = format!("identity:{attacker}");
    assert_eq!(
        report["quarantined"],
        serde_json::json!([quarantined]),
        "{report:#}"
    );
    let alerts = report["alerts"].as_array().expect("alerts");
    let first = alerts
        .iter()
        .find(|a| a["action"] == "quarantine")
        .expect("a quarantine");
    assert_eq!(first["subject"], quarantined.as_str());
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.contains("standard deviations above")),
        "{first}"
    );
    // Every alert (enforcing or not) is about the flooder: no false positives.
    assert!(
        alerts
            .iter()
            .all(|a| a["subject"].as_str().is_some_and(|s| s.contains(&attacker))),
        "{report:#}"
    );

    // Table on stdout: the summary, the per-detector line and the alert.
    let table = ok(warden().args(["backtest", "--events"]).arg(&events));
    assert!(
        table.starts_with(&format!("pipeline default: {total} events (0 late)")),
        "{table}"
    );
    assert!(
        table.contains("would quarantine 1 subject(s), throttle 0"),
        "{table}"
    );
    // The per-detector table: the detector that quarantined (one of the default pipeline's
    // rate z-scores) with 1 quarantine.
    let decider = first["detector"].as_str().expect("detector");
    assert!(["rate_spike", "burst"].contains(&decider), "{first}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(decider) && l.split_whitespace().nth(2) == Some("1")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("quarantine") && l.contains(&quarantined)),
        "{table}"
    );

    // The same archive through the shadow pipeline: the alert stays, nothing is enforced.
    let shadow: serde_json::Value = serde_json::from_str(&ok(warden()
        .args(["backtest", "--format", "json", "--pipeline"])
        .arg(repo("pipelines/shadow.toml"))
        .arg("--events")
        .arg(&events)))
    .expect("json");
    assert_eq!(shadow["quarantined"], serde_json::json!([]));
    assert_eq!(shadow["throttled"], serde_json::json!([]));
    let shadow_alerts = shadow["alerts"].as_array().expect("alerts");
    assert!(
        shadow_alerts
            .iter()
            .any(|a| a["subject"] == quarantined.as_str()
                && a["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("not enforced: shadow mode"))),
        "{shadow:#}"
    );

    // Mistakes: an invalid pipeline lists its problems with the file; a bad format fails.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\ncolour = \"red\"\n[decision]\n").expect("write");
    let o = run(warden()
        .args(["backtest", "--pipeline"])
        .arg(&bad)
        .arg("--events")
        .arg(&events));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml") && err.contains("colour") && err.contains("quarantine_ttl_s"),
        "{err}"
    );
    let o = run(warden()
        .args(["backtest", "--format", "xml", "--events"])
        .arg(&events));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown format `xml`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn archive_settings_are_checked_and_every_problem_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(warden()
        .args([
            "archive",
            "--max-file-mb",
            "0",
            "--max-file-age-s",
            "0",
            "--retention-hours",
            "0",
            "--dir",
        ])
        .arg(dir.path().join("a")));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for key in [
        "archive.max_file_bytes",
        "archive.max_file_age_s",
        "archive.retention_hours",
    ] {
        assert!(err.contains(key), "missing {key} in {err}");
    }
    assert!(!dir.path().join("a").exists(), "nothing written");
}

// ---- `warden archive` against a real broker ----------------------------------------------

fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("tansu");
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from("/var/cache/warden-ci/tools/bin/tansu")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kills a child process when dropped (test failures included).
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn interrupt(child: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Closed Parquet files under `dir/hour=*/`, and temporary (open) ones.
fn archive_files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut done, mut open) = (Vec::new(), Vec::new());
    for hour in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(hour.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                open.push(f.path());
            } else if name.ends_with(".parquet") {
                done.push(f.path());
            }
        }
    }
    (done, open)
}

/// `warden up --demo` produces events to Kafka; `warden archive` consumes them in its own
/// group into hourly Parquet files (closed every second here), deletes hour partitions older
/// than the retention as soon as it starts, and closes everything on Ctrl-C; `warden query`
/// then reads the archive with its `hour` partition column.
#[test]
fn archive_consumes_the_events_topic_into_hourly_parquet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let broker = format!("127.0.0.1:{port}");
    let listener = format!("tcp://{broker}");
    let tansu_dir = dir.path().join("tansu");
    std::fs::create_dir_all(&tansu_dir).expect("mkdir");
    let _tansu = Kill(
        Command::new(tansu_bin())
            .arg("broker")
            .args(["--cluster-id", "warden-analysis-cli"])
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&tansu_dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu (install it or set TANSU_BIN)"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&broker).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start on {broker}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let archive = dir.path().join("archive");
    // An hour partition from long ago: older than any retention.
    let old = archive.join("hour=2020-01-01T00");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(old.join("part-old.parquet"), b"old").expect("write");

    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[bus]\nkind = \"kafka\"\nbrokers = \"{broker}\"\n\
             [gateway]\nlisten = \"127.0.0.1:0\"\n[dashboard]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .expect("write");
    let mut archiver = Kill(
        warden()
            .args(["archive", "--brokers", &broker, "--max-file-age-s", "1"])
            .args(["--retention-hours", "24", "--dir"])
            .arg(&archive)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn archive"),
    );
    let _up = Kill(
        warden()
            .args(["up", "--demo", "--devices", "20", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn up"),
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (done, _) = archive_files(&archive);
        let fresh = done.iter().filter(|p| !p.starts_with(&old)).count();
        if fresh >= 2 && !old.exists() {
            break;
        }
        if let Ok(Some(status)) = archiver.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = archiver.0.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("warden archive exited with {status}: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "no archive files within 120 s (old hour still there: {}): {:?}",
            old.exists(),
            archive_files(&archive)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        interrupt(&mut archiver.0),
        Some(0),
        "warden archive stops cleanly on Ctrl-C"
    );

    // `warden events` prints the topic's events as JSON lines (the gateway writes them in the
    // compact form, the default).
    let lines = ok(warden().args(["events", "--limit", "5", "--brokers", &broker]));
    let events: Vec<warden_event::RequestEvent> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events.len(), 5, "{lines}");
    assert!(
        events
            .iter()
            .all(|e| e.v == warden_event::SCHEMA_VERSION && !e.id.is_empty()),
        "{lines}"
    );
    // Without Kafka there is nothing to read from another process: a clear error.
    let refused = run(warden().args(["events"]));
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("Kafka"), "{}", stderr(&refused));
    let (done, open) = archive_files(&archive);
    assert!(open.is_empty(), "files left open: {open:?}");
    for f in &done {
        let hour = f
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // hour=YYYY-MM-DDTHH
        assert!(
            hour.len() == 18 && hour.starts_with("hour=20") && hour.as_bytes()[15] == b'T',
            "{f:?}"
        );
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        assert!(
            name.as_deref().is_some_and(|n| n.starts_with("part-")),
            "{f:?}"
        );
    }

    // The archive is queryable by hour; its events are the demo fleet's.
    let csv = query(
        &archive,
        "csv",
        "select hour, count(*) as n, count(distinct identity) as ids \
         from events group by hour order by hour",
    );
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert!(!rows.is_empty() && rows.len() <= 2, "{csv}");
    let events: u64 = rows.iter().map(|r| r[1].parse::<u64>().unwrap_or(0)).sum();
    assert!(events > 0, "{csv}");
    for r in &rows {
        assert!(
            done.iter()
                .any(|f| f.to_string_lossy().contains(&format!("hour={}", r[0]))),
            "{csv}"
        );
    }
}
