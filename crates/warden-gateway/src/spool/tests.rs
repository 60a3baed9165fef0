//! The gateway's spool with encryption at rest: with the bus down, spooled events are not
//! readable on disk, and after a restart every one is published exactly as it was queued.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use warden_bus::{BusError, Producer};
use warden_config::WardenConfig;
use warden_event::{EventFormat, RequestEvent};

use crate::emit::{Emitter, EventTopic};

const SECRET: &str = "camera-identity-7f3a9c";

/// A broker that never answers (Kafka down).
struct Down;

#[async_trait]
impl Producer for Down {
    async fn send(&self, _topic: &str, _key: &[u8], _payload: &[u8]) -> Result<(), BusError> {
        std::future::pending().await
    }
    async fn flush(&self, _timeout: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

/// A broker that keeps every payload.
#[derive(Default)]
struct Recording(Mutex<Vec<Vec<u8>>>);

#[async_trait]
impl Producer for Recording {
    async fn send(&self, _topic: &str, _key: &[u8], payload: &[u8]) -> Result<(), BusError> {
        self.0.lock().push(payload.to_vec());
        Ok(())
    }
    async fn flush(&self, _timeout: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

fn config(spool: &std::path::Path, key_file: Option<&std::path::Path>) -> WardenConfig {
    let at_rest = key_file.map_or(String::new(), |k| {
        format!(
            "[at_rest]\nenabled = true\nkey_file = {:?}\n",
            k.display().to_string()
        )
    });
    WardenConfig::from_toml(&format!(
        "[gateway]\nid = \"gw-sealed\"\n[gateway.spool]\nenabled = \"on\"\ndir = {:?}\n{at_rest}",
        spool.display().to_string()
    ))
    .expect("config")
}

fn topic() -> EventTopic {
    EventTopic {
        name: "events".into(),
        format: EventFormat::Compact,
    }
}

fn event(i: u64) -> RequestEvent {
    serde_json::from_value(serde_json::json!({
        "v": warden_event::SCHEMA_VERSION, "id": format!("e-{i}"), "gateway": "gw-sealed",
        "seq": 0, "ts": 1_000 + i, "identity": SECRET, "tenant": "t", "device_type": "camera",
        "auth": {"method": "api_key", "result": "ok"}, "client_ip": "10.0.0.9",
        "protocol": "http", "method": "POST", "route": "r", "path": "/api/x",
        "status": 200, "decision": "allowed", "latency_us": 5, "bytes_in": 1, "bytes_out": 2,
    }))
    .expect("event")
}

fn spool_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("gw-sealed"))
        .expect("dir")
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "seg") {
            out.extend(std::fs::read(e.path()).expect("read"));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Queue `n` events while the bus is down, then stop (as a crash would).
async fn spool_while_down(config: &WardenConfig, n: u64) {
    let spool = super::open(config).expect("open spool");
    let (emitter, task) = Emitter::start(Arc::new(Down), topic(), 1024, spool);
    for i in 0..n {
        emitter.emit(event(i));
    }
    let stats = emitter.stats().clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while stats.spooled.load(std::sync::atomic::Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("events spooled");
    task.abort();
    let _ = task.await;
}

#[tokio::test]
async fn with_the_bus_down_spooled_events_are_sealed_and_replay_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    // Control: without encryption the identity is on disk in clear.
    let plain = dir.path().join("plain");
    spool_while_down(&config(&plain, None), 3).await;
    assert!(contains(&spool_bytes(&plain), SECRET.as_bytes()));

    let key = dir.path().join("at-rest.key");
    std::fs::write(&key, [9u8; 32]).expect("key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let sealed = dir.path().join("sealed");
    let config = config(&sealed, Some(&key));
    spool_while_down(&config, 50).await;
    let bytes = spool_bytes(&sealed);
    assert!(
        bytes.len() > 50 * 40,
        "events are on disk: {} bytes",
        bytes.len()
    );
    assert!(!contains(&bytes, SECRET.as_bytes()));
    assert!(!contains(&bytes, b"10.0.0.9"));

    // Restart with the bus back: every event goes out once, in order, as queued.
    let recording = Arc::new(Recording::default());
    let spool = super::open(&config).expect("reopen");
    let (emitter, task) = Emitter::start(recording.clone(), topic(), 1024, spool);
    let stats = emitter.stats().clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while stats.published.load(std::sync::atomic::Ordering::Relaxed) < 50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("replayed");
    drop(emitter);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    let got: Vec<RequestEvent> = recording
        .0
        .lock()
        .iter()
        .map(|p| warden_event::decode(p).expect("decode"))
        .collect();
    assert_eq!(got.len(), 50);
    for (i, e) in got.iter().enumerate() {
        let mut want = event(i as u64);
        want.seq = i as u64;
        assert_eq!(e, &want);
    }
}

#[test]
fn a_bad_key_file_stops_the_gateway_naming_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("short.key");
    std::fs::write(&key, [1u8; 16]).expect("key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let err = super::open(&config(dir.path(), Some(&key)))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("short.key") && err.contains("16 bytes"),
        "{err}"
    );
    let missing = dir.path().join("missing.key");
    let err = super::open(&config(dir.path(), Some(&missing)))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("missing.key") && err.contains("cannot read"),
        "{err}"
    );
}
