//! The subcommands of a deployment (docker compose runs them; tests/compose.py rehearses the
//! whole topology): `warden certs`, `warden health`, `warden topics`, `warden backend`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn certs_writes_a_pki_once_with_private_keys_unreadable_by_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("pki");
    let out = warden()
        .args(["certs", "--device", "cam-a", "--device", "cam-b", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    for f in [
        "ca.pem",
        "ca.key",
        "gateway.pem",
        "gateway.key",
        "operators-ca.pem",
        "devices/cam-a.pem",
        "devices/cam-b.key",
        "operators/ops.pem",
        "registry.toml",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [
            "ca.key",
            "gateway.key",
            "devices/cam-a.key",
            "operators/ops.key",
        ] {
            let mode = std::fs::metadata(out_dir.join(f))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{f} has mode {mode:o}");
        }
    }
    let registry = std::fs::read_to_string(out_dir.join("registry.toml")).expect("registry");
    assert!(registry.contains("id = \"cam-a\"") && registry.contains("id = \"cam-b\""));
    let ca = std::fs::read(out_dir.join("ca.pem")).expect("ca");

    // A second run keeps the PKI (a container's later starts); --force replaces it.
    let again = warden()
        .args(["certs", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run");
    assert!(
        again.status.success() && text(&again).contains("kept"),
        "{}",
        text(&again)
    );
    assert_eq!(std::fs::read(out_dir.join("ca.pem")).expect("ca"), ca);
    let forced = warden()
        .args(["certs", "--force", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run");
    assert!(forced.status.success(), "{}", text(&forced));
    assert_ne!(std::fs::read(out_dir.join("ca.pem")).expect("ca"), ca);
}

#[test]
fn certs_refuses_bad_names_and_validity() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["--device", "../escape"],
        vec!["--operator", "a b"],
        vec!["--days", "0"],
        vec!["--server-name", "bad name!"],
    ] {
        let out = warden()
            .arg("certs")
            .args(&args)
            .arg("--out")
            .arg(dir.path().join("p"))
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} accepted: {}", text(&out));
        assert!(text(&out).contains("error"), "{}", text(&out));
        assert!(!dir.path().join("p/ca.pem").exists(), "{args:?} left a PKI");
    }
}

/// A one-shot HTTP server answering one request with `status`.
fn answer_once(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: 5\r\nconnection: close\r\n\r\nready"
            );
        }
    });
    format!("http://{addr}/readyz")
}

#[test]
fn health_exits_zero_only_when_ready() {
    let ok = warden()
        .args(["health", "--url", &answer_once("200 OK")])
        .output()
        .expect("run");
    assert!(ok.status.success(), "{}", text(&ok));
    let unready = warden()
        .args(["health", "--url", &answer_once("503 Service Unavailable")])
        .output()
        .expect("run");
    assert!(!unready.status.success());
    assert!(text(&unready).contains("503"), "{}", text(&unready));
    // Nothing listening: a clear error, non-zero, within the timeout.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let down = warden()
        .args(["health", "--timeout-ms", "500", "--url"])
        .arg(format!("http://127.0.0.1:{port}/readyz"))
        .output()
        .expect("run");
    assert!(!down.status.success());
    assert!(text(&down).contains("not reachable"), "{}", text(&down));
}

#[test]
fn topics_needs_a_kafka_bus() {
    let out = warden().args(["topics"]).output().expect("run");
    assert!(!out.status.success());
    assert!(text(&out).contains("embedded"), "{}", text(&out));
}
