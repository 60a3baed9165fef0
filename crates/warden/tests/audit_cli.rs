//! `warden audit verify` on a sound log and on tampered ones.

use std::path::Path;
use std::process::{Command, Output};

use warden_event::audit::{AuditKey, AuditLog, Kind};

fn verify(file: &Path, key: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args(["audit", "verify", "--file"]).arg(file);
    if let Some(k) = key {
        cmd.arg("--key-file").arg(k);
    }
    cmd.output().expect("run warden")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A log of five records: decisions and a console release.
fn write_log(path: &Path, key: Option<AuditKey>) {
    let log = AuditLog::open(path, key).expect("open");
    for i in 0..5 {
        let kind = if i == 3 {
            Kind::Operator
        } else {
            Kind::Decision
        };
        log.append(kind, &serde_json::json!({ "n": i, "operator": "ana" }))
            .expect("append");
    }
}

#[test]
fn sound_log_exits_0_with_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, None);
    let out = verify(&path, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("sound, 5 records"), "{t}");
    assert!(t.contains("first: ") && t.contains("(seq 5)"), "{t}");
}

#[test]
fn edited_log_exits_1_naming_the_sequence_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, None);
    let content = std::fs::read_to_string(&path).expect("read");
    let mut lines: Vec<&str> = content.lines().collect();
    let edited = lines[3].replace("\"ana\"", "\"eve\"");
    lines[3] = &edited;
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let out = verify(&path, None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("TAMPERED") && t.contains("seq 4"), "{t}");
    assert!(t.contains("edited record"), "{t}");
}

#[test]
fn deleted_record_and_wrong_key_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let key_path = dir.path().join("audit.key");
    std::fs::write(
        &key_path,
        "5f1c0e9a7b3d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e\n",
    )
    .expect("key");
    write_log(&path, Some(AuditKey::from_file(&key_path).expect("key")));
    assert!(verify(&path, Some(&key_path)).status.success());
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "x".repeat(40)).expect("key");
    let out = verify(&path, Some(&wrong));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("wrong key"), "{}", text(&out));
    let out = verify(&path, None);
    assert_eq!(out.status.code(), Some(1), "a keyed log needs its key");

    let content = std::fs::read_to_string(&path).expect("read");
    let kept: Vec<&str> = content
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").expect("write");
    let out = verify(&path, Some(&key_path));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("seq 2") && t.contains("deleted record"), "{t}");
}

#[test]
fn unreadable_file_exits_2() {
    let out = verify(Path::new("/nonexistent/audit.jsonl"), None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_loads_the_audit_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("audit.key");
    std::fs::write(&key, "too short\n").expect("key");
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\npath = \"{}\"\nkey_file = \"{}\"\n",
            dir.path().join("audit.jsonl").display(),
            key.display()
        ),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run warden");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("audit.key_file") && t.contains("at least 32"),
        "{t}"
    );
}

/// A raw HTTP/1.1 request to `addr`; the status and body, or `None` if nothing answers.
fn http(addr: &str, request: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

#[test]
fn up_records_admin_api_decisions() {
    const TOKEN: &str = "admin-token-for-the-audit-test";
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let admin = format!("127.0.0.1:{port}");
    let log = dir.path().join("audit.jsonl");
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[dashboard]\nlisten = \"127.0.0.1:0\"\n\
             [admin]\nlisten = \"{admin}\"\ntoken_sha256 = \"{}\"\n[audit]\npath = \"{}\"\n",
            warden_config::hash_api_key(TOKEN),
            log.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("up")
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"))
        .spawn()
        .expect("spawn");
    let body =
        r#"{"subject":{"kind":"identity","value":"dev-x"},"ttl_s":60,"reason":"audit test"}"#;
    let request = format!(
        "POST /admin/quarantines HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = loop {
        if let Some(a) = http(&admin, &request) {
            break Some(a);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    let (status, response) = answer.unwrap_or_else(|| panic!("admin API never answered: {stderr}"));
    assert_eq!(status, 201, "{response}\n{stderr}");
    let out = verify(&log, None);
    assert!(out.status.success(), "{}", text(&out));
    let content = std::fs::read_to_string(&log).expect("log");
    let record: serde_json::Value =
        serde_json::from_str(content.lines().next().expect("a record")).expect("JSON");
    assert_eq!(record["kind"], "operator");
    assert_eq!(record["payload"]["via"], "admin_api");
    assert_eq!(record["payload"]["operator"], "token");
    assert_eq!(record["payload"]["action"], "quarantine");
    assert_eq!(record["payload"]["decision"]["subject"]["value"], "dev-x");
}
