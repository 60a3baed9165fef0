//! Encryption at rest from the command line: `warden query` and `warden backtest` read a
//! sealed archive with `--config` (and refuse it without, naming the key id); `warden check`
//! reports a bad key file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warden_atrest::{Key, seal_envelope};

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn run(cmd: &mut Command) -> Output {
    // No WARDEN__* variables of the caller leak into the config.
    cmd.env_remove("WARDEN__AT_REST__KEY_FILE")
        .output()
        .expect("run warden")
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write_private(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::write(path, bytes).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    #[cfg(not(unix))]
    let _ = mode;
}

/// A simulated archive (plain Parquet files) in `dir/events`.
fn simulated_archive(dir: &Path) -> PathBuf {
    let events = dir.join("events");
    ok(warden()
        .args([
            "simulate",
            "--scenario",
            "device_flood",
            "--devices",
            "20",
            "--accelerated",
            "--parquet",
        ])
        .arg(&events)
        .arg("--labels")
        .arg(dir.join("device_flood.labels.json")));
    events
}

fn count(archive: &Path, config: Option<&Path>) -> Output {
    let mut cmd = warden();
    cmd.args(["query", "--format", "csv", "--archive"])
        .arg(archive)
        .arg("select count(*) as n from events");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    run(&mut cmd)
}

#[test]
fn a_sealed_archive_is_read_with_the_configured_key_and_refused_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = simulated_archive(dir.path());
    let plain = count(&events, None);
    assert!(plain.status.success());
    let key_bytes = [0x5au8; 32];
    let key = Key::from_bytes(key_bytes);
    // Seal every file as the archiver would with encryption on.
    for e in std::fs::read_dir(&events).expect("dir").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "parquet") {
            let sealed = seal_envelope(&key, &std::fs::read(&p).expect("read")).expect("seal");
            std::fs::write(p.with_extension("parquet.enc"), sealed).expect("write");
            std::fs::remove_file(&p).expect("remove");
        }
    }
    let o = count(&events, None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&key.id().to_string()) && err.contains("key_file"),
        "{err}"
    );

    let key_file = dir.path().join("at-rest.key");
    write_private(&key_file, hex_line(&key_bytes).as_bytes(), 0o600);
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[at_rest]\nkey_file = {:?}\n",
            key_file.display().to_string()
        ),
    )
    .expect("config");
    let o = count(&events, Some(&config));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, plain.stdout, "same rows as before sealing");
    let report = ok(warden()
        .args(["backtest", "--format", "json", "--events"])
        .arg(&events)
        .arg("--config")
        .arg(&config));
    assert!(report.contains("\"events\""), "{report}");

    // `warden check` reads the key files: a group-readable key is reported.
    ok(warden().arg("check").arg("--config").arg(&config));
    write_private(&key_file, hex_line(&key_bytes).as_bytes(), 0o644);
    let o = run(warden().arg("check").arg("--config").arg(&config));
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("chmod 600") && out.contains("at-rest.key"),
        "{out}"
    );
}

fn hex_line(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.push('\n');
    s
}
